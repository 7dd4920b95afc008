import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { startBackend, type BackendProcess } from '../../src/netns/backend-process.js'
import type { NetnsPair, NetnsTrio } from '../../src/netns/netns-pair.js'
import { runAttackPlan, startSensorProcess, type LogLine, type SensorProcess } from '../../src/netns/sensor-process.js'
import type { RelayModeStats } from '../../src/responders/relay-stats.js'
import { isRoot, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'
import { formatEndpoint } from '../../src/core/format-endpoint.js'

/**
 * Mirror and proxy end to end (docs/relay.md): a real sensor in its namespace relays real clients from the attacker
 * namespace to services in the attacker namespace (mirror) or in the backend namespace behind the sensor (proxy),
 * falls back to its templates when it may not or cannot, and two sensors mirroring each other do not loop.
 */

const MIB = 1024 * 1024
const BULK_BYTES = 10 * MIB
// Small read limit: the 10 MiB transfers are recorded truncated, so neither the sensor nor the store holds them.
const MAX_ATTACK_BYTES = 64 * 1024
const CONNECT_TIMEOUT_MS = 500

interface Row {
  readonly id: string
  readonly protocol: 'tcp' | 'udp'
  readonly src_ip: string
  readonly dst_ip: string
  readonly dst_port: number
  readonly mode: string
  readonly started_at: number
  readonly close_reason: string
  readonly bytes_received: number
  readonly bytes_sent: number
  readonly truncated: number
  readonly payload: Buffer
  readonly response: Buffer
  readonly response_truncated: number
  readonly transcript: string | null
  readonly relay_target: string | null
  readonly relay_outcome: 'relayed' | 'fallback' | null
  readonly fallback_reason: string | null
}

type Triple = [direction: 'in' | 'out', offsetMs: number, size: number]

// A row with its response: responses are stored once per distinct content and joined back by digest.
const WITH_RESPONSE = 'SELECT a.*, r.data AS response FROM attacks a LEFT JOIN responses r ON r.sha256 = a.response_sha256'

function rowsSince(dbPath: string, since: number, port?: number): Row[] {
  if (port === undefined) return readRows<Row>(dbPath, `${WITH_RESPONSE} WHERE a.started_at >= ? ORDER BY a.id`, since)
  return readRows<Row>(dbPath, `${WITH_RESPONSE} WHERE a.dst_port = ? AND a.started_at >= ? ORDER BY a.id`, port, since)
}

/** Waits (5 s at most) for `count` rows of sessions to `port` that started at or after `since`, and checks there are no more. */
async function storedRows(dbPath: string, port: number, since: number, count: number): Promise<Row[]> {
  const rows = await waitFor(() => rowsSince(dbPath, since, port), (r) => r.length >= count, 5_000)
  expect(rows, `rows stored for port ${port}`).toHaveLength(count)
  return rows
}

/** The one row a test expects for `port`. */
async function storedRow(dbPath: string, port: number, since: number): Promise<Row> {
  const [row] = await storedRows(dbPath, port, since, 1)
  if (row === undefined) throw new Error(`no row for port ${port}`)
  return row
}

function transcriptOf(row: Row): Triple[] {
  return JSON.parse(row.transcript ?? 'null') as Triple[]
}

function transcriptBytes(transcript: readonly Triple[], direction: Triple[0]): number {
  return transcript.filter(([d]) => d === direction).reduce((sum, [, , size]) => sum + size, 0)
}

/** The transcript slices the stored payload and response exactly (nothing here exceeds maxTranscriptChunks). */
function expectTranscriptCoversBlobs(row: Row): Triple[] {
  const transcript = transcriptOf(row)
  expect(transcriptBytes(transcript, 'in'), 'transcript "in" bytes').toBe(row.payload.length)
  expect(transcriptBytes(transcript, 'out'), 'transcript "out" bytes').toBe(row.response.length)
  return transcript
}

function firstOffset(transcript: readonly Triple[], direction: Triple[0]): number {
  const triple = transcript.find(([d]) => d === direction)
  if (triple === undefined) throw new Error(`no "${direction}" chunk in ${JSON.stringify(transcript)}`)
  return triple[1]
}

/** Runs one attack-client step in `ns` (the attacker namespace by default) and returns its result. */
async function attack(pair: NetnsPair, step: Record<string, unknown>, ns: string = pair.attackerNs): Promise<Record<string, unknown>> {
  const [result] = await runAttackPlan(pair, [step], { ns })
  if (result === undefined) throw new Error(`the attack client printed no result for ${JSON.stringify(step)}`)
  return result
}

/** What a `tcp` step received, as text. */
function received(result: Record<string, unknown>): string {
  return Buffer.from(String(result['received']), 'base64').toString('latin1')
}

/** Starts backend-server in `ns` for the current test only. */
async function backendIn(pair: NetnsPair, ns: string, args: readonly string[]): Promise<BackendProcess> {
  const backend = await startBackend(pair, ns, args)
  onTestFinished(async () => {
    await backend.stop()
  })
  return backend
}

/**
 * Drops every packet to TCP `port` inside `ns` (a target whose SYNs go unanswered) until the returned function, or the
 * end of the test, deletes the rule again.
 */
async function dropSyns(pair: NetnsPair, ns: string, port: number): Promise<() => Promise<void>> {
  const rule = ['INPUT', '-p', 'tcp', '--dport', String(port), '-j', 'DROP']
  await pair.exec(ns, 'iptables', ['-w', '-A', ...rule])
  let removed = false
  const remove = async (): Promise<void> => {
    if (removed) return
    removed = true
    await pair.exec(ns, 'iptables', ['-w', '-D', ...rule])
  }
  onTestFinished(() => remove().catch(() => undefined))
  return remove
}

/** How many packets the DROP rule that dropSyns() added for `port` in `ns` has dropped so far. */
async function droppedPackets(pair: NetnsPair, ns: string, port: number): Promise<number> {
  const listing = await pair.exec(ns, 'iptables', ['-w', '-L', 'INPUT', '-v', '-n', '-x'])
  const line = listing.split('\n').find((l) => l.includes('DROP') && l.includes(`dpt:${port}`))
  return Number(line?.trim().split(/\s+/)[0] ?? 0)
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const template = (port: number): string => `TEMPLATE ${port}\r\n`
const PROBE = 'probe\r\n'

/** Writes `<port>_tcp` templates into `<dir>/templates` and returns that directory. */
function writeTemplates(dir: string, ports: readonly number[]): string {
  const templatesDir = join(dir, 'templates')
  mkdirSync(templatesDir, { recursive: true })
  for (const port of ports) writeFileSync(join(templatesDir, `${port}_tcp`), template(port))
  return templatesDir
}


/** A backend event's `remote` ("addr:port" or "[addr]:port") is from `address`. */
function isFrom(remote: unknown, address: string): boolean {
  return String(remote).startsWith(address.includes(':') ? `[${address}]:` : `${address}:`)
}

/**
 * Stops a sensor with SIGTERM (SIGKILL after `timeoutMs`), expects a clean exit, and returns its `sensor stopped` line,
 * read once its stdout has ended (the exit event can come first).
 */
async function stopAndReadSummary(sensor: SensorProcess, timeoutMs = 20_000): Promise<LogLine | undefined> {
  const stdout = sensor.child.stdout
  const ended =
    stdout === null || stdout.readableEnded
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5_000)
          stdout.once('end', () => {
            clearTimeout(timer)
            resolve()
          })
        })
  expect(await sensor.stop('SIGTERM', timeoutMs), `sensor exit; stderr: ${sensor.stderr()}`).toBe(0)
  await ended
  return sensor.lines.find((line) => line.msg === 'sensor stopped')
}

