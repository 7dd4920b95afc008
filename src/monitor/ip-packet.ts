import type { ConnectionAttempt, SynFacts } from './packet-source.js'

/**
 * Parses the raw IP packets an NFQUEUE hands over (no link-layer header) into a ConnectionAttempt.
 *
 * Pure and allocation-light: it runs for every queued SYN, so it reads bytes by index (no DataView, no Buffer slices,
 * no regexes) and formats addresses only once the packet is known to be usable. Attacker bytes are untrusted: every
 * read is bounds-checked first and a bad packet yields a failure reason, never an exception.
 *
 * Lengths. Two ends matter: the end of the buffer (what NFQUEUE copied) and the end the IP header claims (IPv4 total
 * length, IPv6 40 + payload length). The readable end is the smaller one, so trailing bytes after the claimed end
 * (Ethernet padding) are never taken for options. A header that runs past the readable end is
 *  - 'truncated' when the claim covers it: the copy was cut short (NFQUEUE copy range), the packet itself is fine;
 *  - 'fragment' when the claim does not cover it but more fragments follow: the header continues in a fragment we
 *    never see (a tiny-fragment evasion; RFC 7112 forbids it for IPv6);
 *  - otherwise a reason naming the header that lied ('bad-total-length', 'bad-header-length', 'bad-extension-header').
 * So a partial copy parses as long as the transport header (with its TCP options) was copied.
 *
 * Checksums are not verified: the only decision taken here is to open a listener, and the kernel drops a segment with
 * a bad checksum after the queue anyway.
 */

export type ParseFailure =
  | 'truncated'
  | 'bad-version'
  | 'bad-header-length'
  | 'bad-total-length'
  | 'fragment'
  | 'unsupported-protocol'
  | 'bad-extension-header'
  | 'too-many-extension-headers'

export type ParseResult =
  | { readonly ok: true; readonly attempt: ConnectionAttempt }
  | { readonly ok: false; readonly reason: ParseFailure }

const PROTO_TCP = 6
const PROTO_UDP = 17
const IPV4_MIN_HEADER = 20
const IPV6_HEADER = 40
const TCP_MIN_HEADER = 20
const UDP_HEADER = 8
const EXTENSION_MIN = 8 // every IPv6 extension header we walk is at least 8 bytes, which covers its length field
// RFC 8200 sets no limit; 16 is far above any real chain (RFC 7045 era stacks rarely see 3) and bounds the walk.
const MAX_EXTENSION_HEADERS = 16
// An IPv6 payload length of 0 with a Hop-by-Hop header announces a jumbogram (RFC 2675): the real length lives in an
// option we do not parse, so the claim is treated as unbounded and only the buffer limits reads.
const UNKNOWN_END = Number.MAX_SAFE_INTEGER

// One frozen result per reason: failures are the common case under a scan of garbage, so they allocate nothing.
const FAILURES: { readonly [R in ParseFailure]: ParseResult } = {
  truncated: fail('truncated'),
  'bad-version': fail('bad-version'),
  'bad-header-length': fail('bad-header-length'),
  'bad-total-length': fail('bad-total-length'),
  fragment: fail('fragment'),
  'unsupported-protocol': fail('unsupported-protocol'),
  'bad-extension-header': fail('bad-extension-header'),
  'too-many-extension-headers': fail('too-many-extension-headers'),
}

function fail(reason: ParseFailure): ParseResult {
  return Object.freeze({ ok: false, reason })
}

/** What the network layer said about a packet, with addresses kept as offsets until they are needed. */
interface Network {
  family: 4 | 6
  srcOffset: number
  dstOffset: number
  ttl: number
  ipId: number | null
  dontFragment: boolean
  protocol: number // 6 or 17 once the network layer is done
  transportStart: number
  claimedEnd: number
  moreFragments: boolean
}

/** Parses one raw IPv4/IPv6 packet carrying TCP or UDP into a ConnectionAttempt; never throws, whatever the bytes. */
export function parsePacket(packet: Uint8Array): ParseResult {
  if (packet.length === 0) return FAILURES.truncated
  const version = u8(packet, 0) >>> 4
  const net = version === 4 ? parseIPv4(packet) : version === 6 ? parseIPv6(packet) : 'bad-version'
  if (typeof net === 'string') return FAILURES[net]
  return parseTransport(packet, net)
}

