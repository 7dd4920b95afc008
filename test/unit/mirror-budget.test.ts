import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MirrorBudget, type BudgetRefusal, type MirrorBudgetOptions } from '../../src/responders/mirror-budget.js'

const MINUTE_MS = 60_000

/** A budget on a hand-driven clock; every limit is generous unless the test narrows it. */
function budgetAt(options: Partial<MirrorBudgetOptions> = {}): { budget: MirrorBudget; advance: (ms: number) => void } {
  let now = 1_000_000
  const budget = new MirrorBudget({
    maxConcurrent: 1_000_000,
    maxConcurrentPerSource: 1_000,
    connectionsPerMinutePerSource: 1_000,
    bytesPerMinutePerSource: 1_000_000,
    maxTrackedSources: 1_000,
    now: () => now,
    ...options,
  })
  return { budget, advance: (ms) => (now += ms) }
}

/** Acquires and releases `count` times, returning every verdict. */
function cycle(budget: MirrorBudget, address: string, count: number): Array<BudgetRefusal | null> {
  const verdicts: Array<BudgetRefusal | null> = []
  for (let i = 0; i < count; i++) {
    const verdict = budget.acquire(address)
    verdicts.push(verdict)
    if (verdict === null) budget.release(address)
  }
  return verdicts
}

describe('MirrorBudget: concurrent mirrors per source', () => {
  it('refuses past the cap and admits again after a release', () => {
    const { budget } = budgetAt({ maxConcurrentPerSource: 2 })
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent')
    budget.release('198.51.100.7')
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent')
  })

  it('ignores releases beyond what was acquired, so the count never goes negative', () => {
    const { budget } = budgetAt({ maxConcurrentPerSource: 2 })
    budget.release('198.51.100.7') // never acquired: not even tracked
    expect(budget.trackedSources).toBe(0)
    expect(budget.acquire('198.51.100.7')).toBeNull()
    budget.release('198.51.100.7')
    budget.release('198.51.100.7')
    budget.release('198.51.100.7')
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent')
  })

  it('checks the concurrency cap before the connection and byte buckets', () => {
    const { budget } = budgetAt({ maxConcurrentPerSource: 1, connectionsPerMinutePerSource: 1, bytesPerMinutePerSource: 10 })
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.spend('198.51.100.7', 10)).toBe(true)
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent')
    budget.release('198.51.100.7')
    expect(budget.acquire('198.51.100.7')).toBe('budget-connections')
  })
})

describe('MirrorBudget: connections per minute (token bucket)', () => {
  it('grants the full bucket at once, then refuses', () => {
    const { budget } = budgetAt({ connectionsPerMinutePerSource: 6 })
    expect(cycle(budget, '198.51.100.7', 7)).toEqual([null, null, null, null, null, null, 'budget-connections'])
  })

  it('refills half the bucket in 30 s and all of it in 60 s', () => {
    const { budget, advance } = budgetAt({ connectionsPerMinutePerSource: 6 })
    cycle(budget, '198.51.100.7', 6)
    advance(30_000)
    expect(cycle(budget, '198.51.100.7', 4)).toEqual([null, null, null, 'budget-connections'])
    advance(MINUTE_MS)
    expect(cycle(budget, '198.51.100.7', 7)).toEqual([null, null, null, null, null, null, 'budget-connections'])
  })

  it('refills continuously: one token per 10 s at 6 per minute, and not before', () => {
    const { budget, advance } = budgetAt({ connectionsPerMinutePerSource: 6 })
    cycle(budget, '198.51.100.7', 6)
    advance(9_999)
    expect(budget.acquire('198.51.100.7')).toBe('budget-connections')
    advance(1)
    expect(cycle(budget, '198.51.100.7', 2)).toEqual([null, 'budget-connections'])
  })

  it('never fills above the cap, however long the source is idle', () => {
    const { budget, advance } = budgetAt({ connectionsPerMinutePerSource: 6 })
    cycle(budget, '198.51.100.7', 1)
    advance(60 * MINUTE_MS)
    expect(cycle(budget, '198.51.100.7', 7)).toEqual([null, null, null, null, null, null, 'budget-connections'])
  })
})

