import type { Protocol } from '../attack/attack.js'

/** An inclusive port range for one or both protocols. */
export interface PortRange {
  readonly protocols: readonly Protocol[]
  readonly from: number
  readonly to: number
}

export type PortSpecResult = { readonly ok: true; readonly ranges: PortRange[] } | { readonly ok: false; readonly error: string }

const ITEM = /^(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp))?$/

/**
 * Parses a port list such as `"22/tcp"`, `"80,443,8000-8100/tcp"`, `"53/udp"` or `"3306"` (no protocol: both).
 * A protocol suffix applies to the item it ends. Pure; the error says which item is wrong and what is expected.
 */
export function parsePortSpec(spec: string | number, defaultProtocols: readonly Protocol[] = ['tcp', 'udp']): PortSpecResult {
  const text = String(spec).trim()
  if (text === '') return { ok: false, error: 'empty port list; expected e.g. "22/tcp", "80,443" or "8000-8100/udp"' }
  const ranges: PortRange[] = []
  for (const raw of text.split(',')) {
    // Quote at most 40 characters of a bad item: an error message must not echo an arbitrarily long input.
    const item = raw.trim().length > 40 ? `${raw.trim().slice(0, 40)}...` : raw.trim()
    const m = ITEM.exec(item)
    if (!m) return { ok: false, error: `"${item}" is not a port, a range or a port/protocol; expected e.g. "80", "1000-2000" or "53/udp"` }
    const from = Number(m[1])
    const to = m[2] === undefined ? from : Number(m[2])
    if (from < 1 || from > 65_535 || to < 1 || to > 65_535) return { ok: false, error: `"${item}": ports are 1 to 65535` }
    if (to < from) return { ok: false, error: `"${item}": a range goes from low to high` }
    const protocols = m[3] === undefined ? defaultProtocols : [m[3] as Protocol]
    ranges.push({ protocols, from, to })
  }
  return { ok: true, ranges }
}

/** Formats ranges back to the spec syntax, one item per protocol ("22/tcp,53/udp"); inverse of parsePortSpec. */
export function formatPortRanges(ranges: readonly PortRange[]): string {
  const items: string[] = []
  for (const r of ranges) {
    const span = r.from === r.to ? String(r.from) : `${r.from}-${r.to}`
    for (const p of r.protocols) items.push(`${span}/${p}`)
  }
  return items.join(',')
}
