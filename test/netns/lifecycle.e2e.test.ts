import { existsSync, readFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { NetnsPair } from '../../src/netns/netns-pair.js'
import { distScript, runAttackPlan } from '../../src/netns/sensor-process.js'
import { eventually, isRoot, listening, loadedHoneytrapPrograms, readRows } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

const BATCH_WINDOW_MS = 200

/** Runs the attack client in the background and hands back its result lines as they come. */
function startClient(pair: NetnsPair, plan: unknown[]): { lines: Record<string, unknown>[]; done: Promise<void> } {
  const child = pair.spawn(pair.attackerNs, process.execPath, [distScript('netns/attack-client.js'), JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: Record<string, unknown>[] = []
  let buffered = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    for (const p of parts) if (p.trim() !== '') lines.push(JSON.parse(p) as Record<string, unknown>)
  })
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { lines, done }
}

/** True while `pid` runs (a zombie waiting for whoever reaps orphans here has ended). */
function running(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 25))
  }
}

// The same lifecycle whichever monitor captures; only the clean-up each leaves to check differs (see sensor.e2e).
const MONITORS = {
  nfqueue: { config: 'monitor: { type: nfqueue }', primes: false },
  ebpf: { config: 'monitor: { type: ebpf }', primes: false },
  pcap: { config: 'monitor: { type: pcap }', primes: true }, // the first attempt at a port is lost: prime it
} as const

