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
   * Hands the supervisor the way to end this session early: at shutdown ('shutdown') or when it reaches the maximum
   * session duration ('max-duration'); the responder then resolves with that reason. An object with a method rather
   * than an AbortSignal: an AbortController and an EventTarget listener per connection cost more than all the rest
   * of the bookkeeping on a hot port.
   */
  register(session: EndableSession): void
}

/** A session the supervisor can end; `end` is idempotent. */
export interface EndableSession {
  end(reason: CloseReason): void
}

/** Serves TCP connections in one mode. */
export interface Responder {
  readonly mode: ResponderMode
  /** Serves one connection to its end; resolves with why it ended and never rejects for peer misbehaviour. */
  handle(conn: Connection): Promise<CloseReason>
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
