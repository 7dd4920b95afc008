import { formatEndpoint } from '../core/format-endpoint.js'
import type { AttackSummaryRow } from '../store/attack-query.js'

const COLUMNS = ['started (UTC)', 'proto', 'source', 'dport', 'mode', 'relay', 'in', 'out', 'closed', 'sha256'] as const
const RIGHT_ALIGNED: ReadonlySet<number> = new Set([3, 6, 7]) // dport, in, out

/**
 * The relay cell: `relayed`, or for a mirror or proxy session served in normal mode instead, why (`loop`,
 * `connect-refused`, ...): every fallback reason reads as a failure, so the word alone says it fell back. `-` otherwise.
 */
function relayCell(r: AttackSummaryRow): string {
  if (r.relay_outcome === null) return '-'
  if (r.relay_outcome === 'relayed') return 'relayed'
  return r.fallback_reason ?? 'fallback'
}

/** Byte count, with `+` when more arrived (or was sent) than the read limit kept. */
function bytesCell(count: number, truncated: 0 | 1): string {
  return truncated === 1 ? `${count}+` : String(count)
}

/** Renders attacks as an aligned text table (no attacker bytes: only metadata and hashes reach the terminal). */
export function formatAttackTable(rows: readonly AttackSummaryRow[], options: { readonly color?: boolean } = {}): string {
  const cells = rows.map((r) => [
    new Date(r.started_at).toISOString().replace('T', ' ').slice(0, 23),
    r.protocol,
    formatEndpoint(r.src_ip, r.src_port),
    String(r.dst_port),
    r.mode,
    relayCell(r),
    bytesCell(r.bytes_received, r.truncated),
    bytesCell(r.bytes_sent, r.response_truncated),
    r.close_reason,
    r.sha256.slice(0, 12),
  ])
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)))
  const line = (row: readonly string[]): string => row.map((v, i) => (RIGHT_ALIGNED.has(i) ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd()
  const header = line(COLUMNS)
  const bold = options.color === true ? (s: string): string => `\u001b[1m${s}\u001b[0m` : (s: string): string => s
  return [bold(header), ...cells.map(line)].join('\n')
}
