import { lstatSync, realpathSync, unlinkSync } from 'node:fs'
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type Database from 'better-sqlite3'

/**
 * Retention: removes attacks that started before a cutoff, their plugin rows, and the responses and samples (with
 * their quarantined files) that nothing references any more. Safe while the sensor runs: every write is a short
 * IMMEDIATE transaction of at most `batchSize` rows, and the one long read (finding unreferenced responses) runs in a
 * WAL snapshot that blocks no writer.
 */

export interface RetentionOptions {
  readonly olderThanMs: number // absolute cutoff, ms since epoch: attacks that STARTED before it are removed
  readonly batchSize?: number // attacks (or responses, samples) per transaction; default 1,000
  readonly signal?: AbortSignal // checked between transactions: what is committed stays, the rest is left for next time
  readonly quarantineDir?: string | null // sample files are deleted only inside it; null: no file is deleted
  readonly onProgress?: (progress: RetentionProgress) => void
}

export type RetentionPhase = 'attacks' | 'responses' | 'samples'

/** Rows removed so far in the current phase (after each transaction). */
export interface RetentionProgress {
  readonly phase: RetentionPhase
  readonly removed: number
}

/** What retention removed (or, from previewRetention, would remove). */
export interface RetentionResult {
  readonly attacks: number
  readonly pluginRuns: number
  readonly artifacts: number
  readonly downloads: number
  readonly responsesRemoved: number
  readonly samplesRemoved: number
  readonly sampleFilesRemoved: number
  readonly sampleFilesSkipped: number // named by a removed sample but left alone: outside quarantineDir, not named by its digest, not a plain file
  readonly aborted: boolean // the signal stopped it before the end; run it again to finish
}

const DEFAULT_BATCH_SIZE = 1_000
// A batch also ends at this many payload bytes: deleting a row walks its overflow pages, and 1,000 attacks of 1 MiB
// would hold the write lock for seconds, while the sensor's attacks queue in its memory.
const MAX_BATCH_PAYLOAD_BYTES = 32 * 1024 * 1024
const MIN_LOCK_RELEASE_MS = 1
const ORPHANS_TABLE = 'temp.ht_retention_orphan_responses'
const SHA256_HEX = /^[0-9a-f]{64}$/

/**
 * Leaves the write lock free for as long as the last transaction held it (and at least a millisecond). The sensor's
 * store never blocks on the lock: it tries again from a timer. Transactions back to back would leave it gaps of
 * microseconds that its tries almost never hit, and a long retention would starve it until its queue filled and it
 * dropped attacks (seen in CI: no commit for the whole run). Free half of the time, each of its tries gets in with even
 * odds. Retention takes about twice as long with its default batches; with tiny ones (tests) the millisecond dominates.
 */
async function releaseLock(heldMs: number): Promise<void> {
  await sleep(Math.max(MIN_LOCK_RELEASE_MS, heldMs))
}

/** Runs `batch` as an IMMEDIATE transaction: its result, and how long it held the write lock. */
function timedImmediate<T>(batch: Database.Transaction<() => T>): [T, number] {
  const started = performance.now()
  const result = batch.immediate()
  return [result, performance.now() - started]
}

type Counts = { -readonly [K in keyof RetentionResult]: RetentionResult[K] }

interface Schema {
  readonly responses: boolean // schema >= 2: responses table and attacks.response_sha256
  readonly plugins: boolean // schema >= 3: plugin_runs, artifacts, downloads, samples
}

function schemaOf(db: Database.Database): Schema {
  const tables = new Set(db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all())
  const responseColumn = db.prepare("SELECT 1 FROM pragma_table_info('attacks') WHERE name = 'response_sha256'").get() !== undefined
  return {
    responses: tables.has('responses') && responseColumn,
    plugins: ['plugin_runs', 'artifacts', 'downloads', 'samples'].every((t) => tables.has(t)),
  }
}

function emptyCounts(): Counts {
  return { attacks: 0, pluginRuns: 0, artifacts: 0, downloads: 0, responsesRemoved: 0, samplesRemoved: 0, sampleFilesRemoved: 0, sampleFilesSkipped: 0, aborted: false }
}

