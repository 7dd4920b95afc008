import type { Logger } from 'pino'
import type { Attack } from '../attack/attack.js'
import { isLockError } from './sqlite-errors.js'
import { SqliteWriter, type BatchResult } from './sqlite-writer.js'
import type { AttackStore, StoreStats } from './store.js'

export interface SqliteStoreOptions {
  readonly path: string
  readonly batchWindowMs: number // a batch is written this long after its first attack at the latest
  readonly batchMaxAttacks: number // ...or as soon as it holds this many attacks
  readonly maxQueuedAttacks: number // bound on attacks enqueued but not yet committed; past it enqueue drops
  readonly maxQueuedBytes: number // bound on their payload + response bytes; keep it above twice responder.maxAttackBytes
  readonly log: Logger
  readonly busyTimeoutMs?: number // how long one write waits for a lock held by another connection; default 0
  readonly maxWriteAttempts?: number // tries per failing batch before it is salvaged row by row and the rest dropped; default 5
  readonly retryBaseDelayMs?: number // first retry delay after a failure, doubled each attempt; default 100
  readonly closeLockWaitMs?: number // at close, how long a locked database is waited for before the rest is dropped; default 10,000
}

// better-sqlite3 waits for a lock synchronously, on the event loop that also gives NFQUEUE verdicts and accepts
// connections. Another process holding the write lock (the plugin pipeline, `db retention` or `db vacuum`, an analyst's
// sqlite3 shell) must never stall capture: a write does not wait at all, and a locked database is tried again from a
// timer, for as long as the lock is held. The queue bounds cap what waits meanwhile.
// (The plugin pipeline runs at nice 19: on a saturated machine one of its transactions can take far longer than its
// own work, and a sensor waiting out a 1 s busy timeout held every SYN in the queue with it.)
const DEFAULT_BUSY_TIMEOUT_MS = 0
// A try on a locked database costs a failed lock attempt, microseconds: trying often keeps the wait short when the
// holder works in short transactions with pauses between them (db retention). The jitter (±25 %) keeps the tries from
// locking into phase with a holder's own rhythm and missing every pause.
const LOCK_RETRY_FIRST_MS = 10
const LOCK_RETRY_MAX_MS = 50
const LOCK_RETRY_JITTER = 0.25
const LOCK_WARN_AFTER_MS = 1_000
const DEFAULT_CLOSE_LOCK_WAIT_MS = 10_000
const DEFAULT_MAX_WRITE_ATTEMPTS = 5
const DEFAULT_RETRY_BASE_DELAY_MS = 100
// A batch is also written once its payloads and responses reach this size, so one transaction never holds the loop for long.
const BATCH_MAX_BYTES = 4 * 1024 * 1024
const DROP_WARN_INTERVAL_MS = 10_000

/** What an attack holds in memory until it is written: the bytes kept of each direction (each up to the read limit). */
function queuedBytes(attack: Attack): number {
  return attack.payload.length + attack.response.length
}

/**
 * Opens the attacks database (creating and migrating it) and returns the store; throws HT_ERR_STORE_OPEN naming the
 * path and the fix if it cannot.
 */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<AttackStore> {
  const log = options.log.child({ component: 'store' })
  const writer = SqliteWriter.open(options.path, { busyTimeoutMs: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS, log })
  return new SqliteStore(writer, options, log)
}

/**
 * Batches finished attacks and writes each batch in one transaction, from a timer, never from a connection's
 * callback: `enqueue` only appends to an array. The writer runs on the main thread on purpose: a worker thread would
 * cost a second V8 heap (about 15 MB, a quarter of the idle budget on a small board), and a batch of small attacks is
 * written in a few milliseconds. Batches are written strictly in order; a failing one is retried with backoff while the
 * later ones wait behind it, bounded by the queue limits.
 */
class SqliteStore implements AttackStore {
  readonly #writer: SqliteWriter
  readonly #options: SqliteStoreOptions
  readonly #log: Logger
  readonly #maxAttempts: number
  readonly #retryBaseDelayMs: number
  readonly #closeLockWaitMs: number
  #closed = false

