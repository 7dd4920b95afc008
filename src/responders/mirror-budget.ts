export type BudgetRefusal = 'mirror-busy' | 'budget-concurrent' | 'budget-connections' | 'budget-bytes'

export interface MirrorBudgetOptions {
  readonly maxConcurrent: number // mirrors open at once, all sources: each holds a second descriptor
  readonly maxConcurrentPerSource: number
  readonly connectionsPerMinutePerSource: number
  readonly bytesPerMinutePerSource: number
  readonly maxTrackedSources: number
  readonly now?: () => number // injectable clock for tests; default monotonic (a wall clock stepping back would refill twice)
}

const MINUTE_MS = 60_000
// How many of the least recently seen sources are looked at to find one that can be forgotten.
const FORGET_SCAN = 8

/** One address's budget: open mirrors and two token buckets that refill continuously over a minute. */
interface SourceBudget {
  concurrent: number
  connectionTokens: number
  byteTokens: number
  refilledAtMs: number
}

/**
 * Mirror budgets, so the sensor cannot be turned into a reflector: a bound on open mirrors in total, and per source at most so many mirrors at once, so many new ones per minute and so many bytes sent to its address per minute. Token buckets rather than fixed
 * windows: no burst of twice the budget across a window edge. The table of sources is bounded; the least recently
 * seen source without an open mirror is forgotten first.
 */
export class MirrorBudget {
  readonly #o: MirrorBudgetOptions
  readonly #now: () => number
  readonly #sources = new Map<string, SourceBudget>()
  #open = 0
  // A new mirror needs a tenth of the byte budget left (at most 4 KiB): with a few bytes it would only be cut at once,
  // and a refill of a byte or two a millisecond must not keep granting such sessions.
  readonly #minStartBytes: number
  refused = 0

  constructor(options: MirrorBudgetOptions) {
    this.#o = options
    this.#minStartBytes = Math.max(1, Math.min(4_096, Math.floor(options.bytesPerMinutePerSource / 10)))
    this.#now = options.now ?? (() => performance.now())
  }

  /** Takes a mirror slot for `address`; null when granted, else which budget is spent. A grant needs a release(). */
  acquire(address: string): BudgetRefusal | null {
    const budget = this.#budget(address)
    let refusal: BudgetRefusal | null = null
    if (budget === null || this.#open >= this.#o.maxConcurrent) refusal = 'mirror-busy'
    else if (budget.concurrent >= this.#o.maxConcurrentPerSource) refusal = 'budget-concurrent'
    else if (budget.connectionTokens < 1) refusal = 'budget-connections'
    else if (budget.byteTokens < this.#minStartBytes) refusal = 'budget-bytes'
    if (refusal !== null) {
      this.refused++
      return refusal
    }
    budget!.concurrent++
    budget!.connectionTokens -= 1
    this.#open++
    return null
  }

  release(address: string): void {
    const budget = this.#sources.get(address)
    if (budget !== undefined && budget.concurrent > 0) {
      budget.concurrent--
      this.#open--
    }
  }

  /** Mirrors open now, all sources. */
  get open(): number {
    return this.#open
  }

  /**
   * Spends `bytes` about to be sent to `address`, all or nothing (a datagram goes whole or not at all). False, with
   * nothing spent, when the budget cannot cover them (or `address` is new and the table has no room for it).
   */
  spend(address: string, bytes: number): boolean {
    const budget = this.#budget(address)
    if (budget === null || budget.byteTokens < bytes) return false
    budget.byteTokens -= bytes
    return true
  }

  /**
   * Spends up to `bytes` and returns how many may go: a stream sends that prefix and, when it is short, is cut. The
   * budget is never overshot, and the last bytes it allows are used rather than lost with a whole refused chunk.
   */
  spendUpTo(address: string, bytes: number): number {
    const budget = this.#budget(address)
    if (budget === null) return 0
    const granted = Math.min(bytes, Math.max(0, Math.floor(budget.byteTokens)))
    budget.byteTokens -= granted
    return granted
  }

  get trackedSources(): number {
    return this.#sources.size
  }

  /** The refilled budget of `address`, or null when it is new and the table has no room for it. */
  #budget(address: string): SourceBudget | null {
    const now = this.#now()
    let budget = this.#sources.get(address)
    if (budget === undefined) {
      if (!this.#makeRoom(now)) return null
      budget = { concurrent: 0, connectionTokens: this.#o.connectionsPerMinutePerSource, byteTokens: this.#o.bytesPerMinutePerSource, refilledAtMs: now }
    } else {
      this.#sources.delete(address) // re-inserted below: the Map's order is least recently seen first
      this.#refill(budget, now)
    }
    this.#sources.set(address, budget)
    return budget
  }

  #refill(budget: SourceBudget, now: number): void {
    const elapsed = Math.max(0, now - budget.refilledAtMs)
    budget.connectionTokens = Math.min(this.#o.connectionsPerMinutePerSource, budget.connectionTokens + (elapsed * this.#o.connectionsPerMinutePerSource) / MINUTE_MS)
    budget.byteTokens = Math.min(this.#o.bytesPerMinutePerSource, budget.byteTokens + (elapsed * this.#o.bytesPerMinutePerSource) / MINUTE_MS)
    budget.refilledAtMs = Math.max(budget.refilledAtMs, now)
  }

  /**
   * Makes room for one more source. Only a source whose budget is whole again can be forgotten: forgetting one that
   * spent its budget would hand it a fresh one, and an attacker with many (spoofed) addresses could cycle a victim
   * through the table. When no such source is found among the least recently seen, the newcomer is refused (fail
   * closed); the table never grows past its bound.
   */
  #makeRoom(now: number): boolean {
    while (this.#sources.size >= this.#o.maxTrackedSources) {
      let victim: string | null = null
      let scanned = 0
      for (const [address, budget] of this.#sources) {
        if (scanned++ >= FORGET_SCAN) break
        if (budget.concurrent > 0) continue
        this.#refill(budget, now)
        if (budget.connectionTokens >= this.#o.connectionsPerMinutePerSource && budget.byteTokens >= this.#o.bytesPerMinutePerSource) {
          victim = address
          break
        }
      }
      if (victim === null) return false
      this.#sources.delete(victim)
    }
    return true
  }
}