describe('MirrorBudget: bytes per minute', () => {
  it('spend() refuses without deducting when the budget cannot cover the bytes', () => {
    const { budget } = budgetAt({ bytesPerMinutePerSource: 1_000 })
    expect(budget.spend('198.51.100.7', 600)).toBe(true)
    expect(budget.spend('198.51.100.7', 401)).toBe(false)
    expect(budget.spend('198.51.100.7', 400)).toBe(true) // the refused 401 took nothing
    expect(budget.spend('198.51.100.7', 1)).toBe(false)
    expect(budget.spend('198.51.100.7', 0)).toBe(true)
  })

  it('refuses a single spend larger than the whole budget', () => {
    const { budget } = budgetAt({ bytesPerMinutePerSource: 1_000 })
    expect(budget.spend('198.51.100.7', 1_001)).toBe(false)
    expect(budget.spend('198.51.100.7', 1_000)).toBe(true)
  })

  it('refills over time, up to the cap', () => {
    const { budget, advance } = budgetAt({ bytesPerMinutePerSource: 1_000 })
    expect(budget.spend('198.51.100.7', 1_000)).toBe(true)
    advance(30_000)
    expect(budget.spend('198.51.100.7', 501)).toBe(false)
    expect(budget.spend('198.51.100.7', 500)).toBe(true)
    advance(10 * MINUTE_MS)
    expect(budget.spend('198.51.100.7', 1_001)).toBe(false)
    expect(budget.spend('198.51.100.7', 1_000)).toBe(true)
  })

  it("refuses acquire() with 'budget-bytes' when the bytes are spent, until a tenth has refilled", () => {
    const { budget, advance } = budgetAt({ bytesPerMinutePerSource: 1_000 }) // one byte per 60 ms; a tenth is 100 bytes
    expect(budget.spend('198.51.100.7', 1_000)).toBe(true)
    expect(budget.acquire('198.51.100.7')).toBe('budget-bytes')
    advance(5_999)
    expect(budget.acquire('198.51.100.7')).toBe('budget-bytes')
    advance(1)
    expect(budget.acquire('198.51.100.7')).toBeNull()
  })
})

