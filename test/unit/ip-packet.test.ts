import { isIPv6 } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { formatIPv4, formatIPv6, parsePacket } from '../../src/monitor/ip-packet.js'
import type { ParseFailure, ParseResult } from '../../src/monitor/ip-packet.js'
import type { ConnectionAttempt } from '../../src/monitor/packet-source.js'

// ---------------------------------------------------------------------------------------------------------------------
// Fixtures. The two literal captures are what Linux 6.x sends for `connect()`: IP header, then a 40-byte TCP header
// with MSS, SACK-permitted, timestamps, NOP, window scale 7 (checksums computed, though the parser does not check them).

/** 192.168.1.10:54321 -> 192.168.1.20:22, TTL 64, id 0x1c46, DF, window 64240, SYN. */
const LINUX_SYN_V4 = hex(`
  45 00 00 3c 1c 46 40 00 40 06 9b 07 c0 a8 01 0a c0 a8 01 14
  d4 31 00 16 6e 2f 4a 1b 00 00 00 00 a0 02 fa f0 50 ea 00 00
  02 04 05 b4 04 02 08 0a 9a 3c 51 e7 00 00 00 00 01 03 03 07`)

/** [2001:db8:85a3::8a2e:370:7334]:40000 -> [2001:db8::2]:443, hop limit 64, window 64800, MSS 1440, SYN. */
const LINUX_SYN_V6 = hex(`
  60 05 a3 c1 00 28 06 40 20 01 0d b8 85 a3 00 00 00 00 8a 2e 03 70 73 34
  20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02
  9c 40 01 bb 11 22 33 44 00 00 00 00 a0 02 fd 20 88 31 00 00
  02 04 05 a0 04 02 08 0a 0b d1 f2 a4 00 00 00 00 01 03 03 07`)

const LINUX_SYN_V4_ATTEMPT: ConnectionAttempt = {
  family: 4,
  protocol: 'tcp',
  srcAddress: '192.168.1.10',
  srcPort: 54321,
  dstAddress: '192.168.1.20',
  dstPort: 22,
  facts: {
    ttl: 64,
    ipId: 0x1c46,
    dontFragment: true,
    tcpWindow: 64240,
    tcpFlags: 0x02,
    tcpOptions: [2, 4, 8, 1, 3],
    mss: 1460,
    windowScale: 7,
  },
}

const LINUX_OPTIONS = [0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 1, 2, 3, 4, 0, 0, 0, 0, 0x01, 0x03, 0x03, 0x07]
const V6_SRC = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]
const V6_DST = [0xfd00, 0, 0, 0, 0, 0, 0, 2]

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'))
}

function setU16(out: Uint8Array, offset: number, value: number): void {
  out[offset] = (value >>> 8) & 0xff
  out[offset + 1] = value & 0xff
}

function concat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

interface Ipv4Fields {
  readonly version?: number
  readonly ihlWords?: number // overrides the IHL computed from `options`
  readonly totalLength?: number // overrides the real length
  readonly id?: number
  readonly df?: boolean
  readonly mf?: boolean
  readonly fragmentOffset?: number // in 8-byte units
  readonly ttl?: number
  readonly protocol?: number
  readonly src?: readonly number[]
  readonly dst?: readonly number[]
  readonly options?: readonly number[] // IP options, a multiple of 4 bytes
}

function ipv4(payload: Uint8Array, f: Ipv4Fields = {}): Uint8Array {
  const options = f.options ?? []
  const headerBytes = 20 + options.length
  const out = new Uint8Array(headerBytes + payload.length)
  out[0] = ((f.version ?? 4) << 4) | (f.ihlWords ?? headerBytes / 4)
  setU16(out, 2, f.totalLength ?? out.length)
  setU16(out, 4, f.id ?? 0x1234)
  setU16(out, 6, ((f.df ?? true) ? 0x4000 : 0) | (f.mf === true ? 0x2000 : 0) | (f.fragmentOffset ?? 0))
  out[8] = f.ttl ?? 64
  out[9] = f.protocol ?? 6
  out.set(f.src ?? [198, 51, 100, 7], 12)
  out.set(f.dst ?? [203, 0, 113, 9], 16)
  out.set(options, 20)
  out.set(payload, headerBytes)
  return out
}

interface Ipv6Fields {
  readonly version?: number
  readonly payloadLength?: number // overrides the real length
  readonly nextHeader?: number
  readonly hopLimit?: number
  readonly src?: readonly number[] // 8 groups
  readonly dst?: readonly number[]
}

function ipv6(payload: Uint8Array, f: Ipv6Fields = {}): Uint8Array {
  const out = new Uint8Array(40 + payload.length)
  out[0] = ((f.version ?? 6) << 4) | 0x0b // traffic class and flow label bits must not leak into the version
  out[1] = 0xa1
  out[2] = 0x23
  out[3] = 0x45
  setU16(out, 4, f.payloadLength ?? payload.length)
  out[6] = f.nextHeader ?? 6
  out[7] = f.hopLimit ?? 64
  writeGroups(out, 8, f.src ?? V6_SRC)
  writeGroups(out, 24, f.dst ?? V6_DST)
  out.set(payload, 40)
  return out
}

