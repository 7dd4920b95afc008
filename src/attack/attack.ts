/** The data of one attack: plain, read-only records. Behaviour lives in AttackRecorder and the store. */

export type Protocol = 'tcp' | 'udp'
export type AddressFamily = 4 | 6

/**
 * How a port is served: `normal` answers from templates, `mirror` relays the attacker to their own address, `proxy`
 * relays to a configured backend, `ignore` leaves the port to the kernel.
 */
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
 * - target-closed: mirror/proxy: the target closed its side and the attacker had nothing more to say
 * - target-reset: mirror/proxy: the target reset the connection (relayed to the attacker as a reset)
 * - budget-spent: mirror: the source's byte budget ran out mid-session, so the relay was cut
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
  | 'target-closed'
  | 'target-reset'
  | 'budget-spent'

/** Who sent a chunk: `in` from the attacker, `out` to the attacker (a template reply or what a relay target sent). */
export type Direction = 'in' | 'out'

/**
 * One chunk of a session, in order. Its bytes are not repeated here: they are the next `size` bytes of `payload` (in)
 * or `response` (out), so the transcript costs a few numbers per chunk. Chunks past a direction's read limit are not
 * listed (that direction's truncated flag says so).
 */
export interface TranscriptChunk {
  readonly direction: Direction
  readonly offsetMs: number // since the session started
  readonly size: number
}

/**
 * Why a mirror or proxy session was served in normal mode instead:
 * - own-address: the mirror target is one of the sensor's own addresses
 * - special-address: loopback, unspecified, link-local, multicast, broadcast or reserved
 * - denied: the mirror target is in `mirror.deny`
 * - loop: the sensor already holds a mirror connection to that address and port (two sensors mirroring each other)
 * - mirror-busy: `mirror.maxConcurrent` mirrors are open already (all sources)
 * - budget-concurrent / budget-connections / budget-bytes: the source's mirror budget is spent
 * - target-busy: the proxy target's concurrency cap is reached
 * - resolve-failed: the proxy target's host name did not resolve
 * - connect-timeout / connect-refused / connect-failed: the connection to the target did not come up
 */
export type FallbackReason =
  | 'own-address'
  | 'special-address'
  | 'denied'
  | 'loop'
  | 'mirror-busy'
  | 'budget-concurrent'
  | 'budget-connections'
  | 'budget-bytes'
  | 'target-busy'
  | 'resolve-failed'
  | 'connect-timeout'
  | 'connect-refused'
  | 'connect-failed'

/** What a mirror or proxy session did with its target. */
export interface RelayInfo {
  readonly target: string // "address:port" ("[v6]:port"), or for a proxy whose name did not resolve, "host:port"
  readonly outcome: 'relayed' | 'fallback'
  readonly reason: FallbackReason | null // set when outcome is 'fallback'
}

/**
 * Header facts of the packet that opened a connection attempt (TCP SYN or first UDP datagram). They are what a later
 * fingerprinting feature needs, taken from the wire; the eBPF monitor reports the same facts
 * (from XDP), and each attack keeps those of the packet that opened it.
 */
export interface SynFacts {
  readonly ttl: number // IPv4 TTL or IPv6 hop limit
  readonly ipId: number | null // IPv4 identification; null for IPv6
  readonly dontFragment: boolean // IPv4 DF bit; false for IPv6
  readonly tcpWindow: number | null // null for UDP
  readonly tcpFlags: number | null // the raw flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80)
  readonly tcpOptions: readonly number[] // option kinds in wire order (e.g. [2, 4, 8, 1, 3]); empty for UDP
  readonly mss: number | null
  readonly windowScale: number | null
}

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
  readonly response: Buffer // bytes sent to the attacker (template replies, or what the relay target sent), read limit
  readonly responseTruncated: boolean
  readonly transcript: readonly TranscriptChunk[]
  readonly transcriptTruncated: boolean // true when chunks past `responder.maxTranscriptChunks` were not listed
  readonly relay: RelayInfo | null // mirror and proxy sessions only
  readonly synFacts: SynFacts | null // of the SYN (or first datagram) that opened the session; null when not seen
}

/** An attack as stored: the record plus the digests of its payload (hex). */
export interface StoredAttack extends Attack {
  readonly md5: string
  readonly sha256: string
  readonly sha512: string
}