function checkOptions(options: RetentionOptions): number {
  if (!Number.isFinite(options.olderThanMs)) throw new RangeError(`olderThanMs must be a finite time in ms since the epoch, got ${options.olderThanMs}`)
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 100_000) throw new RangeError(`batchSize must be an integer from 1 to 100000, got ${batchSize}`)
  return batchSize
}

/**
 * Removes attacks that started before `olderThanMs`, then unreferenced responses and samples (and their files inside
 * the quarantine), in transactions of `batchSize`; never touches a newer attack. `db` is a read-write connection not
 * inside a transaction.
 */
export async function applyRetention(db: Database.Database, options: RetentionOptions): Promise<RetentionResult> {
  const batchSize = checkOptions(options)
  if (db.inTransaction) throw new Error('applyRetention needs a connection that is not inside a transaction')
  const schema = schemaOf(db)
  const counts = emptyCounts()
  // Children are deleted explicitly by attack_id. With foreign_keys ON, SQLite would also look for the children of
  // every deleted plugin_runs row, and artifacts.run_id and downloads.run_id have no index: one full scan of each
  // table per run (measured: 22 s per 1,000 runs with 200,000 artifacts, against 1 ms without). Restored at the end.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) === 1
  if (foreignKeys) db.pragma('foreign_keys = OFF')
  try {
    const stopped = (): boolean => options.signal?.aborted === true
    await removeAttacks(db, schema, options, batchSize, counts)
    if (schema.responses && !stopped()) await removeResponses(db, options, batchSize, counts)
    if (schema.plugins && !stopped()) await removeSamples(db, options, batchSize, counts)
    counts.aborted = stopped()
    return counts
  } finally {
    if (foreignKeys) db.pragma('foreign_keys = ON')
  }
}

async function removeAttacks(db: Database.Database, schema: Schema, options: RetentionOptions, batchSize: number, counts: Counts): Promise<void> {
  // ORDER BY started_at walks the attacks_started_at index; length(payload) reads the record header, not the BLOB.
  const pick = db.prepare<[number, number], { rowid: number; id: string; bytes: number }>(
    'SELECT rowid AS rowid, id, length(payload) AS bytes FROM attacks WHERE started_at < ? ORDER BY started_at LIMIT ?',
  )
  const deleteAttack = db.prepare('DELETE FROM attacks WHERE rowid = ?')
  const deleteChildren = schema.plugins
    ? (['artifacts', 'downloads', 'plugin_runs'] as const).map((table) => ({ table, statement: db.prepare(`DELETE FROM ${table} WHERE attack_id = ?`) }))
    : []
  const batch = db.transaction((): number => {
    let bytes = 0
    let removed = 0
    for (const row of pick.all(options.olderThanMs, batchSize)) {
      if (removed > 0 && bytes + row.bytes > MAX_BATCH_PAYLOAD_BYTES) break
      bytes += row.bytes
      for (const { table, statement } of deleteChildren) {
        const n = statement.run(row.id).changes
        if (table === 'artifacts') counts.artifacts += n
        else if (table === 'downloads') counts.downloads += n
        else counts.pluginRuns += n
      }
      removed += deleteAttack.run(row.rowid).changes
    }
    return removed
  })
  // Bounded by the table: each pass removes at least one row or ends the loop.
  while (options.signal?.aborted !== true) {
    const [removed, heldMs] = timedImmediate(batch)
    counts.attacks += removed
    options.onProgress?.({ phase: 'attacks', removed: counts.attacks })
    if (removed === 0) break
    await releaseLock(heldMs)
  }
}

/**
 * Responses no attack references. attacks.response_sha256 has no index, so finding them is one full scan: it runs in
 * a read transaction (a WAL snapshot, which blocks no writer) and lists the candidates in a TEMP table (memory stays
 * flat however many there are). Each delete transaction then re-checks the attacks committed since the snapshot:
 * rowids only grow once old attacks are gone, so those are exactly the rows past the snapshot's largest rowid.
 * Assumes one retention at a time, and a writer that re-inserts a response it believes committed (INSERT OR IGNORE):
 * sqlite-writer.ts's cache of known digests skips that, so a response removed here can be referenced but missing.
 */
