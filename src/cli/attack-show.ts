import type Database from 'better-sqlite3'
import { formatEndpoint } from '../core/format-endpoint.js'
import type { AttackRow } from '../store/attack-query.js'
import { getAttackSamples, type SampleRow } from '../store/attack-detail.js'
import { getAttackRow } from '../store/attack-query.js'
import { parseStoredTranscript } from '../store/export-record.js'
import { pluginResultsReader, type PluginResults } from '../store/plugin-results.js'
import { decodeSynFacts } from '../store/syn-facts-column.js'
import { escapeForTerminal, hexdump, isMostlyText } from './terminal-text.js'

/**
 * `honeytrap-ts attacks show ID`: one stored attack as an analyst reads it, the exchange as a dialogue. Every value
 * read from the database goes through escapeForTerminal or hexdump, metadata included: a hand-edited or hostile file
 * may hold anything in any column. Colour codes come only from the constants here, never from data.
 */

/** Everything stored about one attack. */
export interface AttackDetail {
  readonly row: AttackRow
  readonly plugins: PluginResults
  readonly samples: readonly SampleRow[] // the downloaded files its downloads led to
}

export interface FormatAttackDetailOptions {
  readonly color: boolean // ANSI colours for headings and direction markers
  readonly maxBytesPerChunk: number // bytes shown of each chunk (and decoded payload); the rest is counted
}

const INDENT = '    ' // chunk bodies are indented, so no data line can pass for a `>>>` header
const MAX_INFO_CHARS = 2_000 // of an artifact's info JSON (up to 64 KiB); --json has all of it
const LABEL_WIDTH = 10

interface Style {
  readonly heading: (text: string) => string
  readonly inbound: (text: string) => string
  readonly outbound: (text: string) => string
}

function ansi(code: string): (text: string) => string {
  return (text) => `\u001b[${code}m${text}\u001b[0m`
}

const PLAIN: Style = { heading: (t) => t, inbound: (t) => t, outbound: (t) => t }
const COLORED: Style = { heading: ansi('1'), inbound: ansi('1;31'), outbound: ansi('1;36') }

/** The attack `id` with its response, transcript, plugin results and samples, or undefined when there is none. */
export function loadAttackDetail(db: Database.Database, id: string): AttackDetail | undefined {
  const row = getAttackRow(db, id)
  if (row === undefined) return undefined
  return { row, plugins: pluginResultsReader(db)(id), samples: getAttackSamples(db, id) }
}

/** Any stored value as one escaped line. */
function s(value: unknown): string {
  return escapeForTerminal(String(value))
}

/** A BLOB column as bytes: a hand-edited cell may hold text instead. */
function bytesOf(value: unknown): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(String(value ?? ''))
}

function utc(ms: unknown): string {
  const date = new Date(typeof ms === 'number' ? ms : Number.NaN)
  return Number.isNaN(date.getTime()) ? `invalid time ${s(ms)}` : date.toISOString().replace('T', ' ').slice(0, 23)
}

function duration(ms: number): string {
  if (!Number.isFinite(ms)) return 'unknown'
  return Math.abs(ms) < 1_000 ? `${ms} ms` : `${(ms / 1_000).toFixed(3)} s`
}

function field(label: string, value: string): string {
  return `  ${label.padEnd(LABEL_WIDTH)}${value}`
}

function marker(direction: 'in' | 'out', style: Style): string {
  return direction === 'in' ? style.inbound('>>> in ') : style.outbound('<<< out')
}

/**
 * Appends a body to `out`: escaped text when it is mostly printable, else a hexdump; indented, cut at maxBytes with a
 * count. Appended line by line: a body may have more lines than a spread `push(...lines)` can take as arguments.
 */
function pushBody(out: string[], bytes: Buffer, maxBytes: number, indent = INDENT): void {
  if (bytes.length === 0) return
  const shown = bytes.subarray(0, Math.max(0, maxBytes))
  const text = isMostlyText(shown)
  const lines = text ? escapeForTerminal(shown, { keepNewlines: true }).split('\n') : hexdump(bytes, { maxBytes }).split('\n')
  // Every line break stands after a visible \n, so dropping the empty line after a final one loses nothing.
  if (text && lines.at(-1) === '') lines.pop()
  if (text && bytes.length > shown.length) lines.push(`… ${bytes.length - shown.length} more bytes`)
  for (const line of lines) out.push(indent + line)
}

