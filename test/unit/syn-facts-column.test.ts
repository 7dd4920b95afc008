import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { SynFacts } from '../../src/attack/attack.js'
import { decodeSynFacts, encodeSynFacts } from '../../src/store/syn-facts-column.js'

const LINUX: SynFacts = { ttl: 64, ipId: 4321, dontFragment: true, tcpWindow: 64240, tcpFlags: 2, tcpOptions: [2, 4, 8, 1, 3], mss: 1460, windowScale: 7 }

describe('syn_facts column', () => {
  it('round-trips what the writer stores, and NULL', () => {
    expect(decodeSynFacts(encodeSynFacts(LINUX))).toEqual(LINUX)
    expect(encodeSynFacts(null)).toBeNull()
    expect(decodeSynFacts(null)).toBeNull()
    const udp: SynFacts = { ttl: 113, ipId: null, dontFragment: false, tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null }
    expect(decodeSynFacts(encodeSynFacts(udp))).toEqual(udp)
  })

  it('reads a hand-edited value field by field, never as something else', () => {
    expect(decodeSynFacts('not json')).toBeNull()
    expect(decodeSynFacts('[1,2]')).toBeNull()
    expect(decodeSynFacts('{"ttl":999,"ipId":-1,"dontFragment":"yes","tcpWindow":1.5,"tcpOptions":[2,"x",300,4],"mss":65536}')).toEqual({
      ttl: 0, ipId: null, dontFragment: false, tcpWindow: null, tcpFlags: null, tcpOptions: [2, 4], mss: null, windowScale: null,
    })
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
        const facts = decodeSynFacts(text)
        if (facts !== null) {
          expect(facts.ttl >= 0 && facts.ttl <= 255).toBe(true)
          expect(facts.tcpOptions.length).toBeLessThanOrEqual(40)
        }
      }),
    )
  })
})
