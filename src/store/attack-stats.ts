import type Database from 'better-sqlite3'
import { filterCapabilities, filterSql, type AttackFilter } from './attack-filter.js'

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

// The digest of the empty attack string: connect scans that sent nothing are counted, but they are not a payload.
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

/**
 * The statistics of the attacks `filter` selects; `top` rows per list. One read transaction: one snapshot.
 *
 * Written for a million attacks in under a second (bench section f): every pass over the selection reads an index
 * only where the filter allows (migration 005 adds the covering ones), the total is the sum of the timeline, and the
 * per-payload details are looked up for the top payloads only.
 */
export function attackStats(db: Database.Database, filter: AttackFilter, options: { readonly top: number }): AttackStats {
  const { where, params } = filterSql(filter, filterCapabilities(db))
  const and = (clause: string): string => (where === '' ? `WHERE ${clause}` : `${where} AND ${clause}`)
  const read = db.transaction((): AttackStats => {
    const span = db.prepare<unknown[], { first: number | null; last: number | null }>(`SELECT min(started_at) AS first, max(started_at) AS last FROM attacks ${where}`).get(...params)!
    const bucketMs = bucketWidth(span.first, span.last)
    const buckets = span.first === null ? [] : timeline(db, filter, { where, params, bucketMs, firstMs: span.first, lastMs: span.last! })
    const topPorts = db
      .prepare<unknown[], { port: number; protocol: string; count: number }>(`SELECT dst_port AS port, protocol, count(*) AS count FROM attacks ${where} GROUP BY dst_port, protocol ORDER BY count DESC, port LIMIT ?`)
      .all(...params, options.top)
    // One pass gives both the distinct count and the top list; there are far fewer sources than attacks.
    let distinct = 0
    const topSources: { address: string; count: number }[] = []
    for (const row of db.prepare<unknown[], { address: string; count: number }>(`SELECT src_ip AS address, count(*) AS count FROM attacks ${where} GROUP BY src_ip`).iterate(...params)) {
      distinct += 1
      keepTop(topSources, row, options.top)
    }
    const topHashes = db
      .prepare<unknown[], { sha256: string; count: number }>(`SELECT sha256, count(*) AS count FROM attacks ${and('sha256 != ?')} GROUP BY sha256 ORDER BY count DESC, sha256 LIMIT ?`)
      .all(...params, EMPTY_SHA256, options.top)
    // By the payload's own index: a filter on a busy port would otherwise make the planner walk the port's every row
    // once per payload.
    const details = db.prepare<unknown[], { size: number; firstMs: number; lastMs: number; sources: number }>(
      `SELECT max(payload_size) AS size, min(started_at) AS firstMs, max(started_at) AS lastMs, count(DISTINCT src_ip) AS sources
       FROM attacks INDEXED BY attacks_sha256 ${and('sha256 = ?')}`,
    )
    const topPayloads = topHashes.map((h) => {
      const d = details.get(...params, h.sha256)!
      return { sha256: h.sha256, size: d.size, count: h.count, firstMs: d.firstMs, lastMs: d.lastMs, sources: d.sources }
    })
    // A source is new when the database holds no attack from it before the selection's first one from it. With no
    // filter the selection is the whole database, so every source is new by that definition: no query needed.
    const fresh =
      where === ''
        ? distinct
        : (db
            .prepare<unknown[], { new: number | null }>(
              `WITH picked AS (SELECT src_ip, min(started_at) AS first FROM attacks ${where} GROUP BY src_ip)
               SELECT sum(NOT EXISTS (SELECT 1 FROM attacks o WHERE o.src_ip = picked.src_ip AND o.started_at < picked.first)) AS new FROM picked`,
            )
            .get(...params)!.new ?? 0)
    const total = buckets.reduce((n, b) => n + b.count, 0)
    return {
      total,
      firstMs: span.first,
      lastMs: span.last,
      topPorts,
      topSources,
      topPayloads,
      sources: { distinct, new: fresh, seenBefore: distinct - fresh },
      timeline: { bucketMs, buckets: fillGaps(buckets, bucketMs) },
    }
  })
  return read()
}

/** Keeps `list` as the `top` largest counts (ties: the smaller address first), sorted. */
function keepTop(list: { address: string; count: number }[], row: { address: string; count: number }, top: number): void {
  const last = list[list.length - 1]
  if (list.length >= top && last !== undefined && (row.count < last.count || (row.count === last.count && row.address > last.address))) return
  let i = list.length
  while (i > 0 && (list[i - 1]!.count < row.count || (list[i - 1]!.count === row.count && list[i - 1]!.address > row.address))) i -= 1
  list.splice(i, 0, row)
  if (list.length > top) list.pop()
}

interface TimelineQuery {
  readonly where: string
  readonly params: readonly (string | number | Buffer)[]
  readonly bucketMs: number
  readonly firstMs: number
  readonly lastMs: number
}

/**
 * Attacks per bucket. With no criterion but time, one range count per bucket on the started_at index, which reads the
 * index once in order; grouping by an expression would sort every row instead. With other criteria, one grouped pass.
 */
function timeline(db: Database.Database, filter: AttackFilter, q: TimelineQuery): { startMs: number; count: number }[] {
  const timeOnly = Object.entries(filter).every(([key, value]) => value === undefined || key === 'sinceMs' || key === 'untilMs')
  if (!timeOnly) {
    return db
      .prepare<unknown[], { startMs: number; count: number }>(`SELECT (started_at / ?) * ? AS startMs, count(*) AS count FROM attacks ${q.where} GROUP BY startMs ORDER BY startMs`)
      .all(q.bucketMs, q.bucketMs, ...q.params)
  }
  const count = db.prepare<[number, number], { n: number }>('SELECT count(*) AS n FROM attacks WHERE started_at >= ? AND started_at < ?')
  const buckets: { startMs: number; count: number }[] = []
  const firstBucket = Math.floor(q.firstMs / q.bucketMs) * q.bucketMs
  for (let start = firstBucket; start <= q.lastMs; start += q.bucketMs) {
    // Clamped to the selection, whose bounds need not fall on bucket edges.
    const from = Math.max(start, filter.sinceMs ?? start)
    const to = Math.min(start + q.bucketMs, filter.untilMs ?? start + q.bucketMs)
    const n = count.get(from, to)!.n
    if (n > 0) buckets.push({ startMs: start, count: n })
  }
  return buckets
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
