import { readFileSync } from 'node:fs'

import { describe, expect, it } from 'vitest'

import { formatDoctorReport } from '../../src/cli/doctor-command.js'
import { guardCheck, monitorVerdicts, recommendMonitor, type Check } from '../../src/doctor/checks.js'
import { parseOurPrograms } from '../../src/doctor/ebpf-checks.js'
import {
  CAPABILITIES,
  capabilityChecks,
  compareKernelVersions,
  hasCapability,
  kernelChecks,
  parseCapEff,
  parseKernelRelease,
  type CapabilityName,
} from '../../src/doctor/kernel-checks.js'
import { queueSkipVerdict } from '../../src/doctor/nfqueue-checks.js'
import { interfacesCheck } from '../../src/doctor/pcap-checks.js'
import type { DoctorReport } from '../../src/doctor/run-doctor.js'

// /proc/self/status of a root shell on the test VM (every capability but CAP_SYS_RESOURCE, 24) and of nobody.
const ROOT_STATUS = 'Name:\tcat\nUid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n'
const NOBODY_STATUS = 'Name:\tcat\nUid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n'

const bit = (name: CapabilityName): bigint => 1n << BigInt(CAPABILITIES[name])
const byId = (checks: readonly Check[], id: string): Check | undefined => checks.find((c) => c.id === id)

describe('capabilities', () => {
  it('uses the bit numbers of linux/capability.h', () => {
    const header = readFileSync('/usr/include/linux/capability.h', 'utf8')
    for (const [name, number] of Object.entries(CAPABILITIES)) {
      expect(new RegExp(`^#define ${name}\\s+(\\d+)\\s*$`, 'm').exec(header)?.[1], name).toBe(String(number))
    }
  })

  it('reads CapEff as a 64-bit mask and decodes each capability', () => {
    const root = parseCapEff(ROOT_STATUS)
    expect(root).toBe(0x1fffeffffffn)
    for (const name of Object.keys(CAPABILITIES) as CapabilityName[]) expect(hasCapability(root ?? 0n, name), name).toBe(true)
    expect(parseCapEff(NOBODY_STATUS)).toBe(0n)
    expect(parseCapEff('Name:\tcat\n')).toBeNull()
    const netAdminOnly = 0x1000n // bit 12
    expect(hasCapability(netAdminOnly, 'CAP_NET_ADMIN')).toBe(true)
    expect(hasCapability(netAdminOnly, 'CAP_NET_RAW')).toBe(false)
    expect(hasCapability(0x80_0000_0000n, 'CAP_BPF')).toBe(true) // bit 39, above 32 bits
    expect(hasCapability(0x80_0000_0000n, 'CAP_SYS_ADMIN')).toBe(false)
  })

  it('fails every monitor without capabilities, with a fix naming the missing ones', () => {
    const checks = capabilityChecks({ euid: 65534, capEff: 0n })
    expect(byId(checks, 'nfqueue.capabilities')).toMatchObject({ status: 'fail', fix: expect.stringContaining('CAP_NET_ADMIN and CAP_NET_RAW') })
    expect(byId(checks, 'ebpf.capabilities')).toMatchObject({ status: 'fail', fix: expect.stringContaining('CAP_BPF and CAP_NET_ADMIN') })
    expect(byId(checks, 'pcap.capabilities')).toMatchObject({ status: 'fail', fix: expect.stringContaining('CAP_NET_RAW') })
    expect(byId(checks, 'privileges.low-ports')).toMatchObject({ monitor: 'all', status: 'warn' })
  })

  it('takes CAP_SYS_ADMIN in place of CAP_BPF, and names only what is missing', () => {
    const checks = capabilityChecks({ euid: 1000, capEff: bit('CAP_SYS_ADMIN') | bit('CAP_NET_ADMIN') | bit('CAP_NET_BIND_SERVICE') })
    expect(byId(checks, 'ebpf.capabilities')?.status).toBe('ok')
    const nfqueue = byId(checks, 'nfqueue.capabilities')
    expect(nfqueue?.status).toBe('fail')
    expect(nfqueue?.summary).toBe('missing CAP_NET_RAW')
    expect(byId(checks, 'privileges.low-ports')).toBeUndefined()
    expect(byId(capabilityChecks({ euid: 1000, capEff: bit('CAP_NET_RAW') }), 'pcap.capabilities')?.status).toBe('ok')
  })

  it('takes root without a CapEff line to hold everything', () => {
    expect(capabilityChecks({ euid: 0, capEff: null }).every((c) => c.status === 'ok')).toBe(true)
    expect(byId(capabilityChecks({ euid: 1000, capEff: null }), 'pcap.capabilities')?.status).toBe('fail')
  })
})

