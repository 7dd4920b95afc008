import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import fc from 'fast-check'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { createFuzzyHashPlugin, FuzzyHashOptions } from '../../src/plugins/analyzers/fuzzy-hash.js'
import { compareFuzzyHashes, fuzzyHashOf, parseFuzzyHash } from '../../src/plugins/analyzers/ssdeep.js'
import type { ArtifactHistory, ArtifactKind, JsonValue } from '../../src/plugins/plugin.js'
import { createSeededRandom } from '../../src/core/seeded-random.js'
import { attackOf, runPlugin, sha256Hex, subjectOf } from '../helpers/plugin-harness.js'

// The reference is Debian's ssdeep 2.14 (package `ssdeep`): every hash and score here is checked against the program.
const run = promisify(execFile)
const SSDEEP_HEADER = 'ssdeep,1.1--blocksize:hash:hash,filename'

const generator = createSeededRandom // seeded, so a failing corpus is the same on the next run

function randomBuffer(next: () => number, size: number): Buffer {
  const out = Buffer.alloc(size)
  for (let i = 0; i < size; i++) out[i] = next() & 0xff
  return out
}

function repeat(pattern: string, size: number): Buffer {
  return Buffer.from(pattern.repeat(Math.ceil(size / pattern.length)).slice(0, size), 'latin1')
}

function wordsText(next: () => number, size: number): Buffer {
  const words = ['GET', '/cgi-bin/', 'wget', 'http://', 'chmod', '777', 'busybox', 'tftp', '-g', 'admin', 'root', '\r\n']
  let text = ''
  while (text.length < size) text += `${words[next() % words.length] as string}${next() % 3 === 0 ? '\n' : ' '}`
  return Buffer.from(text.slice(0, size), 'latin1')
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fuzzy-hash-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** What `ssdeep -s -b` prints for each of `files`, by file name. */
async function ssdeepHashes(files: ReadonlyMap<string, Buffer>): Promise<Map<string, string>> {
  const dir = tempDir()
  for (const [name, data] of files) writeFileSync(join(dir, name), data)
  const { stdout } = await run('ssdeep', ['-s', '-b', ...[...files.keys()].map((n) => join(dir, n))], { maxBuffer: 16 * 1024 * 1024 })
  const hashes = new Map<string, string>()
  for (const line of stdout.split('\n').slice(1)) {
    const match = /^([^,]*),"([^"]+)"$/.exec(line)
    if (match !== null) hashes.set(match[2] as string, match[1] as string)
  }
  return hashes
}

/** Every score `ssdeep -a -c -k known unknown` prints, keyed "unknownIndex,knownIndex". */
async function ssdeepScores(known: readonly string[], unknown: readonly string[]): Promise<Map<string, number>> {
  const dir = tempDir()
  const sigFile = (prefix: string, hashes: readonly string[]): string => [SSDEEP_HEADER, ...hashes.map((h, i) => `${h},"${prefix}${i}"`), ''].join('\n')
  writeFileSync(join(dir, 'known.txt'), sigFile('k', known))
  writeFileSync(join(dir, 'unknown.txt'), sigFile('u', unknown))
  const { stdout } = await run('ssdeep', ['-a', '-c', '-k', join(dir, 'known.txt'), join(dir, 'unknown.txt')], { maxBuffer: 16 * 1024 * 1024 })
  const scores = new Map<string, number>()
  for (const line of stdout.split('\n')) {
    const match = /^"u(\d+)","k(\d+)",(\d+)$/.exec(line)
    if (match !== null) scores.set(`${match[1] as string},${match[2] as string}`, Number(match[3]))
  }
  return scores
}

beforeAll(async () => {
  // A missing reference program must fail loudly, not skip: scripts/setup.sh installs Debian's `ssdeep`.
  const { stdout } = await run('ssdeep', ['-V'])
  expect(stdout.trim()).toMatch(/^2\.1[0-9]/)
})

