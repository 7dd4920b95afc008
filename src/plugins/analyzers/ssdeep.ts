/**
 * ssdeep-compatible context-triggered piecewise hashing (CTPH, Kornblum 2006), written from the algorithm's
 * description and checked byte for byte against Debian's `ssdeep` 2.14 in test/unit/fuzzy-hash.test.ts.
 *
 * A rolling hash over the last 7 bytes picks the piece boundaries ("triggers"); each piece contributes one base64
 * character (the low 6 bits of an FNV hash of the piece). Boundaries depend only on local content, so an insertion
 * changes a few characters of the signature instead of all of them. The block size (3 << k) sets how often a trigger
 * fires; the result carries the signatures for the block size and for twice it, so hashes one size apart compare.
 */

const ROLLING_WINDOW = 7
const MIN_BLOCK_SIZE = 3
const SPAMSUM_LENGTH = 64 // characters of the first signature, at most
const HALF_LENGTH = SPAMSUM_LENGTH / 2 // the second signature is cut to this
const MAX_LEVELS = 31 // block sizes 3 << 0 .. 3 << 30
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
// Only FNV % 64 is ever emitted, and ((h * p) ^ c) mod 64 depends only on h, p and c mod 64: keep 6 bits of state.
const FNV_INIT = 0x28021967 & 0x3f
const FNV_PRIME = 0x01000193 & 0x3f
// Block sizes of at least this never have their score capped (ssdeep: (99 + ROLLING_WINDOW) / ROLLING_WINDOW * 3).
const UNCAPPED_BLOCK_SIZE = Math.floor((99 + ROLLING_WINDOW) / ROLLING_WINDOW) * MIN_BLOCK_SIZE
const HASH_PATTERN = /^([1-9][0-9]{0,9}):([A-Za-z0-9+/]{0,64}):([A-Za-z0-9+/]{0,64})$/

/** A parsed `blocksize:sig1:sig2` hash. */
export interface FuzzyHash {
  readonly blockSize: number
  readonly sig1: string // pieces at blockSize
  readonly sig2: string // pieces at 2 * blockSize
}

function blockSizeAt(level: number): number {
  return MIN_BLOCK_SIZE * 2 ** level
}

