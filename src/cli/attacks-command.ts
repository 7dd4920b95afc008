import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { loadConfig } from '../config/load-config.js'
import { iterateAttacks, listAttacks, openAttackDatabase } from '../store/attack-query.js'
import { attackStats } from '../store/attack-stats.js'
import { toExportRecord } from '../store/export-record.js'
import { pluginResultsReader } from '../store/plugin-results.js'
import { formatAttackTable } from './attack-table.js'
import { FILTER_FLAGS, parseFilterFlags } from './filter-flags.js'
import { formatAttackStats } from './stats-format.js'
import { intFlag, parseFlags, usageError } from './usage.js'

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
    })
    if (values.format !== 'jsonl') throw usageError(`--format "${values.format}" is not supported yet; expected jsonl`)
    const path = dbPath(values.db, values.config)
    const db = openAttackDatabase(path)
    // A second connection for the plugin results: better-sqlite3 runs nothing else on a connection while it iterates.
    const side = openAttackDatabase(path)
    const out = values.output !== undefined ? createWriteStream(values.output, { mode: 0o600 }) : process.stdout
    try {
      const resultsOf = pluginResultsReader(side)
      for (const row of iterateAttacks(db)) {
        // Respect back-pressure so a large export streams in constant memory.
        if (!out.write(`${JSON.stringify(toExportRecord(row, resultsOf(row.id)))}\n`)) await once(out, 'drain')
      }
    } finally {
      db.close()
      side.close()
      if (out !== process.stdout) {
        out.end()
        await once(out, 'finish')
      }
    }
    return 0
  }
  throw usageError(`attacks: expected list, stats or export, got "${action ?? ''}"`)
}