async function removeResponses(db: Database.Database, options: RetentionOptions, batchSize: number, counts: Counts): Promise<void> {
  db.exec(`DROP TABLE IF EXISTS ${ORPHANS_TABLE}; CREATE TABLE ${ORPHANS_TABLE} (sha256 TEXT PRIMARY KEY) WITHOUT ROWID`)
  try {
    // Deferred: a read transaction on the main database; writing the TEMP table takes no lock on it.
    const snapshot = db.transaction((): number => {
      const maxRowid = db.prepare<[], number | null>('SELECT max(rowid) FROM attacks').pluck().get() ?? 0
      db.exec(`INSERT INTO ${ORPHANS_TABLE} (sha256) SELECT sha256 FROM responses
        WHERE sha256 NOT IN (SELECT response_sha256 FROM attacks WHERE response_sha256 IS NOT NULL)`)
      return maxRowid
    })
    const snapshotMaxRowid = snapshot()
    const next = db.prepare<[string, number], string>(`SELECT sha256 FROM ${ORPHANS_TABLE} WHERE sha256 > ? ORDER BY sha256 LIMIT ?`).pluck()
    const newer = db.prepare<[number], string>('SELECT DISTINCT response_sha256 FROM attacks WHERE rowid > ? AND response_sha256 IS NOT NULL').pluck()
    const remove = db.prepare('DELETE FROM responses WHERE sha256 = ?')
    let last = ''
    const batch = db.transaction((): number => {
      const candidates = next.all(last, batchSize)
      const inUse = new Set(newer.all(snapshotMaxRowid))
      for (const sha256 of candidates) if (!inUse.has(sha256)) counts.responsesRemoved += remove.run(sha256).changes
      last = candidates.at(-1) ?? last
      return candidates.length
    })
    // Bounded by the TEMP table: each pass moves the keyset past the candidates it examined.
    while (options.signal?.aborted !== true) {
      const [examined, heldMs] = timedImmediate(batch)
      options.onProgress?.({ phase: 'responses', removed: counts.responsesRemoved })
      if (examined < batchSize) break
      await releaseLock(heldMs)
    }
  } finally {
    db.exec(`DROP TABLE IF EXISTS ${ORPHANS_TABLE}`)
  }
}

/**
 * Samples no download references, keyset by digest, `batchSize` examined per transaction. Files are deleted after
 * the commit, so a failure leaves a file no row names (harmless) rather than a row naming a missing file.
 */
async function removeSamples(db: Database.Database, options: RetentionOptions, batchSize: number, counts: Counts): Promise<void> {
  const next = db.prepare<[string, number], { sha256: string; path: string }>('SELECT sha256, path FROM samples WHERE sha256 > ? ORDER BY sha256 LIMIT ?')
  const referenced = db.prepare<[string], number>('SELECT 1 FROM downloads WHERE sha256 = ? LIMIT 1').pluck()
  const remove = db.prepare('DELETE FROM samples WHERE sha256 = ?')
  let last = ''
  const batch = db.transaction((): { examined: number; removed: { sha256: string; path: string }[] } => {
    const rows = next.all(last, batchSize)
    const removed: { sha256: string; path: string }[] = []
    for (const row of rows) {
      // Checked inside the write transaction: a download committed a moment ago keeps its sample.
      if (referenced.get(row.sha256) === undefined && remove.run(row.sha256).changes > 0) removed.push(row)
    }
    last = rows.at(-1)?.sha256 ?? last
    return { examined: rows.length, removed }
  })
  // Bounded by the table: each pass moves the keyset past the samples it examined.
  while (options.signal?.aborted !== true) {
    const [{ examined, removed }, heldMs] = timedImmediate(batch)
    counts.samplesRemoved += removed.length
    for (const row of removed) {
      const outcome = removeSampleFile(options.quarantineDir ?? null, row)
      if (outcome === 'removed') counts.sampleFilesRemoved += 1
      else if (outcome === 'skipped') counts.sampleFilesSkipped += 1
    }
    options.onProgress?.({ phase: 'samples', removed: counts.samplesRemoved })
    if (examined < batchSize) break
    await releaseLock(heldMs)
  }
}

