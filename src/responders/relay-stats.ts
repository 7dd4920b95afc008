import type { FallbackReason } from '../attack/attack.js'

export type RelayMode = 'mirror' | 'proxy'

/** Per-mode outcome counters, read by the stop summary and, later, the metrics endpoint. */
export interface RelayModeStats {
  started: number // sessions that asked for a relay
  relayed: number // sessions whose target connection came up
  fellBack: Partial<Record<FallbackReason, number>> // sessions served in normal mode instead, by reason
  budgetCut: number // relayed sessions cut when the source's byte budget ran out (mirror)
}

/** Counters for both relay modes; one instance per sensor, shared by the TCP and UDP responders. */
export class RelayStats {
  readonly #stats: Record<RelayMode, RelayModeStats> = {
    mirror: { started: 0, relayed: 0, fellBack: {}, budgetCut: 0 },
    proxy: { started: 0, relayed: 0, fellBack: {}, budgetCut: 0 },
  }

  started(mode: RelayMode): void {
    this.#stats[mode].started++
  }

  relayed(mode: RelayMode): void {
    this.#stats[mode].relayed++
  }

  fellBack(mode: RelayMode, reason: FallbackReason): void {
    const byReason = this.#stats[mode].fellBack
    byReason[reason] = (byReason[reason] ?? 0) + 1
  }

  budgetCut(mode: RelayMode): void {
    this.#stats[mode].budgetCut++
  }

  /** A copy, safe to serialise or compare. */
  snapshot(): Record<RelayMode, RelayModeStats> {
    const copy = (s: RelayModeStats): RelayModeStats => ({ ...s, fellBack: { ...s.fellBack } })
    return { mirror: copy(this.#stats.mirror), proxy: copy(this.#stats.proxy) }
  }
}