function parseIPv4(packet: Uint8Array): Network | ParseFailure {
  if (packet.length < IPV4_MIN_HEADER) return 'truncated'
  const headerBytes = (u8(packet, 0) & 0x0f) * 4
  if (headerBytes < IPV4_MIN_HEADER) return 'bad-header-length'
  const totalLength = u16(packet, 2)
  if (totalLength < headerBytes) return 'bad-total-length'
  // The IHL fits the claimed length, so a buffer that ends inside the IP options is a short copy, not a lie.
  if (headerBytes > packet.length) return 'truncated'
  const flagsAndOffset = u16(packet, 6)
  // A non-first fragment carries no transport header; the first one (offset 0, MF set) does and is parsed.
  if ((flagsAndOffset & 0x1fff) !== 0) return 'fragment'
  const protocol = u8(packet, 9)
  if (protocol !== PROTO_TCP && protocol !== PROTO_UDP) return 'unsupported-protocol'
  return {
    family: 4,
    srcOffset: 12,
    dstOffset: 16,
    ttl: u8(packet, 8),
    ipId: u16(packet, 4),
    dontFragment: (flagsAndOffset & 0x4000) !== 0,
    protocol,
    transportStart: headerBytes,
    claimedEnd: totalLength,
    moreFragments: (flagsAndOffset & 0x2000) !== 0,
  }
}

function parseIPv6(packet: Uint8Array): Network | ParseFailure {
  if (packet.length < IPV6_HEADER) return 'truncated'
  const payloadLength = u16(packet, 4)
  let next = u8(packet, 6)
  // Payload length 0 without Hop-by-Hop is not a jumbogram: Linux then treats the payload as empty, and so do we.
  const claimedEnd = payloadLength === 0 && next === 0 ? UNKNOWN_END : IPV6_HEADER + payloadLength
  const net: Network = {
    family: 6,
    srcOffset: 8,
    dstOffset: 24,
    ttl: u8(packet, 7),
    ipId: null,
    dontFragment: false,
    protocol: next,
    transportStart: IPV6_HEADER,
    claimedEnd,
    moreFragments: false,
  }
  let offset = IPV6_HEADER
  for (let seen = 0; ; seen++) {
    if (next === PROTO_TCP || next === PROTO_UDP) {
      net.protocol = next
      net.transportStart = offset
      return net
    }
    if (!isWalkedExtension(next)) return 'unsupported-protocol' // ESP (opaque), No Next Header, ICMPv6, anything else
    if (seen === MAX_EXTENSION_HEADERS) return 'too-many-extension-headers'
    // RFC 8200 §4.1: Hop-by-Hop may only follow the IPv6 header; anywhere else the chain is malformed.
    if (next === 0 && offset !== IPV6_HEADER) return 'bad-extension-header'
    const fixedShort = shortfall(offset + EXTENSION_MIN, packet, net, 'bad-extension-header')
    if (fixedShort !== null) return fixedShort
    const length = extensionLength(next, u8(packet, offset + 1))
    const short = shortfall(offset + length, packet, net, 'bad-extension-header')
    if (short !== null) return short
    if (next === 44) {
      const offsetAndFlags = u16(packet, offset + 2)
      if (offsetAndFlags >>> 3 !== 0) return 'fragment'
      net.moreFragments = (offsetAndFlags & 0x0001) !== 0
    }
    next = u8(packet, offset)
    offset += length
  }
}

/** Extension headers walked as "next header + length": HbH, Routing, Fragment, AH, Dest. Options, Mobility, HIP, Shim6. */
function isWalkedExtension(next: number): boolean {
  return next === 0 || next === 43 || next === 44 || next === 51 || next === 60 || next === 135 || next === 139 || next === 140
}

function extensionLength(next: number, lengthField: number): number {
  if (next === 44) return 8 // the Fragment header's second byte is reserved, not a length
  if (next === 51) return (lengthField + 2) * 4 // AH counts 4-byte words, minus 2 (RFC 4302 §2.2)
  return (lengthField + 1) * 8 // RFC 8200: 8-byte units, not counting the first 8 bytes
}

function parseTransport(packet: Uint8Array, net: Network): ParseResult {
  const start = net.transportStart
  if (net.protocol === PROTO_UDP) {
    const short = shortfall(start + UDP_HEADER, packet, net, 'bad-total-length')
    if (short !== null) return FAILURES[short]
    return succeed(packet, net, u16(packet, start), u16(packet, start + 2), UDP_FACTS)
  }
  const baseShort = shortfall(start + TCP_MIN_HEADER, packet, net, 'bad-total-length')
  if (baseShort !== null) return FAILURES[baseShort]
  const headerBytes = (u8(packet, start + 12) >>> 4) * 4
  if (headerBytes < TCP_MIN_HEADER) return FAILURES['bad-header-length']
  const short = shortfall(start + headerBytes, packet, net, 'bad-header-length')
  if (short !== null) return FAILURES[short]
  return succeed(packet, net, u16(packet, start), u16(packet, start + 2), readTcpFacts(packet, start, start + headerBytes))
}

type TransportFacts = Pick<SynFacts, 'tcpWindow' | 'tcpFlags' | 'tcpOptions' | 'mss' | 'windowScale'>

const UDP_FACTS: TransportFacts = { tcpWindow: null, tcpFlags: null, tcpOptions: Object.freeze([]), mss: null, windowScale: null }

