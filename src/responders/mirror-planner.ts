import type { Endpoint, Protocol } from '../attack/attack.js'
import type { PortPolicy } from '../supervisor/port-policy.js'
import type { AddressGuard } from './address-guard.js'
import type { MirrorBudget } from './mirror-budget.js'
import { formatEndpoint } from '../core/format-endpoint.js'
import type { RelayPlan, RelayPlanner } from './relay-plan.js'

export interface MirrorPlannerOptions {
  readonly guard: AddressGuard
  readonly budget: MirrorBudget
}

/**
 * Mirror mode's gatekeeper: the destination is always the attacker's own address, and only if it is not the sensor's,
 * not special, not denied, not already being mirrored to on that port, and the source's budget allows it.
 *
 * The loop guard: two sensors mirroring each other would chain connections A→B→A→... for ever, each hop opened
 * while the previous one is still up. Every hop goes to one of a finite set of (address, port) destinations, so
 * refusing a second concurrent mirror to the same destination cuts any such cycle within one round. The cost is
 * that an attacker's second concurrent connection to the same port is served in normal mode ('loop').
 */
export function createMirrorPlanner(options: MirrorPlannerOptions): RelayPlanner {
  const { guard, budget } = options
  const active = new Map<string, number>() // "protocol|address|port" of open mirrors -> count

  return {
    mode: 'mirror',
    plan(protocol: Protocol, source: Endpoint, target: Endpoint, policy: PortPolicy): RelayPlan {
      const destination: Endpoint = { address: source.address, port: policy.mirrorPort ?? target.port }
      const label = formatEndpoint(destination.address, destination.port)
      const verdict = guard.check(destination.address)
      if (verdict !== null) return { ok: false, reason: verdict, label }
      const key = `${protocol}|${destination.address}|${destination.port}`
      if (active.has(key)) return { ok: false, reason: 'loop', label }
      const refusal = budget.acquire(source.address)
      if (refusal !== null) return { ok: false, reason: refusal, label }
      active.set(key, 1)
      let released = false
      return {
        ok: true,
        lease: {
          destination,
          label,
          spend: (bytes, partial) => (partial ? budget.spendUpTo(source.address, bytes) : budget.spend(source.address, bytes) ? bytes : 0),
          release(): void {
            if (released) return
            released = true
            active.delete(key)
            budget.release(source.address)
          },
        },
      }
    },
  }
}