function header(row: AttackRow, style: Style): string[] {
  const relay =
    row.relay_target === null ? '-' : `${s(row.relay_target)}, ${s(row.relay_outcome)}${row.fallback_reason === null ? '' : ` (${s(row.fallback_reason)})`}`
  const kept = (size: unknown, truncated: unknown): string =>
    truncated === 1 ? `${s(size)} kept (truncated: the rest was not kept)` : `${s(size)} kept`
  const out =
    row.response_sha256 === null
      ? `${s(row.bytes_sent)} bytes sent, none recorded (written before schema 2)`
      : `${s(row.bytes_sent)} bytes sent, ${kept(row.response_size, row.response_truncated)}`
  return [
    style.heading(`attack ${s(row.id)}`),
    field('time', `${utc(row.started_at)} -> ${utc(row.ended_at)} UTC (${duration(row.ended_at - row.started_at)})`),
    field('protocol', `${s(row.protocol)}, IPv${s(row.family)}`),
    field('source', `${s(formatEndpoint(String(row.src_ip), row.src_port))} -> ${s(formatEndpoint(String(row.dst_ip), row.dst_port))}`),
    field('mode', s(row.mode)),
    field('relay', relay),
    field('closed', s(row.close_reason)),
    field('opening', openingPacket(row)),
    field('in', `${s(row.bytes_received)} bytes received, ${kept(row.payload_size, row.truncated)}`),
    field('out', out),
    field('md5', s(row.md5)),
    field('sha256', s(row.sha256)),
    field('sha512', s(row.sha512)),
  ]
}

// TCP option kinds as p0f and tcpdump name them.
const OPTION_NAMES: Readonly<Record<number, string>> = { 0: 'eol', 1: 'nop', 2: 'mss', 3: 'ws', 4: 'sok', 5: 'sack', 8: 'ts', 34: 'tfo' }

/** The opening packet's header facts on one line: what a fingerprint is read from. */
function openingPacket(row: AttackRow): string {
  const facts = decodeSynFacts(row.syn_facts)
  if (facts === null) return '- (not seen by the monitor)'
  const parts = [`ttl ${facts.ttl}`]
  if (facts.ipId !== null) parts.push(`ip id ${facts.ipId}${facts.dontFragment ? ', DF' : ''}`)
  if (facts.tcpWindow !== null) parts.push(`window ${facts.tcpWindow}`)
  if (facts.mss !== null) parts.push(`mss ${facts.mss}`)
  if (facts.windowScale !== null) parts.push(`wscale ${facts.windowScale}`)
  if (facts.tcpFlags !== null) parts.push(`options ${facts.tcpOptions.map((k) => OPTION_NAMES[k] ?? `?${k}`).join(',') || 'none'}`)
  return parts.join(', ')
}

function chunkLine(direction: 'in' | 'out', label: string, size: number, style: Style): string {
  return `${marker(direction, style)} ${label}  ${size} bytes`
}

function transcript(row: AttackRow, options: FormatAttackDetailOptions, style: Style): string[] {
  const payload = bytesOf(row.payload)
  const response = bytesOf(row.response)
  const chunks = row.transcript === null ? null : parseStoredTranscript(String(row.transcript), payload, response)
  if (chunks === null || typeof chunks === 'string') {
    // No usable transcript: the order of the exchange is unknown, so each direction is shown whole.
    const why = chunks === null ? 'not recorded (written before schema 2)' : `unreadable (${s(chunks)})`
    const lines = [style.heading(`transcript ${why}: the payload and the response whole`)]
    lines.push(chunkLine('in', 'payload', payload.length, style))
    pushBody(lines, payload, options.maxBytesPerChunk)
    if (row.response_sha256 === null) {
      lines.push(`${marker('out', style)} response  not recorded`)
    } else {
      lines.push(chunkLine('out', 'response', response.length, style))
      pushBody(lines, response, options.maxBytesPerChunk)
    }
    return lines
  }
  const listed = `${chunks.length} chunk${chunks.length === 1 ? '' : 's'}${row.transcript_truncated === 1 ? ', later chunks not listed' : ''}`
  const lines = [style.heading(`transcript (${listed})`)]
  let inAt = 0
  let outAt = 0
  for (const chunk of chunks) {
    const offset = chunk.offset_ms >= 0 ? `+${chunk.offset_ms}` : String(chunk.offset_ms)
    lines.push(chunkLine(chunk.direction, `${offset} ms`, chunk.size, style))
    const source = chunk.direction === 'in' ? payload : response
    const at = chunk.direction === 'in' ? inAt : outAt
    pushBody(lines, source.subarray(at, at + chunk.size), options.maxBytesPerChunk)
    if (chunk.direction === 'in') inAt += chunk.size
    else outAt += chunk.size
  }
  // Bytes kept past the last listed chunk (the transcript hit its chunk cap): still the attacker's, still shown.
  if (inAt < payload.length) {
    lines.push(chunkLine('in', 'after the listed chunks', payload.length - inAt, style))
    pushBody(lines, payload.subarray(inAt), options.maxBytesPerChunk)
  }
  if (outAt < response.length) {
    lines.push(chunkLine('out', 'after the listed chunks', response.length - outAt, style))
    pushBody(lines, response.subarray(outAt), options.maxBytesPerChunk)
  }
  return lines
}

