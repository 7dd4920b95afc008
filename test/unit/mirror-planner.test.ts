import os from 'node:os'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Endpoint, FallbackReason, Protocol } from '../../src/attack/attack.js'
import { parseCidr, type CidrRange } from '../../src/config/cidr.js'
import { AddressGuard } from '../../src/responders/address-guard.js'
import { MirrorBudget, type MirrorBudgetOptions } from '../../src/responders/mirror-budget.js'
import { createMirrorPlanner } from '../../src/responders/mirror-planner.js'
import type { RelayPlan, RelayPlanner } from '../../src/responders/relay-plan.js'
import type { PortPolicy } from '../../src/supervisor/port-policy.js'
import { leaseOf, reasonOf } from '../helpers/relay-plans.js'

type InterfaceTable = ReturnType<typeof os.networkInterfaces>

function v4(address: string, netmask: string): os.NetworkInterfaceInfo {
  return { address, netmask, family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null }
}

function v6(address: string): os.NetworkInterfaceInfo {
  return { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, cidr: null, scopeid: 0 }
}

function ranges(...texts: string[]): CidrRange[] {
  return texts.map((text) => {
    const result = parseCidr(text)
    if (!result.ok) throw new Error(result.error)
    return result.range
  })
}

const SENSOR_V4 = '192.0.2.10'
const SENSOR_V6 = '2001:db8:1::10'
const SENSOR_TABLE: InterfaceTable = {
  lo: [v4('127.0.0.1', '255.0.0.0')],
  eth0: [v4(SENSOR_V4, '255.255.255.0'), v6(SENSOR_V6)], // directed broadcast 192.0.2.255
}
const ATTACKER = '198.51.100.7'
const ATTACKER_V6 = '2001:db8::7'

function mirrorPolicy(mirrorPort: number | null = null): PortPolicy {
  return { mode: 'mirror', reply: 'on-data', mirrorPort, proxy: null }
}

interface Fixture {
  readonly planner: RelayPlanner
  readonly budget: MirrorBudget
  /** Plans a mirror for `source` attacking the sensor's `port`; the mirror planner always answers synchronously. */
  plan(source: string, port: number, options?: { protocol?: Protocol; mirrorPort?: number | null; sourcePort?: number }): RelayPlan
}

function fixture(options: { deny?: readonly string[]; budget?: Partial<MirrorBudgetOptions>; table?: InterfaceTable } = {}): Fixture {
  const guard = new AddressGuard({ deny: ranges(...(options.deny ?? [])), interfaces: () => options.table ?? SENSOR_TABLE })
  const budget = new MirrorBudget({
    maxConcurrent: 1_000,
    maxConcurrentPerSource: 100,
    connectionsPerMinutePerSource: 100,
    bytesPerMinutePerSource: 1_000_000,
    maxTrackedSources: 100,
    now: () => 0,
    ...options.budget,
  })
  const planner = createMirrorPlanner({ guard, budget })
  return {
    planner,
    budget,
    plan(source, port, opts = {}): RelayPlan {
      const result = planner.plan(opts.protocol ?? 'tcp', { address: source, port: opts.sourcePort ?? 40_000 }, { address: SENSOR_V4, port }, mirrorPolicy(opts.mirrorPort ?? null))
      if (result instanceof Promise) throw new Error('the mirror planner answered asynchronously')
      return result
    },
  }
}

