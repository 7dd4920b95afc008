/**
 * Finds the IP packet inside a captured link-layer frame, for the pcap monitor. Pure and allocation-free on the hot
 * path: it returns an offset into the frame and leaves the IP parsing to ip-packet.ts. Frames are untrusted bytes (a
 * capture copies whatever arrives, cut to the snap length), so every read is bounds-checked and a bad frame yields a
 * failure reason, never an exception.
 */

/** The link types the pcap monitor understands; anything else is refused when the capture opens. */
export type LinkType = 'ethernet' | 'linux-sll' | 'linux-sll2' | 'raw' | 'ipv4' | 'ipv6' | 'null'

export type LinkFailure =
  | 'truncated' // the frame ends inside the link header or before the first IP byte
  | 'not-ip' // an ethertype (or address family) other than IPv4 and IPv6
  | 'too-many-vlan-tags'
  | 'version-mismatch' // the ethertype says IPv4 and the packet says 6, or the reverse
  | 'not-for-host' // a cooked capture marked it outgoing, or addressed to another host or a group
  | 'tagged-copy' // a cooked capture's VLAN-tagged frame: the host takes it, if at all, through a VLAN device (see below)

export type LinkResult = { readonly ok: true; readonly offset: number } | { readonly ok: false; readonly reason: LinkFailure }

const ETHERTYPE_IPV4 = 0x0800
const ETHERTYPE_IPV6 = 0x86dd
// 802.1Q, 802.1ad (provider bridging) and the pre-standard Q-in-Q type some switches still send.
const VLAN_ETHERTYPES = new Set([0x8100, 0x88a8, 0x9100])
// Q-in-Q stacks two tags; four leaves room for provider stacks. More is not a frame this host's stack would take.
const MAX_VLAN_TAGS = 4
const ETHERNET_HEADER = 14 // destination, source, ethertype
const SLL_HEADER = 16 // packet type, ARPHRD, address length, 8 address bytes, protocol
const SLL2_HEADER = 20 // protocol, reserved, interface index, ARPHRD, packet type, address length, 8 address bytes
const NULL_HEADER = 4 // the BSD loopback address family, in the capturing host's byte order
const PACKET_HOST = 0 // Linux packet type of a frame addressed to this host (linux/if_packet.h)
const AF_INET = 2
// AF_INET6 differs between systems: Linux 10, NetBSD and OpenBSD 24, FreeBSD 28, macOS 30.
const AF_INET6_VALUES = new Set([10, 24, 28, 30])

const FAILURES: { readonly [R in LinkFailure]: LinkResult } = {
  truncated: fail('truncated'),
  'not-ip': fail('not-ip'),
  'too-many-vlan-tags': fail('too-many-vlan-tags'),
  'version-mismatch': fail('version-mismatch'),
  'not-for-host': fail('not-for-host'),
  'tagged-copy': fail('tagged-copy'),
}

const AT_START: LinkResult = Object.freeze({ ok: true, offset: 0 })

function fail(reason: LinkFailure): LinkResult {
  return Object.freeze({ ok: false, reason })
}

/**
 * Maps the link-type name the `cap` addon returns from open() to a LinkType, or null when it is not one we parse.
 * cap names five types and reports the others as "Unknown linktype <DLT number>", so those are read by number.
 */
export function parseLinkTypeName(name: string): LinkType | null {
  if (name === 'ETHERNET') return 'ethernet'
  if (name === 'LINKTYPE_LINUX_SLL') return 'linux-sll'
  if (name === 'RAW') return 'raw'
  if (name === 'NULL') return 'null'
  const m = /^Unknown linktype (\d+)$/.exec(name)
  if (m === null) return null
  const dlt = Number(m[1])
  // 276 LINUX_SLL2, 228 IPV4, 229 IPV6; 12 and 14 are DLT_RAW on systems where libpcap does not map it to RAW.
  if (dlt === 276) return 'linux-sll2'
  if (dlt === 228) return 'ipv4'
  if (dlt === 229) return 'ipv6'
  if (dlt === 12 || dlt === 14 || dlt === 101) return 'raw'
  return null
}

/**
 * Returns where the IP packet starts in `frame` (which ends where the captured bytes end), or why there is none. The
 * packet's first byte is checked against what the link header announced, so the IP parser only gets IPv4 where the
 * link layer said IPv4.
 */
