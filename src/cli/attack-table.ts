import type { AttackSummaryRow } from '../store/attack-query.js'

const COLUMNS = ['started (UTC)', 'proto', 'source', 'dport', 'mode', 'in', 'out', 'closed', 'sha256'] as const

function endpoint(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`
}

/** Renders attacks as an aligned text table (no attacker bytes: only metadata and hashes reach the terminal). */
export function formatAttackTable(rows: readonly AttackSummaryRow[], options: { readonly color?: boolean } = {}): string {
  const cells = rows.map((r) => [
    new Date(r.started_at).toISOString().replace('T', ' ').slice(0, 23),
    r.protocol,
    endpoint(r.src_ip, r.src_port),
    String(r.dst_port),
    r.mode,
    r.truncated === 1 ? `${r.bytes_received}+` : String(r.bytes_received),
    String(r.bytes_sent),
    r.close_reason,
    r.sha256.slice(0, 12),
  ])
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)))
  const line = (row: readonly string[]): string => row.map((v, i) => (i === 3 || i === 5 || i === 6 ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd()
  const header = line(COLUMNS)
  const bold = options.color === true ? (s: string): string => `\u001b[1m${s}\u001b[0m` : (s: string): string => s
  return [bold(header), ...cells.map(line)].join('\n')
}