/** The ssdeep hash of `data`, `blocksize:sig1:sig2`, identical to what `ssdeep` prints for a file of these bytes. */
export function fuzzyHashOf(data: Buffer): string {
  const size = data.length
  // ssdeep's first guess: the smallest block size at which 64 pieces would cover the input on average.
  let guess = 0
  while (blockSizeAt(guess) * SPAMSUM_LENGTH < size && guess < MAX_LEVELS - 2) guess++
  // Levels above guess + 1 can never be printed, so they are not computed (ssdeep does the same for files). A Buffer
  // is far below the 96 GiB at which the guess would reach the last level, so ssdeep's last-level special case never
  // applies here.
  const levelLimit = guess + 2
  const digest = new Uint8Array(MAX_LEVELS * SPAMSUM_LENGTH) // 0 = no character
  const dindex = new Uint8Array(MAX_LEVELS)
  const fnv = new Uint8Array(MAX_LEVELS).fill(FNV_INIT)
  const halfFnv = new Uint8Array(MAX_LEVELS).fill(FNV_INIT) // stops being reset once the signature reaches 32 chars
  const halfChar = new Uint8Array(MAX_LEVELS)
  const window = new Uint8Array(ROLLING_WINDOW)
  let h1 = 0
  let h2 = 0
  let h3 = 0
  let slot = 0
  let start = 0 // levels below this can no longer be printed: dropped to save time
  let end = 1 // a level starts at its parent's first trigger, since before that both would be equal

  for (let n = 0; n < size; n++) {
    const c = data[n] as number
    h2 = (h2 - h1 + ROLLING_WINDOW * c) >>> 0
    h1 = (h1 + c - (window[slot] as number)) >>> 0
    window[slot] = c
    slot = slot === ROLLING_WINDOW - 1 ? 0 : slot + 1
    h3 = ((h3 << 5) ^ c) >>> 0
    const low = c & 0x3f
    for (let i = start; i < end; i++) {
      fnv[i] = (Math.imul(fnv[i] as number, FNV_PRIME) & 0x3f) ^ low
      halfFnv[i] = (Math.imul(halfFnv[i] as number, FNV_PRIME) & 0x3f) ^ low
    }
    // Level i triggers when roll % (3 << i) === (3 << i) - 1, that is when roll + 1 is a multiple of 3 << i: test the
    // 3 once, then the low bits of the quotient (below 2^31, so bit operations are exact). A level that misses ends
    // the scan, since every multiple of 3 << (i + 1) is one of 3 << i.
    const boundary = ((h1 + h2 + h3) >>> 0) + 1
    if (boundary % MIN_BLOCK_SIZE !== 0) continue
    const quotient = boundary / MIN_BLOCK_SIZE
    for (let i = start; i < end; i++) {
      if ((quotient & ((1 << i) - 1)) !== 0) break
      const at = dindex[i] as number
      if (at === 0 && end < levelLimit) {
        fnv[end] = fnv[end - 1] as number
        halfFnv[end] = halfFnv[end - 1] as number
        end++
      }
      digest[i * SPAMSUM_LENGTH + at] = B64.charCodeAt(fnv[i] as number)
      halfChar[i] = B64.charCodeAt(halfFnv[i] as number)
      if (at < SPAMSUM_LENGTH - 1) {
        // The last piece of a full signature absorbs the rest of the input instead.
        dindex[i] = at + 1
        digest[i * SPAMSUM_LENGTH + at + 1] = 0
        fnv[i] = FNV_INIT
        if (at + 1 < HALF_LENGTH) {
          halfFnv[i] = FNV_INIT
          halfChar[i] = 0
        }
      } else if (end - start >= 2 && blockSizeAt(start) * SPAMSUM_LENGTH < size && (dindex[start + 1] as number) >= HALF_LENGTH) {
        // The final choice below would never come back down to `start`.
        start++
      }
    }
  }

  const roll = (h1 + h2 + h3) >>> 0
  let bi = start
  while (blockSizeAt(bi) * SPAMSUM_LENGTH < size) bi++
  if (bi >= end) bi = end - 1
  // The first guess was too coarse when its signature came out short: halve the block size until it is not.
  while (bi > start && (dindex[bi] as number) < HALF_LENGTH) bi--

  const first = dindex[bi] as number
  let sig1 = Buffer.from(digest.subarray(bi * SPAMSUM_LENGTH, bi * SPAMSUM_LENGTH + first)).toString('latin1')
  // A rolling hash of 0 at the end (an all-zero tail, mostly): ssdeep then adds no final piece, unless one is pending.
  if (roll !== 0) sig1 += B64[fnv[bi] as number]
  else if (first === SPAMSUM_LENGTH - 1 && digest[bi * SPAMSUM_LENGTH + first] !== 0) sig1 += String.fromCharCode(digest[bi * SPAMSUM_LENGTH + first] as number)

  let sig2 = ''
  if (bi < end - 1) {
    const next = bi + 1
    const count = Math.min(dindex[next] as number, HALF_LENGTH - 1)
    sig2 = Buffer.from(digest.subarray(next * SPAMSUM_LENGTH, next * SPAMSUM_LENGTH + count)).toString('latin1')
    if (roll !== 0) sig2 += B64[halfFnv[next] as number]
    else if (halfChar[next] !== 0) sig2 += String.fromCharCode(halfChar[next] as number)
  } else if (roll !== 0) {
    // No trigger ever fired at block size 3: both signatures are the one piece that is the whole input.
    sig2 = B64[fnv[bi] as number] as string
  }
  return `${blockSizeAt(bi)}:${sig1}:${sig2}`
}

/** Parses `blocksize:sig1:sig2` (block size 3 << k, base64 signatures of at most 64 chars); null when malformed. */
export function parseFuzzyHash(text: string): FuzzyHash | null {
  if (typeof text !== 'string' || text.length > 10 + 2 + 2 * SPAMSUM_LENGTH) return null
  const match = HASH_PATTERN.exec(text)
  if (match === null) return null
  const blockSize = Number(match[1])
  let level = 0
  while (level < MAX_LEVELS && blockSizeAt(level) < blockSize) level++
  if (level === MAX_LEVELS || blockSizeAt(level) !== blockSize) return null
  return { blockSize, sig1: match[2] as string, sig2: match[3] as string }
}

/** Drops every character that would make a run of more than 3 identical ones (they carry little information). */
function eliminateRuns(sig: string): string {
  let out = ''
  for (let i = 0; i < sig.length; i++) {
    const ch = sig[i] as string
    if (i >= 3 && ch === sig[i - 1] && ch === sig[i - 2] && ch === sig[i - 3]) continue
    out += ch
  }
  return out
}

/** The 7-char pieces of a signature: two signatures are compared only when they share one. */
function piecesOf(sig: string): Set<string> {
  const pieces = new Set<string>()
  for (let i = 0; i + ROLLING_WINDOW <= sig.length; i++) pieces.add(sig.slice(i, i + ROLLING_WINDOW))
  return pieces
}

function sharesPiece(pieces: ReadonlySet<string>, b: string): boolean {
  for (let j = 0; j + ROLLING_WINDOW <= b.length; j++) if (pieces.has(b.slice(j, j + ROLLING_WINDOW))) return true
  return false
}

// The two rows of the edit distance, reused: signatures are at most SPAMSUM_LENGTH characters (parseFuzzyHash
// refuses longer ones), and a similarity search computes hundreds of distances per subject.
let rowA = new Uint16Array(SPAMSUM_LENGTH + 1)
let rowB = new Uint16Array(SPAMSUM_LENGTH + 1)

