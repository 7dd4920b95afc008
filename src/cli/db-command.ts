import { dirname, join } from 'node:path'
import Database from 'better-sqlite3'
import { loadConfig } from '../config/load-config.js'
import { HoneytrapError } from '../core/errors.js'
import { pipelineSettings } from '../plugins/pipeline-settings.js'
import { openAttackDatabase } from '../store/attack-query.js'
import { applyRetention, previewRetention, type RetentionProgress, type RetentionResult } from '../store/retention.js'
import { isLockError } from '../store/sqlite-errors.js'
import { vacuumDatabase, type VacuumResult } from '../store/vacuum.js'
import { durationFlag, parseFlags, usageError } from './usage.js'

// A retention run waits this long for a lock the sensor holds; its own transactions are short, so this is generous.
const BUSY_TIMEOUT_MS = 5_000
const EXIT_INTERRUPTED = 130
// The longest --older-than accepted: 100 years, well inside the range a Date can hold.
const MAX_OLDER_THAN_MS = 100 * 365 * 86_400_000

interface Paths {
  readonly db: string
  readonly quarantineDir: string
}

/**
 * The database from --db or the config's store.path; the quarantine from the config, or, with --db alone, where the
 * default config would put it (next to the database). A wrong guess only leaves files: none outside it is deleted.
 */
function resolvePaths(dbFlag: string | undefined, configFlag: string | undefined): Paths {
  if (dbFlag !== undefined && configFlag === undefined) return { db: dbFlag, quarantineDir: join(dirname(dbFlag), 'quarantine') }
  const config = loadConfig(configFlag)
  return { db: dbFlag ?? config.store.path, quarantineDir: pipelineSettings(config).quarantineDir }
}

/** Checks the file is a honeytrap-ts database (read-only), then opens it read-write; HT_ERR_STORE_OPEN otherwise. */
function openForRetention(path: string): Database.Database {
  openAttackDatabase(path).close()
  try {
    return new Database(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS })
  } catch (err) {
    throw new HoneytrapError('HT_ERR_STORE_OPEN', `cannot open the attack database ${path} for writing: ${(err as Error).message}; run as the sensor's user`, { cause: err })
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function summary(result: RetentionResult, cutoffMs: number, dryRun: boolean): string {
  const removed = [
    plural(result.attacks, 'attack'),
    plural(result.pluginRuns, 'plugin run'),
    plural(result.artifacts, 'artifact'),
    plural(result.downloads, 'download'),
    plural(result.responsesRemoved, 'response'),
    `${plural(result.samplesRemoved, 'sample')} (${plural(result.sampleFilesRemoved, 'file')})`,
  ].join(', ')
  const lines = [`${dryRun ? 'would remove' : 'removed'} ${removed}; attacks that started before ${new Date(cutoffMs).toISOString()}`]
  if (result.sampleFilesSkipped > 0) {
    lines.push(`${plural(result.sampleFilesSkipped, 'sample file')} left in place: outside the quarantine, or not named by the sample's digest`)
  }
  if (result.aborted) lines.push('interrupted: what was removed stays removed; run the command again to finish')
  return `${lines.join('\n')}\n`
}

/** Progress on one stderr line, at most every 250 ms, when a person is watching. */
function progressReporter(): { readonly report: ((p: RetentionProgress) => void) | undefined; done(): void } {
  if (process.stderr.isTTY !== true) return { report: undefined, done: () => undefined }
  let lastMs = 0
  let shown = false
  return {
    report(p: RetentionProgress): void {
      const now = Date.now()
      if (now - lastMs < 250) return
      lastMs = now
      shown = true
      process.stderr.write(`\rretention: ${p.phase}: ${p.removed} removed\u001b[K`)
    },
    done(): void {
      if (shown) process.stderr.write('\r\u001b[K')
    },
  }
}

async function runRetention(rest: readonly string[]): Promise<number> {
  const { values } = parseFlags('db retention', rest, {
    'older-than': { type: 'string' },
    db: { type: 'string' },
    config: { type: 'string' },
    'dry-run': { type: 'boolean' },
    quarantine: { type: 'string' },
    json: { type: 'boolean' },
  })
  const olderThan = durationFlag('older-than', values['older-than'])
  if (olderThan === undefined) throw usageError('db retention: --older-than is required, e.g. --older-than 90d')
  if (olderThan <= 0 || olderThan > MAX_OLDER_THAN_MS) {
    throw usageError(`--older-than "${values['older-than'] ?? ''}" is not valid; expected more than 0 and at most 36500d`)
  }
  const resolved = resolvePaths(values.db, values.config)
  // --quarantine: the sensor's scheduled upkeep names it, since its config may put the quarantine anywhere.
  const paths = values.quarantine === undefined ? resolved : { ...resolved, quarantineDir: values.quarantine }
  const cutoffMs = Date.now() - olderThan
  const dryRun = values['dry-run'] === true
  let result: RetentionResult
  if (dryRun) {
    const db = openAttackDatabase(paths.db) // read-only: a dry run cannot change the file even by mistake
    try {
      result = previewRetention(db, { olderThanMs: cutoffMs, quarantineDir: paths.quarantineDir })
    } finally {
      db.close()
    }
  } else {
    const db = openForRetention(paths.db)
    // Ctrl-C stops between transactions: everything committed stays consistent, and a second run finishes the job.
    const controller = new AbortController()
    const onSignal = (): void => controller.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    const progress = progressReporter()
    try {
      result = await applyRetention(db, {
        olderThanMs: cutoffMs,
        quarantineDir: paths.quarantineDir,
        signal: controller.signal,
        ...(progress.report !== undefined && { onProgress: progress.report }),
      })
    } catch (err) {
      if (!isLockError(err)) throw err
      throw new HoneytrapError('HT_ERR_STORE_BUSY',
        `retention stopped: another connection held the write lock of ${paths.db} for more than ${BUSY_TIMEOUT_MS} ms; what was removed stays removed, run the command again to finish`,
        { cause: err },
      )
    } finally {
      progress.done()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      db.close()
    }
  }
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ db: paths.db, dryRun, cutoff: new Date(cutoffMs).toISOString(), ...result })}\n`)
  } else {
    process.stdout.write(summary(result, cutoffMs, dryRun))
  }
  return result.aborted ? EXIT_INTERRUPTED : 0
}

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

function runVacuum(rest: readonly string[]): number {
  const { values } = parseFlags('db vacuum', rest, {
    db: { type: 'string' },
    config: { type: 'string' },
    json: { type: 'boolean' },
  })
  const result: VacuumResult = vacuumDatabase(resolvePaths(values.db, values.config).db)
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(result)}\n`)
  } else {
    const wal = result.walCheckpointed ? '' : '; a reader kept the WAL from being emptied: it shrinks at a later checkpoint'
    process.stdout.write(`vacuumed ${result.path}: ${formatBytes(result.bytesBefore)} -> ${formatBytes(result.bytesAfter)} in ${(result.durationMs / 1000).toFixed(1)} s${wal}\n`)
  }
  return 0
}

/** `honeytrap-ts db retention|vacuum`: database upkeep (retention is safe while the sensor runs; vacuum holds up its writes). Resolves with the exit code. */
export async function runDbCommand(args: readonly string[]): Promise<number> {
  const [action, ...rest] = args
  if (action === 'retention') return runRetention(rest)
  if (action === 'vacuum') return runVacuum(rest)
  throw usageError(`db: expected retention or vacuum, got "${action ?? ''}"`)
}