describe('MirrorBudget: sources and the table', () => {
  it('keeps each source on its own budget', () => {
    const { budget } = budgetAt({ maxConcurrentPerSource: 1, connectionsPerMinutePerSource: 1, bytesPerMinutePerSource: 100 })
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.spend('198.51.100.7', 100)).toBe(true)
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent')
    expect(budget.acquire('198.51.100.8')).toBeNull()
    expect(budget.spend('198.51.100.8', 100)).toBe(true)
    expect(budget.acquire('2001:db8::7')).toBeNull()
    expect(budget.spend('2001:db8::7', 100)).toBe(true)
    expect(budget.trackedSources).toBe(3)
  })

  it('never tracks more than maxTrackedSources: a newcomer is refused while no tracked budget is whole again', () => {
    const { budget, advance } = budgetAt({ maxTrackedSources: 3, connectionsPerMinutePerSource: 10 })
    for (const address of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) expect(cycle(budget, address, 1)).toEqual([null])
    expect(budget.acquire('198.51.100.4')).toBe('mirror-busy')
    expect(budget.spend('198.51.100.4', 0)).toBe(false)
    expect(budget.trackedSources).toBe(3)
    advance(MINUTE_MS / 10) // one connection token back: every budget whole again
    expect(budget.acquire('198.51.100.4')).toBeNull()
    expect(budget.trackedSources).toBe(3)
    for (let i = 0; i < 200; i++) {
      cycle(budget, `10.0.${i >> 8}.${i & 255}`, 1)
      advance(10)
      expect(budget.trackedSources).toBeLessThanOrEqual(3)
    }
  })

  it('forgets the least recently seen source whose budget is whole', () => {
    const { budget, advance } = budgetAt({ maxTrackedSources: 3, bytesPerMinutePerSource: 100 })
    for (const address of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) expect(budget.spend(address, 100)).toBe(true)
    expect(budget.spend('198.51.100.4', 0)).toBe(false) // no whole budget to forget
    advance(MINUTE_MS)
    expect(budget.spend('198.51.100.1', 100)).toBe(true) // seen again, and spent: .2 is now the oldest whole one
    expect(budget.spend('198.51.100.4', 0)).toBe(true) // forgets .2
    expect(budget.spend('198.51.100.1', 1)).toBe(false) // still tracked, still spent
    expect(budget.spend('198.51.100.2', 100)).toBe(true) // forgotten with a whole budget: nothing was lost
    expect(budget.trackedSources).toBe(3)
  })

  it('does not forget a source with an open mirror, whatever churn other sources make', () => {
    const { budget, advance } = budgetAt({ maxTrackedSources: 3, maxConcurrentPerSource: 1 })
    expect(budget.acquire('198.51.100.7')).toBeNull()
    for (let i = 0; i < 500; i++) {
      cycle(budget, `10.0.${i >> 8}.${i & 255}`, 1)
      advance(1_000)
    }
    expect(budget.trackedSources).toBeLessThanOrEqual(3)
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent') // a forgotten source would get a fresh slot
    budget.release('198.51.100.7')
    expect(budget.acquire('198.51.100.7')).toBeNull()
  })

  it('refuses a newcomer rather than grow past the bound while every tracked source holds a mirror', () => {
    const { budget } = budgetAt({ maxTrackedSources: 2, maxConcurrentPerSource: 1 })
    expect(['198.51.100.1', '198.51.100.2', '198.51.100.3'].map((a) => budget.acquire(a))).toEqual([null, null, 'mirror-busy'])
    expect(budget.trackedSources).toBe(2)
    for (const address of ['198.51.100.1', '198.51.100.2']) expect(budget.acquire(address)).toBe('budget-concurrent')
  })

  it('counts every refusal, whatever its reason, and nothing else', () => {
    const { budget } = budgetAt({ maxConcurrentPerSource: 1, connectionsPerMinutePerSource: 2, bytesPerMinutePerSource: 10 })
    expect(budget.acquire('198.51.100.7')).toBeNull()
    expect(budget.acquire('198.51.100.7')).toBe('budget-concurrent')
    budget.release('198.51.100.7')
    expect(budget.acquire('198.51.100.7')).toBeNull()
    budget.release('198.51.100.7')
    expect(budget.acquire('198.51.100.7')).toBe('budget-connections')
    expect(budget.spend('198.51.100.8', 10)).toBe(true)
    expect(budget.spend('198.51.100.8', 1)).toBe(false) // a refused spend is not a refused mirror
    expect(budget.acquire('198.51.100.8')).toBe('budget-bytes')
    expect(budget.refused).toBe(3)
  })
})

type Op =
  | { readonly kind: 'acquire'; readonly source: number }
  | { readonly kind: 'release'; readonly source: number }
  | { readonly kind: 'spend'; readonly source: number; readonly bytes: number }
  | { readonly kind: 'advance'; readonly ms: number }

const ADDRESSES = ['198.51.100.1', '198.51.100.2', '2001:db8::3', '203.0.113.4'] as const

function opArbitrary(maxBytes: number): fc.Arbitrary<Op> {
  const source = fc.integer({ min: 0, max: ADDRESSES.length - 1 })
  return fc.oneof(
    fc.record({ kind: fc.constant('acquire' as const), source }),
    fc.record({ kind: fc.constant('release' as const), source }),
    fc.record({ kind: fc.constant('spend' as const), source, bytes: fc.integer({ min: 0, max: maxBytes }) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 0, max: 90_000 })) }),
  )
}

const limitsArbitrary = fc.record({
  maxConcurrent: fc.integer({ min: 1, max: 6 }),
  maxConcurrentPerSource: fc.integer({ min: 1, max: 3 }),
  connectionsPerMinutePerSource: fc.integer({ min: 1, max: 5 }),
  bytesPerMinutePerSource: fc.integer({ min: 1, max: 1_000 }),
})

interface Run {
  readonly spends: ReadonlyArray<ReadonlyArray<{ readonly atMs: number; readonly bytes: number }>> // per source
}

