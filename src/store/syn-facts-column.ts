import type { SynFacts } from '../attack/attack.js'

/** The syn_facts column (migration 006): the facts as JSON text, or NULL when the monitor did not see the packet. */
export function encodeSynFacts(facts: SynFacts | null): string | null {
  return facts === null ? null : JSON.stringify(facts)
}

const MAX_OPTIONS = 40 // a TCP header has 40 bytes of options: at most 40 one-byte kinds

function intOrNull(value: unknown, max: number): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max ? value : null
}

/**
 * The column read back. A hand-edited or foreign value must not reach a reader as something else: anything that is
 * not the object the writer writes reads as null, field by field where a field alone is wrong.
 */
export function decodeSynFacts(text: string | null): SynFacts | null {
  if (text === null) return null
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null
  const r = raw as Record<string, unknown>
  const options = Array.isArray(r['tcpOptions']) ? r['tcpOptions'].slice(0, MAX_OPTIONS).filter((k): k is number => intOrNull(k, 255) !== null) : []
  return {
    ttl: intOrNull(r['ttl'], 255) ?? 0,
    ipId: intOrNull(r['ipId'], 0xffff),
    dontFragment: r['dontFragment'] === true,
    tcpWindow: intOrNull(r['tcpWindow'], 0xffff),
    tcpFlags: intOrNull(r['tcpFlags'], 0xff),
    tcpOptions: options,
    mss: intOrNull(r['mss'], 0xffff),
    windowScale: intOrNull(r['windowScale'], 255),
  }
}
