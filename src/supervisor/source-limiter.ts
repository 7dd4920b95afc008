/** Why a connection or session was turned away; each is a counter. */
export type RefusalReason = 'max-connections' | 'max-per-source' | 'rate-per-source' | 'max-sources'

export interface SourceLimiterOptions {
  readonly maxConnections: number
  readonly maxConnectionsPerSource: number
  readonly newConnectionsPerSecondPerSource: number
  readonly maxTrackedSources: number
  readonly now?: () => number
}

interface SourceState {
  active: number
  windowStartMs: number
  windowCount: number
}

/**
 * Admission control for connections and UDP sessions: a global cap, a cap per source address and a rate per source
 * (fixed 1 s windows). Memory is bounded by `maxTrackedSources`: sources with nothing open and an old window are
 * forgotten first; if every tracked source is busy, new sources are refused rather than tracked without bound.
 */
export class SourceLimiter {
  readonly #opts: SourceLimiterOptions
  readonly #now: () => number
  readonly #sources = new Map<string, SourceState>()
  #active = 0
  #lastPruneMs = Number.NEGATIVE_INFINITY
  readonly refused: Record<RefusalReason, number> = {
    'max-connections': 0,
    'max-per-source': 0,
    'rate-per-source': 0,
    'max-sources': 0,
  }

  constructor(options: SourceLimiterOptions) {
    this.#opts = options
    this.#now = options.now ?? Date.now
  }

  /** Admits one new connection from `source` (then `release` must follow), or says why not. */
  admit(source: string): RefusalReason | null {
    const now = this.#now()
    if (this.#active >= this.#opts.maxConnections) return this.#refuse('max-connections')
    let state = this.#sources.get(source)
    if (state === undefined) {
      if (this.#sources.size >= this.#opts.maxTrackedSources && !this.#prune(now)) return this.#refuse('max-sources')
      state = { active: 0, windowStartMs: now, windowCount: 0 }
      this.#sources.set(source, state)
    }
    if (now - state.windowStartMs >= 1_000) {
      state.windowStartMs = now
      state.windowCount = 0
    }
    if (state.windowCount >= this.#opts.newConnectionsPerSecondPerSource) return this.#refuse('rate-per-source')
    if (state.active >= this.#opts.maxConnectionsPerSource) return this.#refuse('max-per-source')
    state.windowCount++
    state.active++
    this.#active++
    return null
  }

  /** Ends one admitted connection from `source`. */
  release(source: string): void {
    const state = this.#sources.get(source)
    if (state === undefined || state.active === 0) return
    state.active--
    this.#active--
  }

  get active(): number {
    return this.#active
  }

  get trackedSources(): number {
    return this.#sources.size
  }

  #refuse(reason: RefusalReason): RefusalReason {
    this.refused[reason]++
    return reason
  }

  /**
   * Forgets sources with nothing open whose rate window is over; true when room was made. A full table under a flood
   * of new sources would otherwise be scanned on every attempt, so a scan runs at most every 100 ms.
   */
  #prune(now: number): boolean {
    if (now - this.#lastPruneMs < 100) return false
    this.#lastPruneMs = now
    const before = this.#sources.size
    for (const [source, state] of this.#sources) {
      if (state.active === 0 && now - state.windowStartMs >= 1_000) this.#sources.delete(source)
    }
    return this.#sources.size < before
  }
}