export function stripLinkHeader(linkType: LinkType, frame: Uint8Array): LinkResult {
  switch (linkType) {
    case 'ethernet':
      if (frame.length < ETHERNET_HEADER) return FAILURES.truncated
      return afterEthertype(frame, ETHERNET_HEADER - 2)
    case 'linux-sll':
      if (frame.length < SLL_HEADER) return FAILURES.truncated
      if (u16(frame, 0) !== PACKET_HOST) return FAILURES['not-for-host']
      return afterCookedType(frame, u16(frame, SLL_HEADER - 2), SLL_HEADER)
    case 'linux-sll2':
      if (frame.length < SLL2_HEADER) return FAILURES.truncated
      if (u8(frame, 10) !== PACKET_HOST) return FAILURES['not-for-host']
      return afterCookedType(frame, u16(frame, 0), SLL2_HEADER)
    case 'raw': {
      if (frame.length === 0) return FAILURES.truncated
      const version = u8(frame, 0) >>> 4
      return version === 4 || version === 6 ? AT_START : FAILURES['not-ip']
    }
    case 'ipv4':
      return versionAt(frame, 0, 4)
    case 'ipv6':
      return versionAt(frame, 0, 6)
    case 'null':
      return afterNullHeader(frame)
  }
}

/**
 * A cooked ("any") capture sees a frame that came in tagged on every device it passes: first on the parent, where
 * libpcap puts the tag the kernel took off back in, then untagged on the VLAN device that takes it. So the tagged
 * copy is either a duplicate or a frame for a VLAN this host does not have, which its stack drops: neither is an
 * attempt.
 */
function afterCookedType(frame: Uint8Array, protocol: number, offset: number): LinkResult {
  if (VLAN_ETHERTYPES.has(protocol)) return FAILURES['tagged-copy']
  return afterType(frame, protocol, offset)
}

/** The packet after the ethertype at `typeOffset` (Ethernet, SLL), walking any VLAN tags that follow it. */
function afterEthertype(frame: Uint8Array, typeOffset: number): LinkResult {
  return afterType(frame, u16(frame, typeOffset), typeOffset + 2)
}

/**
 * `type` is the link header's ethertype and `offset` the first byte after it. A VLAN ethertype is followed there by
 * the tag control word and the next ethertype, 4 bytes in all. libpcap puts a tag the kernel took off (VLAN offload)
 * back into the bytes it hands over, so a tagged frame looks the same whether or not the NIC stripped the tag.
 */
function afterType(frame: Uint8Array, type: number, offset: number): LinkResult {
  let ethertype = type
  let at = offset
  for (let tags = 0; VLAN_ETHERTYPES.has(ethertype); tags++) {
    if (tags === MAX_VLAN_TAGS) return FAILURES['too-many-vlan-tags']
    if (at + 4 > frame.length) return FAILURES.truncated
    ethertype = u16(frame, at + 2)
    at += 4
  }
  if (ethertype === ETHERTYPE_IPV4) return versionAt(frame, at, 4)
  if (ethertype === ETHERTYPE_IPV6) return versionAt(frame, at, 6)
  return FAILURES['not-ip']
}

function afterNullHeader(frame: Uint8Array): LinkResult {
  if (frame.length < NULL_HEADER) return FAILURES.truncated
  // Written in the byte order of the host that captured; families are small, so one of the two readings is it.
  const little = u8(frame, 0) | (u8(frame, 1) << 8) | (u8(frame, 2) << 16) | (u8(frame, 3) << 24)
  const big = (u8(frame, 0) << 24) | (u8(frame, 1) << 16) | (u8(frame, 2) << 8) | u8(frame, 3)
  if (little === AF_INET || big === AF_INET) return versionAt(frame, NULL_HEADER, 4)
  if (AF_INET6_VALUES.has(little) || AF_INET6_VALUES.has(big)) return versionAt(frame, NULL_HEADER, 6)
  return FAILURES['not-ip']
}

/** The packet at `offset`, if the frame has a byte there and its version nibble is `version`. */
function versionAt(frame: Uint8Array, offset: number, version: number): LinkResult {
  if (offset >= frame.length) return FAILURES.truncated
  if (u8(frame, offset) >>> 4 !== version) return FAILURES['version-mismatch']
  return { ok: true, offset }
}

// Reads never go past the frame: callers check bounds first, and `?? 0` only satisfies noUncheckedIndexedAccess.
function u8(bytes: Uint8Array, index: number): number {
  return bytes[index] ?? 0
}

function u16(bytes: Uint8Array, index: number): number {
  return ((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)
}
