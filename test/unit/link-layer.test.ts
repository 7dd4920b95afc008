import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parsePacket } from '../../src/monitor/ip-packet.js'
import { parseLinkTypeName, stripLinkHeader, type LinkFailure, type LinkResult, type LinkType } from '../../src/monitor/link-layer.js'

// A Linux SYN, 192.168.1.10:54321 -> 192.168.1.20:22 (the same bytes as ip-packet.test.ts's first fixture).
const SYN_V4 = hex(`
  45 00 00 3c 1c 46 40 00 40 06 9b 07 c0 a8 01 0a c0 a8 01 14
  d4 31 00 16 6e 2f 4a 1b 00 00 00 00 a0 02 fa f0 50 ea 00 00
  02 04 05 b4 04 02 08 0a 9a 3c 51 e7 00 00 00 00 01 03 03 07`)
// The first bytes of an IPv6 header are enough for the link layer, which reads only the version nibble.
const V6_START = hex('60 05 a3 c1 00 28 06 40')
const MACS = hex('02 00 00 00 00 02 02 00 00 00 00 01')
const LINK_TYPES: readonly LinkType[] = ['ethernet', 'linux-sll', 'linux-sll2', 'raw', 'ipv4', 'ipv6', 'null']

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'))
}

function concat(...parts: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts))
}

function u16(value: number): Uint8Array {
  return Uint8Array.of(value >>> 8, value & 0xff)
}

/** An Ethernet frame: MACs, then each VLAN tag as TPID + TCI, then the ethertype and the payload. */
function ethernet(ethertype: number, payload: Uint8Array, tags: readonly (readonly [number, number])[] = []): Uint8Array {
  const tagBytes = tags.map(([tpid, tci]) => concat(u16(tpid), u16(tci)))
  return concat(MACS, ...tagBytes, u16(ethertype), payload)
}

/** A Linux cooked (SLL) frame: packet type, ARPHRD_ETHER, address length 6, the address padded to 8, protocol. */
function sll(packetType: number, protocol: number, payload: Uint8Array): Uint8Array {
  return concat(u16(packetType), u16(1), u16(6), hex('02 00 00 00 00 02 00 00'), u16(protocol), payload)
}

/** A Linux cooked v2 (SLL2) frame: protocol, reserved, ifindex, ARPHRD_ETHER, packet type, address length, address. */
function sll2(packetType: number, protocol: number, payload: Uint8Array): Uint8Array {
  return concat(u16(protocol), u16(0), hex('00 00 00 07'), u16(1), Uint8Array.of(packetType, 6), hex('02 00 00 00 00 02 00 00'), payload)
}

function failure(reason: LinkFailure): LinkResult {
  return { ok: false, reason }
}

describe('stripLinkHeader: Ethernet', () => {
  it('finds IPv4 and IPv6 after the 14-byte header', () => {
    expect(stripLinkHeader('ethernet', ethernet(0x0800, SYN_V4))).toEqual({ ok: true, offset: 14 })
    expect(stripLinkHeader('ethernet', ethernet(0x86dd, V6_START))).toEqual({ ok: true, offset: 14 })
  })

  it('walks 802.1Q, 802.1ad and 0x9100 tags, up to four', () => {
    expect(stripLinkHeader('ethernet', ethernet(0x0800, SYN_V4, [[0x8100, 10]]))).toEqual({ ok: true, offset: 18 })
    expect(stripLinkHeader('ethernet', ethernet(0x86dd, V6_START, [[0x88a8, 100], [0x8100, 10]]))).toEqual({ ok: true, offset: 22 })
    const four: [number, number][] = [[0x88a8, 1], [0x9100, 2], [0x8100, 3], [0x8100, 0xffff]]
    expect(stripLinkHeader('ethernet', ethernet(0x0800, SYN_V4, four))).toEqual({ ok: true, offset: 30 })
    expect(stripLinkHeader('ethernet', ethernet(0x0800, SYN_V4, [...four, [0x8100, 5]]))).toEqual(failure('too-many-vlan-tags'))
  })

  it('hands the IP parser the packet, whatever the tags', () => {
    const frame = ethernet(0x0800, SYN_V4, [[0x88a8, 7], [0x8100, 42]])
    const link = stripLinkHeader('ethernet', frame)
    if (!link.ok) throw new Error(link.reason)
    const parsed = parsePacket(frame.subarray(link.offset))
    expect(parsed.ok && parsed.attempt).toMatchObject({ srcAddress: '192.168.1.10', dstAddress: '192.168.1.20', dstPort: 22 })
  })

  it('refuses other ethertypes: ARP, an 802.3 length, a VLAN tag around ARP', () => {
    expect(stripLinkHeader('ethernet', ethernet(0x0806, new Uint8Array(28)))).toEqual(failure('not-ip'))
    expect(stripLinkHeader('ethernet', ethernet(0x002e, SYN_V4))).toEqual(failure('not-ip'))
    expect(stripLinkHeader('ethernet', ethernet(0x0806, SYN_V4, [[0x8100, 1]]))).toEqual(failure('not-ip'))
  })

  it('refuses a packet whose version contradicts the ethertype', () => {
    expect(stripLinkHeader('ethernet', ethernet(0x86dd, SYN_V4))).toEqual(failure('version-mismatch'))
    expect(stripLinkHeader('ethernet', ethernet(0x0800, V6_START))).toEqual(failure('version-mismatch'))
    expect(stripLinkHeader('ethernet', ethernet(0x0800, V6_START, [[0x8100, 1]]))).toEqual(failure('version-mismatch'))
  })

  it('calls every cut inside the link header or its tags truncated, and every longer cut usable', () => {
    const frame = ethernet(0x0800, SYN_V4, [[0x88a8, 7], [0x8100, 42]])
    for (let length = 0; length <= frame.length; length++) {
      const result = stripLinkHeader('ethernet', frame.subarray(0, length))
      expect(result).toEqual(length <= 22 ? failure('truncated') : { ok: true, offset: 22 })
    }
  })
})