// Mirror and proxy are the same whichever monitor brings the connection in: every suite here runs on NFQUEUE and eBPF.
// (pcap would lose each port's first attempt, which these exact-count tests do not allow for; sensor.e2e covers it.)
const RELAY_MONITORS = [['nfqueue'], ['ebpf']] as const

describe.skipIf(!isRoot).each(RELAY_MONITORS)('relay e2e on monitor %s: mirror back to a service in the attacker namespace', (monitor) => {
  const ECHO = 9000 // echo service on the attacker's side
  const MAPPED = 9001 // mirrorPort: ECHO
  const DIGEST = 9002 // digest service on the attacker's side
  const UDP_ECHO = 9003
  let fx: SensorFixture
  let pair: NetnsPair

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `rmir-${monitor}`,
      configYaml: JSON.stringify({
        monitor: { type: monitor },
        responder: { maxAttackBytes: MAX_ATTACK_BYTES },
        udp: { sessionIdleMs: 500 },
        store: { batchWindowMs: 100 },
        // Both legs of a mirror count against the byte budget: 10 MiB each way is 20 MiB.
        mirror: { bytesPerMinutePerSource: 128 * MIB },
        ports: {
          rules: [
            { ports: `${ECHO}/tcp`, mode: 'mirror' },
            { ports: `${MAPPED}/tcp`, mode: 'mirror', mirrorPort: ECHO },
            { ports: `${DIGEST}/tcp`, mode: 'mirror' },
            { ports: `${UDP_ECHO}/udp`, mode: 'mirror' },
          ],
        },
      }),
    })
    pair = fx.pair
  })

  afterAll(() => fx?.teardown())

  it("relays a TCP exchange to the attacker's own echo service and records both directions", async () => {
    const echo = await backendIn(pair, pair.attackerNs, ['--tcp', String(ECHO), '--mode', 'echo'])
    const since = Date.now()
    const sent = 'hello from the attacker\r\n'
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port: ECHO, send: sent, halfClose: true, waitMs: 3_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'peer' })
    expect(received(result)).toBe(sent)
    // The mirror connects from the sensor: the attacker's service sees the sensor's address, not its own.
    const connection = await echo.waitFor((e) => e.event === 'connection', 1_000)
    expect(isFrom(connection['remote'], pair.sensorV4), String(connection['remote'])).toBe(true)

    const row = await storedRow(fx.dbPath, ECHO, since)
    expect(row).toMatchObject({
      protocol: 'tcp',
      mode: 'mirror',
      src_ip: pair.attackerV4,
      dst_ip: pair.sensorV4,
      relay_outcome: 'relayed',
      relay_target: formatEndpoint(pair.attackerV4, ECHO),
      fallback_reason: null,
      close_reason: 'peer-closed',
      bytes_received: sent.length,
      bytes_sent: sent.length,
      truncated: 0,
      response_truncated: 0,
    })
    expect(row.payload.toString('latin1')).toBe(sent)
    expect(row.response.toString('latin1')).toBe(sent)
    const transcript = expectTranscriptCoversBlobs(row)
    expect(transcript[0]?.[0]).toBe('in')
    expect(firstOffset(transcript, 'out')).toBeGreaterThanOrEqual(firstOffset(transcript, 'in'))
  })

  it("mirrorPort: an attack on one port is relayed to the attacker's other port", async () => {
    const echo = await backendIn(pair, pair.attackerNs, ['--tcp', String(ECHO), '--mode', 'echo'])
    const since = Date.now()
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port: MAPPED, send: 'mapped\n', halfClose: true, waitMs: 3_000 })
    expect(received(result)).toBe('mapped\n')
    await echo.waitFor((e) => e.event === 'closed', 2_000)
    const row = await storedRow(fx.dbPath, MAPPED, since)
    expect(row).toMatchObject({ mode: 'mirror', dst_port: MAPPED, relay_outcome: 'relayed', relay_target: formatEndpoint(pair.attackerV4, ECHO), fallback_reason: null })
    expect(row.response.toString()).toBe('mapped\n')
  })

  it('relays 10 MiB each way with the same SHA-256 at both ends, recording only the read limit', async () => {
    const echo = await backendIn(pair, pair.attackerNs, ['--tcp', String(ECHO), '--mode', 'echo'])
    const since = Date.now()
    const result = await attack(pair, { type: 'bulk', host: pair.sensorV4, port: ECHO, bytes: BULK_BYTES, halfClose: true, readTimeoutMs: 30_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'fin', sentBytes: BULK_BYTES, receivedBytes: BULK_BYTES })
    expect(result['receivedSha256']).toBe(result['sentSha256'])
    const closed = await echo.waitFor((e) => e.event === 'closed', 5_000)
    expect(closed).toMatchObject({ received: BULK_BYTES, sha256: result['sentSha256'], sent: BULK_BYTES, sentSha256: result['sentSha256'] })

    const row = await storedRow(fx.dbPath, ECHO, since)
    expect(row).toMatchObject({ relay_outcome: 'relayed', close_reason: 'peer-closed', bytes_received: BULK_BYTES, bytes_sent: BULK_BYTES, truncated: 1, response_truncated: 1 })
    expect(row.payload.length).toBe(MAX_ATTACK_BYTES)
    // An echo: what came back starts with what was sent.
    expect(row.response.equals(row.payload)).toBe(true)
    expectTranscriptCoversBlobs(row)
  })

  it("passes a half-close on: the attacker's FIN reaches its digest service, whose answer still comes back", async () => {
    await backendIn(pair, pair.attackerNs, ['--tcp', String(DIGEST), '--mode', 'digest'])
    const since = Date.now()
    const result = await attack(pair, { type: 'bulk', host: pair.sensorV4, port: DIGEST, bytes: MIB, halfClose: true, readTimeoutMs: 15_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'fin', sentBytes: MIB })
    expect(JSON.parse(String(result['received']))).toEqual({ bytes: MIB, sha256: result['sentSha256'] })
    const row = await storedRow(fx.dbPath, DIGEST, since)
    expect(row).toMatchObject({ mode: 'mirror', relay_outcome: 'relayed', relay_target: formatEndpoint(pair.attackerV4, DIGEST), close_reason: 'peer-closed', bytes_received: MIB })
    expect(row.response.toString()).toBe(String(result['received']))
  })

  it("relays UDP to the attacker's own echo service; replies come from the attacked port", async () => {
    const echo = await backendIn(pair, pair.attackerNs, ['--udp', String(UDP_ECHO)])
    const since = Date.now()
    const result = await attack(pair, { type: 'udp-exchange', host: pair.sensorV4, port: UDP_ECHO, datagrams: ['one', 'two-two'], waitMs: 500 })
    expect(result['sent']).toBe(2)
    expect(result['replies']).toEqual([
      expect.objectContaining({ from: formatEndpoint(pair.sensorV4, UDP_ECHO), text: 'one' }),
      expect.objectContaining({ from: formatEndpoint(pair.sensorV4, UDP_ECHO), text: 'two-two' }),
    ])
    const datagrams = echo.events.filter((e) => e.event === 'datagram')
    expect(datagrams).toHaveLength(2)
    for (const d of datagrams) expect(isFrom(d['remote'], pair.sensorV4), String(d['remote'])).toBe(true)

    const row = await storedRow(fx.dbPath, UDP_ECHO, since)
    expect(row).toMatchObject({ protocol: 'udp', mode: 'mirror', relay_outcome: 'relayed', relay_target: formatEndpoint(pair.attackerV4, UDP_ECHO), close_reason: 'idle-timeout' })
    expect(row.payload.toString()).toBe('onetwo-two')
    expect(row.response.toString()).toBe('onetwo-two')
  })
})

