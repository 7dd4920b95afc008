/** The data of one attack: plain, read-only records. Behaviour lives in AttackRecorder and the store. */

export type Protocol = 'tcp' | 'udp'
export type AddressFamily = 4 | 6

/** How a port is served. `mirror` and `proxy` are reserved names here; their responders come with the next issue. */
export type ResponderMode = 'normal' | 'ignore' | 'mirror' | 'proxy'

/**
 * Why a session ended. Attacker behaviour is traffic, not failure: it ends up here, never as an exception.
 * - peer-closed: the attacker closed (FIN) or, for UDP, nothing else to wait for
 * - peer-reset: the attacker reset the connection (or the socket errored)
 * - idle-timeout: no bytes from the attacker for the idle timeout
 * - max-duration: the session reached its hard time cap
 * - size-limit: the attack string reached the read limit
 * - replies-done: silence mode sent its last reply and closed, as the original did
 * - shutdown: the sensor was stopping
 * - evicted: a UDP session whose listener was closed to make room for another port (listener bound reached)
 */
export type CloseReason =
  | 'peer-closed'
  | 'peer-reset'
  | 'idle-timeout'
  | 'max-duration'
  | 'size-limit'
  | 'replies-done'
  | 'shutdown'
  | 'evicted'

export interface Endpoint {
  readonly address: string // textual IPv4 ("198.18.0.2") or IPv6 ("fd00::2"), never IPv4-mapped IPv6
  readonly port: number
}

/** One finished session as the store receives it. Hashes are computed by the store's writer, off the hot path. */
export interface Attack {
  readonly id: string // ULID: sorts by start time
  readonly protocol: Protocol
  readonly family: AddressFamily
  readonly mode: ResponderMode
  readonly source: Endpoint // the attacker
  readonly target: Endpoint // the sensor's address and port that was attacked
  readonly startedAtMs: number
  readonly endedAtMs: number
  readonly closeReason: CloseReason
  readonly payload: Buffer // the attack string: bytes received, capped exactly at the read limit
  readonly truncated: boolean // true when bytes beyond the read limit arrived and were not kept
  readonly bytesReceived: number // every byte the attacker sent, kept or not
  readonly bytesSent: number
}

/** An attack as stored: the record plus the digests of its payload (hex). */
export interface StoredAttack extends Attack {
  readonly md5: string
  readonly sha256: string
  readonly sha512: string
}