/**
 * The real path of a sample's file if it may be deleted: named by the row's digest and inside the quarantine once
 * symlinks are resolved; otherwise null. A hand-edited database must never make us delete any other file.
 */
export function quarantinedFile(quarantineDir: string | null, sample: { readonly sha256: string; readonly path: string }): string | null {
  if (quarantineDir === null || !SHA256_HEX.test(sample.sha256) || basename(sample.path) !== sample.sha256) return null
  let root: string
  let parent: string
  try {
    root = realpathSync(quarantineDir)
    parent = realpathSync(dirname(resolve(sample.path)))
  } catch {
    return null // the quarantine or the file's directory is gone: nothing to delete, and nothing to trust
  }
  const inside = relative(root, parent)
  if (inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside)) return null
  return join(parent, sample.sha256)
}

function removeSampleFile(quarantineDir: string | null, sample: { readonly sha256: string; readonly path: string }): 'removed' | 'skipped' | 'missing' {
  const file = quarantinedFile(quarantineDir, sample)
  if (file === null) return 'skipped'
  try {
    // lstat: a symlink or a directory under the sample's name is not a sample; unlink would not follow it anyway.
    if (!lstatSync(file).isFile()) return 'skipped'
    unlinkSync(file)
    return 'removed'
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing'
    return 'skipped' // EACCES and the like: the row is gone, the file stays; never fail the whole run for it
  }
}

/**
 * What applyRetention would remove now, counted on any connection (read-only is fine) in one snapshot, changing
 * nothing. Sample files count as removable when the same checks would let them be deleted and they exist.
 */
export function previewRetention(db: Database.Database, options: Pick<RetentionOptions, 'olderThanMs' | 'quarantineDir'>): RetentionResult {
  checkOptions(options)
  const schema = schemaOf(db)
  const cutoff = options.olderThanMs
  const count = (sql: string): number => db.prepare<[number], number>(sql).pluck().get(cutoff) ?? 0
  const read = db.transaction((): RetentionResult => {
    const counts = emptyCounts()
    counts.attacks = count('SELECT count(*) FROM attacks WHERE started_at < ?')
    if (schema.responses) {
      counts.responsesRemoved = count(`SELECT count(*) FROM responses
        WHERE sha256 NOT IN (SELECT response_sha256 FROM attacks WHERE started_at >= ? AND response_sha256 IS NOT NULL)`)
    }
    if (!schema.plugins) return counts
    const old = 'attack_id IN (SELECT id FROM attacks WHERE started_at < ?)'
    counts.pluginRuns = count(`SELECT count(*) FROM plugin_runs WHERE ${old}`)
    counts.artifacts = count(`SELECT count(*) FROM artifacts WHERE ${old}`)
    counts.downloads = count(`SELECT count(*) FROM downloads WHERE ${old}`)
    const samples = db
      .prepare<[number], { sha256: string; path: string }>(`SELECT sha256, path FROM samples WHERE sha256 NOT IN
        (SELECT sha256 FROM downloads WHERE sha256 IS NOT NULL AND NOT (${old}))`)
      .iterate(cutoff)
    for (const sample of samples) {
      counts.samplesRemoved += 1
      const file = quarantinedFile(options.quarantineDir ?? null, sample)
      const kind = file === null ? 'skipped' : fileKind(file)
      if (kind === 'file') counts.sampleFilesRemoved += 1
      else if (kind === 'skipped' || kind === 'other') counts.sampleFilesSkipped += 1
    }
    return counts
  })
  return read()
}

function fileKind(path: string): 'file' | 'other' | 'missing' {
  try {
    return lstatSync(path).isFile() ? 'file' : 'other'
  } catch {
    return 'missing'
  }
}
