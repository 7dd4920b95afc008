import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest'
import { startBackend, type BackendEvent, type BackendProcess } from '../../src/netns/backend-process.js'
import { createNetnsPair, type NetnsTrio } from '../../src/netns/netns-pair.js'
import { distScript, runAttackPlan } from '../../src/netns/sensor-process.js'
import { describeNetns } from '../helpers/netns-env.js'

const execFileAsync = promisify(execFile)
const MIB = 1024 * 1024

async function namespaceNames(): Promise<string[]> {
  const { stdout } = await execFileAsync('ip', ['netns', 'list'])
  return stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '')
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

describeNetns('backend server in a third namespace, behind the sensor', () => {
  let trio: NetnsTrio

  beforeAll(async () => {
    trio = await createNetnsPair({ label: 'bk', backend: true })
  })

  afterAll(() => trio?.destroy())

  /** Starts backend-server in the backend namespace, stopped (and checked gone) when the test ends. */
  async function backend(args: readonly string[]): Promise<BackendProcess> {
    const b = await startBackend(trio, trio.backendNs, args)
    onTestFinished(async () => {
      await b.stop()
    })
    return b
  }

  /** Runs one step of the attack client inside the sensor namespace. */
  async function fromSensor(step: Record<string, unknown>): Promise<Record<string, unknown>> {
    const [result] = await runAttackPlan(trio, [step], { ns: trio.sensorNs })
    return result ?? {}
  }

  const closedEvent = (b: BackendProcess): Promise<BackendEvent> => b.waitFor((e) => e.event === 'closed', 5_000)

  it('echo: every byte comes back, over IPv4 and IPv6, and the backend sees the sensor-side address', async () => {
    const b = await backend(['--tcp', '0', '--mode', 'echo'])
    const v4 = await fromSensor({ type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: 256 * 1024, halfClose: true, readTimeoutMs: 10_000 })
    expect(v4).toMatchObject({ connected: true, closedBy: 'fin', sentBytes: 256 * 1024, receivedBytes: 256 * 1024 })
    expect(v4['receivedSha256']).toBe(v4['sentSha256'])
    const closed = await closedEvent(b)
    expect(closed['sha256']).toBe(v4['sentSha256'])
    const connection = await b.waitFor((e) => e.event === 'connection', 1_000)
    expect(String(connection['remote'])).toMatch(new RegExp(`^${trio.sensorBackendV4.replaceAll('.', '\\.')}:\\d+$`))

    const v6 = await fromSensor({ type: 'bulk', host: trio.backendV6, port: b.tcpPort, bytes: 64 * 1024, halfClose: true, readTimeoutMs: 10_000 })
    expect(v6).toMatchObject({ connected: true, closedBy: 'fin', receivedBytes: 64 * 1024 })
    expect(v6['receivedSha256']).toBe(v6['sentSha256'])
  })

  it('digest: a client that half-closes after 1 MiB still receives the digest of what it sent', async () => {
    const b = await backend(['--tcp', '0', '--mode', 'digest'])
    const r = await fromSensor({ type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: MIB, halfClose: true, readTimeoutMs: 15_000 })
    expect(r).toMatchObject({ connected: true, closedBy: 'fin', sentBytes: MIB })
    expect(JSON.parse(String(r['received']))).toEqual({ bytes: MIB, sha256: r['sentSha256'] })
  })

  it('source: sends exactly --bytes, reproducibly from --seed, and reports their sha256', async () => {
    const bytes = 1_000_000
    const b = await backend(['--tcp', '0', '--mode', 'source', '--bytes', String(bytes), '--seed', 'fixed'])
    const first = await fromSensor({ type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: 0, halfClose: false, readTimeoutMs: 10_000 })
    expect(first).toMatchObject({ connected: true, closedBy: 'fin', receivedBytes: bytes })
    expect(first['firstByteMs']).toBeGreaterThanOrEqual(0)
    expect((await closedEvent(b))['sentSha256']).toBe(first['receivedSha256'])
    const second = await fromSensor({ type: 'bulk', host: trio.backendV6, port: b.tcpPort, bytes: 0, halfClose: true, readTimeoutMs: 10_000 })
    expect(second['receivedSha256']).toBe(first['receivedSha256'])
  })

  it('reset: the client sees a reset, not a FIN', async () => {
    const b = await backend(['--tcp', '0', '--mode', 'reset'])
    const r = await fromSensor({ type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: MIB, halfClose: true, readTimeoutMs: 10_000 })
    expect(r).toMatchObject({ connected: true, closedBy: 'reset' })
    expect(['ECONNRESET', 'EPIPE']).toContain(r['error'])
  })

  it('banner: the banner comes first, then the echo', async () => {
    const b = await backend(['--tcp', '0', '--mode', 'banner', '--banner', 'SSH-2.0-backend\r\n'])
    const r = await fromSensor({ type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: 1_000, halfClose: true, readTimeoutMs: 10_000 })
    expect(r).toMatchObject({ closedBy: 'fin', receivedBytes: 17 + 1_000 })
    expect(String(r['received'])).toMatch(/^SSH-2\.0-backend\r\n/)
  })

  it('slow: reads at --rate, so a fast sender is held back, and answers with the digest at FIN', async () => {
    const rate = 256 * 1024
    const b = await backend(['--tcp', '0', '--mode', 'slow', '--rate', String(rate)])
    const r = await fromSensor({ type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: MIB, halfClose: true, readTimeoutMs: 20_000 })
    expect(r).toMatchObject({ closedBy: 'fin' })
    expect(JSON.parse(String(r['received']))).toEqual({ bytes: MIB, sha256: r['sentSha256'] })
    // 1 MiB at 256 KiB/s is 4 s of reading, whatever the kernel buffered on the way.
    expect(Number(r['elapsedMs'])).toBeGreaterThan(3_500)
  })

  it('udp: echoes each datagram to its source, and reports it', async () => {
    const b = await backend(['--udp', '0'])
    const r = await fromSensor({ type: 'udp-exchange', host: trio.backendV4, port: b.udpPort, datagrams: ['one', 'two-two'], waitMs: 500 })
    expect(r['sent']).toBe(2)
    expect(r['replies']).toEqual([
      expect.objectContaining({ from: `${trio.backendV4}:${b.udpPort}`, size: 3, text: 'one' }),
      expect.objectContaining({ from: `${trio.backendV4}:${b.udpPort}`, size: 7, text: 'two-two' }),
    ])
    const r6 = await fromSensor({ type: 'udp-exchange', host: trio.backendV6, port: b.udpPort, datagrams: ['six'], waitMs: 500 })
    expect(r6['replies']).toEqual([expect.objectContaining({ from: `[${trio.backendV6}]:${b.udpPort}`, size: 3 })])
    expect(b.events.filter((e) => e.event === 'datagram')).toHaveLength(3)
  })

  it('the attacker namespace cannot reach the backend (TCP or UDP, IPv4 or IPv6)', async () => {
    const b = await backend(['--tcp', '0', '--udp', '0'])
    const results = await runAttackPlan(trio, [
      { type: 'bulk', host: trio.backendV4, port: b.tcpPort, bytes: 10, halfClose: true, readTimeoutMs: 1_000 },
      { type: 'bulk', host: trio.backendV6, port: b.tcpPort, bytes: 10, halfClose: true, readTimeoutMs: 1_000 },
      { type: 'udp-exchange', host: trio.backendV4, port: b.udpPort, datagrams: ['x'], waitMs: 300 },
      { type: 'udp-exchange', host: trio.backendV6, port: b.udpPort, datagrams: ['x'], waitMs: 300 },
    ])
    for (const tcp of results.slice(0, 2)) {
      expect(tcp).toMatchObject({ connected: false, receivedBytes: 0 })
      expect(Number(tcp['elapsedMs'])).toBeLessThan(1_500)
    }
    for (const udp of results.slice(2)) expect(udp['replies']).toEqual([])
    expect(b.events.filter((e) => e.event !== 'listening')).toEqual([])
  })

  it('stop() ends the backend process: its pid is gone and nothing is left in the namespace', async () => {
    const b = await startBackend(trio, trio.backendNs, ['--tcp', '0', '--udp', '0', '--mode', 'echo'])
    expect(isAlive(b.pid)).toBe(true)
    // `ip netns exec` execs in place: the pid we signal is node's own, the only process in the namespace.
    expect((await execFileAsync('ip', ['netns', 'pids', trio.backendNs])).stdout.trim(), 'processes in the namespace').toBe(String(b.pid))
    expect(await b.stop(), `exit of the backend; stderr: ${b.stderr()}`).toBe(0)
    expect(isAlive(b.pid), 'backend pid after stop()').toBe(false)
    expect((await execFileAsync('ip', ['netns', 'pids', trio.backendNs])).stdout.trim(), 'processes left in the namespace').toBe('')
  })

  it('exits when its stdin closes (the lifeline for a parent that dies without stopping it)', async () => {
    const b = await startBackend(trio, trio.backendNs, ['--tcp', '0'])
    b.child.stdin?.end()
    const exit = await b.waitFor((e) => e.event === 'exit', 5_000)
    expect(exit['signal']).toBe('stdin-end')
    expect(await b.stop()).toBe(0)
    expect(isAlive(b.pid)).toBe(false)
  })

  it('rejects bad flags with exit code 2 and a message naming the flag', async () => {
    for (const args of [['--tcp', '70000'], ['--udp', '1', '--mode', 'nope'], ['--tcp', '1', '--rate', '5'], ['--tcp', '1', '--bogus'], ['--mode', 'echo'], ['--tcp', '1', '--host', 'localhost']]) {
      const failure = await execFileAsync(process.execPath, [distScript('netns/backend-server.js'), ...args]).then(
        () => undefined,
        (err: unknown) => err as { code: number; stderr: string },
      )
      expect(failure?.code, args.join(' ')).toBe(2)
      expect(failure?.stderr).toMatch(/^backend-server: /)
    }
  })

  it('destroy() deletes all three namespaces it created', async () => {
    const other = await createNetnsPair({ label: 'bkd', backend: true })
    const names = [other.sensorNs, other.attackerNs, other.backendNs]
    expect(await namespaceNames()).toEqual(expect.arrayContaining(names))
    await other.destroy()
    const after = await namespaceNames()
    for (const n of names) expect(after).not.toContain(n)
  })
})