function writeGroups(out: Uint8Array, offset: number, groups: readonly number[]): void {
  groups.forEach((group, i) => setU16(out, offset + i * 2, group))
}

/** A generic extension header (Hop-by-Hop, Routing, Destination Options, ...) of (units + 1) * 8 bytes, Pad1-filled. */
function extension(next: number, units = 0): Uint8Array {
  const out = new Uint8Array((units + 1) * 8)
  out[0] = next
  out[1] = units
  return out
}

function fragmentHeader(next: number, offsetUnits: number, more: boolean): Uint8Array {
  const out = new Uint8Array(8)
  out[0] = next
  setU16(out, 2, (offsetUnits << 3) | (more ? 1 : 0))
  out.set([0xde, 0xad, 0xbe, 0xef], 4) // identification
  return out
}

/** An Authentication Header of (payloadLength + 2) * 4 bytes. */
function authHeader(next: number, payloadLength: number): Uint8Array {
  const out = new Uint8Array((payloadLength + 2) * 4)
  out[0] = next
  out[1] = payloadLength
  return out
}

interface TcpFields {
  readonly srcPort?: number
  readonly dstPort?: number
  readonly window?: number
  readonly flags?: number
  readonly options?: readonly number[] // a multiple of 4 bytes
  readonly dataOffsetWords?: number // overrides the offset computed from `options`
  readonly payload?: Uint8Array
}

function tcp(f: TcpFields = {}): Uint8Array {
  const options = f.options ?? []
  if (options.length % 4 !== 0) throw new Error('TCP options must be padded to 4 bytes in the fixture')
  const headerBytes = 20 + options.length
  const payload = f.payload ?? new Uint8Array(0)
  const out = new Uint8Array(headerBytes + payload.length)
  setU16(out, 0, f.srcPort ?? 40001)
  setU16(out, 2, f.dstPort ?? 22)
  out.set([0x0a, 0x0b, 0x0c, 0x0d], 4) // sequence number
  out[12] = (f.dataOffsetWords ?? headerBytes / 4) << 4
  out[13] = f.flags ?? 0x02
  setU16(out, 14, f.window ?? 29200)
  out.set(options, 20)
  out.set(payload, headerBytes)
  return out
}

function udp(srcPort: number, dstPort: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(8 + payload.length)
  setU16(out, 0, srcPort)
  setU16(out, 2, dstPort)
  setU16(out, 4, out.length)
  out.set(payload, 8)
  return out
}

/**
 * Wraps a packet so that any index read outside it is recorded: the parser must bounds-check before reading, not
 * rely on typed arrays returning undefined.
 */
