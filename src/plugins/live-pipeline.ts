import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { PluginHost, PluginHostStats } from './pipeline-host.js'
import type { PipelineStore } from './pipeline-store.js'

/** What the live pipeline has done since it started; the sensor logs it at stop and a metrics endpoint can read it. */
export interface LivePipelineStats extends PluginHostStats {
  readonly attacks: number // attacks whose plugins all ran
  readonly skipped: number // attacks passed over because the backlog was over plugins.maxBacklog (replay runs them)
  readonly paused: boolean // the sensor is busy (plugins.pauseAboveLoad): one attack a second until it is calm
  readonly backlog: number // attacks stored and not yet taken, at the last look
}

export interface LivePipelineOptions {
  readonly maxBacklog: number
  readonly pollIntervalMs: number
  readonly log: Logger
}

const BATCH = 32
// While paused, one attack is still taken this often (see run()).
const PAUSED_TRICKLE_MS = 1_000
const BACKLOG_WARN_INTERVAL_MS = 60_000

/**
 * Follows the attacks table in commit order (rowid) and runs the plugins over each new attack. The work queue is the
 * database itself, bounded by `maxBacklog`: past it the oldest waiting attacks are skipped, counted in the log and
 * in pipeline_state, and left for `honeytrap-ts replay`. On its first start it begins after the newest attack already
 * stored (older ones are replay's job); afterwards the cursor it commits with each attack's results is where it resumes.
 */
export class LivePipeline {
  readonly #store: PipelineStore
  readonly #host: PluginHost
  readonly #options: LivePipelineOptions
  readonly #log: Logger
  #stopping = false
  #paused = false
  #wake: (() => void) | null = null
  #attacks = 0
  #skipped = 0
  #backlog = 0
  #lastBacklogWarnMs = Number.NEGATIVE_INFINITY

  constructor(store: PipelineStore, host: PluginHost, options: LivePipelineOptions) {
    this.#store = store
    this.#host = host
    this.#options = options
    this.#log = options.log.child({ component: 'pipeline' })
  }

  stats(): LivePipelineStats {
    return { ...this.#host.stats(), attacks: this.#attacks, skipped: this.#skipped, backlog: this.#backlog, paused: this.#paused }
  }

  /** Processes attacks until stop(); resolves once the attack in hand is written. Rejects only if the store fails. */
  async run(): Promise<void> {
    let cursor = this.#store.state('cursor')
    if (cursor === null) {
      cursor = this.#store.lastRowid()
      this.#store.setState('cursor', cursor)
    }
    let lastTakenMs = Number.NEGATIVE_INFINITY
    while (!this.#stopping) {
      // Paused (the sensor is busy): one attack per PAUSED_TRICKLE_MS still goes through, so a sensor that stays busy
      // for hours still gets its plugins run, slowly, instead of skipping everything past the backlog bound.
      const trickle = this.#paused
      if (trickle && performance.now() - lastTakenMs < PAUSED_TRICKLE_MS) {
        await this.#sleep()
        continue
      }
      const last = this.#store.lastRowid()
      // Rowids restart when the table was emptied (retention removed every attack): follow the table, not the number.
      if (cursor > last) cursor = 0
      this.#backlog = last - cursor
      if (this.#backlog > this.#options.maxBacklog) cursor = this.#skip(cursor, last - this.#options.maxBacklog)
      const batch = this.#store.next(cursor, trickle ? 1 : BATCH)
      if (batch.length === 0) {
        await this.#sleep()
        continue
      }
      for (const { rowid, attack } of batch) {
        if (this.#stopping || (this.#paused && !trickle)) break
        lastTakenMs = performance.now()
        const results = await this.#host.process(this.#store.jobFor(attack, { only: null, retry: false }))
        if (this.#host.aborted) {
          // Stopped mid-attack: keep the runs that finished, not the cursor, so the rest is done at the next start.
          this.#store.write(attack.id, results, null)
          break
        }
        this.#store.write(attack.id, results, rowid)
        cursor = rowid
        this.#attacks += 1
      }
    }
  }

  /** The sensor is busy: finish the attack in hand, then take one a second only until resume(). */
  pause(): void {
    this.#paused = true
  }

  resume(): void {
    this.#paused = false
    this.#wake?.()
  }

  stop(): void {
    this.#stopping = true
    this.#host.abort()
    this.#wake?.()
  }

  #skip(cursor: number, to: number): number {
    const count = this.#store.db.prepare<[number, number], { n: number }>('SELECT count(*) AS n FROM attacks WHERE rowid > ? AND rowid <= ?').get(cursor, to)?.n ?? 0
    this.#skipped += count
    this.#store.setState('skipped', (this.#store.state('skipped') ?? 0) + count)
    this.#store.setState('cursor', to)
    if (Date.now() - this.#lastBacklogWarnMs >= BACKLOG_WARN_INTERVAL_MS) {
      this.#lastBacklogWarnMs = Date.now()
      this.#log.warn({ skipped: count, totalSkipped: this.#skipped, maxBacklog: this.#options.maxBacklog }, 'plugin backlog full, oldest attacks skipped (honeytrap-ts replay runs them)')
    }
    return to
  }

  #sleep(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.#options.pollIntervalMs)
      const self = this
      function done(): void {
        clearTimeout(timer)
        self.#wake = null
        resolve()
      }
      this.#wake = done
    })
  }
}
