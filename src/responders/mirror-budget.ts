export type BudgetRefusal = 'budget-concurrent' | 'budget-connections' | 'budget-bytes'

export interface MirrorBudgetOptions {
  readonly maxConcurrentPerSource: number
  readonly connectionsPerMinutePerSource: number
  readonly bytesPerMinutePerSource: number
  readonly maxTrackedSources: number
  readonly now?: () => number // injectable clock for tests
}

const MINUTE_MS = 60_000

/** One address's budget: open mirrors and two token buckets that refill continuously over a minute. */
interface SourceBudget {
  concurrent: number
  connectionTokens: number
  byteTokens: number
  refilledAtMs: number
}

/**
 * Per-source mirror budgets, so the sensor cannot be turned into a reflector: a source gets at most so many mirrors at
 * once, so many new ones per minute and so many bytes sent to its address per minute. Token buckets rather than fixed
 * windows: no burst of twice the budget across a window edge. The table of sources is bounded; the least recently
 * seen source without an open mirror is forgotten first.
 */
export class MirrorBudget {
  readonly #o: MirrorBudgetOptions
  readonly #now: () => number
  readonly #sources = new Map<string, SourceBudget>()
  refused = 0

  constructor(options: MirrorBudgetOptions) {
    this.#o = options
    this.#now = options.now ?? Date.now
  }

  /** Takes a mirror slot for `address`; null when granted, else which budget is spent. A grant needs a release(). */
  acquire(address: string): BudgetRefusal | null {
    const budget = this.#budget(address)
    let refusal: BudgetRefusal | null = null
    if (budget.concurrent >= this.#o.maxConcurrentPerSource) refusal = 'budget-concurrent'
    else if (budget.connectionTokens < 1) refusal = 'budget-connections'
    else if (budget.byteTokens < 1) refusal = 'budget-bytes'
    if (refusal !== null) {
      this.refused++
      return refusal
    }
    budget.concurrent++
    budget.connectionTokens -= 1
    return null
  }

  release(address: string): void {
    const budget = this.#sources.get(address)
    if (budget !== undefined && budget.concurrent > 0) budget.concurrent--
  }

  /**
   * Spends `bytes` about to be sent to `address`. False, with nothing spent, when the budget cannot cover them: the
   * caller cuts the relay before sending, so the budget is never overshot.
   */
  spend(address: string, bytes: number): boolean {
    const budget = this.#budget(address)
    if (budget.byteTokens < bytes) return false
    budget.byteTokens -= bytes
    return true
  }

  get trackedSources(): number {
    return this.#sources.size
  }

  #budget(address: string): SourceBudget {
    const now = this.#now()
    let budget = this.#sources.get(address)
    if (budget === undefined) {
      budget = { concurrent: 0, connectionTokens: this.#o.connectionsPerMinutePerSource, byteTokens: this.#o.bytesPerMinutePerSource, refilledAtMs: now }
      this.#forgetOldest()
    } else {
      this.#sources.delete(address) // re-inserted below: the Map's order is least recently seen first
      const elapsed = Math.max(0, now - budget.refilledAtMs)
      budget.connectionTokens = Math.min(this.#o.connectionsPerMinutePerSource, budget.connectionTokens + (elapsed * this.#o.connectionsPerMinutePerSource) / MINUTE_MS)
      budget.byteTokens = Math.min(this.#o.bytesPerMinutePerSource, budget.byteTokens + (elapsed * this.#o.bytesPerMinutePerSource) / MINUTE_MS)
      budget.refilledAtMs = now
    }
    this.#sources.set(address, budget)
    return budget
  }

  #forgetOldest(): void {
    if (this.#sources.size < this.#o.maxTrackedSources) return
    for (const [address, budget] of this.#sources) {
      // A source with a mirror open stays: forgetting it would hand it a fresh budget mid-session.
      if (budget.concurrent === 0) {
        this.#sources.delete(address)
        return
      }
    }
  }
}