describe('stripLinkHeader: Linux cooked captures', () => {
  it('finds the packet after SLL and SLL2 headers sent to this host', () => {
    expect(stripLinkHeader('linux-sll', sll(0, 0x0800, SYN_V4))).toEqual({ ok: true, offset: 16 })
    expect(stripLinkHeader('linux-sll', sll(0, 0x86dd, V6_START))).toEqual({ ok: true, offset: 16 })
    expect(stripLinkHeader('linux-sll2', sll2(0, 0x0800, SYN_V4))).toEqual({ ok: true, offset: 20 })
    expect(stripLinkHeader('linux-sll2', sll2(0, 0x86dd, V6_START))).toEqual({ ok: true, offset: 20 })
  })

  it('refuses the tagged copy of a frame, which the host takes untagged through its VLAN device if at all', () => {
    for (const tpid of [0x8100, 0x88a8, 0x9100]) {
      expect(stripLinkHeader('linux-sll', concat(sll(0, tpid, new Uint8Array(0)), u16(42), u16(0x0800), SYN_V4))).toEqual(failure('tagged-copy'))
      expect(stripLinkHeader('linux-sll2', concat(sll2(0, tpid, new Uint8Array(0)), u16(42), u16(0x86dd), V6_START))).toEqual(failure('tagged-copy'))
    }
  })

  it('refuses frames the kernel marked broadcast, multicast, for another host or outgoing', () => {
    for (const packetType of [1, 2, 3, 4, 0x0400, 0xffff]) {
      expect(stripLinkHeader('linux-sll', sll(packetType, 0x0800, SYN_V4))).toEqual(failure('not-for-host'))
    }
    for (const packetType of [1, 2, 3, 4, 255]) {
      expect(stripLinkHeader('linux-sll2', sll2(packetType, 0x0800, SYN_V4))).toEqual(failure('not-for-host'))
    }
  })

  it('refuses other protocols and short frames', () => {
    expect(stripLinkHeader('linux-sll', sll(0, 0x0806, SYN_V4))).toEqual(failure('not-ip'))
    expect(stripLinkHeader('linux-sll2', sll2(0, 0x0004, SYN_V4))).toEqual(failure('not-ip'))
    const frame = sll(0, 0x0800, SYN_V4)
    for (let length = 0; length <= 16; length++) expect(stripLinkHeader('linux-sll', frame.subarray(0, length))).toEqual(failure('truncated'))
    const frame2 = sll2(0, 0x0800, SYN_V4)
    for (let length = 0; length <= 20; length++) expect(stripLinkHeader('linux-sll2', frame2.subarray(0, length))).toEqual(failure('truncated'))
  })
})