/** Applies `ops`, checking after every step that the concurrency count matches a model of what is held. */
function runChecked(options: MirrorBudgetOptions, ops: readonly Op[], afterEach: (budget: MirrorBudget, open: number) => void): Run {
  let now = 0
  const budget = new MirrorBudget({ ...options, now: () => now })
  const held = ADDRESSES.map(() => 0)
  const spends = ADDRESSES.map(() => [] as Array<{ atMs: number; bytes: number }>)
  for (const op of ops) {
    if (op.kind === 'advance') now += op.ms
    else {
      const address = ADDRESSES[op.source]!
      if (op.kind === 'acquire') {
        const verdict = budget.acquire(address)
        // Exact: the cap is hit when and only when the model says so (a forgotten open source would get a fresh slot),
        // unless the global bound or a full table answered first.
        if (verdict !== 'mirror-busy') expect(verdict === 'budget-concurrent').toBe(held[op.source] === options.maxConcurrentPerSource)
        if (verdict === null) held[op.source]!++
      } else if (op.kind === 'release') {
        budget.release(address) // stray releases included: they must do nothing
        if (held[op.source]! > 0) held[op.source]!--
      } else if (budget.spend(address, op.bytes)) spends[op.source]!.push({ atMs: now, bytes: op.bytes })
      else if (op.bytes === 0) expect(budget.trackedSources).toBe(options.maxTrackedSources) // a newcomer with no room
    }
    for (const count of held) expect(count).toBeLessThanOrEqual(options.maxConcurrentPerSource)
    afterEach(budget, held.filter((count) => count > 0).length)
  }
  return { spends }
}

/** The most bytes spent on one source within any closed 60 s window. */
function worstWindow(spends: ReadonlyArray<{ readonly atMs: number; readonly bytes: number }>): number {
  let worst = 0
  for (const start of spends) {
    let sum = 0
    for (const s of spends) if (s.atMs >= start.atMs && s.atMs <= start.atMs + MINUTE_MS) sum += s.bytes
    worst = Math.max(worst, sum)
  }
  return worst
}

describe('MirrorBudget: invariants under random operation sequences', () => {
  it('with every source tracked: concurrency within the cap, and at most 2 x bytesPerMinute in any 60 s window', () => {
    fc.assert(
      fc.property(limitsArbitrary, fc.array(opArbitrary(1_200), { maxLength: 120 }), (limits, ops) => {
        const options = { ...limits, maxTrackedSources: ADDRESSES.length }
        const run = runChecked(options, ops, (budget) => expect(budget.trackedSources).toBeLessThanOrEqual(ADDRESSES.length))
        for (const spends of run.spends) expect(worstWindow(spends)).toBeLessThanOrEqual(2 * limits.bytesPerMinutePerSource)
      }),
      { numRuns: 300 },
    )
  })

  it('with a small table: concurrency within the cap, open sources never forgotten, and the table bounded', () => {
    fc.assert(
      fc.property(limitsArbitrary, fc.integer({ min: 1, max: 3 }), fc.array(opArbitrary(1_200), { maxLength: 120 }), (limits, maxTrackedSources, ops) => {
        const run = runChecked({ ...limits, maxTrackedSources }, ops, (budget, open) => {
          // Never past the bound: a newcomer that finds no forgettable source is refused instead.
          expect(budget.trackedSources).toBeLessThanOrEqual(maxTrackedSources)
          expect(budget.trackedSources).toBeGreaterThanOrEqual(open)
        })
        // Forgetting a source never hands it a fresh budget, so the byte bound holds with a small table too.
        for (const spends of run.spends) expect(worstWindow(spends)).toBeLessThanOrEqual(2 * limits.bytesPerMinutePerSource)
      }),
      { numRuns: 300 },
    )
  })
})

