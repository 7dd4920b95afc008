import { isIPv6 } from 'node:net'

/** An IP address as network-order bytes: 4 for IPv4, 16 for IPv6. An IPv4-mapped IPv6 address is always family 4. */
export interface IpBytes {
  readonly family: 4 | 6
  readonly bytes: Uint8Array
}

/** A network range: `network` has no host bits set; `text` is the canonical form ("10.0.0.0/8", "2001:db8::/32"). */
export interface CidrRange {
  readonly family: 4 | 6
  readonly network: Uint8Array
  readonly prefix: number
  readonly text: string
}

export type CidrResult =
  | { readonly ok: true; readonly range: CidrRange }
  | { readonly ok: false; readonly error: string }

// The longest textual address accepted: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255". Checking the length first
// keeps hostile inputs (megabytes of text) from reaching a regular expression.
const MAX_ADDRESS_CHARS = 45
// `\d` without the `u` flag is ASCII 0-9 only, so full-width and other Unicode digits are refused.
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/
const PREFIX = /^(?:0|[1-9]\d{0,2})$/
const EXAMPLES = 'expected e.g. "10.0.0.0/8", "192.0.2.7" or "2001:db8::/32"'

/**
 * Parses a textual IPv4 or IPv6 address; null when it is not one. Never throws.
 * IPv4 is strict dotted decimal: four octets 0-255 with no leading zeros, because inet_aton() reads "010" as octal 8
 * and a guard must not disagree with the resolver about which host is meant. IPv6 takes every form node's
 * net.isIPv6 takes except a zone id ("fe80::1%eth0"), which is refused: a zone only scopes link-local addresses,
 * which no caller may connect to anyway. ::ffff:a.b.c.d (in any spelling) comes back as family 4.
 */
export function parseIpAddress(text: string): IpBytes | null {
  if (typeof text !== 'string' || text.length > MAX_ADDRESS_CHARS) return null
  const v4 = parseIpv4(text)
  if (v4 !== null) return { family: 4, bytes: v4 }
  const v6 = parseIpv6(text)
  if (v6 === null) return null
  // Mapped addresses reach IPv4 hosts, so they must meet the IPv4 rules, not slip past them as IPv6.
  if (isMapped(v6)) return { family: 4, bytes: v6.slice(12) }
  return { family: 6, bytes: v6 }
}

