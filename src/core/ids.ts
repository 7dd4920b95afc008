import { randomFillSync } from 'node:crypto'

// Crockford's base32, as ULID specifies: no I, L, O, U, so ids survive being read aloud or retyped.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const ALPHABET_CODES = Buffer.from(ALPHABET, 'latin1')
const RANDOM_BYTES = 10 // 80 bits
// Randomness is drawn from the CSPRNG in 4 KiB blocks: one syscall per ~400 new milliseconds instead of one each.
const POOL_BYTES = 4096

const pool = Buffer.alloc(POOL_BYTES)
let poolOffset = POOL_BYTES
let lastTimeMs = -1
const lastRandom = Buffer.alloc(RANDOM_BYTES)
// The id is written as bytes and read back as one flat latin1 string: no chain of concatenated strings per id.
const out = Buffer.alloc(26)

function freshRandom(): void {
  if (poolOffset + RANDOM_BYTES > POOL_BYTES) {
    randomFillSync(pool)
    poolOffset = 0
  }
  pool.copy(lastRandom, 0, poolOffset, poolOffset + RANDOM_BYTES)
  poolOffset += RANDOM_BYTES
  // Leave headroom so increments within the same ms never wrap.
  lastRandom[0] = lastRandom[0]! & 0x7f
}

/** Increments the 80-bit big-endian counter in place; false when it wrapped (2^79 ids in one ms: never in practice). */
function incrementRandom(buf: Buffer): boolean {
  for (let i = buf.length - 1; i >= 0; i--) {
    const v = buf[i]!
    if (v < 0xff) {
      buf[i] = v + 1
      return true
    }
    buf[i] = 0
  }
  return false
}

/**
 * A ULID: 26 characters whose lexical order is creation order, also for ids made within the same millisecond
 * in this process (monotonic), so `ORDER BY id` is `ORDER BY time` in the store.
 */
export function createUlid(nowMs: number = Date.now()): string {
  if (nowMs > lastTimeMs) {
    lastTimeMs = nowMs
    freshRandom()
  } else if (!incrementRandom(lastRandom)) {
    lastTimeMs += 1
    freshRandom()
  }
  // 48-bit time: 10 base32 digits, most significant first.
  let t = lastTimeMs
  for (let i = 9; i >= 0; i--) {
    out[i] = ALPHABET_CODES[t % 32]!
    t = Math.floor(t / 32)
  }
  // 80 random bits: 16 digits, 5 bits each, from two 40-bit halves (exact in doubles).
  for (let half = 0; half < 2; half++) {
    let acc = 0
    for (let i = 0; i < 5; i++) acc = acc * 256 + lastRandom[half * 5 + i]!
    for (let i = 7; i >= 0; i--) {
      out[10 + half * 8 + i] = ALPHABET_CODES[acc % 32]!
      acc = Math.floor(acc / 32)
    }
  }
  return out.toString('latin1')
}

/** The creation time encoded in a ULID, in ms since the epoch; NaN when `id` is not a ULID. */
export function ulidTimeMs(id: string): number {
  if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) return Number.NaN
  let t = 0
  for (const ch of id.slice(0, 10)) t = t * 32 + ALPHABET.indexOf(ch)
  return t
}
