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
  /** The responder's last word: the session is over, for this reason. The first call counts; later ones are ignored. */
  ended(reason: CloseReason): void
}

/** A session the supervisor can end; `end` is idempotent. */
export interface EndableSession {
  end(reason: CloseReason): void
}

/** What a responder taking over a connection from another one (a relay falling back) needs to know. */
export interface HandOver {
  readonly dataSeen: boolean // the attacker already sent bytes (recorded), so an on-data reply is due at once
  readonly peerEnded: boolean // the attacker already sent its FIN: reply as a normal port would, then close
}

/** Serves TCP connections in one mode. */
export interface Responder {
  readonly mode: ResponderMode
  /**
   * Serves one connection to its end, then calls conn.ended with why; never throws for peer misbehaviour. A callback,
   * not a promise: ten thousand held connections would each keep a promise, its resolvers and its reactions.
   */
  handle(conn: Connection, handOver?: HandOver): void
}

/** One UDP session (one peer address and port) as a datagram responder sees it. */
export interface DatagramSession {
  readonly source: Endpoint
  readonly target: Endpoint
  readonly policy: PortPolicy
  readonly recorder: AttackRecorder // every datagram handed to the handler is already recorded
  readonly log: Logger
  /** Sends a datagram to the peer from the attacked port (recording it is the caller's job). */
  send(data: Buffer): void
}

/** A UDP session's behaviour in one mode. */
export interface DatagramHandler {
  /** Handles a datagram from the peer, in arrival order. */
  datagram(data: Buffer): void
  /** The session ended (idle, shutdown, maximum duration, eviction): release what it holds. Called once. */
  close(): void
}

/** Serves UDP sessions in one mode. */
export interface DatagramResponder {
  readonly mode: ResponderMode
  /** Starts a session; its first datagram follows at once through the handler. */
  open(session: DatagramSession): DatagramHandler
}