describe('mirror planner: destination and label', () => {
  it('mirrors to the source address on the attacked port', () => {
    const f = fixture()
    expect(f.planner.mode).toBe('mirror')
    const lease = leaseOf(f.plan(ATTACKER, 80, { sourcePort: 51_234 }))
    expect(lease.destination).toEqual({ address: ATTACKER, port: 80 })
    expect(lease.label).toBe('198.51.100.7:80')
    expect(lease.spend).not.toBeNull()
  })

  it("mirrors to policy.mirrorPort when the port's policy names one", () => {
    const f = fixture()
    const lease = leaseOf(f.plan(ATTACKER, 80, { mirrorPort: 8080 }))
    expect(lease.destination).toEqual({ address: ATTACKER, port: 8080 })
    expect(lease.label).toBe('198.51.100.7:8080')
  })

  it('brackets IPv6 addresses in the label', () => {
    const f = fixture()
    const lease = leaseOf(f.plan(ATTACKER_V6, 80))
    expect(lease.destination).toEqual({ address: ATTACKER_V6, port: 80 })
    expect(lease.label).toBe('[2001:db8::7]:80')
  })

  it('labels refusals with the destination it refused', () => {
    const f = fixture()
    expect(f.plan('::1', 22, { mirrorPort: 2222 })).toEqual({ ok: false, reason: 'special-address', label: '[::1]:2222' })
    expect(f.plan(SENSOR_V4, 80)).toEqual({ ok: false, reason: 'own-address', label: '192.0.2.10:80' })
  })
})

describe('mirror planner: refusals', () => {
  it.each([SENSOR_V4, SENSOR_V6, '::ffff:192.0.2.10'])("refuses the sensor's own address %s with 'own-address'", (address) => {
    expect(reasonOf(fixture().plan(address, 80))).toBe('own-address')
  })

  it.each(['127.0.0.1', '::ffff:127.0.0.1', '224.0.0.1', '0.0.0.0', '255.255.255.255', '192.0.2.255', '169.254.169.254', '::1', '::', 'fe80::1', 'ff02::1', 'not-an-address'])(
    "refuses %s with 'special-address'",
    (address) => {
      expect(reasonOf(fixture().plan(address, 80))).toBe('special-address')
    },
  )

  it("refuses an address in the deny list with 'denied', and only those", () => {
    const f = fixture({ deny: ['203.0.113.0/24', '2001:db8:dead::/48'] })
    expect(reasonOf(f.plan('203.0.113.9', 80))).toBe('denied')
    expect(reasonOf(f.plan('::ffff:203.0.113.9', 80))).toBe('denied')
    expect(reasonOf(f.plan('2001:db8:dead::1', 80))).toBe('denied')
    expect(f.plan('203.0.114.9', 80).ok).toBe(true)
    expect(f.plan('2001:db8:beef::1', 80).ok).toBe(true)
  })

  it('puts special before own before denied when an address is several at once', () => {
    const f = fixture({ deny: ['127.0.0.0/8', '192.0.2.0/24'] })
    expect(reasonOf(f.plan('127.0.0.1', 80))).toBe('special-address') // also on lo and denied
    expect(reasonOf(f.plan(SENSOR_V4, 80))).toBe('own-address') // also denied
    expect(reasonOf(f.plan('192.0.2.77', 80))).toBe('denied')
  })

  it('fails closed when the interface list cannot be read', () => {
    const guard = new AddressGuard({
      deny: [],
      interfaces: () => {
        throw new Error('uv_interface_addresses failed')
      },
    })
    const budget = new MirrorBudget({ maxConcurrent: 1, maxConcurrentPerSource: 1, connectionsPerMinutePerSource: 1, bytesPerMinutePerSource: 1, maxTrackedSources: 1 })
    const plan = createMirrorPlanner({ guard, budget }).plan('tcp', { address: ATTACKER, port: 1 }, { address: SENSOR_V4, port: 80 }, mirrorPolicy())
    expect(plan).toEqual({ ok: false, reason: 'own-address', label: '198.51.100.7:80' })
  })

  it('spends no budget on an address it refuses', () => {
    const f = fixture({ deny: ['203.0.113.0/24'] })
    for (const address of [SENSOR_V4, '127.0.0.1', '203.0.113.9']) expect(f.plan(address, 80).ok).toBe(false)
    expect(f.budget.trackedSources).toBe(0)
    expect(f.budget.refused).toBe(0)
  })
})

