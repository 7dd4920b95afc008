import type { Logger } from 'pino'
import type { Endpoint, FallbackReason, Protocol } from '../attack/attack.js'
import type { PortPolicy } from '../supervisor/port-policy.js'
import type { RelayMode } from './relay-stats.js'
import type { WarmConnection } from './warm-upstream.js'

/** A granted relay: where to connect, and the budget it holds until release(). */
export interface RelayLease {
  readonly destination: Endpoint
  readonly label: string // RelayInfo.target: "address:port"
  /**
   * Spends bytes about to be sent to the attacker's address on either leg, and returns how many may go: all of them,
   * or with `partial` as many as the budget has left (a stream sends that prefix and is cut), without `partial` none
   * (a datagram goes whole or not at all). Null when the mode has no byte budget (proxy).
   */
  readonly spend: ((bytes: number, partial: boolean) => number) | null
  /** Gives the slot back; called once, when the session ends or falls back. */
  release(): void
  /** A connection to `destination` opened ahead (proxy targets with `warm`), if one is ready; the session then skips the connect. */
  readonly takeWarm?: () => WarmConnection | null
}

export type RelayPlan = { readonly ok: true; readonly lease: RelayLease } | { readonly ok: false; readonly reason: FallbackReason; readonly label: string }

/** Decides, per session, whether and where a relay may connect. Never throws; a refusal is a fallback reason. */
export interface RelayPlanner {
  readonly mode: RelayMode
  plan(protocol: Protocol, source: Endpoint, target: Endpoint, policy: PortPolicy): RelayPlan | Promise<RelayPlan>
}

/**
 * Asks `planner` for a session's relay and hands the answer to `onPlan`, at once or when the name has resolved. A
 * planner never rejects (refusals are fallback reasons); if one does, that is a bug: it is logged and the session is
 * served in normal mode, never left to an unhandled rejection.
 */
export function planRelay(
  planner: RelayPlanner,
  protocol: Protocol,
  session: { readonly source: Endpoint; readonly target: Endpoint; readonly policy: PortPolicy; readonly log: Logger },
  onPlan: (plan: RelayPlan) => void,
): void {
  const plan = planner.plan(protocol, session.source, session.target, session.policy)
  if (!(plan instanceof Promise)) return onPlan(plan)
  plan.then(onPlan, (err: unknown) => {
    session.log.error({ err }, 'relay planner failed')
    onPlan({ ok: false, reason: 'connect-failed', label: '(planner error)' })
  })
}
