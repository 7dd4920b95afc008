import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Endpoint, Protocol } from '../../src/attack/attack.js'
import { createProxyPlanner, type ProxyTargetConfig } from '../../src/responders/proxy-planner.js'
import type { RelayPlan, RelayPlanner } from '../../src/responders/relay-plan.js'
import { TargetResolver, type ResolvedAddress } from '../../src/responders/target-resolver.js'
import type { PortPolicy } from '../../src/supervisor/port-policy.js'
import { leaseOf, reasonOf } from '../helpers/relay-plans.js'

const TARGETS: Readonly<Record<string, ProxyTargetConfig>> = {
  web: { host: 'backend.example', port: 8080, protocol: 'tcp', maxConcurrent: 2 },
  literal6: { host: '2001:db8::80', port: 80, protocol: 'tcp', maxConcurrent: 1 },
  dns: { host: '192.0.2.53', port: 53, protocol: 'udp', maxConcurrent: 3 },
  dead: { host: 'dead.example', port: 25, protocol: 'tcp', maxConcurrent: 1 },
}

const NAMES: Readonly<Record<string, ResolvedAddress>> = {
  'backend.example': { address: '192.0.2.80', family: 4 },
  'backend6.example': { address: '2001:db8::8080', family: 6 },
}

const SOURCE: Endpoint = { address: '198.51.100.7', port: 40_000 }
const SENSOR: Endpoint = { address: '203.0.113.1', port: 80 }

function proxyPolicy(proxy: string | null, mirrorPort: number | null = null): PortPolicy {
  return { mode: 'proxy', reply: 'on-data', mirrorPort, proxy }
}

/** A proxy planner whose resolver answers from NAMES (or `lookup`), counting lookups. */
function plannerWith(options: { targets?: Readonly<Record<string, ProxyTargetConfig>>; lookup?: (host: string) => Promise<ResolvedAddress> } = {}): { planner: RelayPlanner; resolver: TargetResolver } {
  const lookup =
    options.lookup ??
    ((host: string): Promise<ResolvedAddress> => {
      const found = NAMES[host]
      return found === undefined ? Promise.reject(new Error(`ENOTFOUND ${host}`)) : Promise.resolve(found)
    })
  const resolver = new TargetResolver({ ttlMs: 60_000, timeoutMs: 1_000, lookup, now: () => 0 })
  return { planner: createProxyPlanner({ targets: options.targets ?? TARGETS, resolver }), resolver }
}

function planOf(planner: RelayPlanner, name: string | null, protocol: Protocol = 'tcp'): RelayPlan | Promise<RelayPlan> {
  return planner.plan(protocol, SOURCE, SENSOR, proxyPolicy(name))
}

describe('proxy planner: destination', () => {
  it("resolves the policy's target name to a lease on the configured port", async () => {
    const { planner } = plannerWith()
    expect(planner.mode).toBe('proxy')
    const pending = planOf(planner, 'web')
    expect(pending).toBeInstanceOf(Promise)
    const lease = leaseOf(await pending)
    expect(lease.destination).toEqual({ address: '192.0.2.80', port: 8080 })
    expect(lease.label).toBe('192.0.2.80:8080')
    expect(lease.spend).toBeNull()
  })

  it('answers synchronously for an IP literal target, bracketing IPv6 in the label', () => {
    const { planner, resolver } = plannerWith()
    const plan = planOf(planner, 'literal6')
    expect(plan).not.toBeInstanceOf(Promise)
    const lease = leaseOf(plan as RelayPlan)
    expect(lease.destination).toEqual({ address: '2001:db8::80', port: 80 })
    expect(lease.label).toBe('[2001:db8::80]:80')
    expect(resolver.lookups).toBe(0)
  })

  it('brackets a name that resolves to IPv6', async () => {
    const { planner } = plannerWith({ targets: { six: { host: 'backend6.example', port: 443, protocol: 'tcp', maxConcurrent: 1 } } })
    expect(leaseOf(await planOf(planner, 'six')).label).toBe('[2001:db8::8080]:443')
  })

  it('serves a udp target for udp', async () => {
    const { planner } = plannerWith()
    expect(leaseOf(await planOf(planner, 'dns', 'udp')).destination).toEqual({ address: '192.0.2.53', port: 53 })
  })
})

