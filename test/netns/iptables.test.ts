import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { parsePortSpec, type PortRange } from '../../src/config/port-spec.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { FamilyTables } from '../../src/rules/family-tables.js'
import { buildServedReturnRule, type RuleOptions } from '../../src/rules/iptables-rules.js'
import { installRules, removeRules, rulesStatus, type RulesDeps } from '../../src/rules/iptables-runner.js'

const execFileAsync = promisify(execFile)
const isRoot = process.getuid?.() === 0
if (!isRoot) console.warn('test/netns/iptables.test.ts SKIPPED: needs root to create network namespaces and run iptables')

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const NS = `ht-test-${process.pid}-${randomBytes(3).toString('hex')}`
const QUEUE = 4242
const log = pino({ level: 'silent' })
const deps: RulesDeps = { log, netns: NS }

function ranges(spec: string): PortRange[] {
  const parsed = parsePortSpec(spec)
  if (!parsed.ok) throw new Error(parsed.error)
  return parsed.ranges
}

const OPTS: RuleOptions = { queue: QUEUE, queueCount: 1, exclude: ranges('22/tcp,53/udp'), interface: null, ipv6: true, includeLoopback: false, mark: 0x400000, skipQueueForServedPorts: true }

async function inNs(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', NS, ...args])
  return stdout
}

/** One table as iptables-save prints it, minus comments, COMMIT and packet counters. */
async function savedTable(family: 4 | 6, table: 'mangle' | 'filter'): Promise<string[]> {
  const text = await inNs(family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', table)
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#') && l !== 'COMMIT')
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ''))
}

/** The mangle table (the queue rules) then the filter table (the ACCEPT of marked packets). */
async function saved(family: 4 | 6): Promise<string[]> {
  return [...(await savedTable(family, 'mangle')), ...(await savedTable(family, 'filter'))]
}

const MANGLE_HEAD = ['*mangle', ':PREROUTING ACCEPT', ':INPUT ACCEPT', ':FORWARD ACCEPT', ':OUTPUT ACCEPT', ':POSTROUTING ACCEPT']
const ACCEPT_RULE = '-m mark --mark 0x400000/0x400000 -j ACCEPT'

function expectedSave(lines: { jump: string; rules: string[]; before?: string[]; filterBefore?: string[] }): string[] {
  return [
    ...MANGLE_HEAD,
    ':HONEYTRAP -',
    `-A INPUT ${lines.jump}`,
    ...(lines.before ?? []),
    ...lines.rules.map((r) => `-A HONEYTRAP ${r}`),
    '*filter',
    ':INPUT ACCEPT',
    ':FORWARD ACCEPT',
    ':OUTPUT ACCEPT',
    ':HONEYTRAP -',
    '-A INPUT -j HONEYTRAP',
    ...(lines.filterBefore ?? []),
    `-A HONEYTRAP ${ACCEPT_RULE}`,
  ]
}

const QUEUE_RULES = [
  `-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j NFQUEUE --queue-num ${QUEUE} --queue-bypass`,
  `-p udp -m conntrack --ctstate NEW -j NFQUEUE --queue-num ${QUEUE} --queue-bypass`,
]
// iptables-save's spelling of the RETURN for SYNs to the sensor's own listeners.
const SERVED_RULE = '-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m socket --transparent --nowildcard --restore-skmark -m mark --mark 0x400000/0x400000 -j RETURN'
const DEFAULT_RULES = ['-i lo -j RETURN', '-p tcp -m tcp --dport 22 -j RETURN', '-p udp -m udp --dport 53 -j RETURN', SERVED_RULE, ...QUEUE_RULES]

/** [table, createdChain, addedJump, removedJumps] of each table an install touched. */
function tablesOf(report: Awaited<ReturnType<typeof installRules>>['families'][number]): unknown[] {
  return report.tables.map((t) => [t.table, t.createdChain, t.addedJump, t.removedJumps])
}

