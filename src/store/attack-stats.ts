import type Database from 'better-sqlite3'
import { filterCapabilities, filterSql, type AttackFilter, type FilterSql } from './attack-filter.js'
import { tallySelection } from './selection-stats.js'

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
 * Two ways, by the filter. With no criterion but time, grouped queries that read indexes only (migration 005 adds
 * the covering ones): a million attacks in under a second (bench section f). With any other criterion the indexes
 * cannot group on their own, and each grouped query would read every selected row again, so one pass reads the
 * selection and counts in memory (selection-stats.ts).
 */
export function attackStats(db: Database.Database, filter: AttackFilter, options: { readonly top: number }): AttackStats {
  const sql = filterSql(filter, filterCapabilities(db))
  const read = db.transaction((): AttackStats => (isTimeOnly(filter) ? statsByIndexes(db, filter, sql, options.top) : statsByScan(db, sql, options.top)))
  return read()
}

function isTimeOnly(filter: AttackFilter): boolean {
  return Object.entries(filter).every(([key, value]) => value === undefined || key === 'sinceMs' || key === 'untilMs')
}

/** The index-only way: the total is the sum of the timeline, per-payload details for the top payloads only. */
function statsByIndexes(db: Database.Database, filter: AttackFilter, { where, params }: FilterSql, top: number): AttackStats {
  const and = (clause: string): string => (where === '' ? `WHERE ${clause}` : `${where} AND ${clause}`)
  const span = db.prepare<unknown[], { first: number | null; last: number | null }>(`SELECT min(started_at) AS first, max(started_at) AS last FROM attacks ${where}`).get(...params)!
  const bucketMs = bucketWidth(span.first, span.last)
  const buckets = span.first === null ? [] : timeline(db, filter, { bucketMs, firstMs: span.first, lastMs: span.last! })
  const topPorts = db
    .prepare<unknown[], { port: number; protocol: string; count: number }>(`SELECT dst_port AS port, protocol, count(*) AS count FROM attacks ${where} GROUP BY dst_port, protocol ORDER BY count DESC, port, protocol LIMIT ?`)
    .all(...params, top)
  // One pass gives both the distinct count and the top list; there are far fewer sources than attacks.
  let distinct = 0
  const topSources: { address: string; count: number }[] = []
  for (const row of db.prepare<unknown[], { address: string; count: number }>(`SELECT src_ip AS address, count(*) AS count FROM attacks ${where} GROUP BY src_ip`).iterate(...params)) {
    distinct += 1
    keepTop(topSources, row, top)
  }
  const topHashes = db
    .prepare<unknown[], { sha256: string; count: number }>(`SELECT sha256, count(*) AS count FROM attacks ${and('sha256 != ?')} GROUP BY sha256 ORDER BY count DESC, sha256 LIMIT ?`)
    .all(...params, EMPTY_SHA256, top)
  // By the payload's own index: for a time range the planner would otherwise walk the range's every row once per
  // payload.
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
  return assemble({ total, firstMs: span.first, lastMs: span.last, topPorts, topSources, topPayloads }, { distinct, fresh }, bucketMs, buckets)
}

/** The figures both ways share: the new/seen split of the sources and the timeline with its empty buckets. */
function assemble(
  lists: Omit<AttackStats, 'sources' | 'timeline'>,
  sources: { readonly distinct: number; readonly fresh: number },
  bucketMs: number,
  buckets: readonly { startMs: number; count: number }[],
): AttackStats {
  return {
    ...lists,
    sources: { distinct: sources.distinct, new: sources.fresh, seenBefore: sources.distinct - sources.fresh },
    timeline: { bucketMs, buckets: fillGaps(buckets, bucketMs) },
  }
}

/** The one-pass way: the same figures, in the same order (ties broken the same way), from tallySelection. */
function statsByScan(db: Database.Database, sql: FilterSql, top: number): AttackStats {
  const tally = tallySelection(db, sql)
  const bucketMs = bucketWidth(tally.firstMs, tally.lastMs)
  const counts = new Map<number, number>()
  for (const t of tally.startTimes) {
    const start = Math.floor(t / bucketMs) * bucketMs
    counts.set(start, (counts.get(start) ?? 0) + 1)
  }
  const buckets = [...counts].sort((a, b) => a[0] - b[0]).map(([startMs, count]) => ({ startMs, count }))
  const topPorts = [...tally.ports.values()]
    .sort((a, b) => b.count - a.count || a.port - b.port || compareText(a.protocol, b.protocol))
    .slice(0, top)
    .map(({ port, protocol, count }) => ({ port, protocol, count }))
  const topSources: { address: string; count: number }[] = []
  for (const [address, { count }] of tally.sources) keepTop(topSources, { address, count }, top)
  const topPayloads = [...tally.payloads]
    .filter(([sha256]) => sha256 !== EMPTY_SHA256)
    .sort((a, b) => b[1].count - a[1].count || compareText(a[0], b[0]))
    .slice(0, top)
    .map(([sha256, p]) => ({ sha256, size: p.size, count: p.count, firstMs: p.firstMs, lastMs: p.lastMs, sources: typeof p.sources === 'string' ? 1 : p.sources.size }))
  // New: no attack from the source anywhere in the database before its first one here (the (src_ip, started_at) index).
  const earlier = db.prepare<[string, number], number>('SELECT 1 FROM attacks WHERE src_ip = ? AND started_at < ? LIMIT 1').pluck()
  let fresh = 0
  for (const [address, { firstMs }] of tally.sources) if (earlier.get(address, firstMs) === undefined) fresh += 1
  return assemble({ total: tally.total, firstMs: tally.firstMs, lastMs: tally.lastMs, topPorts, topSources, topPayloads }, { distinct: tally.sources.size, fresh }, bucketMs, buckets)
}

/** SQLite's BINARY order for the ASCII text compared here (addresses, digests, protocol names). */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
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

/**
 * Attacks per bucket of a selection narrowed by time at most: one range count per bucket on the started_at index,
 * which reads the index once in order; grouping by an expression would sort every row instead.
 */
function timeline(db: Database.Database, filter: AttackFilter, q: { readonly bucketMs: number; readonly firstMs: number; readonly lastMs: number }): { startMs: number; count: number }[] {
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
