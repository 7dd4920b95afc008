import { hash } from 'node:crypto'
import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import type { Logger } from 'pino'
import type { Attack } from '../attack/attack.js'
import { HoneytrapError } from '../core/errors.js'
import { migrate } from './migrate.js'
import { printableText } from './printable-text.js'
import { isConstraintError, isLockError } from './sqlite-errors.js'
import { WalCheckpointer, type CheckpointerStats } from './wal-checkpointer.js'
import { encodeSynFacts } from './syn-facts-column.js'

/** What one write of a batch did. */
export interface BatchResult {
  readonly written: number
  readonly dropped: number
  readonly committed: boolean // the whole batch went in as one transaction
  readonly error: unknown // the failure when nothing was written and the batch may be retried; null otherwise
}

// In the order of Row.values. Positional parameters: binding an array is cheaper than matching 28 named ones per row.
const COLUMNS = [
  'id', 'protocol', 'family', 'mode', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'started_at', 'ended_at', 'close_reason',
  'bytes_received', 'bytes_sent', 'truncated', 'payload', 'payload_size', 'md5', 'sha256', 'sha512',
  'response_size', 'response_truncated', 'response_sha256', 'transcript', 'transcript_truncated',
  'relay_target', 'relay_outcome', 'fallback_reason', 'syn_facts',
] as const
const INSERT_SQL = `INSERT INTO attacks (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`
const INSERT_RESPONSE_SQL = 'INSERT OR IGNORE INTO responses (sha256, data) VALUES (?, ?)'
// The full-text index row of an attack, keyed by its rowid (migration 005).
const INSERT_TEXT_SQL = 'INSERT INTO attack_text (rowid, text) VALUES (?, ?)'

interface Row {
  readonly attack: Attack
  readonly sha256: string
  readonly responseSha256: string
  readonly text: string // printable text for the full-text index; '' adds no index row
  readonly values: readonly (string | number | Buffer | null)[]
}

/**
 * The transcript column: `[["in",0,517],["out",1,1024]]`, one [direction, offset_ms, size] triple per chunk (format in
 * migrations/002-transcript.sql). Triples, not objects: 10 000 chunks (the default cap) take about 200 KB.
 */
function encodeTranscript(transcript: Attack['transcript']): string {
  return JSON.stringify(transcript.map((c) => [c.direction, c.offsetMs, c.size]))
}

function hashRow(a: Attack): Row {
  // One-shot digests (crypto.hash): no Hash object per algorithm and attack.
  const sha256 = hash('sha256', a.payload, 'hex')
  // Set even for an empty response, so that NULL keeps meaning "written before responses were recorded".
  const responseSha256 = hash('sha256', a.response, 'hex')
  return {
    attack: a,
    sha256,
    responseSha256,
    text: printableText(a.payload),
    values: [
      a.id,
      a.protocol,
      a.family,
      a.mode,
      a.source.address,
      a.source.port,
      a.target.address,
      a.target.port,
      a.startedAtMs,
      a.endedAtMs,
      a.closeReason,
      a.bytesReceived,
      a.bytesSent,
      a.truncated ? 1 : 0,
      a.payload,
      a.payload.length,
      hash('md5', a.payload, 'hex'),
      sha256,
      hash('sha512', a.payload, 'hex'),
      a.response.length,
      a.responseTruncated ? 1 : 0,
      responseSha256,
      encodeTranscript(a.transcript),
      a.transcriptTruncated ? 1 : 0,
      a.relay?.target ?? null,
      a.relay?.outcome ?? null,
      a.relay?.reason ?? null,
      encodeSynFacts(a.synFacts),
    ],
  }
}


export interface SqliteWriterOptions {
  readonly busyTimeoutMs: number
  readonly log: Logger
  /** Checkpoint the WAL on a worker thread (src/store/wal-checkpointer.ts), not in this connection's commits; default true. */
  readonly checkpointInWorker?: boolean
}

