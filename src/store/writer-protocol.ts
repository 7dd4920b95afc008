import type { AddressFamily, Attack, CloseReason, Protocol, ResponderMode } from '../attack/attack.js'

/**
 * The messages between the SQLite store (main thread) and its writer worker, and the batch wire format. Pure: both
 * sides import it, so it must not pull in anything that opens files or starts threads.
 */

/** What the worker needs to open the database; passed as `workerData`. */
export interface WriterConfig {
  readonly path: string
  readonly logLevel: string
  readonly busyTimeoutMs: number
  readonly maxWriteAttempts: number
  readonly retryBaseDelayMs: number
}

/** An attack without its payload, which travels in the batch's shared buffer at [payloadOffset, +payloadLength). */
export interface WireAttack {
  readonly id: string
  readonly protocol: Protocol
  readonly family: AddressFamily
  readonly mode: ResponderMode
  readonly srcIp: string
  readonly srcPort: number
  readonly dstIp: string
  readonly dstPort: number
  readonly startedAtMs: number
  readonly endedAtMs: number
  readonly closeReason: CloseReason
  readonly truncated: boolean
  readonly bytesReceived: number
  readonly bytesSent: number
  readonly payloadOffset: number
  readonly payloadLength: number
}

/** An error as it crosses the thread boundary (structured clone drops custom fields such as `code`). */
export interface WireError {
  readonly name: string
  readonly message: string
  readonly code: string | undefined
}

export type ToWriter =
  | { readonly type: 'batch'; readonly seq: number; readonly attacks: readonly WireAttack[]; readonly payloads: ArrayBuffer }
  | { readonly type: 'close' }

export type FromWriter =
  | { readonly type: 'ready'; readonly schemaVersion: number }
  | { readonly type: 'open-failed'; readonly error: WireError }
  | { readonly type: 'write-failed'; readonly seq: number; readonly attempt: number; readonly error: WireError }
  | { readonly type: 'ack'; readonly seq: number; readonly written: number; readonly dropped: number; readonly committed: boolean }
  | { readonly type: 'closed' }

/**
 * Copies the payloads of a batch into one exact-size ArrayBuffer that the caller transfers to the worker.
 * Why copy: `attack.payload` still belongs to the caller (plugins read it after the store has it), so it must not be
 * detached; and structured clone of a Buffer copies its whole backing ArrayBuffer, which for a pooled Buffer is the
 * 8 KiB pool and for a `subarray` view can be a buffer of megabytes. One memcpy of exactly the payload bytes, then a
 * zero-copy transfer, measured cheapest (see docs/schema.md).
 */
export function packBatch(attacks: readonly Attack[]): { attacks: WireAttack[]; payloads: ArrayBuffer } {
  let total = 0
  for (const attack of attacks) total += attack.payload.length
  // allocUnsafeSlow: not from the pool (so its ArrayBuffer is exactly ours to transfer) and not zero-filled (every
  // byte is overwritten below).
  const buffer = Buffer.allocUnsafeSlow(total)
  const wire: WireAttack[] = []
  let offset = 0
  for (const attack of attacks) {
    const length = attack.payload.length
    attack.payload.copy(buffer, offset)
    wire.push({
      id: attack.id,
      protocol: attack.protocol,
      family: attack.family,
      mode: attack.mode,
      srcIp: attack.source.address,
      srcPort: attack.source.port,
      dstIp: attack.target.address,
      dstPort: attack.target.port,
      startedAtMs: attack.startedAtMs,
      endedAtMs: attack.endedAtMs,
      closeReason: attack.closeReason,
      truncated: attack.truncated,
      bytesReceived: attack.bytesReceived,
      bytesSent: attack.bytesSent,
      payloadOffset: offset,
      payloadLength: length,
    })
    offset += length
  }
  return { attacks: wire, payloads: buffer.buffer }
}

/** The payload of one wire attack, as a view (no copy) into the batch's buffer. */
export function wirePayload(payloads: ArrayBuffer, attack: WireAttack): Buffer {
  return Buffer.from(payloads, attack.payloadOffset, attack.payloadLength)
}

/** Flattens an error for postMessage, keeping the `code` (SQLite's, Node's or a HoneytrapError's) that clone would drop. */
export function toWireError(err: unknown): WireError {
  if (err instanceof Error) {
    const code: unknown = (err as Error & { code?: unknown }).code
    return { name: err.name, message: err.message, code: typeof code === 'string' ? code : undefined }
  }
  return { name: 'Error', message: String(err), code: undefined }
}
