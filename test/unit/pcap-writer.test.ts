import { describe, expect, it } from 'vitest'
import {
  internetChecksum,
  ipv4Packet,
  ipv6Packet,
  onesComplementSum,
  pcapFileHeader,
  pcapRecord,
  PROTO_TCP,
  PROTO_UDP,
  splitBytes,
  TCP_ACK,
  TCP_PSH,
  tcpSegment,
  transportChecksum,
  udpDatagram,
  type FlowEnds,
} from '../../src/store/pcap-writer.js'

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex')

// The ends of the known vectors below (documentation addresses, RFC 5737 and RFC 3849).
const V4: FlowEnds = { srcAddress: hex('c0000201'), dstAddress: hex('c6336407'), srcPort: 51_000, dstPort: 53 }
const V6: FlowEnds = {
  srcAddress: hex('20010db8000000000000000000000001'),
  dstAddress: hex('20010db8000000000000000000000002'),
  srcPort: 51_000,
  dstPort: 80,
}
const HELLO = Buffer.from('hello, world!') // 13 bytes: an odd length, so the padding byte is exercised

// A receiver's check written independently of the module: the sum of pseudo header and segment, checksum included,
// folds to 0xffff when the checksum is right.
function receiverSum(src: Uint8Array, dst: Uint8Array, protocol: number, segment: Buffer): number {
  const words: number[] = []
  const pseudo = Buffer.concat([src, dst, Buffer.from([0, protocol]), Buffer.from([segment.length >> 8, segment.length & 0xff])])
  const all = Buffer.concat([pseudo, segment, Buffer.alloc(segment.length % 2)])
  for (let i = 0; i < all.length; i += 2) words.push(all.readUInt16BE(i))
  let sum = words.reduce((a, w) => a + w, 0)
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return sum
}

describe('internet checksum', () => {
  it('matches RFC 1071 section 3 and an odd-length buffer', () => {
    // RFC 1071's example: the words 0001 f203 f4f5 f6f7 sum to 0xddf2 once folded.
    const data = hex('0001 f203 f4f5 f6f7')
    expect(onesComplementSum(data)).toBe(0x2ddf0) // unfolded: the carry is added back only when finishing
    expect(internetChecksum(data)).toBe(0x220d) // ~0xddf2
    expect(internetChecksum(hex('01'))).toBe(0xfeff) // one byte is the high half of a zero-padded word
    expect(internetChecksum(Buffer.alloc(0))).toBe(0xffff)
  })

  it('gives the header checksum of a well-known IPv4 header (0xb861)', () => {
    const header = hex('4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7')
    expect(internetChecksum(header)).toBe(0xb861)
    const packet = ipv4Packet(hex('c0a80001'), hex('c0a800c7'), PROTO_UDP, Buffer.alloc(0x73 - 20), 0)
    expect(packet.subarray(0, 20).toString('hex')).toBe('45000073000040004011b861c0a80001c0a800c7')
  })

  it('gives the TCP and UDP checksums Wireshark validates, over IPv4 and IPv6 pseudo headers', () => {
    // Values checked with tshark -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE (status Good).
    expect(udpDatagram(V4, HELLO).readUInt16BE(6)).toBe(0xeacd)
    expect(udpDatagram(V6, HELLO).readUInt16BE(6)).toBe(0x7b7a)
    const fields = { seq: 0x01020304, ack: 0x0a0b0c0d, flags: TCP_ACK | TCP_PSH, window: 65_535, payload: HELLO }
    expect(tcpSegment(V4, fields).readUInt16BE(16)).toBe(0x80ab)
    expect(tcpSegment(V6, fields).readUInt16BE(16)).toBe(0x1158)
    expect(ipv4Packet(V4.srcAddress, V4.dstAddress, PROTO_UDP, udpDatagram(V4, HELLO), 1).readUInt16BE(10)).toBe(0x4e87)
  })

  it('passes an independent receiver check for every payload length around a word boundary', () => {
    for (const ends of [V4, V6]) {
      for (let length = 0; length < 40; length++) {
        const payload = Buffer.alloc(length, 0xa5 + length)
        const udp = udpDatagram(ends, payload)
        const tcp = tcpSegment(ends, { seq: length * 7919, ack: 0xffff_fff0 + length, flags: TCP_ACK, window: 1_024, payload })
        expect(receiverSum(ends.srcAddress, ends.dstAddress, PROTO_UDP, udp)).toBe(0xffff)
        expect(receiverSum(ends.srcAddress, ends.dstAddress, PROTO_TCP, tcp)).toBe(0xffff)
      }
    }
  })

  it('sends a UDP checksum that computes to 0 as 0xffff', () => {
    // Choose the last payload word so that the datagram's sum folds to 0xffff, i.e. a computed checksum of 0.
    const payload = Buffer.alloc(4)
    const probe = Buffer.alloc(8 + payload.length)
    probe.writeUInt16BE(V4.srcPort, 0)
    probe.writeUInt16BE(V4.dstPort, 2)
    probe.writeUInt16BE(probe.length, 4)
    const partial = 0xffff - (~transportChecksum(V4.srcAddress, V4.dstAddress, PROTO_UDP, probe) & 0xffff)
    payload.writeUInt16BE(partial, 2)
    const datagram = udpDatagram(V4, payload)
    expect(datagram.readUInt16BE(6)).toBe(0xffff)
    expect(receiverSum(V4.srcAddress, V4.dstAddress, PROTO_UDP, datagram)).toBe(0xffff)
  })
})

describe('packet and file builders', () => {
  it('writes the IPv6 payload length and next header', () => {
    const packet = ipv6Packet(V6.srcAddress, V6.dstAddress, PROTO_UDP, udpDatagram(V6, HELLO))
    expect(packet[0]! >> 4).toBe(6)
    expect(packet.readUInt16BE(4)).toBe(8 + HELLO.length)
    expect(packet[6]).toBe(PROTO_UDP)
    expect(packet.subarray(8, 24)).toEqual(Buffer.from(V6.srcAddress))
  })

  it('writes a classic pcap header (v2.4, microseconds, snaplen 262144, LINKTYPE_RAW) and records', () => {
    expect(pcapFileHeader().toString('hex')).toBe('d4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + '00000400' + '65000000')
    const record = pcapRecord(1_700_000_000_123_456, hex('4500'))
    expect(record.readUInt32LE(0)).toBe(1_700_000_000)
    expect(record.readUInt32LE(4)).toBe(123_456)
    expect(record.readUInt32LE(8)).toBe(2)
    expect(record.readUInt32LE(12)).toBe(2)
    expect(record.subarray(16).toString('hex')).toBe('4500')
    expect(pcapRecord(-5, Buffer.alloc(0)).readUInt32LE(0)).toBe(0) // a time before 1970 is clamped, not wrapped
  })

  it('splits bytes into views of at most the given size and refuses a size that never advances', () => {
    expect([...splitBytes(Buffer.alloc(3_000), 1_460)].map((b) => b.length)).toEqual([1_460, 1_460, 80])
    expect([...splitBytes(Buffer.alloc(0), 1_460)]).toEqual([])
    expect(() => [...splitBytes(Buffer.alloc(5), 0)]).toThrow(RangeError)
  })
})
