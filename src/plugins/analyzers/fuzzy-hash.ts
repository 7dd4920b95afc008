import { z } from 'zod'
import type { JsonValue, Plugin, PluginContext, Subject } from '../plugin.js'
import { createFuzzyMatcher, fuzzyHashOf, fuzzyPieces, parseFuzzyHash, prepareFuzzyHash, type PreparedFuzzyHash } from './ssdeep.js'

/**
 * fuzzyHash: the ssdeep hash of every subject, and the earlier subjects it resembles.
 *
 * Why a minimum size: ssdeep itself hashes anything, even 0 bytes ("3::"), but a signature needs at least one common
 * 7-character piece (about 21 bytes at block size 3) before ssdeep scores two different hashes above 0, and short
 * inputs give short signatures that are equal for unrelated bytes (ssdeep scores equal hashes 100 without looking).
 * 64 bytes gives about 20 pieces, enough for a score to mean something.
 */

export const FuzzyHashOptions = z
  .strictObject({
    minBytes: z.number().int().min(0).max(1024 * 1024).default(64), // bytes; smaller subjects are not hashed
    kinds: z.array(z.enum(['attack', 'decoded', 'sample'])).min(1).max(3).default(['attack', 'decoded', 'sample']), // subjects hashed
    historyLimit: z.number().int().min(0).max(10_000).default(500), // earlier hashes compared per subject (newest first)
    threshold: z.number().int().min(1).max(100).default(50), // lowest ssdeep score (0-100) listed as similar
    maxSimilar: z.number().int().min(0).max(100).default(10), // similar subjects listed per hash, best first
  })
  .prefault({})

type FuzzyHashConfig = z.infer<typeof FuzzyHashOptions>

interface Similar {
  readonly attackId: string
  readonly subjectSha256: string
  readonly score: number
}

/**
 * The hash of a stored fuzzy-hash artifact: `info` is the `hash` field alone (history.find with a field) or, from a
 * history that ignores the field, the whole info.
 */
function storedHashOf(info: JsonValue): string | null {
  if (typeof info === 'string') return info
  if (info === null || typeof info !== 'object' || Array.isArray(info)) return null
  const hash = (info as { readonly [key: string]: JsonValue })['hash']
  return typeof hash === 'string' ? hash : null
}

/** Block sizes a hash of `blockSize` can be compared with: equal, half or double. */
function comparableBlockSizes(blockSize: number): string[] {
  const sizes = blockSize > 3 ? [blockSize / 2, blockSize, blockSize * 2] : [blockSize, blockSize * 2]
  return sizes.map(String)
}

/** True when a signature can score above 0 against a different hash: it has at least one 7-char piece. */
function isComparable(sig1: string, sig2: string): boolean {
  return sig1.length >= 7 || sig2.length >= 7
}

interface Known {
  readonly attackId: string
  readonly subjectSha256: string
  readonly hash: PreparedFuzzyHash
  readonly pieces: ReadonlySet<string>
  readonly seq: number // order of arrival: larger is newer
}

/**
 * The newest hashes per block size, at most `limit` each, kept in memory with an index of their 7-char pieces: read
 * from the history once per block size (the first time a hash of that size or a neighbour is compared), then kept
 * current with the hashes this plugin makes. A comparison then scores only the earlier hashes that share a piece
 * with the new one (no other can score above 0), where reading and scoring every one of them cost milliseconds per
 * subject, growing with the table.
 */
class RecentHashes {
  readonly #limit: number
  readonly #bySize = new Map<number, Known[]>() // oldest first
  readonly #byPiece = new Map<string, Set<Known>>()
  #seq = 0

  constructor(limit: number) {
    this.#limit = limit
  }

