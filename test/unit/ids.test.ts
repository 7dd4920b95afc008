import { describe, expect, it } from 'vitest'
import { createUlid, ulidTimeMs } from '../../src/core/ids.js'

// Crockford's base32: digits and upper-case letters without I, L, O and U.
const CROCKFORD_ULID = /^[0-9ABCDEFGHJKMNPQRSTVWXYZ]{26}$/

// The module keeps the last time it used: each test takes times later than every earlier test's.
let clock = Date.now() + 1_000
function laterMs(stepMs = 1_000): number {
  clock += stepMs
  return clock
}

describe('createUlid', () => {
  // First in the file: later tests move the module's clock into the future.
  it('defaults to the current time', () => {
    const before = Date.now()
    const t = ulidTimeMs(createUlid())
    const after = Date.now()
    expect(t).toBeGreaterThanOrEqual(before)
    expect(t).toBeLessThanOrEqual(after)
  })

  it('is 26 Crockford base32 characters', () => {
    for (let i = 0; i < 1_000; i++) {
      const id = createUlid()
      expect(id).toMatch(CROCKFORD_ULID)
      expect(id).not.toMatch(/[ILOU]/)
    }
  })

  it('the first character stays within the 48-bit time range', () => {
    // A ULID's time is 48 bits, so its first base32 digit is at most 7.
    expect(createUlid(laterMs())[0]! <= '7').toBe(true)
  })

  it('is strictly increasing for 10,000 ids in the same millisecond', () => {
    const ms = laterMs()
    const ids = Array.from({ length: 10_000 }, () => createUlid(ms))
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!, `${ids[i - 1]} < ${ids[i]}`).toBe(true)
    for (const id of ids) expect(ulidTimeMs(id)).toBe(ms)
  })

  it('successive ids in one millisecond differ by one in the random part', () => {
    const ms = laterMs()
    const a = createUlid(ms)
    const b = createUlid(ms)
    expect(a.slice(0, 10)).toBe(b.slice(0, 10))
    expect(BigInt(`0x${base32ToHex(b.slice(10))}`) - BigInt(`0x${base32ToHex(a.slice(10))}`)).toBe(1n)
  })

  it('sorts by time across milliseconds', () => {
    const ids = [laterMs(1), laterMs(1), laterMs(7), laterMs(100_000)].map((ms) => createUlid(ms))
    expect([...ids].sort()).toEqual(ids)
  })

  it('a new millisecond starts a fresh random part', () => {
    const first = createUlid(laterMs())
    const second = createUlid(laterMs())
    expect(second.slice(10)).not.toBe(first.slice(10))
  })

  it('stays monotonic when the clock steps back', () => {
    const later = laterMs()
    const a = createUlid(later)
    const b = createUlid(later - 5_000)
    expect(b > a).toBe(true)
  })

})

describe('ulidTimeMs', () => {
  it('round-trips the creation time', () => {
    for (const step of [1, 2, 31, 32, 1_000, 86_400_000]) {
      const ms = laterMs(step)
      expect(ulidTimeMs(createUlid(ms))).toBe(ms)
    }
  })

  it('decodes the canonical example from the ULID spec', () => {
    expect(ulidTimeMs('01ARYZ6S41TSV4RRFFQ69G5FAV')).toBe(1_469_918_176_385)
  })

  it('decodes the ends of the time range', () => {
    expect(ulidTimeMs('00000000000000000000000000')).toBe(0)
    expect(ulidTimeMs('7ZZZZZZZZZZZZZZZZZZZZZZZZZ')).toBe(2 ** 48 - 1)
  })

  it.each([
    ['empty', ''],
    ['too short', '01ARZ3NDEKTSV4RRFFQ69G5FA'],
    ['too long', '01ARZ3NDEKTSV4RRFFQ69G5FAVX'],
    ['lower case', '01arz3ndektsv4rrffq69g5fav'],
    ['contains I', '01ARZ3NDEKTSV4RRFFQ69G5FAI'],
    ['contains L', '01ARZ3NDEKTSV4RRFFQ69G5FAL'],
    ['contains O', '01ARZ3NDEKTSV4RRFFQ69G5FAO'],
    ['contains U', '01ARZ3NDEKTSV4RRFFQ69G5FAU'],
    ['punctuation', '01ARZ3NDEK-SV4RRFFQ69G5FAV'],
    ['surrounding space', ' 01ARZ3NDEKTSV4RRFFQ69G5FAV'],
    ['a UUID', '123e4567-e89b-12d3-a456-426614174000'],
    ['long garbage', 'Z'.repeat(10_000)],
  ])('is NaN for garbage (%s)', (_name, id) => {
    expect(ulidTimeMs(id)).toBeNaN()
  })
})

/** Decodes 16 Crockford base32 digits (the 80-bit random part) to hex, independently of the module. */
function base32ToHex(digits: string): string {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  let value = 0n
  for (const ch of digits) value = value * 32n + BigInt(alphabet.indexOf(ch))
  return value.toString(16)
}