describe('proxy planner: concurrency per target', () => {
  it("takes the slot before resolving: N+1 plans during a slow lookup give exactly one 'target-busy'", async () => {
    let answer!: (value: ResolvedAddress) => void
    let calls = 0
    const lookup = (): Promise<ResolvedAddress> => {
      calls++
      return new Promise((resolve) => (answer = resolve))
    }
    const targets = { web: { host: 'backend.example', port: 8080, protocol: 'tcp' as const, maxConcurrent: 4 } }
    const { planner } = plannerWith({ targets, lookup })
    const plans = Array.from({ length: 5 }, () => planOf(planner, 'web'))
    answer({ address: '192.0.2.80', family: 4 })
    const settled = await Promise.all(plans)
    expect(settled.filter((p) => !p.ok).map(reasonOf)).toEqual(['target-busy'])
    expect(settled.filter((p) => p.ok)).toHaveLength(4)
    expect(settled[4]).toEqual({ ok: false, reason: 'target-busy', label: 'backend.example:8080' })
    expect(calls).toBe(1)
  })

  it('frees the slot on release(), and a second release() frees nothing more', async () => {
    const { planner } = plannerWith()
    const first = leaseOf(await planOf(planner, 'web'))
    const second = leaseOf(await planOf(planner, 'web'))
    expect(reasonOf(await planOf(planner, 'web'))).toBe('target-busy')
    first.release()
    first.release()
    const third = leaseOf(await planOf(planner, 'web'))
    expect(reasonOf(await planOf(planner, 'web'))).toBe('target-busy') // a double release would have freed two
    second.release()
    third.release()
    expect((await planOf(planner, 'web')).ok).toBe(true)
  })

  it('counts each target separately', async () => {
    const { planner } = plannerWith()
    leaseOf(await planOf(planner, 'literal6'))
    expect(reasonOf(await planOf(planner, 'literal6'))).toBe('target-busy')
    expect((await planOf(planner, 'web')).ok).toBe(true)
    expect((await planOf(planner, 'dns', 'udp')).ok).toBe(true)
  })

  it("gives the slot back when the name does not resolve, with 'resolve-failed' and a host:port label", async () => {
    const { planner, resolver } = plannerWith()
    expect(await planOf(planner, 'dead')).toEqual({ ok: false, reason: 'resolve-failed', label: 'dead.example:25' })
    // maxConcurrent is 1: a slot kept by the failure would make this 'target-busy'
    expect(await planOf(planner, 'dead')).toEqual({ ok: false, reason: 'resolve-failed', label: 'dead.example:25' })
    expect(resolver.failures).toBe(1) // the second answer came from the cached failure
  })

  it('gives the slot back after a failed resolution so a later success can use it', async () => {
    let fail = true
    let now = 0
    const resolver = new TargetResolver({
      ttlMs: 60_000,
      timeoutMs: 1_000,
      failureTtlMs: 1_000,
      lookup: () => (fail ? Promise.reject(new Error('SERVFAIL')) : Promise.resolve({ address: '192.0.2.25', family: 4 })),
      now: () => now,
    })
    const planner = createProxyPlanner({ targets: TARGETS, resolver })
    expect(reasonOf(await planOf(planner, 'dead'))).toBe('resolve-failed')
    fail = false
    now += 1_000
    const lease = leaseOf(await planOf(planner, 'dead'))
    expect(lease.destination).toEqual({ address: '192.0.2.25', port: 25 })
    expect(reasonOf(await planOf(planner, 'dead'))).toBe('target-busy')
  })
})

describe('proxy planner: policies the config check should have refused', () => {
  it("falls back with 'connect-failed' when the policy names no target", () => {
    const { planner } = plannerWith()
    expect(planOf(planner, null)).toEqual({ ok: false, reason: 'connect-failed', label: '(no target)' })
  })

  it.each(['missing', 'toString', '__proto__', 'constructor', 'hasOwnProperty', ''])("falls back with 'connect-failed' for the unknown name %j", (name) => {
    const { planner, resolver } = plannerWith()
    let plan: RelayPlan | Promise<RelayPlan> | undefined
    expect(() => (plan = planOf(planner, name))).not.toThrow()
    expect(plan).toEqual({ ok: false, reason: 'connect-failed', label: name })
    expect(resolver.lookups).toBe(0)
  })

  it("falls back with 'connect-failed' when the target's protocol is not the session's, taking no slot", async () => {
    const { planner } = plannerWith()
    expect(planOf(planner, 'web', 'udp')).toEqual({ ok: false, reason: 'connect-failed', label: 'web' })
    expect(planOf(planner, 'dns', 'tcp')).toEqual({ ok: false, reason: 'connect-failed', label: 'dns' })
    expect((await planOf(planner, 'web')).ok).toBe(true)
    expect((await planOf(planner, 'web')).ok).toBe(true)
  })
})

describe('proxy planner: the attacker cannot steer the destination', () => {
  const endpoint = fc.record({ address: fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('backend.example', '192.0.2.80', '127.0.0.1')), port: fc.integer({ min: 1, max: 65_535 }) })
  const mirrorPort = fc.option(fc.integer({ min: 1, max: 65_535 }), { nil: null })

  it('always plans the configured destination, whatever the source, target or mirror port', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint, endpoint, mirrorPort, fc.constantFrom('web', 'literal6'), async (source, target, mirror, name) => {
        const { planner } = plannerWith()
        const lease = leaseOf(await planner.plan('tcp', source, target, proxyPolicy(name, mirror)))
        expect(lease.destination).toEqual(name === 'web' ? { address: '192.0.2.80', port: 8080 } : { address: '2001:db8::80', port: 80 })
        lease.release()
      }),
      { numRuns: 300 },
    )
  })
})