describe.skipIf(!isRoot).each(RELAY_MONITORS)('relay e2e on monitor %s: proxy to a backend namespace behind the sensor', (monitor) => {
  // Attacked port -> backend port (in the backend namespace).
  const ECHO = { port: 9110, backend: 9100 }
  const DIGEST = { port: 9111, backend: 9101 }
  const RESET = { port: 9112, backend: 9102 }
  const UDP = { port: 9113, backend: 9103 }
  let fx: SensorFixture<NetnsTrio>
  let pair: NetnsTrio

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `rprx-${monitor}`,
      backend: true,
      configYaml: (trio) =>
        JSON.stringify({
          monitor: { type: monitor },
          responder: { maxAttackBytes: MAX_ATTACK_BYTES },
          udp: { sessionIdleMs: 500 },
          store: { batchWindowMs: 100 },
          proxy: {
            targets: {
              echo: { host: trio.backendV4, port: ECHO.backend, protocol: 'tcp' },
              digest: { host: trio.backendV4, port: DIGEST.backend, protocol: 'tcp' },
              reset: { host: trio.backendV4, port: RESET.backend, protocol: 'tcp' },
              'udp-echo': { host: trio.backendV4, port: UDP.backend, protocol: 'udp' },
            },
          },
          ports: {
            rules: [
              { ports: `${ECHO.port}/tcp`, mode: 'proxy', proxy: 'echo' },
              { ports: `${DIGEST.port}/tcp`, mode: 'proxy', proxy: 'digest' },
              { ports: `${RESET.port}/tcp`, mode: 'proxy', proxy: 'reset' },
              { ports: `${UDP.port}/udp`, mode: 'proxy', proxy: 'udp-echo' },
            ],
          },
        }),
    })
    pair = fx.pair
  })

  afterAll(() => fx?.teardown())

  it('relays to the backend and records the exchange in order', async () => {
    const echo = await backendIn(pair, pair.backendNs, ['--tcp', String(ECHO.backend), '--mode', 'echo'])
    const since = Date.now()
    const sent = 'SSH-2.0-attacker_0.1\r\n'
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port: ECHO.port, send: sent, halfClose: true, waitMs: 3_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'peer' })
    expect(received(result)).toBe(sent)
    const connection = await echo.waitFor((e) => e.event === 'connection', 1_000)
    expect(isFrom(connection['remote'], pair.sensorBackendV4), String(connection['remote'])).toBe(true)

    const row = await storedRow(fx.dbPath, ECHO.port, since)
    expect(row).toMatchObject({
      protocol: 'tcp',
      mode: 'proxy',
      src_ip: pair.attackerV4,
      relay_outcome: 'relayed',
      relay_target: formatEndpoint(pair.backendV4, ECHO.backend),
      fallback_reason: null,
      close_reason: 'peer-closed',
    })
    expect(row.payload.toString('latin1')).toBe(sent)
    expect(row.response.toString('latin1')).toBe(sent)
    // One chunk in, its echo out, in that order.
    const transcript = expectTranscriptCoversBlobs(row)
    expect(transcript).toEqual([
      ['in', expect.any(Number), sent.length],
      ['out', expect.any(Number), sent.length],
    ])
    expect(transcript[1]![1]).toBeGreaterThanOrEqual(transcript[0]![1])
  })

  it('relays 10 MiB each way with the same SHA-256 at both ends', async () => {
    const echo = await backendIn(pair, pair.backendNs, ['--tcp', String(ECHO.backend), '--mode', 'echo'])
    const since = Date.now()
    const result = await attack(pair, { type: 'bulk', host: pair.sensorV4, port: ECHO.port, bytes: BULK_BYTES, halfClose: true, readTimeoutMs: 30_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'fin', sentBytes: BULK_BYTES, receivedBytes: BULK_BYTES })
    expect(result['receivedSha256']).toBe(result['sentSha256'])
    const closed = await echo.waitFor((e) => e.event === 'closed', 5_000)
    expect(closed).toMatchObject({ received: BULK_BYTES, sha256: result['sentSha256'], sentSha256: result['sentSha256'] })
    const row = await storedRow(fx.dbPath, ECHO.port, since)
    expect(row).toMatchObject({ mode: 'proxy', relay_outcome: 'relayed', bytes_received: BULK_BYTES, bytes_sent: BULK_BYTES, truncated: 1, response_truncated: 1 })
    expect(row.response.equals(row.payload)).toBe(true)
  })

  it("passes a half-close on: the backend's digest of everything sent comes back after the attacker's FIN", async () => {
    await backendIn(pair, pair.backendNs, ['--tcp', String(DIGEST.backend), '--mode', 'digest'])
    const since = Date.now()
    const result = await attack(pair, { type: 'bulk', host: pair.sensorV4, port: DIGEST.port, bytes: MIB, halfClose: true, readTimeoutMs: 15_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'fin', sentBytes: MIB })
    expect(JSON.parse(String(result['received']))).toEqual({ bytes: MIB, sha256: result['sentSha256'] })
    const row = await storedRow(fx.dbPath, DIGEST.port, since)
    expect(row).toMatchObject({ mode: 'proxy', relay_outcome: 'relayed', close_reason: 'peer-closed', bytes_received: MIB })
    expect(row.response.toString()).toBe(String(result['received']))
  })

  it("passes the backend's reset on as a reset (target-reset)", async () => {
    await backendIn(pair, pair.backendNs, ['--tcp', String(RESET.backend), '--mode', 'reset'])
    const since = Date.now()
    const result = await attack(pair, { type: 'bulk', host: pair.sensorV4, port: RESET.port, bytes: MIB, halfClose: true, readTimeoutMs: 10_000 })
    expect(result).toMatchObject({ connected: true, closedBy: 'reset' })
    expect(['ECONNRESET', 'EPIPE']).toContain(result['error'])
    const row = await storedRow(fx.dbPath, RESET.port, since)
    expect(row).toMatchObject({ mode: 'proxy', relay_outcome: 'relayed', relay_target: formatEndpoint(pair.backendV4, RESET.backend), close_reason: 'target-reset' })
  })

  it('the attacker cannot reach the backend directly: only the sensor does', async () => {
    const echo = await backendIn(pair, pair.backendNs, ['--tcp', String(ECHO.backend), '--mode', 'echo'])
    const results = await runAttackPlan(pair, [
      { type: 'bulk', host: pair.backendV4, port: ECHO.backend, bytes: 10, halfClose: true, readTimeoutMs: 1_000 },
      { type: 'bulk', host: pair.backendV6, port: ECHO.backend, bytes: 10, halfClose: true, readTimeoutMs: 1_000 },
    ])
    expect(results).toHaveLength(2)
    for (const r of results) expect(r).toMatchObject({ connected: false, receivedBytes: 0 })
    expect(echo.events.filter((e) => e.event !== 'listening')).toEqual([])
  })

  it('relays UDP to the backend; replies come from the attacked port', async () => {
    const echo = await backendIn(pair, pair.backendNs, ['--udp', String(UDP.backend)])
    const since = Date.now()
    const result = await attack(pair, { type: 'udp-exchange', host: pair.sensorV4, port: UDP.port, datagrams: ['query-1', 'query-22'], waitMs: 500 })
    expect(result['replies']).toEqual([
      expect.objectContaining({ from: formatEndpoint(pair.sensorV4, UDP.port), text: 'query-1' }),
      expect.objectContaining({ from: formatEndpoint(pair.sensorV4, UDP.port), text: 'query-22' }),
    ])
    const datagrams = echo.events.filter((e) => e.event === 'datagram')
    expect(datagrams).toHaveLength(2)
    for (const d of datagrams) expect(isFrom(d['remote'], pair.sensorBackendV4), String(d['remote'])).toBe(true)
    const row = await storedRow(fx.dbPath, UDP.port, since)
    expect(row).toMatchObject({ protocol: 'udp', mode: 'proxy', relay_outcome: 'relayed', relay_target: formatEndpoint(pair.backendV4, UDP.backend), close_reason: 'idle-timeout' })
    expect(row.payload.toString()).toBe('query-1query-22')
    expect(row.response.toString()).toBe('query-1query-22')
  })
})

