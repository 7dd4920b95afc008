import { execFile } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { Attack, CloseReason, Direction } from '../../src/attack/attack.js'
import { iterateAttacks, openAttackDatabase } from '../../src/store/attack-query.js'
import { writePcap } from '../../src/store/pcap-export.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'

const run = promisify(execFile)
const STARTED_MS = Date.UTC(2026, 10, 22, 12, 0, 0)

// Deterministic pseudo-random bytes (a 32-bit LCG): large payloads that no run-length trick reassembles by luck.
function noise(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length)
  let x = seed >>> 0
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0
    out[i] = x >>> 24
  }
  return out
}

interface Spec {
  readonly protocol: 'tcp' | 'udp'
  readonly family: 4 | 6
  readonly chunks: readonly [Direction, number, Buffer][] // direction, offset_ms, bytes
  readonly closeReason?: CloseReason
  readonly dstPort?: number
  readonly transcriptTruncated?: boolean
  readonly extraPayload?: Buffer // bytes past the listed chunks (a truncated transcript)
}

// Session i: the attacker's port is 40000 + i, which is how a tshark stream is matched back to its session.
function attack(i: number, spec: Spec): Attack {
  const pick = (d: Direction): Buffer => Buffer.concat(spec.chunks.filter((c) => c[0] === d).map((c) => c[2]))
  const payload = Buffer.concat([pick('in'), spec.extraPayload ?? Buffer.alloc(0)])
  const response = pick('out')
  const startedAtMs = STARTED_MS + i * 10_000
  return {
    id: `01JZ${String(i).padStart(22, '0')}`,
    protocol: spec.protocol,
    family: spec.family,
    mode: 'normal',
    source: { address: spec.family === 4 ? `198.18.0.${i + 10}` : `fd00::${i + 10}`, port: 40_000 + i },
    target: { address: spec.family === 4 ? '198.18.0.1' : 'fd00::1', port: spec.dstPort ?? (spec.protocol === 'tcp' ? 21 : 40_404) },
    startedAtMs,
    endedAtMs: startedAtMs + 5_000,
    closeReason: spec.closeReason ?? 'peer-closed',
    payload,
    truncated: false,
    bytesReceived: payload.length,
    bytesSent: response.length,
    response,
    responseTruncated: false,
    transcript: spec.chunks.map(([direction, offsetMs, bytes]) => ({ direction, offsetMs, size: bytes.length })),
    transcriptTruncated: spec.transcriptTruncated ?? false,
    relay: null,
    synFacts: null,
  }
}

