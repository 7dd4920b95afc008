import { once } from 'node:events'
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Writable } from 'node:stream'
import type { AttackRow } from './attack-query.js'

/** The columns of `attacks export --format csv`: the row's metadata and digests, never its bytes. */
export const CSV_COLUMNS = [
  'id', 'protocol', 'family', 'mode', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'started_at', 'ended_at', 'close_reason',
  'bytes_received', 'bytes_sent', 'truncated', 'payload_size', 'md5', 'sha256', 'sha512', 'response_size',
  'response_truncated', 'response_sha256', 'relay_target', 'relay_outcome', 'fallback_reason',
] as const

/** One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break. */
function csvField(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** The CSV lines of `rows`, header first; times as RFC 3339 UTC. Only metadata: no cell holds attacker bytes. */
export function* csvLines(rows: Iterable<AttackRow>): Generator<string> {
  yield `${CSV_COLUMNS.join(',')}\r\n`
  for (const row of rows) {
    yield `${CSV_COLUMNS.map((c) => csvField(c === 'started_at' || c === 'ended_at' ? new Date(row[c]).toISOString() : row[c])).join(',')}\r\n`
  }
}

/** Each row through `fn`, lazily. */
export function* mapRows<T>(rows: Iterable<AttackRow>, fn: (row: AttackRow) => T): Generator<T> {
  for (const row of rows) yield fn(row)
}

/** JSON-lines records as one JSON array, streamed: `[`, the records joined by commas, `]`. */
export function* jsonArray(records: Iterable<string>): Generator<string> {
  let first = true
  yield '['
  for (const record of records) {
    yield `${first ? '' : ','}\n${record}`
    first = false
  }
  yield '\n]\n'
}

// Lines are joined into chunks of about this many characters before they are written: one write per line costs a
// stream round trip each, a third of a 100,000-attack export's time.
const WRITE_CHUNK_CHARS = 256 * 1024

/** Writes the lines (each gets a newline unless it has one, or `newline: false`), waiting for 'drain': bounded memory. */
export async function writeLines(out: Writable, lines: Iterable<string>, options: { readonly newline?: boolean } = {}): Promise<void> {
  let chunk: string[] = []
  let chars = 0
  const flush = async (): Promise<void> => {
    const text = chunk.join('')
    chunk = []
    chars = 0
    if (!out.write(text)) await once(out, 'drain')
  }
  for (const line of lines) {
    const text = options.newline === false || line.endsWith('\n') ? line : `${line}\n`
    chunk.push(text)
    chars += text.length
    if (chars >= WRITE_CHUNK_CHARS) await flush()
  }
  if (chunk.length > 0) await flush()
}

/**
 * `--format raw`: each attack string to `<dir>/<id>.bin` (mode 0600, the directory 0700). Ids are ULIDs from the
 * store, checked again here: a hand-edited database must not name a path. Existing files are replaced.
 */
export function exportRawAttacks(rows: Iterable<AttackRow>, dir: string): number {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  let written = 0
  for (const row of rows) {
    if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(row.id)) continue
    const fd = openSync(join(dir, `${row.id}.bin`), 'w', 0o600)
    try {
      for (let offset = 0; offset < row.payload.length; ) offset += writeSync(fd, row.payload, offset)
    } finally {
      closeSync(fd)
    }
    written += 1
  }
  return written
}
