import type Database from 'better-sqlite3'
import { filterSql, type AttackFilter } from './attack-filter.js'

/** What `honeytrap-ts attacks stats` reports; every figure honours the same filter. */
export interface AttackStats {
  readonly total: number
  readonly firstMs: number | null
  readonly lastMs: number | null
  readonly topPorts: readonly { readonly port: number; readonly protocol: string; readonly count: number }[]
  readonly topSources: readonly { readonly address: string; readonly count: number }[]
  readonly topPayloads: readonly { readonly sha256: string; readonly size: number; readonly count: number; readonly firstMs: number; readonly lastMs: number; readonly sources: number }[]
  /** Sources of the selection seen before its first attack (anywhere in the database) against those new in it. */
  readonly sources: { readonly distinct: number; readonly new: number; readonly seenBefore: number }
  readonly timeline: { readonly bucketMs: number; readonly buckets: readonly { readonly startMs: number; readonly count: number }[] }
}

// Bucket widths the timeline picks from: the smallest that gives at most MAX_BUCKETS buckets.
const BUCKET_WIDTHS_MS = [60_000, 300_000, 900_000, 3_600_000, 6 * 3_600_000, 86_400_000, 7 * 86_400_000, 30 * 86_400_000]
const MAX_BUCKETS = 48

/** The statistics of the attacks `filter` selects; `top` rows per list. One read transaction: one snapshot. */
export function attackStats(db: Database.Database, filter: AttackFilter, options: { readonly top: number }): AttackStats {
  const hasPluginTables = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'downloads'").get() !== undefined
  const { where, params } = filterSql(filter, { hasPluginTables })
  const read = db.transaction((): AttackStats => {
    const span = db.prepare<unknown[], { n: number; first: number | null; last: number | null }>(`SELECT count(*) AS n, min(started_at) AS first, max(started_at) AS last FROM attacks ${where}`).get(...params)!
    const topPorts = db
      .prepare<unknown[], { port: number; protocol: string; count: number }>(`SELECT dst_port AS port, protocol, count(*) AS count FROM attacks ${where} GROUP BY dst_port, protocol ORDER BY count DESC, port LIMIT ?`)
      .all(...params, options.top)
    const topSources = db
      .prepare<unknown[], { address: string; count: number }>(`SELECT src_ip AS address, count(*) AS count FROM attacks ${where} GROUP BY src_ip ORDER BY count DESC, address LIMIT ?`)
      .all(...params, options.top)
    const topPayloads = db
      .prepare<unknown[], { sha256: string; size: number; count: number; firstMs: number; lastMs: number; sources: number }>(
        `SELECT sha256, max(payload_size) AS size, count(*) AS count, min(started_at) AS firstMs, max(started_at) AS lastMs, count(DISTINCT src_ip) AS sources
         FROM attacks ${where} GROUP BY sha256 ORDER BY count DESC, sha256 LIMIT ?`,
      )
      .all(...params, options.top)
    // A source is new when the database holds no attack from it before the selection's first one from it.
    const sources = db
      .prepare<unknown[], { distinct: number; new: number }>(
        `WITH picked AS (SELECT src_ip, min(started_at) AS first FROM attacks ${where} GROUP BY src_ip)
         SELECT count(*) AS "distinct",
                sum(NOT EXISTS (SELECT 1 FROM attacks o WHERE o.src_ip = picked.src_ip AND o.started_at < picked.first)) AS new
         FROM picked`,
      )
      .get(...params)!
    const bucketMs = bucketWidth(span.first, span.last)
    const buckets =
      span.first === null
        ? []
        : db
            .prepare<unknown[], { startMs: number; count: number }>(`SELECT (started_at / ?) * ? AS startMs, count(*) AS count FROM attacks ${where} GROUP BY startMs ORDER BY startMs`)
            .all(bucketMs, bucketMs, ...params)
    return {
      total: span.n,
      firstMs: span.first,
      lastMs: span.last,
      topPorts,
      topSources,
      topPayloads,
      sources: { distinct: sources.distinct, new: sources.new ?? 0, seenBefore: sources.distinct - (sources.new ?? 0) },
      timeline: { bucketMs, buckets: fillGaps(buckets, bucketMs) },
    }
  })
  return read()
}

function bucketWidth(firstMs: number | null, lastMs: number | null): number {
  const span = firstMs === null || lastMs === null ? 0 : lastMs - firstMs
  return BUCKET_WIDTHS_MS.find((w) => span / w < MAX_BUCKETS) ?? BUCKET_WIDTHS_MS[BUCKET_WIDTHS_MS.length - 1]!
}

/** Empty buckets between the first and the last, so the timeline reads as time. */
function fillGaps(buckets: readonly { startMs: number; count: number }[], bucketMs: number): { startMs: number; count: number }[] {
  const first = buckets[0]
  const last = buckets[buckets.length - 1]
  if (first === undefined || last === undefined) return []
  const byStart = new Map(buckets.map((b) => [b.startMs, b.count]))
  const filled: { startMs: number; count: number }[] = []
  for (let t = first.startMs; t <= last.startMs && filled.length <= MAX_BUCKETS * 31; t += bucketMs) filled.push({ startMs: t, count: byStart.get(t) ?? 0 })
  return filled
}
