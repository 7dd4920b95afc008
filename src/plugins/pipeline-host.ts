import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { HoneytrapError } from '../core/errors.js'
import { asBuffer, runKey, type PipelineJob, type RunResult, type SubjectRecord } from './pipeline.js'
import { compiledScript } from '../core/compiled-script.js'
import type { PipelineSettings } from './pipeline-settings.js'
import type { FromWorker, ToWorker } from './plugin-worker.js'

// How long past plugins.timeoutMs a run may go without reporting before its worker counts as blocked. The worker's
// own timer settles an asynchronous hang at the deadline; only a plugin that holds the thread itself gets this far.
const BLOCKED_GRACE_MS = 5_000
const CLOSE_TIMEOUT_MS = 5_000
// A worker that dies this many times in a row without finishing a run means the plugins cannot run at all.
const MAX_CONSECUTIVE_CRASHES = 20
// The name a crash gets when no run was in progress; never stored.
const BETWEEN_RUNS = '(between runs)'

/** Counts of plugin runs since start, by status. */
export interface PluginHostStats {
  readonly runs: number
  readonly failed: number
  readonly timeouts: number
  readonly crashes: number // runs that took their worker down (and workers replaced)
}

/**
 * Runs jobs on a plugin worker thread and survives whatever the plugins do to it: a run that never reports back
 * (the thread is blocked) or a worker that exits (process.exit, out of memory) is recorded as a crashed run, a new
 * worker is started, and the job goes on from the next plugin with what was found so far. Jobs run one at a time.
 */
export class PluginHost {
  readonly #settings: PipelineSettings
  readonly #log: Logger
  #worker: Worker | null = null
  #onMessage: ((message: FromWorker) => void) | null = null
  #onGone: ((reason: string) => void) | null = null
  #crashesInARow = 0
  #aborted = false
  #stats = { runs: 0, failed: 0, timeouts: 0, crashes: 0 }
  plugins: readonly { readonly name: string; readonly phase: string }[] = []

  constructor(settings: PipelineSettings, log: Logger) {
    this.#settings = settings
    this.#log = log.child({ component: 'plugins' })
  }

  /** Starts the first worker; throws HT_ERR_PLUGIN_LOAD when a plugin cannot be loaded. */
  async start(): Promise<void> {
    await this.#spawn()
  }

  stats(): PluginHostStats {
    return { ...this.#stats }
  }

  /** Runs every plugin the job asks for; resolves with one result per run, crashed runs included. Never rejects. */
  async process(job: PipelineJob): Promise<RunResult[]> {
    const results: RunResult[] = []
    let current = job
    for (;;) {
      const outcome = await this.#attempt(current, results)
      if (outcome === 'done' || this.#aborted) return results
      // The worker died in a run: record it, then go on without it, with what the job has produced so far.
      this.#stats.crashes += 1
      this.#crashesInARow += 1
      if (outcome.crashed.plugin !== BETWEEN_RUNS) results.push(outcome.crashed)
      if (this.#crashesInARow >= MAX_CONSECUTIVE_CRASHES) {
        throw new HoneytrapError('HT_ERR_PIPELINE', `the plugin worker died ${this.#crashesInARow} times in a row (last: ${outcome.crashed.error}); the pipeline stops`)
      }
      await this.#spawn()
      current = resumeJob(job, results)
    }
  }

  /** Shutdown: aborts the run in progress (its plugin sees ctx.signal abort); the job in hand resolves at once. */
  abort(): void {
    this.#aborted = true
    this.#worker?.postMessage({ type: 'abort' } satisfies ToWorker)
  }

  get aborted(): boolean {
    return this.#aborted
  }

  /** Asks the worker to close its plugins; terminates it if it does not within a few seconds. */
  async close(): Promise<void> {
    const worker = this.#worker
    if (worker === null) return
    this.#worker = null
    const closed = new Promise<void>((resolve) => {
      worker.once('exit', () => resolve())
      this.#onMessage = (m) => {
        if (m.type === 'closed') resolve()
      }
    })
    worker.postMessage({ type: 'close' } satisfies ToWorker)
    const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS)
    await closed
    clearTimeout(timer)
    await worker.terminate()
  }

