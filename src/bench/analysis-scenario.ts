import { execFile } from 'node:child_process'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pino from 'pino'
import type { AttackFilter } from '../store/attack-filter.js'
import { listAttacks, openAttackDatabase } from '../store/attack-query.js'
import { attackStats } from '../store/attack-stats.js'
import { SqliteWriter } from '../store/sqlite-writer.js'
import { corpusBatches } from './attack-corpus.js'
import type { ScenarioContext } from './scenarios.js'

/**
 * (f) Offline analysis at scale: the sensor's own writer stores a generated month of attacks (1,000,000; 100,000 with
 * --quick) with the full-text index on, then the analyst's queries run on the file: `stats` over everything, a list
 * page by port and time range, full-text searches, and a 100,000-attack JSON-lines export through the real CLI.
 */

export interface QueryTiming {
  readonly label: string
  readonly medianMs: number
  readonly maxMs: number
  readonly matched: number // the total the query reported (rows selected)
}

export interface AnalysisFigures {
  readonly attacks: number
  readonly ingest: { readonly seconds: number; readonly attacksPerSecond: number; readonly batchSize: number }
  readonly dbBytes: number
  readonly stats: QueryTiming
  readonly listPage: QueryTiming
  readonly textSearches: readonly QueryTiming[]
  readonly export: { readonly attacks: number; readonly seconds: number; readonly bytes: number }
}

const DAY_MS = 86_400_000
const RUNS = 5 // each query's figure is the median of this many runs on a warm page cache
const BATCH = 250 // the store's default batchMaxAttacks: the writer is measured with the batches the sensor gives it
const CLI = fileURLToPath(new URL('../cli/cli.js', import.meta.url))

function timeQuery(label: string, run: () => number): QueryTiming {
  const times: number[] = []
  let matched = 0
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now()
    matched = run()
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return { label, medianMs: times[Math.floor(RUNS / 2)]!, maxMs: times[RUNS - 1]!, matched }
}

export async function analysisScenario(ctx: ScenarioContext): Promise<AnalysisFigures> {
  const count = ctx.quick ? 100_000 : 1_000_000
  const dbPath = join(ctx.dir, 'analysis.db')
  const endMs = Date.UTC(2026, 10, 1)
  const spanMs = 30 * DAY_MS
  ctx.progress(`analysis: storing ${count.toLocaleString('en-US')} generated attacks through the sensor's writer`)
  // Checkpoints in the writer's own commits, as before the checkpoint worker: the figure keeps counting all of the
  // writer's work. (The sensor runs them on a worker thread, which takes them off its event loop, not off the machine.)
  const writer = SqliteWriter.open(dbPath, { busyTimeoutMs: 5_000, log: pino({ level: 'warn' }), checkpointInWorker: false })
  let writeMs = 0
  let written = 0
  try {
    for (const batch of corpusBatches({ count, endMs, spanMs }, BATCH)) {
      const started = performance.now()
      const result = writer.write(batch, true)
      writeMs += performance.now() - started
      written += result.written
    }
  } finally {
    await writer.close()
  }
  if (written !== count) throw new Error(`the writer stored ${written} of ${count} attacks`)
  const dbBytes = statSync(dbPath).size

  ctx.progress('analysis: queries')
  const db = openAttackDatabase(dbPath)
  let stats: QueryTiming
  let listPage: QueryTiming
  const textSearches: QueryTiming[] = []
  try {
    stats = timeQuery('stats over all attacks', () => attackStats(db, {}, { top: 10 }).total)
    // A week in the middle of the month, one port: the page an analyst asks for first.
    const week: AttackFilter = { ports: { from: 445, to: 445 }, sinceMs: endMs - 14 * DAY_MS, untilMs: endMs - 7 * DAY_MS }
    listPage = timeQuery('list page: --port 445, one week, 50 rows + total', () => listAttacks(db, { limit: 50, filter: week }).total)
    // A word in a tenth of the attacks, a phrase, and a rare word: the index answers all three.
    for (const [label, text] of [
      ['full-text "busybox" (common)', '"busybox"'],
      ['full-text phrase "chmod 777"', '"chmod 777"'],
      ['full-text "ViewLog" (absent)', '"ViewLog"'],
    ] as const) {
      textSearches.push(timeQuery(`${label}, 50 rows + total`, () => listAttacks(db, { limit: 50, filter: { text } }).total))
    }
  } finally {
    db.close()
  }

  // 100,000 attacks (a tenth of the month: three days) through the CLI, as an analyst runs it.
  const exportPath = join(ctx.dir, 'analysis-export.jsonl')
  const exportDays = ctx.quick ? 30 : 3
  const since = new Date(endMs - exportDays * DAY_MS).toISOString()
  const until = new Date(endMs).toISOString()
  ctx.progress(`analysis: attacks export --format jsonl --since ${since} --until ${until}`)
  const started = performance.now()
  await promisify(execFile)(process.execPath, [CLI, 'attacks', 'export', '--db', dbPath, '--format', 'jsonl', '--since', since, '--until', until, '--output', exportPath], { maxBuffer: 1 << 20 })
  const exportSeconds = (performance.now() - started) / 1_000
  const { stdout } = await promisify(execFile)('wc', ['-l', exportPath])
  return {
    attacks: count,
    ingest: { seconds: writeMs / 1_000, attacksPerSecond: count / (writeMs / 1_000), batchSize: BATCH },
    dbBytes,
    stats,
    listPage,
    textSearches,
    export: { attacks: Number.parseInt(stdout, 10), seconds: exportSeconds, bytes: statSync(exportPath).size },
  }
}
