import type { SynFacts } from './attack.js'

/**
 * SYN facts as a session holds them until it ends: one short one-byte string (about 32 bytes of heap) instead of an
 * object with an options array (about 280 bytes without pointer compression, as Node ships). An idle connection costs
 * the sensor under 6 KiB in all (bench section c), so the facts must not be a twentieth of it.
 *
 * Layout, one character per byte: presence bits, DF, TTL, IP id (2), window (2), flags, MSS (2), window scale, then
 * the option kinds in wire order. Facts with a value a byte layout cannot hold are kept as they are: the monitors read
 * every field from a byte or a 16-bit word, so that never happens, but a wrong record would be worse than a large one.
 */
export type PackedSynFacts = string | SynFacts

const HAS_IP_ID = 1
const HAS_WINDOW = 2
const HAS_FLAGS = 4
const HAS_MSS = 8
const HAS_WSCALE = 16
const HEADER_CHARS = 11
const MAX_OPTIONS = 40 // a TCP header has at most 40 bytes of options, so at most 40 kinds

function fits(value: number | null, max: number): boolean {
  return value === null || (Number.isInteger(value) && value >= 0 && value <= max)
}

export function packSynFacts(facts: SynFacts): PackedSynFacts {
  const { ttl, ipId, tcpWindow, tcpFlags, mss, windowScale, tcpOptions } = facts
  const representable =
    fits(ttl, 0xff) &&
    fits(ipId, 0xffff) &&
    fits(tcpWindow, 0xffff) &&
    fits(tcpFlags, 0xff) &&
    fits(mss, 0xffff) &&
    fits(windowScale, 0xff) &&
    tcpOptions.length <= MAX_OPTIONS &&
    tcpOptions.every((kind) => fits(kind, 0xff))
  if (!representable) return facts
  const present = (ipId === null ? 0 : HAS_IP_ID) | (tcpWindow === null ? 0 : HAS_WINDOW) | (tcpFlags === null ? 0 : HAS_FLAGS) | (mss === null ? 0 : HAS_MSS) | (windowScale === null ? 0 : HAS_WSCALE)
  const w = (value: number | null): number[] => [((value ?? 0) >>> 8) & 0xff, (value ?? 0) & 0xff]
  return String.fromCharCode(present, facts.dontFragment ? 1 : 0, ttl, ...w(ipId), ...w(tcpWindow), tcpFlags ?? 0, ...w(mss), windowScale ?? 0, ...tcpOptions)
}

export function unpackSynFacts(packed: PackedSynFacts): SynFacts {
  if (typeof packed !== 'string') return packed
  const at = (i: number): number => packed.charCodeAt(i)
  const word = (i: number): number => (at(i) << 8) | at(i + 1)
  const present = at(0)
  const tcpOptions: number[] = []
  for (let i = HEADER_CHARS; i < packed.length; i++) tcpOptions.push(at(i))
  return {
    ttl: at(2),
    ipId: present & HAS_IP_ID ? word(3) : null,
    dontFragment: at(1) === 1,
    tcpWindow: present & HAS_WINDOW ? word(5) : null,
    tcpFlags: present & HAS_FLAGS ? at(7) : null,
    tcpOptions,
    mss: present & HAS_MSS ? word(8) : null,
    windowScale: present & HAS_WSCALE ? at(10) : null,
  }
}