/** Edit distance with insertion and deletion costing 1 and substitution 2 (so a + b - 2 * longest common subsequence). */
function weightedEditDistance(a: string, b: string): number {
  if (a.length > SPAMSUM_LENGTH || b.length > SPAMSUM_LENGTH) throw new Error('signature longer than a fuzzy hash allows')
  let previous = rowA
  let current = rowB
  const m = b.length
  for (let j = 0; j <= m; j++) previous[j] = j
  for (let i = 1; i <= a.length; i++) {
    current[0] = i
    const ca = a.charCodeAt(i - 1)
    for (let j = 1; j <= m; j++) {
      const replace = (previous[j - 1] as number) + (ca === b.charCodeAt(j - 1) ? 0 : 2)
      const remove = (previous[j] as number) + 1
      const insert = (current[j - 1] as number) + 1
      current[j] = replace < remove ? (replace < insert ? replace : insert) : remove < insert ? remove : insert
    }
    const swap = previous
    previous = current
    current = swap
  }
  rowA = previous
  rowB = current
  return previous[m] as number
}

/** Every step is symmetric in a and b (the check for a common piece, the edit distance, the cap), as in ssdeep. */
function scoreSignatures(a: string, aPieces: ReadonlySet<string>, b: string, blockSize: number): number {
  // Below one common 7-char piece, two signatures share no whole trigger context: no evidence of similarity.
  if (a.length < ROLLING_WINDOW || b.length < ROLLING_WINDOW || !sharesPiece(aPieces, b)) return 0
  const scaled = Math.floor((weightedEditDistance(a, b) * SPAMSUM_LENGTH) / (a.length + b.length))
  const score = 100 - Math.floor((100 * scaled) / SPAMSUM_LENGTH)
  if (blockSize >= UNCAPPED_BLOCK_SIZE) return score
  // Signatures of tiny inputs are short, and a short match would overstate how much of the input is shared.
  return Math.min(score, Math.floor(blockSize / MIN_BLOCK_SIZE) * Math.min(a.length, b.length))
}

/**
 * The ssdeep match score of two hashes, 0 (unrelated) to 100 (identical signatures), as `ssdeep -a` prints it. Hashes
 * whose block sizes are neither equal nor a factor 2 apart, and malformed ones, score 0.
 */
export function compareFuzzyHashes(a: string, b: string): number {
  return createFuzzyMatcher(a)(b)
}

/** A hash made ready for many comparisons: signatures without long runs, and (for the side compared against) pieces. */
export interface PreparedFuzzyHash {
  readonly blockSize: number
  readonly s1: string
  readonly s2: string
}

interface PreparedWithPieces extends PreparedFuzzyHash {
  readonly p1: ReadonlySet<string>
  readonly p2: ReadonlySet<string>
}

/**
 * Every 7-char piece of both signatures of a prepared hash. Two hashes can score above 0 only if they share one, and
 * two different hashes score 100 only if they do too (or if both are too short to hold one): an index of pieces finds
 * every candidate for a comparison without looking at the others.
 */
export function fuzzyPieces(hash: PreparedFuzzyHash): Set<string> {
  const pieces = piecesOf(hash.s1)
  for (const piece of piecesOf(hash.s2)) pieces.add(piece)
  return pieces
}

/** parseFuzzyHash plus the run elimination every comparison needs; null when malformed. */
export function prepareFuzzyHash(hash: string): PreparedFuzzyHash | null {
  const parsed = parseFuzzyHash(hash)
  return parsed === null ? null : { blockSize: parsed.blockSize, s1: eliminateRuns(parsed.sig1), s2: eliminateRuns(parsed.sig2) }
}

function score(x: PreparedWithPieces, y: PreparedFuzzyHash): number {
  if (x.blockSize === y.blockSize) {
    if (x.s1 === y.s1 && x.s2 === y.s2) return 100
    return Math.max(scoreSignatures(x.s1, x.p1, y.s1, x.blockSize), scoreSignatures(x.s2, x.p2, y.s2, x.blockSize * 2))
  }
  // One size apart: only the signatures made at the common block size can be compared.
  if (x.blockSize * 2 === y.blockSize) return scoreSignatures(x.s2, x.p2, y.s1, y.blockSize)
  if (y.blockSize * 2 === x.blockSize) return scoreSignatures(x.s1, x.p1, y.s2, x.blockSize)
  return 0
}

/**
 * compareFuzzyHashes with `hash` fixed: its signatures and their pieces are prepared once, so comparing one new hash
 * with hundreds of earlier ones (the fuzzyHash plugin's similarity search) costs little per candidate. A candidate is
 * hash text (parsed and checked) or a hash prepared earlier with prepareFuzzyHash.
 */
export function createFuzzyMatcher(hash: string): (other: string | PreparedFuzzyHash) => number {
  const x = prepareFuzzyHash(hash)
  if (x === null) return () => 0
  const prepared: PreparedWithPieces = { ...x, p1: piecesOf(x.s1), p2: piecesOf(x.s2) }
  return (other) => {
    const y = typeof other === 'string' ? prepareFuzzyHash(other) : other
    return y === null ? 0 : score(prepared, y)
  }
}