describe.skipIf(!isRoot)('iptables rules in a throwaway namespace', () => {
  let queueHolder: ChildProcess | null = null

  beforeAll(async () => {
    await execFileAsync('ip', ['netns', 'add', NS])
    await inNs('ip', 'link', 'set', 'lo', 'up')
  })

  afterAll(async () => {
    try {
      const holder = queueHolder
      if (holder?.pid !== undefined && holder.exitCode === null && holder.signalCode === null) {
        const exited = once(holder, 'exit')
        process.kill(holder.pid, 'SIGKILL')
        await exited
      }
    } finally {
      // By the name made above, whatever failed before: a leftover namespace would hold rules and a queue.
      await execFileAsync('ip', ['netns', 'del', NS])
    }
  })

  it('installs both chains and one jump per table and family, exactly as designed', async () => {
    const report = await installRules(OPTS, deps)
    expect(report.families.map((f) => [f.family, f.skipped, ...tablesOf(f)])).toEqual([
      [4, null, ['filter', true, true, 0], ['mangle', true, true, 0]],
      [6, null, ['filter', true, true, 0], ['mangle', true, true, 0]],
    ])
    expect(report.families[0]?.backend.backend).toBe('nf_tables')
    expect(await saved(4)).toEqual(expectedSave({ jump: '-j HONEYTRAP', rules: DEFAULT_RULES }))
    expect(await saved(6)).toEqual(expectedSave({ jump: '-j HONEYTRAP', rules: DEFAULT_RULES }))
  })

  it('is idempotent: a second install adds nothing and changes nothing', async () => {
    const before = [await saved(4), await saved(6)]
    const report = await installRules(OPTS, deps)
    expect(report.families.map(tablesOf)).toEqual([
      [['filter', false, false, 0], ['mangle', false, false, 0]],
      [['filter', false, false, 0], ['mangle', false, false, 0]],
    ])
    expect([await saved(4), await saved(6)]).toEqual(before)
  })

  it('reports a healthy chain but an unbound queue before the sensor runs', async () => {
    const status = await rulesStatus(QUEUE, { ...deps, expect: OPTS })
    for (const f of status.families) {
      expect(f.skipped).toBeNull()
      const [mangle, filter] = f.tables
      expect(mangle).toMatchObject({ table: 'mangle', chainPresent: true, jumps: ['-j HONEYTRAP'], jumpPosition: 1, rulesAsExpected: true })
      expect(mangle?.rules).toHaveLength(6)
      expect(filter).toMatchObject({ table: 'filter', chainPresent: true, jumps: ['-j HONEYTRAP'], jumpPosition: 1, rulesAsExpected: true, rules: [ACCEPT_RULE] })
    }
    expect(status.queue).toMatchObject({ queue: QUEUE, bound: false, info: null })
    expect(status.ok).toBe(false)
    expect(status.problems).toHaveLength(1)
    expect(status.problems[0]).toMatch(/no program is bound to NFQUEUE 4242/)

    // Without expected options only the shape and queue number are checked; other options make it a mismatch.
    const asExpected = (s: Awaited<ReturnType<typeof rulesStatus>>): boolean[][] => s.families.map((f) => f.tables.map((t) => t.rulesAsExpected))
    expect(asExpected(await rulesStatus(QUEUE, deps))).toEqual([[true, true], [true, true]])
    expect(asExpected(await rulesStatus(QUEUE + 1, deps))).toEqual([[false, true], [false, true]])
    expect(asExpected(await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, exclude: ranges('23/tcp') } }))).toEqual([[false, true], [false, true]])
    const otherMark = await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, mark: 0x800000 } })
    // The mark is in both chains: the ACCEPT, and the RETURN of SYNs to the sensor's own listeners.
    expect(asExpected(otherMark)).toEqual([[false, false], [false, false]])
    // Without the RETURN the mangle chain holds one rule too many; the filter chain is the same.
    expect(asExpected(await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, skipQueueForServedPorts: false } }))).toEqual([[false, true], [false, true]])
    expect(otherMark.problems).toContain('iptables -t filter: chain HONEYTRAP does not hold the expected rules; `honeytrap-ts iptables install` rebuilds it')
  })

  it('sees the queue bound while a program holds it, with its counters', async () => {
    const script = `const { NFQueue } = require('nfqueue'); const q = new NFQueue(); q.open(${QUEUE}, 65535);` +
      ` q.run((p) => p.setVerdict(1)); process.stdout.write('ready\\n')`
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    queueHolder = child
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) resolve()
      })
      child.once('exit', (code) => reject(new Error(`nfqueue holder exited early with ${String(code)}`)))
    })

    const status = await rulesStatus(QUEUE, { ...deps, expect: OPTS })
    expect(status.queue.moduleLoaded).toBe(true)
    expect(status.queue.bound).toBe(true)
    expect(status.queue.info).toMatchObject({ queue: QUEUE, queueTotal: 0, dropped: 0, userDropped: 0 })
    expect(status.queue.info?.portId).toBeGreaterThan(0)
    expect(status.problems).toEqual([])
    expect(status.ok).toBe(true)

    const exited = once(child, 'exit')
    if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
    await exited
    expect((await rulesStatus(QUEUE, deps)).queue.bound).toBe(false)
  })

  it('converges when re-run with other options, and keeps rules it does not own', async () => {
    await inNs('iptables', '-w', '-t', 'mangle', '-A', 'INPUT', '-p', 'tcp', '--dport', '9998', '-j', 'ACCEPT')
    await inNs('iptables', '-w', '-A', 'INPUT', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT')
    const report = await installRules({ ...OPTS, exclude: ranges('8000-8100/tcp'), includeLoopback: true, ipv6: false }, deps)
    expect(report.families.map((f) => f.family)).toEqual([4])
    expect(report.families[0]?.tables.map((t) => [t.table, t.createdChain, t.addedJump, t.removedJumps, t.ruleCount])).toEqual([
      ['filter', false, false, 0, 1],
      ['mangle', false, false, 0, 4],
    ])
    expect(await saved(4)).toEqual(
      expectedSave({
        jump: '-j HONEYTRAP',
        before: ['-A INPUT -p tcp -m tcp --dport 9998 -j ACCEPT'],
        rules: ['-p tcp -m tcp --dport 8000:8100 -j RETURN', SERVED_RULE, ...QUEUE_RULES],
        filterBefore: ['-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT'],
      }),
    )
  })

  it('replaces the queue rules an earlier version kept in the filter table with the ACCEPT of marked packets', async () => {
    await inNs('iptables', '-w', '-A', 'HONEYTRAP', '-p', 'tcp', '--syn', '-j', 'NFQUEUE', '--queue-num', String(QUEUE), '--queue-bypass')
    expect((await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, ipv6: false } })).families[0]?.tables[1]?.rulesAsExpected).toBe(false)
    await installRules({ ...OPTS, exclude: ranges('8000-8100/tcp'), includeLoopback: true, ipv6: false }, deps)
    expect((await savedTable(4, 'filter')).filter((l) => l.startsWith('-A HONEYTRAP'))).toEqual([`-A HONEYTRAP ${ACCEPT_RULE}`])
  })

  it('moves the jump to the requested interface and drops copies added by hand', async () => {
    await inNs('iptables', '-w', '-t', 'mangle', '-A', 'INPUT', '-j', 'HONEYTRAP') // a double insert by hand
    const report = await installRules({ ...OPTS, interface: 'eth9', ipv6: false }, deps)
    expect(report.families[0]?.tables[1]).toMatchObject({ table: 'mangle', addedJump: true, removedJumps: 2, jump: ['-i', 'eth9', '-j', 'HONEYTRAP'] })
    // The filter jump stays unconditional: only packets that came through the mangle chain can carry the mark.
    expect(report.families[0]?.tables[0]).toMatchObject({ table: 'filter', addedJump: false, removedJumps: 0, jump: ['-j', 'HONEYTRAP'] })
    const lines = await savedTable(4, 'mangle')
    expect(lines.filter((l) => l.startsWith('-A INPUT'))).toEqual([
      '-A INPUT -i eth9 -j HONEYTRAP',
      '-A INPUT -p tcp -m tcp --dport 9998 -j ACCEPT',
    ])
    // lo never reaches the chain when the jump is limited to an interface, so there is no lo RETURN.
    expect(lines.filter((l) => l.startsWith('-A HONEYTRAP'))).toEqual(DEFAULT_RULES.slice(1).map((r) => `-A HONEYTRAP ${r}`))

    const status = await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, interface: 'eth9', ipv6: false } })
    expect(status.families[0]?.tables[0]).toMatchObject({ jumps: ['-i eth9 -j HONEYTRAP'], rulesAsExpected: true })
    expect(status.families[0]?.tables[1]).toMatchObject({ jumps: ['-j HONEYTRAP'], rulesAsExpected: true })
    const wrong = await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, ipv6: false } })
    expect(wrong.problems).toContain('iptables -t mangle: the jump is "-i eth9 -j HONEYTRAP", expected "-j HONEYTRAP"')
  })

  it('removes every trace, from both tables and families, and leaves other rules alone', async () => {
    await inNs('iptables', '-w', '-A', 'FORWARD', '-j', 'HONEYTRAP') // a jump elsewhere would block deleting the chain
    const report = await removeRules({ ipv6: true }, deps)
    const both = (v4: number, v6: number): unknown => [
      { family: 4, skipped: null, tables: [{ table: 'mangle', removedJumps: 1, removedChain: true }, { table: 'filter', removedJumps: v4, removedChain: true }] },
      { family: 6, skipped: null, tables: [{ table: 'mangle', removedJumps: 1, removedChain: true }, { table: 'filter', removedJumps: v6, removedChain: true }] },
    ]
    expect(report.families).toEqual(both(2, 1))
    const v4 = await saved(4)
    expect(v4.filter((l) => l.includes('HONEYTRAP'))).toEqual([])
    expect(v4.filter((l) => l.startsWith('-A'))).toEqual(['-A INPUT -p tcp -m tcp --dport 9998 -j ACCEPT', '-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT'])
    expect((await saved(6)).filter((l) => l.startsWith('-A') || l.includes('HONEYTRAP'))).toEqual([])
  })

  it('removes again without error when nothing is there', async () => {
    const report = await removeRules({ ipv6: true }, deps)
    const nothing = [{ table: 'mangle', removedJumps: 0, removedChain: false }, { table: 'filter', removedJumps: 0, removedChain: false }]
    expect(report.families).toEqual([
      { family: 4, skipped: null, tables: nothing },
      { family: 6, skipped: null, tables: nothing },
    ])
    const status = await rulesStatus(QUEUE, deps)
    expect(status.families.map((f) => f.tables.map((t) => [t.chainPresent, t.jumps.length]))).toEqual([
      [[false, 0], [false, 0]],
      [[false, 0], [false, 0]],
    ])
    expect(status.problems).toContain('iptables -t mangle: chain HONEYTRAP is missing; run `honeytrap-ts iptables install`')
    expect(status.problems).toContain('ip6tables -t filter: chain HONEYTRAP is missing; run `honeytrap-ts iptables install`')
  })

  it('undoes only what its own install added (the sensor exit path)', async () => {
    const fresh = await installRules(OPTS, deps)
    await removeRules({ ipv6: true, only: fresh }, deps)
    expect((await saved(4)).filter((l) => l.includes('HONEYTRAP'))).toEqual([])

    await installRules(OPTS, deps) // rules installed by the operator, to persist
    const sensorRun = await installRules(OPTS, deps)
    const report = await removeRules({ ipv6: true, only: sensorRun }, deps)
    expect(report.families.map((f) => f.skipped)).toEqual(['not added by this install', 'not added by this install'])
    expect(await savedTable(4, 'mangle')).toContain('-A INPUT -j HONEYTRAP')
    expect(await savedTable(4, 'filter')).toContain('-A INPUT -j HONEYTRAP')
    await removeRules({ ipv6: true }, deps)
  })

  it('skips IPv6 with a reason, not a failure, when IPv6 is disabled', async () => {
    await inNs('sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1')
    try {
      const report = await installRules(OPTS, deps)
      expect(report.families[0]).toMatchObject({ family: 4, skipped: null })
      expect(tablesOf(report.families[0]!)).toEqual([['filter', true, true, 0], ['mangle', true, true, 0]])
      expect(report.families[1]).toMatchObject({ family: 6, tables: [] })
      expect(report.families[1]?.skipped).toMatch(/IPv6 is disabled/)
      expect((await saved(6)).filter((l) => l.includes('HONEYTRAP'))).toEqual([])
    } finally {
      await inNs('sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=0')
      await removeRules({ ipv6: true }, deps)
    }
  })

  it('names the failing command and quotes iptables when a chain cannot be handled', async () => {
    // An nft base chain of the same name: iptables-nft does not list it, and creating the chain collides with it.
    await inNs('nft', 'add table ip mangle')
    await inNs('nft', 'add chain ip mangle HONEYTRAP { type filter hook input priority -150; }')
    try {
      const err: unknown = await installRules({ ...OPTS, ipv6: false }, deps).catch((e: unknown) => e)
      expect(hasErrorCode(err, 'HT_ERR_RULES')).toBe(true)
      const message = (err as Error).message
      expect(message).toContain(`\`ip netns exec ${NS} iptables -w 10 -t mangle -N HONEYTRAP\` failed with exit code 4`)
      expect(message).toContain('CHAIN_USER_ADD failed (File exists)')
      expect((err as Error).cause).toBeInstanceOf(Error)
      // The self-check passes on what iptables-nft says about the chain it cannot show.
      const status = await rulesStatus(QUEUE, { ...deps, expect: { ...OPTS, ipv6: false } })
      expect(status.problems.some((p) => p.includes('incompatible base-chains'))).toBe(true)
    } finally {
      await inNs('nft', 'delete chain ip mangle HONEYTRAP')
    }
  })

  it('names the setting that leaves the -m socket rule out when iptables refuses it', async () => {
    // A chain that does not exist makes iptables refuse the rule here; a kernel without xt_socket refuses it the same way.
    const err: unknown = await new FamilyTables(4, 'mangle', { netns: NS }).must(['-A', 'HT_ABSENT', ...buildServedReturnRule(0x400000)]).catch((e: unknown) => e)
    expect(hasErrorCode(err, 'HT_ERR_RULES')).toBe(true)
    expect((err as Error).message).toMatch(/-m socket .* failed with exit code \d+: .*set rules\.skipQueueForServedPorts: false/s)
  })

  it('fails with HT_ERR_NETNS for a namespace that does not exist', async () => {
    const err: unknown = await installRules(OPTS, { log, netns: `${NS}-absent` }).catch((e: unknown) => e)
    expect(hasErrorCode(err, 'HT_ERR_NETNS')).toBe(true)
  })
})