describe('MirrorBudget: regressions', () => {
  const base = { maxConcurrent: 100, maxConcurrentPerSource: 9, connectionsPerMinutePerSource: 9, bytesPerMinutePerSource: 1_000 }

  it('a source cycled out of a full table by other addresses does not come back with a fresh budget', () => {
    const budget = new MirrorBudget({ ...base, maxTrackedSources: 2, now: () => 0 })
    let sent = 0
    for (let round = 0; round < 10; round++) {
      if (budget.spend('192.0.2.66', 1_000)) sent += 1_000
      budget.spend('10.0.0.1', 0)
      budget.spend('10.0.0.2', 0)
    }
    expect(sent).toBe(1_000)
    // The churning addresses (whole budgets) made room for each other; the spent source stayed tracked.
    expect(budget.trackedSources).toBeLessThanOrEqual(2)
    expect(budget.acquire('10.0.0.3')).toBeNull()
    expect(budget.spend('192.0.2.66', 1)).toBe(false)
  })

  it('the table shrinks back to its bound after open mirrors held it', () => {
    let now = 0
    const budget = new MirrorBudget({ ...base, maxConcurrentPerSource: 1, maxTrackedSources: 2, now: () => now })
    const addresses = ['198.51.100.1', '198.51.100.2', '198.51.100.3']
    const verdicts = addresses.map((a) => budget.acquire(a))
    expect(verdicts).toEqual([null, null, 'mirror-busy']) // no room for a third while both hold a mirror
    for (const a of addresses) budget.release(a)
    now += MINUTE_MS // budgets whole again: forgettable
    for (let i = 0; i < 100; i++) budget.spend(`10.0.0.${i}`, 0)
    expect(budget.trackedSources).toBeLessThanOrEqual(2)
  })

  it('a clock stepping back does not refill twice', () => {
    let now = 1_000_000
    const budget = new MirrorBudget({ ...base, maxTrackedSources: 9, now: () => now })
    let sent = 0
    for (let i = 0; i < 5; i++) {
      if (budget.spend('192.0.2.66', 1_000)) sent += 1_000
      now -= 60_000
      budget.spend('192.0.2.66', 0)
      now += 60_000
    }
    expect(sent).toBe(1_000)
  })

  it('bounds open mirrors across all sources (mirror-busy)', () => {
    const budget = new MirrorBudget({ ...base, maxConcurrent: 2, maxTrackedSources: 9, now: () => 0 })
    expect(['192.0.2.1', '192.0.2.2', '192.0.2.3'].map((a) => budget.acquire(a))).toEqual([null, null, 'mirror-busy'])
    expect(budget.open).toBe(2)
    budget.release('192.0.2.1')
    expect(budget.acquire('192.0.2.3')).toBeNull()
  })
})

describe('MirrorBudget: partial spends and the start floor', () => {
  it('spendUpTo grants what is left, never more, and takes it', () => {
    const budget = new MirrorBudget({ maxConcurrent: 9, maxConcurrentPerSource: 9, connectionsPerMinutePerSource: 9, bytesPerMinutePerSource: 1_000, maxTrackedSources: 9, now: () => 0 })
    expect(budget.spendUpTo('192.0.2.1', 600)).toBe(600)
    expect(budget.spendUpTo('192.0.2.1', 65_536)).toBe(400)
    expect(budget.spendUpTo('192.0.2.1', 1)).toBe(0)
    expect(budget.spend('192.0.2.1', 0)).toBe(true)
  })

  it('a new mirror needs a tenth of the byte budget (at most 4 KiB), so a trickle of refill does not grant doomed sessions', () => {
    let now = 0
    const budget = new MirrorBudget({ maxConcurrent: 9, maxConcurrentPerSource: 9, connectionsPerMinutePerSource: 1_000, bytesPerMinutePerSource: 20_000, maxTrackedSources: 9, now: () => now })
    expect(budget.spendUpTo('192.0.2.1', 20_000)).toBe(20_000)
    now += 300 // 100 bytes back
    expect(budget.acquire('192.0.2.1')).toBe('budget-bytes')
    now += 5_700 // 2,000 bytes back: a tenth
    expect(budget.acquire('192.0.2.1')).toBeNull()
    const big = new MirrorBudget({ maxConcurrent: 9, maxConcurrentPerSource: 9, connectionsPerMinutePerSource: 1_000, bytesPerMinutePerSource: 10_000_000, maxTrackedSources: 9, now: () => now })
    expect(big.spendUpTo('192.0.2.2', 10_000_000 - 4_096)).toBe(10_000_000 - 4_096)
    expect(big.acquire('192.0.2.2')).toBeNull() // 4 KiB left is enough, whatever the budget
  })
})
