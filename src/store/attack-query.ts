import Database from 'better-sqlite3'
import type { AddressFamily, CloseReason, FallbackReason, Protocol, ResponderMode } from '../attack/attack.js'
import { HoneytrapError } from '../core/errors.js'
import { filterCapabilities, filterSql, registerFilterFunctions, type AttackFilter } from './attack-filter.js'
import { APPLICATION_ID, latestSchemaVersion } from './migrate.js'

/**
 * Read-only queries for the CLI (`honeytrap-ts query`, export). They run on their own connection, which WAL mode lets
 * read a consistent snapshot while the sensor's writer keeps inserting. The export record is built in export-record.ts.
 */

/**
 * One row of `attacks` without its BLOBs and transcript, as listings show it. Column names and units are those of
 * docs/schema.md. Rows written before schema 2 read response_size 0, response_sha256 null and the relay columns null.
 */
export interface AttackSummaryRow {
  readonly id: string
  readonly protocol: Protocol
  readonly family: AddressFamily
  readonly mode: ResponderMode
  readonly src_ip: string
  readonly src_port: number
  readonly dst_ip: string
  readonly dst_port: number
  readonly started_at: number // ms since epoch, UTC
  readonly ended_at: number
  readonly close_reason: CloseReason
  readonly bytes_received: number
  readonly bytes_sent: number
  readonly truncated: 0 | 1
  readonly payload_size: number
  readonly md5: string
  readonly sha256: string
  readonly sha512: string
  readonly response_size: number
  readonly response_truncated: 0 | 1
  readonly response_sha256: string | null // null: written before schema 2, when responses were not recorded
  readonly transcript_truncated: 0 | 1
  readonly relay_target: string | null // mirror and proxy sessions only
  readonly relay_outcome: 'relayed' | 'fallback' | null
  readonly fallback_reason: FallbackReason | null
  readonly syn_facts: string | null // JSON (src/store/syn-facts-column.ts); null before schema 6 or when not seen
}

/** A whole row, BLOBs and transcript included. */
export interface AttackRow extends AttackSummaryRow {
  readonly payload: Buffer
  readonly response: Buffer
  readonly transcript: string | null // JSON [direction, offset_ms, size] triples; null before schema 2
}

export interface ListAttacksOptions {
  readonly limit: number
  readonly offset?: number
  readonly sinceMs?: number // only attacks that started at or after this time (ms since epoch)
  readonly protocol?: Protocol
  readonly dstPort?: number
  readonly filter?: AttackFilter // every other criterion (src/store/attack-filter.ts); combined with the three above
}

export interface AttackList {
  readonly total: number // rows matching the filters, ignoring limit and offset
  readonly attacks: readonly AttackSummaryRow[] // newest first
}

const SUMMARY_COLUMNS = [
  'id', 'protocol', 'family', 'mode', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'started_at', 'ended_at', 'close_reason',
  'bytes_received', 'bytes_sent', 'truncated', 'payload_size', 'md5', 'sha256', 'sha512', 'response_size', 'response_truncated',
  'response_sha256', 'transcript_truncated', 'relay_target', 'relay_outcome', 'fallback_reason', 'syn_facts',
] as const

// What a column added by a later migration reads as in a database that predates it: the migration's own default, so
// an older file reads exactly as it will once the sensor has migrated it.
const ADDED_COLUMN_DEFAULTS: Readonly<Record<string, string>> = {
  response_size: '0',
  response_truncated: '0',
  response_sha256: 'NULL',
  transcript: 'NULL',
  transcript_truncated: '0',
  relay_target: 'NULL',
  relay_outcome: 'NULL',
  fallback_reason: 'NULL',
  syn_facts: 'NULL',
}

// The queries of a connection, made once at open from the tables and columns the file has.
const queries = new WeakMap<Database.Database, { readonly summary: string; readonly full: string }>()

function selectList(present: ReadonlySet<string>, columns: readonly string[], prefix = ''): string {
  return columns.map((c) => (present.has(c) ? `${prefix}${c}` : `${ADDED_COLUMN_DEFAULTS[c] ?? 'NULL'} AS ${c}`)).join(', ')
}

