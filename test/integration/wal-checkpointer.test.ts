import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { corpusBatches } from '../../src/bench/attack-corpus.js'
import { SqliteWriter } from '../../src/store/sqlite-writer.js'
import { WalCheckpointer } from '../../src/store/wal-checkpointer.js'
import { captureLog } from '../helpers/log-capture.js'

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ht-ckpt-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A WAL-mode database with one table, its own connection committing rows as a writer would. */
function walDatabase(dir: string): { path: string; db: Database.Database; commit: (rows: number) => void } {
  const path = join(dir, 'plain.db')
  const db = new Database(path)
  onTestFinished(() => {
    if (db.open) db.close()
  })
  db.pragma('journal_mode = WAL')
  db.pragma('wal_autocheckpoint = 0')
  db.exec('CREATE TABLE t (n INTEGER, pad BLOB)')
  const insert = db.prepare('INSERT INTO t VALUES (?, ?)')
  const commit = db.transaction((rows: number) => {
    for (let i = 0; i < rows; i++) insert.run(i, Buffer.alloc(1000, i))
  })
  return { path, db, commit }
}

describe('WAL checkpoints on a worker thread', () => {
  it("takes the writer's checkpoints off its connection, and the WAL is started over instead of growing", async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const writer = SqliteWriter.open(path, { busyTimeoutMs: 1_000, log: pino({ level: 'silent' }) })
    onTestFinished(() => writer.close())
    expect(writer.autocheckpointPages).toBe(0)
    let written = 0
    for (const batch of corpusBatches({ count: 30_000, endMs: Date.UTC(2026, 10, 1), spanMs: 86_400_000, seed: 3 }, 250)) {
      const result = writer.write(batch, false)
      expect(result.error).toBeNull()
      written += result.written
      await new Promise((resolve) => setTimeout(resolve, 2)) // the worker's replies come in between, as in the sensor
    }
    expect(written).toBe(30_000)
    const stats = writer.checkpointStats()!
    expect(stats).toMatchObject({ failures: 0, running: true, workerStarts: 1 })
    expect(stats.checkpoints).toBeGreaterThanOrEqual(3)
    expect(stats.restarts).toBeGreaterThanOrEqual(stats.checkpoints / 2) // a RESTART finding the lock taken for long skips its turn
    // The WAL file is as large as its largest cycle between two restarts; never started over, it would hold every page
    // the checkpoints copied (and more).
    const walBytes = statSync(`${path}-wal`).size
    expect(walBytes).toBeLessThan(stats.pagesCopied * 4096)
    await writer.close()
    expect(writer.checkpointStats()?.running).toBe(false)
    // Closed last, the writer's connection checkpointed what was left and removed the WAL.
    expect(() => statSync(`${path}-wal`)).toThrow(/ENOENT/)
  })

  it('runs a trickle checkpoint after dueAfterMs, ends its worker when idle and starts a new one when needed', async () => {
    const dir = tempDir()
    const { path, commit } = walDatabase(dir)
    const { log, lines } = captureLog('debug')
    const checkpointer = new WalCheckpointer({ path, log, onUnavailable: () => expect.fail('the worker must run'), dueAfterMs: 100, idleStopMs: 150 })
    onTestFinished(() => checkpointer.close())
    commit(1)
    checkpointer.committed(1)
    expect(checkpointer.stats()).toMatchObject({ checkpoints: 0, running: false })
    await until(() => checkpointer.stats().checkpoints === 1)
    expect(checkpointer.stats()).toMatchObject({ workerStarts: 1, restarts: 1 })
    expect(lines.find((l) => l.msg === 'store checkpoint')).toMatchObject({ walFrames: expect.any(Number) as number, restarted: true })
    await until(() => !checkpointer.stats().running)
    commit(1)
    checkpointer.committed(1)
    await until(() => checkpointer.stats().checkpoints === 2)
    expect(checkpointer.stats()).toMatchObject({ workerStarts: 2, failures: 0 })
  })

  it('asks for a checkpoint by count at once, and for none without a commit', async () => {
    const dir = tempDir()
    const { path, commit } = walDatabase(dir)
    const checkpointer = new WalCheckpointer({ path, log: pino({ level: 'silent' }), onUnavailable: () => expect.fail('the worker must run'), dueAfterAttacks: 50, dueAfterMs: 60_000 })
    onTestFinished(() => checkpointer.close())
    commit(49)
    checkpointer.committed(49)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(checkpointer.stats()).toMatchObject({ checkpoints: 0, workerStarts: 0 })
    commit(1)
    checkpointer.committed(1)
    await until(() => checkpointer.stats().checkpoints === 1)
  })

  it('gives the checkpoints back to the writer when its worker cannot work, and says so', async () => {
    const dir = tempDir()
    const { log, lines } = captureLog('debug')
    let unavailable = 0
    // A database file that does not exist: the worker cannot open it (fileMustExist) and reports the failure.
    const checkpointer = new WalCheckpointer({ path: join(dir, 'missing.db'), log, onUnavailable: () => (unavailable += 1), dueAfterAttacks: 1 })
    onTestFinished(() => checkpointer.close())
    checkpointer.committed(1)
    await until(() => unavailable === 1)
    await until(() => !checkpointer.stats().running)
    expect(checkpointer.stats()).toMatchObject({ checkpoints: 0, failures: 1 })
    expect(lines.find((l) => l.level === 40)?.msg).toMatch(/checkpoints run on the writer again/)
    checkpointer.committed(1) // nothing more is asked of a worker that is gone
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(checkpointer.stats()).toMatchObject({ workerStarts: 1, failures: 1 })
    expect(unavailable).toBe(1)
  })

  it('checkpoints in its own commits, at SQLite\'s default of 1,000 pages, with checkpointInWorker: false', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const writer = SqliteWriter.open(path, { busyTimeoutMs: 1_000, log: pino({ level: 'silent' }), checkpointInWorker: false })
    onTestFinished(() => writer.close())
    expect(writer.autocheckpointPages).toBe(1_000)
    expect(writer.checkpointStats()).toBeNull()
  })
})
