import { isMostlyPrintableUtf8 } from './utf16.js'

/**
 * Finding XOR keys by known plaintext (crib dragging). Pure: no I/O, no state. Never throws on any input.
 *
 * For a key length L and a crib c at position p, the key bytes are data[p + j] ^ c[j] (j < L), and the crib's other
 * bytes must agree: data[p + j] ^ data[p + j + L] === c[j] ^ c[j + L] for every j + L < c.length, a test that needs
 * no key at all. So each (key length, crib) pair is one pass over the data: O(n x cribs x key lengths), never a
 * search of the key space. A key found this way is kept only when what it decodes is mostly printable text (text
 * cribs) or a plausible PE file (MZ cribs); the all-zero key (plain text) and case-flipping keys never are (keyAt).
 */

/** Bounds and thresholds of findXorKeys. */
export interface XorSearchOptions {
  readonly maxKeyLength: number // 1..8 bytes; a longer key is not looked for
  readonly maxScanBytes: number // cribs are looked for in the first this many bytes only
  readonly printableRatio: number // share of printable characters a text result needs
  readonly minBytes: number // text results shorter than this are ignored
  readonly maxFindings: number // the search stops once it has this many
}

/** One key and what it decodes. */
export interface XorFinding {
  /**
   * The repeating key (its shortest period) as applied from the region's first byte: plain[j] = data[offset + j] ^
   * key[j % key.length], so a blob encoded from its start shows the key its encoder used.
   */
  readonly key: Buffer
  readonly crib: string // the plaintext that revealed it
  readonly offset: number // of the decoded region in the data
  readonly data: Buffer // the decoded region: text around the crib, or a PE file from its "MZ" to the end of the data
}

type CribKind = 'text' | 'mz' | 'pe-header' | 'pe-stub'

interface Crib {
  readonly name: string
  readonly bytes: Buffer
  readonly kind: CribKind
  readonly maxKeyLength: number // longest key this crib can reveal and still check
}

// A text crib must check at least this many bytes beyond the key it reveals (false match: 1 in 65,536 a position).
const MIN_VERIFY_BYTES = 2

function textCrib(text: string): Crib {
  return { name: text, bytes: Buffer.from(text, 'latin1'), kind: 'text', maxKeyLength: text.length - MIN_VERIFY_BYTES }
}

// The DOS stub message at its usual offset (every Microsoft linker, and Go, MinGW and others that copy the stub).
const STUB_OFFSET = 0x4e
const STUB = Buffer.from('This program cannot be run in DOS mode', 'latin1')
const STUB_PREFIX = STUB.subarray(0, 26) // "This program cannot be run": what a PE check compares
// The first 16 bytes of nearly every PE header (e_cblp 0x90, e_cp 3, e_cparhdr 4, e_maxalloc 0xffff).
const PE_HEADER = Buffer.from([0x4d, 0x5a, 0x90, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00])
// e_lfanew beyond this is not taken for a PE header (real ones sit within the first few hundred bytes).
const MAX_LFANEW = 0x1000

const CRIBS: readonly Crib[] = [
  ...['http://', 'https://', 'cmd.exe', 'cmd', '/bin/sh', 'powershell', 'wget ', 'curl ', 'tftp '].map(textCrib),
  // "MZ" alone checks nothing past a 2-byte key; the PE check that follows is what makes a match.
  { name: 'MZ', bytes: Buffer.from('MZ', 'latin1'), kind: 'mz', maxKeyLength: 2 },
  { name: 'MZ header', bytes: PE_HEADER, kind: 'pe-header', maxKeyLength: PE_HEADER.length - MIN_VERIFY_BYTES },
  { name: 'DOS stub', bytes: STUB, kind: 'pe-stub', maxKeyLength: STUB.length - MIN_VERIFY_BYTES },
]

// A text region goes on across one non-text byte (a NUL between C strings, a stray control) only when at least
// this many text bytes follow it: a shorter fragment is more likely a length field or header byte that happens to
// decode to a letter, and would glue junk to the edge of the text.
const MIN_TEXT_AFTER_GAP = 4
// Work allowed for growing and checking regions, per byte scanned: a subject crafted to match many keys stops here.
const BUDGET_PER_BYTE = 4
const BUDGET_BASE = 65_536

