import type { Logger } from 'pino'
import type { Attack } from '../attack/attack.js'
import { SqliteWriter } from './sqlite-writer.js'
import type { AttackStore, StoreStats } from './store.js'

export interface SqliteStoreOptions {
  readonly path: string
  readonly batchWindowMs: number // a batch is written this long after its first attack at the latest
  readonly batchMaxAttacks: number // ...or as soon as it holds this many attacks
  readonly maxQueuedAttacks: number // bound on attacks enqueued but not yet committed; past it enqueue drops
  readonly maxQueuedBytes: number // bound on their payload + response bytes; keep it above twice responder.maxAttackBytes
  readonly log: Logger
  readonly busyTimeoutMs?: number // how long a write waits for a lock held by another connection; default 1000
  readonly maxWriteAttempts?: number // tries per batch before it is salvaged row by row and the rest dropped; default 5
  readonly retryBaseDelayMs?: number // first retry delay, doubled each attempt; default 100
}

// better-sqlite3 waits for a lock synchronously, on the event loop that also gives NFQUEUE verdicts: keep it short
// and let the store's own retries (timers, not blocking) cover longer locks.
const DEFAULT_BUSY_TIMEOUT_MS = 1_000
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
  #closed = false

  #pending: Attack[] = [] // the batch being filled
  #pendingBytes = 0
  #sealed: Attack[][] = [] // full batches, written in order; the head may be waiting for a retry
  #windowTimer: NodeJS.Timeout | undefined
  #writeImmediate: NodeJS.Immediate | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #attempt = 0
  #flushWaiters: (() => void)[] = []

  // Everything enqueued and not yet written counts against the bounds.
  #queuedCount = 0
  #queuedBytes = 0
  #written = 0
  #dropped = 0
  #batches = 0
  #writeErrors = 0
  #droppedSinceWarn = 0
  #lastDropWarnMs = Number.NEGATIVE_INFINITY

  constructor(writer: SqliteWriter, options: SqliteStoreOptions, log: Logger) {
    this.#writer = writer
    this.#options = options
    this.#log = log
    this.#maxAttempts = options.maxWriteAttempts ?? DEFAULT_MAX_WRITE_ATTEMPTS
    this.#retryBaseDelayMs = options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS
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
    await this.flush()
    this.#closed = true
    this.#writer.close()
    if (this.#droppedSinceWarn > 0) this.#warnDrops('closed')
    this.#log.info(this.stats(), 'store closed')
  }

  stats(): StoreStats {
    return { queued: this.#queuedCount, written: this.#written, dropped: this.#dropped, batches: this.#batches, writeErrors: this.#writeErrors }
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
    this.#attempt += 1
    const result = this.#writer.write(batch, this.#attempt >= this.#maxAttempts)
    if (result.error !== null) {
      this.#writeErrors += 1
      const delayMs = this.#retryBaseDelayMs * 2 ** (this.#attempt - 1)
      this.#log.warn({ err: result.error, attacks: batch.length, attempt: this.#attempt, retryInMs: delayMs }, 'store batch write failed')
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined
        this.#writeNow()
        if (this.#sealed.length === 0) this.#resolveFlushes()
      }, delayMs)
      return false
    }
    if (!result.committed) this.#writeErrors += 1
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
