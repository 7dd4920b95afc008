import type { AddressFamily, Protocol } from '../attack/attack.js'

/** One bound socket for (family, protocol, port), owned by the supervisor. */
export interface Listener {
  readonly key: number
  readonly family: AddressFamily
  readonly protocol: Protocol
  readonly port: number
  /** Connections or UDP sessions currently open through this listener. */
  readonly active: number
  /** Last SYN or connection; set only by the supervisor, which keeps its listeners in this order. */
  lastUsedMs: number
  /** Stops taking new connections; open sessions go on to their own end. */
  close(): void
}

/** A number that names (family, protocol, port): Map lookups on the SYN path without building strings. */
export function listenerKey(family: AddressFamily, protocol: Protocol, port: number): number {
  return (family === 6 ? 1 << 17 : 0) | (protocol === 'udp' ? 1 << 16 : 0) | port
}

/** The wildcard address a listener of this family binds. */
export function wildcardAddress(family: AddressFamily): string {
  return family === 6 ? '::' : '0.0.0.0'
}
