/**
 * mulberry32: a tiny seeded generator of 32-bit integers with a good spread. For reproducible test data and
 * benchmark corpora (a failing case is the same on the next run), never for anything an attacker must not guess.
 */
export function createSeededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}
