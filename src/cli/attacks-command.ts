import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { loadConfig } from '../config/load-config.js'
import { HoneytrapError } from '../core/errors.js'
import { countAttacks, iterateAttacks, listAttacks, openAttackDatabase } from '../store/attack-query.js'
import { attackStats } from '../store/attack-stats.js'
import { toExportRecord } from '../store/export-record.js'
import { csvLines, exportRawAttacks, jsonArray, mapRows, writeLines } from '../store/export-formats.js'
import { writePcap } from '../store/pcap-export.js'
import { pluginResultsReader } from '../store/plugin-results.js'
import { formatAttackTable } from './attack-table.js'
import { formatAttackDetail, loadAttackDetail } from './attack-show.js'
import { FILTER_FLAGS, parseFilterFlags } from './filter-flags.js'
import { createProgressBar, NO_PROGRESS, withProgress } from './progress-bar.js'
import { formatAttackStats } from './stats-format.js'
import { intFlag, parseFlags, usageError } from './usage.js'

/** What `attacks export --format` takes. */
const EXPORT_FORMATS = ['jsonl', 'json', 'csv', 'pcap', 'raw'] as const

function dbPath(flag: string | undefined, configPath: string | undefined): string {
  return flag ?? loadConfig(configPath).store.path
}

/** `honeytrap-ts attacks list|export`: read-only views of the store. Resolves with the exit code. */
export async function runAttacksCommand(args: readonly string[]): Promise<number> {
  const [action, ...rest] = args
  if (action === 'list') {
    const { values } = parseFlags('attacks list', rest, {
      db: { type: 'string' },
      config: { type: 'string' },
      limit: { type: 'string' },
      offset: { type: 'string' },
      json: { type: 'boolean' },
      ...FILTER_FLAGS,
    })
    // Every flag is checked before the database is touched, so a typo never reads as a store problem.
    const filter = parseFilterFlags(values)
    const limit = intFlag('limit', values.limit, 1, 100_000) ?? 50
    const offset = intFlag('offset', values.offset, 0, Number.MAX_SAFE_INTEGER) ?? 0
    const db = openAttackDatabase(dbPath(values.db, values.config))
    try {
      const page = listAttacks(db, { limit, offset, filter })
      if (values.json === true) {
        process.stdout.write(`${JSON.stringify({ total: page.total, attacks: page.attacks })}\n`)
      } else {
        process.stdout.write(`${formatAttackTable(page.attacks, { color: process.stdout.isTTY })}\n`)
        process.stdout.write(`${page.attacks.length} shown of ${page.total}\n`)
      }
    } finally {
      db.close()
    }
    return 0
  }
  if (action === 'show') {
    const { values, positionals } = parseFlags('attacks show', rest, { db: { type: 'string' }, config: { type: 'string' }, 'max-bytes': { type: 'string' }, json: { type: 'boolean' } }, true)
    const [id, ...extra] = positionals
    if (id === undefined || extra.length > 0 || !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) {
      throw usageError(`attacks show takes one attack id (26 characters, as attacks list shows), got ${positionals.length === 0 ? 'none' : `"${positionals.join(' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 80)}"`}`)
    }
    const maxBytes = intFlag('max-bytes', values['max-bytes'], 16, 16 * 1024 * 1024) ?? 4_096
    const path = dbPath(values.db, values.config)
    const db = openAttackDatabase(path)
    try {
      const detail = loadAttackDetail(db, id)
      if (detail === undefined) throw new HoneytrapError('HT_ERR_NOT_FOUND', `no attack ${id} in ${path}`)
      process.stdout.write(values.json === true ? `${JSON.stringify(toExportRecord(detail.row, detail.plugins))}\n` : `${formatAttackDetail(detail, { color: process.stdout.isTTY, maxBytesPerChunk: maxBytes })}\n`)
    } finally {
      db.close()
    }
    return 0
  }
  if (action === 'stats') {
    const { values } = parseFlags('attacks stats', rest, { db: { type: 'string' }, config: { type: 'string' }, top: { type: 'string' }, json: { type: 'boolean' }, ...FILTER_FLAGS })
    const filter = parseFilterFlags(values)
    const top = intFlag('top', values.top, 1, 1_000) ?? 10
    const db = openAttackDatabase(dbPath(values.db, values.config))
    try {
      const stats = attackStats(db, filter, { top })
      process.stdout.write(values.json === true ? `${JSON.stringify(stats)}\n` : `${formatAttackStats(stats, { color: process.stdout.isTTY })}\n`)
    } finally {
      db.close()
    }
    return 0
  }
  if (action === 'export') {
    const { values } = parseFlags('attacks export', rest, {
      db: { type: 'string' },
      config: { type: 'string' },
      format: { type: 'string', default: 'jsonl' },
      output: { type: 'string' },
      ...FILTER_FLAGS,
    })
    const format = EXPORT_FORMATS.find((f) => f === values.format)
    if (format === undefined) throw usageError(`--format "${String(values.format).replace(/[^\x20-\x7e]/g, '?').slice(0, 40)}" is not valid; expected ${EXPORT_FORMATS.join(', ')}`)
    const filter = parseFilterFlags(values)
    if (format === 'raw' && values.output === undefined) throw usageError('--format raw writes one file per attack: give the directory with --output DIR')
    // Packet captures and raw attack strings are attacker bytes: never onto a terminal.
    if ((format === 'pcap' || format === 'raw') && values.output === undefined && process.stdout.isTTY) {
      throw usageError(`--format ${format} writes attacker bytes: redirect stdout to a file or give --output`)
    }
    const path = dbPath(values.db, values.config)
    const db = openAttackDatabase(path)
    const bar = createProgressBar('attacks')
    try {
      // The total costs a count first, so only when someone is watching the bar (a terminal on stderr).
      const total = bar === NO_PROGRESS ? 0 : countAttacks(db, filter)
      const rows = withProgress(iterateAttacks(db, filter), (done) => bar.update(done, total))
      if (format === 'raw') {
        const written = exportRawAttacks(rows, values.output!)
        process.stderr.write(`${written} attack strings written to ${values.output}\n`)
        return 0
      }
      // A second connection for the plugin results: better-sqlite3 runs nothing else on a connection while it iterates.
      const side = format === 'jsonl' || format === 'json' ? openAttackDatabase(path) : null
      const out = values.output !== undefined ? createWriteStream(values.output, { mode: 0o600 }) : process.stdout
      try {
        if (format === 'pcap') await writePcap(rows, out)
        else if (format === 'csv') await writeLines(out, csvLines(rows))
        else {
          const resultsOf = pluginResultsReader(side!)
          const records = mapRows(rows, (row) => JSON.stringify(toExportRecord(row, resultsOf(row.id))))
          if (format === 'jsonl') await writeLines(out, records)
          else await writeLines(out, jsonArray(records), { newline: false })
        }
      } finally {
        side?.close()
        if (out !== process.stdout) {
          out.end()
          await once(out, 'finish')
        }
      }
    } finally {
      bar.end()
      db.close()
    }
    return 0
  }
  throw usageError(`attacks: expected list, show, stats or export, got "${action ?? ''}"`)
}