function b(text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

const SESSIONS: readonly Spec[] = [
  // 0: FTP-like exchange, both directions several times, attacker bytes with controls and invalid UTF-8.
  {
    protocol: 'tcp', family: 4, chunks: [
      ['out', 0, b('220 ready\r\n')], ['in', 300, b('USER x\r\n')], ['out', 301, b('331 pw\r\n')],
      ['in', 900, b('PASS \u001b[2J\u0000\u00ff\r\n')], ['out', 901, b('230 ok\r\n')], ['in', 1500, b('QUIT\r\n')],
    ],
  },
  // 1: IPv6, two requests in a row, and an answer whose offset steps back (a wall-clock step) over two segments.
  { protocol: 'tcp', family: 6, closeReason: 'idle-timeout', chunks: [['in', 0, b('GET / HTTP/1.1\r\n')], ['in', 50, b('Host: x\r\n\r\n')], ['out', 40, noise(3_000, 1)]] },
  // 2: a 200 KB payload, cut into 1460-byte segments.
  { protocol: 'tcp', family: 4, closeReason: 'size-limit', chunks: [['in', 5, noise(200_000, 2)], ['out', 10, b('HTTP/1.1 413 Too Large\r\n\r\n')]] },
  // 3: UDP IPv4 with a 70,000-byte chunk, more than one datagram can carry.
  { protocol: 'udp', family: 4, chunks: [['in', 0, noise(100, 3)], ['out', 1, noise(50, 4)], ['in', 2, noise(70_000, 5)], ['out', 3, noise(20, 6)]] },
  // 4: UDP IPv6, several datagrams.
  { protocol: 'udp', family: 6, chunks: [['in', 0, noise(10, 7)], ['in', 5, noise(20, 8)], ['out', 6, noise(30, 9)]] },
  // 5: a TCP session without a byte either way.
  { protocol: 'tcp', family: 4, chunks: [] },
  // 6: the attacker resets.
  { protocol: 'tcp', family: 4, closeReason: 'peer-reset', chunks: [['in', 0, b('hi')], ['out', 1, b('lo')]] },
  // 7: the relay target resets.
  { protocol: 'tcp', family: 6, closeReason: 'target-reset', chunks: [['in', 0, b('ping')], ['out', 1, b('pong')]] },
  // 8: schema-1 style: its transcript is set to NULL below.
  { protocol: 'tcp', family: 4, chunks: [['in', 0, b('abc')], ['out', 1, b('def')]] },
  // 9: a hand-edited transcript that does not fit the bytes: set below.
  { protocol: 'tcp', family: 4, chunks: [['in', 0, b('abcd')], ['out', 1, b('efgh')]] },
  // 10: more chunks than maxTranscriptChunks: the transcript lists only the first.
  { protocol: 'tcp', family: 4, transcriptTruncated: true, chunks: [['in', 0, b('AAAA')]], extraPayload: b('BBBB') },
  // 11: an empty UDP session.
  { protocol: 'udp', family: 4, chunks: [] },
]

const ATTACKS = SESSIONS.map((spec, i) => attack(i, spec))

// Each run is bounded: killed after a minute, output capped at 64 MiB (the 200 KB stream prints as 400 KB of hex).
async function tshark(...args: string[]): Promise<string> {
  const { stdout } = await run('tshark', args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' })
  return stdout
}

const CHECKS = ['-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE']

let dir = ''
let pcap = ''
let sessionsWritten = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ht-pcap-'))
  const dbPath = join(dir, 'attacks.db')
  const store = await createSqliteStore({
    path: dbPath, batchWindowMs: 20, batchMaxAttacks: 100, maxQueuedAttacks: 1_000, maxQueuedBytes: 1 << 26, log: pino({ level: 'silent' }),
  })
  for (const a of ATTACKS) store.enqueue(a)
  await store.close()
  const writable = new Database(dbPath)
  writable.prepare('UPDATE attacks SET transcript = NULL WHERE id = ?').run(ATTACKS[8]!.id)
  writable.prepare('UPDATE attacks SET transcript = ? WHERE id = ?').run('[["in",0,99999]]', ATTACKS[9]!.id)
  writable.close()

  pcap = join(dir, 'attacks.pcap')
  const db = openAttackDatabase(dbPath)
  try {
    const out = createWriteStream(pcap)
    sessionsWritten = await writePcap(iterateAttacks(db), out)
    out.end()
    await finished(out)
  } finally {
    db.close()
  }
}, 60_000)

afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

// tshark prints each stream's data as hex lines, the server's (node 1's) indented by a tab.
interface Reassembled {
  readonly client: string // "address:port" of node 0, the side that sent the SYN
  readonly in: string // hex
  readonly out: string
}

function parseFollow(text: string): Map<number, Reassembled> {
  const streams = new Map<number, Reassembled>()
  for (const block of text.split(/^=+$/m)) {
    const stream = /^Filter: tcp\.stream eq (\d+)$/m.exec(block)
    const client = /^Node 0: (.*)$/m.exec(block)
    if (stream === null || client === null) continue
    const data = block.slice(block.indexOf('\n', block.indexOf('Node 1:')) + 1).split('\n').filter((l) => l.trim() !== '')
    streams.set(Number(stream[1]), {
      client: client[1]!,
      in: data.filter((l) => !l.startsWith('\t')).map((l) => l.trim()).join(''),
      out: data.filter((l) => l.startsWith('\t')).map((l) => l.trim()).join(''),
    })
  }
  return streams
}

function rows(text: string): string[][] {
  return text.split('\n').filter((l) => l !== '').map((l) => l.split('\t'))
}

