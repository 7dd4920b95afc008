/**
 * Builds a classic libpcap file (https://wiki.wireshark.org/Development/LibpcapFileFormat) out of synthetic IPv4/IPv6
 * TCP and UDP packets. Pure: every function returns new Buffers, so a caller can stream them one record at a time.
 *
 * Link type RAW (101): each record is a bare IP packet, version read from its first nibble, so one file mixes IPv4
 * and IPv6 sessions and no Ethernet addresses have to be made up. Checksums are real (RFC 1071 over the RFC 793 /
 * RFC 8200 pseudo header), so Wireshark's checksum validation passes and tools that drop bad-checksum packets keep them.
 */

export const PCAP_MAGIC = 0xa1b2c3d4 // microsecond timestamps
export const PCAP_SNAPLEN = 262_144
export const LINKTYPE_RAW = 101
export const PROTO_TCP = 6
export const PROTO_UDP = 17
export const TCP_MSS_IPV4 = 1_460 // 1500-byte MTU less 20 (IPv4) and 20 (TCP)
export const TCP_MSS_IPV6 = 1_440 // 1500-byte MTU less 40 (IPv6) and 20 (TCP)
export const UDP_MAX_PAYLOAD = 65_507 // 65535 less 20 (IPv4) and 8 (UDP); kept for IPv6 too so both split alike

export const TCP_FIN = 0x01
export const TCP_SYN = 0x02
export const TCP_RST = 0x04
export const TCP_PSH = 0x08
export const TCP_ACK = 0x10

const IPV4_HEADER = 20
const IPV6_HEADER = 40
const TCP_HEADER = 20
const UDP_HEADER = 8
const TTL = 64

/** The 24-byte file header, written once before the first record. */
export function pcapFileHeader(): Buffer {
  const header = Buffer.alloc(24)
  header.writeUInt32LE(PCAP_MAGIC, 0) // little-endian: readers tell the byte order from how the magic reads
  header.writeUInt16LE(2, 4) // version 2.4
  header.writeUInt16LE(4, 6)
  header.writeInt32LE(0, 8) // thiszone: timestamps are UTC
  header.writeUInt32LE(0, 12) // sigfigs
  header.writeUInt32LE(PCAP_SNAPLEN, 16)
  header.writeUInt32LE(LINKTYPE_RAW, 20)
  return header
}

/** One record: the 16-byte record header and the packet, stamped `timestampUs` microseconds after the epoch. */
export function pcapRecord(timestampUs: number, packet: Buffer): Buffer {
  // The classic format holds seconds in 32 bits: a time outside 1970..2106 (a hand-edited row) is clamped, not wrapped.
  const us = Math.min(Math.max(Math.floor(timestampUs), 0), 0xffff_ffff * 1_000_000)
  const captured = Math.min(packet.length, PCAP_SNAPLEN)
  const record = Buffer.alloc(16 + captured)
  record.writeUInt32LE(Math.floor(us / 1_000_000), 0)
  record.writeUInt32LE(us % 1_000_000, 4)
  record.writeUInt32LE(captured, 8)
  record.writeUInt32LE(packet.length, 12)
  packet.copy(record, 16, 0, captured)
  return record
}

/**
 * Adds `data` to a running 32-bit one's complement sum of 16-bit big-endian words (RFC 1071). An odd length is padded
 * with a zero byte, so only the last part of a multi-part sum may have an odd length.
 */
export function onesComplementSum(data: Uint8Array, initial = 0): number {
  let sum = initial
  const even = data.length & ~1
  for (let i = 0; i < even; i += 2) {
    sum += ((data[i] ?? 0) << 8) | (data[i + 1] ?? 0)
    // Folding as we go keeps the sum far from 2^53 whatever the length.
    if (sum > 0xffff_ffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000)
  }
  if (even < data.length) sum += (data[even] ?? 0) << 8
  return sum
}

/** The 16-bit Internet checksum of a finished sum: the one's complement of the folded sum. */
export function finishChecksum(sum: number): number {
  let folded = sum
  // Each fold at least halves what is above 16 bits, so this ends within a few rounds.
  while (folded > 0xffff) folded = (folded & 0xffff) + Math.floor(folded / 0x10000)
  return ~folded & 0xffff
}

/** The Internet checksum of one buffer (RFC 1071). */
export function internetChecksum(data: Uint8Array): number {
  return finishChecksum(onesComplementSum(data))
}

// The pseudo header's sum: addresses, protocol and transport length (RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6).
function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  let sum = onesComplementSum(src)
  sum = onesComplementSum(dst, sum)
  if (src.length === 4) return sum + protocol + length
  return sum + protocol + (length & 0xffff) + Math.floor(length / 0x10000)
}

/** The checksum of a TCP or UDP header+payload whose checksum field is zero, over the pseudo header of src and dst. */
export function transportChecksum(src: Uint8Array, dst: Uint8Array, protocol: number, segment: Uint8Array): number {
  return finishChecksum(onesComplementSum(segment, pseudoHeaderSum(src, dst, protocol, segment.length)))
}