describe('mirror planner: loop guard', () => {
  it("refuses a second concurrent mirror to the same protocol, address and port with 'loop' until the first is released", () => {
    const f = fixture()
    const first = leaseOf(f.plan(ATTACKER, 80, { sourcePort: 40_001 }))
    expect(f.plan(ATTACKER, 80, { sourcePort: 40_002 })).toEqual({ ok: false, reason: 'loop', label: '198.51.100.7:80' })
    first.release()
    const again = leaseOf(f.plan(ATTACKER, 80, { sourcePort: 40_003 }))
    expect(again.destination).toEqual({ address: ATTACKER, port: 80 })
  })

  it('is not a loop on another port, another protocol or another address', () => {
    const f = fixture()
    leaseOf(f.plan(ATTACKER, 80))
    expect(f.plan(ATTACKER, 81).ok).toBe(true)
    expect(f.plan(ATTACKER, 80, { protocol: 'udp' }).ok).toBe(true)
    expect(f.plan('198.51.100.8', 80).ok).toBe(true)
    expect(f.plan(ATTACKER_V6, 80).ok).toBe(true)
    expect(reasonOf(f.plan(ATTACKER, 80, { protocol: 'udp' }))).toBe('loop')
  })

  it('keys on the destination port, so two attacked ports mirrored to one port are a loop', () => {
    const f = fixture()
    leaseOf(f.plan(ATTACKER, 80, { mirrorPort: 8080 }))
    expect(reasonOf(f.plan(ATTACKER, 81, { mirrorPort: 8080 }))).toBe('loop')
    expect(reasonOf(f.plan(ATTACKER, 8080))).toBe('loop')
    expect(f.plan(ATTACKER, 80).ok).toBe(true) // 80 now mirrors to 80, a different destination
  })

  it('refuses a loop before asking the budget, so a loop costs the source nothing', () => {
    const f = fixture({ budget: { maxConcurrentPerSource: 2, connectionsPerMinutePerSource: 2 } })
    const first = leaseOf(f.plan(ATTACKER, 80))
    for (let i = 0; i < 10; i++) expect(reasonOf(f.plan(ATTACKER, 80))).toBe('loop')
    expect(f.budget.refused).toBe(0)
    expect(f.plan(ATTACKER, 81).ok).toBe(true) // the second connection token is still there
    first.release()
  })
})