/**
 * The only code that writes the attacks database: one transaction per batch, digests computed here (never on a
 * connection's path), one 'attack stored' log line per committed attack (its mode and, for mirror and proxy, the
 * relay target and outcome). Synchronous, like better-sqlite3 itself; the store calls it from timers, batch by batch.
 */
export class SqliteWriter {
  readonly #db: Database.Database
  readonly #log: Logger
  readonly #insertAll: (rows: readonly Row[]) => void
  readonly #checkpointer: WalCheckpointer | null
  readonly #hashed = new WeakMap<readonly Attack[], readonly Row[]>()

  private constructor(db: Database.Database, path: string, log: Logger, checkpointInWorker: boolean) {
    this.#db = db
    this.#log = log
    this.#checkpointer = checkpointInWorker ? this.#startCheckpointer(path) : null
    const insert = db.prepare(INSERT_SQL)
    const insertResponse = db.prepare(INSERT_RESPONSE_SQL)
    const insertText = db.prepare(INSERT_TEXT_SQL)
    this.#insertAll = db.transaction((rows: readonly Row[]) => {
      // Each distinct response once per batch: a template sent to the 250 attackers of a batch costs one statement.
      // Never remembered across batches: `db retention` (another process) may remove a response between two, and a
      // digest remembered here would then point the next attack at a row that is gone.
      const inBatch = new Set<string>()
      for (const row of rows) {
        if (!inBatch.has(row.responseSha256)) {
          insertResponse.run(row.responseSha256, row.attack.response)
          inBatch.add(row.responseSha256)
        }
        const { lastInsertRowid } = insert.run(row.values)
        if (row.text !== '') insertText.run(lastInsertRowid, row.text)
      }
    })
  }

  /** Opens (creating if needed, mode 0600) and migrates the database; throws HT_ERR_STORE_OPEN naming the path and fix. */
  static open(path: string, options: SqliteWriterOptions): SqliteWriter {
    let db: Database.Database | undefined
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
      // Create the file ourselves with 0600 before SQLite does (it would use 0644 under the usual umask): attack data
      // is sensitive. SQLite gives the -wal and -shm files the same mode as the database file.
      try {
        closeSync(openSync(path, 'wx', 0o600))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      db = new Database(path, { timeout: options.busyTimeoutMs })
      const journalMode: unknown = db.pragma('journal_mode = WAL', { simple: true })
      if (journalMode !== 'wal') options.log.warn({ path, journalMode }, 'store could not enable wal mode')
      // NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only an OS crash or power loss can undo the
      // last commits since a checkpoint. That is the trade we want for a sensor writing many small transactions.
      db.pragma('synchronous = NORMAL')
      db.pragma('foreign_keys = ON')
      migrate(db)
      const schemaVersion = Number(db.pragma('user_version', { simple: true }))
      options.log.info({ path, schemaVersion }, 'store opened')
      return new SqliteWriter(db, path, options.log, options.checkpointInWorker ?? true)
    } catch (err) {
      db?.close()
      throw openError(path, err)
    }
  }

  /**
   * Writes `attacks` in one transaction. On failure with `lastAttempt` false, or on a locked database, nothing is written
   * and `error` says why (the store retries later). On the last attempt, or at once for a constraint violation (which
   * would fail the same way every time), rows are written one by one so that one bad row costs only itself.
   */
  write(attacks: readonly Attack[], lastAttempt: boolean): BatchResult {
    // A batch retried (after a lock, say) is not hashed again.
    let rows = this.#hashed.get(attacks)
    if (rows === undefined) {
      rows = attacks.map(hashRow)
      this.#hashed.set(attacks, rows)
    }
    try {
      this.#insertAll(rows)
      this.#checkpointer?.committed(rows.length)
      for (const row of rows) this.#logStored(row)
      return { written: rows.length, dropped: 0, committed: true, error: null }
    } catch (err) {
      // A locked database is for the store to wait out; row by row, every row would find it locked too.
      if (isLockError(err) || (!lastAttempt && !isConstraintError(err))) return { written: 0, dropped: 0, committed: false, error: err }
      return this.#salvage(rows, err)
    }
  }

  /**
   * Ends the checkpoint worker, then checkpoints the WAL into the main file and closes; -wal and -shm go away with the
   * last connection, which this one then is (unless another process has the database open).
   */
  async close(): Promise<void> {
    await this.#checkpointer?.close()
    if (this.#db.open) this.#db.close()
  }

  /** What the checkpoint worker did; null when the writer checkpoints on its own commits. */
  checkpointStats(): CheckpointerStats | null {
    return this.#checkpointer?.stats() ?? null
  }

  /** The WAL size, in pages, at which a commit of this connection checkpoints; 0 while the worker does it. */
  get autocheckpointPages(): number {
    return Number(this.#db.pragma('wal_autocheckpoint', { simple: true }))
  }

  #startCheckpointer(path: string): WalCheckpointer {
    const defaultPages = this.autocheckpointPages
    this.#db.pragma('wal_autocheckpoint = 0')
    return new WalCheckpointer({
      path,
      log: this.#log,
      onUnavailable: () => {
        if (this.#db.open) this.#db.pragma(`wal_autocheckpoint = ${defaultPages}`)
      },
    })
  }

  #salvage(rows: readonly Row[], firstError: unknown): BatchResult {
    let written = 0
    let lastError: unknown = firstError
    for (const row of rows) {
      try {
        this.#insertAll([row])
        this.#logStored(row)
        written += 1
      } catch (err) {
        lastError = err
        // Locked, disk full, I/O: every further row would fail the same way, each after the busy timeout.
        if (!isConstraintError(err)) break
      }
    }
    if (written > 0) this.#checkpointer?.committed(written)
    const dropped = rows.length - written
    if (dropped > 0) this.#log.warn({ err: lastError, dropped, written }, 'store dropped attacks after repeated write failures')
    return { written, dropped, committed: false, error: null }
  }

  #logStored(row: Row): void {
    if (!this.#log.isLevelEnabled('info')) return
    const a = row.attack
    // The payload never goes to the log: it is attacker-controlled bytes. The sha256 finds it in the database.
    this.#log.info(
      {
        attackId: a.id,
        protocol: a.protocol,
        src: a.source.address,
        sport: a.source.port,
        dst: a.target.address,
        dport: a.target.port,
        mode: a.mode,
        closeReason: a.closeReason,
        bytesReceived: a.bytesReceived,
        bytesSent: a.bytesSent,
        truncated: a.truncated,
        sha256: row.sha256,
        // Mirror and proxy sessions only, so the line of a normal session stays as small as before.
        ...(a.relay !== null && { relayTarget: a.relay.target, relayOutcome: a.relay.outcome }),
        ...(a.relay !== null && a.relay.reason !== null && { fallbackReason: a.relay.reason }),
      },
      'attack stored',
    )
  }
}

/** HT_ERR_STORE_OPEN whose message names the path and what to do about it. */
function openError(path: string, err: unknown): HoneytrapError {
  // migrate() already wrote a message with the path and the fix (newer schema, foreign database, failed migration).
  if (err instanceof HoneytrapError) return err
  const code = (err as { code?: string } | null)?.code
  const message = err instanceof Error ? err.message : String(err)
  return new HoneytrapError('HT_ERR_STORE_OPEN', `cannot open the attack database ${path}: ${message}; ${openFix(code)}`, { cause: err })
}

function openFix(code: string | undefined): string {
  switch (code) {
    case 'SQLITE_NOTADB':
      return 'the file is not a SQLite database: move it away or point store.path at another file'
    case 'SQLITE_CORRUPT':
      return 'the database is damaged: move it away (sqlite3 ".recover" may save its rows) and start a new file'
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return 'another process holds the database locked: stop it or point store.path at another file'
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
    case 'EISDIR':
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_READONLY':
      return "check that store.path is a file (not a directory) and that the sensor's user can create and write it and its directory"
    default:
      return 'check store.path, the permissions of its directory and the free disk space'
  }
}
