import { randomFillSync } from 'node:crypto'

// Crockford's base32, as ULID specifies: no I, L, O, U, so ids survive being read aloud or retyped.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const RANDOM_BYTES = 10 // 80 bits

let lastTimeMs = -1
const lastRandom = Buffer.alloc(RANDOM_BYTES)

/** Increments the 80-bit big-endian counter in place; false when it wrapped (2^80 ids in one ms: never in practice). */
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

function encodeTime(timeMs: number): string {
  let out = ''
  let t = timeMs
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32]! + out
    t = Math.floor(t / 32)
  }
  return out
}

function encodeRandom(buf: Buffer): string {
  // 80 bits -> 16 base32 digits, most significant first.
  let out = ''
  let acc = 0
  let bits = 0
  for (const byte of buf) {
    acc = (acc << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += ALPHABET[(acc >>> bits) & 31]!
    }
    acc &= (1 << bits) - 1
  }
  return out
}

/**
 * A ULID: 26 characters whose lexical order is creation order, also for ids made within the same millisecond
 * in this process (monotonic), so `ORDER BY id` is `ORDER BY time` in the store.
 */
export function createUlid(nowMs: number = Date.now()): string {
  if (nowMs > lastTimeMs) {
    lastTimeMs = nowMs
    randomFillSync(lastRandom)
    // Leave headroom so increments within the same ms never wrap.
    lastRandom[0] = lastRandom[0]! & 0x7f
  } else if (!incrementRandom(lastRandom)) {
    lastTimeMs += 1
    randomFillSync(lastRandom)
  }
  return encodeTime(lastTimeMs) + encodeRandom(lastRandom)
}

/** The creation time encoded in a ULID, in ms since the epoch; NaN when `id` is not a ULID. */
export function ulidTimeMs(id: string): number {
  if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) return Number.NaN
  let t = 0
  for (const ch of id.slice(0, 10)) t = t * 32 + ALPHABET.indexOf(ch)
  return t
}
