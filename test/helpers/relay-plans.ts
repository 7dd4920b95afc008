import type { FallbackReason } from '../../src/attack/attack.js'
import type { RelayLease, RelayPlan } from '../../src/responders/relay-plan.js'

/** The lease of a granted plan; throws (failing the test) with the reason when it was refused. */
export function leaseOf(plan: RelayPlan): RelayLease {
  if (!plan.ok) throw new Error(`expected a lease, got a refusal: ${plan.reason}`)
  return plan.lease
}

/** The reason of a refused plan; throws (failing the test) when it was granted. */
export function reasonOf(plan: RelayPlan): FallbackReason {
  if (plan.ok) throw new Error(`expected a refusal, got a lease to ${plan.lease.label}`)
  return plan.reason
}
