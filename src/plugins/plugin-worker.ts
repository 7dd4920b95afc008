import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import pino from 'pino'
import { DownloadPolicy } from './download/download-policy.js'
import { loadPlugins } from './load-plugins.js'
import { asBuffer, runPipeline, type PipelineJob, type RunResult } from './pipeline.js'
import { createArtifactHistory } from './pipeline-store.js'
import type { ArtifactHistory, Plugin } from './plugin.js'
import type { PipelineSettings } from './pipeline-settings.js'

/** Messages between the host (pipeline-host.ts) and this worker. */
export type ToWorker = { readonly type: 'job'; readonly job: PipelineJob } | { readonly type: 'abort' } | { readonly type: 'close' }
export type FromWorker =
  | { readonly type: 'ready'; readonly plugins: readonly { readonly name: string; readonly phase: string }[] }
  | { readonly type: 'load-error'; readonly message: string; readonly code: string | null }
  | { readonly type: 'begin'; readonly subjectSha256: string; readonly plugin: string }
  | { readonly type: 'end'; readonly result: RunResult }
  | { readonly type: 'done' }
  | { readonly type: 'closed' }

// The thread that runs plugin code. It is disposable by design: a plugin that blocks it, exhausts its heap or calls
// process.exit() (which ends only this thread) costs the host one worker, replaced, and one run recorded as crashed.

const port = parentPort
if (port === null) throw new Error('plugin-worker.ts runs as a worker thread only')
const settings = workerData as PipelineSettings
const log = pino({ level: settings.logLevel, base: { pid: process.pid, component: 'plugins' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }))
const shutdown = new AbortController()

function post(message: FromWorker): void {
  port?.postMessage(message)
}

async function start(): Promise<void> {
  let plugins: Plugin[]
  try {
    plugins = await loadPlugins(settings, log)
  } catch (err) {
    post({ type: 'load-error', message: (err as Error).message, code: (err as { code?: string }).code ?? null })
    return
  }
  const history = openHistory(settings.dbPath)
  const d = settings.plugins.downloads
  const downloads = new DownloadPolicy({ maxBytes: d.maxBytes, timeoutMs: d.timeoutMs, maxRedirects: d.maxRedirects, recentUrlTtlMs: d.recentUrlTtlMs, allow: d.allow, deny: d.deny })
  const options = {
    plugins,
    downloads,
    history: history.history,
    log,
    signal: shutdown.signal,
    timeoutMs: settings.plugins.timeoutMs,
    maxDepth: settings.plugins.maxDepth,
    maxSubjectsPerAttack: settings.plugins.maxSubjectsPerAttack,
    maxSubjectBytes: settings.plugins.maxSubjectBytes,
  }
  const reporter = {
    begin: (subjectSha256: string, plugin: string) => post({ type: 'begin', subjectSha256, plugin }),
    end: (result: RunResult) => post({ type: 'end', result }),
  }
  port?.on('message', (message: ToWorker) => {
    if (message.type === 'job') {
      // Jobs come one at a time: the host sends the next only after `done`.
      void runPipeline(reviveJob(message.job), options, reporter).finally(() => post({ type: 'done' }))
    } else if (message.type === 'abort') {
      // Shutdown: the plugin in progress sees ctx.signal abort and the job ends without reporting it.
      shutdown.abort(new Error('pipeline stopping'))
    } else {
      shutdown.abort(new Error('pipeline closing'))
      void Promise.allSettled(plugins.map((p) => p.close?.())).finally(() => {
        history.close()
        post({ type: 'closed' })
        port?.close()
      })
    }
  })
  post({ type: 'ready', plugins: plugins.map((p) => ({ name: p.name, phase: p.phase })) })
}

/** The job's bytes arrive as Uint8Arrays (structured clone); plugins are promised Buffers. */
function reviveJob(job: PipelineJob): PipelineJob {
  const a = job.attack
  return {
    ...job,
    attack: { ...a, payload: asBuffer(a.payload), response: asBuffer(a.response) },
    subjects: job.subjects.map((s) => ({ ...s, data: asBuffer(s.data) })),
  }
}

/** Plugins read earlier results through their own read-only connection: the worker never writes the database. */
function openHistory(dbPath: string | null): { history: ArtifactHistory; close(): void } {
  if (dbPath === null) return { history: { find: () => [], recentDownload: () => null }, close: () => undefined }
  const db = new Database(dbPath, { readonly: true, fileMustExist: true, timeout: 5_000 })
  return { history: createArtifactHistory(db), close: () => db.close() }
}

void start()
