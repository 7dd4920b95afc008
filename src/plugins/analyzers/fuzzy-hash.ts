import { z } from 'zod'
import type { JsonValue, Plugin, PluginContext, Subject } from '../plugin.js'
import { createFuzzyMatcher, fuzzyHashOf, parseFuzzyHash } from './ssdeep.js'

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

/** The `hash` of a stored fuzzy-hash artifact's info, or null when it is not one (the database is not trusted). */
function storedHashOf(info: JsonValue): string | null {
  if (info === null || typeof info !== 'object' || Array.isArray(info)) return null
  const hash = (info as { readonly [key: string]: JsonValue })['hash']
  return typeof hash === 'string' && parseFuzzyHash(hash) !== null ? hash : null
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

function findSimilar(hash: string, blockSize: number, subject: Subject, ctx: PluginContext, options: FuzzyHashConfig): Similar[] {
  if (options.historyLimit === 0 || options.maxSimilar === 0) return []
  const earlier = ctx.history.find('fuzzy-hash', comparableBlockSizes(blockSize), options.historyLimit)
  const best = new Map<string, Similar>() // one entry per subject: a payload sent 400 times must not fill the list
  const compare = createFuzzyMatcher(hash)
  for (const entry of earlier) {
    if (entry.subjectSha256 === subject.sha256 || best.has(entry.subjectSha256)) continue
    const other = storedHashOf(entry.info)
    if (other === null) continue
    const score = compare(other)
    if (score >= options.threshold) best.set(entry.subjectSha256, { attackId: entry.attackId, subjectSha256: entry.subjectSha256, score })
  }
  // Stable sort: equal scores keep the history's newest-first order.
  return [...best.values()].sort((a, b) => b.score - a.score).slice(0, options.maxSimilar)
}

/** Creates the fuzzyHash analyser: records `fuzzy-hash` artifacts (matchKey: the block size) with similar subjects. */
export function createFuzzyHashPlugin(options: z.infer<typeof FuzzyHashOptions>): Plugin {
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
      const similar = isComparable(parsed.sig1, parsed.sig2) ? findSimilar(hash, parsed.blockSize, subject, ctx, options) : []
      ctx.addArtifact({
        kind: 'fuzzy-hash',
        matchKey: String(parsed.blockSize),
        info: { hash, similar: similar.map((s) => ({ attackId: s.attackId, subjectSha256: s.subjectSha256, score: s.score })) },
      })
    },
  }
}