// "1795348800.000123000" -> microseconds, without a float rounding the last digits away.
function epochUs(text: string): number {
  const [seconds, fraction = ''] = text.split('.')
  return Number(seconds) * 1_000_000 + Number(fraction.padEnd(6, '0').slice(0, 6))
}

function sessionOfPort(port: string): number {
  return Number(port) - 40_000
}
const TCP_SESSIONS = ATTACKS.flatMap((a, i) => (a.protocol === 'tcp' ? [i] : []))
const UDP_SESSIONS = ATTACKS.flatMap((a, i) => (a.protocol === 'udp' ? [i] : []))

describe('writePcap read back by tshark', () => {
  it('writes every session', () => {
    expect(sessionsWritten).toBe(ATTACKS.length)
  })

  it('reassembles every TCP stream to the stored payload and response, byte for byte', async () => {
    const syns = rows(await tshark('-r', pcap, '-Y', 'tcp.flags.syn == 1 && tcp.flags.ack == 0', '-T', 'fields', '-e', 'tcp.stream', '-e', 'tcp.srcport'))
    expect(syns.map((r) => sessionOfPort(r[1]!))).toEqual(TCP_SESSIONS)
    const follow = syns.flatMap(([stream]) => ['-z', `follow,tcp,raw,${stream}`])
    const streams = parseFollow(await tshark('-r', pcap, '-q', ...follow))
    expect(streams.size).toBe(TCP_SESSIONS.length)
    for (const [stream, port] of syns) {
      const a = ATTACKS[sessionOfPort(port!)]!
      const got = streams.get(Number(stream))!
      expect(got.client).toBe(a.family === 4 ? `${a.source.address}:${a.source.port}` : `[${a.source.address}]:${a.source.port}`)
      expect({ id: a.id, in: got.in, out: got.out }).toEqual({ id: a.id, in: a.payload.toString('hex'), out: a.response.toString('hex') })
    }
  }, 120_000)

  it('carries every UDP chunk in datagrams of at most 65,507 bytes, byte for byte per direction', async () => {
    const datagrams = rows(await tshark('-r', pcap, '-Y', 'udp', '-T', 'fields', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'udp.payload', '-e', 'udp.length'))
    const got = new Map<number, { in: string; out: string; count: number }>()
    for (const [src, dst, payload = '', length] of datagrams) {
      const fromAttacker = dst === '40404'
      const session = sessionOfPort(fromAttacker ? src! : dst!)
      const entry = got.get(session) ?? { in: '', out: '', count: 0 }
      got.set(session, { in: entry.in + (fromAttacker ? payload : ''), out: entry.out + (fromAttacker ? '' : payload), count: entry.count + 1 })
      expect(Number(length) - 8).toBeLessThanOrEqual(65_507)
    }
    expect([...got.keys()].sort((x, y) => x - y)).toEqual(UDP_SESSIONS)
    for (const i of UDP_SESSIONS) {
      expect({ i, in: got.get(i)!.in, out: got.get(i)!.out }).toEqual({ i, in: ATTACKS[i]!.payload.toString('hex'), out: ATTACKS[i]!.response.toString('hex') })
    }
    expect(got.get(3)!.count).toBe(5) // 100, 50, 65,507 + 4,493 (the 70,000-byte chunk split), 20
    expect(got.get(4)!.count).toBe(3)
    expect(got.get(11)!.count).toBe(1) // an empty session is one empty datagram from the attacker
  }, 120_000)

  it('has correct IP, TCP and UDP checksums in every packet', async () => {
    const count = async (filter: string): Promise<number> => rows(await tshark('-r', pcap, ...CHECKS, '-Y', filter, '-T', 'fields', '-e', 'frame.number')).length
    const total = await count('frame')
    expect(total).toBeGreaterThan(150)
    expect(await count('tcp.checksum.status == 1 || udp.checksum.status == 1')).toBe(total) // 1: Good
    expect(await count('ip.checksum.status == 1')).toBe(await count('ip'))
    expect(await count('ipv6')).toBeGreaterThan(0)
    expect(await count('tcp.checksum.status != 1 || udp.checksum.status != 1 || ip.checksum.status != 1')).toBe(0)
  }, 120_000)

  it('has no malformed packet, no TCP analysis warning, and only the two resets as warnings', async () => {
    // FTP is disabled: its dissector warns about the attacker's bytes on port 21, which is content, not framing.
    const warnings = rows(
      await tshark('-r', pcap, ...CHECKS, '--disable-protocol', 'ftp', '-Y', '_ws.malformed || _ws.expert.severity >= warning', '-T', 'fields', '-e', 'tcp.srcport', '-e', 'tcp.dstport', '-e', '_ws.expert.message'),
    )
    expect(warnings).toEqual([['40006', '21', 'Connection reset (RST)'], ['21', '40007', 'Connection reset (RST)']])
    // Retransmissions, lost or unseen segments, duplicate ACKs, full windows: any would mean inconsistent seq/ack.
    expect(await tshark('-r', pcap, '-Y', 'tcp.analysis.flags', '-T', 'fields', '-e', 'frame.number')).toBe('')
  }, 120_000)

  it('cuts TCP data at the MSS and times packets from the row, never going back', async () => {
    const data = rows(await tshark('-r', pcap, '-Y', 'tcp.len > 0', '-T', 'fields', '-e', 'tcp.srcport', '-e', 'tcp.len', '-e', 'ipv6.src'))
    for (const [, length, v6] of data) expect(Number(length)).toBeLessThanOrEqual(v6 === undefined || v6 === '' ? 1_460 : 1_440)
    expect(data.filter(([port]) => port === '40002').length).toBe(Math.ceil(200_000 / 1_460))
    const times = rows(await tshark('-r', pcap, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'tcp.stream', '-e', 'tcp.srcport', '-e', 'tcp.dstport'))
    const us = times.map((r) => epochUs(r[0]!))
    expect(us.every((t, i) => i === 0 || t >= us[i - 1]!)).toBe(true)
    for (const i of TCP_SESSIONS) {
      const a = ATTACKS[i]!
      const own = times.filter(([, , sport, dport]) => sport === String(a.source.port) || dport === String(a.source.port)).map((r) => epochUs(r[0]!))
      expect([own[0], own.at(-1)]).toEqual([a.startedAtMs * 1_000, a.endedAtMs * 1_000])
    }
  }, 120_000)

  it('is reproducible, waits for drain under back-pressure, and rejects when the output fails', async () => {
    const dbPath = join(dir, 'attacks.db')
    const db = openAttackDatabase(dbPath)
    onTestFinished(() => {
      db.close()
    })
    const parts: Buffer[] = []
    let drains = 0
    const slow = new Writable({
      highWaterMark: 1_024,
      write(chunk: Buffer, _encoding, callback): void {
        parts.push(chunk)
        setImmediate(callback)
      },
    })
    slow.on('drain', () => drains++)
    expect(await writePcap(iterateAttacks(db), slow)).toBe(ATTACKS.length)
    expect(drains).toBeGreaterThan(2)
    expect(Buffer.concat(parts).equals(await readFile(pcap))).toBe(true)

    const failing = new Writable({
      highWaterMark: 1_024,
      write(_chunk: Buffer, _encoding, callback): void {
        setImmediate(() => callback(new Error('disk full')))
      },
    })
    await expect(writePcap(iterateAttacks(db), failing)).rejects.toThrow('disk full')
  }, 60_000)

  it('lets tshark see a corrupted byte: the checksum check can fail', async () => {
    const bytes = await readFile(pcap)
    const at = bytes.indexOf('USER x')
    expect(at).toBeGreaterThan(0)
    bytes[at] = 0x75 // 'u'
    const bad = join(dir, 'bad.pcap')
    await writeFile(bad, bytes)
    const flagged = rows(await tshark('-r', bad, ...CHECKS, '-Y', 'tcp.checksum.status == 0', '-T', 'fields', '-e', 'tcp.srcport'))
    expect(flagged).toEqual([['40000']])
  }, 60_000)
})
