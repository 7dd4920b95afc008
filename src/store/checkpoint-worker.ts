import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { isLockError } from './sqlite-errors.js'

export interface CheckpointWorkerData {
  readonly path: string
  readonly restartWaitMs: number
}

export type ToCheckpointer = { readonly type: 'checkpoint' } | { readonly type: 'close' }
export type FromCheckpointer =
  | { readonly type: 'done'; readonly walFrames: number; readonly checkpointed: number; readonly restarted: boolean; readonly tookMs: number }
  | { readonly type: 'failed'; readonly message: string; readonly code: string | null }

interface CheckpointRow {
  readonly busy: number
  readonly log: number
  readonly checkpointed: number
}

const port = parentPort
const { path, restartWaitMs } = workerData as CheckpointWorkerData

function post(message: FromCheckpointer): void {
  port?.postMessage(message)
}

function checkpoint(db: Database.Database, mode: 'PASSIVE' | 'RESTART'): CheckpointRow {
  const [row] = db.pragma(`wal_checkpoint(${mode})`) as CheckpointRow[]
  if (row === undefined) throw new Error(`PRAGMA wal_checkpoint(${mode}) returned no row`)
  return row
}

try {
  // The checkpoint's own syncs (the WAL before it copies, the database file after) follow this connection's setting.
  const db = new Database(path, { fileMustExist: true, timeout: restartWaitMs })
  db.pragma('synchronous = NORMAL')
  // The first commit after a restart writes a new WAL header and syncs it before any frame (SQLite's guard against
  // out-of-order writes). Left to the writer, that fsync runs on the event loop, and it waits behind this thread's
  // checkpoint syncs in the file system's journal: traced at up to a second during a port scan. So this connection
  // makes that first commit itself, with a write that changes nothing (user_version set to its own value).
  const startWal = db.transaction(() => {
    const version = Number(db.pragma('user_version', { simple: true }))
    db.pragma(`user_version = ${version}`)
  })
  port?.on('message', (message: ToCheckpointer) => {
    if (message.type === 'close') {
      db.close()
      port.close()
      return
    }
    const started = performance.now()
    try {
      // PASSIVE takes no lock the writer needs: the long part (copying pages, two fsyncs) never holds up a commit.
      const passive = checkpoint(db, 'PASSIVE')
      // RESTART then takes the write lock briefly, copies what was committed meanwhile and waits (restartWaitMs at most)
      // for readers to leave the WAL, so that the writer's next commit starts it over instead of growing it. Under
      // continuous commits a PASSIVE checkpoint alone would rarely find the WAL complete, and the file would grow.
      const restart = checkpoint(db, 'RESTART')
      // Right away, before the writer's next commit can (a commit in between only means the writer restarts it).
      // (restarted: the WAL starts over at the next commit, whoever makes it.)
      const restarted = restart.busy === 0
      if (restarted) {
        try {
          startWal.immediate()
        } catch (err) {
          // The writer kept the lock past restartWaitMs: it makes that first commit itself this time.
          if (!isLockError(err)) throw err
        }
      }
      post({
        type: 'done',
        walFrames: Math.max(passive.log, restart.log),
        checkpointed: Math.max(passive.checkpointed, restart.checkpointed),
        restarted,
        tookMs: performance.now() - started,
      })
    } catch (err) {
      post({ type: 'failed', message: (err as Error).message, code: (err as { code?: string }).code ?? null })
    }
  })
} catch (err) {
  post({ type: 'failed', message: (err as Error).message, code: (err as { code?: string }).code ?? null })
  port?.close()
}