describe('kernel version', () => {
  it('parses uname -r forms', () => {
    expect(parseKernelRelease('6.18.44-fc-v669')).toEqual({ major: 6, minor: 18, patch: 44 })
    expect(parseKernelRelease('5.10.0-28-amd64')).toEqual({ major: 5, minor: 10, patch: 0 })
    expect(parseKernelRelease('6.1')).toEqual({ major: 6, minor: 1, patch: 0 })
    expect(parseKernelRelease('unknown')).toBeNull()
  })

  it('compares numerically, not as text', () => {
    const v = (s: string) => parseKernelRelease(s) ?? { major: 0, minor: 0, patch: 0 }
    expect(compareKernelVersions(v('5.9.0'), v('5.18.0'))).toBeLessThan(0)
    expect(compareKernelVersions(v('5.18.0'), v('5.18.0'))).toBe(0)
    expect(compareKernelVersions(v('6.1.0'), v('5.18.9'))).toBeGreaterThan(0)
    expect(compareKernelVersions(v('5.18.1'), v('5.18.0'))).toBeGreaterThan(0)
  })

  it('fails ebpf below 5.18 only', () => {
    const at = (release: string) => byId(kernelChecks({ platform: 'linux', release, btf: true }), 'kernel.ebpf-version')?.status
    expect(at('5.17.15')).toBe('fail')
    expect(at('5.10.0-28-amd64')).toBe('fail')
    expect(at('5.18.0')).toBe('ok')
    expect(at('6.1.0-18-amd64')).toBe('ok')
    expect(at('garbage')).toBe('warn')
    const summary = (release: string) => byId(kernelChecks({ platform: 'linux', release, btf: true }), 'kernel.ebpf-version')?.summary
    expect(summary('6.1.0-18-amd64')).toBe('kernel 6.1 >= 5.18; SYN facts at XDP (tcx needs 6.6)')
    expect(summary('6.6.0')).toBe('kernel 6.6 >= 5.18; SYN facts at tc ingress (tcx)')
    const old = kernelChecks({ platform: 'linux', release: '5.4.0', btf: true })
    expect(old.filter((c) => c.status === 'fail').map((c) => c.monitor)).toEqual(['ebpf'])
  })

  it('warns without BTF and fails everything off Linux', () => {
    expect(byId(kernelChecks({ platform: 'linux', release: '6.1.0', btf: false }), 'kernel.btf')?.status).toBe('warn')
    expect(kernelChecks({ platform: 'darwin', release: '23.0.0', btf: false })).toMatchObject([{ monitor: 'all', status: 'fail' }])
  })
})

const check = (id: string, monitor: Check['monitor'], status: Check['status']): Check => ({ id, monitor, status, summary: id })

describe('verdicts and recommendation', () => {
  it('recommends ebpf when nothing fails', () => {
    const verdicts = monitorVerdicts([check('a', 'all', 'ok'), check('b', 'ebpf', 'warn'), check('c', 'pcap', 'ok')])
    expect(verdicts.map((v) => [v.monitor, v.usable])).toEqual([['ebpf', true], ['nfqueue', true], ['pcap', true]])
    expect(verdicts[0]?.warned).toEqual(['b'])
    expect(recommendMonitor(verdicts)).toBe('ebpf')
  })

  it('falls back to nfqueue, then pcap, then none', () => {
    const noEbpf = [check('k', 'ebpf', 'fail')]
    expect(recommendMonitor(monitorVerdicts(noEbpf))).toBe('nfqueue')
    const pcapOnly = [...noEbpf, check('m', 'nfqueue', 'fail'), check('w', 'pcap', 'warn')]
    expect(recommendMonitor(monitorVerdicts(pcapOnly))).toBe('pcap')
    expect(recommendMonitor(monitorVerdicts([...pcapOnly, check('c', 'pcap', 'fail')]))).toBeNull()
  })

  it('lets a failed check of all monitors fail each of them', () => {
    const verdicts = monitorVerdicts([check('kernel.version', 'all', 'fail'), check('x', 'nfqueue', 'ok')])
    expect(verdicts.every((v) => !v.usable && v.failed.includes('kernel.version'))).toBe(true)
    expect(recommendMonitor(verdicts)).toBeNull()
  })
})

describe('guardCheck', () => {
  const meta = { id: 'x.y', monitor: 'pcap', timeoutMs: 50 } as const

  it('turns a throw into a check carrying the message', async () => {
    const [c] = await guardCheck({ ...meta, onError: 'fail' }, () => {
      throw new Error('boom')
    })
    expect(c).toMatchObject({ id: 'x.y', monitor: 'pcap', status: 'fail', detail: 'boom' })
  })

  it('turns a hang into a check after the deadline', async () => {
    const started = Date.now()
    const [c] = await guardCheck({ ...meta, onError: 'warn' }, () => new Promise<Check>(() => undefined))
    expect(c).toMatchObject({ status: 'warn', summary: 'check did not finish within 0.05 s' })
    expect(Date.now() - started).toBeLessThan(1_000)
  })
})

