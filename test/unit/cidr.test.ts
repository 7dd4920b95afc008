import { BlockList, isIP } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  cidrContains, formatIpAddress, parseCidr, parseIpAddress, type CidrRange, type IpBytes,
} from '../../src/config/cidr.js'

function ipOf(text: string): IpBytes {
  const ip = parseIpAddress(text)
  if (ip === null) throw new Error(`expected ${JSON.stringify(text)} to parse`)
  return ip
}

function rangeOf(text: string): CidrRange {
  const result = parseCidr(text)
  if (!result.ok) throw new Error(`expected ${JSON.stringify(text)} to parse, got: ${result.error}`)
  return result.range
}

function errorOf(text: string): string {
  const result = parseCidr(text)
  if (result.ok) throw new Error(`expected ${JSON.stringify(text)} to be refused, got ${result.range.text}`)
  return result.error
}

function contains(range: string, ip: string): boolean {
  return cidrContains(rangeOf(range), ipOf(ip))
}

// Any strings, plus strings of address characters only, which get deep into the parsers.
const ADDRESS_CHARS = fc.constantFrom(...'0123456789abcdefABCDEF:.%/ '.split(''))
const STRINGS = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: ADDRESS_CHARS, maxLength: 50 }))

describe('parseIpAddress: IPv4', () => {
  it('parses dotted quads to 4 bytes', () => {
    expect(ipOf('1.2.3.4')).toEqual({ family: 4, bytes: Uint8Array.of(1, 2, 3, 4) })
    expect(ipOf('0.0.0.0').bytes).toEqual(Uint8Array.of(0, 0, 0, 0))
    expect(ipOf('255.255.255.255').bytes).toEqual(Uint8Array.of(255, 255, 255, 255))
  })

  it.each([
    ['leading zero (octal to inet_aton)', '01.2.3.4'], ['leading zero', '1.2.3.04'], ['double zero', '00.0.0.0'],
    ['octet over 255', '256.0.0.0'], ['octet over 255', '1.2.3.1000'], ['three parts', '1.2.3'],
    ['short form', '127.1'], ['five parts', '1.2.3.4.5'], ['empty part', '1..2.3'], ['leading dot', '.1.2.3'],
    ['trailing dot', '1.2.3.4.'], ['leading space', ' 1.2.3.4'], ['trailing space', '1.2.3.4 '],
    ['trailing newline', '1.2.3.4\n'], ['tab', '1.2.3.4\t'], ['full-width digits', '１.２.３.４'],
    ['Arabic-Indic digits', '١.٢.٣.٤'], ['letters', 'a.b.c.d'], ['hex', '0x7f.0.0.1'], ['one integer', '2130706433'],
    ['sign', '+1.2.3.4'], ['negative', '1.2.3.-4'], ['prefix', '1.2.3.4/32'], ['port', '1.2.3.4:80'], ['empty', ''],
    ['NUL', '1.2.3.4\0'],
  ])('refuses %s: %j', (_why, text) => {
    expect(parseIpAddress(text)).toBeNull()
  })
})

describe('parseIpAddress: IPv6', () => {
  it.each([
    ['::', '::'], ['::1', '::1'], ['2001:db8::1', '2001:db8::1'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'], ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'], ['FE80::ABCD', 'fe80::abcd'],
    ['0000:0000::', '::'], ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'], ['::1.2.3.4', '::102:304'],
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'], ['::ffff:0:1.2.3.4', '::ffff:0:102:304'],
  ])('parses %j (canonically %j)', (text, canonical) => {
    const ip = ipOf(text)
    expect(ip.family).toBe(6)
    expect(ip.bytes).toHaveLength(16)
    expect(formatIpAddress(ip)).toBe(canonical)
  })

  it.each(['::ffff:1.2.3.4', '::FFFF:102:304', '0:0:0:0:0:ffff:1.2.3.4', '0000:0000:0000:0000:0000:ffff:0102:0304'])(
    'normalises the IPv4-mapped form %j to IPv4',
    (text) => {
      expect(ipOf(text)).toEqual({ family: 4, bytes: Uint8Array.of(1, 2, 3, 4) })
    },
  )

  it.each([
    'fe80::1%eth0', '::ffff:1.2.3.4%1', '1::2::3', ':::', '1:2:3:4:5:6:7:8:9', '1::2:3:4:5:6:7:8', '12345::', 'g::',
    '::ffff:01.2.3.4', '::ffff:256.1.1.1', '[::1]', '::1 ', ':1::', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4:1',
  ])('refuses %j', (text) => {
    expect(parseIpAddress(text)).toBeNull()
  })
})

