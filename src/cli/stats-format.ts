import type { AttackStats } from '../store/attack-stats.js'

const BAR_WIDTH = 40

function time(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19)
}

function table(header: readonly string[], rows: readonly (readonly string[])[], right: ReadonlySet<number>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (row: readonly string[]): string => row.map((v, i) => (right.has(i) ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(header), ...rows.map(line)]
}

/**
 * `attacks stats` as text. Only metadata reaches the terminal: ports, addresses (textual IPs from the store), digests,
 * counts and times; never attacker bytes.
 */
export function formatAttackStats(stats: AttackStats, options: { readonly color?: boolean } = {}): string {
  const heading = options.color === true ? (s: string): string => `\u001b[1m${s}\u001b[0m` : (s: string): string => s
  if (stats.total === 0) return 'no attacks match'
  const out: string[] = []
  out.push(`${stats.total.toLocaleString('en-US')} attacks from ${time(stats.firstMs!)} to ${time(stats.lastMs!)} UTC`)
  out.push(`${stats.sources.distinct} sources: ${stats.sources.new} new, ${stats.sources.seenBefore} seen before`)
  out.push('', heading('Top attacked ports'))
  out.push(...table(['port', 'proto', 'attacks'], stats.topPorts.map((p) => [String(p.port), p.protocol, String(p.count)]), new Set([0, 2])))
  out.push('', heading('Top sources'))
  out.push(...table(['source', 'attacks'], stats.topSources.map((s) => [s.address, String(s.count)]), new Set([1])))
  out.push('', heading('Top payloads'))
  out.push(
    ...table(
      ['sha256', 'bytes', 'attacks', 'sources', 'first seen', 'last seen'],
      stats.topPayloads.map((p) => [p.sha256.slice(0, 16), String(p.size), String(p.count), String(p.sources), time(p.firstMs), time(p.lastMs)]),
      new Set([1, 2, 3]),
    ),
  )
  const peak = Math.max(...stats.timeline.buckets.map((b) => b.count), 1)
  out.push('', heading(`Timeline (${formatWidth(stats.timeline.bucketMs)} per line)`))
  for (const b of stats.timeline.buckets) {
    const bar = '#'.repeat(Math.ceil((b.count / peak) * BAR_WIDTH * (b.count > 0 ? 1 : 0)))
    out.push(`${time(b.startMs)}  ${String(b.count).padStart(String(peak).length)}  ${bar}`)
  }
  return out.join('\n')
}

function formatWidth(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`
  return `${ms / 60_000} min`
}