function compactJson(value: unknown): string {
  const json = JSON.stringify(value) ?? 'null'
  if (json.length <= MAX_INFO_CHARS) return s(json)
  return `${s(json.slice(0, MAX_INFO_CHARS))}… (${json.length - MAX_INFO_CHARS} more characters)`
}

function pluginResults(detail: AttackDetail, options: FormatAttackDetailOptions, style: Style): string[] {
  const { plugin_runs: runs, artifacts, downloads } = detail.plugins
  if (runs.length === 0 && artifacts.length === 0 && downloads.length === 0) {
    return [style.heading('plugins'), '  no results (the plugins have not run on this attack, or the database predates schema 3)']
  }
  const failed = runs.filter((r) => r.status !== 'ok')
  const lines = [style.heading(`plugins (${runs.length - failed.length} runs ok, ${failed.length} failed)`)]
  lines.push(style.heading(`artifacts (${artifacts.length})`))
  for (const a of artifacts) {
    const key = a.match_key === null ? '' : `  key ${s(a.match_key)}`
    lines.push(`  ${s(a.kind)} (${s(a.plugin)})${key}  info ${compactJson(a.info)}`)
    if (a.data_base64 !== null) {
      // A decoded payload (base64, XOR, ...): often what the attack really said, so it is shown like a chunk.
      lines.push(`    decoded ${s(a.size)} bytes, sha256 ${s(a.sha256)}`)
      pushBody(lines, Buffer.from(a.data_base64, 'base64'), options.maxBytesPerChunk, `${INDENT}  `)
    }
  }
  lines.push(style.heading(`downloads (${downloads.length})`))
  const samples = new Map(detail.samples.map((sample) => [sample.sha256, sample]))
  for (const d of downloads) {
    lines.push(`  ${s(d.url)} (${s(d.plugin)})`)
    const from = d.address === null ? 'no connection' : `from ${s(d.address)}`
    const digest = d.sha256 === null ? '' : `  sha256 ${s(d.sha256)}`
    lines.push(`    ${s(d.outcome)}${d.reason === null ? '' : ` (${s(d.reason)})`}  ${s(d.bytes)} bytes  ${from}${digest}`)
    const sample = d.sha256 === null ? undefined : samples.get(d.sha256)
    if (sample !== undefined) lines.push(`    sample ${s(sample.size)} bytes, first seen ${utc(sample.first_seen)} UTC, ${s(sample.path)}`)
  }
  lines.push(style.heading(`failed runs (${failed.length})`))
  for (const r of failed) {
    lines.push(`  ${s(r.plugin)}  ${s(r.status)}  subject ${s(r.subject_sha256)}  at ${s(r.started_at.replace('T', ' ').replace(/Z$/, ''))} UTC (${s(r.duration_ms)} ms)`)
    if (r.error !== null) lines.push(`    ${s(r.error)}`)
  }
  return lines
}

/** The attack as text for a terminal: header, the exchange as a dialogue, then the plugin results; no final newline. */
export function formatAttackDetail(detail: AttackDetail, options: FormatAttackDetailOptions): string {
  const style = options.color ? COLORED : PLAIN
  return [header(detail.row, style), transcript(detail.row, options, style), pluginResults(detail, options, style)]
    .map((section) => section.join('\n'))
    .join('\n\n')
}