/** An IPv4 packet (DF set, no options) around `payload`, with its header checksum. */
export function ipv4Packet(src: Uint8Array, dst: Uint8Array, protocol: number, payload: Buffer, identification: number): Buffer {
  const packet = Buffer.alloc(IPV4_HEADER + payload.length)
  packet[0] = 0x45 // version 4, 5 words of header
  packet.writeUInt16BE(packet.length, 2)
  packet.writeUInt16BE(identification & 0xffff, 4)
  packet.writeUInt16BE(0x4000, 6) // don't fragment, offset 0
  packet[8] = TTL
  packet[9] = protocol
  packet.set(src, 12)
  packet.set(dst, 16)
  packet.writeUInt16BE(internetChecksum(packet.subarray(0, IPV4_HEADER)), 10)
  payload.copy(packet, IPV4_HEADER)
  return packet
}

/** An IPv6 packet (no extension headers) around `payload`. */
export function ipv6Packet(src: Uint8Array, dst: Uint8Array, nextHeader: number, payload: Buffer): Buffer {
  const packet = Buffer.alloc(IPV6_HEADER + payload.length)
  packet.writeUInt32BE(0x6000_0000, 0) // version 6, traffic class 0, flow label 0
  packet.writeUInt16BE(payload.length, 4)
  packet[6] = nextHeader
  packet[7] = TTL
  packet.set(src, 8)
  packet.set(dst, 24)
  payload.copy(packet, IPV6_HEADER)
  return packet
}

/** One direction of a flow: addresses are 4 or 16 network-order bytes, both of the same family. */
export interface FlowEnds {
  readonly srcAddress: Uint8Array
  readonly dstAddress: Uint8Array
  readonly srcPort: number
  readonly dstPort: number
}

/** The header fields of one TCP segment that vary; the rest (ports, offsets, checksum) follow from the ends and data. */
export interface TcpFields {
  readonly seq: number
  readonly ack: number
  readonly flags: number // TCP_SYN | TCP_ACK ...
  readonly window: number
  readonly options?: Buffer | undefined // a multiple of 4 bytes
  readonly payload?: Buffer | undefined
}

/** A TCP segment (header, options, payload) with its checksum over the pseudo header of `ends`. */
export function tcpSegment(ends: FlowEnds, fields: TcpFields): Buffer {
  const options = fields.options ?? Buffer.alloc(0)
  const payload = fields.payload ?? Buffer.alloc(0)
  const headerLength = TCP_HEADER + options.length
  const segment = Buffer.alloc(headerLength + payload.length)
  segment.writeUInt16BE(ends.srcPort, 0)
  segment.writeUInt16BE(ends.dstPort, 2)
  segment.writeUInt32BE(fields.seq >>> 0, 4)
  segment.writeUInt32BE(fields.ack >>> 0, 8)
  segment[12] = (headerLength / 4) << 4
  segment[13] = fields.flags
  segment.writeUInt16BE(fields.window, 14)
  options.copy(segment, TCP_HEADER)
  payload.copy(segment, headerLength)
  segment.writeUInt16BE(transportChecksum(ends.srcAddress, ends.dstAddress, PROTO_TCP, segment), 16)
  return segment
}

/** A UDP datagram with its checksum over the pseudo header of `ends` (payload at most UDP_MAX_PAYLOAD bytes). */
export function udpDatagram(ends: FlowEnds, payload: Buffer): Buffer {
  const datagram = Buffer.alloc(UDP_HEADER + payload.length)
  datagram.writeUInt16BE(ends.srcPort, 0)
  datagram.writeUInt16BE(ends.dstPort, 2)
  datagram.writeUInt16BE(datagram.length, 4)
  payload.copy(datagram, UDP_HEADER)
  const checksum = transportChecksum(ends.srcAddress, ends.dstAddress, PROTO_UDP, datagram)
  // A computed 0 is sent as 0xffff: 0 means "no checksum" in IPv4 and is forbidden in IPv6 (RFC 768, RFC 8200).
  datagram.writeUInt16BE(checksum === 0 ? 0xffff : checksum, 6)
  return datagram
}

/** The IP packet carrying `transport` between the ends' addresses; the family follows the address length. */
export function ipPacket(ends: FlowEnds, protocol: number, transport: Buffer, identification: number): Buffer {
  return ends.srcAddress.length === 4
    ? ipv4Packet(ends.srcAddress, ends.dstAddress, protocol, transport, identification)
    : ipv6Packet(ends.srcAddress, ends.dstAddress, protocol, transport)
}

/** Cuts `data` into views of at most `maxBytes` (an MSS, a datagram's limit) without copying; none for empty data. */
export function* splitBytes(data: Buffer, maxBytes: number): Generator<Buffer> {
  // A size below 1 would never advance: a caller's bug, caught before it loops.
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`splitBytes needs a positive size, got ${maxBytes}`)
  for (let at = 0; at < data.length; at += maxBytes) yield data.subarray(at, at + maxBytes)
}

/** The same flow seen from the other end. */
export function reverseEnds(ends: FlowEnds): FlowEnds {
  return { srcAddress: ends.dstAddress, dstAddress: ends.srcAddress, srcPort: ends.dstPort, dstPort: ends.srcPort }
}