describe.skipIf(!isRoot).each(RELAY_MONITORS)('relay e2e on monitor %s: a target that is down or silent falls back to the template', (monitor) => {
  const MIRROR_DOWN = 9200
  const PROXY_DOWN = { port: 9201, backend: 9301 }
  const PROXY_DROPPED = { port: 9202, backend: 9302 }
  const MIRROR_DROPPED = 9203
  const MIRROR_DROPPED_FIN = 9204
  const NORMAL = 9205 // defaultMode normal, for comparison
  let fx: SensorFixture<NetnsTrio>
  let pair: NetnsTrio
  let templatesDir = ''

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `rfal-${monitor}`,
      backend: true,
      prepare: (dir) => {
        templatesDir = writeTemplates(dir, [MIRROR_DOWN, PROXY_DOWN.port, PROXY_DROPPED.port, MIRROR_DROPPED, MIRROR_DROPPED_FIN, NORMAL])
      },
      configYaml: (trio) =>
        JSON.stringify({
          monitor: { type: monitor },
          // A short idle timeout: a fallen-back session closes itself soon after the template, which ends the client.
          responder: { templatesDir, idleTimeoutMs: 400 },
          store: { batchWindowMs: 100 },
          mirror: { connectTimeoutMs: CONNECT_TIMEOUT_MS },
          proxy: {
            connectTimeoutMs: CONNECT_TIMEOUT_MS,
            targets: {
              down: { host: trio.backendV4, port: PROXY_DOWN.backend, protocol: 'tcp' },
              dropped: { host: trio.backendV4, port: PROXY_DROPPED.backend, protocol: 'tcp' },
            },
          },
          ports: {
            rules: [
              { ports: `${MIRROR_DOWN}/tcp`, mode: 'mirror' },
              { ports: `${PROXY_DOWN.port}/tcp`, mode: 'proxy', proxy: 'down' },
              { ports: `${PROXY_DROPPED.port}/tcp`, mode: 'proxy', proxy: 'dropped' },
              { ports: `${MIRROR_DROPPED}/tcp`, mode: 'mirror' },
              { ports: `${MIRROR_DROPPED_FIN}/tcp`, mode: 'mirror' },
            ],
          },
        }),
    })
    pair = fx.pair
  })

  afterAll(() => fx?.teardown())

  /** One session that should fall back: the template comes back and the row says why. */
  async function expectFallback(port: number, reason: string, relayTarget: string): Promise<Row> {
    const since = Date.now()
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port, send: PROBE, waitMs: 3_000 })
    expect(result).toMatchObject({ connected: true })
    expect(received(result)).toBe(template(port))
    const row = await storedRow(fx.dbPath, port, since)
    expect(row).toMatchObject({ relay_outcome: 'fallback', fallback_reason: reason, relay_target: relayTarget, close_reason: 'idle-timeout', bytes_received: PROBE.length })
    expect(row.payload.toString()).toBe(PROBE)
    expect(row.response.toString()).toBe(template(port))
    expectTranscriptCoversBlobs(row)
    return row
  }

  /** One session that should be relayed to an echo service. */
  async function expectRelayed(port: number, relayTarget: string): Promise<void> {
    const since = Date.now()
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port, send: 'again\r\n', halfClose: true, waitMs: 3_000 })
    expect(received(result)).toBe('again\r\n')
    const row = await storedRow(fx.dbPath, port, since)
    expect(row).toMatchObject({ relay_outcome: 'relayed', relay_target: relayTarget, fallback_reason: null })
  }

  it('mirror target refuses: the template answers at once, and once the service is up the port relays again', async () => {
    const row = await expectFallback(MIRROR_DOWN, 'connect-refused', formatEndpoint(pair.attackerV4, MIRROR_DOWN))
    expect(row.mode).toBe('mirror')
    // Refused, not timed out: the template did not wait for connectTimeoutMs.
    expect(firstOffset(transcriptOf(row), 'out')).toBeLessThan(CONNECT_TIMEOUT_MS)
    await backendIn(pair, pair.attackerNs, ['--tcp', String(MIRROR_DOWN), '--mode', 'echo'])
    await expectRelayed(MIRROR_DOWN, formatEndpoint(pair.attackerV4, MIRROR_DOWN))
  })

  it('proxy target refuses: the template answers at once, and once the backend is up the port relays again', async () => {
    const row = await expectFallback(PROXY_DOWN.port, 'connect-refused', formatEndpoint(pair.backendV4, PROXY_DOWN.backend))
    expect(row.mode).toBe('proxy')
    expect(firstOffset(transcriptOf(row), 'out')).toBeLessThan(CONNECT_TIMEOUT_MS)
    await backendIn(pair, pair.backendNs, ['--tcp', String(PROXY_DOWN.backend), '--mode', 'echo'])
    await expectRelayed(PROXY_DOWN.port, formatEndpoint(pair.backendV4, PROXY_DOWN.backend))
  })

  it("proxy target drops SYNs: connect-timeout after connectTimeoutMs, then the template; relays again once it answers", async () => {
    const echo = await backendIn(pair, pair.backendNs, ['--tcp', String(PROXY_DROPPED.backend), '--mode', 'echo'])
    const allow = await dropSyns(pair, pair.backendNs, PROXY_DROPPED.backend)
    const row = await expectFallback(PROXY_DROPPED.port, 'connect-timeout', formatEndpoint(pair.backendV4, PROXY_DROPPED.backend))
    // The template went out when the connect timer fired (whole milliseconds: allow one for rounding).
    const templateAtMs = firstOffset(transcriptOf(row), 'out')
    expect(templateAtMs).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 1)
    expect(templateAtMs).toBeLessThan(CONNECT_TIMEOUT_MS + 1_000)
    expect(echo.events.filter((e) => e.event === 'connection')).toEqual([])
    await allow()
    await expectRelayed(PROXY_DROPPED.port, formatEndpoint(pair.backendV4, PROXY_DROPPED.backend))
  })

  it("mirror target drops SYNs: connect-timeout after connectTimeoutMs, then the template; relays again once it answers", async () => {
    const echo = await backendIn(pair, pair.attackerNs, ['--tcp', String(MIRROR_DROPPED), '--mode', 'echo'])
    // In the attacker's INPUT chain: the attacker's own connection to the sensor is outbound and unaffected.
    const allow = await dropSyns(pair, pair.attackerNs, MIRROR_DROPPED)
    const row = await expectFallback(MIRROR_DROPPED, 'connect-timeout', formatEndpoint(pair.attackerV4, MIRROR_DROPPED))
    expect(firstOffset(transcriptOf(row), 'out')).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 1)
    expect(echo.events.filter((e) => e.event === 'connection')).toEqual([])
    await allow()
    await expectRelayed(MIRROR_DROPPED, formatEndpoint(pair.attackerV4, MIRROR_DROPPED))
  })

  it('a client that sends and half-closes while the target is still connecting gets the template, as on a normal port', async () => {
    await dropSyns(pair, pair.attackerNs, MIRROR_DROPPED_FIN)
    const step = { type: 'tcp', host: pair.sensorV4, send: PROBE, halfClose: true, waitMs: 3_000 }
    // A normal port answers the bytes, then closes on the FIN.
    const normal = await attack(pair, { ...step, port: NORMAL })
    expect(received(normal)).toBe(template(NORMAL))
    // docs/relay.md: a fallback continues in normal mode, and "if the attacker already sent bytes, an on-data reply
    // goes out at once"; the attacker must not be able to tell a fallen-back relay from a normal port.
    const since = Date.now()
    const fallback = await attack(pair, { ...step, port: MIRROR_DROPPED_FIN })
    const row = await storedRow(fx.dbPath, MIRROR_DROPPED_FIN, since)
    expect(row).toMatchObject({ mode: 'mirror', relay_outcome: 'fallback', fallback_reason: 'connect-timeout', bytes_received: PROBE.length })
    expect(received(fallback)).toBe(template(MIRROR_DROPPED_FIN))
    expect(row.response.toString()).toBe(template(MIRROR_DROPPED_FIN))
  })
})