function guarded(bytes: Uint8Array): { readonly packet: Uint8Array; readonly outOfBounds: number[] } {
  const outOfBounds: number[] = []
  const packet = new Proxy(bytes, {
    get(target, key) {
      if (typeof key === 'string') {
        const index = Number(key)
        if (key !== '' && Number.isInteger(index) && (index < 0 || index >= target.length)) outOfBounds.push(index)
      }
      const value: unknown = Reflect.get(target, key)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return { packet, outOfBounds }
}

function parseGuarded(bytes: Uint8Array): ParseResult {
  const { packet, outOfBounds } = guarded(bytes)
  const result = parsePacket(packet)
  expect(outOfBounds, 'indices read outside the packet').toEqual([])
  return result
}

function failure(reason: ParseFailure): ParseResult {
  return { ok: false, reason }
}

function attemptOf(result: ParseResult): ConnectionAttempt {
  if (!result.ok) throw new Error(`expected a parsed packet, got ${result.reason}`)
  return result.attempt
}

const REASONS: readonly ParseFailure[] = [
  'truncated',
  'bad-version',
  'bad-header-length',
  'bad-total-length',
  'fragment',
  'unsupported-protocol',
  'bad-extension-header',
  'too-many-extension-headers',
]

// ---------------------------------------------------------------------------------------------------------------------

describe('parsePacket: real SYNs', () => {
  it('parses a literal Linux IPv4 SYN capture', () => {
    expect(parseGuarded(LINUX_SYN_V4)).toEqual({ ok: true, attempt: LINUX_SYN_V4_ATTEMPT })
  })

  it('parses a literal Linux IPv6 SYN capture', () => {
    expect(parseGuarded(LINUX_SYN_V6)).toEqual({
      ok: true,
      attempt: {
        family: 6,
        protocol: 'tcp',
        srcAddress: '2001:db8:85a3::8a2e:370:7334',
        srcPort: 40000,
        dstAddress: '2001:db8::2',
        dstPort: 443,
        facts: {
          ttl: 64,
          ipId: null,
          dontFragment: false,
          tcpWindow: 64800,
          tcpFlags: 0x02,
          tcpOptions: [2, 4, 8, 1, 3],
          mss: 1440,
          windowScale: 7,
        },
      },
    })
  })

  it('parses a Buffer (what the nfqueue addon hands over) like a Uint8Array', () => {
    expect(parsePacket(Buffer.from(LINUX_SYN_V4))).toEqual({ ok: true, attempt: LINUX_SYN_V4_ATTEMPT })
  })

  it('parses built IPv4 and IPv6 SYNs field by field', () => {
    const segment = tcp({ srcPort: 1025, dstPort: 445, window: 8192, flags: 0xc2, options: [2, 4, 0x05, 0x64, 1, 3, 3, 8, 1, 1, 4, 2] })
    const v4 = attemptOf(parseGuarded(ipv4(segment, { src: [10, 0, 0, 1], dst: [10, 0, 0, 2], ttl: 128, id: 0, df: false })))
    expect(v4).toEqual({
      family: 4,
      protocol: 'tcp',
      srcAddress: '10.0.0.1',
      srcPort: 1025,
      dstAddress: '10.0.0.2',
      dstPort: 445,
      facts: { ttl: 128, ipId: 0, dontFragment: false, tcpWindow: 8192, tcpFlags: 0xc2, tcpOptions: [2, 1, 3, 1, 1, 4], mss: 1380, windowScale: 8 },
    })
    const v6 = attemptOf(parseGuarded(ipv6(segment, { hopLimit: 255 })))
    expect(v6).toEqual({ ...v4, family: 6, srcAddress: '2001:db8::10', dstAddress: 'fd00::2', facts: { ...v4.facts, ttl: 255, ipId: null } })
  })

  it('skips IPv4 options (IHL > 5)', () => {
    const packet = ipv4(tcp({ options: LINUX_OPTIONS }), { options: [0x94, 0x04, 0, 0, 1, 1, 1, 0] }) // router alert, NOPs, EOL
    expect(attemptOf(parseGuarded(packet)).facts.tcpOptions).toEqual([2, 4, 8, 1, 3])
  })
})

describe('parsePacket: UDP', () => {
  it('parses a UDP datagram over IPv4', () => {
    const packet = ipv4(udp(5353, 53, hex('12 34 01 00 00 01')), { protocol: 17, ttl: 47, id: 0xbeef })
    expect(parseGuarded(packet)).toEqual({
      ok: true,
      attempt: {
        family: 4,
        protocol: 'udp',
        srcAddress: '198.51.100.7',
        srcPort: 5353,
        dstAddress: '203.0.113.9',
        dstPort: 53,
        facts: { ttl: 47, ipId: 0xbeef, dontFragment: true, tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null },
      },
    })
  })

  it('parses a UDP datagram over IPv6', () => {
    const packet = ipv6(udp(49152, 161), { nextHeader: 17, hopLimit: 3, src: [0, 0, 0, 0, 0, 0, 0, 1], dst: [0, 0, 0, 0, 0, 0, 0, 1] })
    expect(parseGuarded(packet)).toEqual({
      ok: true,
      attempt: {
        family: 6,
        protocol: 'udp',
        srcAddress: '::1',
        srcPort: 49152,
        dstAddress: '::1',
        dstPort: 161,
        facts: { ttl: 3, ipId: null, dontFragment: false, tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null },
      },
    })
  })

  it('fails a UDP header the IP length does not cover', () => {
    expect(parsePacket(ipv4(udp(1, 2), { protocol: 17, totalLength: 24 }))).toEqual(failure('bad-total-length'))
    expect(parsePacket(ipv6(udp(1, 2), { nextHeader: 17, payloadLength: 4 }))).toEqual(failure('bad-total-length'))
  })
})

describe('parsePacket: IPv6 extension headers', () => {
  it('walks Hop-by-Hop, Destination Options and a first Fragment before TCP', () => {
    const chain = concat(extension(60, 0), extension(44, 2), fragmentHeader(6, 0, true), tcp({ dstPort: 8080 }))
    const packet = ipv6(chain, { nextHeader: 0 })
    expect(attemptOf(parseGuarded(packet))).toMatchObject({ family: 6, protocol: 'tcp', dstPort: 8080, srcAddress: '2001:db8::10' })
  })

  it('walks Routing, Mobility, HIP and Shim6 headers as generic ones', () => {
    const chain = concat(extension(135, 1), extension(139, 0), extension(140, 3), extension(17, 0), udp(7, 9))
    expect(attemptOf(parseGuarded(ipv6(chain, { nextHeader: 43 })))).toMatchObject({ protocol: 'udp', srcPort: 7, dstPort: 9 })
  })

  it('sizes AH in 4-byte words plus 2', () => {
    const packet = ipv6(concat(authHeader(6, 4), tcp({ srcPort: 4242 })), { nextHeader: 51 }) // 24-byte AH
    expect(attemptOf(parseGuarded(packet)).srcPort).toBe(4242)
    // Read as 8-byte units, the same AH would end 16 bytes later, in the middle of the TCP header.
    const oddAh = ipv6(concat(authHeader(6, 1), tcp({ srcPort: 4243 })), { nextHeader: 51 }) // 12 bytes, not 8-aligned
    expect(attemptOf(parseGuarded(oddAh)).srcPort).toBe(4243)
  })

  it('does not walk AH over IPv4: the protocol field names AH, not TCP or UDP', () => {
    expect(parsePacket(ipv4(concat(authHeader(6, 4), tcp()), { protocol: 51 }))).toEqual(failure('unsupported-protocol'))
  })

  it('treats ESP, No Next Header and ICMPv6 as unsupported', () => {
    expect(parsePacket(ipv6(new Uint8Array(32), { nextHeader: 50 }))).toEqual(failure('unsupported-protocol'))
    expect(parsePacket(ipv6(concat(extension(59, 0)), { nextHeader: 60 }))).toEqual(failure('unsupported-protocol'))
    expect(parsePacket(ipv6(hex('80 00 00 00 00 01 00 01'), { nextHeader: 58 }))).toEqual(failure('unsupported-protocol'))
  })

  it('accepts 16 extension headers and refuses a 17th', () => {
    const chain = (count: number): Uint8Array =>
      concat(...Array.from({ length: count }, (_, i) => extension(i === count - 1 ? 6 : 60, 0)), tcp())
    expect(parseGuarded(ipv6(chain(16), { nextHeader: 60 })).ok).toBe(true)
    expect(parseGuarded(ipv6(chain(17), { nextHeader: 60 }))).toEqual(failure('too-many-extension-headers'))
  })

  it('refuses Hop-by-Hop anywhere but first', () => {
    expect(parsePacket(ipv6(concat(extension(0, 0), extension(6, 0), tcp()), { nextHeader: 60 }))).toEqual(failure('bad-extension-header'))
  })

  it('fails an extension header longer than the payload length, and calls a short copy truncated', () => {
    const packet = ipv6(concat(extension(6, 0), tcp()), { nextHeader: 60 })
    packet[41] = 200 // 1608 bytes claimed by the header, 28 by the payload length
    expect(parseGuarded(packet)).toEqual(failure('bad-extension-header'))
    const copied = ipv6(concat(extension(6, 3), tcp()), { nextHeader: 60 }).subarray(0, 60) // cut inside the header
    expect(parseGuarded(copied)).toEqual(failure('truncated'))
  })

  it('treats payload length 0 as empty, unless Hop-by-Hop may carry a jumbo length', () => {
    expect(parsePacket(ipv6(tcp(), { payloadLength: 0 }))).toEqual(failure('bad-total-length'))
    const jumbo = ipv6(concat(extension(6, 0), tcp()), { nextHeader: 0, payloadLength: 0 })
    expect(parseGuarded(jumbo).ok).toBe(true)
    expect(parseGuarded(jumbo.subarray(0, 60))).toEqual(failure('truncated'))
  })
})

describe('parsePacket: fragments', () => {
  it('refuses non-first IPv4 fragments, with or without MF', () => {
    expect(parsePacket(ipv4(tcp(), { fragmentOffset: 185, mf: true }))).toEqual(failure('fragment'))
    expect(parsePacket(ipv4(tcp(), { fragmentOffset: 1, df: false }))).toEqual(failure('fragment'))
  })

  it('refuses non-first IPv6 fragments', () => {
    expect(parsePacket(ipv6(concat(fragmentHeader(6, 185, false), tcp()), { nextHeader: 44 }))).toEqual(failure('fragment'))
    expect(parsePacket(ipv6(concat(fragmentHeader(17, 1, true), udp(1, 2)), { nextHeader: 44 }))).toEqual(failure('fragment'))
  })

  it('parses a first IPv4 fragment (MF set) whose transport header is complete', () => {
    const packet = ipv4(tcp({ options: LINUX_OPTIONS, payload: new Uint8Array(100) }), { mf: true, df: false })
    expect(attemptOf(parseGuarded(packet)).facts).toMatchObject({ dontFragment: false, mss: 1460 })
  })

  it('calls a first fragment that ends inside the TCP header a fragment (tiny-fragment evasion)', () => {
    const segment = tcp({ options: LINUX_OPTIONS })
    expect(parseGuarded(ipv4(segment, { mf: true, totalLength: 48 }))).toEqual(failure('fragment'))
    expect(parseGuarded(ipv4(segment, { mf: true, totalLength: 32 }))).toEqual(failure('fragment'))
    const v6 = ipv6(concat(fragmentHeader(6, 0, true), segment), { nextHeader: 44, payloadLength: 8 + 24 })
    expect(parseGuarded(v6)).toEqual(failure('fragment'))
  })

  it('parses an atomic IPv6 fragment (offset 0, no M flag)', () => {
    expect(parseGuarded(ipv6(concat(fragmentHeader(6, 0, false), tcp()), { nextHeader: 44 })).ok).toBe(true)
  })
})

describe('parsePacket: truncation and hostile headers', () => {
  const cases: readonly { readonly name: string; readonly packet: Uint8Array; readonly transportEnd: number }[] = [
    { name: 'IPv4 Linux SYN', packet: LINUX_SYN_V4, transportEnd: 60 },
    { name: 'IPv6 Linux SYN', packet: LINUX_SYN_V6, transportEnd: 80 },
    { name: 'IPv4 UDP with payload', packet: ipv4(udp(1, 2, new Uint8Array(12)), { protocol: 17, options: [1, 1, 1, 0] }), transportEnd: 32 },
    {
      name: 'IPv6 HbH + AH + Fragment + TCP',
      packet: ipv6(concat(extension(51, 1), authHeader(44, 1), fragmentHeader(6, 0, true), tcp({ options: LINUX_OPTIONS })), { nextHeader: 0 }),
      transportEnd: 40 + 16 + 12 + 8 + 40,
    },
  ]

  for (const { name, packet, transportEnd } of cases) {
    it(`handles every prefix of the ${name}: truncated before the transport header ends, parsed after`, () => {
      const whole = parseGuarded(packet)
      expect(whole.ok).toBe(true)
      for (let length = 0; length <= packet.length; length++) {
        const result = parseGuarded(packet.subarray(0, length))
        if (length < transportEnd) expect(result, `prefix of ${length} bytes`).toEqual(failure('truncated'))
        else expect(result, `prefix of ${length} bytes`).toEqual(whole)
      }
    })
  }

  it('calls a zero-length buffer truncated', () => {
    expect(parsePacket(new Uint8Array(0))).toEqual(failure('truncated'))
  })

  it('refuses versions other than 4 and 6', () => {
    expect(parsePacket(ipv4(tcp(), { version: 5 }))).toEqual(failure('bad-version'))
    expect(parsePacket(ipv4(tcp(), { version: 0 }))).toEqual(failure('bad-version'))
    expect(parsePacket(ipv6(tcp(), { version: 4 }))).not.toMatchObject({ ok: true }) // a v6 packet read as v4
    expect(parsePacket(hex('50'))).toEqual(failure('bad-version'))
  })

  it('checks the IHL against the minimum, the total length and the buffer', () => {
    expect(parsePacket(ipv4(tcp(), { ihlWords: 4 }))).toEqual(failure('bad-header-length'))
    expect(parsePacket(ipv4(tcp(), { ihlWords: 0 }))).toEqual(failure('bad-header-length'))
    expect(parsePacket(ipv4(tcp(), { ihlWords: 15 }))).toEqual(failure('bad-total-length')) // 60 > total length 40
    expect(parsePacket(ipv4(new Uint8Array(0), { ihlWords: 15, totalLength: 80 }))).toEqual(failure('truncated'))
  })

  it('checks the total length against the headers it must hold', () => {
    expect(parsePacket(ipv4(tcp(), { totalLength: 19 }))).toEqual(failure('bad-total-length'))
    expect(parsePacket(ipv4(tcp(), { totalLength: 0 }))).toEqual(failure('bad-total-length'))
    expect(parsePacket(ipv4(tcp(), { totalLength: 39 }))).toEqual(failure('bad-total-length'))
  })

  it('ignores bytes after the total length (Ethernet padding) and accepts a longer claim if the header was copied', () => {
    const padded = concat(ipv4(tcp()), hex('02 04 05 b4 00 00'))
    expect(attemptOf(parseGuarded(padded)).facts.tcpOptions).toEqual([])
    const liar = concat(ipv4(tcp({ dataOffsetWords: 6 }), { totalLength: 40 }), hex('02 04 05 b4'))
    expect(parseGuarded(liar)).toEqual(failure('bad-header-length'))
    const partialCopy = ipv4(tcp({ options: LINUX_OPTIONS }), { totalLength: 1500 })
    expect(attemptOf(parseGuarded(partialCopy))).toEqual(defaultSynAttempt())
  })

  it('checks the TCP data offset', () => {
    for (const words of [0, 1, 4]) {
      expect(parsePacket(ipv4(tcp({ dataOffsetWords: words })))).toEqual(failure('bad-header-length'))
    }
    expect(parsePacket(ipv4(tcp({ dataOffsetWords: 15 })))).toEqual(failure('bad-header-length'))
    expect(parsePacket(ipv6(tcp({ dataOffsetWords: 6 })))).toEqual(failure('bad-header-length'))
  })

  it('refuses protocols other than TCP and UDP', () => {
    for (const protocol of [0, 1, 2, 41, 47, 50, 132, 255]) {
      expect(parsePacket(ipv4(tcp(), { protocol }))).toEqual(failure('unsupported-protocol'))
    }
  })
})

describe('parsePacket: TCP options', () => {
  const kindsOf = (options: readonly number[]): ConnectionAttempt['facts'] => attemptOf(parseGuarded(ipv4(tcp({ options })))).facts

  it('stops at an option of length 0 or 1 and keeps the kinds before it', () => {
    expect(kindsOf([2, 4, 5, 0xb4, 8, 0, 0, 0])).toMatchObject({ tcpOptions: [2], mss: 1460, windowScale: null })
    expect(kindsOf([1, 3, 1, 9, 2, 4, 1, 1])).toMatchObject({ tcpOptions: [1], mss: null, windowScale: null })
  })

  it('stops at an option of length 255 that runs past the header', () => {
    expect(kindsOf([3, 3, 14, 1, 8, 255, 0, 0])).toMatchObject({ tcpOptions: [3, 1], windowScale: 14 })
  })

  it('stops at a kind with no room for its length byte', () => {
    expect(kindsOf([1, 1, 1, 2])).toMatchObject({ tcpOptions: [1, 1, 1], mss: null })
  })

  it('records EOL and ignores what follows it', () => {
    expect(kindsOf([2, 4, 1, 0, 0, 3, 3, 7])).toMatchObject({ tcpOptions: [2, 0], mss: 256, windowScale: null })
  })

  it('keeps the kind but not the value of MSS or window scale with a wrong length', () => {
    expect(kindsOf([2, 3, 5, 3, 4, 7, 7, 7])).toMatchObject({ tcpOptions: [2, 3], mss: null, windowScale: null })
  })

  it('lets a repeated MSS override the earlier one, as Linux does', () => {
    expect(kindsOf([2, 4, 0, 1, 2, 4, 0, 2])).toMatchObject({ tcpOptions: [2, 2], mss: 2 })
  })

  it('reads no options past the header even when the payload looks like options', () => {
    const facts = attemptOf(parseGuarded(ipv4(tcp({ payload: hex('02 04 05 b4') })))).facts
    expect(facts).toMatchObject({ tcpOptions: [], mss: null })
  })
})

/** What a LINUX_OPTIONS SYN built with the IPv4 and TCP builders' defaults parses to. */
function defaultSynAttempt(): ConnectionAttempt {
  return {
    family: 4,
    protocol: 'tcp',
    srcAddress: '198.51.100.7',
    srcPort: 40001,
    dstAddress: '203.0.113.9',
    dstPort: 22,
    facts: { ttl: 64, ipId: 0x1234, dontFragment: true, tcpWindow: 29200, tcpFlags: 2, tcpOptions: [2, 4, 8, 1, 3], mss: 1460, windowScale: 7 },
  }
}

// ---------------------------------------------------------------------------------------------------------------------

describe('formatIPv4 and formatIPv6', () => {
  it('formats dotted quads at an offset', () => {
    expect(formatIPv4(hex('ff 00 00 00 00 ff'), 1)).toBe('0.0.0.0')
    expect(formatIPv4(hex('ff ff ff ff'), 0)).toBe('255.255.255.255')
    expect(formatIPv4(LINUX_SYN_V4, 12)).toBe('192.168.1.10')
  })

  const v6 = (groups: readonly number[]): string => {
    const bytes = new Uint8Array(19)
    writeGroups(bytes, 3, groups)
    return formatIPv6(bytes, 3)
  }

  it.each([
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[1, 0, 0, 0, 0, 0, 0, 0], '1::'],
    [[0xfe80, 0, 0, 0, 0x0200, 0x5eff, 0xfe00, 0x5301], 'fe80::200:5eff:fe00:5301'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'], // RFC 5952 §4.2.3: first of equal runs
    [[0x2001, 0, 0, 1, 0, 0, 0, 1], '2001:0:0:1::1'], // §4.2.3: the longest run
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'], // §4.2.2: one zero group is not compressed
    [[0x2001, 0x0db8, 0xaaaa, 0xbbbb, 0xcccc, 0xdddd, 0xeeee, 0x0001], '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1'], // §4.3, §4.1
    [[0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201], '::ffff:192.0.2.1'], // §5
    [[0, 0, 0, 0, 0, 0xffff, 0, 0], '::ffff:0.0.0.0'],
    [[0, 0, 0, 0, 0, 0, 0xc000, 0x0201], '::c000:201'], // IPv4-compatible is deprecated: plain hex
    [[0, 0, 0, 0, 1, 0xffff, 0xc000, 0x0201], '::1:ffff:c000:201'],
    [[0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0201], '64:ff9b::c000:201'],
    [[1, 0, 1, 0, 1, 0, 1, 0], '1:0:1:0:1:0:1:0'],
  ])('formats %j as %s', (groups, text) => {
    expect(v6(groups)).toBe(text)
  })

  // Reference: the WHATWG URL host serializer writes IPv6 exactly as RFC 5952 §4 does (lowercase, no leading zeros, the
  // first longest run of two or more zero groups as "::"), so for any address, serializing its uncompressed form must
  // give our text. The one difference is §5: WHATWG writes IPv4-mapped addresses in hex, so those compare as values.
  const groupArb = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }))
  const addressArb = fc.oneof(
    fc.array(groupArb, { minLength: 8, maxLength: 8 }),
    fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map(([a, b]) => [0, 0, 0, 0, 0, 0xffff, a, b]),
  )

  it('agrees with the WHATWG URL serializer on every address (property)', () => {
    fc.assert(
      fc.property(addressArb, fc.nat({ max: 8 }), (groups, offset) => {
        const bytes = new Uint8Array(offset + 16)
        writeGroups(bytes, offset, groups)
        const text = formatIPv6(bytes, offset)
        expect(isIPv6(text)).toBe(true)
        const expanded = groups.map((g) => g.toString(16)).join(':')
        const reference = new URL(`http://[${expanded}]/`).hostname
        const mapped = groups.slice(0, 6).join(',') === '0,0,0,0,0,65535'
        if (mapped) {
          expect(text).toBe(`::ffff:${formatIPv4(bytes, offset + 12)}`)
          expect(new URL(`http://[${text}]/`).hostname).toBe(reference)
        } else {
          expect(`[${text}]`).toBe(reference)
        }
      }),
      { numRuns: 2000 },
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------

interface OptionSpec {
  readonly kind: number
  readonly bytes: readonly number[]
}

const byteArb = fc.integer({ min: 0, max: 255 })
const u16Arb = fc.integer({ min: 0, max: 0xffff })

const optionArb: fc.Arbitrary<OptionSpec> = fc.oneof(
  u16Arb.map((mss) => ({ kind: 2, bytes: [2, 4, mss >>> 8, mss & 0xff] })),
  byteArb.map((shift) => ({ kind: 3, bytes: [3, 3, shift] })),
  fc.constant({ kind: 4, bytes: [4, 2] }),
  fc.uint8Array({ minLength: 8, maxLength: 8 }).map((ts) => ({ kind: 8, bytes: [8, 10, ...ts] })),
  fc.constant({ kind: 1, bytes: [1] }),
  fc.tuple(fc.integer({ min: 4, max: 254 }), fc.uint8Array({ maxLength: 6 })).map(([kind, body]) => ({ kind, bytes: [kind, body.length + 2, ...body] })),
)

const packetArb = fc.record({
  family: fc.constantFrom(4 as const, 6 as const),
  protocol: fc.constantFrom('tcp' as const, 'udp' as const),
  src4: fc.array(byteArb, { minLength: 4, maxLength: 4 }),
  dst4: fc.array(byteArb, { minLength: 4, maxLength: 4 }),
  src6: fc.array(fc.oneof(fc.constant(0), u16Arb), { minLength: 8, maxLength: 8 }),
  dst6: fc.array(fc.oneof(fc.constant(0), u16Arb), { minLength: 8, maxLength: 8 }),
  srcPort: u16Arb,
  dstPort: u16Arb,
  ttl: byteArb,
  id: u16Arb,
  df: fc.boolean(),
  mf: fc.boolean(),
  ipOptionWords: fc.integer({ min: 0, max: 10 }),
  hopByHop: fc.boolean(),
  extensions: fc.array(fc.record({ type: fc.constantFrom(43, 44, 51, 60, 135, 139, 140), units: fc.integer({ min: 0, max: 3 }) }), { maxLength: 15 }),
  window: u16Arb,
  flags: byteArb,
  options: fc.array(optionArb, { maxLength: 12 }),
  payload: fc.uint8Array({ maxLength: 24 }),
})

type PacketSpec = typeof packetArb extends fc.Arbitrary<infer T> ? T : never

/** Builds the packet a spec describes and the attempt the parser must return for it. */
function buildPacket(spec: PacketSpec): { readonly packet: Uint8Array; readonly expected: ConnectionAttempt } {
  const fitted: OptionSpec[] = []
  let optionBytes = 0
  for (const option of spec.options) {
    if (optionBytes + option.bytes.length > 40) break
    fitted.push(option)
    optionBytes += option.bytes.length
  }
  while (optionBytes % 4 !== 0) {
    fitted.push({ kind: 1, bytes: [1] }) // Linux pads with NOPs
    optionBytes++
  }
  const isTcp = spec.protocol === 'tcp'
  const transport = isTcp
    ? tcp({ srcPort: spec.srcPort, dstPort: spec.dstPort, window: spec.window, flags: spec.flags, options: fitted.flatMap((o) => o.bytes), payload: spec.payload })
    : udp(spec.srcPort, spec.dstPort, spec.payload)
  const protocolNumber = isTcp ? 6 : 17
  const mssOption = fitted.findLast((o) => o.kind === 2) // the last one wins, as in Linux
  const scaleOption = fitted.findLast((o) => o.kind === 3)
  const facts: ConnectionAttempt['facts'] = {
    ttl: spec.ttl,
    ipId: spec.family === 4 ? spec.id : null,
    dontFragment: spec.family === 4 ? spec.df : false,
    tcpWindow: isTcp ? spec.window : null,
    tcpFlags: isTcp ? spec.flags : null,
    tcpOptions: isTcp ? fitted.map((o) => o.kind) : [],
    mss: isTcp && mssOption !== undefined ? ((mssOption.bytes[2] ?? 0) << 8) | (mssOption.bytes[3] ?? 0) : null,
    windowScale: isTcp && scaleOption !== undefined ? (scaleOption.bytes[2] ?? 0) : null,
  }
  if (spec.family === 4) {
    const options = Array.from({ length: spec.ipOptionWords * 4 }, () => 1) // NOPs
    const packet = ipv4(transport, { src: spec.src4, dst: spec.dst4, ttl: spec.ttl, id: spec.id, df: spec.df, mf: spec.mf, protocol: protocolNumber, options })
    const expected = { family: 4 as const, protocol: spec.protocol, srcAddress: spec.src4.join('.'), srcPort: spec.srcPort, dstAddress: spec.dst4.join('.'), dstPort: spec.dstPort, facts }
    return { packet, expected }
  }
  const headers: { type: number; units: number }[] = spec.extensions.map(({ type, units }) => ({ type, units }))
  if (spec.hopByHop) headers.unshift({ type: 0, units: 1 })
  const built = headers.map((h, i) => {
    const next = headers[i + 1]?.type ?? protocolNumber
    if (h.type === 44) return fragmentHeader(next, 0, spec.mf)
    if (h.type === 51) return authHeader(next, h.units + 1)
    return extension(next, h.units)
  })
  const packet = ipv6(concat(...built, transport), { nextHeader: headers[0]?.type ?? protocolNumber, hopLimit: spec.ttl, src: spec.src6, dst: spec.dst6 })
  const expected = {
    family: 6 as const,
    protocol: spec.protocol,
    srcAddress: referenceIPv6(spec.src6),
    srcPort: spec.srcPort,
    dstAddress: referenceIPv6(spec.dst6),
    dstPort: spec.dstPort,
    facts,
  }
  return { packet, expected }
}

/** RFC 5952 text of an address, from the WHATWG URL serializer (see the formatIPv6 property) plus the §5 mapped form. */
function referenceIPv6(groups: readonly number[]): string {
  if (groups.slice(0, 6).join(',') === '0,0,0,0,0,65535') {
    const [a = 0, b = 0] = groups.slice(6)
    return `::ffff:${a >>> 8}.${a & 0xff}.${b >>> 8}.${b & 0xff}`
  }
  return new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1)
}

describe('parsePacket: properties', () => {
  it('returns the fields a random valid packet was built from', () => {
    fc.assert(
      fc.property(packetArb, (spec) => {
        const { packet, expected } = buildPacket(spec)
        expect(parseGuarded(packet)).toEqual({ ok: true, attempt: expected })
      }),
      { numRuns: 1000 },
    )
  })

  it('never throws and never reads outside arbitrary bytes', () => {
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      // Random bytes mostly die at the version check; forcing a plausible first byte reaches the deeper paths.
      fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x6f), fc.uint8Array({ maxLength: 199 })).map(([first, rest]) => concat(Uint8Array.of(first), rest)),
    )
    fc.assert(
      fc.property(bytesArb, (bytes) => {
        const result = parseGuarded(bytes)
        if (!result.ok) expect(REASONS).toContain(result.reason)
      }),
      { numRuns: 5000 },
    )
  })

  it('never throws and never reads outside a mutated valid packet', () => {
    const mutationArb = fc.array(fc.tuple(fc.nat(), byteArb), { minLength: 1, maxLength: 6 })
    fc.assert(
      fc.property(packetArb, mutationArb, fc.option(fc.nat()), (spec, mutations, cut) => {
        const { packet } = buildPacket(spec)
        for (const [index, value] of mutations) packet[index % packet.length] = value
        const bytes = cut === null ? packet : packet.subarray(0, cut % (packet.length + 1))
        const result = parseGuarded(bytes)
        if (result.ok) {
          expect(result.attempt.srcPort).toBeLessThanOrEqual(0xffff)
          expect(result.attempt.facts.tcpOptions.length).toBeLessThanOrEqual(40)
        } else {
          expect(REASONS).toContain(result.reason)
        }
      }),
      { numRuns: 3000 },
    )
  })
})