  #pending: Attack[] = [] // the batch being filled
  #pendingBytes = 0
  #sealed: Attack[][] = [] // full batches, written in order; the head may be waiting for a retry
  #windowTimer: NodeJS.Timeout | undefined
  #writeImmediate: NodeJS.Immediate | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #attempt = 0 // failed attempts of the head batch; a locked database is not a failure and does not count
  #flushWaiters: (() => void)[] = []
  #closing = false
  #closingSinceMs = 0
  #lockedSinceMs: number | null = null // when the head batch first found the database locked, in this wait
  #lockRetries = 0 // of the head batch in this wait, for the retry delay
  #lockWarned = false

  // Everything enqueued and not yet written counts against the bounds.
  #queuedCount = 0
  #queuedBytes = 0
  #written = 0
  #dropped = 0
  #batches = 0
  #writeErrors = 0
  #lockWaits = 0
  #droppedSinceWarn = 0
  #lastDropWarnMs = Number.NEGATIVE_INFINITY

  constructor(writer: SqliteWriter, options: SqliteStoreOptions, log: Logger) {
    this.#writer = writer
    this.#options = options
    this.#log = log
    this.#maxAttempts = options.maxWriteAttempts ?? DEFAULT_MAX_WRITE_ATTEMPTS
    this.#retryBaseDelayMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS
    this.#closeLockWaitMs = options.closeLockWaitMs ?? DEFAULT_CLOSE_LOCK_WAIT_MS
  }