describe.skipIf(!isRoot).each(RELAY_MONITORS)('relay e2e on monitor %s: mirror guards and budgets', (monitor) => {
  // Every budget is per source address, so each budget test attacks from an address of its own: the attacker's IPv4
  // address is on the deny list, the concurrency test uses the attacker's IPv6 address, and the connection and byte
  // budgets are tested from the backend namespace (IPv4 and IPv6), which reaches the sensor's backend-link address.
  const OWN = 9400
  const DENIED = 9401
  const HELD = 9402
  const CONCURRENT = 9403
  const COUNTED = 9404
  const BYTES = 9405
  const BYTE_BUDGET = 20_000
  let fx: SensorFixture<NetnsTrio>
  let pair: NetnsTrio
  let templatesDir = ''

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `rgrd-${monitor}`,
      backend: true,
      prepare: (dir) => {
        templatesDir = writeTemplates(dir, [OWN, DENIED, HELD, CONCURRENT, COUNTED, BYTES])
      },
      configYaml: (trio) =>
        JSON.stringify({
          monitor: { type: monitor },
          // includeLoopback: a connection from the sensor to itself travels over lo, which is otherwise not trapped.
          rules: { includeLoopback: true },
          responder: { templatesDir, idleTimeoutMs: 400 },
          store: { batchWindowMs: 100 },
          mirror: {
            deny: [`${trio.attackerV4.split('.').slice(0, 3).join('.')}.0/24`],
            maxConcurrentPerSource: 1,
            connectionsPerMinutePerSource: 2,
            bytesPerMinutePerSource: BYTE_BUDGET,
          },
          ports: { rules: [{ ports: `${OWN}-${BYTES}/tcp`, mode: 'mirror' }] },
        }),
    })
    pair = fx.pair
  })

  afterAll(() => fx?.teardown())

  it('never mirrors to the sensor itself: its own addresses (own-address) and loopback (special-address)', async () => {
    const since = Date.now()
    // From inside the sensor namespace the source is the address connected to: the sensor's own (or loopback).
    // special-address is checked first, so 127.0.0.1 and ::1 report it; sensorV4 and sensorV6 are own-address.
    const sources = [pair.sensorV4, pair.sensorV6, '127.0.0.1', '::1']
    const results = await runAttackPlan(
      pair,
      sources.map((host) => ({ type: 'tcp', host, port: OWN, send: `from ${host}`, waitMs: 3_000 })),
      { ns: pair.sensorNs },
    )
    expect(results).toHaveLength(sources.length)
    for (const r of results) expect(received(r)).toBe(template(OWN))
    const rows = await storedRows(fx.dbPath, OWN, since, sources.length)
    const bySource = new Map(rows.map((row) => [row.src_ip, row]))
    const expected: Array<[string, string]> = [
      [pair.sensorV4, 'own-address'],
      [pair.sensorV6, 'own-address'],
      ['127.0.0.1', 'special-address'],
      ['::1', 'special-address'],
    ]
    for (const [source, reason] of expected) {
      const row = bySource.get(source)
      expect(row, `row from ${source}`).toMatchObject({ mode: 'mirror', relay_outcome: 'fallback', fallback_reason: reason, relay_target: formatEndpoint(source, OWN) })
      expect(row?.payload.toString()).toBe(`from ${source}`)
    }
  })

  it('never mirrors to a denied range (denied), and serves the template instead', async () => {
    const since = Date.now()
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port: DENIED, send: 'x', waitMs: 3_000 })
    expect(received(result)).toBe(template(DENIED))
    const row = await storedRow(fx.dbPath, DENIED, since)
    expect(row).toMatchObject({ src_ip: pair.attackerV4, relay_outcome: 'fallback', fallback_reason: 'denied', relay_target: formatEndpoint(pair.attackerV4, DENIED) })
  })

  it('maxConcurrentPerSource 1: a second mirror while the first is open falls back (budget-concurrent)', async () => {
    const echo = await backendIn(pair, pair.attackerNs, ['--tcp', String(HELD), '--mode', 'echo'])
    const since = Date.now()
    const holding = runAttackPlan(pair, [{ type: 'hold', host: pair.sensorV6, port: HELD, count: 1, holdMs: 2_000 }])
    onTestFinished(() => holding.then(() => undefined, () => undefined)) // the client ends (bounded) before the test does
    // The service's connection event means the first mirror is up and holds the source's one slot.
    await echo.waitFor((e) => e.event === 'connection', 5_000)
    const second = await attack(pair, { type: 'tcp', host: pair.sensorV6, port: CONCURRENT, send: 'second', waitMs: 3_000 })
    expect(received(second)).toBe(template(CONCURRENT))
    const [held] = await holding
    expect(held).toMatchObject({ type: 'hold-ready', connected: 1 })
    const heldRow = await storedRow(fx.dbPath, HELD, since)
    expect(heldRow).toMatchObject({ src_ip: pair.attackerV6, relay_outcome: 'relayed', relay_target: formatEndpoint(pair.attackerV6, HELD) })
    const refused = await storedRow(fx.dbPath, CONCURRENT, since)
    expect(refused).toMatchObject({ src_ip: pair.attackerV6, relay_outcome: 'fallback', fallback_reason: 'budget-concurrent', relay_target: formatEndpoint(pair.attackerV6, CONCURRENT) })
  })

  it('connectionsPerMinutePerSource 2: the third mirror in a minute falls back (budget-connections)', async () => {
    await backendIn(pair, pair.backendNs, ['--tcp', String(COUNTED), '--mode', 'echo'])
    const since = Date.now()
    const from = { ns: pair.backendNs, host: pair.sensorBackendV4 }
    for (let i = 1; i <= 2; i++) {
      const result = await attack(pair, { type: 'tcp', host: from.host, port: COUNTED, send: `c${i}`, halfClose: true, waitMs: 3_000 }, from.ns)
      expect(received(result)).toBe(`c${i}`)
      // Wait for the row: the slot is released before the session is recorded, so the next one is not concurrent.
      await storedRows(fx.dbPath, COUNTED, since, i)
    }
    const third = await attack(pair, { type: 'tcp', host: from.host, port: COUNTED, send: 'c3', waitMs: 3_000 }, from.ns)
    expect(received(third)).toBe(template(COUNTED))
    const rows = await storedRows(fx.dbPath, COUNTED, since, 3)
    expect(rows.map((r) => [r.src_ip, r.relay_outcome, r.fallback_reason])).toEqual([
      [pair.backendV4, 'relayed', null],
      [pair.backendV4, 'relayed', null],
      [pair.backendV4, 'fallback', 'budget-connections'],
    ])
  })

  it('bytesPerMinutePerSource: a relay that would overspend is cut (budget-spent), and the next session falls back (budget-bytes)', async () => {
    // The service sends 100,000 bytes as soon as it is connected, so they cross the running relay (the cut while
    // forwarding bytes held during the connect has a test of its own, below).
    await backendIn(pair, pair.backendNs, ['--tcp', String(BYTES), '--mode', 'source', '--bytes', '100000'])
    const since = Date.now()
    const from = { ns: pair.backendNs, host: pair.sensorBackendV6 }
    const bulk = await attack(pair, { type: 'bulk', host: from.host, port: BYTES, bytes: 0, halfClose: false, readTimeoutMs: 5_000 }, from.ns)
    expect(bulk).toMatchObject({ connected: true, closedBy: 'fin' })
    // Never more than the budget reached the source's address (the attacker sent nothing: one leg only).
    expect(Number(bulk['receivedBytes'])).toBeLessThanOrEqual(BYTE_BUDGET)
    const cut = await storedRow(fx.dbPath, BYTES, since)
    expect(cut).toMatchObject({ src_ip: pair.backendV6, relay_outcome: 'relayed', close_reason: 'budget-spent', bytes_sent: bulk['receivedBytes'] })

    const nextSince = Date.now()
    const next = await attack(pair, { type: 'tcp', host: from.host, port: BYTES, send: 'next', waitMs: 3_000 }, from.ns)
    const nextRow = await storedRow(fx.dbPath, BYTES, nextSince)
    expect(nextRow).toMatchObject({ src_ip: pair.backendV6, relay_outcome: 'fallback', fallback_reason: 'budget-bytes' })
    expect(received(next)).toBe(template(BYTES))
  })

  it("the 'sensor stopped' line counts every mirror session, as stored", async () => {
    const sensor = fx.sensor
    if (sensor === undefined) throw new Error('the sensor is not running')
    const summary = await stopAndReadSummary(sensor)
    fx.sensor = undefined
    const stats = (summary?.['relay'] as { mirror: RelayModeStats; proxy: RelayModeStats } | undefined)?.mirror
    const rows = readRows<Row>(fx.dbPath, `${WITH_RESPONSE} WHERE a.mode = 'mirror'`)
    const fellBack: Record<string, number> = {}
    for (const row of rows) if (row.fallback_reason !== null) fellBack[row.fallback_reason] = (fellBack[row.fallback_reason] ?? 0) + 1
    expect(stats).toEqual({
      started: rows.length,
      relayed: rows.filter((r) => r.relay_outcome === 'relayed').length,
      fellBack,
      budgetCut: rows.filter((r) => r.close_reason === 'budget-spent').length,
    })
    // What the tests above did, reason by reason.
    expect(stats?.fellBack).toEqual({
      'own-address': 2,
      'special-address': 2,
      denied: 1,
      'budget-concurrent': 1,
      'budget-connections': 1,
      'budget-bytes': 1,
    })
    expect(stats?.budgetCut).toBe(1)
  })
})

