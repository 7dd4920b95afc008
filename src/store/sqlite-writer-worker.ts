import { createHash } from 'node:crypto'
import { closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { pino, type Logger } from 'pino'
import { migrate } from './migrate.js'
import { toWireError, wirePayload, type FromWriter, type ToWriter, type WireAttack, type WriterConfig } from './writer-protocol.js'

/**
 * The store's writer thread: the only code that writes the attacks database. It runs in a worker so that SQLite I/O,
 * hashing and WAL checkpoints never hold up the main event loop, which must answer NFQUEUE verdicts promptly.
 * Batches arrive in order and are written strictly in order, one transaction each; every batch is acked exactly once.
 */

interface Batch {
  readonly seq: number
  readonly attacks: readonly WireAttack[]
  readonly payloads: ArrayBuffer
}

interface Row {
  readonly attack: WireAttack
  readonly payload: Buffer
  readonly md5: string
  readonly sha256: string
  readonly sha512: string
}

const INSERT_SQL = `INSERT INTO attacks (
  id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at, ended_at, close_reason,
  bytes_received, bytes_sent, truncated, payload, payload_size, md5, sha256, sha512
) VALUES (
  @id, @protocol, @family, @mode, @srcIp, @srcPort, @dstIp, @dstPort, @startedAt, @endedAt, @closeReason,
  @bytesReceived, @bytesSent, @truncated, @payload, @payloadSize, @md5, @sha256, @sha512
)`

if (parentPort === null) throw new Error('sqlite-writer-worker must run as a worker thread (see sqlite-store.ts)')
const port = parentPort
const config = workerData as WriterConfig

// Synchronous writes to fd 1: each 'attack stored' line is out before the next batch starts, and nothing is left in a
// buffer when the thread ends or the process is killed.
const log: Logger = pino(
  { level: config.logLevel, timestamp: pino.stdTimeFunctions.isoTime, base: { component: 'store' } },
  pino.destination({ dest: 1, sync: true }),
)

function post(message: FromWriter): void {
  port.postMessage(message)
}

/** Opens (creating if needed) and migrates the database; everything that can be wrong with the path fails here. */
function openDatabase(): Database.Database {
  mkdirSync(dirname(config.path), { recursive: true, mode: 0o700 })
  // Create the file ourselves with 0600 before SQLite does (it would use 0644 under the usual umask): attack data is
  // sensitive. SQLite gives the -wal and -shm files the same mode as the database file.
  try {
    closeSync(openSync(config.path, 'wx', 0o600))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  const db = new Database(config.path, { timeout: config.busyTimeoutMs })
  try {
    const journalMode: unknown = db.pragma('journal_mode = WAL', { simple: true })
    if (journalMode !== 'wal') log.warn({ path: config.path, journalMode }, 'store could not enable wal mode')
    // NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only an OS crash or power loss can undo the
    // last commits since a checkpoint. That is the trade we want for a sensor writing many small transactions.
    db.pragma('synchronous = NORMAL')
    db.pragma('foreign_keys = ON')
    migrate(db)
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

function isConstraintError(err: unknown): boolean {
  const code: unknown = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT')
}

function hashRows(batch: Batch): Row[] {
  return batch.attacks.map((attack) => {
    const payload = wirePayload(batch.payloads, attack)
    return {
      attack,
      payload,
      md5: createHash('md5').update(payload).digest('hex'),
      sha256: createHash('sha256').update(payload).digest('hex'),
      sha512: createHash('sha512').update(payload).digest('hex'),
    }
  })
}

function bindRow(row: Row): Record<string, string | number | Buffer> {
  const a = row.attack
  return {
    id: a.id,
    protocol: a.protocol,
    family: a.family,
    mode: a.mode,
    srcIp: a.srcIp,
    srcPort: a.srcPort,
    dstIp: a.dstIp,
    dstPort: a.dstPort,
    startedAt: a.startedAtMs,
    endedAt: a.endedAtMs,
    closeReason: a.closeReason,
    bytesReceived: a.bytesReceived,
    bytesSent: a.bytesSent,
    truncated: a.truncated ? 1 : 0,
    payload: row.payload,
    payloadSize: row.payload.length,
    md5: row.md5,
    sha256: row.sha256,
    sha512: row.sha512,
  }
}

function logStored(row: Row): void {
  const a = row.attack
  // The payload never goes to the log: it is attacker-controlled bytes. The sha256 finds it in the database.
  log.info(
    {
      attackId: a.id,
      protocol: a.protocol,
      src: a.srcIp,
      sport: a.srcPort,
      dst: a.dstIp,
      dport: a.dstPort,
      mode: a.mode,
      closeReason: a.closeReason,
      bytesReceived: a.bytesReceived,
      bytesSent: a.bytesSent,
      truncated: a.truncated,
      sha256: row.sha256,
    },
    'attack stored',
  )
}

/** The write loop: one batch at a time, in arrival order, with bounded retries for the batch at the head. */
function startWriter(db: Database.Database): void {
  const insert = db.prepare(INSERT_SQL)
  const insertAll = db.transaction((rows: readonly Row[]) => {
    for (const row of rows) insert.run(bindRow(row))
  })
  const queue: Batch[] = []
  // Hashes are computed once per batch, outside the transaction, so the write lock is held only for the inserts.
  let headRows: Row[] | undefined
  let attempt = 0
  let retryTimer: NodeJS.Timeout | undefined
  let closing = false
  let closed = false

  function finishHead(written: number, dropped: number, committed: boolean): void {
    const batch = queue.shift()!
    headRows = undefined
    attempt = 0
    post({ type: 'ack', seq: batch.seq, written, dropped, committed })
  }

  /**
   * After the last attempt failed: write the rows one by one, so that one bad row (a constraint violation) costs only
   * itself. Any other error (locked, disk full, I/O) would fail every row again, each after the busy timeout, so the
   * rest of the batch is dropped at once.
   */
  function salvage(rows: readonly Row[], seq: number): void {
    let written = 0
    let lastError: unknown
    for (const row of rows) {
      try {
        insertAll([row])
        logStored(row)
        written += 1
      } catch (err) {
        lastError = err
        if (!isConstraintError(err)) break
      }
    }
    const dropped = rows.length - written
    if (dropped > 0) log.warn({ err: lastError, seq, dropped, written }, 'store dropped attacks after repeated write failures')
    finishHead(written, dropped, false)
  }

  function drain(): void {
    while (retryTimer === undefined) {
      const batch = queue[0]
      if (batch === undefined) break
      headRows ??= hashRows(batch)
      attempt += 1
      try {
        insertAll(headRows)
      } catch (err) {
        post({ type: 'write-failed', seq: batch.seq, attempt, error: toWireError(err) })
        // A constraint violation (a duplicate id) fails the same way every time: go straight to the row-by-row pass.
        const willRetry = attempt < config.maxWriteAttempts && !isConstraintError(err)
        const delayMs = config.retryBaseDelayMs * 2 ** (attempt - 1)
        log.warn({ err, seq: batch.seq, attacks: batch.attacks.length, attempt, retryInMs: willRetry ? delayMs : undefined }, 'store batch write failed')
        if (!willRetry) {
          salvage(headRows, batch.seq)
          continue
        }
        // Later batches wait behind this one: order is kept, and the main thread's queue bound limits the backlog.
        retryTimer = setTimeout(() => {
          retryTimer = undefined
          drain()
        }, delayMs)
        return
      }
      for (const row of headRows) logStored(row)
      finishHead(headRows.length, 0, true)
    }
    if (closing && queue.length === 0) shutdown()
  }

  function shutdown(): void {
    if (closed) return
    closed = true
    // close() checkpoints the WAL into the main file and removes -wal and -shm when this is the last connection.
    db.close()
    log.info({ path: config.path }, 'store closed')
    post({ type: 'closed' })
    // With the port closed nothing keeps the thread alive, so it ends on its own with exit code 0.
    port.close()
  }

  port.on('message', (message: ToWriter) => {
    if (message.type === 'batch') {
      queue.push({ seq: message.seq, attacks: message.attacks, payloads: message.payloads })
    } else {
      closing = true
    }
    drain()
  })
}

function main(): void {
  let db: Database.Database
  try {
    db = openDatabase()
  } catch (err) {
    // Reported, not thrown: the main thread turns this into HT_ERR_STORE_OPEN with the path and the fix, and the
    // thread then ends normally because nothing else keeps it alive.
    post({ type: 'open-failed', error: toWireError(err) })
    port.close()
    return
  }
  const schemaVersion = Number(db.pragma('user_version', { simple: true }))
  log.info({ path: config.path, schemaVersion }, 'store opened')
  startWriter(db)
  post({ type: 'ready', schemaVersion })
}

main()