interface SearchState {
  readonly findings: XorFinding[]
  readonly accepted: Map<string, { readonly start: number; readonly end: number }[]> // by key hex
  budget: number
}

/** Keys that reveal a crib in `data`, with what they decode; at most `maxFindings`, in the order found. */
export function findXorKeys(data: Uint8Array, options: XorSearchOptions): XorFinding[] {
  const scanEnd = Math.min(data.length, options.maxScanBytes)
  const state: SearchState = { findings: [], accepted: new Map(), budget: BUDGET_BASE + BUDGET_PER_BYTE * scanEnd }
  for (let keyLength = 1; keyLength <= Math.min(options.maxKeyLength, 8); keyLength++) {
    for (const crib of CRIBS) {
      if (keyLength > crib.maxKeyLength) continue
      searchCrib(data, scanEnd, crib, keyLength, options, state)
      if (state.findings.length >= options.maxFindings || state.budget <= 0) return state.findings
    }
  }
  return state.findings
}

function searchCrib(data: Uint8Array, scanEnd: number, crib: Crib, keyLength: number, options: XorSearchOptions, state: SearchState): void {
  const c = crib.bytes
  const diffs = new Uint8Array(Math.max(0, c.length - keyLength))
  for (let j = 0; j < diffs.length; j++) diffs[j] = (c[j] as number) ^ (c[j + keyLength] as number)
  // Per key, the end of the last text region examined with it: later matches inside it add nothing.
  const examined = new Map<string, number>()
  const scratch = Buffer.alloc(keyLength)
  for (let p = 0; p + c.length <= scanEnd; p++) {
    let j = 0
    while (j < diffs.length && ((data[p + j] as number) ^ (data[p + j + keyLength] as number)) === diffs[j]) j++
    if (j < diffs.length || !keyAt(data, p, c, scratch)) continue
    // The PE check is a few reads, cheaper than naming the key: a 2-byte key makes every position an "MZ" candidate.
    const start = crib.kind === 'pe-stub' ? p - STUB_OFFSET : p
    if (crib.kind !== 'text' && (start < 0 || !isPe(data, scratch, start))) continue
    const key = shortestPeriod(scratch)
    const hex = key.toString('hex')
    if (p < (examined.get(hex) ?? 0) || isAccepted(state, hex, p)) continue
    let finding: XorFinding | null = null
    if (crib.kind === 'text') {
      state.budget--
      const region = growText(data, scanEnd, key, p, p + c.length, state)
      examined.set(hex, region.end)
      finding = textFinding(data, key, crib, region, options, state)
    } else {
      finding = { key, crib: crib.name, offset: start, data: xorSlice(data, key, start, data.length) }
    }
    if (finding !== null) {
      state.findings.push({ ...finding, key: rotate(key, finding.offset) })
      const ranges = state.accepted.get(hex) ?? []
      ranges.push({ start: finding.offset, end: finding.offset + finding.data.length })
      state.accepted.set(hex, ranges)
    }
    if (state.findings.length >= options.maxFindings || state.budget <= 0) return
  }
}

/**
 * Writes into `key` the key a crib at `p` implies (phase 0 at offset 0); false when every byte is 0x00 or 0x20.
 * Zero is no key (the crib is there in plain); 0x20 only flips the case of letters, so a key of those bytes is how
 * plain text that says "CMD.EXE" matches the crib "cmd.exe", and no encoder uses one to hide anything.
 */
function keyAt(data: Uint8Array, p: number, crib: Buffer, key: Buffer): boolean {
  const keyLength = key.length
  let caseOnly = true
  for (let j = 0; j < keyLength; j++) {
    const k = (data[p + j] as number) ^ (crib[j] as number)
    key[(p + j) % keyLength] = k
    if ((k & ~0x20) !== 0) caseOnly = false
  }
  return !caseOnly
}