describe('fuzzyHashOf against ssdeep', () => {
  it('prints the same hash as ssdeep for sizes, contents and tails that reach every branch', async () => {
    const next = generator(0x5eed)
    const files = new Map<string, Buffer>()
    const add = (name: string, data: Buffer): void => void files.set(`${files.size}-${name}`, data)
    for (const size of [0, 1, 2, 6, 7, 8, 20, 63, 64, 65, 100, 191, 192, 193, 383, 385, 1000, 4095, 4096, 4097, 12_289, 65_536, 100 * 1024, 1024 * 1024]) add(`random-${size}`, randomBuffer(next, size))
    for (const size of [1, 7, 64, 4096, 1024 * 1024]) add(`zero-${size}`, Buffer.alloc(size))
    add('ff-4096', Buffer.alloc(4096, 0xff))
    add('abc-10000', repeat('abc', 10_000))
    add('A-5000', repeat('A', 5000))
    add('period8-100k', repeat('abcdefgh', 100 * 1024))
    add('period97-50k', repeat(randomBuffer(next, 97).toString('latin1'), 50_000))
    add('words-50k', wordsText(next, 50_000))
    add('zeros-then-random', Buffer.concat([Buffer.alloc(3000), randomBuffer(next, 3000)]))
    // A rolling hash of 0 at the end (7+ trailing zeros) takes the digest's other branches; sizes just past
    // 64 * 3 * 2^k make ssdeep halve its first block size guess about half the time, filling the first signature.
    for (let k = 0; k < 12; k++) {
      const size = 64 * 3 * 2 ** k + 1 + (next() % 64)
      add(`random-${size}-zero-tail`, Buffer.concat([randomBuffer(next, size), Buffer.alloc(7 + (next() % 40))]))
      add(`random-${size}`, randomBuffer(next, size))
      add(`words-${size}-zero-tail`, Buffer.concat([wordsText(next, size), Buffer.alloc(8)]))
    }
    // Periodic data triggers at several block sizes at once, so the second signature gets cut at 32 characters.
    for (let i = 0; i < 16; i++) {
      const period = randomBuffer(next, 40 + (next() % 400)).toString('latin1')
      const size = 2000 + (next() % 200_000)
      add(`period${period.length}-${size}`, repeat(period, size))
      add(`period${period.length}-${size}-zero-tail`, Buffer.concat([repeat(period, size), Buffer.alloc(7)]))
    }
    for (let i = 0; i < 40; i++) {
      const size = Math.floor(2 ** ((next() % 1700) / 100))
      add(`random-${size}`, randomBuffer(next, size))
    }
    const expected = await ssdeepHashes(files)
    expect(expected.size).toBe(files.size)
    for (const [name, data] of files) expect(`${fuzzyHashOf(data)} (${name})`).toBe(`${expected.get(name) as string} (${name})`)
  })

  it('gives an all-zero input no signature at all, as ssdeep does ("3::")', () => {
    expect(fuzzyHashOf(Buffer.alloc(0))).toBe('3::')
    expect(fuzzyHashOf(Buffer.alloc(1024 * 1024))).toBe('3::')
  })
})

