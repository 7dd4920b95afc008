/** Percentiles of connect latencies, as the benchmark reports them. */
export interface LatencySummary {
  readonly count: number
  readonly p50Ms: number | null // null when nothing connected
  readonly p99Ms: number | null
  readonly maxMs: number | null
  readonly atLeast1s: number // connects that took 1 s or more: a SYN was dropped and retransmitted
}

/** Nearest-rank percentile of an ascending array: the smallest value with at least p % of values at or below it. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1] ?? null
}

/** Summarises latencies given in microseconds (the load generator's unit) into milliseconds. Pure. */
export function summarizeLatencies(latenciesUs: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(latenciesUs).sort()
  const values = Array.from(sorted)
  const ms = (us: number | null): number | null => (us === null ? null : us / 1_000)
  let atLeast1s = 0
  for (const us of values) if (us >= 1_000_000) atLeast1s++
  return { count: values.length, p50Ms: ms(percentile(values, 50)), p99Ms: ms(percentile(values, 99)), maxMs: ms(values.at(-1) ?? null), atLeast1s }
}