/** A copy of the key reduced to its shortest period: a period that divides the length decodes the same ([5a 5a] is 5a). */
function shortestPeriod(key: Buffer): Buffer {
  const keyLength = key.length
  for (let period = 1; period < keyLength; period++) {
    if (keyLength % period !== 0) continue
    let repeats = true
    for (let i = period; i < keyLength && repeats; i++) repeats = key[i] === key[i % period]
    if (repeats) return Buffer.from(key.subarray(0, period))
  }
  return Buffer.from(key)
}

/** The phase-0 key as applied from `offset`. */
function rotate(key: Buffer, offset: number): Buffer {
  const rotated = Buffer.alloc(key.length)
  for (let j = 0; j < key.length; j++) rotated[j] = key[(offset + j) % key.length] as number
  return rotated
}

function isAccepted(state: SearchState, hex: string, p: number): boolean {
  return (state.accepted.get(hex) ?? []).some((r) => p >= r.start && p < r.end)
}

function isTextByte(b: number): boolean {
  return (b >= 0x20 && b <= 0x7e) || b === 0x09 || b === 0x0a || b === 0x0d
}

/** The text region around a crib at [from, to), grown both ways (MIN_TEXT_AFTER_GAP above). */
function growText(data: Uint8Array, scanEnd: number, key: Buffer, from: number, to: number, state: SearchState): { start: number; end: number } {
  return { start: grow(data, 0, key, from - 1, -1, state), end: grow(data, scanEnd, key, to, 1, state) }
}

/** Walks from `at` in `step` direction while the decoded bytes are text; returns the region's bound on that side. */
function grow(data: Uint8Array, limit: number, key: Buffer, at: number, step: 1 | -1, state: SearchState): number {
  const k = key.length
  let bound = step === 1 ? at : at + 1
  let inGap = false
  let afterGap = 0
  for (let i = at; (step === 1 ? i < limit : i >= limit) && state.budget > 0; i += step, state.budget--) {
    if (isTextByte((data[i] as number) ^ (key[i % k] as number))) {
      if (inGap && ++afterGap < MIN_TEXT_AFTER_GAP) continue
      inGap = false
      bound = step === 1 ? i + 1 : i
    } else {
      if (inGap) break
      inGap = true
      afterGap = 0
    }
  }
  return bound
}

function textFinding(data: Uint8Array, key: Buffer, crib: Crib, region: { start: number; end: number }, options: XorSearchOptions, state: SearchState): XorFinding | null {
  const length = region.end - region.start
  if (length < options.minBytes) return null
  state.budget -= length
  const decoded = xorSlice(data, key, region.start, region.end)
  if (!isMostlyPrintableUtf8(decoded, options.printableRatio)) return null
  return { key, crib: crib.name, offset: region.start, data: decoded }
}

/** "MZ" at `start` (decoded) followed by e_lfanew pointing to "PE\0\0" or by the DOS stub message. */
function isPe(data: Uint8Array, key: Buffer, start: number): boolean {
  function at(i: number): number {
    return (data[i] as number) ^ (key[i % key.length] as number)
  }
  if (start + 0x40 > data.length || at(start) !== 0x4d || at(start + 1) !== 0x5a) return false
  const lfanew = (at(start + 0x3c) | (at(start + 0x3d) << 8) | (at(start + 0x3e) << 16) | (at(start + 0x3f) << 24)) >>> 0
  const pe = start + lfanew
  if (lfanew >= 0x40 && lfanew <= MAX_LFANEW && pe + 4 <= data.length && at(pe) === 0x50 && at(pe + 1) === 0x45 && at(pe + 2) === 0 && at(pe + 3) === 0) return true
  const stub = start + STUB_OFFSET
  if (stub + STUB_PREFIX.length > data.length) return false
  for (let j = 0; j < STUB_PREFIX.length; j++) if (at(stub + j) !== STUB_PREFIX[j]) return false
  return true
}

/** data[start, end) XORed with the key (phase 0 at offset 0 of data). */
function xorSlice(data: Uint8Array, key: Buffer, start: number, end: number): Buffer {
  const out = Buffer.alloc(end - start)
  const k = key.length
  for (let i = start; i < end; i++) out[i - start] = (data[i] as number) ^ (key[i % k] as number)
  return out
}
