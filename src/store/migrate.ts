import { readdirSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type Database from 'better-sqlite3'
import { HoneytrapError } from '../core/errors.js'
import { printableText } from './printable-text.js'

/** One schema step: `NNN-name.sql` becomes version NNN. */
export interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

export interface MigrateOptions {
  /** Folder of `NNN-name.sql` files; defaults to the `migrations/` folder next to this module (src/ or dist/). */
  readonly migrationsDir?: URL | string
}

export interface MigrateResult {
  readonly fromVersion: number
  readonly toVersion: number
  readonly applied: readonly string[] // file names, in the order they ran
}

/**
 * PRAGMA application_id of honeytrap-ts databases ("HTRP" in ASCII). It lets `migrate` tell its own file from another
 * program's SQLite database that happens to sit at the configured path, instead of adding tables to it.
 */
export const APPLICATION_ID = 0x48_54_52_50

// The migrations ship next to the compiled module (scripts/copy-assets.mjs copies them to dist/store/migrations), so
// one relative URL works both for the sources under vitest and for the build.
const DEFAULT_MIGRATIONS_DIR = new URL('./migrations/', import.meta.url)
const MIGRATION_FILE = /^(\d{3})-([a-z0-9][a-z0-9-]*)\.sql$/

/** Reads the migration files in version order; throws if their numbering is not exactly 1, 2, 3, ... (a packaging bug). */
export function loadMigrations(dir: URL | string = DEFAULT_MIGRATIONS_DIR): Migration[] {
  const migrations: Migration[] = []
  for (const file of readdirSync(dir)) {
    const match = MIGRATION_FILE.exec(file)
    if (!match) continue
    const sql = readFileSync(new URL(file, toDirUrl(dir)), 'utf8')
    migrations.push({ version: Number(match[1]), name: file, sql })
  }
  migrations.sort((a, b) => a.version - b.version)
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`migration ${m.name} is out of sequence: expected version ${i + 1}; migrations must be numbered 001, 002, ... without gaps`)
    }
  })
  return migrations
}

/** The schema version this code writes: the number of the last migration file. */
export function latestSchemaVersion(dir: URL | string = DEFAULT_MIGRATIONS_DIR): number {
  return loadMigrations(dir).length
}

/**
 * Brings the database to the latest schema, one transaction per migration, so a failure leaves the file at the last
 * version that applied completely. Refuses, with HT_ERR_STORE_OPEN, a database written by a newer honeytrap-ts and a
 * database that belongs to another program.
 */
export function migrate(db: Database.Database, options: MigrateOptions = {}): MigrateResult {
  const migrations = loadMigrations(options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR)
  const latest = migrations.length
  // IMMEDIATE takes the write lock before reading the version, so two sensors starting on the same file at once
  // cannot both decide to apply migration 1.
  const readVersion = db.transaction(() => {
    const version = pragmaNumber(db, 'user_version')
    checkOwnership(db, version, latest)
    return version
  })
  const fromVersion = readVersion.immediate()
  // Functions the migration SQL calls (005 fills the full-text index from the stored payloads).
  db.function('ht_printable', { deterministic: true }, (payload: unknown) => (Buffer.isBuffer(payload) ? printableText(payload) : ''))
  const applied: string[] = []
  for (const migration of migrations) {
    const step = db.transaction(() => {
      // Re-read inside the write transaction: another process may have migrated since the last step.
      if (pragmaNumber(db, 'user_version') >= migration.version) return false
      db.exec(migration.sql)
      if (migration.version === 1) db.pragma(`application_id = ${APPLICATION_ID}`)
      // user_version lives in the file header, which SQLite changes inside this transaction: it commits or rolls
      // back together with the migration's own statements.
      db.pragma(`user_version = ${migration.version}`)
      return true
    })
    try {
      if (step.immediate()) applied.push(migration.name)
    } catch (err) {
      throw new HoneytrapError(
        'HT_ERR_STORE_OPEN',
        `migration ${migration.name} failed on ${db.name}; the database stays at schema version ${migration.version - 1}: ${errorMessage(err)}`,
        { cause: err },
      )
    }
  }
  return { fromVersion, toVersion: pragmaNumber(db, 'user_version'), applied }
}

/** Throws HT_ERR_STORE_OPEN unless the file is empty, or ours at a version this code knows. */
function checkOwnership(db: Database.Database, version: number, latest: number): void {
  const applicationId = pragmaNumber(db, 'application_id')
  // Only an untouched file (no id, no version, no tables) may become ours; anything else without our id is not.
  const foreign =
    applicationId !== APPLICATION_ID &&
    (applicationId !== 0 || version !== 0 || db.prepare<[], { n: number }>('SELECT count(*) AS n FROM sqlite_schema').get()!.n > 0)
  if (foreign) {
    throw new HoneytrapError(
      'HT_ERR_STORE_OPEN',
      `${db.name} is a SQLite database of another program (application_id ${applicationId}, user_version ${version}); ` +
        'point store.path at a new file or at an existing honeytrap-ts database',
    )
  }
  if (version > latest) {
    throw new HoneytrapError(
      'HT_ERR_STORE_OPEN',
      `${db.name} has schema version ${version}, but this honeytrap-ts knows versions up to ${latest}: it was written by a ` +
        'newer honeytrap-ts; upgrade honeytrap-ts, or point store.path at another file (never downgrade a database)',
    )
  }
}

function pragmaNumber(db: Database.Database, name: string): number {
  const value: unknown = db.pragma(name, { simple: true })
  if (typeof value !== 'number') throw new Error(`PRAGMA ${name} returned ${typeof value}, expected a number`)
  return value
}

function toDirUrl(dir: URL | string): URL {
  if (dir instanceof URL) return dir.href.endsWith('/') ? dir : new URL(`${dir.href}/`)
  return pathToFileURL(`${resolve(dir)}/`)
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
