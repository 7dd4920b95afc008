import { createUlid } from '../core/ids.js'
import type { AddressFamily, Attack, CloseReason, Endpoint, Protocol, ResponderMode } from './attack.js'

export interface AttackRecorderOptions {
  readonly protocol: Protocol
  readonly family: AddressFamily
  readonly mode: ResponderMode
  readonly source: Endpoint
  readonly target: Endpoint
  readonly maxAttackBytes: number // the read limit: bytes of attack string kept
  readonly startedAtMs?: number
}

/**
 * Collects one session's attack string and counters. It is the only place that buffers attacker bytes, so the read
 * limit holds exactly: at most `maxAttackBytes` are kept, whatever the chunk sizes (the original overshot by 8 KiB).
 */
export class AttackRecorder {
  readonly id: string
  readonly startedAtMs: number
  readonly #options: AttackRecorderOptions
  #chunks: Buffer[] = []
  #kept = 0
  #received = 0
  #sent = 0
  #truncated = false
  #finished: Attack | null = null

  constructor(options: AttackRecorderOptions) {
    this.#options = options
    this.startedAtMs = options.startedAtMs ?? Date.now()
    this.id = createUlid(this.startedAtMs)
  }

  /** Records bytes from the attacker. Returns true once bytes had to be dropped (the read limit was passed). */
  received(chunk: Buffer): boolean {
    this.#received += chunk.length
    const room = this.#options.maxAttackBytes - this.#kept
    if (chunk.length <= room) {
      if (chunk.length > 0) this.#chunks.push(chunk)
      this.#kept += chunk.length
      return this.#truncated
    }
    if (room > 0) {
      // Copy the head so the kept bytes don't pin a large socket buffer.
      this.#chunks.push(Buffer.from(chunk.subarray(0, room)))
      this.#kept += room
    }
    this.#truncated = true
    return true
  }

  /** Records bytes sent to the attacker. */
  sent(byteCount: number): void {
    this.#sent += byteCount
  }

  get source(): Endpoint {
    return this.#options.source
  }

  get target(): Endpoint {
    return this.#options.target
  }

  get bytesReceived(): number {
    return this.#received
  }

  get bytesSent(): number {
    return this.#sent
  }

  get finished(): boolean {
    return this.#finished !== null
  }

  /** Closes the record; later calls return the same attack, so a session racing two close paths records once. */
  finish(closeReason: CloseReason, endedAtMs: number = Date.now()): Attack {
    if (this.#finished !== null) return this.#finished
    const payload = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#kept)
    this.#chunks = []
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
      payload,
      truncated: this.#truncated,
      bytesReceived: this.#received,
      bytesSent: this.#sent,
    }
    return this.#finished
  }
}