describe.skipIf(!isRoot).each(RELAY_MONITORS)('relay e2e on monitor %s: the byte budget runs out on the bytes held while the target was connecting', (monitor) => {
  const PORT = 9500
  const BYTE_BUDGET = 20_000
  const SENT = 100_000
  let fx: SensorFixture
  let pair: NetnsPair

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `rerl-${monitor}`,
      configYaml: JSON.stringify({
        monitor: { type: monitor },
        store: { batchWindowMs: 100 },
        // connectTimeoutMs stays at its 3 s default: the connect succeeds on the SYN retransmitted after 1 s.
        mirror: { bytesPerMinutePerSource: BYTE_BUDGET },
        ports: { rules: [{ ports: `${PORT}/tcp`, mode: 'mirror' }] },
      }),
    })
    pair = fx.pair
  })

  afterAll(async () => {
    // Bounded: a sensor that cannot end a session would otherwise hold the teardown for the fixture's 20 s.
    await fx?.sensor?.stop('SIGTERM', 5_000)
    await fx?.teardown()
  })

  it('a relay cut while forwarding the held bytes is still ended and recorded (budget-spent)', async () => {
    await backendIn(pair, pair.attackerNs, ['--tcp', String(PORT), '--mode', 'digest'])
    // The sensor's first SYN to the attacker's service is dropped and its retransmission, a second later, answered:
    // everything the attacker sends meanwhile is held, and the relay starts by forwarding it, past the budget.
    const allow = await dropSyns(pair, pair.attackerNs, PORT)
    const since = Date.now()
    const client = runAttackPlan(pair, [{ type: 'bulk', host: pair.sensorV4, port: PORT, bytes: SENT, halfClose: true, readTimeoutMs: 5_000 }])
    onTestFinished(() => client.then(() => undefined, () => undefined)) // the client ends (bounded) before the test does
    const deadline = Date.now() + 5_000
    let dropped = 0
    while (dropped === 0 && Date.now() < deadline) {
      await sleep(25)
      dropped = await droppedPackets(pair, pair.attackerNs, PORT)
    }
    expect(dropped, "the sensor's first SYN was dropped").toBeGreaterThan(0)
    await allow()
    const [result] = await client
    expect(result).toMatchObject({ connected: true })
    expect(Number(result?.['receivedBytes'])).toBeLessThanOrEqual(BYTE_BUDGET)
    const row = await storedRow(fx.dbPath, PORT, since)
    expect(row).toMatchObject({ mode: 'mirror', relay_outcome: 'relayed', relay_target: formatEndpoint(pair.attackerV4, PORT), close_reason: 'budget-spent' })
  })

  it('the sensor still stops cleanly on SIGTERM afterwards, and counts the cut', async () => {
    const sensor = fx.sensor
    if (sensor === undefined) throw new Error('the sensor is not running')
    const summary = await stopAndReadSummary(sensor, 5_000)
    fx.sensor = undefined
    const stats = (summary?.['relay'] as { mirror: RelayModeStats } | undefined)?.mirror
    expect(stats).toEqual({ started: 1, relayed: 1, fellBack: {}, budgetCut: 1 })
  })
})

