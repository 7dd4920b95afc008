import { parseCidr } from '../config/cidr.js'
import { checkFtsQuery } from '../store/fts-query.js'
import { parsePortSpec } from '../config/port-spec.js'
import { RESPONDER_MODES } from '../config/schema.js'
import type { AttackFilter } from '../store/attack-filter.js'
import { durationFlag, intFlag, usageError } from './usage.js'

/** The filter flags every `attacks` subcommand takes, for node:util parseArgs. */
export const FILTER_FLAGS = {
  since: { type: 'string' },
  until: { type: 'string' },
  source: { type: 'string' },
  port: { type: 'string' },
  protocol: { type: 'string' },
  mode: { type: 'string' },
  'close-reason': { type: 'string' },
  'min-size': { type: 'string' },
  'has-downloads': { type: 'boolean' },
  'no-downloads': { type: 'boolean' },
  hash: { type: 'string' },
  contains: { type: 'string' },
  regex: { type: 'string' },
  text: { type: 'string' },
  match: { type: 'string' },
} as const

export type FilterFlagValues = { readonly [K in keyof typeof FILTER_FLAGS]?: (typeof FILTER_FLAGS)[K]['type'] extends 'boolean' ? boolean : string }

// Bounds on what an analyst's flag may hold: a filter is not a place for megabytes.
const MAX_CONTAINS_BYTES = 4_096
const MAX_REGEX_CHARS = 1_024
const MAX_TEXT_CHARS = 1_024
const CLOSE_REASON = /^[a-z][a-z-]{1,31}$/

/**
 * Checks every filter flag and builds the filter; a bad value fails with exit 2 naming the flag and what it expects,
 * before any database is opened. `nowMs` anchors relative times (--since 24h).
 */
export function parseFilterFlags(values: FilterFlagValues, nowMs: number = Date.now()): AttackFilter {
  const filter: { -readonly [K in keyof AttackFilter]: AttackFilter[K] } = {}
  const since = timeFlag('since', values.since, nowMs)
  const until = timeFlag('until', values.until, nowMs)
  if (since !== undefined) filter.sinceMs = since
  if (until !== undefined) filter.untilMs = until
  if (since !== undefined && until !== undefined && since >= until) throw usageError(`--since (${new Date(since).toISOString()}) must be before --until (${new Date(until).toISOString()})`)
  if (values.source !== undefined) {
    const parsed = parseCidr(values.source)
    if (!parsed.ok) throw usageError(`--source "${printable(values.source)}" is not an address or range: ${parsed.error}`)
    filter.source = parsed.range
  }
  if (values.port !== undefined) filter.ports = portRange(values.port)
  if (values.protocol !== undefined) {
    if (values.protocol !== 'tcp' && values.protocol !== 'udp') throw usageError(`--protocol "${printable(values.protocol)}" is not valid; expected tcp or udp`)
    filter.protocol = values.protocol
  }
  if (values.mode !== undefined) {
    const mode = RESPONDER_MODES.find((m) => m === values.mode)
    if (mode === undefined) throw usageError(`--mode "${printable(values.mode)}" is not valid; expected ${RESPONDER_MODES.join(', ')}`)
    filter.mode = mode
  }
  if (values['close-reason'] !== undefined) {
    if (!CLOSE_REASON.test(values['close-reason'])) throw usageError(`--close-reason "${printable(values['close-reason'])}" is not a close reason (e.g. peer-closed, idle-timeout, size-limit)`)
    filter.closeReason = values['close-reason']
  }
  const minSize = intFlag('min-size', values['min-size'], 0, Number.MAX_SAFE_INTEGER)
  if (minSize !== undefined) filter.minBytes = minSize
  if (values['has-downloads'] === true && values['no-downloads'] === true) throw usageError('--has-downloads and --no-downloads exclude each other; give one')
  if (values['has-downloads'] === true) filter.hasDownloads = true
  if (values['no-downloads'] === true) filter.hasDownloads = false
  if (values.hash !== undefined) {
    const hash = values.hash.toLowerCase()
    if (!/^(?:[0-9a-f]{32}|[0-9a-f]{64}|[0-9a-f]{128})$/.test(hash)) throw usageError(`--hash "${printable(values.hash)}" is not an md5, sha256 or sha512 in hex`)
    filter.payloadHash = hash
  }
  if (values.contains !== undefined) filter.contains = unescapeBytes('contains', values.contains)
  if (values.regex !== undefined) filter.regex = regexFlag(values.regex)
  const text = [textFlag(values.text), matchFlag(values.match)].filter((q) => q !== undefined)
  if (text.length > 0) filter.text = text.length === 1 ? text[0]! : text.map((q) => `(${q})`).join(' AND ')
  return filter
}

