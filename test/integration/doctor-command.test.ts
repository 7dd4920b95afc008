import { execFile, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { describe, expect, it } from 'vitest'

import { execBounded, type Check } from '../../src/doctor/checks.js'
import type { DoctorReport } from '../../src/doctor/run-doctor.js'
import { distScript } from '../../src/netns/sensor-process.js'
import { describeNetns, isRoot } from '../helpers/netns-env.js'

/**
 * The built CLI's `doctor` on this very host: as root it must find what the machine really has (the nfqueue addon is
 * built, the kernel is what uname says), and with its capabilities taken away it must say which are missing and how
 * to grant them, without crashing and without changing anything on the host.
 */

const run = promisify(execFile)
const CLI = distScript('cli/cli.js')
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all']
const NO_CAPS_ROOT = ['--bounding-set=-all', '--inh-caps=-all'] // uid 0 with every capability gone (a locked-down container)
const EBPF_BUILT = ['../../native/build/Release/honeytrap_bpf.node', '../../native/build/bpf/steer.bpf.o'].every((p) =>
  existsSync(fileURLToPath(new URL(p, import.meta.url))),
)

interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

async function cli(prefix: readonly string[], ...args: string[]): Promise<CliResult> {
  const [file, argv] = prefix.length === 0 ? [process.execPath, [CLI, ...args]] : ['setpriv', [...prefix, process.execPath, CLI, ...args]]
  try {
    const { stdout, stderr } = await run(file, argv, { timeout: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

function check(report: DoctorReport, id: string): Check {
  const found = report.checks.find((c) => c.id === id)
  if (found === undefined) throw new Error(`no check ${id} in ${report.checks.map((c) => c.id).join(', ')}`)
  return found
}

/** What the doctor must leave as it found: the filter table, bound queues, and our loaded BPF programs. */
async function hostState(): Promise<string> {
  const rules = await execBounded('iptables', ['-w', '5', '-S'])
  const queues = await readFile('/proc/net/netfilter/nfnetlink_queue', 'utf8').catch(() => 'absent')
  const progs = await execBounded('bpftool', ['--json', 'prog', 'show'])
  const ours = progs.exitCode === 0 ? (JSON.parse(progs.stdout) as { id: number; name?: string }[]).filter((p) => p.name?.startsWith('honeytrap_')).map((p) => p.id) : []
  // Counters move with traffic; the queue lines' first two columns (queue, portid) say who is bound.
  const bound = queues.split('\n').map((l) => l.trim().split(/\s+/).slice(0, 2).join(' '))
  return JSON.stringify({ rules: rules.stdout, bound, ours })
}

function expectShape(report: DoctorReport): void {
  expect(Object.keys(report).sort()).toEqual(['checks', 'host', 'monitors', 'recommended'])
  expect(report.host.node).toBe(process.version)
  expect(report.host.capEff).toMatch(/^[0-9a-f]{16}$/)
  const ids = report.checks.map((c) => c.id)
  expect(new Set(ids).size).toBe(ids.length)
  for (const c of report.checks) {
    expect(['nfqueue', 'ebpf', 'pcap', 'all']).toContain(c.monitor)
    expect(['ok', 'warn', 'fail']).toContain(c.status)
    expect(c.summary.length).toBeGreaterThan(0)
    if (c.status === 'fail') expect(c.fix, `${c.id} fails without a fix`).toBeTruthy()
  }
  expect(report.monitors.map((m) => m.monitor)).toEqual(['ebpf', 'nfqueue', 'pcap'])
  const always = ['kernel.version', 'nfqueue.module', 'nfqueue.iptables', 'nfqueue.addon', 'nfqueue.queue-skip', 'nfqueue.queues', 'nfqueue.rules']
  for (const id of [...always, 'ebpf.probe', 'ebpf.programs', 'pcap.addon', 'pcap.interfaces']) expect(ids).toContain(id)
}

describe('execBounded', () => {
  it('reports a missing program and kills one that runs past its deadline', async () => {
    expect(await execBounded('honeytrap-no-such-tool', [])).toMatchObject({ notFound: true, exitCode: null })
    const started = Date.now()
    expect(await execBounded('sleep', ['10'], 200)).toMatchObject({ timedOut: true, exitCode: null })
    expect(Date.now() - started).toBeLessThan(5_000)
  })
})

describeNetns('honeytrap-ts doctor on this host', () => {
  it('as root: finds the real kernel, a usable nfqueue, changes nothing, and exits 0', async () => {
    const before = await hostState()
    const result = await cli([], 'doctor', '--json')
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const report = JSON.parse(result.stdout) as DoctorReport
    expectShape(report)

    const { stdout: uname } = await run('uname', ['-r'])
    expect(report.host.kernel).toBe(uname.trim())
    expect(check(report, 'kernel.version').summary).toBe(`Linux ${uname.trim()}`)
    expect(report.host.euid).toBe(0)

    const nfqueue = report.monitors.find((m) => m.monitor === 'nfqueue')
    expect(nfqueue).toMatchObject({ usable: true, failed: [] })
    expect(check(report, 'nfqueue.addon').status).toBe('ok')
    // Debian's kernel has xt_socket; the socket addon is what a build may lack.
    const socketAddonBuilt = existsSync(fileURLToPath(new URL('../../native/build/Release/honeytrap_socket.node', import.meta.url)))
    expect(check(report, 'nfqueue.queue-skip').status).toBe(socketAddonBuilt ? 'ok' : 'warn')
    expect(check(report, 'nfqueue.capabilities').status).toBe('ok')
    const { stdout: iptablesV } = await run('iptables', ['-V'])
    const version = /v(\d[\w.]*)/.exec(iptablesV)?.[1] ?? 'unparsed'
    expect(check(report, 'nfqueue.iptables').summary).toContain(version)

    if (EBPF_BUILT) {
      expect(check(report, 'ebpf.build').status).toBe('ok')
      expect(check(report, 'ebpf.probe').status).toBe('ok')
    } else {
      expect(check(report, 'ebpf.build')).toMatchObject({ status: 'fail', fix: expect.stringContaining('npm run build:native') })
    }
    const bpftool = spawnSync('bpftool', ['version']).status === 0
    const programs = check(report, 'ebpf.programs')
    if (bpftool) expect(programs.summary).not.toContain('not installed')
    else expect(programs).toMatchObject({ status: 'warn', fix: expect.stringContaining('apt-get install bpftool') })

    expect(report.recommended).toBe(report.monitors.find((m) => m.usable)?.monitor)
    expect(['ebpf', 'nfqueue']).toContain(report.recommended)
    expect(await hostState()).toBe(before)
  })

  it('as root, in words: every check on its own line and the recommendation last, without colour when piped', async () => {
    const json = JSON.parse((await cli([], 'doctor', '--json')).stdout) as DoctorReport
    const result = await cli([], 'doctor')
    expect(result.code).toBe(0)
    expect(result.stdout).not.toContain('\u001b')
    for (const c of json.checks) expect(result.stdout).toMatch(new RegExp(`^  (ok  |warn|FAIL)  ${c.id.replace('.', '\\.')} `, 'm'))
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe(`recommended monitor: ${json.recommended ?? 'none'}`)
  })

  const nobodyCanRun = isRoot && spawnSync('setpriv', [...NOBODY, process.execPath, CLI, '--version']).status === 0
  if (isRoot && !nobodyCanRun) console.warn(`\n*** uid 65534 cannot run ${CLI} (a checkout it cannot read?): that case is covered by uid 0 without capabilities ***\n`)
  const unprivileged = [
    { who: 'as nobody (uid 65534)', prefix: NOBODY, euid: 65534, enabled: nobodyCanRun },
    { who: 'as root stripped of every capability', prefix: NO_CAPS_ROOT, euid: 0, enabled: true },
  ]
  for (const { who, prefix, euid, enabled } of unprivileged) {
    it.runIf(enabled)(`${who}: reports the missing capabilities as failures naming them, and exits 1`, async () => {
      const before = await hostState()
      const result = await cli(prefix, 'doctor', '--json')
      expect(result.stderr).toBe('')
      expect(result.code).toBe(1)
      const report = JSON.parse(result.stdout) as DoctorReport
      expectShape(report)
      expect(report.host).toMatchObject({ euid, capEff: '0000000000000000' })
      const wanted = { nfqueue: ['CAP_NET_ADMIN', 'CAP_NET_RAW'], ebpf: ['CAP_BPF', 'CAP_NET_ADMIN'], pcap: ['CAP_NET_RAW'] }
      for (const [monitor, caps] of Object.entries(wanted)) {
        const c = check(report, `${monitor}.capabilities`)
        expect(c.status).toBe('fail')
        for (const cap of caps) {
          expect(c.summary).toContain(cap)
          expect(c.fix).toContain(cap)
        }
        expect(report.monitors.find((m) => m.monitor === monitor)?.failed).toContain(`${monitor}.capabilities`)
      }
      if (EBPF_BUILT) expect(check(report, 'ebpf.probe')).toMatchObject({ status: 'fail', summary: expect.stringContaining('EPERM') })
      expect(check(report, 'nfqueue.rules').status).toBe('warn')
      expect(report.monitors.every((m) => !m.usable)).toBe(true)
      expect(report.recommended).toBeNull()
      expect(await hostState()).toBe(before)
    })
  }
})