describe('mirror planner: budgets', () => {
  it("refuses with 'budget-concurrent' past the source's concurrency cap", () => {
    const f = fixture({ budget: { maxConcurrentPerSource: 1 } })
    const first = leaseOf(f.plan(ATTACKER, 80))
    expect(f.plan(ATTACKER, 81)).toEqual({ ok: false, reason: 'budget-concurrent', label: '198.51.100.7:81' })
    expect(f.plan('198.51.100.8', 81).ok).toBe(true)
    first.release()
    expect(f.plan(ATTACKER, 81).ok).toBe(true)
  })

  it("refuses with 'budget-connections' once the source's connections per minute are used", () => {
    const f = fixture({ budget: { connectionsPerMinutePerSource: 2 } })
    leaseOf(f.plan(ATTACKER, 80)).release()
    leaseOf(f.plan(ATTACKER, 80)).release()
    expect(reasonOf(f.plan(ATTACKER, 80))).toBe('budget-connections')
  })

  it("refuses with 'budget-bytes' once the source's bytes are spent", () => {
    const f = fixture({ budget: { bytesPerMinutePerSource: 1_000 } })
    const lease = leaseOf(f.plan(ATTACKER, 80))
    expect(lease.spend?.(1_000, false)).toBe(1_000)
    lease.release()
    expect(reasonOf(f.plan(ATTACKER, 80))).toBe('budget-bytes')
    expect(f.budget.refused).toBe(1)
  })

  it("charges lease.spend() to the source's byte budget, shared by its leases and no one else's", () => {
    const f = fixture({ budget: { bytesPerMinutePerSource: 1_000 } })
    const a = leaseOf(f.plan(ATTACKER, 80))
    const b = leaseOf(f.plan(ATTACKER, 81))
    expect(a.spend?.(600, false)).toBe(600)
    expect(b.spend?.(401, false)).toBe(0) // a datagram: refused whole, nothing taken
    expect(f.budget.spend(ATTACKER, 401)).toBe(false)
    expect(f.budget.spend('198.51.100.8', 1_000)).toBe(true)
    expect(b.spend?.(500, true)).toBe(400) // a stream: the last 400 bytes go, then the relay is cut
    expect(a.spend?.(1, true)).toBe(0)
  })

  it("release() is idempotent: a second call does not give back another session's slot", () => {
    const f = fixture({ budget: { maxConcurrentPerSource: 2 } })
    const first = leaseOf(f.plan(ATTACKER, 80))
    leaseOf(f.plan(ATTACKER, 81))
    first.release()
    first.release()
    expect(f.plan(ATTACKER, 82).ok).toBe(true)
    expect(reasonOf(f.plan(ATTACKER, 83))).toBe('budget-concurrent')
    expect(reasonOf(f.plan(ATTACKER, 81))).toBe('loop') // the second session's destination is still held
  })

  it("a stale release() does not clear a newer session's loop key", () => {
    const f = fixture()
    const first = leaseOf(f.plan(ATTACKER, 80))
    first.release()
    leaseOf(f.plan(ATTACKER, 80))
    first.release()
    expect(reasonOf(f.plan(ATTACKER, 80))).toBe('loop')
  })
})

/** One mirror-mode sensor facing another. */
interface Sensor {
  readonly name: string
  readonly address: string
  readonly planner: RelayPlanner
  readonly mirrorPorts: ReadonlyMap<number, number> // attacked port -> mirror port; absent: the attacked port
}

function sensor(name: string, address: string, mirrorPorts: ReadonlyMap<number, number> = new Map()): Sensor {
  const guard = new AddressGuard({ deny: [], interfaces: () => ({ eth0: [v4(address, '255.255.255.0')] }) })
  const budget = new MirrorBudget({ maxConcurrent: 1_000, maxConcurrentPerSource: 1_000, connectionsPerMinutePerSource: 1_000, bytesPerMinutePerSource: 1_000_000, maxTrackedSources: 100 })
  return { name, address, planner: createMirrorPlanner({ guard, budget }), mirrorPorts }
}

interface Chain {
  readonly hops: readonly string[] // "A->B:8080" for each granted mirror, every lease still held
  readonly stoppedBy: FallbackReason | null // null: still going after maxAttempts
  readonly attempts: number
}

/**
 * The host behind `b` connects to a:`port`; from then on each sensor mirrors the connection it sees back to the
 * other, holding every lease (each hop is opened while the previous one is still up).
 */
function runChain(a: Sensor, b: Sensor, port: number, maxAttempts: number): Chain {
  const byAddress = new Map([[a.address, a], [b.address, b]])
  const hops: string[] = []
  let from: string = b.address
  let at: Sensor = a
  let atPort = port
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const source: Endpoint = { address: from, port: 30_000 + attempt }
    const target: Endpoint = { address: at.address, port: atPort }
    const policy = mirrorPolicy(at.mirrorPorts.get(atPort) ?? null)
    const plan = at.planner.plan('tcp', source, target, policy)
    if (plan instanceof Promise) throw new Error('the mirror planner answered asynchronously')
    if (!plan.ok) return { hops, stoppedBy: plan.reason, attempts: attempt }
    const next = byAddress.get(plan.lease.destination.address)
    if (next === undefined) throw new Error(`mirrored to ${plan.lease.label}, outside the two sensors`)
    hops.push(`${at.name}->${next.name}:${plan.lease.destination.port}`)
    from = at.address
    at = next
    atPort = plan.lease.destination.port
  }
  return { hops, stoppedBy: null, attempts: maxAttempts }
}

