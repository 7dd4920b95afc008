import type { AddressFamily, CloseReason, Direction, FallbackReason, Protocol, ResponderMode, SynFacts } from '../attack/attack.js'
import type { AttackRow } from './attack-query.js'
import type { ExportArtifact, ExportDownload, ExportPluginRun, PluginResults } from './plugin-results.js'
import { decodeSynFacts } from './syn-facts-column.js'

/** One chunk of the exchange, with the bytes it carried, so that a reader can replay a session from the export alone. */
export interface ExportChunk {
  readonly direction: Direction // in: from the attacker; out: to the attacker
  readonly offset_ms: number // since started_at
  readonly size: number
  readonly data_base64: string // the slice of the payload (in) or response (out) this chunk covers
}

/** What a mirror or proxy session did with its target. */
export interface ExportRelay {
  readonly target: string
  readonly outcome: 'relayed' | 'fallback'
  readonly reason: FallbackReason | null
}

/**
 * One JSON-lines record of `honeytrap-ts attacks export`: stable field names, RFC 3339 UTC times, bytes in base64.
 * Fields are only ever added, after the existing ones; the large transcript comes last.
 */
export interface ExportRecord {
  readonly id: string
  readonly protocol: Protocol
  readonly family: AddressFamily
  readonly src_ip: string
  readonly src_port: number
  readonly dst_ip: string
  readonly dst_port: number
  readonly mode: ResponderMode
  readonly started_at: string
  readonly ended_at: string
  readonly duration_ms: number
  readonly close_reason: CloseReason
  readonly bytes_received: number
  readonly bytes_sent: number
  readonly truncated: boolean
  readonly payload_size: number
  readonly payload_md5: string
  readonly payload_sha256: string
  readonly payload_sha512: string
  readonly payload_base64: string
  readonly response_size: number
  readonly response_truncated: boolean
  readonly response_sha256: string | null // null: written before schema 2, when responses were not recorded
  readonly response_base64: string
  readonly relay: ExportRelay | null // mirror and proxy sessions only
  readonly syn_facts: SynFacts | null // header facts of the opening packet (schema 6); null when not seen
  readonly transcript_truncated: boolean
  readonly transcript_error: string | null // why the stored transcript could not be read; transcript is then null
  readonly plugin_runs: readonly ExportPluginRun[] // what each plugin did with each subject (schema 3; [] before)
  readonly artifacts: readonly ExportArtifact[]
  readonly downloads: readonly ExportDownload[] // every download attempt, success or failure
  readonly transcript: readonly ExportChunk[] | null // null: not recorded (before schema 2) or unreadable
}

/** The JSON-lines export record of one row; never throws on a row's content (see transcript_error). */
export function toExportRecord(row: AttackRow, plugins: PluginResults = { plugin_runs: [], artifacts: [], downloads: [] }): ExportRecord {
  const transcript = row.transcript === null ? null : parseStoredTranscript(row.transcript, row.payload, row.response)
  return {
    id: row.id,
    protocol: row.protocol,
    family: row.family,
    src_ip: row.src_ip,
    src_port: row.src_port,
    dst_ip: row.dst_ip,
    dst_port: row.dst_port,
    mode: row.mode,
    started_at: new Date(row.started_at).toISOString(),
    ended_at: new Date(row.ended_at).toISOString(),
    duration_ms: row.ended_at - row.started_at,
    close_reason: row.close_reason,
    bytes_received: row.bytes_received,
    bytes_sent: row.bytes_sent,
    truncated: row.truncated === 1,
    payload_size: row.payload_size,
    payload_md5: row.md5,
    payload_sha256: row.sha256,
    payload_sha512: row.sha512,
    payload_base64: row.payload.toString('base64'),
    response_size: row.response_size,
    response_truncated: row.response_truncated === 1,
    response_sha256: row.response_sha256,
    response_base64: row.response.toString('base64'),
    relay:
      row.relay_target === null || row.relay_outcome === null
        ? null
        : { target: row.relay_target, outcome: row.relay_outcome, reason: row.fallback_reason },
    syn_facts: decodeSynFacts(row.syn_facts),
    transcript_truncated: row.transcript_truncated === 1,
    transcript_error: typeof transcript === 'string' ? transcript : null,
    plugin_runs: plugins.plugin_runs,
    artifacts: plugins.artifacts,
    downloads: plugins.downloads,
    transcript: typeof transcript === 'string' ? null : transcript,
  }
}

/**
 * Reads the transcript column (`[["in",0,517],["out",1,1024]]`) and cuts each chunk's bytes from payload or response.
 * Returns the chunks, or a message saying why the text is not a transcript of these bytes: the writer always stores a
 * valid one, so this only happens to a hand-edited database, and one bad row must not end an export of millions. It
 * is all or nothing: a partial transcript would replay a different exchange than the one that happened.
 */
export function parseStoredTranscript(text: string, payload: Buffer, response: Buffer): ExportChunk[] | string {
  let entries: unknown
  try {
    entries = JSON.parse(text)
  } catch {
    return 'transcript is not valid JSON'
  }
  if (!Array.isArray(entries)) return 'transcript is not a JSON array'
  const chunks: ExportChunk[] = []
  let inAt = 0
  let outAt = 0
  for (const [i, entry] of (entries as unknown[]).entries()) {
    if (!Array.isArray(entry) || entry.length !== 3) return `transcript chunk ${i} is not a [direction, offset_ms, size] triple`
    const [direction, offsetMs, size] = entry as [unknown, unknown, unknown]
    // The value is cut short: a hand-edited cell may hold anything, and the message goes into every record it affects.
    if (direction !== 'in' && direction !== 'out') return `transcript chunk ${i} has direction ${JSON.stringify(direction).slice(0, 40)}, expected "in" or "out"`
    // Offsets are not required to grow: they come from the wall clock, which may step back during a session.
    if (typeof offsetMs !== 'number' || !Number.isSafeInteger(offsetMs)) return `transcript chunk ${i} has an offset_ms that is not an integer`
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return `transcript chunk ${i} has a size that is not a non-negative integer`
    const bytes = direction === 'in' ? payload : response
    const start = direction === 'in' ? inAt : outAt
    if (start + size > bytes.length) {
      return `transcript chunk ${i} ends at byte ${start + size} of the ${direction === 'in' ? 'payload' : 'response'}, which has ${bytes.length}`
    }
    chunks.push({ direction, offset_ms: offsetMs, size, data_base64: bytes.toString('base64', start, start + size) })
    if (direction === 'in') inAt += size
    else outAt += size
  }
  return chunks
}
