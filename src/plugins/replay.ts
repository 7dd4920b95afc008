import type { Logger } from 'pino'
import type { Protocol } from '../attack/attack.js'
import { filterSql, type AttackFilter } from '../store/attack-filter.js'
import { Quarantine } from './download/quarantine.js'
import { PluginHost, type PluginHostStats } from './pipeline-host.js'
import type { PipelineSettings } from './pipeline-settings.js'
import { PipelineStore } from './pipeline-store.js'

/** Which stored attacks a replay takes. */
export interface ReplayFilter {
  readonly sinceMs?: number
  readonly untilMs?: number
  readonly protocol?: Protocol
  readonly dstPort?: number
  readonly ids?: readonly string[]
}

export interface ReplayProgress {
  readonly done: number
  readonly total: number
}

export interface ReplaySummary extends PluginHostStats {
  readonly attacks: number
  readonly total: number
  readonly interrupted: boolean
}

export interface ReplayOptions {
  readonly settings: PipelineSettings // its plugins.list holds exactly the plugins to run
  readonly filter: ReplayFilter
  readonly log: Logger
  readonly onProgress?: (progress: ReplayProgress) => void
  readonly signal?: AbortSignal // Ctrl-C: the attack in hand is cut short, its finished runs kept
}

const PAGE = 256

/**
 * Runs plugins over attacks already stored, oldest first, on a plugin worker like the live pipeline's. Resumable and
 * idempotent: a plugin that succeeded on a subject is skipped (so an interrupted replay run again picks up where it
 * stopped, and artifacts are never duplicated); failed, timed-out and crashed runs are tried again. The live
 * pipeline's cursor is not touched.
 */
export async function replayAttacks(options: ReplayOptions): Promise<ReplaySummary> {
  const { settings, filter } = options
  if (settings.dbPath === null) throw new Error('replay needs a database')
  const store = PipelineStore.open(settings.dbPath, new Quarantine(settings.quarantineDir))
  const host = new PluginHost(settings, options.log)
  const onAbort = (): void => host.abort()
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    await host.start()
    // The same filter as `attacks list`, plus a list of ids; the store has migrated the file, so every table exists.
    const selected = filterSql(toAttackFilter(filter), { hasPluginTables: true, hasTextIndex: true })
    const ids = filter.ids ?? []
    const where = [selected.where.replace(/^WHERE /, ''), ...(ids.length > 0 ? [`id IN (${ids.map(() => '?').join(', ')})`] : [])].filter((c) => c !== '')
    const params = [...selected.params, ...ids]
    const total = store.db.prepare<unknown[], { n: number }>(`SELECT count(*) AS n FROM attacks ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}`).get(...params)?.n ?? 0
    const only = settings.plugins.list.filter((e) => e.enabled).map((e) => e.name)
    const page = store.db.prepare<unknown[], { rowid: number; id: string }>(`SELECT rowid, id FROM attacks WHERE ${['rowid > ?', ...where].join(' AND ')} ORDER BY rowid LIMIT ${PAGE}`)
    let done = 0
    let cursor = 0
    options.onProgress?.({ done, total })
    for (;;) {
      const rows = page.all(cursor, ...params)
      if (rows.length === 0 || host.aborted) break
      for (const row of rows) {
        cursor = row.rowid
        const queued = store.attack(row.id)
        if (queued === null) continue // removed by retention since the page was read
        const results = await host.process(store.jobFor(queued.attack, { only, retry: true }))
        store.write(queued.attack.id, results, null)
        if (host.aborted) break
        done += 1
        options.onProgress?.({ done, total })
      }
      if (host.aborted) break
    }
    return { ...host.stats(), attacks: done, total, interrupted: host.aborted }
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    await host.close()
    store.close()
  }
}

function toAttackFilter(filter: ReplayFilter): AttackFilter {
  return {
    ...(filter.sinceMs !== undefined && { sinceMs: filter.sinceMs }),
    ...(filter.untilMs !== undefined && { untilMs: filter.untilMs }),
    ...(filter.protocol !== undefined && { protocol: filter.protocol }),
    ...(filter.dstPort !== undefined && { ports: { from: filter.dstPort, to: filter.dstPort } }),
  }
}
