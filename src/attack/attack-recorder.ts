import { createUlid } from '../core/ids.js'
import { packSynFacts, unpackSynFacts, type PackedSynFacts } from './packed-syn-facts.js'
import type { AddressFamily, Attack, CloseReason, Direction, Endpoint, Protocol, RelayInfo, ResponderMode, SynFacts, TranscriptChunk } from './attack.js'

export interface AttackRecorderOptions {
  readonly protocol: Protocol
  readonly family: AddressFamily
  readonly mode: ResponderMode
  readonly source: Endpoint
  readonly target: Endpoint
  readonly maxAttackBytes: number // the read limit: bytes kept per direction
  readonly maxTranscriptChunks: number // transcript entries kept; later chunks are counted but not listed
  readonly startedAtMs?: number
}

// The payload or response of a direction that never carried a byte. Never written to: Buffers of length 0 have no bytes.
const NO_BYTES = Buffer.alloc(0)

/**
 * The bytes of one direction, kept up to the read limit exactly whatever the chunk sizes (the original overshot by
 * 8 KiB). Chunks are kept by reference while they fit, so a reply from a shared template costs no copy.
 */
class CappedBytes {
  chunks: Buffer[] = []
  kept = 0
  total = 0
  truncated = false

  /** Adds a chunk; returns how many of its bytes were kept. */
  add(chunk: Buffer, limit: number): number {
    this.total += chunk.length
    const room = limit - this.kept
    if (chunk.length <= room) {
      if (chunk.length > 0) this.chunks.push(chunk)
      this.kept += chunk.length
      return chunk.length
    }
    this.truncated = true
    if (room <= 0) return 0
    // Copy the head so the kept bytes don't pin a large socket buffer.
    this.chunks.push(Buffer.from(chunk.subarray(0, room)))
    this.kept += room
    return room
  }

  take(): Buffer {
    const bytes = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.kept)
    this.chunks = []
    return bytes
  }
}

/**
 * Collects one session: the attack string, what was sent back, and the transcript that interleaves them. It is the
 * only place that buffers session bytes, so the read limit holds in both directions.
 */
export class AttackRecorder {
  readonly id: string
  readonly startedAtMs: number
  readonly #options: AttackRecorderOptions
  // Each made with the first byte of its direction: a connection held open without a byte (10,000 of them in the
  // memory benchmark) then costs no buffers, no chunk lists and no transcript, about 200 bytes of heap less.
  #in: CappedBytes | null = null
  #out: CappedBytes | null = null
  // Flat [direction (0 in, 1 out), offsetMs, size, ...]: three numbers per chunk rather than an object on the hot path.
  #transcript: number[] | null = null
  #transcriptTruncated = false
  #relay: RelayInfo | null = null
  #synFacts: PackedSynFacts | null = null // packed: held for the whole session, by every idle connection
  #finished: Attack | null = null

  constructor(options: AttackRecorderOptions) {
    this.#options = options
    this.startedAtMs = options.startedAtMs ?? Date.now()
    this.id = createUlid(this.startedAtMs)
  }

  /** Records bytes from the attacker. Returns true once bytes had to be dropped (the read limit was passed). */
  received(chunk: Buffer): boolean {
    const bytes = (this.#in ??= new CappedBytes())
    this.#note(0, bytes.add(chunk, this.#options.maxAttackBytes))
    return bytes.truncated
  }

  /** Records bytes sent to the attacker (after they were handed to the socket). */
  sent(chunk: Buffer): void {
    this.#note(1, (this.#out ??= new CappedBytes()).add(chunk, this.#options.maxAttackBytes))
  }

  /** Says what a mirror or proxy session did with its target; the last call wins (a fallback after a relay attempt). */
  setRelay(relay: RelayInfo): void {
    this.#relay = relay
  }

  get mode(): ResponderMode {
    return this.#options.mode
  }

  get source(): Endpoint {
    return this.#options.source
  }

  get target(): Endpoint {
    return this.#options.target
  }

  get bytesReceived(): number {
    return this.#in?.total ?? 0
  }

  get bytesSent(): number {
    return this.#out?.total ?? 0
  }

  /** The header facts of the packet that opened the session, once the monitor has them (before or after accept). */
  setSynFacts(facts: SynFacts): void {
    this.#synFacts ??= packSynFacts(facts)
  }

  get finished(): boolean {
    return this.#finished !== null
  }

  /** Closes the record; later calls return the same attack, so a session racing two close paths records once. */
  finish(closeReason: CloseReason, endedAtMs: number = Date.now()): Attack {
    if (this.#finished !== null) return this.#finished
    const o = this.#options
    this.#finished = {
      id: this.id,
      protocol: o.protocol,
      family: o.family,
      mode: o.mode,
      source: o.source,
      target: o.target,
      startedAtMs: this.startedAtMs,
      endedAtMs: Math.max(endedAtMs, this.startedAtMs),
      closeReason,
      payload: this.#in?.take() ?? NO_BYTES,
      truncated: this.#in?.truncated ?? false,
      bytesReceived: this.#in?.total ?? 0,
      bytesSent: this.#out?.total ?? 0,
      response: this.#out?.take() ?? NO_BYTES,
      responseTruncated: this.#out?.truncated ?? false,
      transcript: this.#takeTranscript(),
      transcriptTruncated: this.#transcriptTruncated,
      relay: this.#relay,
      synFacts: this.#synFacts === null ? null : unpackSynFacts(this.#synFacts),
    }
    return this.#finished
  }

  #note(direction: 0 | 1, size: number): void {
    if (size === 0) return
    const t = (this.#transcript ??= [])
    const offsetMs = Date.now() - this.startedAtMs
    const last = t.length - 3
    // Chunks that arrive in the same direction within the same millisecond are one entry: a relay reading a bulk
    // transfer in 64 KiB pieces would otherwise spend entries without adding any information about the exchange.
    if (last >= 0 && t[last] === direction && t[last + 1] === offsetMs) {
      t[last + 2]! += size
      return
    }
    if (t.length / 3 >= this.#options.maxTranscriptChunks) {
      this.#transcriptTruncated = true
      return
    }
    t.push(direction, offsetMs, size)
  }

  #takeTranscript(): TranscriptChunk[] {
    const t = this.#transcript ?? []
    const chunks: TranscriptChunk[] = []
    for (let i = 0; i < t.length; i += 3) {
      const direction: Direction = t[i] === 0 ? 'in' : 'out'
      chunks.push({ direction, offsetMs: t[i + 1]!, size: t[i + 2]! })
    }
    this.#transcript = null
    return chunks
  }
}
