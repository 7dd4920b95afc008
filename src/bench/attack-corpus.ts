import type { Attack, CloseReason } from '../attack/attack.js'
import { createUlid } from '../core/ids.js'
import { createSeededRandom } from '../core/seeded-random.js'
import { realisticPayload } from './pipeline-scenario.js'

/**
 * A reproducible stream of attacks shaped like a month of an exposed sensor's traffic, for the offline-analysis
 * benchmark: skewed sources (a few scanners send most), a port mix led by telnet, SSH, HTTP and SMB, a third of the
 * sessions with no payload (connect scans), campaigns that send the same bytes from many sources, and unique payloads.
 * Seeded, so two runs store the same data; nothing here is sent anywhere, the addresses are only strings.
 */

export interface CorpusOptions {
  readonly count: number
  readonly endMs: number // the last attack starts just before this
  readonly spanMs: number // the first starts this long before endMs
  readonly seed?: number
}

const PORTS: readonly { readonly port: number; readonly protocol: 'tcp' | 'udp'; readonly weight: number }[] = [
  { port: 23, protocol: 'tcp', weight: 20 },
  { port: 22, protocol: 'tcp', weight: 15 },
  { port: 80, protocol: 'tcp', weight: 12 },
  { port: 445, protocol: 'tcp', weight: 10 },
  { port: 8080, protocol: 'tcp', weight: 6 },
  { port: 443, protocol: 'tcp', weight: 5 },
  { port: 3389, protocol: 'tcp', weight: 5 },
  { port: 2323, protocol: 'tcp', weight: 3 },
  { port: 6379, protocol: 'tcp', weight: 3 },
  { port: 5060, protocol: 'udp', weight: 3 },
  { port: 1900, protocol: 'udp', weight: 2 },
]
const OTHER_PORTS_WEIGHT = 16 // the long tail: any port
const SOURCES = 60_000
const CAMPAIGNS = 2_000
const RESPONSES = 20

/** Uniform draws in [0, 1) from the seeded generator. */
function createRandom(seed: number): () => number {
  const next = createSeededRandom(seed)
  return () => next() / 4_294_967_296
}

function sourceAddress(index: number): { address: string; family: 4 | 6 } {
  // One in ten sources speaks IPv6. Index-derived, so a source keeps its address across the month.
  if (index % 10 === 9) return { address: `2001:db8:${(index >> 8).toString(16)}::${(index & 0xff).toString(16)}`, family: 6 }
  return { address: `100.${64 + (index >> 16)}.${(index >> 8) & 0xff}.${index & 0xff}`, family: 4 }
}

function* generate(options: CorpusOptions): Generator<Attack> {
  const random = createRandom(options.seed ?? 0x48_54_52_50)
  const totalWeight = PORTS.reduce((n, p) => n + p.weight, 0) + OTHER_PORTS_WEIGHT
  const campaigns = Array.from({ length: CAMPAIGNS }, (_, i) => realisticPayload(i))
  const responses = Array.from({ length: RESPONSES }, (_, i) => Buffer.from(`HTTP/1.1 200 OK\r\nServer: template-${i}\r\nContent-Length: 0\r\n\r\n`))
  const startMs = options.endMs - options.spanMs
  const stepMs = options.spanMs / options.count
  for (let i = 0; i < options.count; i++) {
    // Cubing a uniform draw skews it towards 0: a few sources send most of the attacks, as on the internet.
    const source = sourceAddress(Math.floor(SOURCES * random() ** 3))
    let pick = random() * totalWeight
    let target: { port: number; protocol: 'tcp' | 'udp' } = { port: 1 + Math.floor(random() * 65_535), protocol: 'tcp' }
    for (const p of PORTS) {
      if (pick < p.weight) {
        target = p
        break
      }
      pick -= p.weight
    }
    const kind = random()
    const payload = kind < 0.35 ? Buffer.alloc(0) : kind < 0.75 ? campaigns[Math.floor(CAMPAIGNS * random() ** 2)]! : realisticPayload(i)
    const closeDraw = random()
    const closeReason: CloseReason = payload.length === 0 ? 'idle-timeout' : closeDraw < 0.7 ? 'peer-closed' : closeDraw < 0.95 ? 'idle-timeout' : 'size-limit'
    const response = payload.length === 0 ? Buffer.alloc(0) : responses[i % RESPONSES]!
    const startedAtMs = Math.floor(startMs + i * stepMs)
    yield {
      id: createUlid(startedAtMs),
      protocol: target.protocol,
      family: source.family,
      mode: 'normal',
      source: { address: source.address, port: 1_024 + Math.floor(random() * 64_000) },
      target: { address: source.family === 6 ? '2001:db8:ffff::1' : '192.0.2.1', port: target.port },
      startedAtMs,
      endedAtMs: startedAtMs + Math.floor(random() * 30_000),
      closeReason,
      payload,
      truncated: false,
      bytesReceived: payload.length,
      bytesSent: response.length,
      response,
      responseTruncated: false,
      transcript: [
        ...(payload.length > 0 ? [{ direction: 'in' as const, offsetMs: 0, size: payload.length }] : []),
        ...(response.length > 0 ? [{ direction: 'out' as const, offsetMs: 1, size: response.length }] : []),
      ],
      transcriptTruncated: false,
      relay: null,
      synFacts: null,
    }
  }
}

/** The corpus in batches of `batchSize`, the way the sensor's store hands attacks to its writer. */
export function* corpusBatches(options: CorpusOptions, batchSize: number): Generator<Attack[]> {
  let batch: Attack[] = []
  for (const attack of generate(options)) {
    batch.push(attack)
    if (batch.length === batchSize) {
      yield batch
      batch = []
    }
  }
  if (batch.length > 0) yield batch
}