  /** The hashes comparable with `hash` that share a piece with it, newest first. */
  candidates(hash: PreparedFuzzyHash, pieces: ReadonlySet<string>, ctx: PluginContext): Known[] {
    const sizes = new Set(comparableBlockSizes(hash.blockSize).map(Number))
    for (const size of sizes) this.#seed(size, ctx)
    const found = new Set<Known>()
    for (const piece of pieces) for (const known of this.#byPiece.get(piece) ?? []) if (sizes.has(known.hash.blockSize)) found.add(known)
    return [...found].sort((a, b) => b.seq - a.seq)
  }

  add(attackId: string, subjectSha256: string, hash: PreparedFuzzyHash, pieces: ReadonlySet<string>): void {
    const list = this.#bySize.get(hash.blockSize)
    if (list === undefined) return // never compared at this size yet: the history will be read when it is
    this.#insert(list, { attackId, subjectSha256, hash, pieces, seq: ++this.#seq })
  }

  #insert(list: Known[], known: Known): void {
    list.push(known)
    for (const piece of known.pieces) {
      let set = this.#byPiece.get(piece)
      if (set === undefined) this.#byPiece.set(piece, (set = new Set()))
      set.add(known)
    }
    if (list.length <= this.#limit) return
    const evicted = list.shift()!
    for (const piece of evicted.pieces) {
      const set = this.#byPiece.get(piece)
      set?.delete(evicted)
      if (set?.size === 0) this.#byPiece.delete(piece)
    }
  }

  #seed(size: number, ctx: PluginContext): void {
    if (this.#bySize.has(size)) return
    const list: Known[] = []
    this.#bySize.set(size, list)
    const earlier = ctx.history.find('fuzzy-hash', [String(size)], this.#limit, 'hash')
    // Newest first from the history: the oldest gets the smallest number, all below what arrives later.
    for (let i = earlier.length - 1; i >= 0; i--) {
      const entry = earlier[i]!
      const text = storedHashOf(entry.info)
      const hash = text === null ? null : prepareFuzzyHash(text) // the database is not trusted: malformed is skipped
      if (hash !== null) this.#insert(list, { attackId: entry.attackId, subjectSha256: entry.subjectSha256, hash, pieces: fuzzyPieces(hash), seq: -1_000_000_000 + this.#seq++ })
    }
  }
}

function findSimilar(hash: string, subject: Subject, ctx: PluginContext, options: FuzzyHashConfig, recent: RecentHashes, prepared: PreparedFuzzyHash, pieces: ReadonlySet<string>): Similar[] {
  if (options.historyLimit === 0 || options.maxSimilar === 0) return []
  const best = new Map<string, Similar>() // one entry per subject: a payload sent 400 times must not fill the list
  const compare = createFuzzyMatcher(hash)
  for (const entry of recent.candidates(prepared, pieces, ctx)) {
    if (entry.subjectSha256 === subject.sha256 || best.has(entry.subjectSha256)) continue
    const score = compare(entry.hash)
    if (score >= options.threshold) best.set(entry.subjectSha256, { attackId: entry.attackId, subjectSha256: entry.subjectSha256, score })
  }
  // Stable sort: equal scores keep the newest-first order.
  return [...best.values()].sort((a, b) => b.score - a.score).slice(0, options.maxSimilar)
}

/** Creates the fuzzyHash analyser: records `fuzzy-hash` artifacts (matchKey: the block size) with similar subjects. */
export function createFuzzyHashPlugin(options: z.infer<typeof FuzzyHashOptions>): Plugin {
  const recent = new RecentHashes(options.historyLimit)
  return {
    name: 'fuzzyHash',
    phase: 'analyze',
    accepts(subject: Subject): boolean {
      return subject.data.length >= options.minBytes && options.kinds.includes(subject.kind)
    },
    async process(subject: Subject, ctx: PluginContext): Promise<void> {
      const hash = fuzzyHashOf(subject.data)
      const parsed = parseFuzzyHash(hash)
      // fuzzyHashOf always yields a well-formed hash; a null here would be a bug in it.
      if (parsed === null) throw new Error(`fuzzyHashOf produced a malformed hash: ${hash}`)
      const prepared = prepareFuzzyHash(hash)
      if (prepared === null) throw new Error(`fuzzyHashOf produced a malformed hash: ${hash}`)
      const pieces = fuzzyPieces(prepared)
      const similar = isComparable(parsed.sig1, parsed.sig2) ? findSimilar(hash, subject, ctx, options, recent, prepared, pieces) : []
      recent.add(subject.attack.id, subject.sha256, prepared, pieces)
      ctx.addArtifact({
        kind: 'fuzzy-hash',
        matchKey: String(parsed.blockSize),
        info: { hash, similar: similar.map((s) => ({ attackId: s.attackId, subjectSha256: s.subjectSha256, score: s.score })) },
      })
    },
  }
}
