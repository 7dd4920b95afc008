import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Protocol } from '../../src/attack/attack.js'
import { formatPortRanges, parsePortSpec, type PortRange } from '../../src/config/port-spec.js'

function rangesOf(spec: string | number, defaults?: readonly Protocol[]): PortRange[] {
  const result = defaults === undefined ? parsePortSpec(spec) : parsePortSpec(spec, defaults)
  if (!result.ok) throw new Error(`expected ${JSON.stringify(spec)} to parse, got: ${result.error}`)
  return result.ranges
}

function errorOf(spec: string | number): string {
  const result = parsePortSpec(spec)
  if (result.ok) throw new Error(`expected ${JSON.stringify(spec)} to be refused, got ${JSON.stringify(result.ranges)}`)
  return result.error
}

/** One (protocol, from, to) triple per protocol: the form in which two range lists can be compared. */
function expand(ranges: readonly PortRange[]): Array<[Protocol, number, number]> {
  return ranges.flatMap((r) => r.protocols.map((p): [Protocol, number, number] => [p, r.from, r.to]))
}

describe('parsePortSpec: valid specs', () => {
  it('a single port covers both protocols by default', () => {
    expect(rangesOf('80')).toEqual([{ protocols: ['tcp', 'udp'], from: 80, to: 80 }])
  })

  it('a number is one port', () => {
    expect(rangesOf(3306)).toEqual([{ protocols: ['tcp', 'udp'], from: 3306, to: 3306 }])
  })

  it('a list keeps its order', () => {
    expect(rangesOf('443,80,22')).toEqual([
      { protocols: ['tcp', 'udp'], from: 443, to: 443 },
      { protocols: ['tcp', 'udp'], from: 80, to: 80 },
      { protocols: ['tcp', 'udp'], from: 22, to: 22 },
    ])
  })

  it('a range is inclusive; a range of one port is allowed', () => {
    expect(rangesOf('8000-8100')).toEqual([{ protocols: ['tcp', 'udp'], from: 8000, to: 8100 }])
    expect(rangesOf('5-5')).toEqual([{ protocols: ['tcp', 'udp'], from: 5, to: 5 }])
  })

  it('the edges 1 and 65535 are valid', () => {
    expect(rangesOf('1-65535')).toEqual([{ protocols: ['tcp', 'udp'], from: 1, to: 65_535 }])
    expect(rangesOf('1,65535')).toEqual([
      { protocols: ['tcp', 'udp'], from: 1, to: 1 },
      { protocols: ['tcp', 'udp'], from: 65_535, to: 65_535 },
    ])
  })

  it('a protocol suffix applies to its own item only', () => {
    expect(rangesOf('22/tcp,53/udp,80,1000-2000/udp')).toEqual([
      { protocols: ['tcp'], from: 22, to: 22 },
      { protocols: ['udp'], from: 53, to: 53 },
      { protocols: ['tcp', 'udp'], from: 80, to: 80 },
      { protocols: ['udp'], from: 1000, to: 2000 },
    ])
  })

  it('whitespace around the list and around items is ignored', () => {
    expect(rangesOf('  22/tcp ,\t80 , 8000-8001/udp\n')).toEqual([
      { protocols: ['tcp'], from: 22, to: 22 },
      { protocols: ['tcp', 'udp'], from: 80, to: 80 },
      { protocols: ['udp'], from: 8000, to: 8001 },
    ])
  })

  it('leading zeros read as decimal', () => {
    expect(rangesOf('0080')).toEqual([{ protocols: ['tcp', 'udp'], from: 80, to: 80 }])
  })

  it('the default protocols can be narrowed by the caller', () => {
    expect(rangesOf('80,53/udp', ['tcp'])).toEqual([
      { protocols: ['tcp'], from: 80, to: 80 },
      { protocols: ['udp'], from: 53, to: 53 },
    ])
  })
})

