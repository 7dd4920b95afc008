import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { Attack } from '../attack/attack.js'
import { HoneytrapError } from '../core/errors.js'
import type { AttackStore, StoreStats } from './store.js'
import { packBatch, type FromWriter, type ToWriter, type WireError, type WriterConfig } from './writer-protocol.js'

export interface SqliteStoreOptions {
  readonly path: string
  readonly batchWindowMs: number // a batch is posted this long after its first attack at the latest
  readonly batchMaxAttacks: number // ...or as soon as it holds this many attacks
  readonly maxQueuedAttacks: number // bound on attacks enqueued but not yet committed; past it enqueue drops
  readonly maxQueuedBytes: number // bound on their payload bytes; keep it above the responder's maxAttackBytes
  readonly logLevel: string // level of the writer thread's own logger
  readonly log: Logger
  readonly busyTimeoutMs?: number // how long a write waits for a lock held by another connection; default 5000
  readonly maxWriteAttempts?: number // tries per batch before it is salvaged row by row and the rest dropped; default 5
  readonly retryBaseDelayMs?: number // first retry delay, doubled each attempt; default 100
}

const DEFAULT_BUSY_TIMEOUT_MS = 5_000
const DEFAULT_MAX_WRITE_ATTEMPTS = 5
const DEFAULT_RETRY_BASE_DELAY_MS = 100
// A batch is also posted once its payloads reach this size, so one pack (memcpy) on the main thread stays short
// even when every attack carries a payload of a megabyte.
const BATCH_MAX_BYTES = 4 * 1024 * 1024
const DROP_WARN_INTERVAL_MS = 10_000

type State = 'open' | 'closing' | 'closed' | 'dead'

interface InFlight {
  readonly count: number
  readonly bytes: number
}

/**
 * Opens the attacks database in a writer thread and resolves once it is open and migrated; rejects with
 * HT_ERR_STORE_OPEN, naming the path and the fix, if it cannot be.
 */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<AttackStore> {
  const config: WriterConfig = {
    path: options.path,
    logLevel: options.logLevel,
    busyTimeoutMs: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
    maxWriteAttempts: options.maxWriteAttempts ?? DEFAULT_MAX_WRITE_ATTEMPTS,
    retryBaseDelayMs: options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS,
  }
  const store = new SqliteStore(new Worker(resolveWorkerUrl(), { workerData: config }), options, config)
  await store.opened
  return store
}

/**
 * The worker runs the compiled writer next to this module. Under vitest this module is the TypeScript source, and a
 * worker thread is a fresh Node 20 instance that cannot load `.ts`: then take the build in dist/store/ (`npm test`
 * builds first).
 */
function resolveWorkerUrl(): URL {
  const url = import.meta.url.endsWith('.ts')
    ? new URL('../../dist/store/sqlite-writer-worker.js', import.meta.url)
    : new URL('./sqlite-writer-worker.js', import.meta.url)
  if (!existsSync(url)) {
    throw new HoneytrapError('HT_ERR_STORE_OPEN', `the store writer ${fileURLToPath(url)} is missing; run "npm run build"`)
  }
  return url
}

class SqliteStore implements AttackStore {
  readonly opened: Promise<void>
  readonly #worker: Worker
  readonly #options: SqliteStoreOptions
  readonly #log: Logger
  readonly #exited: Promise<void>
  readonly #closeTimeoutMs: number
  #state: State = 'open'
  #ready = false
  #closeRequested = false
  #closing: Promise<void> | undefined

  // Attacks of the batch being filled, and full batches waiting for the next turn of the event loop.
  #pending: Attack[] = []
  #pendingBytes = 0
  #sealed: Attack[][] = []
  #windowTimer: NodeJS.Timeout | undefined
  #postImmediate: NodeJS.Immediate | undefined

  // Everything enqueued and not yet acked (pending, sealed and in flight) counts against the bounds.
  #unackedCount = 0
  #unackedBytes = 0
  #inFlight = new Map<number, InFlight>()
  #nextSeq = 1
  #flushWaiters: { seq: number; resolve: () => void }[] = []

  #written = 0
  #dropped = 0
  #batches = 0
  #writeErrors = 0
  #droppedSinceWarn = 0
  #lastDropWarnMs = Number.NEGATIVE_INFINITY