describe('parseOurPrograms', () => {
  // Shapes printed by bpftool v7.1 on the test VM with the steering program attached in a namespace.
  const progs = JSON.stringify([
    { id: 235, type: 'sk_lookup', name: 'honeytrap_steer', tag: 'f6ceae3e58b8c531', map_ids: [184, 185] },
    { id: 236, type: 'xdp', name: 'honeytrap_synfa', pids: [{ pid: 812, comm: 'node' }] },
    { id: 7, type: 'cgroup_skb', name: 'sd_fw_ingress' },
  ])
  const links = JSON.stringify([
    { id: 123, type: 'netns', prog_id: 235, netns_ino: 4026532177, attach_type: 'sk_lookup' },
    { id: 124, type: 'xdp', prog_id: 236, ifindex: 2 },
  ])

  it('keeps our programs with their links and holders', () => {
    expect(parseOurPrograms(progs, links, 4026532177)).toEqual([
      { id: 235, name: 'honeytrap_steer', type: 'sk_lookup', holders: [], links: ['netns 4026532177 (this namespace)'] },
      { id: 236, name: 'honeytrap_synfa', type: 'xdp', holders: ['pid 812 node'], links: ['xdp ifindex 2'] },
    ])
    expect(parseOurPrograms(progs, '[]', 1)[0]?.links).toEqual([])
    expect(parseOurPrograms('[]', links, null)).toEqual([])
  })
})

describe('queueSkipVerdict', () => {
  it('is ok with xt_socket and the socket addon, and warns with the fix for each missing one', () => {
    expect(queueSkipVerdict({ socketMatch: true, addonError: null })).toMatchObject({ id: 'nfqueue.queue-skip', monitor: 'nfqueue', status: 'ok' })
    const noMatch = queueSkipVerdict({ socketMatch: false, addonError: null })
    expect(noMatch).toMatchObject({ status: 'warn' })
    expect(noMatch.summary).toContain('xt_socket')
    expect(noMatch.fix).toContain('rules.skipQueueForServedPorts: false')
    // The kernel matters first: without xt_socket the rule cannot be installed, whatever the addon.
    expect(queueSkipVerdict({ socketMatch: false, addonError: 'not built' }).summary).toContain('xt_socket')
    const noAddon = queueSkipVerdict({ socketMatch: true, addonError: 'the socket addon is not built' })
    expect(noAddon).toMatchObject({ status: 'warn', detail: 'the socket addon is not built' })
    expect(noAddon.fix).toContain('npm run build:native')
  })
})

describe('interfacesCheck', () => {
  it('is ok with a non-loopback interface up and warns with loopback alone', () => {
    const lo = { name: 'lo', operstate: 'unknown', addresses: ['127.0.0.1'] }
    const eth = { name: 'eth0', operstate: 'up', addresses: ['192.0.2.2'] }
    expect(interfacesCheck([eth, lo], ['eth0', 'lo', 'any'])).toMatchObject({ status: 'ok', summary: expect.stringContaining('eth0') })
    const down = interfacesCheck([lo, { ...eth, operstate: 'down' }], null)
    expect(down.status).toBe('warn')
    expect(down.detail).toContain('eth0: down, 192.0.2.2')
    expect(interfacesCheck([eth], ['lo']).detail).toContain('not listed by libpcap')
  })
})

describe('formatDoctorReport', () => {
  const report: DoctorReport = {
    host: { kernel: '6.1.0', node: 'v20.19.0', euid: 65534, capEff: '0000000000000000' },
    checks: [
      { id: 'nfqueue.capabilities', monitor: 'nfqueue', status: 'fail', summary: 'missing CAP_NET_ADMIN', fix: 'grant CAP_NET_ADMIN' },
      { id: 'nfqueue.queues', monitor: 'nfqueue', status: 'warn', summary: 'bound', detail: 'queue 0: portid 9 (pid 9, \u001b[2Jevil)' },
      { id: 'pcap.addon', monitor: 'pcap', status: 'ok', summary: 'the cap addon loads', detail: 'not shown' },
    ],
    monitors: [
      { monitor: 'ebpf', usable: true, failed: [], warned: [] },
      { monitor: 'nfqueue', usable: false, failed: ['nfqueue.capabilities'], warned: ['nfqueue.queues'] },
      { monitor: 'pcap', usable: true, failed: [], warned: [] },
    ],
    recommended: 'ebpf',
  }

  it('prints one line per check, the fix under a failure, the recommendation last, and no colour off a TTY', () => {
    const text = formatDoctorReport(report, { color: false })
    const lines = text.trimEnd().split('\n')
    const fail = lines.findIndex((l) => l.includes('FAIL') && l.includes('nfqueue.capabilities'))
    expect(fail).toBeGreaterThan(0)
    expect(lines[fail + 1]).toMatch(/^ {10}fix: grant CAP_NET_ADMIN$/)
    expect(text).toContain('=> nfqueue: NOT usable (nfqueue.capabilities)')
    expect(text).not.toContain('not shown')
    expect(text).not.toContain('\u001b')
    expect(text).toContain('\\x1b[2Jevil') // a process name cannot drive the terminal
    expect(lines.at(-1)).toBe('recommended monitor: ebpf')
  })

  it('colours the labels on a TTY', () => {
    const text = formatDoctorReport(report, { color: true })
    expect(text).toContain('\u001b[31mFAIL\u001b[0m')
    expect(formatDoctorReport({ ...report, recommended: null }, { color: false })).toContain('recommended monitor: none')
  })
})