  /** One pass over the job on the current worker: 'done', or the run that was in progress when the worker died. */
  #attempt(job: PipelineJob, results: RunResult[]): Promise<'done' | { crashed: RunResult }> {
    const worker = this.#worker
    if (worker === null) throw new Error('plugin host not started')
    return new Promise((resolve) => {
      let running: { subjectSha256: string; plugin: string; startedAtMs: number; started: number } | null = null
      let stall: NodeJS.Timeout | undefined
      const finish = (value: 'done' | { crashed: RunResult }): void => {
        clearTimeout(stall)
        this.#onMessage = null
        this.#onGone = null
        resolve(value)
      }
      this.#onMessage = (message) => {
        if (message.type === 'begin') {
          running = { subjectSha256: message.subjectSha256, plugin: message.plugin, startedAtMs: Date.now(), started: performance.now() }
          clearTimeout(stall)
          stall = setTimeout(() => {
            this.#log.warn({ plugin: running?.plugin, attackId: job.attack.id }, 'plugin blocked its worker past the deadline, replacing the worker')
            this.#kill('blocked')
          }, this.#settings.plugins.timeoutMs + BLOCKED_GRACE_MS)
        } else if (message.type === 'end') {
          clearTimeout(stall)
          running = null
          this.#count(message.result)
          this.#crashesInARow = 0
          results.push(reviveResult(message.result))
        } else if (message.type === 'done') {
          finish('done')
        }
      }
      this.#onGone = (reason) => {
        const r = running
        if (r === null) {
          // Died between runs (a plugin's stray timer, a close() hook): nothing to blame; resume the job.
          finish({ crashed: crashedRun(job.attack.sha256, BETWEEN_RUNS, Date.now(), 0, reason) })
          return
        }
        this.#log.warn({ plugin: r.plugin, attackId: job.attack.id, reason }, 'plugin crashed its worker')
        finish({ crashed: crashedRun(r.subjectSha256, r.plugin, r.startedAtMs, Math.round(performance.now() - r.started), reason) })
      }
      worker.postMessage({ type: 'job', job } satisfies ToWorker)
    })
  }

  #count(result: RunResult): void {
    this.#stats.runs += 1
    if (result.status === 'failed') this.#stats.failed += 1
    if (result.status === 'timeout') this.#stats.timeouts += 1
  }

  #kill(reason: 'blocked'): void {
    const worker = this.#worker
    this.#worker = null
    const gone = this.#onGone
    void worker?.terminate()
    gone?.(reason === 'blocked' ? `blocked its worker past plugins.timeoutMs (${this.#settings.plugins.timeoutMs} ms); the worker was replaced` : reason)
  }

  async #spawn(): Promise<void> {
    const worker = new Worker(compiledScript(import.meta.url, 'plugin-worker.js'), {
      workerData: this.#settings,
      resourceLimits: { maxOldGenerationSizeMb: this.#settings.plugins.maxMemoryMb },
      stdout: false,
      stderr: false,
    })
    this.#worker = worker
    let lastError: Error | null = null
    worker.on('message', (message: FromWorker) => this.#onMessage?.(message))
    worker.on('error', (err) => {
      lastError = err
    })
    worker.on('exit', (code) => {
      if (this.#worker !== worker) return // replaced or closed on purpose
      this.#worker = null
      const oom = (lastError as { code?: string } | null)?.code === 'ERR_WORKER_OUT_OF_MEMORY'
      const reason = oom ? `ran its worker out of memory (plugins.maxMemoryMb ${this.#settings.plugins.maxMemoryMb})` : `ended its worker (exit code ${code}${lastError === null ? '' : `, ${lastError.message}`})`
      this.#onGone?.(reason)
    })
    await new Promise<void>((resolve, reject) => {
      this.#onMessage = (message) => {
        if (message.type === 'ready') {
          this.plugins = message.plugins
          this.#onMessage = null
          this.#onGone = null
          resolve()
        } else if (message.type === 'load-error') {
          this.#worker = null
          void worker.terminate()
          reject(new HoneytrapError(message.code === 'HT_ERR_PLUGIN_LOAD' ? 'HT_ERR_PLUGIN_LOAD' : 'HT_ERR_PIPELINE', message.message))
        }
      }
      this.#onGone = (reason) => reject(new HoneytrapError('HT_ERR_PIPELINE', `the plugin worker stopped while loading the plugins: ${reason}`))
    })
  }
}

function crashedRun(subjectSha256: string, plugin: string, startedAtMs: number, durationMs: number, reason: string): RunResult {
  return { subjectSha256, plugin, status: 'crashed', error: reason, startedAtMs, durationMs, artifacts: [], payloads: [], downloads: [] }
}

/** The job again, minus the runs done or crashed, plus the subjects found so far. */
function resumeJob(job: PipelineJob, results: readonly RunResult[]): PipelineJob {
  const done = [...job.done, ...results.map((r) => runKey(r.subjectSha256, r.plugin))]
  const subjects: SubjectRecord[] = [...job.subjects]
  for (const r of results) {
    subjects.push(...r.payloads)
    for (const d of r.downloads) if (d.sample !== null && d.follow) subjects.push(d.sample)
  }
  return { ...job, subjects, done }
}

function reviveResult(result: RunResult): RunResult {
  const revive = (s: SubjectRecord): SubjectRecord => ({ ...s, data: asBuffer(s.data) })
  return {
    ...result,
    payloads: result.payloads.map(revive),
    downloads: result.downloads.map((d) => ({ ...d, sample: d.sample === null ? null : revive(d.sample) })),
  }
}