describe.skipIf(!isRoot).each(RELAY_MONITORS)('relay e2e on monitor %s: two sensors mirroring each other', (monitor) => {
  // Sensor A in the sensor namespace, sensor B in the attacker namespace, both mirroring every port. A client in the
  // attacker namespace attacks A; its connection is outbound from B's namespace, so B does not trap it.
  const PORT = 7000
  const MAPPED = 7100 // mirrorPort: MAPPED_TO, on both sensors
  const MAPPED_TO = 7101
  let fx: SensorFixture
  let pair: NetnsPair
  let otherDir: string | undefined
  let otherDb = ''
  let other: SensorProcess | undefined

  const configFor = (templatesDir: string): string =>
    JSON.stringify({
      monitor: { type: monitor },
      // The loop's last hop is served in normal mode: its idle timeout ends the whole chain, hop by hop.
      responder: { templatesDir, idleTimeoutMs: 1_000 },
      store: { batchWindowMs: 100 },
      mirror: { idleTimeoutMs: 5_000 },
      ports: { defaultMode: 'mirror', rules: [{ ports: `${MAPPED}/tcp`, mode: 'mirror', mirrorPort: MAPPED_TO }] },
    })

  beforeAll(async () => {
    let templatesDir = ''
    fx = await startSensorFixture({
      label: `rloop-${monitor}`,
      prepare: (dir) => {
        templatesDir = writeTemplates(dir, [PORT, MAPPED_TO])
      },
      configYaml: () => configFor(templatesDir),
    })
    pair = fx.pair
    otherDir = mkdtempSync(join(tmpdir(), 'ht-rloop-b-'))
    otherDb = join(otherDir, 'attacks.db')
    const otherConfig = join(otherDir, 'config.yaml')
    writeFileSync(otherConfig, configFor(writeTemplates(otherDir, [])))
    // The same pair with the roles of the namespaces swapped: startSensorProcess runs the sensor in `sensorNs`.
    other = await startSensorProcess({ ...pair, sensorNs: pair.attackerNs }, ['--config', otherConfig, '--db', otherDb, '--log-level', 'info'])
  })

  afterAll(async () => {
    await other?.stop()
    if (otherDir !== undefined) rmSync(otherDir, { recursive: true, force: true })
    await fx?.teardown()
  })

  /** Every row either sensor stored for sessions that started at or after `since`. */
  function bothSensors(since: number): { a: Row[]; b: Row[]; total: number } {
    const a = rowsSince(fx.dbPath, since)
    const b = rowsSince(otherDb, since)
    return { a, b, total: a.length + b.length }
  }

  /** Attacks A on `port` and checks the loop is cut within one round and stays cut. */
  async function expectLoopCut(port: number, mirrorPort: number): Promise<{ a: Row[]; b: Row[] }> {
    const since = Date.now()
    const result = await attack(pair, { type: 'tcp', host: pair.sensorV4, port, send: 'ping\r\n', waitMs: 5_000 })
    expect(result).toMatchObject({ connected: true })
    // The bytes went A -> B -> A, where the third hop fell back to A's template, which came all the way back.
    expect(received(result)).toBe(template(mirrorPort))
    const settled = await waitFor(
      () => bothSensors(since),
      (s) => s.total >= 3 && s.a.some((r) => r.fallback_reason === 'loop'),
      Math.max(0, since + 5_000 - Date.now()),
    )
    expect(settled.total).toBeLessThanOrEqual(4)
    expect(settled.a.some((r) => r.fallback_reason === 'loop')).toBe(true)
    await sleep(2_000)
    const later = bothSensors(since)
    expect(later.total, 'no new sessions 2 s later').toBe(settled.total)
    return later
  }

  it('A refuses the third hop of A -> B -> A (loop), and the number of sessions stays at three', async () => {
    const { a, b } = await expectLoopCut(PORT, PORT)
    expect(a.map((r) => [r.src_ip, r.dst_port, r.relay_outcome, r.fallback_reason, r.relay_target])).toEqual([
      [pair.attackerV4, PORT, 'relayed', null, formatEndpoint(pair.attackerV4, PORT)],
      [pair.attackerV4, PORT, 'fallback', 'loop', formatEndpoint(pair.attackerV4, PORT)],
    ])
    expect(b.map((r) => [r.src_ip, r.dst_port, r.relay_outcome, r.fallback_reason, r.relay_target])).toEqual([
      [pair.sensorV4, PORT, 'relayed', null, formatEndpoint(pair.sensorV4, PORT)],
    ])
  })

  it('with mirrorPort the loop is cut the same way: A:7100 -> B:7101 -> A:7101 is refused (loop)', async () => {
    const { a, b } = await expectLoopCut(MAPPED, MAPPED_TO)
    expect(a.map((r) => [r.src_ip, r.dst_port, r.relay_outcome, r.fallback_reason, r.relay_target])).toEqual([
      [pair.attackerV4, MAPPED, 'relayed', null, formatEndpoint(pair.attackerV4, MAPPED_TO)],
      [pair.attackerV4, MAPPED_TO, 'fallback', 'loop', formatEndpoint(pair.attackerV4, MAPPED_TO)],
    ])
    expect(b.map((r) => [r.src_ip, r.dst_port, r.relay_outcome, r.fallback_reason, r.relay_target])).toEqual([
      [pair.sensorV4, MAPPED_TO, 'relayed', null, formatEndpoint(pair.sensorV4, MAPPED_TO)],
    ])
  })
})