/**
 * The most mirrors the chain can open, from the port mappings alone: each hop's destination is the next state
 * (sensor reached, port), the walk through states is deterministic, and a destination already held is a loop.
 * So the count is the number of distinct states after the first before one repeats.
 */
function chainBound(a: Sensor, b: Sensor, port: number): number {
  const other = (s: Sensor): Sensor => (s === a ? b : a)
  const seen = new Set<string>()
  let at = a
  let atPort = port
  for (;;) {
    const nextPort = at.mirrorPorts.get(atPort) ?? atPort
    at = other(at)
    atPort = nextPort
    const state = `${at.name}:${atPort}`
    if (seen.has(state)) return seen.size
    seen.add(state)
  }
}

describe('mirror planner: two sensors mirroring each other', () => {
  it("stops the A->B->A chain within 3 hops with 'loop'", () => {
    const a = sensor('A', '192.0.2.10')
    const b = sensor('B', '198.51.100.20')
    const chain = runChain(a, b, 80, 50)
    expect(chain.hops).toEqual(['A->B:80', 'B->A:80'])
    expect(chain.stoppedBy).toBe('loop')
    expect(chain.attempts).toBeLessThanOrEqual(3)
  })

  it('stops within the computed bound with mirror ports A:80->8080 and B:8080->80', () => {
    const a = sensor('A', '192.0.2.10', new Map([[80, 8080]]))
    const b = sensor('B', '198.51.100.20', new Map([[8080, 80]]))
    const bound = chainBound(a, b, 80)
    expect(bound).toBe(2) // states B:8080, A:80, then B:8080 again
    const chain = runChain(a, b, 80, 50)
    expect(chain.hops).toEqual(['A->B:8080', 'B->A:80'])
    expect(chain.stoppedBy).toBe('loop')
    expect(chain.hops.length).toBeLessThanOrEqual(bound)
  })

  it('stops a longer port cycle (A:80->8080, B:8080->81, A:81->8081, B:8081->80) at its bound of 4', () => {
    const a = sensor('A', '192.0.2.10', new Map([[80, 8080], [81, 8081]]))
    const b = sensor('B', '198.51.100.20', new Map([[8080, 81], [8081, 80]]))
    const bound = chainBound(a, b, 80)
    expect(bound).toBe(4)
    const chain = runChain(a, b, 80, 50)
    expect(chain.hops).toEqual(['A->B:8080', 'B->A:81', 'A->B:8081', 'B->A:80'])
    expect(chain.stoppedBy).toBe('loop')
  })

  it('stops any port mapping with a loop after at most the bound, itself at most 2 x the ports involved', () => {
    const ports = [80, 81, 443, 8080, 8443] as const
    const mapping = fc.array(fc.option(fc.constantFrom(...ports), { nil: null }), { minLength: ports.length, maxLength: ports.length })
    fc.assert(
      fc.property(mapping, mapping, fc.constantFrom(...ports), (mapA, mapB, first) => {
        const toMap = (choices: ReadonlyArray<number | null>): Map<number, number> => {
          const map = new Map<number, number>()
          choices.forEach((choice, i) => choice !== null && map.set(ports[i]!, choice))
          return map
        }
        const a = sensor('A', '192.0.2.10', toMap(mapA))
        const b = sensor('B', '198.51.100.20', toMap(mapB))
        const bound = chainBound(a, b, first)
        expect(bound).toBeLessThanOrEqual(2 * ports.length)
        const chain = runChain(a, b, first, 2 * ports.length + 2)
        expect(chain.stoppedBy).toBe('loop')
        expect(chain.hops.length).toBe(bound)
      }),
      { numRuns: 300 },
    )
  })
})