  constructor(worker: Worker, options: SqliteStoreOptions, config: WriterConfig) {
    this.#worker = worker
    this.#options = options
    this.#log = options.log.child({ component: 'store' })
    // A worst case for a batch at the head when close() is called: every attempt waits out the busy timeout.
    this.#closeTimeoutMs = config.maxWriteAttempts * (config.busyTimeoutMs + config.retryBaseDelayMs * 2 ** config.maxWriteAttempts) + 10_000
    let resolveOpened!: () => void
    let rejectOpened!: (err: unknown) => void
    this.opened = new Promise((resolve, reject) => {
      resolveOpened = resolve
      rejectOpened = reject
    })
    worker.on('message', (message: FromWriter) => {
      if (message.type === 'ready') {
        this.#ready = true
        // Idle, the writer must not keep the process alive; it is ref'd again while a batch is in flight.
        worker.unref()
        resolveOpened()
      } else if (message.type === 'open-failed') {
        rejectOpened(openError(options.path, message.error))
      } else {
        this.#onWriterMessage(message)
      }
    })
    worker.on('error', (err) => {
      if (!this.#ready) {
        rejectOpened(new HoneytrapError('HT_ERR_STORE_OPEN', `the store writer for ${options.path} failed to start: ${err.message}`, { cause: err }))
        return
      }
      this.#log.error({ err }, 'store writer failed')
    })
    this.#exited = new Promise((resolve) => {
      worker.once('exit', (exitCode) => {
        if (!this.#ready) {
          rejectOpened(new HoneytrapError('HT_ERR_STORE_OPEN', `the store writer for ${options.path} exited (code ${exitCode}) before opening it`))
        } else if (!this.#closeRequested || this.#unackedCount > 0) {
          this.#log.error({ exitCode, lost: this.#unackedCount }, 'store writer exited unexpectedly')
        }
        this.#writerGone()
        resolve()
      })
    })
  }

  enqueue(attack: Attack): void {
    if (this.#state !== 'open') {
      this.#drop(this.#state === 'dead' ? 'writer-gone' : 'closed')
      return
    }
    const bytes = attack.payload.length
    if (this.#unackedCount >= this.#options.maxQueuedAttacks || this.#unackedBytes + bytes > this.#options.maxQueuedBytes) {
      this.#drop('queue-full')
      return
    }
    this.#unackedCount += 1
    this.#unackedBytes += bytes
    this.#pending.push(attack)
    this.#pendingBytes += bytes
    if (this.#pending.length === 1) {
      this.#windowTimer = setTimeout(() => this.#postAll(), this.#options.batchWindowMs)
    }
    if (this.#pending.length >= this.#options.batchMaxAttacks || this.#pendingBytes >= BATCH_MAX_BYTES) {
      // Packing and posting happen on the next turn of the loop, so this call stays O(1) for the responder.
      this.#seal()
      this.#postImmediate ??= setImmediate(() => {
        this.#postImmediate = undefined
        this.#postSealed()
      })
    }
  }

  flush(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'dead') return Promise.resolve()
    this.#postAll()
    if (this.#inFlight.size === 0) return Promise.resolve()
    const seq = this.#nextSeq - 1
    return new Promise((resolve) => this.#flushWaiters.push({ seq, resolve }))
  }

  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  stats(): StoreStats {
    return {
      queued: this.#unackedCount,
      written: this.#written,
      dropped: this.#dropped,
      batches: this.#batches,
      writeErrors: this.#writeErrors,
    }
  }

  async #close(): Promise<void> {
    const wasDead = this.#state === 'dead'
    if (!wasDead) this.#state = 'closing'
    if (!wasDead) await this.flush()
    // flush() may have ended because the writer died; then there is nothing left to stop.
    if (this.#state === 'closing') {
      this.#closeRequested = true
      // Keep the process alive until the writer has closed the database and checkpointed the WAL.
      this.#worker.ref()
      this.#worker.postMessage({ type: 'close' } satisfies ToWriter)
      const timer = setTimeout(() => {
        this.#log.error({ timeoutMs: this.#closeTimeoutMs }, 'store writer did not stop, terminating it')
        void this.#worker.terminate()
      }, this.#closeTimeoutMs)
      await this.#exited
      clearTimeout(timer)
    }
    this.#state = 'closed'
    if (this.#droppedSinceWarn > 0) this.#warnDrops('closed')
    this.#log.info(this.stats(), 'store stopped')
  }

  #onWriterMessage(message: Exclude<FromWriter, { type: 'ready' | 'open-failed' }>): void {
    if (message.type === 'write-failed') {
      // The writer logs the error itself, with its stack; here it is only counted.
      this.#writeErrors += 1
      return
    }
    if (message.type === 'closed') return
    const batch = this.#inFlight.get(message.seq)
    if (batch === undefined) return
    this.#inFlight.delete(message.seq)
    this.#unackedCount -= batch.count
    this.#unackedBytes -= batch.bytes
    this.#written += message.written
    this.#dropped += message.dropped
    if (message.committed) this.#batches += 1
    // The writer acks strictly in order, so every flush that waited for this seq or an earlier one is done.
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      if (waiter.seq > message.seq) return true
      waiter.resolve()
      return false
    })
    if (this.#inFlight.size === 0 && this.#state === 'open') this.#worker.unref()
  }

  /** Moves the batch being filled to the sealed list. */
  #seal(): void {
    if (this.#windowTimer !== undefined) {
      clearTimeout(this.#windowTimer)
      this.#windowTimer = undefined
    }
    if (this.#pending.length === 0) return
    this.#sealed.push(this.#pending)
    this.#pending = []
    this.#pendingBytes = 0
  }

  /** Posts everything enqueued so far: the batch being filled and any sealed ones. */
  #postAll(): void {
    this.#seal()
    if (this.#postImmediate !== undefined) {
      clearImmediate(this.#postImmediate)
      this.#postImmediate = undefined
    }
    this.#postSealed()
  }

  #postSealed(): void {
    if (this.#state === 'dead' || this.#state === 'closed') return
    for (const attacks of this.#sealed) {
      const seq = this.#nextSeq++
      const batch = packBatch(attacks)
      this.#inFlight.set(seq, { count: attacks.length, bytes: batch.payloads.byteLength })
      const message: ToWriter = { type: 'batch', seq, attacks: batch.attacks, payloads: batch.payloads }
      this.#worker.postMessage(message, [batch.payloads])
    }
    if (this.#sealed.length > 0) this.#worker.ref()
    this.#sealed = []
  }

  /** The writer thread ended: whatever it had not acked is lost, and from now on enqueue drops. */
  #writerGone(): void {
    if (this.#state !== 'closing' && this.#state !== 'closed') this.#state = 'dead'
    if (this.#state === 'closing') this.#state = 'closed'
    if (this.#windowTimer !== undefined) clearTimeout(this.#windowTimer)
    if (this.#postImmediate !== undefined) clearImmediate(this.#postImmediate)
    this.#windowTimer = undefined
    this.#postImmediate = undefined
    this.#dropped += this.#unackedCount
    this.#unackedCount = 0
    this.#unackedBytes = 0
    this.#pending = []
    this.#pendingBytes = 0
    this.#sealed = []
    this.#inFlight.clear()
    for (const waiter of this.#flushWaiters) waiter.resolve()
    this.#flushWaiters = []
  }

  #drop(reason: 'queue-full' | 'closed' | 'writer-gone'): void {
    this.#dropped += 1
    this.#droppedSinceWarn += 1
    // Rate-limited: under a flood every enqueue may drop, and a log line per drop would become the next bottleneck.
    if (Date.now() - this.#lastDropWarnMs >= DROP_WARN_INTERVAL_MS) this.#warnDrops(reason)
  }

  #warnDrops(reason: string): void {
    this.#log.warn(
      { dropped: this.#droppedSinceWarn, totalDropped: this.#dropped, reason, queued: this.#unackedCount, queuedBytes: this.#unackedBytes },
      'store dropped attacks',
    )
    this.#droppedSinceWarn = 0
    this.#lastDropWarnMs = Date.now()
  }
}

/** Turns the writer's open failure into HT_ERR_STORE_OPEN whose message names the path and what to do about it. */
function openError(path: string, error: WireError): HoneytrapError {
  const cause = Object.assign(new Error(error.message), { name: error.name, code: error.code })
  // migrate() already wrote a message with the path and the fix (newer schema, foreign database, failed migration).
  if (error.code === 'HT_ERR_STORE_OPEN') return new HoneytrapError('HT_ERR_STORE_OPEN', error.message, { cause })
  return new HoneytrapError('HT_ERR_STORE_OPEN', `cannot open the attack database ${path}: ${error.message}; ${openFix(error.code)}`, { cause })
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
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_READONLY':
      return "check that store.path is a file (not a directory) and that the sensor's user can create and write it and its directory"
    default:
      return 'check store.path, the permissions of its directory and the free disk space'
  }
}
