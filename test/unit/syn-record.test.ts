import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseSynBatch, parseSynRecord, SYN_RECORD_BYTES } from '../../src/monitor/ebpf/syn-record.js'
import { parseUdpBatch, UDP_RECORD_HEADER_BYTES } from '../../src/monitor/ebpf/udp-record.js'

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex')
}

// What synfacts.bpf.c writes for 198.18.7.2:40000 -> 198.18.7.1:22, TTL 64, id 0x1c46, DF, window 64240,
// options MSS 1460, SACK-permitted, timestamps, NOP, window scale 7, at 123456789 ns on ifindex 2.
const RECORD_V4 = hex(`
  01 04 40 01  1c 46 9c 40  00 16 fa f0  05 b4 07 02  03 05 00 00  00 00 00 02  00 00 00 00 07 5b cd 15
  c6 12 07 02 00 00 00 00 00 00 00 00 00 00 00 00
  c6 12 07 01 00 00 00 00 00 00 00 00 00 00 00 00
  02 04 08 01 03 00 00 00 00 00 00 00 00 00 00 00`)

// fd00:4854:7::2:50000 -> fd00:4854:7::1:443, hop limit 55, window 29200, no options, ECE|CWR|SYN.
const RECORD_V6 = hex(`
  01 06 37 00  00 00 c3 50  01 bb 72 10  00 00 00 c2  00 00 00 00  00 00 00 03  00 00 00 00 00 00 00 01
  fd 00 48 54 00 07 00 00 00 00 00 00 00 00 00 02
  fd 00 48 54 00 07 00 00 00 00 00 00 00 00 00 01
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`)

describe('parseSynRecord', () => {
  it('reads an IPv4 record into the SynFacts shape', () => {
    expect(RECORD_V4.length).toBe(SYN_RECORD_BYTES)
    expect(parseSynRecord(RECORD_V4)).toEqual({
      ok: true,
      record: {
        family: 4, srcAddress: '198.18.7.2', srcPort: 40000, dstAddress: '198.18.7.1', dstPort: 22, ifindex: 2,
        monotonicNs: 123456789n, optionsTruncated: false,
        facts: { ttl: 64, ipId: 0x1c46, dontFragment: true, tcpWindow: 64240, tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3], mss: 1460, windowScale: 7 },
      },
    })
  })

  it('reads an IPv6 record: no id, no DF, no MSS or window scale when the flags say absent', () => {
    expect(parseSynRecord(RECORD_V6)).toEqual({
      ok: true,
      record: {
        family: 6, srcAddress: 'fd00:4854:7::2', srcPort: 50000, dstAddress: 'fd00:4854:7::1', dstPort: 443, ifindex: 3,
        monotonicNs: 1n, optionsTruncated: false,
        facts: { ttl: 55, ipId: null, dontFragment: false, tcpWindow: 29200, tcpFlags: 0xc2, tcpOptions: [], mss: null, windowScale: null },
      },
    })
  })

  it('refuses short buffers, unknown versions and families, and impossible option counts', () => {
    for (let length = 0; length < SYN_RECORD_BYTES; length++) expect(parseSynRecord(RECORD_V4.subarray(0, length))).toEqual({ ok: false, reason: 'short' })
    const bad = (offset: number, value: number): Buffer => {
      const copy = Buffer.from(RECORD_V4)
      copy[offset] = value
      return copy
    }
    expect(parseSynRecord(bad(0, 2))).toEqual({ ok: false, reason: 'version' })
    expect(parseSynRecord(bad(1, 5))).toEqual({ ok: false, reason: 'family' })
    expect(parseSynRecord(bad(17, 17))).toEqual({ ok: false, reason: 'option-count' })
    expect(parseSynRecord(bad(16, 0x04))).toMatchObject({ ok: true, record: { optionsTruncated: true, facts: { mss: null, windowScale: null } } })
  })

  it('reads a record from inside a larger buffer at a non-zero offset', () => {
    const padded = Buffer.concat([Buffer.alloc(3), RECORD_V4, Buffer.alloc(5)])
    expect(parseSynRecord(padded.subarray(3, 3 + SYN_RECORD_BYTES))).toEqual(parseSynRecord(RECORD_V4))
  })

  it('never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const result = parseSynRecord(bytes)
      if (result.ok) expect(result.record.facts.tcpOptions.length).toBeLessThanOrEqual(16)
    }))
  })
})

describe('parseSynBatch', () => {
  it('splits a batch and counts a trailing partial record and refused records', () => {
    const batch = Buffer.concat([RECORD_V4, RECORD_V6, Buffer.alloc(SYN_RECORD_BYTES), RECORD_V4.subarray(0, 10)])
    const { records, unparsable } = parseSynBatch(batch)
    expect(records.map((r) => r.dstPort)).toEqual([22, 443])
    expect(unparsable).toBe(2)
  })
})

describe('parseUdpBatch', () => {
  function udpRecord(payload: string, change: (header: Buffer) => void = () => undefined): Buffer {
    const header = Buffer.alloc(UDP_RECORD_HEADER_BYTES)
    header.writeUInt8(1, 0)
    header.writeUInt8(4, 1)
    header.writeUInt8(63, 2)
    header.writeUInt8(0x06, 3) // ttl known, destination known
    header.writeUInt16BE(5353, 4)
    header.writeUInt16BE(161, 6)
    header.writeUInt32BE(payload.length, 8)
    header.writeUInt32BE(payload.length, 12)
    Buffer.from([198, 18, 7, 2]).copy(header, 16)
    Buffer.from([198, 18, 7, 1]).copy(header, 32)
    change(header)
    return Buffer.concat([header, Buffer.from(payload)])
  }

  it('reads datagrams with their original destination, payload and TTL', () => {
    const { datagrams, unparsable } = parseUdpBatch(Buffer.concat([udpRecord('abc'), udpRecord('')]))
    expect(unparsable).toBe(0)
    expect(datagrams).toEqual([
      { family: 4, srcAddress: '198.18.7.2', srcPort: 5353, dstAddress: '198.18.7.1', dstPort: 161, ttl: 63, datagramBytes: 3, truncated: false, payload: Buffer.from('abc') },
      { family: 4, srcAddress: '198.18.7.2', srcPort: 5353, dstAddress: '198.18.7.1', dstPort: 161, ttl: 63, datagramBytes: 0, truncated: false, payload: Buffer.alloc(0) },
    ])
  })

  it('stops at a header that claims more bytes than the batch holds, or is short, or malformed', () => {
    const good = udpRecord('ok')
    const liar = udpRecord('xy', (h) => h.writeUInt32BE(1000, 8))
    expect(parseUdpBatch(Buffer.concat([good, liar]))).toMatchObject({ datagrams: [{ payload: Buffer.from('ok') }], unparsable: 1 })
    expect(parseUdpBatch(Buffer.concat([good, good.subarray(0, 20)])).unparsable).toBe(1)
    expect(parseUdpBatch(udpRecord('a', (h) => h.writeUInt8(9, 1)))).toEqual({ datagrams: [], unparsable: 1 })
    expect(parseUdpBatch(udpRecord('a', (h) => h.writeUInt8(0x00, 3)))).toMatchObject({ datagrams: [{ dstAddress: '', dstPort: 0, ttl: null }] })
  })

  it('never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const { datagrams } = parseUdpBatch(Buffer.from(bytes))
      for (const d of datagrams) expect(d.payload.length).toBeLessThanOrEqual(bytes.length)
    }))
  })
})
