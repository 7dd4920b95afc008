import { statSync } from 'node:fs'
import Database from 'better-sqlite3'
import { openAttackDatabase } from './attack-query.js'
import { HoneytrapError } from '../core/errors.js'
import { isLockError } from './sqlite-errors.js'

/**
 * `VACUUM` gives the pages freed by retention back to the file system. The trade-off, honestly:
 * - It rewrites the whole database and holds the write lock until it is done (seconds per GB). In WAL mode readers
 *   carry on, but the sensor's writer waits: its busy timeout is 1 s, after which the store retries with backoff and,
 *   after about 6 s of failures, drops the batch (counted and logged). On a large file, stop the sensor first.
 * - It needs free disk space of up to twice the database: a temporary copy (in TMPDIR) and the WAL, which holds every
 *   rewritten page until the closing checkpoint copies them back.
 * - Without it nothing is lost: SQLite reuses freed pages for new attacks, so a file that retention keeps in balance
 *   stops growing. `PRAGMA incremental_vacuum` would avoid the long lock, but works only on files created with
 *   auto_vacuum=INCREMENTAL, which ours are not (switching needs this same full VACUUM once).
 */

export interface VacuumOptions {
  readonly busyTimeoutMs?: number // how long to wait for the write lock; default 5,000 ms
}

/** Sizes of the database and its WAL, before and after. */
export interface VacuumResult {
  readonly path: string
  readonly bytesBefore: number // database file + -wal file
  readonly bytesAfter: number
  readonly walCheckpointed: boolean // false: a reader kept the WAL from being emptied; it shrinks at a later checkpoint
  readonly durationMs: number
}

const DEFAULT_BUSY_TIMEOUT_MS = 5_000

function fileSize(path: string): number {
  try {
    return statSync(path).size
  } catch {
    return 0 // no -wal file: the last connection closed cleanly
  }
}

function databaseBytes(path: string): number {
  return fileSize(path) + fileSize(`${path}-wal`)
}

/** `PRAGMA wal_checkpoint(mode)`: true when every WAL frame was copied back (and, for TRUNCATE, the WAL emptied). */
function checkpoint(db: Database.Database, mode: 'PASSIVE' | 'TRUNCATE'): boolean {
  const rows = db.pragma(`wal_checkpoint(${mode})`) as { busy: number; log: number; checkpointed: number }[]
  const row = rows[0]
  // log -1: the database is not in WAL mode, so there is nothing to checkpoint.
  return row === undefined || row.log === -1 || (row.busy === 0 && row.checkpointed === row.log)
}

/**
 * Checkpoints the WAL, runs VACUUM, and checkpoints (TRUNCATE) again so that the file itself shrinks. Throws HT_ERR_STORE_OPEN if
 * the file is not a honeytrap-ts database, and a plain Error saying so when the lock stays busy past the timeout.
 */
export function vacuumDatabase(path: string, options: VacuumOptions = {}): VacuumResult {
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS
  openAttackDatabase(path).close() // refuses a missing file or another program's database before anything is written
  const started = performance.now()
  const bytesBefore = databaseBytes(path)
  const db = new Database(path, { fileMustExist: true, timeout: busyTimeoutMs })
  try {
    // PASSIVE first: it never waits, while TRUNCATE holds off the sensor's writer until every reader is done. It only
    // makes VACUUM read less of the WAL; TRUNCATE after VACUUM is what shrinks the file (in WAL mode the rewritten
    // pages reach the database file, and its new end, only at a checkpoint).
    checkpoint(db, 'PASSIVE')
    try {
      db.exec('VACUUM')
    } catch (err) {
      if (!isLockError(err)) throw err
      throw new HoneytrapError('HT_ERR_STORE_BUSY',
        `cannot vacuum ${path}: another connection held the write lock for more than ${busyTimeoutMs} ms (the sensor or the plugin pipeline is writing); ` +
          'try again when the sensor is quieter, or stop it first; nothing was changed',
        { cause: err },
      )
    }
    const walCheckpointed = checkpoint(db, 'TRUNCATE')
    return { path, bytesBefore, bytesAfter: databaseBytes(path), walCheckpointed, durationMs: Math.round(performance.now() - started) }
  } finally {
    db.close()
  }
}
