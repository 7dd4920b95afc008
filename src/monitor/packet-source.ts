import type { AddressFamily, Protocol, SynFacts } from '../attack/attack.js'

export type { SynFacts } from '../attack/attack.js'

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