/**
 * Reads the facts of the TCP header in [start, end); its options, between the fixed 20 bytes and `end`, in wire order.
 * A malformed option (no length byte, length < 2, running past the header) stops the walk but keeps what came before:
 * the kinds seen so far are still a useful fingerprint, and the packet is still a connection attempt. EOL is recorded
 * (its presence tells stacks apart) and ends the walk.
 */
function readTcpFacts(packet: Uint8Array, start: number, end: number): TransportFacts {
  const kinds: number[] = []
  let mss: number | null = null
  let windowScale: number | null = null
  let i = start + TCP_MIN_HEADER
  while (i < end) {
    const kind = u8(packet, i)
    if (kind === 0) {
      kinds.push(kind)
      break
    }
    if (kind === 1) {
      kinds.push(kind)
      i += 1
      continue
    }
    if (i + 1 >= end) break
    const length = u8(packet, i + 1)
    if (length < 2 || i + length > end) break
    kinds.push(kind)
    // Like Linux, a repeated option overrides the earlier one; a wrong length keeps the kind but not the value.
    if (kind === 2 && length === 4) mss = u16(packet, i + 2)
    else if (kind === 3 && length === 3) windowScale = u8(packet, i + 2)
    i += length
  }
  return { tcpWindow: u16(packet, start + 14), tcpFlags: u8(packet, start + 13), tcpOptions: kinds, mss, windowScale }
}

function succeed(packet: Uint8Array, net: Network, srcPort: number, dstPort: number, transport: TransportFacts): ParseResult {
  const v4 = net.family === 4
  const attempt: ConnectionAttempt = {
    family: net.family,
    protocol: net.protocol === PROTO_TCP ? 'tcp' : 'udp',
    srcAddress: v4 ? formatIPv4(packet, net.srcOffset) : formatIPv6(packet, net.srcOffset),
    srcPort,
    dstAddress: v4 ? formatIPv4(packet, net.dstOffset) : formatIPv6(packet, net.dstOffset),
    dstPort,
    facts: {
      ttl: net.ttl,
      ipId: net.ipId,
      dontFragment: net.dontFragment,
      tcpWindow: transport.tcpWindow,
      tcpFlags: transport.tcpFlags,
      tcpOptions: transport.tcpOptions,
      mss: transport.mss,
      windowScale: transport.windowScale,
    },
  }
  return { ok: true, attempt }
}

/** Why bytes up to `needEnd` cannot be read (see the file comment for the three cases), or null when they can. */
function shortfall(needEnd: number, packet: Uint8Array, net: Network, liar: ParseFailure): ParseFailure | null {
  if (needEnd <= net.claimedEnd) return needEnd <= packet.length ? null : 'truncated'
  return net.moreFragments ? 'fragment' : liar
}

/** Formats the 4 bytes at `offset` as a dotted quad ("192.0.2.1"); bytes past the end read as 0. */
export function formatIPv4(bytes: Uint8Array, offset: number): string {
  return `${u8(bytes, offset)}.${u8(bytes, offset + 1)}.${u8(bytes, offset + 2)}.${u8(bytes, offset + 3)}`
}

/**
 * Formats the 16 bytes at `offset` in RFC 5952 canonical form: lowercase hex without leading zeros, the longest run of
 * two or more zero groups (the first on a tie) as "::", and IPv4-mapped addresses as "::ffff:a.b.c.d" (§5).
 * Bytes past the end read as 0.
 */
export function formatIPv6(bytes: Uint8Array, offset: number): string {
  let bestStart = -1
  let bestLength = 0
  let runStart = -1
  for (let g = 0; g < 8; g++) {
    if (u16(bytes, offset + g * 2) !== 0) {
      runStart = -1
      continue
    }
    if (runStart < 0) runStart = g
    if (g - runStart + 1 > bestLength) {
      bestStart = runStart
      bestLength = g - runStart + 1
    }
  }
  // Exactly five leading zero groups then ffff: the run can only be groups 0-4 if group 5 is nonzero.
  if (bestStart === 0 && bestLength === 5 && u16(bytes, offset + 10) === 0xffff) {
    return `::ffff:${formatIPv4(bytes, offset + 12)}`
  }
  if (bestLength < 2) bestStart = -1 // §4.2.2: a single zero group is written as 0, not "::"
  const bestEnd = bestStart < 0 ? -1 : bestStart + bestLength
  let out = ''
  let g = 0
  while (g < 8) {
    if (g === bestStart) {
      out += '::'
      g = bestEnd
      continue
    }
    if (g > 0 && g !== bestEnd) out += ':'
    out += u16(bytes, offset + g * 2).toString(16)
    g++
  }
  return out
}

// Reads never go past the buffer: callers check bounds first, and `?? 0` only satisfies noUncheckedIndexedAccess.
function u8(bytes: Uint8Array, index: number): number {
  return bytes[index] ?? 0
}

function u16(bytes: Uint8Array, index: number): number {
  return ((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)
}
