import type Database from 'better-sqlite3'
import type { Protocol, ResponderMode } from '../attack/attack.js'
import { HoneytrapError } from '../core/errors.js'
import { cidrContains, formatIpAddress, parseCidr, parseIpAddress, type CidrRange } from '../config/cidr.js'

/**
 * Which stored attacks a command looks at. Every field narrows the selection; together they combine with AND. The CLI
 * builds one from its flags (src/cli/filter-flags.ts) and checks every value there, so what reaches SQL is typed.
 */
export interface AttackFilter {
  readonly sinceMs?: number // started at or after (ms since epoch)
  readonly untilMs?: number // started before
  readonly source?: CidrRange // attacker address or range
  readonly ports?: { readonly from: number; readonly to: number } // attacked port range, inclusive
  readonly protocol?: Protocol
  readonly mode?: ResponderMode
  readonly closeReason?: string
  readonly minBytes?: number // bytes_received at least
  readonly hasDownloads?: boolean // at least one download that got a sample (ok or cached); false: none that did
  readonly payloadHash?: string // lowercase hex md5 (32), sha256 (64) or sha512 (128) of the attack string
  readonly contains?: Buffer // the attack string holds these bytes
  readonly regex?: RegExp // matched against the attack string read as latin1 (one character per byte)
  readonly text?: string // an FTS5 query over the printable text of the attack string (attack_text, schema 5)
}

/** What a database offers the filter: tables added by later migrations. */
export interface FilterCapabilities {
  readonly hasPluginTables: boolean // downloads and the other plugin tables (schema 3)
  readonly hasTextIndex: boolean // attack_text (schema 5)
}

/** A WHERE clause over `attacks` (no alias) and its positional parameters. */
export interface FilterSql {
  readonly where: string // '' when the filter is empty, else 'WHERE ...'
  readonly params: readonly (string | number | Buffer)[]
}

// SQL functions the filter needs beyond SQLite's own: registered per connection by registerFilterFunctions.
const IN_RANGE_FN = 'ht_in_range'
const REGEXP_FN = 'ht_regexp'
// Compiled ranges and expressions, by their text: a query calls the function once per row with the same text.
const MAX_CACHED = 32
const rangeCache = new Map<string, CidrRange | null>()
const regexCache = new Map<string, RegExp | null>()

function cached<T>(cache: Map<string, T>, key: string, make: () => T): T {
  let value = cache.get(key)
  if (value === undefined) {
    if (cache.size >= MAX_CACHED) cache.clear()
    value = make()
    cache.set(key, value)
  }
  return value
}

/**
 * Registers the functions a filter may call on `db`: `ht_in_range(address, cidr)` and `ht_regexp(source, flags,
 * payload)`. Deterministic and side-effect free. The range and the expression come from the analyst's flags, never
 * from attack data; the payload is only ever the subject of the match.
 */
export function registerFilterFunctions(db: Database.Database): void {
  db.function(IN_RANGE_FN, { deterministic: true }, (address: unknown, cidr: unknown) => {
    if (typeof address !== 'string' || typeof cidr !== 'string') return 0
    const range = cached(rangeCache, cidr, () => {
      const parsed = parseCidr(cidr)
      return parsed.ok ? parsed.range : null
    })
    const ip = parseIpAddress(address)
    return range !== null && ip !== null && cidrContains(range, ip) ? 1 : 0
  })
  db.function(REGEXP_FN, { deterministic: true }, (source: unknown, flags: unknown, payload: unknown) => {
    if (typeof source !== 'string' || typeof flags !== 'string' || !Buffer.isBuffer(payload)) return 0
    const regex = cached(regexCache, `${flags}/${source}`, () => {
      try {
        return new RegExp(source, flags.replace(/[gy]/g, ''))
      } catch {
        return null
      }
    })
    return regex !== null && regex.test(payload.toString('latin1')) ? 1 : 0
  })
}

