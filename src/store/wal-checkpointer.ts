import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { compiledScript } from '../core/compiled-script.js'
import type { CheckpointWorkerData, FromCheckpointer, ToCheckpointer } from './checkpoint-worker.js'

export interface WalCheckpointerOptions {
  readonly path: string
  readonly log: Logger
  /** Called once if the worker cannot run: the writer then checkpoints on its own commits again, as SQLite does by default. */
  readonly onUnavailable: () => void
  readonly dueAfterAttacks?: number // a checkpoint once this many attacks were committed since the last one (the first
  // guess: then adjusted after each checkpoint, so that one covers about 4,000 WAL pages)...
  readonly dueAfterCommits?: number // ...or this many commits (a trickle of one-attack batches grows the WAL too)...
  readonly dueAfterMs?: number // ...or this long after the first commit since the last one
  readonly idleStopMs?: number // the worker ends after this long without a checkpoint to run
  readonly restartWaitMs?: number // how long the worker waits for the write lock and for readers to leave the WAL
}

/** What the checkpointer did since the writer opened. */
export interface CheckpointerStats {
  readonly checkpoints: number
  readonly restarts: number // checkpoints after which the WAL was started over (its file reused from the beginning)
  readonly pagesCopied: number // WAL frames copied into the database file, all checkpoints together
  readonly failures: number
  readonly workerStarts: number
  readonly running: boolean // a worker is alive right now
}

// A checkpoint once the WAL holds about 4,000 pages (16 MB), four times SQLite's own default: a page rewritten by many
// commits of a cycle is copied once, and each checkpoint costs a handful of fsyncs, so longer cycles cost the machine
// less, while the checkpoint no longer runs where its length would matter. How many attacks that is depends on them
// (their rows land all over the indexes: 1 to 4 pages each in batches of 250, about ten for a one-attack commit), so
// the attack count is adjusted from what each checkpoint found, within these bounds.
const TARGET_WAL_PAGES = 4_000
const DEFAULT_DUE_AFTER_ATTACKS = 1_000
const MIN_DUE_AFTER_ATTACKS = 200
const MAX_DUE_AFTER_ATTACKS = 20_000
const DEFAULT_DUE_AFTER_COMMITS = 400
const DEFAULT_DUE_AFTER_MS = 60_000
const DEFAULT_IDLE_STOP_MS = 30_000
const DEFAULT_RESTART_WAIT_MS = 250

/**
 * Runs the WAL checkpoints of the sensor's database on a worker thread, so that their fsyncs never run on the event
 * loop.
 *
 * Why: SQLite checkpoints inside the commit that fills the WAL past its threshold, and a checkpoint syncs the WAL,
 * copies its pages into the database file and syncs that. Traced during a 65,535-port scan on this project's VM,
 * single fsyncs of that commit took 200 to 785 ms; on an SD card they take seconds. The event loop that commits also
 * gives the NFQUEUE verdicts and accepts connections, so every SYN waited with it. The writer's connection runs with
 * `wal_autocheckpoint = 0`, and this class asks a worker, which has a connection of its own, to checkpoint instead.
 *
 * The worker exists only while there is work: it starts at the first checkpoint due and ends after `idleStopMs` with
 * none (a second V8 heap with SQLite costs about 9 MB, which an idle sensor does not pay). If it cannot start or
 * fails, `onUnavailable` gives the checkpoints back to the writer's commits, and the sensor runs as SQLite does by
 * default. What a crash can lose does not change: a commit is in the WAL before it returns, whoever checkpoints it.
 */
export class WalCheckpointer {
  readonly #options: WalCheckpointerOptions
  readonly #log: Logger
  #dueAfterAttacks: number
  readonly #adaptive: boolean
  readonly #dueAfterCommits: number
  readonly #dueAfterMs: number
  readonly #idleStopMs: number
  #worker: Worker | null = null
  #inFlight = false
  #attacks = 0 // committed since the last checkpoint was asked for
  #attacksInCycle = 0 // committed since the last checkpoint finished: what its WAL pages came from
  #commits = 0
  #dueTimer: NodeJS.Timeout | undefined
  #idleTimer: NodeJS.Timeout | undefined
  #unavailable = false
  #closed = false
  #checkpoints = 0
  #restarts = 0
  #pagesCopied = 0
  #lastCheckpointed = 0
  #lastRestarted = true // the WAL of a database just opened counts from zero
  #failures = 0
  #workerStarts = 0

  constructor(options: WalCheckpointerOptions) {
    this.#options = options
    this.#log = options.log
    this.#dueAfterAttacks = options.dueAfterAttacks ?? DEFAULT_DUE_AFTER_ATTACKS
    this.#adaptive = options.dueAfterAttacks === undefined
    this.#dueAfterCommits = options.dueAfterCommits ?? DEFAULT_DUE_AFTER_COMMITS
    this.#dueAfterMs = options.dueAfterMs ?? DEFAULT_DUE_AFTER_MS
    this.#idleStopMs = options.idleStopMs ?? DEFAULT_IDLE_STOP_MS
  }