describe('compareFuzzyHashes against ssdeep', () => {
  it('scores related files as ssdeep -a -k does (edits, inserts, deletions, size changes one block size apart)', async () => {
    const next = generator(0xc0ffee)
    const bases = [randomBuffer(next, 20_000), wordsText(next, 30_000), randomBuffer(next, 3_000), randomBuffer(next, 400)]
    const variants: Buffer[] = []
    for (const base of bases) {
      variants.push(base)
      const flipped = Buffer.from(base)
      for (let i = 0; i < 5; i++) {
        const at = next() % flipped.length
        flipped[at] = (flipped[at] as number) ^ 0x55
      }
      variants.push(flipped)
      const at = next() % base.length
      variants.push(Buffer.concat([base.subarray(0, at), randomBuffer(next, 100), base.subarray(at)]))
      variants.push(Buffer.concat([base.subarray(0, at), base.subarray(Math.min(base.length, at + base.length / 10))]))
      variants.push(Buffer.concat([base, randomBuffer(next, base.length)])) // about twice the block size
      variants.push(base.subarray(0, Math.floor(base.length / 2))) // about half
    }
    const hashes = variants.map((v) => fuzzyHashOf(v))
    const expected = await ssdeepScores(hashes, hashes)
    expect(expected.size).toBe(hashes.length * hashes.length)
    let related = 0
    for (const [key, score] of expected) {
      const [u, k] = key.split(',').map(Number) as [number, number]
      expect(`${hashes[u] as string} vs ${hashes[k] as string}: ${compareFuzzyHashes(hashes[u] as string, hashes[k] as string)}`).toBe(`${hashes[u] as string} vs ${hashes[k] as string}: ${score}`)
      if (u !== k && score > 0) related++
    }
    expect(related, 'pairs that ssdeep found similar').toBeGreaterThan(40)
  })

  it('scores synthetic hashes as ssdeep does: runs of one character, short signatures, small block size caps', async () => {
    const next = generator(42)
    const alphabet = 'ABCDab+/'
    const sig = (max: number): string => Array.from({ length: next() % (max + 1) }, () => alphabet[next() % (next() % 2 === 0 ? 2 : alphabet.length)]).join('')
    const mutate = (s: string): string => {
      const chars = [...s]
      for (let i = next() % 6; i > 0 && chars.length > 0; i--) chars[next() % chars.length] = alphabet[next() % alphabet.length] as string
      return chars.join('').slice(0, 64)
    }
    const known: string[] = []
    const unknown: string[] = []
    for (let i = 0; i < 70; i++) {
      const bs = 3 * 2 ** (next() % 6)
      const [s1, s2] = [sig(64), sig(32)]
      known.push(`${bs}:${s1}:${s2}`)
      const shift = next() % 3
      // Same block size, or one apart so the shared signature is the one ssdeep compares.
      if (shift === 0) unknown.push(`${bs}:${mutate(s1)}:${mutate(s2)}`)
      else if (shift === 1) unknown.push(`${bs * 2}:${mutate(s2)}:${sig(32)}`)
      else unknown.push(`${bs === 3 ? 3 : bs / 2}:${sig(64)}:${mutate(s1).slice(0, 32)}`)
    }
    const expected = await ssdeepScores(known, unknown)
    expect(expected.size).toBe(known.length * unknown.length)
    const differences: string[] = []
    let nonzero = 0
    for (const [key, score] of expected) {
      const [u, k] = key.split(',').map(Number) as [number, number]
      const ours = compareFuzzyHashes(unknown[u] as string, known[k] as string)
      if (ours !== score) differences.push(`${unknown[u] as string} vs ${known[k] as string}: ours ${ours}, ssdeep ${score}`)
      if (score > 0 && score < 100) nonzero++
    }
    expect(differences).toEqual([])
    expect(nonzero, 'pairs with a partial score').toBeGreaterThan(30)
  })

  it('does not compare block sizes that are neither equal nor a factor 2 apart', () => {
    const sig = 'ABCDEFGHIJKLMNOP'
    expect(compareFuzzyHashes(`3:${sig}:${sig}`, `12:${sig}:${sig}`)).toBe(0)
    expect(compareFuzzyHashes(`48:${sig}:${sig}`, `96:${sig}:Q`)).toBe(100)
  })
})

describe('parseFuzzyHash', () => {
  it('accepts what fuzzyHashOf prints and refuses malformed text', () => {
    expect(parseFuzzyHash('96:AlhMhnZvUhm:AlhMhZ83')).toEqual({ blockSize: 96, sig1: 'AlhMhnZvUhm', sig2: 'AlhMhZ83' })
    expect(parseFuzzyHash('3::')).toEqual({ blockSize: 3, sig1: '', sig2: '' })
    for (const bad of ['', '3', '3:', '5:AB:CD', '0:AB:CD', '-3:AB:CD', '3:AB', '3:A-B:CD', '3:AB:CD:EF', '3:AB:CD,"name"', `3:${'A'.repeat(65)}:B`, '03:AB:C', `${3 * 2 ** 31}:A:B`, ' 3:A:B']) {
      expect(parseFuzzyHash(bad), bad).toBeNull()
    }
  })

  it('never throws on arbitrary text and scores malformed hashes 0', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'0123456789:AB+/,-', 'é', '\0') }), fc.string(), (text, other) => {
        const parsed = parseFuzzyHash(text)
        expect(parsed === null || text === `${parsed.blockSize}:${parsed.sig1}:${parsed.sig2}`).toBe(true)
        if (parsed === null) expect(compareFuzzyHashes(text, '3:ABCDEFGH:ABCD')).toBe(0)
        expect(compareFuzzyHashes(other, text)).toBeGreaterThanOrEqual(0)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('properties', () => {
  it('hashes any bytes into a hash that parses, compares to itself as 100, and scores symmetrically in 0..100', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 3000 }), (a, b) => {
        const [ha, hb] = [fuzzyHashOf(Buffer.from(a)), fuzzyHashOf(Buffer.from(b))]
        expect(parseFuzzyHash(ha)).not.toBeNull()
        expect(compareFuzzyHashes(ha, ha)).toBe(100)
        const score = compareFuzzyHashes(ha, hb)
        expect(score).toBe(compareFuzzyHashes(hb, ha))
        expect(score >= 0 && score <= 100 && Number.isInteger(score)).toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  it('scores hashes of an input and an edited copy symmetrically, in 0..100', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 200, maxLength: 5000 }), fc.nat(), fc.uint8Array({ maxLength: 64 }), (a, at, insert) => {
        const base = Buffer.from(a)
        const cut = at % base.length
        const edited = Buffer.concat([base.subarray(0, cut), insert, base.subarray(cut)])
        const [ha, hb] = [fuzzyHashOf(base), fuzzyHashOf(edited)]
        const score = compareFuzzyHashes(ha, hb)
        expect(score).toBe(compareFuzzyHashes(hb, ha))
        expect(score).toBeGreaterThanOrEqual(0)
        expect(score).toBeLessThanOrEqual(100)
      }),
      { numRuns: 200 },
    )
  })
})