/** Formats an address canonically: dotted decimal, or RFC 5952 IPv6 (lowercase, longest zero run as "::"). */
export function formatIpAddress(ip: IpBytes): string {
  const b = ip.bytes
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  const words: number[] = []
  for (let i = 0; i < 16; i += 2) words.push(((b[i] ?? 0) << 8) | (b[i + 1] ?? 0))
  let bestStart = -1
  let bestLength = 1 // RFC 5952: a single zero group is written "0", not "::"
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLength) { bestStart = i; bestLength = j - i }
    i = j
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':')
  if (bestStart === -1) return hex(words)
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`
}

/**
 * Parses "a.b.c.d/n", "a.b.c.d" (/32), "v6/n" or "v6" (/128). Pure; never throws. Refuses host bits set and says
 * which network address to write instead. An IPv4-mapped range ("::ffff:10.0.0.0/104") becomes its IPv4 equivalent
 * ("10.0.0.0/8"), since addresses are compared in their normalised form; it needs a prefix of 96 or more.
 */
export function parseCidr(text: string): CidrResult {
  if (typeof text !== 'string' || text === '') return fail(`empty range; ${EXAMPLES}`)
  const shown = quote(text)
  if (/\s/.test(text)) return fail(`${shown}: remove the whitespace; ${EXAMPLES}`)
  const slash = text.indexOf('/')
  const addressText = slash === -1 ? text : text.slice(0, slash)
  if (addressText.includes('%')) return fail(`${shown}: a zone id ("%eth0") is not allowed in a range; ${EXAMPLES}`)
  const ip = parseIpAddress(addressText)
  if (ip === null) return fail(`${shown}: ${quote(addressText)} is not an IPv4 or IPv6 address; ${EXAMPLES}`)
  const writtenV6 = addressText.includes(':')
  const maxPrefix = writtenV6 ? 128 : 32
  let prefix = maxPrefix
  if (slash !== -1) {
    const prefixText = text.slice(slash + 1)
    if (prefixText === '') return fail(`${shown}: nothing after "/"; write the prefix length, e.g. "/24"`)
    if (!PREFIX.test(prefixText)) {
      return fail(`${shown}: the prefix after "/" must be a whole number without leading zeros, e.g. "/24"`)
    }
    prefix = Number(prefixText)
    if (prefix > maxPrefix) return fail(`${shown}: the prefix must be 0-${maxPrefix} for IPv${writtenV6 ? 6 : 4}`)
  }
  if (writtenV6 && ip.family === 4) {
    if (prefix < 96) {
      return fail(`${shown}: an IPv4-mapped range needs a prefix of 96-128; write it as IPv4, e.g. "10.0.0.0/8"`)
    }
    prefix -= 96
  }
  const network = maskBytes(ip.bytes, prefix)
  const canonical = `${formatIpAddress({ family: ip.family, bytes: network })}/${prefix}`
  if (!sameBytes(network, ip.bytes)) return fail(`${shown}: host bits are set; did you mean ${canonical}?`)
  return { ok: true, range: { family: ip.family, network, prefix, text: canonical } }
}

/** True when `ip` lies inside `range`; an address of the other family is never inside. */
export function cidrContains(range: CidrRange, ip: IpBytes): boolean {
  if (range.family !== ip.family) return false
  const whole = range.prefix >> 3
  for (let i = 0; i < whole; i++) if (range.network[i] !== ip.bytes[i]) return false
  const rest = range.prefix & 7
  if (rest === 0) return true
  const mask = (0xff << (8 - rest)) & 0xff
  return ((ip.bytes[whole] ?? 0) & mask) === range.network[whole]
}

function parseIpv4(text: string): Uint8Array | null {
  const m = IPV4.exec(text)
  if (m === null) return null
  const bytes = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    const part = m[i + 1] ?? ''
    if (part.length > 1 && part.startsWith('0')) return null
    const value = Number(part)
    if (value > 255) return null
    bytes[i] = value
  }
  return bytes
}

function parseIpv6(text: string): Uint8Array | null {
  // isIPv6 decides which spellings are valid, so this parser only has to place groups, not judge them.
  if (text.includes('%') || !isIPv6(text)) return null
  const halves = text.split('::')
  if (halves.length > 2) return null
  const head = toWords(halves[0] ?? '', halves.length === 1)
  const tail = halves.length === 2 ? toWords(halves[1] ?? '', true) : []
  if (head === null || tail === null) return null
  const total = head.length + tail.length
  if (halves.length === 1 ? total !== 8 : total > 7) return null
  const bytes = new Uint8Array(16)
  const write = (words: readonly number[], firstWord: number): void => {
    words.forEach((w, k) => {
      bytes[(firstWord + k) * 2] = w >> 8
      bytes[(firstWord + k) * 2 + 1] = w & 0xff
    })
  }
  write(head, 0)
  write(tail, 8 - tail.length)
  return bytes
}

/** Colon-separated groups to 16-bit words; a dotted IPv4 tail (allowed only at the very end) counts as two. */
function toWords(section: string, isLast: boolean): number[] | null {
  if (section === '') return []
  const parts = section.split(':')
  const words: number[] = []
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? ''
    if (isLast && i === parts.length - 1 && part.includes('.')) {
      const v4 = parseIpv4(part)
      if (v4 === null) return null
      words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0))
    } else {
      if (!HEX_GROUP.test(part)) return null
      words.push(Number.parseInt(part, 16))
    }
  }
  return words
}

function isMapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false
  return bytes[10] === 0xff && bytes[11] === 0xff
}

function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length)
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.min(8, Math.max(0, prefix - i * 8))
    out[i] = (bytes[i] ?? 0) & ((0xff << (8 - bits)) & 0xff)
  }
  return out
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Quotes at most 40 characters: an error message must not echo an arbitrarily long input. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text)
}

function fail(error: string): CidrResult {
  return { ok: false, error }
}
