import { spawn, type ChildProcess } from 'node:child_process'
import type { Logger } from 'pino'
import { HoneytrapError, type ErrorCode } from '../core/errors.js'
import type { LivePipelineStats } from './live-pipeline.js'
import type { FromPipelineProcess, ToPipelineProcess } from './pipeline-process.js'
import { compiledScript } from '../core/compiled-script.js'
import type { PipelineSettings } from './pipeline-settings.js'

/** The sensor's handle on its pipeline process. */
export interface PipelineHandle {
  /** The latest counters the process reported (every 5 s and at its stop), summed over restarts; null before any. */
  stats(): LivePipelineStats | null
  readonly restarts: number
  /**
   * The sensor's event-loop utilization (0-1), sampled by the sensor: at or above plugins.pauseAboveLoad the pipeline
   * pauses, below half of it the pipeline resumes (the gap keeps it from flapping).
   */
  setLoad(utilization: number): void
  /** Stops the process: the attack in hand is cut short (its finished runs kept) and it exits; SIGKILL after 10 s. */
  stop(): Promise<void>
}

const STOP_TIMEOUT_MS = 10_000
const RESTART_MIN_MS = 1_000
const RESTART_MAX_MS = 60_000

/**
 * Starts the plugin pipeline in a child process at nice `plugins.nice` (through nice(1), so every thread of the
 * process, V8's and libuv's included, runs at that priority) and waits until its plugins are loaded: a plugin that
 * cannot be loaded fails the sensor's start with HT_ERR_PLUGIN_LOAD. Afterwards a process that dies is restarted with
 * a back-off (1 s doubling to 60 s); the sensor itself never stops for it.
 */
export async function startPipeline(settings: PipelineSettings, log: Logger): Promise<PipelineHandle> {
  const plog = log.child({ component: 'pipeline' })
  let child: ChildProcess = await launch(settings)
  let stopping = false
  let restarts = 0
  let delayMs = RESTART_MIN_MS
  let restartTimer: NodeJS.Timeout | undefined
  let previous: LivePipelineStats | null = null // totals of the processes that came before the current one
  let latest: LivePipelineStats | null = null

  const scheduleRestart = (): void => {
    restartTimer = setTimeout(() => {
      launch(settings).then(
        (next) => {
          if (stopping) {
            next.kill('SIGKILL')
            return
          }
          child = next
          restarts += 1
          delayMs = RESTART_MIN_MS
          watch(next)
          if (paused) next.send({ type: 'pause' } satisfies ToPipelineProcess)
        },
        (err: unknown) => {
          plog.error({ err, retryInMs: delayMs }, 'plugin pipeline restart failed')
          if (!stopping) scheduleRestart()
        },
      )
    }, delayMs)
    delayMs = Math.min(delayMs * 2, RESTART_MAX_MS)
  }
  const watch = (c: ChildProcess): void => {
    c.on('message', (m: FromPipelineProcess) => {
      if (m.type === 'stats') latest = m.stats
    })
    c.once('exit', (code, signal) => {
      if (stopping) return
      previous = sum(previous, latest)
      latest = null
      plog.error({ code, signal, restartInMs: delayMs }, 'plugin pipeline exited, restarting')
      scheduleRestart()
    })
  }
  watch(child)

  let paused = false
  const pauseAt = settings.plugins.pauseAboveLoad
  return {
    setLoad(utilization) {
      const next = paused ? utilization >= pauseAt / 2 : utilization >= pauseAt
      if (next === paused) return
      paused = next
      if (child.connected) child.send({ type: paused ? 'pause' : 'resume' } satisfies ToPipelineProcess)
    },
    stats: () => sum(previous, latest),
    get restarts() {
      return restarts
    },
    async stop() {
      stopping = true
      clearTimeout(restartTimer)
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      if (child.connected) child.send({ type: 'stop' } satisfies ToPipelineProcess)
      const timer = setTimeout(() => {
        plog.warn({ timeoutMs: STOP_TIMEOUT_MS }, 'plugin pipeline did not stop in time, killing it')
        child.kill('SIGKILL')
      }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    },
  }
}

/** One pipeline process, resolved once it reports its plugins loaded. */
function launch(settings: PipelineSettings): Promise<ChildProcess> {
  const child = spawn('nice', ['-n', String(settings.plugins.nice), process.execPath, compiledScript(import.meta.url, 'pipeline-process.js')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  })
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromPipelineProcess): void => {
      if (m.type === 'ready') {
        cleanup()
        resolve(child)
      } else if (m.type === 'failed') {
        cleanup()
        const code: ErrorCode = m.code === 'HT_ERR_PLUGIN_LOAD' || m.code === 'HT_ERR_STORE_OPEN' ? m.code : 'HT_ERR_PIPELINE'
        reject(new HoneytrapError(code, m.message))
      }
    }
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup()
      reject(new HoneytrapError('HT_ERR_PIPELINE', `the plugin pipeline process exited while starting (code ${code}, signal ${signal})`))
    }
    const onError = (err: Error): void => {
      cleanup()
      reject(new HoneytrapError('HT_ERR_PIPELINE', `the plugin pipeline process could not be started: ${err.message}`, { cause: err }))
    }
    function cleanup(): void {
      child.off('message', onMessage)
      child.off('exit', onExit)
      child.off('error', onError)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.once('error', onError)
    child.send({ type: 'start', settings } satisfies ToPipelineProcess)
  })
}

function sum(a: LivePipelineStats | null, b: LivePipelineStats | null): LivePipelineStats | null {
  if (a === null) return b
  if (b === null) return a
  return {
    attacks: a.attacks + b.attacks,
    skipped: a.skipped + b.skipped,
    backlog: b.backlog,
    paused: b.paused,
    runs: a.runs + b.runs,
    failed: a.failed + b.failed,
    timeouts: a.timeouts + b.timeouts,
    crashes: a.crashes + b.crashes,
  }
}