  /** After each commit of the writer, with the attacks it stored. */
  committed(attacks: number): void {
    if (this.#unavailable || this.#closed) return
    this.#attacks += attacks
    this.#attacksInCycle += attacks
    this.#commits += 1
    if (this.#attacks >= this.#dueAfterAttacks || this.#commits >= this.#dueAfterCommits) this.#request()
    // A trickle never reaches the counts: check again once dueAfterMs has passed, without keeping the process alive.
    else if (this.#dueTimer === undefined) this.#dueTimer = setTimeout(() => this.#request(), this.#dueAfterMs).unref()
  }

  stats(): CheckpointerStats {
    return {
      checkpoints: this.#checkpoints,
      restarts: this.#restarts,
      pagesCopied: this.#pagesCopied,
      failures: this.#failures,
      workerStarts: this.#workerStarts,
      running: this.#worker !== null,
    }
  }

  /** Ends the worker (after the checkpoint it may be running); the writer's connection then closes last. */
  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#dueTimer)
    clearTimeout(this.#idleTimer)
    await this.#stopWorker()
  }

  #request(): void {
    clearTimeout(this.#dueTimer)
    this.#dueTimer = undefined
    if (this.#inFlight || this.#unavailable || this.#closed || this.#commits === 0) return
    this.#attacks = 0
    this.#commits = 0
    this.#inFlight = true
    clearTimeout(this.#idleTimer)
    const worker = this.#worker ?? this.#startWorker()
    worker?.postMessage({ type: 'checkpoint' } satisfies ToCheckpointer)
  }

  #startWorker(): Worker | null {
    let worker: Worker
    try {
      worker = new Worker(compiledScript(import.meta.url, 'checkpoint-worker.js'), {
        workerData: { path: this.#options.path, restartWaitMs: this.#options.restartWaitMs ?? DEFAULT_RESTART_WAIT_MS } satisfies CheckpointWorkerData,
        // A checkpoint allocates next to nothing in JavaScript: a small heap keeps the worker's memory small.
        resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 1 },
        stdout: false,
        stderr: false,
      })
    } catch (err) {
      this.#giveUp(err)
      return null
    }
    this.#worker = worker
    this.#workerStarts += 1
    worker.on('message', (message: FromCheckpointer) => this.#onMessage(message))
    worker.on('error', (err) => this.#giveUp(err))
    worker.on('exit', (code) => {
      if (this.#worker !== worker) return // stopped on purpose
      this.#worker = null
      this.#giveUp(new Error(`the checkpoint worker exited (code ${code})`))
    })
    return worker
  }

  #onMessage(message: FromCheckpointer): void {
    this.#inFlight = false
    if (message.type === 'failed') {
      this.#failures += 1
      this.#giveUp(Object.assign(new Error(message.message), { code: message.code }))
      return
    }
    this.#checkpoints += 1
    // `checkpointed` counts the WAL's frames copied so far: all new after a restart, else on top of the last count.
    this.#pagesCopied += message.checkpointed - (this.#lastRestarted ? 0 : this.#lastCheckpointed)
    this.#lastCheckpointed = message.checkpointed
    this.#lastRestarted = message.restarted
    if (message.restarted) this.#restarts += 1
    if (this.#adaptive && message.walFrames > 0 && this.#attacksInCycle > 0) {
      const attacks = Math.round((TARGET_WAL_PAGES * this.#attacksInCycle) / message.walFrames)
      this.#dueAfterAttacks = Math.min(MAX_DUE_AFTER_ATTACKS, Math.max(MIN_DUE_AFTER_ATTACKS, attacks))
    }
    // Not restarted, the WAL goes on growing from where it is, and its next page count covers these attacks too.
    if (message.restarted) this.#attacksInCycle = 0
    this.#log.debug(
      { walFrames: message.walFrames, checkpointed: message.checkpointed, restarted: message.restarted, tookMs: Math.round(message.tookMs), nextAfterAttacks: this.#dueAfterAttacks },
      'store checkpoint',
    )
    if (this.#closed) return
    // Commits went on while it ran: the next one may be due already, or later by time (a timer that fired while this
    // one ran asked for nothing).
    if (this.#attacks >= this.#dueAfterAttacks || this.#commits >= this.#dueAfterCommits) return this.#request()
    if (this.#commits > 0 && this.#dueTimer === undefined) this.#dueTimer = setTimeout(() => this.#request(), this.#dueAfterMs).unref()
    this.#idleTimer = setTimeout(() => void this.#stopWorker(), this.#idleStopMs).unref()
  }

  #giveUp(err: unknown): void {
    if (this.#unavailable) return
    this.#unavailable = true
    this.#inFlight = false
    clearTimeout(this.#dueTimer)
    clearTimeout(this.#idleTimer)
    this.#log.warn({ err }, 'store checkpoints run on the writer again: the checkpoint worker failed; commits that fill the WAL will hold the event loop while they checkpoint')
    void this.#stopWorker()
    this.#options.onUnavailable()
  }

  async #stopWorker(): Promise<void> {
    const worker = this.#worker
    if (worker === null) return
    this.#worker = null
    if (this.#inFlight) {
      // Let the running checkpoint finish: its connection closes cleanly then, and SQLite is never cut off mid-copy.
      await new Promise<void>((resolve) => {
        worker.once('message', () => resolve())
        worker.once('exit', () => resolve())
      })
      this.#inFlight = false
    }
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    worker.postMessage({ type: 'close' } satisfies ToCheckpointer)
    await exited
  }
}