describe('parsePortSpec: hostile and malformed input', () => {
  it.each([
    ['', 'empty'],
    ['   ', 'blank'],
    [',', 'only a comma'],
    ['80,', 'trailing comma'],
    [',80', 'leading comma'],
    ['80,,81', 'empty item'],
    ['0', 'port 0'],
    ['65536', 'one past the top'],
    ['99999', 'five digits, out of range'],
    ['123456', 'six digits'],
    ['1-', 'open range'],
    ['-5', 'negative'],
    ['80-70', 'reversed range'],
    ['0-10', 'range from 0'],
    ['10-65536', 'range past the top'],
    ['80/icmp', 'unknown protocol'],
    ['80/TCP', 'upper-case protocol'],
    ['80/tcp/udp', 'two protocols'],
    ['80 /tcp', 'space before the slash'],
    ['80 81', 'two ports without a comma'],
    ['１２', 'full-width digits'],
    ['٨٠', 'Arabic-Indic digits'],
    ['0x50', 'hex'],
    ['8e1', 'exponent'],
    ['80.0', 'decimal point'],
    ['+80', 'plus sign'],
    ['80;rm -rf /', 'shell text'],
    ['80\u0000', 'NUL byte'],
  ])('%j (%s) is refused', (spec) => {
    expect(parsePortSpec(spec).ok).toBe(false)
  })

  it.each([0, 65_536, -5, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('the number %d is refused', (spec) => {
    expect(parsePortSpec(spec).ok).toBe(false)
  })

  it('the message names the item at fault, not only the whole list', () => {
    expect(errorOf('22,80/icmp,443')).toContain('"80/icmp"')
    expect(errorOf('22, 80-70 ,443')).toContain('"80-70"')
    expect(errorOf('22,65536')).toContain('"65536"')
    expect(errorOf('1-')).toContain('"1-"')
    expect(errorOf('-5')).toContain('"-5"')
    expect(errorOf('80/tcp/udp')).toContain('"80/tcp/udp"')
    expect(errorOf('１２')).toContain('"１２"')
    expect(errorOf('0')).toContain('"0"')
  })

  it('an empty item is named as the empty string', () => {
    expect(errorOf(',')).toContain('""')
    expect(errorOf('80,,81')).toContain('""')
  })

  it('very long strings are refused quickly', () => {
    const started = performance.now()
    const inputs = ['1'.repeat(100_000), '1,'.repeat(50_000), `${'9'.repeat(50_000)}-1`, '80/'.repeat(30_000), `${','.repeat(100_000)}80`]
    for (const spec of inputs) expect(parsePortSpec(spec).ok, spec.slice(0, 20)).toBe(false)
    expect(performance.now() - started).toBeLessThan(1_000)
  })

  it('a very long valid list is accepted in full', () => {
    const ports = Array.from({ length: 10_000 }, (_, i) => i + 1)
    const ranges = rangesOf(ports.join(','))
    expect(ranges.map((r) => r.from)).toEqual(ports)
  })

  it('arbitrary strings never throw and always give ok or a message', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (spec) => {
        const result = parsePortSpec(spec)
        if (result.ok) {
          expect(result.ranges.length).toBeGreaterThan(0)
          for (const r of result.ranges) {
            expect(r.from).toBeGreaterThanOrEqual(1)
            expect(r.to).toBeLessThanOrEqual(65_535)
            expect(r.from).toBeLessThanOrEqual(r.to)
          }
        } else {
          expect(result.error.length).toBeGreaterThan(0)
        }
      }),
    )
  })
})

describe('formatPortRanges', () => {
  it('writes one item per protocol, a single port without a dash', () => {
    expect(
      formatPortRanges([
        { protocols: ['tcp'], from: 22, to: 22 },
        { protocols: ['tcp', 'udp'], from: 8000, to: 8100 },
      ]),
    ).toBe('22/tcp,8000-8100/tcp,8000-8100/udp')
  })

  it('an empty list formats to the empty string', () => {
    expect(formatPortRanges([])).toBe('')
  })

  it('round-trips: random ranges -> format -> parse give the same ranges', () => {
    const protocols = fc.constantFrom<readonly Protocol[]>(['tcp'], ['udp'], ['tcp', 'udp'])
    const range = fc
      .tuple(fc.integer({ min: 1, max: 65_535 }), fc.integer({ min: 1, max: 65_535 }), protocols)
      .map(([a, b, p]): PortRange => ({ protocols: p, from: Math.min(a, b), to: Math.max(a, b) }))
    fc.assert(
      fc.property(fc.array(range, { minLength: 1, maxLength: 30 }), (ranges) => {
        const text = formatPortRanges(ranges)
        const parsed = parsePortSpec(text)
        expect(parsed.ok).toBe(true)
        if (!parsed.ok) return
        expect(expand(parsed.ranges)).toEqual(expand(ranges))
        // Formatting what was parsed gives the same text again.
        expect(formatPortRanges(parsed.ranges)).toBe(text)
      }),
      { numRuns: 500 },
    )
  })

  it('round-trips the edges', () => {
    const ranges: PortRange[] = [
      { protocols: ['tcp'], from: 1, to: 1 },
      { protocols: ['udp'], from: 65_535, to: 65_535 },
      { protocols: ['tcp', 'udp'], from: 1, to: 65_535 },
    ]
    expect(expand(rangesOf(formatPortRanges(ranges)))).toEqual(expand(ranges))
  })
})
