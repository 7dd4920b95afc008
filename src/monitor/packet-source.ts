import type { AddressFamily, Protocol } from '../attack/attack.js'

/**
 * Header facts of the packet that opened a connection attempt (TCP SYN or first UDP datagram). They are what a later
 * fingerprinting feature needs, taken from the wire; the eBPF monitor reports the same facts.
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

/** One new inbound connection attempt as a monitor sees it. */
export interface ConnectionAttempt {
  readonly family: AddressFamily
  readonly protocol: Protocol
  readonly srcAddress: string
  readonly srcPort: number
  readonly dstAddress: string
  readonly dstPort: number
  readonly facts: SynFacts
}

/**
 * Decides what happens to an attempt before the monitor lets it through. Returning a promise holds the packet until
 * it settles (bind-before-accept); the monitor then accepts it whatever the outcome.
 */
export type AttemptHandler = (attempt: ConnectionAttempt) => void | Promise<void>

/** Counters every monitor keeps; read by `status` output and, later, the metrics endpoint. */
export interface MonitorStats {
  readonly packets: number
  readonly attempts: number
  readonly unparsable: number
  readonly verdictErrors: number
  readonly held: number // packets currently waiting for a bind
}

/** A source of connection attempts: NFQUEUE, eBPF steering or a pcap capture. */
export interface PacketSource {
  readonly name: string
  /** Starts delivering attempts to `handler`. Throws (or rejects with) HoneytrapError('HT_ERR_MONITOR_OPEN') when it cannot. */
  start(handler: AttemptHandler): void | Promise<void>
  /** Stops taking decisions: every packet from now on (and every held one) is accepted at once. */
  stop(): Promise<void>
  stats(): MonitorStats
}