describe('stripLinkHeader: raw IP and BSD loopback', () => {
  it('takes raw IPv4 and IPv6 at offset 0 and nothing else', () => {
    expect(stripLinkHeader('raw', SYN_V4)).toEqual({ ok: true, offset: 0 })
    expect(stripLinkHeader('raw', V6_START)).toEqual({ ok: true, offset: 0 })
    expect(stripLinkHeader('raw', hex('55 00'))).toEqual(failure('not-ip'))
    expect(stripLinkHeader('raw', new Uint8Array(0))).toEqual(failure('truncated'))
    expect(stripLinkHeader('ipv4', SYN_V4)).toEqual({ ok: true, offset: 0 })
    expect(stripLinkHeader('ipv4', V6_START)).toEqual(failure('version-mismatch'))
    expect(stripLinkHeader('ipv6', V6_START)).toEqual({ ok: true, offset: 0 })
    expect(stripLinkHeader('ipv6', SYN_V4)).toEqual(failure('version-mismatch'))
    expect(stripLinkHeader('ipv6', new Uint8Array(0))).toEqual(failure('truncated'))
  })

  it('reads the loopback address family in either byte order, with each system AF_INET6', () => {
    expect(stripLinkHeader('null', concat(hex('02 00 00 00'), SYN_V4))).toEqual({ ok: true, offset: 4 })
    expect(stripLinkHeader('null', concat(hex('00 00 00 02'), SYN_V4))).toEqual({ ok: true, offset: 4 })
    for (const af of ['0a 00 00 00', '00 00 00 18', '1c 00 00 00', '00 00 00 1e']) {
      expect(stripLinkHeader('null', concat(hex(af), V6_START))).toEqual({ ok: true, offset: 4 })
    }
    expect(stripLinkHeader('null', concat(hex('02 00 00 00'), V6_START))).toEqual(failure('version-mismatch'))
    expect(stripLinkHeader('null', concat(hex('07 00 00 00'), SYN_V4))).toEqual(failure('not-ip'))
    expect(stripLinkHeader('null', concat(hex('02 00 00 01'), SYN_V4))).toEqual(failure('not-ip'))
    expect(stripLinkHeader('null', hex('02 00 00'))).toEqual(failure('truncated'))
    expect(stripLinkHeader('null', hex('02 00 00 00'))).toEqual(failure('truncated'))
  })
})

describe('parseLinkTypeName', () => {
  it("maps cap's names and the DLT numbers it reports as unknown", () => {
    expect(parseLinkTypeName('ETHERNET')).toBe('ethernet')
    expect(parseLinkTypeName('LINKTYPE_LINUX_SLL')).toBe('linux-sll')
    expect(parseLinkTypeName('RAW')).toBe('raw')
    expect(parseLinkTypeName('NULL')).toBe('null')
    expect(parseLinkTypeName('Unknown linktype 276')).toBe('linux-sll2')
    expect(parseLinkTypeName('Unknown linktype 228')).toBe('ipv4')
    expect(parseLinkTypeName('Unknown linktype 229')).toBe('ipv6')
    expect(parseLinkTypeName('Unknown linktype 12')).toBe('raw')
  })

  it('returns null for link types it does not parse', () => {
    for (const name of ['IEEE802_11_RADIO', 'Unknown linktype 127', 'Unknown linktype ', 'ethernet', '', 'Unknown linktype 276 ']) {
      expect(parseLinkTypeName(name)).toBeNull()
    }
  })
})

describe('stripLinkHeader on hostile bytes (fast-check)', () => {
  const linkTypeArb = fc.constantFrom(...LINK_TYPES)

  it('never throws, and an offset it returns points at an IPv4 or IPv6 version nibble inside the frame', () => {
    fc.assert(
      fc.property(linkTypeArb, fc.uint8Array({ maxLength: 96 }), (linkType, bytes) => {
        const result = stripLinkHeader(linkType, bytes)
        if (!result.ok) return
        expect(result.offset).toBeGreaterThanOrEqual(0)
        expect(result.offset).toBeLessThan(bytes.length)
        expect([4, 6]).toContain((bytes[result.offset] ?? 0) >>> 4)
      }),
      { numRuns: 20_000 },
    )
  })

  it('never throws on frames built from link-layer pieces (VLAN stacks, cooked headers, cut anywhere)', () => {
    const typeArb = fc.constantFrom(0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806, 0x0000, 0xffff)
    const pieceArb = fc.oneof(typeArb.map(u16), fc.uint8Array({ minLength: 1, maxLength: 6 }), fc.constant(SYN_V4), fc.constant(V6_START))
    fc.assert(
      fc.property(linkTypeArb, fc.array(pieceArb, { maxLength: 12 }), fc.nat(), (linkType, pieces, cut) => {
        const frame = concat(...pieces)
        const result = stripLinkHeader(linkType, frame.subarray(0, frame.length === 0 ? 0 : cut % (frame.length + 1)))
        expect(typeof result.ok).toBe('boolean')
      }),
      { numRuns: 20_000 },
    )
  })

  it('finds the packet after any stack of 0 to 4 tags with any tag control words and MACs', () => {
    const tagArb = fc.tuple(fc.constantFrom(0x8100, 0x88a8, 0x9100), fc.integer({ min: 0, max: 0xffff }))
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.array(tagArb, { maxLength: 4 }), (macs, tags) => {
        const frame = concat(macs, ethernet(0x0800, SYN_V4, tags).subarray(12))
        expect(stripLinkHeader('ethernet', frame)).toEqual({ ok: true, offset: 14 + 4 * tags.length })
      }),
    )
  })
})