/** An ArtifactHistory over fixed rows that records what it was asked. */
function historyOf(rows: readonly { attackId: string; subjectSha256: string; matchKey: string; info: JsonValue }[]): ArtifactHistory & { asked: { kind: ArtifactKind; keys: readonly string[]; limit: number }[] } {
  const asked: { kind: ArtifactKind; keys: readonly string[]; limit: number }[] = []
  return {
    asked,
    find: (kind, keys, limit) => {
      asked.push({ kind, keys, limit })
      return rows.filter((r) => keys.includes(r.matchKey)).slice(0, limit)
    },
    recentDownload: () => null,
  }
}

describe('fuzzyHash plugin', () => {
  const next = generator(7)
  const base = randomBuffer(next, 10_000)

  it('records the ssdeep hash with the block size as matchKey, and skips subjects below minBytes', async () => {
    const plugin = createFuzzyHashPlugin(FuzzyHashOptions.parse({}))
    expect(plugin.name).toBe('fuzzyHash')
    expect(plugin.phase).toBe('analyze')
    const { artifacts } = await runPlugin(plugin, subjectOf(attackOf(base)))
    const hash = fuzzyHashOf(base)
    expect(artifacts).toEqual([{ kind: 'fuzzy-hash', matchKey: hash.split(':')[0], info: { hash, similar: [] } }])
    expect((await runPlugin(plugin, subjectOf(attackOf(base.subarray(0, 63))))).artifacts).toEqual([])
    const small = createFuzzyHashPlugin(FuzzyHashOptions.parse({ minBytes: 0 }))
    expect((await runPlugin(small, subjectOf(attackOf(Buffer.alloc(0))))).artifacts[0]?.info).toEqual({ hash: '3::', similar: [] })
    const samplesOnly = createFuzzyHashPlugin(FuzzyHashOptions.parse({ kinds: ['sample'] }))
    expect((await runPlugin(samplesOnly, subjectOf(attackOf(base)))).artifacts).toEqual([])
    expect((await runPlugin(samplesOnly, subjectOf(attackOf('x'), base, 'sample'))).artifacts).toHaveLength(1)
  })

  it('lists earlier similar subjects, best first, above the threshold, once per subject, never itself', async () => {
    const hash = fuzzyHashOf(base)
    const blockSize = Number(hash.split(':')[0])
    const edited = (count: number): Buffer => {
      const copy = Buffer.from(base)
      for (let i = 0; i < count; i++) copy[(i * 997) % copy.length] = 0xff - (copy[(i * 997) % copy.length] as number)
      return copy
    }
    const close = edited(2)
    const farther = edited(12)
    const doubled = Buffer.concat([base, randomBuffer(next, 10_000)])
    const row = (attackId: string, data: Buffer | string, info?: JsonValue): { attackId: string; subjectSha256: string; matchKey: string; info: JsonValue } => {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data
      const h = fuzzyHashOf(bytes)
      return { attackId, subjectSha256: sha256Hex(bytes), matchKey: String(h.split(':')[0]), info: info ?? { hash: h } }
    }
    const sameKey = (r: ReturnType<typeof row>): ReturnType<typeof row> => ({ ...r, matchKey: String(blockSize) })
    const history = historyOf([
      row('A-self', base), // the same bytes seen before: identical, not "similar"
      row('A-farther', farther),
      row('A-close-newest', close),
      row('A-close-older', close),
      row('A-doubled', doubled),
      row('A-unrelated', randomBuffer(next, 10_000)),
      sameKey(row('A-garbage', 'x', { hash: '96:not a hash' })),
      sameKey(row('A-no-info', 'y', null)),
      sameKey(row('A-number', 'z', { hash: 5 })),
      sameKey(row('A-array', 'w', [{ hash: hash }])),
    ])
    const plugin = createFuzzyHashPlugin(FuzzyHashOptions.parse({ historyLimit: 50 }))
    const { artifacts } = await runPlugin(plugin, subjectOf(attackOf(base)), { history })
    // One question per comparable block size (each answered from the index newest first), asked once per plugin.
    expect(history.asked).toEqual([blockSize / 2, blockSize, blockSize * 2].map((size) => ({ kind: 'fuzzy-hash', keys: [String(size)], limit: 50 })))
    const similar = (artifacts[0]?.info as { similar: { attackId: string; subjectSha256: string; score: number }[] }).similar
    const expectedScore = (data: Buffer): number => compareFuzzyHashes(hash, fuzzyHashOf(data))
    const expected = [
      { attackId: 'A-close-newest', subjectSha256: sha256Hex(close), score: expectedScore(close) },
      { attackId: 'A-farther', subjectSha256: sha256Hex(farther), score: expectedScore(farther) },
      { attackId: 'A-doubled', subjectSha256: sha256Hex(doubled), score: expectedScore(doubled) },
    ]
      .filter((s) => s.score >= 50)
      .sort((a, b) => b.score - a.score)
    expect(expected.map((s) => s.attackId), 'the fixture must produce real matches').toContain('A-close-newest')
    expect(expected.length).toBeGreaterThanOrEqual(2)
    expect(similar).toEqual(expected)

    const strict = createFuzzyHashPlugin(FuzzyHashOptions.parse({ threshold: 100, maxSimilar: 1 }))
    const top = await runPlugin(strict, subjectOf(attackOf(base)), { history })
    expect((top.artifacts[0]?.info as { similar: unknown[] }).similar).toEqual(expected.filter((s) => s.score === 100).slice(0, 1))
  })

  it('asks only for block sizes 3 and 6 at the smallest block size, and not at all for signatures too short to match', async () => {
    const history = historyOf([])
    const plugin = createFuzzyHashPlugin(FuzzyHashOptions.parse({}))
    await runPlugin(plugin, subjectOf(attackOf(randomBuffer(next, 100))), { history })
    expect(history.asked.map((a) => a.keys)).toEqual([['3'], ['6']])
    const flat = await runPlugin(plugin, subjectOf(attackOf(Buffer.alloc(4096))), { history })
    expect(flat.artifacts[0]?.info).toEqual({ hash: '3::', similar: [] })
    expect(history.asked).toHaveLength(2)
  })

  it('remembers the hashes it made: a later similar subject is found without asking the history again', async () => {
    const history = historyOf([])
    const plugin = createFuzzyHashPlugin(FuzzyHashOptions.parse({}))
    const first = randomBuffer(next, 20_000)
    const second = Buffer.concat([first.subarray(0, 19_000), randomBuffer(next, 1_000)])
    const a = attackOf(first, { id: '01JTESTATTACK0000000000001' })
    await runPlugin(plugin, subjectOf(a), { history })
    const asked = history.asked.length
    const { artifacts } = await runPlugin(plugin, subjectOf(attackOf(second)), { history })
    const similar = (artifacts[0]?.info as { similar: { attackId: string; score: number }[] }).similar
    expect(similar.map((s) => s.attackId)).toEqual([a.id])
    expect(similar[0]!.score).toBe(compareFuzzyHashes(fuzzyHashOf(first), fuzzyHashOf(second)))
    expect(history.asked.length).toBe(asked) // same block size: already in memory
  })

  it('validates its options', () => {
    expect(FuzzyHashOptions.parse(undefined)).toEqual({ minBytes: 64, kinds: ['attack', 'decoded', 'sample'], historyLimit: 500, threshold: 50, maxSimilar: 10 })
    expect(() => FuzzyHashOptions.parse({ threshold: 0 })).toThrow()
    expect(() => FuzzyHashOptions.parse({ historyLimit: 1e9 })).toThrow()
    expect(() => FuzzyHashOptions.parse({ minbytes: 1 })).toThrow()
  })
})