  enqueue(attack: Attack): void {
    if (this.#closed) return this.#drop('closed')
    const bytes = queuedBytes(attack)
    if (this.#queuedCount >= this.#options.maxQueuedAttacks || this.#queuedBytes + bytes > this.#options.maxQueuedBytes) {
      return this.#drop('queue-full')
    }
    this.#queuedCount += 1
    this.#queuedBytes += bytes
    this.#pending.push(attack)
    this.#pendingBytes += bytes
    if (this.#pending.length === 1) this.#windowTimer = setTimeout(() => this.#writeAll(), this.#options.batchWindowMs)
    if (this.#pending.length >= this.#options.batchMaxAttacks || this.#pendingBytes >= BATCH_MAX_BYTES) {
      this.#seal()
      this.#scheduleWrite()
    }
  }

  flush(): Promise<void> {
    this.#seal()
    this.#writeNow()
    if (this.#sealed.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#flushWaiters.push(resolve)) // a retry is pending
  }

  async close(): Promise<void> {
    if (this.#closed) return
    if (!this.#closing) {
      this.#closing = true
      this.#closingSinceMs = performance.now()
    }
    await this.flush()
    this.#closed = true
    const checkpointStats = this.#writer.checkpointStats()
    await this.#writer.close()
    if (this.#droppedSinceWarn > 0) this.#warnDrops('closed')
    this.#log.info({ ...this.stats(), checkpoints: checkpointStats }, 'store closed')
  }

  stats(): StoreStats {
    return { queued: this.#queuedCount, written: this.#written, dropped: this.#dropped, batches: this.#batches, writeErrors: this.#writeErrors, lockWaits: this.#lockWaits }
  }

  #seal(): void {
    clearTimeout(this.#windowTimer)
    this.#windowTimer = undefined
    if (this.#pending.length === 0) return
    this.#sealed.push(this.#pending)
    this.#pending = []
    this.#pendingBytes = 0
  }

  #writeAll(): void {
    this.#seal()
    this.#scheduleWrite()
  }

  /** One batch per turn of the event loop, so verdicts and connections get in between batches of a backlog. */
  #scheduleWrite(): void {
    this.#writeImmediate ??= setImmediate(() => {
      this.#writeImmediate = undefined
      if (this.#writeHead() && this.#sealed.length > 0) this.#scheduleWrite()
    })
  }

  /** Writes every sealed batch now (flush and close), unless the head is waiting for a retry. */
  #writeNow(): void {
    clearImmediate(this.#writeImmediate)
    this.#writeImmediate = undefined
    while (this.#sealed.length > 0 && this.#writeHead());
  }

  /** Writes the head batch; false when it failed and a retry was scheduled (the later batches wait behind it). */
  #writeHead(): boolean {
    const batch = this.#sealed[0]
    if (batch === undefined || this.#retryTimer !== undefined) return false
    const result = this.#writer.write(batch, this.#attempt + 1 >= this.#maxAttempts)
    if (result.error !== null && isLockError(result.error)) {
      if (this.#lockWaitOver()) {
        // Shutting down and still locked after the wait: nothing can be written, row by row neither.
        this.#writeErrors += 1
        this.#log.error({ err: result.error, dropped: batch.length, waitedMs: this.#closeLockWaitMs }, 'store dropped attacks: the database stayed locked by another process while the sensor stopped')
        return this.#finishHead(batch, { written: 0, dropped: batch.length, committed: false, error: null })
      }
      this.#lockWaits += 1
      const now = performance.now()
      this.#lockedSinceMs ??= now
      // Short waits are routine (the checkpoint worker takes the lock for a moment after each checkpoint): say so only
      // when one lasts.
      if (!this.#lockWarned && now - this.#lockedSinceMs >= LOCK_WARN_AFTER_MS) {
        this.#lockWarned = true
        this.#log.warn(
          { waitedMs: Math.round(now - this.#lockedSinceMs), queued: this.#queuedCount },
          'store waiting for the database lock held by another connection (plugin pipeline, db retention or vacuum, a sqlite3 shell); capture goes on and attacks queue until it is free',
        )
      }
      const delayMs = Math.min(LOCK_RETRY_FIRST_MS * 2 ** this.#lockRetries, LOCK_RETRY_MAX_MS)
      this.#retryAfter(delayMs * (1 - LOCK_RETRY_JITTER + 2 * LOCK_RETRY_JITTER * Math.random()))
      this.#lockRetries += 1
      return false
    }
    if (this.#lockedSinceMs !== null) {
      if (this.#lockWarned) this.#log.info({ waitedMs: Math.round(performance.now() - this.#lockedSinceMs), queued: this.#queuedCount }, 'store has the database lock again')
      this.#lockedSinceMs = null
      this.#lockWarned = false
      this.#lockRetries = 0
    }
    if (result.error !== null) {
      this.#attempt += 1
      this.#writeErrors += 1
      const delayMs = this.#retryBaseDelayMs * 2 ** (this.#attempt - 1)
      this.#log.warn({ err: result.error, attacks: batch.length, attempt: this.#attempt, retryInMs: delayMs }, 'store batch write failed')
      this.#retryAfter(delayMs)
      return false
    }
    if (!result.committed) this.#writeErrors += 1
    return this.#finishHead(batch, result)
  }

  /** The head batch is done with: written, salvaged or dropped. */
  #finishHead(batch: readonly Attack[], result: BatchResult): true {
    this.#sealed.shift()
    this.#attempt = 0
    this.#queuedCount -= batch.length
    for (const a of batch) this.#queuedBytes -= queuedBytes(a)
    this.#written += result.written
    this.#dropped += result.dropped
    if (result.committed) this.#batches += 1
    if (this.#sealed.length === 0) this.#resolveFlushes()
    return true
  }

  #retryAfter(delayMs: number): void {
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#writeNow()
      if (this.#sealed.length === 0) this.#resolveFlushes()
    }, delayMs)
  }

  /**
   * Only a closing store stops waiting for the lock: a shutdown must end even while another process keeps the
   * database locked. From then on a lock counts as a failed attempt, and the batch is salvaged or dropped (logged).
   */
  #lockWaitOver(): boolean {
    return this.#closing && performance.now() - this.#closingSinceMs >= this.#closeLockWaitMs
  }

  #resolveFlushes(): void {
    const waiters = this.#flushWaiters
    this.#flushWaiters = []
    for (const resolve of waiters) resolve()
  }

  #drop(reason: 'queue-full' | 'closed'): void {
    this.#dropped += 1
    this.#droppedSinceWarn += 1
    // Rate-limited: under a flood every enqueue may drop, and a log line per drop would become the next bottleneck.
    if (Date.now() - this.#lastDropWarnMs >= DROP_WARN_INTERVAL_MS) this.#warnDrops(reason)
  }

  #warnDrops(reason: string): void {
    this.#log.warn({ dropped: this.#droppedSinceWarn, totalDropped: this.#dropped, reason, queued: this.#queuedCount, queuedBytes: this.#queuedBytes }, 'store dropped attacks')
    this.#droppedSinceWarn = 0
    this.#lastDropWarnMs = Date.now()
  }
}
