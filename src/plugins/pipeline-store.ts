import { readFileSync } from 'node:fs'
import Database from 'better-sqlite3'
import type { Direction, StoredAttack, TranscriptChunk } from '../attack/attack.js'
import { HoneytrapError } from '../core/errors.js'
import { attackRowSource, type AttackRow } from '../store/attack-query.js'
import { migrate } from '../store/migrate.js'
import { decodeSynFacts } from '../store/syn-facts-column.js'
import type { Quarantine } from './download/quarantine.js'
import type { PipelineJob, RunResult, SubjectRecord } from './pipeline.js'
import { runKey } from './pipeline.js'
import type { ArtifactHistory, JsonValue } from './plugin.js'

/** An attack as the pipeline takes it: the record plus its rowid (the commit order the live pipeline follows). */
export interface QueuedAttack {
  readonly rowid: number
  readonly attack: StoredAttack
}

/** A whole attack row as attack-query.ts reads it, plus its rowid (the commit order). */
type QueuedRow = AttackRow & { readonly rowid: number }

const MAX_URL_CHARS = 2_048
const MAX_INFO_CHARS = 64 * 1024

/**
 * The pipeline's side of the database: it reads attacks in commit order and writes what the plugins found, each
 * attack's results in one transaction together with the cursor, so a pipeline killed at any moment resumes exactly
 * where its last commit left it. Runs in the pipeline process (or `replay`), never in the sensor's.
 */
export class PipelineStore {
  readonly #db: Database.Database
  readonly #quarantine: Quarantine

  readonly #statements = new Map<string, Database.Statement>()

  private constructor(db: Database.Database, quarantine: Quarantine) {
    this.#db = db
    this.#quarantine = quarantine
  }

