import type { ChildProcess } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { NetnsPair } from '../../src/netns/netns-pair.js'
import { runAttackPlan } from '../../src/netns/sensor-process.js'
import { isRoot, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

// The NFQUEUE monitor's rules at work, next to the host's own firewall. The queue lives in mangle/INPUT, so accepting
// a packet there never skips the host's filter rules; only attempts the sensor serves carry the mark that its filter
// rule accepts ahead of them. Before this layout, the verdict (and --queue-bypass with no sensor bound) ended the
// filter/INPUT traversal, and a DROP below the jump protected nothing. SYNs to a port already served skip the queue.

const REAL_PORT = 8082 // a real service the host firewall closes to the attacker
const IGNORED_PORT = 7000 // ports.rules: mode ignore
const DROPPED_PORT = 9300 // no service; the host drops it, the sensor serves it
const OPEN_PORT = 9301 // no service and no host rule

/** Packets counted by the mangle chain's RETURN for the sensor's listeners and by its TCP queue rule. */
async function queueCounters(pair: NetnsPair, tool: 'iptables' | 'ip6tables' = 'iptables'): Promise<{ skipped: number; queued: number }> {
  const lines = (await pair.exec(pair.sensorNs, `${tool}-save`, ['-c', '-t', 'mangle'])).split('\n').filter((l) => l.includes('-A HONEYTRAP'))
  const count = (line: string | undefined): number => Number(/^\[(\d+):/.exec(line ?? '')?.[1] ?? Number.NaN)
  return { skipped: count(lines.find((l) => l.includes('--transparent'))), queued: count(lines.find((l) => l.includes('-p tcp') && l.includes('NFQUEUE'))) }
}

interface Row {
  readonly dst_port: number
}

describe.skipIf(!isRoot)('NFQUEUE rules: the host firewall with the sensor running and after it is killed, and the queue skip', () => {
  let fx: SensorFixture
  let pair: NetnsPair
  let realService: ChildProcess | undefined

  const rowsFor = (port: number): Row[] => readRows<Row>(fx.dbPath, 'SELECT dst_port FROM attacks WHERE dst_port = ?', port)
  const attempt = async (port: number): Promise<Record<string, unknown>> => {
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port, send: 'hello\r\n', halfClose: true, waitMs: 1_500 }])
    return result ?? {}
  }

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: 'firewall',
      configYaml: [
        'monitor: { type: nfqueue }',
        'responder: { idleTimeoutMs: 1000 }',
        'store: { batchWindowMs: 100 }',
        `ports: { rules: [ { ports: "${IGNORED_PORT}/tcp", mode: ignore } ] }`,
        'rules: { skipQueueForServedPorts: true }',
        'plugins: { enabled: false }',
        '',
      ].join('\n'),
    })
    pair = fx.pair
    realService = pair.spawn(pair.sensorNs, process.execPath, ['-e', `require('net').createServer((s) => s.end('REAL\\n')).listen(${REAL_PORT}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    await new Promise<void>((resolve) => realService?.stdout?.once('data', () => resolve()))
    // A stateful host firewall below the sensor's jump, as ufw or a hand-written script makes one.
    const host = (...rule: string[]): Promise<string> => pair.exec(pair.sensorNs, 'iptables', ['-w', '10', '-A', 'INPUT', ...rule])
    await host('-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
    await host('-p', 'tcp', '--dport', String(REAL_PORT), '-s', pair.attackerV4, '-j', 'DROP')
    await host('-p', 'tcp', '--dport', String(IGNORED_PORT), '-j', 'DROP')
    await host('-p', 'tcp', '--dport', String(DROPPED_PORT), '-j', 'DROP')
  })

  afterAll(async () => {
    if (realService?.pid !== undefined) process.kill(realService.pid, 'SIGKILL')
    await fx?.teardown()
  })

  it('puts the queue in mangle/INPUT and only the ACCEPT of marked packets ahead of the host rules in filter/INPUT', async () => {
    const mangle = await pair.exec(pair.sensorNs, 'iptables', ['-w', '10', '-t', 'mangle', '-S'])
    expect(mangle).toContain('-A INPUT -j HONEYTRAP')
    expect(mangle).toMatch(/-A HONEYTRAP .*-j NFQUEUE/)
    const filter = (await pair.exec(pair.sensorNs, 'iptables', ['-w', '10', '-S'])).split('\n').filter((l) => l.startsWith('-A '))
    expect(filter[0]).toBe('-A INPUT -j HONEYTRAP')
    expect(filter.filter((l) => l.startsWith('-A HONEYTRAP'))).toEqual(['-A HONEYTRAP -m mark --mark 0x400000/0x400000 -j ACCEPT'])
  })

  it('serves a port the host drops, as a honeypot must, and records the attack', async () => {
    const result = await attempt(DROPPED_PORT)
    expect(result['connected']).toBe(true)
    expect(result['closedBy']).not.toBe('timeout')
    expect((await waitFor(() => rowsFor(DROPPED_PORT), (r) => r.length === 1, 5_000)).length).toBe(1)
    // The next SYN skips the queue (the port's listener is marked) and is accepted ahead of the DROP all the same.
    const again = await attempt(DROPPED_PORT)
    expect(again['connected']).toBe(true)
    expect((await waitFor(() => rowsFor(DROPPED_PORT), (r) => r.length === 2, 5_000)).length).toBe(2)
  })

  it("leaves a real service's port to the host rules: the attacker is dropped, nothing is recorded", async () => {
    // The sensor sees the SYN, finds the port owned and lets it go on unmarked, to the DROP.
    const result = await attempt(REAL_PORT)
    expect(result).toMatchObject({ connected: false, closedBy: 'timeout' })
    expect(rowsFor(REAL_PORT)).toHaveLength(0)
  })

  it('leaves an ignored port to the host rules: dropped, not refused', async () => {
    // Without the host rule the kernel would refuse it (nothing listens); the DROP makes the attempt time out.
    const result = await attempt(IGNORED_PORT)
    expect(result).toMatchObject({ connected: false, closedBy: 'timeout' })
    expect(rowsFor(IGNORED_PORT)).toHaveLength(0)
  })

  it.each([
    ['IPv4', 8443, (p: NetnsPair) => p.sensorV4, 'iptables'],
    ['IPv6', 8444, (p: NetnsPair) => p.sensorV6, 'ip6tables'],
  ] as const)('lets later SYNs to a served port skip the queue (%s), and records their facts from the SYN the kernel saved', async (family, port, host, tool) => {
    const counters = (): Promise<{ skipped: number; queued: number }> => queueCounters(pair, tool)
    const send = async (text: string): Promise<void> => {
      const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: host(pair), port, send: text, halfClose: true, waitMs: 2_000 }])
      expect(result?.['connected']).toBe(true)
    }
    await send('first\r\n') // binds the port: its SYN goes through the queue
    const before = await counters()
    await send('second\r\n')
    const after = await counters()
    expect(after.skipped - before.skipped).toBe(1)
    expect(after.queued - before.queued).toBe(0)
    const rows = await waitFor(
      () => readRows<{ payload: Buffer; dst_ip: string; syn_facts: string | null }>(fx.dbPath, 'SELECT payload, dst_ip, syn_facts FROM attacks WHERE dst_port = ? ORDER BY id', port),
      (r) => r.length === 2,
      5_000,
    )
    expect(rows.map((r) => r.payload.toString())).toEqual(['first\r\n', 'second\r\n'])
    // The attacked address and the facts come from the saved SYN: the same as the queue gives for the first. Only
    // the IPv4 id differs from one SYN to the next.
    expect(rows.map((r) => r.dst_ip)).toEqual([host(pair), host(pair)])
    const facts = rows.map((r) => JSON.parse(r.syn_facts ?? 'null') as Record<string, unknown> | null)
    expect(facts[1]).toMatchObject({ dontFragment: family === 'IPv4', tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3], mss: expect.any(Number), windowScale: expect.any(Number) })
    expect({ ...facts[1], ipId: null }).toEqual({ ...facts[0], ipId: null })
  })

  it('after a SIGKILL (rules left in place, --queue-bypass passing packets) every host rule still applies', async () => {
    const served = await attempt(OPEN_PORT)
    expect(served['connected']).toBe(true)
    await fx.sensor?.stop('SIGKILL')
    fx.sensor = undefined
    // The rules are still there: a killed sensor cannot remove them.
    expect(await pair.exec(pair.sensorNs, 'iptables', ['-w', '10', '-t', 'mangle', '-S'])).toContain('-j NFQUEUE')
    expect(await attempt(REAL_PORT)).toMatchObject({ connected: false, closedBy: 'timeout' })
    expect(await attempt(DROPPED_PORT)).toMatchObject({ connected: false, closedBy: 'timeout' })
    // A port with no host rule and no listener any more: the kernel refuses it, as without the sensor.
    expect(await attempt(OPEN_PORT)).toMatchObject({ connected: false, error: 'ECONNREFUSED' })
  })
})