describe('parseIpAddress: hostile input', () => {
  it('refuses 10,000-character strings quickly', () => {
    const started = performance.now()
    const huge = ['a', '1', ':', '1.', '1:', '1::'].map((unit) => unit.repeat(10_000))
    for (const text of huge) expect(parseIpAddress(text)).toBeNull()
    // Generous on purpose: this catches runaway regex backtracking, it does not measure speed.
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it('refuses non-strings without throwing', () => {
    for (const value of [undefined, null, 42, {}, ['1.2.3.4']]) {
      expect(parseIpAddress(value as unknown as string)).toBeNull()
    }
  })

  it('never throws on arbitrary strings, and accepts exactly what net.isIP accepts minus zone ids', () => {
    fc.assert(
      fc.property(STRINGS, (text) => {
        const ip = parseIpAddress(text)
        expect(ip !== null).toBe(isIP(text) !== 0 && !text.includes('%'))
      }),
      { numRuns: 3000 },
    )
  })

  it('formats generated addresses so they parse back to the same bytes, as node (inet_pton) agrees', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (text) => {
        const ip = ipOf(text)
        expect(ipOf(formatIpAddress(ip))).toEqual(ip)
        const list = new BlockList()
        list.addAddress(text, isIP(text) === 4 ? 'ipv4' : 'ipv6')
        expect(list.check(formatIpAddress(ip), ip.family === 4 ? 'ipv4' : 'ipv6')).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('formatIpAddress: RFC 5952', () => {
  it.each([
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal zero runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not compressed
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // the longest run wins
    ['0:0:0:0:0:0:0:0', '::'], ['1:0:0:0:0:0:0:0', '1::'], ['2001:DB8::AB', '2001:db8::ab'],
  ])('%j is written %j', (text, canonical) => {
    expect(formatIpAddress(ipOf(text))).toBe(canonical)
  })
})

describe('parseCidr: valid ranges', () => {
  it('parses IPv4 ranges and single addresses', () => {
    const ten = { family: 4, network: Uint8Array.of(10, 0, 0, 0), prefix: 8, text: '10.0.0.0/8' }
    expect(rangeOf('10.0.0.0/8')).toEqual(ten)
    expect(rangeOf('192.0.2.7')).toMatchObject({ family: 4, prefix: 32, text: '192.0.2.7/32' })
    expect(rangeOf('0.0.0.0/0')).toMatchObject({ prefix: 0, text: '0.0.0.0/0' })
    expect(rangeOf('10.8.0.0/13').text).toBe('10.8.0.0/13')
  })

  it('parses IPv6 ranges and single addresses, keeping the canonical text', () => {
    expect(rangeOf('2001:db8::/32')).toMatchObject({ family: 6, prefix: 32, text: '2001:db8::/32' })
    expect(rangeOf('2001:DB8:0::/48').text).toBe('2001:db8::/48')
    expect(rangeOf('::1')).toMatchObject({ family: 6, prefix: 128, text: '::1/128' })
    expect(rangeOf('::/0')).toMatchObject({ family: 6, prefix: 0, text: '::/0' })
  })

  it('converts IPv4-mapped ranges with a prefix of 96 or more to IPv4', () => {
    expect(rangeOf('::ffff:10.0.0.0/104')).toEqual(rangeOf('10.0.0.0/8'))
    expect(rangeOf('::ffff:1.2.3.4').text).toBe('1.2.3.4/32')
    expect(rangeOf('::ffff:0:0/96').text).toBe('0.0.0.0/0')
  })
})

describe('parseCidr: refused ranges', () => {
  it.each([
    ['10.0.0.0/33', '"10.0.0.0/33": the prefix must be 0-32 for IPv4'], ['::/129', 'the prefix must be 0-128 for IPv6'],
    ['10.0.0.1/8', '"10.0.0.1/8": host bits are set; did you mean 10.0.0.0/8?'],
    ['10.9.0.0/13', 'did you mean 10.8.0.0/13?'], ['2001:db8::1/32', 'did you mean 2001:db8::/32?'],
    ['::ffff:10.0.0.1/104', 'did you mean 10.0.0.0/8?'], ['::ffff:10.0.0.0/95', 'needs a prefix of 96-128'],
    ['', 'empty range'], ['1.2.3.4/', 'nothing after "/"'], ['/8', '"" is not an IPv4 or IPv6 address'],
    ['1.2.3.4/08', 'without leading zeros'], ['::/-1', 'must be a whole number'],
    ['1.2.3.4/32/1', 'must be a whole number'], ['1.2.3.4/1e1', 'must be a whole number'],
    ['1.2.3.4/0x8', 'must be a whole number'], ['1.2.3.4/８', 'must be a whole number'],
    ['1.2.3.4/9999', 'must be a whole number'], ['a.b.c.d', '"a.b.c.d" is not an IPv4 or IPv6 address'],
    ['01.2.3.4/32', 'is not an IPv4 or IPv6 address'], ['１.２.３.４', 'is not an IPv4 or IPv6 address'],
    ['1.2.3.4\n', '"1.2.3.4\\n": remove the whitespace'], [' 10.0.0.0/8', 'remove the whitespace'],
    ['fe80::%eth0/64', 'a zone id'],
  ])('%j: %s', (text, message) => {
    expect(errorOf(text)).toContain(message)
  })

  it('names what is expected when the address is wrong', () => {
    expect(errorOf('nonsense')).toContain('expected e.g. "10.0.0.0/8"')
  })

  it('quotes at most 40 characters of a huge input', () => {
    for (const text of ['1'.repeat(10_000), `1.2.3.4/${'9'.repeat(10_000)}`, `${'x'.repeat(10_000)}/8`]) {
      expect(errorOf(text).length).toBeLessThan(200)
    }
  })

  it('never throws on arbitrary strings', () => {
    fc.assert(
      fc.property(STRINGS, (text) => {
        const result = parseCidr(text)
        if (result.ok) expect(parseCidr(result.range.text)).toEqual(result)
      }),
      { numRuns: 3000 },
    )
  })
})

describe('cidrContains', () => {
  it.each<[string, string, boolean]>([
    // first and last address of a range, and nothing either side
    ['10.0.0.0/8', '10.0.0.0', true], ['10.0.0.0/8', '10.255.255.255', true],
    ['10.0.0.0/8', '9.255.255.255', false], ['10.0.0.0/8', '11.0.0.0', false],
    // a prefix that is not a multiple of 8
    ['10.8.0.0/13', '10.8.0.0', true], ['10.8.0.0/13', '10.15.255.255', true],
    ['10.8.0.0/13', '10.7.255.255', false], ['10.8.0.0/13', '10.16.0.0', false],
    // /0 holds every address of its family, /32 and /128 exactly one
    ['0.0.0.0/0', '0.0.0.0', true], ['0.0.0.0/0', '255.255.255.255', true], ['0.0.0.0/0', '::', false],
    ['192.0.2.7/32', '192.0.2.7', true], ['192.0.2.7/32', '192.0.2.6', false], ['192.0.2.7/32', '192.0.2.8', false],
    ['::1/128', '::1', true], ['::1/128', '::2', false], ['::1/128', '::', false],
    ['::/0', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true],
    // /77: 0xfff8 is the 13 high bits of the fifth group
    ['2001:db8:1:2:fff8::/77', '2001:db8:1:2:fff8::', true],
    ['2001:db8:1:2:fff8::/77', '2001:db8:1:2:ffff:ffff:ffff:ffff', true],
    ['2001:db8:1:2:fff8::/77', '2001:db8:1:2:fff7:ffff:ffff:ffff', false],
    ['2001:db8:1:2:fff8::/77', '2001:db8:1:3::', false],
    // families never mix: mapped addresses are IPv4, so IPv6 /0 does not hold them
    ['::/0', '1.2.3.4', false], ['::/0', '::ffff:1.2.3.4', false], ['::ffff:0:0/96', '::ffff:1.2.3.4', true],
  ])('%s holds %s: %s', (range, ip, expected) => {
    expect(contains(range, ip)).toBe(expected)
  })

  it('agrees with a numeric reference for random IPv4 addresses and prefixes', () => {
    const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
    fc.assert(
      fc.property(u32, u32, fc.nat(32), fc.nat(32), (a, b, prefix, keep) => {
        const mask = prefix === 0 ? 0 : (0xffff_ffff << (32 - prefix)) >>> 0
        const keepMask = keep === 0 ? 0 : (0xffff_ffff << (32 - keep)) >>> 0
        // b shares its first `keep` bits with a, so that both outcomes turn up often.
        const candidate = ((a & keepMask) | (b & ~keepMask)) >>> 0
        const network = (a & mask) >>> 0
        const range = rangeOf(`${dotted(network)}/${prefix}`)
        const expected = ((candidate & mask) >>> 0) === network
        expect(cidrContains(range, ipOf(dotted(candidate)))).toBe(expected)
      }),
      { numRuns: 5000 },
    )
  })

  it('agrees with node BlockList for random IPv6 addresses and prefixes', () => {
    const bytes16 = fc.uint8Array({ minLength: 16, maxLength: 16 })
    fc.assert(
      fc.property(bytes16, bytes16, fc.nat(16), fc.nat(128), (a, b, keep, prefix) => {
        const candidate: IpBytes = { family: 6, bytes: Uint8Array.from(a.map((x, i) => (i < keep ? x : (b[i] ?? 0)))) }
        const text = formatIpAddress(candidate)
        fc.pre(ipOf(text).family === 6) // BlockList matches mapped IPv6 against IPv4 rules
        const networkText = formatIpAddress({ family: 6, bytes: maskTo(a, prefix) })
        fc.pre(ipOf(networkText).family === 6)
        const list = new BlockList()
        list.addSubnet(networkText, prefix, 'ipv6')
        expect(cidrContains(rangeOf(`${networkText}/${prefix}`), candidate)).toBe(list.check(text, 'ipv6'))
      }),
      { numRuns: 3000 },
    )
  })
})

function dotted(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.')
}

function maskTo(bytes: Uint8Array, prefix: number): Uint8Array {
  return bytes.map((x, i) => {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i))
    return x & (0xff00 >> bits)
  })
}