  /** A statement prepared once per connection: preparing costs more than running the small ones used here. */
  #sql<P extends unknown[] = unknown[], R = unknown>(text: string): Database.Statement<P, R> {
    let statement = this.#statements.get(text)
    if (statement === undefined) {
      statement = this.#db.prepare(text)
      this.#statements.set(text, statement)
    }
    return statement as unknown as Database.Statement<P, R>
  }

  #transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    let tx: ((...args: A) => void) | undefined
    return (...args: A) => {
      tx ??= this.#db.transaction(fn)
      tx(...args)
    }
  }

  /** Opens the database read-write and brings it to the latest schema; throws HT_ERR_STORE_OPEN naming the path. */
  static open(path: string, quarantine: Quarantine): PipelineStore {
    let db: Database.Database | undefined
    try {
      // A second writer next to the sensor's: waiting for its short transactions is fine in this process.
      db = new Database(path, { fileMustExist: true, timeout: 10_000 })
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
      db.pragma('foreign_keys = ON')
      migrate(db)
      return new PipelineStore(db, quarantine)
    } catch (err) {
      db?.close()
      throw new HoneytrapError('HT_ERR_STORE_OPEN', `cannot open the attack database ${path} for the plugins: ${(err as Error).message}; check store.path and that the sensor created it`, { cause: err })
    }
  }

  get db(): Database.Database {
    return this.#db
  }

  /** Attacks committed after `cursor` (a rowid), oldest first. */
  next(cursor: number, limit: number): QueuedAttack[] {
    const rows = this.#sql<[number, number], QueuedRow>(`SELECT a.rowid AS rowid, ${attackRowSource(this.#db)} WHERE a.rowid > ? ORDER BY a.rowid LIMIT ?`).all(cursor, limit)
    return rows.map((row) => ({ rowid: row.rowid, attack: attackFromRow(row) }))
  }

  /** One attack by id, or null. */
  attack(id: string): QueuedAttack | null {
    const row = this.#sql<[string], QueuedRow>(`SELECT a.rowid AS rowid, ${attackRowSource(this.#db)} WHERE a.id = ?`).get(id)
    return row === undefined ? null : { rowid: row.rowid, attack: attackFromRow(row) }
  }

  /** The newest rowid, 0 for an empty table. */
  lastRowid(): number {
    return this.#sql<[], { n: number | null }>('SELECT max(rowid) AS n FROM attacks').get()?.n ?? 0
  }

  state(key: 'cursor' | 'skipped'): number | null {
    return this.#sql<[string], { value: number }>('SELECT value FROM pipeline_state WHERE key = ?').get(key)?.value ?? null
  }

  setState(key: 'cursor' | 'skipped', value: number): void {
    this.#sql('INSERT INTO pipeline_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value)
  }

  /**
   * The job for `attack`: the derived subjects and finished runs already stored, so that nothing is done twice.
   * `retry`: failed, timed-out and crashed runs are run again (replay); otherwise only never-run ones are (resume).
   */
  jobFor(attack: StoredAttack, options: { readonly only: readonly string[] | null; readonly retry: boolean }): PipelineJob {
    const runs = this.#sql<[string], { subject_sha256: string; plugin: string; status: string }>('SELECT subject_sha256, plugin, status FROM plugin_runs WHERE attack_id = ?').all(attack.id)
    if (runs.length === 0) return { attack, subjects: [], done: [], only: options.only }
    const done = runs.filter((r) => r.status === 'ok' || !options.retry).map((r) => runKey(r.subject_sha256, r.plugin))
    const subjects: SubjectRecord[] = []
    const decoded = this.#db
      .prepare<[string], { subject_sha256: string; sha256: string; data: Buffer; info: string }>("SELECT subject_sha256, sha256, data, info FROM artifacts WHERE attack_id = ? AND kind = 'decoded' AND data IS NOT NULL ORDER BY id")
      .all(attack.id)
    const depthOf = new Map<string, number>([[attack.sha256, 0]])
    for (const d of decoded) {
      const depth = (depthOf.get(d.subject_sha256) ?? 0) + 1
      depthOf.set(d.sha256, depth)
      subjects.push({ kind: 'decoded', data: d.data, sha256: d.sha256, depth, parentSha256: d.subject_sha256, origin: originOf(d.info) })
    }
    const samples = this.#db
      .prepare<[string], { subject_sha256: string; sha256: string; url: string; path: string }>(
        "SELECT d.subject_sha256, d.sha256, d.url, s.path FROM downloads d JOIN samples s ON s.sha256 = d.sha256 WHERE d.attack_id = ? AND d.outcome = 'ok' ORDER BY d.id",
      )
      .all(attack.id)
    for (const s of samples) {
      let data: Buffer
      try {
        data = readFileSync(s.path)
      } catch {
        continue // removed from the quarantine by hand: the download row stays, the sample is not analysed again
      }
      const depth = (depthOf.get(s.subject_sha256) ?? 0) + 1
      depthOf.set(s.sha256, depth)
      subjects.push({ kind: 'sample', data, sha256: s.sha256, depth, parentSha256: s.subject_sha256, origin: s.url })
    }
    return { attack, subjects, done, only: options.only }
  }

  /** Writes the results of one attack (and the new cursor, when given) in one transaction. */
  write(attackId: string, results: readonly RunResult[], cursor: number | null): void {
    // Samples go to disk first: a row must never name a file that is not there. A crash in between leaves a file no
    // row names, which the next store of the same bytes reuses.
    const stored = new Map<string, string>()
    for (const r of results) {
      for (const d of r.downloads) {
        if (d.sample !== null && !stored.has(d.sample.sha256)) stored.set(d.sample.sha256, this.#quarantine.store(d.sample.data).path)
      }
    }
    this.#writeRows(attackId, results, stored, cursor)
  }

  // One transaction function, made once: better-sqlite3 compiles its BEGIN/COMMIT statements when it is created.
  readonly #writeRows = this.#transaction((attackId: string, results: readonly RunResult[], stored: ReadonlyMap<string, string>, cursor: number | null): void => {
    const removeRun = this.#sql('DELETE FROM plugin_runs WHERE attack_id = ? AND subject_sha256 = ? AND plugin = ?')
    const insertRun = this.#sql('INSERT INTO plugin_runs (attack_id, subject_sha256, plugin, status, error, started_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)')
    const insertArtifact = this.#sql('INSERT INTO artifacts (run_id, attack_id, subject_sha256, kind, match_key, sha256, size, data, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
    const insertSample = this.#sql('INSERT OR IGNORE INTO samples (sha256, size, first_seen, path) VALUES (?, ?, ?, ?)')
    const insertDownload = this.#sql(
      'INSERT INTO downloads (run_id, attack_id, subject_sha256, plugin, url, outcome, reason, address, bytes, sha256, started_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    )
    for (const r of results) {
      removeRun.run(attackId, r.subjectSha256, r.plugin) // a failed run being replaced, with its artifacts
      const artifacts = r.artifacts.map((a) => ({ artifact: a, info: safeJson(a.info) }))
      const refused = artifacts.find((a) => a.info === null)
      const error = r.error ?? (refused === undefined ? null : `an artifact of kind ${refused.artifact.kind} had info that is not JSON or is over ${MAX_INFO_CHARS} characters; it was not stored`)
      const runId = Number(insertRun.run(attackId, r.subjectSha256, r.plugin, r.status, error, r.startedAtMs, r.durationMs).lastInsertRowid)
      for (const { artifact, info } of artifacts) {
        if (info !== null) insertArtifact.run(runId, attackId, r.subjectSha256, artifact.kind, artifact.matchKey ?? null, null, null, null, info)
      }
      for (const p of r.payloads) {
        insertArtifact.run(runId, attackId, r.subjectSha256, 'decoded', null, p.sha256, p.data.length, p.data, JSON.stringify({ origin: p.origin, depth: p.depth }))
      }
      for (const d of r.downloads) {
        const sha256 = d.sample?.sha256 ?? (d.attempt.outcome === 'cached' && /^[0-9a-f]{64}$/.test(d.attempt.sha256 ?? '') ? (d.attempt.sha256 ?? null) : null)
        if (d.sample !== null) insertSample.run(d.sample.sha256, d.sample.data.length, r.startedAtMs, stored.get(d.sample.sha256) ?? '')
        const a = d.attempt
        insertDownload.run(runId, attackId, r.subjectSha256, r.plugin, cleanText(a.url, MAX_URL_CHARS), a.outcome, a.reason === null ? null : cleanText(a.reason, 1_000), a.address, a.bytes, sha256, r.startedAtMs, Math.round(a.durationMs))
      }
    }
    if (cursor !== null) this.setState('cursor', cursor)
  })

  close(): void {
    if (this.#db.open) this.#db.close()
  }
}

