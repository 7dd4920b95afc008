import pino from 'pino'
import { Quarantine } from './download/quarantine.js'
import { LivePipeline, type LivePipelineStats } from './live-pipeline.js'
import { PluginHost } from './pipeline-host.js'
import type { PipelineSettings } from './pipeline-settings.js'
import { PipelineStore } from './pipeline-store.js'

/** Messages between the sensor (pipeline-launcher.ts) and this process. */
export type ToPipelineProcess =
  | { readonly type: 'start'; readonly settings: PipelineSettings }
  | { readonly type: 'stop' }
  | { readonly type: 'pause' }
  | { readonly type: 'resume' }
export type FromPipelineProcess =
  | { readonly type: 'ready'; readonly plugins: readonly { readonly name: string; readonly phase: string }[] }
  | { readonly type: 'failed'; readonly code: string | null; readonly message: string }
  | { readonly type: 'stats'; readonly stats: LivePipelineStats }

// The live pipeline in its own process, started by the sensor at a lower priority (plugins.nice): plugin work can
// take every idle cycle of the machine but never one the sensor needs, and nothing a plugin does can reach the
// sensor's memory or event loop. Logs go to the same stdout as the sensor's, one synchronous write per line.

const STATS_INTERVAL_MS = 5_000

function send(message: FromPipelineProcess): void {
  if (process.connected) process.send?.(message)
}

async function start(settings: PipelineSettings): Promise<void> {
  const log = pino({ level: settings.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }))
  if (settings.dbPath === null) throw new Error('the live pipeline needs a database')
  const store = PipelineStore.open(settings.dbPath, new Quarantine(settings.quarantineDir))
  // The sensor that started this process checkpoints the WAL (on its own worker thread, src/store/wal-checkpointer.ts).
  // Left on, SQLite would also checkpoint in this process's commits once the WAL passes 1,000 pages, at nice 19: a
  // checkpoint starved of CPU here would hold the checkpointer's lock and keep the sensor's from starting the WAL over.
  store.db.pragma('wal_autocheckpoint = 0')
  const host = new PluginHost(settings, log)
  await host.start()
  const live = new LivePipeline(store, host, { maxBacklog: settings.plugins.maxBacklog, pollIntervalMs: settings.plugins.pollIntervalMs, log })
  process.on('message', (message: ToPipelineProcess) => {
    if (message.type === 'stop') live.stop()
    else if (message.type === 'pause') live.pause()
    else if (message.type === 'resume') live.resume()
  })
  // The sensor gone (even by SIGKILL) closes the IPC channel: stop too rather than run on unsupervised.
  process.on('disconnect', () => live.stop())
  process.on('SIGTERM', () => live.stop())
  const stats = setInterval(() => send({ type: 'stats', stats: live.stats() }), STATS_INTERVAL_MS)
  send({ type: 'ready', plugins: host.plugins })
  log.info({ component: 'pipeline', plugins: host.plugins.map((p) => p.name) }, 'plugin pipeline started')
  try {
    await live.run()
  } finally {
    clearInterval(stats)
    send({ type: 'stats', stats: live.stats() })
    await host.close()
    store.close()
    log.info({ component: 'pipeline', ...live.stats() }, 'plugin pipeline stopped')
  }
}

// Ctrl-C in a terminal signals the whole process group, this process included: the sensor decides when the pipeline
// stops (an IPC 'stop' after its own drain), so SIGINT is not ours to act on. SIGTERM sent to this process alone still
// stops it, gracefully, like 'stop'.
process.on('SIGINT', () => undefined)

process.once('message', (message: ToPipelineProcess) => {
  if (message.type !== 'start') return
  start(message.settings).then(
    () => process.exit(0),
    (err: unknown) => {
      send({ type: 'failed', code: (err as { code?: string }).code ?? null, message: err instanceof Error ? err.message : String(err) })
      // Give the IPC message a moment to leave before exiting non-zero.
      setTimeout(() => process.exit(1), 100)
    },
  )
})
