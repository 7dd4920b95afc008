import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { SynFacts } from '../../src/attack/attack.js'
import { packSynFacts, unpackSynFacts } from '../../src/attack/packed-syn-facts.js'

const LINUX_SYN: SynFacts = { ttl: 64, ipId: 25_213, dontFragment: true, tcpWindow: 64_240, tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3], mss: 1_460, windowScale: 10 }

describe('packed SYN facts', () => {
  it('packs the facts of a real SYN into a short string and gives them back exactly', () => {
    const packed = packSynFacts(LINUX_SYN)
    expect(typeof packed).toBe('string')
    expect((packed as string).length).toBe(16) // 11 header characters and 5 option kinds
    expect(unpackSynFacts(packed)).toEqual(LINUX_SYN)
  })

  it('keeps nulls, IPv6 (no IP id) and UDP (no TCP fields) apart from zeros', () => {
    const v6: SynFacts = { ...LINUX_SYN, ttl: 0, ipId: null, dontFragment: false, mss: 0, windowScale: 0 }
    const udp: SynFacts = { ttl: 255, ipId: 0, dontFragment: false, tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null }
    for (const facts of [v6, udp]) expect(unpackSynFacts(packSynFacts(facts))).toEqual(facts)
  })

  it('round-trips every representable value, and keeps what a byte layout cannot hold as it is', () => {
    const word = fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: null })
    const byte = fc.option(fc.integer({ min: 0, max: 0xff }), { nil: null })
    const facts = fc.record({
      ttl: fc.integer({ min: 0, max: 0xff }),
      ipId: word,
      dontFragment: fc.boolean(),
      tcpWindow: word,
      tcpFlags: byte,
      tcpOptions: fc.array(fc.integer({ min: 0, max: 0xff }), { maxLength: 40 }),
      mss: word,
      windowScale: byte,
    })
    fc.assert(
      fc.property(facts, (f) => {
        expect(unpackSynFacts(packSynFacts(f))).toEqual(f)
      }),
    )
    for (const odd of [{ ...LINUX_SYN, ttl: 300 }, { ...LINUX_SYN, mss: -1 }, { ...LINUX_SYN, tcpWindow: 1.5 }, { ...LINUX_SYN, tcpOptions: Array.from({ length: 41 }, () => 1) }]) {
      const packed = packSynFacts(odd)
      expect(packed).toBe(odd)
      expect(unpackSynFacts(packed)).toEqual(odd)
    }
  })
})