/** ArtifactHistory over a connection (the plugin worker opens its own, read-only). */
export function createArtifactHistory(db: Database.Database): ArtifactHistory {
  const findStatements = new Map<string, Database.Statement>()
  const recent = db.prepare<[string, number], { sha256: string }>("SELECT sha256 FROM downloads WHERE url = ? AND started_at >= ? AND outcome = 'ok' ORDER BY started_at DESC LIMIT 1")
  return {
    find(kind, matchKeys, limit, field) {
      const keys = [...new Set(matchKeys)].slice(0, 16)
      if (keys.length === 0) return []
      if (field !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(field)) throw new Error(`history.find: "${field.slice(0, 64)}" is not a field name`)
      let statement = findStatements.get(field ?? '')
      if (statement === undefined) {
        // json_quote(json_extract(...)): the one field, still as JSON text, so both shapes are read back the same way.
        const info = field === undefined ? 'info' : `json_quote(json_extract(info, '$.${field}')) AS info`
        // One key at a time: the (kind, match_key) index holds each key's rows in id order, so "newest first, at most
        // n" walks n index entries. With IN (...) SQLite would sort every matching row, and those grow with the table.
        statement = db.prepare(`SELECT id, attack_id, subject_sha256, ${info} FROM artifacts WHERE kind = ? AND match_key = ? ORDER BY id DESC LIMIT ?`)
        findStatements.set(field ?? '', statement)
      }
      const n = Math.max(0, Math.min(limit, 10_000))
      const rows = keys.flatMap((key) => statement.all(kind, key, n) as { id: number; attack_id: string; subject_sha256: string; info: string | null }[])
      if (keys.length > 1) rows.sort((a, b) => b.id - a.id)
      return rows.slice(0, n).map((r) => ({ attackId: r.attack_id, subjectSha256: r.subject_sha256, info: r.info === null ? null : parseJson(r.info) }))
    },
    recentDownload(url, maxAgeMs) {
      if (maxAgeMs <= 0) return null
      return recent.get(cleanText(url, MAX_URL_CHARS), Date.now() - maxAgeMs)?.sha256 ?? null
    },
  }
}

function attackFromRow(row: AttackRow): StoredAttack {
  return {
    id: row.id,
    protocol: row.protocol,
    family: row.family,
    mode: row.mode,
    source: { address: row.src_ip, port: row.src_port },
    target: { address: row.dst_ip, port: row.dst_port },
    startedAtMs: row.started_at,
    endedAtMs: row.ended_at,
    closeReason: row.close_reason,
    payload: row.payload,
    truncated: row.truncated === 1,
    bytesReceived: row.bytes_received,
    bytesSent: row.bytes_sent,
    response: row.response,
    responseTruncated: row.response_truncated === 1,
    transcript: parseTranscript(row.transcript),
    transcriptTruncated: row.transcript_truncated === 1,
    relay: row.relay_target === null || row.relay_outcome === null ? null : { target: row.relay_target, outcome: row.relay_outcome, reason: row.fallback_reason },
    synFacts: decodeSynFacts(row.syn_facts),
    md5: row.md5,
    sha256: row.sha256,
    sha512: row.sha512,
  }
}

function parseTranscript(text: string | null): TranscriptChunk[] {
  if (text === null) return []
  const triples = parseJson(text)
  if (!Array.isArray(triples)) return []
  const chunks: TranscriptChunk[] = []
  for (const t of triples) {
    if (!Array.isArray(t) || (t[0] !== 'in' && t[0] !== 'out') || typeof t[1] !== 'number' || typeof t[2] !== 'number') continue
    chunks.push({ direction: t[0] as Direction, offsetMs: t[1], size: t[2] })
  }
  return chunks
}

function originOf(info: string): string {
  const parsed = parseJson(info)
  if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const origin = (parsed as Record<string, JsonValue>)['origin']
    if (typeof origin === 'string') return origin
  }
  return 'decoded'
}

function parseJson(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue
  } catch {
    return null
  }
}

function safeJson(value: unknown): string | null {
  try {
    const text = JSON.stringify(value)
    return typeof text === 'string' && text.length <= MAX_INFO_CHARS ? text : null
  } catch {
    return null // a cycle or a BigInt from a user plugin
  }
}

/** Control bytes escaped as \xHH, so a stored URL or reason can be printed safely; cut at `max` characters. */
function cleanText(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
  return escaped.length > max ? escaped.slice(0, max) : escaped
}
