import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { AttackRecorder } from '../attack/attack-recorder.js'
import type { CloseReason, Endpoint, ResponderMode } from '../attack/attack.js'
import type { PortPolicy } from '../supervisor/port-policy.js'

/** One accepted TCP connection, handed to the responder of its port's mode. */
export interface Connection {
  readonly socket: Socket
  readonly source: Endpoint
  readonly target: Endpoint
  readonly policy: PortPolicy
  readonly recorder: AttackRecorder // every byte in and out goes through it
  readonly log: Logger // child bound to { attackId, src, dport }
  /**
   * Registers how to end this session when the sensor shuts down (the responder then resolves with 'shutdown').
   * A plain callback rather than an AbortSignal: an AbortController and an EventTarget listener per connection cost
   * more than the rest of the bookkeeping on a hot port.
   */
  onShutdown(end: () => void): void
}

/** Serves TCP connections in one mode. */
export interface Responder {
  readonly mode: ResponderMode
  /** Serves one connection to its end; resolves with why it ended and never rejects for peer misbehaviour. */
  handle(conn: Connection): Promise<CloseReason>
}

/** Per-session time and size limits every responder enforces. */
export interface SessionLimits {
  readonly idleTimeoutMs: number
  readonly maxDurationMs: number
}

/** One UDP session (one peer address and port) as a datagram responder sees it. */
export interface DatagramSession {
  readonly source: Endpoint
  readonly target: Endpoint
  readonly recorder: AttackRecorder // the datagram being answered is already recorded
  send(data: Buffer): void
}

/** Serves UDP sessions in one mode. */
export interface DatagramResponder {
  readonly mode: ResponderMode
  /** Answers the datagram that just arrived in `session`. */
  onDatagram(session: DatagramSession): void
}