function buildQueries(db: Database.Database): { readonly summary: string; readonly full: string } {
  const present = new Set(db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('attacks')").all().map((c) => c.name))
  const hasResponses = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'responses'").get() !== undefined
  // A response is stored once per distinct content (responses), and read back by its digest.
  const response = hasResponses ? "coalesce(r.data, x'') AS response" : "x'' AS response"
  const join = hasResponses ? 'LEFT JOIN responses r ON r.sha256 = a.response_sha256' : ''
  return {
    summary: selectList(present, SUMMARY_COLUMNS),
    full: `${selectList(present, [...SUMMARY_COLUMNS, 'payload', 'transcript'], 'a.')}, ${response} FROM attacks a ${join}`,
  }
}

/**
 * Opens an existing attacks database read-only; throws HT_ERR_STORE_OPEN if it is missing, not ours, or at a schema
 * version this code does not read.
 */
export function openAttackDatabase(path: string): Database.Database {
  let db: Database.Database
  try {
    db = new Database(path, { readonly: true, fileMustExist: true })
  } catch (err) {
    throw new HoneytrapError(
      'HT_ERR_STORE_OPEN',
      `cannot open the attack database ${path} for reading: ${errorMessage(err)}; check the path (store.path of the sensor's config) and that this user may read it and its directory`,
      { cause: err },
    )
  }
  try {
    checkSchema(db, path)
    return db
  } catch (err) {
    db.close()
    if (err instanceof HoneytrapError) throw err
    throw new HoneytrapError('HT_ERR_STORE_OPEN', `cannot read the attack database ${path}: ${errorMessage(err)}; is it a honeytrap-ts database?`, { cause: err })
  }
}

function checkSchema(db: Database.Database, path: string): void {
  const applicationId = db.pragma('application_id', { simple: true })
  const version = Number(db.pragma('user_version', { simple: true }))
  const latest = latestSchemaVersion()
  if (applicationId !== APPLICATION_ID) {
    throw new HoneytrapError('HT_ERR_STORE_OPEN', `${path} is not a honeytrap-ts database (application_id ${String(applicationId)}); check the path`)
  }
  if (version > latest) {
    throw new HoneytrapError('HT_ERR_STORE_OPEN', `${path} has schema version ${version}, newer than the ${latest} this honeytrap-ts reads; upgrade honeytrap-ts`)
  }
  if (version < 1) {
    throw new HoneytrapError('HT_ERR_STORE_OPEN', `${path} has no attacks table yet (schema version ${version}); start the sensor once (honeytrap-ts run) to create it`)
  }
  // An older schema is read as it is, never migrated from here (this connection is read-only, and an analyst's copy
  // must not change under them): the columns it lacks read as the defaults their migration gives.
  queries.set(db, buildQueries(db))
  registerFilterFunctions(db)
}

/**
 * `<columns of AttackRow> FROM attacks a LEFT JOIN responses r ...`, for a connection opened elsewhere (the plugin
 * pipeline's, read-write and migrated): the one definition of how a whole row is read.
 */
export function attackRowSource(db: Database.Database): string {
  let lists = queries.get(db)
  if (lists === undefined) {
    lists = buildQueries(db)
    queries.set(db, lists)
  }
  return lists.full
}

function columnsOf(db: Database.Database): { readonly summary: string; readonly full: string } {
  const lists = queries.get(db)
  if (lists === undefined) throw new Error('attack database not opened with openAttackDatabase')
  return lists
}

/** A page of attacks, newest first, with the total count for the same filters. */
export function listAttacks(db: Database.Database, options: ListAttacksOptions): AttackList {
  const filter: AttackFilter = {
    ...options.filter,
    ...(options.sinceMs !== undefined && { sinceMs: Math.max(options.sinceMs, options.filter?.sinceMs ?? options.sinceMs) }),
    ...(options.protocol !== undefined && { protocol: options.protocol }),
    ...(options.dstPort !== undefined && { ports: { from: options.dstPort, to: options.dstPort } }),
  }
  const { where, params } = filterSql(filter, filterCapabilities(db))
  const from = `attacks${textLed(filter) ? ' INDEXED BY attacks_started_at' : ''}`
  // Both statements in one read transaction, so the total and the page come from the same snapshot.
  const read = db.transaction(() => {
    const total = db.prepare<unknown[], { n: number }>(`SELECT count(*) AS n FROM ${from} ${where}`).get(...params)!.n
    const attacks = db
      .prepare<unknown[], AttackSummaryRow>(`SELECT ${columnsOf(db).summary} FROM ${from} ${where} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...params, options.limit, options.offset ?? 0)
    return { total, attacks }
  })
  return read()
}

/**
 * True for a full-text search narrowed by time at most. SQLite's planner would then probe attacks once per match of
 * the index (a common word matches a tenth of a million rows: over 300 ms); walking the time index instead and
 * testing each row against the matches (a Bloom filter and a set built once) costs one index pass at worst, and a
 * newest-first page stops after its rows. Measured on a million attacks, bench section f.
 */
function textLed(filter: AttackFilter): boolean {
  return filter.text !== undefined && Object.entries(filter).every(([key, value]) => value === undefined || key === 'text' || key === 'sinceMs' || key === 'untilMs')
}

/** How many attacks `filter` selects. */
export function countAttacks(db: Database.Database, filter: AttackFilter = {}): number {
  const { where, params } = filterSql(filter, filterCapabilities(db))
  return db.prepare<unknown[], { n: number }>(`SELECT count(*) AS n FROM attacks ${where}`).get(...params)!.n
}

/** True when the database has table `name` (older schemas lack the later tables). */
export function hasTable(db: Database.Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined
}

/** The whole row of attack `id`, BLOBs and transcript included, or undefined when there is none. */
export function getAttackRow(db: Database.Database, id: string): AttackRow | undefined {
  return db.prepare<[string], AttackRow>(`SELECT ${columnsOf(db).full} WHERE a.id = ?`).get(id)
}

/** Every attack `filter` selects, oldest first, one row at a time: memory stays flat however large the database is. */
export function iterateAttacks(db: Database.Database, filter: AttackFilter = {}): IterableIterator<AttackRow> {
  const { where, params } = filterSql(filter, { ...filterCapabilities(db), table: 'a' })
  return db.prepare<unknown[], AttackRow>(`SELECT ${columnsOf(db).full} ${where} ORDER BY a.started_at ASC, a.id ASC`).iterate(...params)
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