/** --since/--until: a duration before now (90s, 24h, 7d) or an absolute time (2026-11-20, 2026-11-20T10:00:00Z). */
function timeFlag(flag: string, value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined
  if (/^\d+(?:ms|s|m|h|d)$/.test(value)) return nowMs - (durationFlag(flag, value) ?? 0)
  // Dates without a zone are UTC: the database and every listing speak UTC.
  if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})?)?$/.test(value)) {
    const iso = value.replace(' ', 'T')
    const ms = Date.parse(/T/.test(iso) && !/(?:Z|[+-]\d{2}:\d{2})$/.test(iso) ? `${iso}Z` : iso)
    if (Number.isFinite(ms)) return ms
  }
  throw usageError(`--${flag} "${printable(value)}" is neither a duration (90s, 15m, 24h, 7d) nor a time (2026-11-20 or 2026-11-20T10:00:00Z)`)
}

function portRange(value: string): { from: number; to: number } {
  const parsed = parsePortSpec(value)
  if (!parsed.ok || parsed.ranges.length !== 1 || value.includes('/')) throw usageError(`--port "${printable(value)}" is not a port or a range; expected e.g. 445 or 8000-8100 (use --protocol for the protocol)`)
  const range = parsed.ranges[0]!
  return { from: range.from, to: range.to }
}

/** Text with \xHH escapes (and \\ for a backslash) as bytes: the way attack strings are written in reports. */
function unescapeBytes(flag: string, value: string): Buffer {
  const bytes: number[] = []
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (value[i] === '\\') {
      const next = value[i + 1]
      if (next === '\\') {
        bytes.push(0x5c)
        i += 1
        continue
      }
      const hex = /^x([0-9a-fA-F]{2})/.exec(value.slice(i + 1, i + 4))
      if (hex === null) throw usageError(`--${flag}: "\\${printable(next ?? '')}" at character ${i + 1} is not an escape; use \\xHH for a byte or \\\\ for a backslash`)
      bytes.push(Number.parseInt(hex[1]!, 16))
      i += 3
    } else if (c > 0xff) {
      bytes.push(...Buffer.from(value[i]!, 'utf8'))
    } else bytes.push(c)
  }
  if (bytes.length === 0 || bytes.length > MAX_CONTAINS_BYTES) throw usageError(`--${flag} must give 1 to ${MAX_CONTAINS_BYTES} bytes`)
  return Buffer.from(bytes)
}

/** --regex PATTERN or /PATTERN/FLAGS (flags i, m, s), matched against the attack string read one character per byte. */
function regexFlag(value: string): RegExp {
  if (value.length === 0 || value.length > MAX_REGEX_CHARS) throw usageError(`--regex must be 1 to ${MAX_REGEX_CHARS} characters`)
  const slashed = /^\/(.*)\/([ims]*)$/s.exec(value)
  try {
    return slashed === null ? new RegExp(value) : new RegExp(slashed[1]!, slashed[2])
  } catch (err) {
    throw usageError(`--regex "${printable(value)}" is not a valid regular expression: ${(err as Error).message}`)
  }
}

/**
 * --text WORDS: every word must appear in the printable text; a word with punctuation is a phrase of its parts
 * ("/bin/busybox" finds bin followed by busybox). Each word becomes an FTS5 string, so no character of it is syntax.
 */
function textFlag(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (value.length > MAX_TEXT_CHARS) throw usageError(`--text must be at most ${MAX_TEXT_CHARS} characters`)
  const words = value.split(/\s+/).filter((w) => w !== '')
  if (words.length === 0) throw usageError('--text needs at least one word')
  for (const word of words) {
    if (!/[\p{L}\p{N}]/u.test(word)) throw usageError(`--text: "${printable(word)}" has no letter or digit; the index holds words, so search such bytes with --contains`)
  }
  return words.map((w) => `"${w.replaceAll('"', '""')}"`).join(' ')
}

/** --match QUERY: FTS5 query syntax (AND, OR, NOT, "phrases", prefix*, NEAR(a b, 5)), checked here against SQLite. */
function matchFlag(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (value.trim() === '' || value.length > MAX_TEXT_CHARS) throw usageError(`--match must be 1 to ${MAX_TEXT_CHARS} characters`)
  const problem = checkFtsQuery(value)
  if (problem !== null) throw usageError(`--match "${printable(value)}" is not a valid full-text query (${problem}); see docs/cli.md, or use --text for plain words`)
  return value
}

/** A flag's value quoted back in an error, without control characters and cut short. */
function printable(value: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\x00-\x1f\x7f-\x9f]/g, '?')
  return clean.length > 80 ? `${clean.slice(0, 79)}…` : clean
}