/** The tables of `db` that filters may use. */
export function filterCapabilities(db: Database.Database): FilterCapabilities {
  const has = (name: string): boolean => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined
  return { hasPluginTables: has('downloads'), hasTextIndex: has('attack_text') }
}

/**
 * The filter as SQL. Hashes are matched on their own column by length; the plugin tables are used only if present.
 * A full-text filter on a database without the index fails (HT_ERR_CLI_USAGE) rather than match nothing silently.
 */
export function filterSql(filter: AttackFilter, options: FilterCapabilities & { readonly table?: string }): FilterSql {
  // Columns are qualified (attacks, or the alias of a query that joins responses, whose sha256 would be ambiguous).
  const t = options.table ?? 'attacks'
  const where: string[] = []
  const params: (string | number | Buffer)[] = []
  const add = (clause: string, ...values: (string | number | Buffer)[]): void => {
    where.push(clause)
    params.push(...values)
  }
  if (filter.sinceMs !== undefined) add(`${t}.started_at >= ?`, filter.sinceMs)
  if (filter.untilMs !== undefined) add(`${t}.started_at < ?`, filter.untilMs)
  if (filter.protocol !== undefined) add(`${t}.protocol = ?`, filter.protocol)
  if (filter.ports !== undefined) {
    if (filter.ports.from === filter.ports.to) add(`${t}.dst_port = ?`, filter.ports.from)
    else add(`${t}.dst_port BETWEEN ? AND ?`, filter.ports.from, filter.ports.to)
  }
  if (filter.mode !== undefined) add(`${t}.mode = ?`, filter.mode)
  if (filter.closeReason !== undefined) add(`${t}.close_reason = ?`, filter.closeReason)
  if (filter.minBytes !== undefined) add(`${t}.bytes_received >= ?`, filter.minBytes)
  if (filter.payloadHash !== undefined) {
    const column = filter.payloadHash.length === 32 ? 'md5' : filter.payloadHash.length === 64 ? 'sha256' : 'sha512'
    add(`${t}.${column} = ?`, filter.payloadHash)
  }
  if (filter.source !== undefined) {
    const single = (filter.source.family === 4 && filter.source.prefix === 32) || (filter.source.family === 6 && filter.source.prefix === 128)
    // One address: an equality the src_ip index serves. A range: the function, row by row.
    if (single) add(`${t}.src_ip = ?`, formatIpAddress({ family: filter.source.family, bytes: filter.source.network }))
    else add(`${IN_RANGE_FN}(${t}.src_ip, ?) = 1`, filter.source.text)
  }
  if (filter.contains !== undefined) add(`instr(${t}.payload, ?) > 0`, filter.contains)
  if (filter.regex !== undefined) add(`${REGEXP_FN}(?, ?, ${t}.payload) = 1`, filter.regex.source, filter.regex.flags)
  if (filter.text !== undefined) {
    if (!options.hasTextIndex) {
      throw new HoneytrapError(
        'HT_ERR_CLI_USAGE',
        'full-text search (--text, --match) needs the index that schema 5 adds, and this database is older: start the sensor on it once ' +
          '(honeytrap-ts run migrates at start), or search with --contains or --regex',
      )
    }
    // The index answers with rowids; the planner runs the MATCH once and probes the set row by row.
    add(`${t}.rowid IN (SELECT rowid FROM attack_text WHERE attack_text MATCH ?)`, filter.text)
  }
  if (filter.hasDownloads !== undefined) {
    if (!options.hasPluginTables) {
      if (filter.hasDownloads) add('0') // nothing downloaded before schema 3
    } else {
      add(`${filter.hasDownloads ? '' : 'NOT '}EXISTS (SELECT 1 FROM downloads d WHERE d.attack_id = ${t}.id AND d.outcome IN ('ok', 'cached'))`)
    }
  }
  return { where: where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`, params }
}