describe.skipIf(!isRoot).each(Object.entries(MONITORS))('sensor lifecycle on monitor %s: what survives SIGTERM and SIGKILL', (monitor, caps) => {
  let fx: SensorFixture
  let programsBefore: string[] = []

  /** pcap: one lost attempt at the port, then wait for the listener it brought up. */
  async function prime(pair: NetnsPair, port: number): Promise<void> {
    if (!caps.primes) return
    await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port, waitMs: 300 }])
    await eventually(() => listening(pair, 'tcp', port), 5_000)
  }

  beforeEach(async () => {
    programsBefore = monitor === 'ebpf' ? await loadedHoneytrapPrograms() : []
    fx = await startSensorFixture({ label: `life-${monitor}`, configYaml: `${caps.config}\nstore: { batchWindowMs: ${BATCH_WINDOW_MS} }\nresponder: { idleTimeoutMs: 30000 }\n` })
  })

  afterEach(() => fx?.teardown('SIGKILL'))

  it('SIGTERM ends every open session as "shutdown", stores all of them, exits 0 and leaves nothing behind', async () => {
    const { pair, dbPath } = fx
    const rulesBefore = await pair.exec(pair.sensorNs, 'iptables', ['-S'])
    expect(rulesBefore.includes('-j HONEYTRAP')).toBe(monitor === 'nfqueue')
    if (monitor === 'ebpf') expect((await loadedHoneytrapPrograms()).length).toBeGreaterThan(programsBefore.length)
    await prime(pair, 2323)
    const client = startClient(pair, [{ type: 'hold', host: pair.sensorV4, port: 2323, count: 40, holdMs: 20_000 }])
    await until(() => client.lines.some((l) => l['type'] === 'hold-ready'), 15_000)
    expect(client.lines.find((l) => l['type'] === 'hold-ready')).toMatchObject({ connected: 40 })
    // "Open sessions" are connections the sensor has accepted: wait until no listening socket of its namespace has a
    // handshake left in its accept queue (Recv-Q), so that the signal does not race the accepts themselves.
    const deadline = Date.now() + 10_000
    const queued = async (): Promise<number> =>
      (await pair.exec(pair.sensorNs, 'ss', ['-Hltn'])).split('\n').filter((l) => l.trim() !== '').reduce((n, l) => n + Number(l.trim().split(/\s+/)[1] ?? 0), 0)
    while ((await queued()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(await queued()).toBe(0)

    const code = await fx.sensor!.stop('SIGTERM')
    fx.sensor = undefined
    expect(code).toBe(0)
    const rows = readRows<{ close_reason: string }>(dbPath, 'SELECT close_reason FROM attacks WHERE dst_port = 2323')
    expect(rows).toHaveLength(40)
    for (const row of rows) expect(row.close_reason).toBe('shutdown')
    expect(await pair.exec(pair.sensorNs, 'iptables', ['-S'])).not.toContain('HONEYTRAP')
    expect(await pair.exec(pair.sensorNs, 'ip6tables', ['-S'])).not.toContain('HONEYTRAP')
    if (monitor === 'ebpf') expect(await loadedHoneytrapPrograms()).toEqual(programsBefore)
    await client.done
  })

  it('SIGTERM lets handshakes under way complete, and records those connections', async () => {
    const { pair, dbPath } = fx
    const port = 2424
    await prime(pair, port)
    // The attacker's stack thinks each connection is up, but its handshake ACK (the connection's second packet) is
    // dropped: the sensor holds ten handshakes half-done. Its stop begins; 700 ms later the client sends its first
    // bytes, whose segment carries the ACK again and completes each handshake. A sensor that closed its sockets at
    // the signal would have reset all ten, unrecorded (it stores none of them with the grace set to 0).
    await pair.exec(pair.attackerNs, 'iptables', ['-A', 'OUTPUT', '-p', 'tcp', '--dport', String(port), '--tcp-flags', 'ALL', 'ACK', '-m', 'connbytes', '--connbytes', '2:2', '--connbytes-dir', 'original', '--connbytes-mode', 'packets', '-j', 'DROP'])
    const script = [
      "const net = require('node:net')",
      `const sockets = Array.from({ length: 10 }, () => net.connect({ host: ${JSON.stringify(pair.sensorV4)}, port: ${port} }).on('error', () => undefined))`,
      "let up = 0; for (const s of sockets) s.once('connect', () => { if (++up === sockets.length) console.log('up') })",
      "process.stdin.once('data', () => { for (const s of sockets) s.write('late ack'); setTimeout(() => process.exit(0), 5000).unref() })",
      'setTimeout(() => process.exit(1), 30000)',
    ].join('\n')
    const client = pair.spawn(pair.attackerNs, process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] })
    const exited = new Promise<void>((resolve) => client.once('exit', () => resolve()))
    await new Promise<void>((resolve) => client.stdout!.once('data', () => resolve()))
    const halfDone = async (): Promise<number> => (await pair.exec(pair.sensorNs, 'ss', ['-Htn', 'state', 'syn-recv', 'sport', '=', `:${port}`])).split('\n').filter((l) => l.trim() !== '').length
    expect(await eventually(async () => (await halfDone()) === 10, 5_000)).toBe(true)

    const stopped = fx.sensor!.stop('SIGTERM')
    fx.sensor = undefined
    await new Promise((r) => setTimeout(r, 700))
    client.stdin!.end('go\n')
    expect(await stopped).toBe(0)
    // Their bytes arrive as the stop ends their sessions: whether each was read before is a race, the record is not.
    const rows = readRows<{ close_reason: string; src_ip: string }>(dbPath, 'SELECT close_reason, src_ip FROM attacks WHERE dst_port = ?', port)
    expect(rows).toHaveLength(10)
    for (const row of rows) expect(row).toEqual({ close_reason: 'shutdown', src_ip: pair.attackerV4 })
    await exited
  })

  it(`SIGKILL loses no attack that ended more than the batch window (${BATCH_WINDOW_MS} ms) before the kill`, async () => {
    const { pair, dbPath } = fx
    await prime(pair, 8000)
    const client = startClient(pair, [{ type: 'sequence', host: pair.sensorV4, port: 8000, count: 1500, intervalMs: 2, token: 'tok' }])
    // Let a good number of attacks end, then kill mid-stream.
    await until(() => client.lines.filter((l) => l['ok'] === true).length >= 400, 20_000)
    const sensorPid = fx.sensor!.pid
    const children = readFileSync(`/proc/${sensorPid}/task/${sensorPid}/children`, 'utf8').trim().split(/\s+/).filter((p) => p !== '').map(Number)
    expect(children).toHaveLength(1) // the plugin pipeline
    const killedAtMs = Date.now()
    await fx.sensor!.stop('SIGKILL')
    fx.sensor = undefined
    await client.done

    const stored = new Set(readRows<{ payload: Buffer }>(dbPath, 'SELECT payload FROM attacks WHERE dst_port = 8000').map((r) => r.payload.toString()))
    // Allow the window plus time for the kernel to deliver the FIN and the writer to commit: 300 ms of slack.
    const mustHave = client.lines.filter((l) => l['ok'] === true && Number(l['endedAtMs']) < killedAtMs - BATCH_WINDOW_MS - 300)
    expect(mustHave.length).toBeGreaterThanOrEqual(100) // the test means something only if many attacks qualify
    const missing = mustHave.filter((l) => !stored.has(`tok-${String(l['i'])}`))
    expect(missing).toEqual([])
    // And what was lost is bounded too: at most the attacks of the last window or so.
    const ended = client.lines.filter((l) => l['ok'] === true && Number(l['endedAtMs']) < killedAtMs)
    expect(ended.length - stored.size).toBeLessThanOrEqual(ended.length - mustHave.length)
    // The pipeline process notices its parent is gone (the IPC channel closes) and exits by itself.
    await until(() => !running(children[0]!), 15_000)
    expect(running(children[0]!)).toBe(false)
    // eBPF: the kernel detached the programs with the process (poll: the links go with its last reference).
    if (monitor === 'ebpf') {
      await eventually(async () => (await loadedHoneytrapPrograms()).length <= programsBefore.length, 10_000, 200)
      expect(await loadedHoneytrapPrograms()).toEqual(programsBefore)
    }
  })
})
