/**
 * Strict base64 (RFC 4648) decoding and a scanner for base64 in attack bytes. Pure: no I/O, no state.
 *
 * Why not `Buffer.from(s, 'base64')`: it skips every character outside the alphabet and stops at the first "=", so
 * any text "decodes" to something. A decoder that feeds analysers must say "this is not base64" instead of inventing
 * bytes, so here every malformed input gives null.
 *
 * Rules (decodeBase64, decodeBase64Bytes):
 * - Alphabet: standard ("+/") or URL-safe ("-_"), chosen with `alphabet`; with 'any' (the default) either is
 *   accepted, but not both in one input (a mix is not base64 from any encoder, it is text).
 * - Padding is optional. When present it is one or two "=" that complete the last 4-character group, and only
 *   whitespace (when allowed) may follow it; "=" anywhere else, three "=", or padding after a full group is invalid.
 * - A length of 4k+1 data characters cannot come from any encoder and is invalid.
 * - The unused low bits of the last character must be zero (RFC 4648 3.5): every encoder writes them so, and
 *   rejecting the rest cuts the false positives of the scanner by 4 to 16 times.
 * - Whitespace: with `whitespace: 'reject'` (the default) any is invalid; with 'ignore', space, tab, CR and LF are
 *   skipped anywhere (MIME and PEM wrap their lines). No other character is ever skipped.
 * - The empty input decodes to an empty buffer.
 */

/** Which alphabet decoding accepts: standard "+/", URL-safe "-_", or either (never both in one input). */
export type Base64Alphabet = 'standard' | 'url' | 'any'

/** How strict decoding is about the alphabet and whitespace (rules in the file comment). */
export interface Base64DecodeOptions {
  readonly alphabet?: Base64Alphabet // default 'any'
  readonly whitespace?: 'reject' | 'ignore' // default 'reject'
}

const INVALID = -1
const PAD = -2
const SPACE = -3

// Byte -> 6-bit value (both alphabets), or one of the markers above.
const VALUES: Int8Array = buildValues()

function buildValues(): Int8Array {
  const table = new Int8Array(256).fill(INVALID)
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  for (let i = 0; i < letters.length; i++) table[letters.charCodeAt(i)] = i
  table[0x2b] = 62 // +
  table[0x2f] = 63 // /
  table[0x2d] = 62 // -
  table[0x5f] = 63 // _
  table[0x3d] = PAD
  for (const c of [0x20, 0x09, 0x0d, 0x0a]) table[c] = SPACE
  return table
}

function isStandardOnly(c: number): boolean {
  return c === 0x2b || c === 0x2f
}

function isUrlOnly(c: number): boolean {
  return c === 0x2d || c === 0x5f
}

/** Decodes base64 text strictly (rules above); null when it is not valid base64. Never throws. */
export function decodeBase64(text: string, options: Base64DecodeOptions = {}): Buffer | null {
  // A character above 0x7f is never base64; checking first keeps latin1 from folding e.g. "Ł" (U+0141) to "A".
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return null
  return decodeBase64Bytes(Buffer.from(text, 'latin1'), options)
}

/** Decodes base64 held as ASCII bytes strictly (rules above); null when it is not valid base64. Never throws. */
export function decodeBase64Bytes(src: Uint8Array, options: Base64DecodeOptions = {}): Buffer | null {
  const alphabet = options.alphabet ?? 'any'
  const ignoreSpace = options.whitespace === 'ignore'
  const out = Buffer.alloc(Math.floor((src.length * 3) / 4))
  let acc = 0
  let bits = 0
  let chars = 0
  let pads = 0
  let written = 0
  let sawStandard = false
  let sawUrl = false
  for (let i = 0; i < src.length; i++) {
    const c = src[i] as number
    const v = VALUES[c] as number
    if (v >= 0) {
      if (pads > 0) return null // data after padding: "=" in the middle
      if (isStandardOnly(c)) sawStandard = true
      else if (isUrlOnly(c)) sawUrl = true
      // 14 bits are enough: at most 7 left over after each byte is written, plus 6 new ones.
      acc = ((acc << 6) | v) & 0x3fff
      bits += 6
      chars++
      if (bits >= 8) {
        bits -= 8
        out[written++] = (acc >> bits) & 0xff
      }
    } else if (v === PAD) {
      if (++pads > 2) return null
    } else if (v !== SPACE || !ignoreSpace) {
      return null
    }
  }
  if (sawStandard && sawUrl) return null
  if ((alphabet === 'standard' && sawUrl) || (alphabet === 'url' && sawStandard)) return null
  if (chars % 4 === 1) return null
  if (pads > 0 && (chars + pads) % 4 !== 0) return null
  if ((acc & ((1 << bits) - 1)) !== 0) return null // non-zero unused bits: not what an encoder writes
  return out.subarray(0, written)
}

/** Where a base64 candidate was found; the decoder's payload origin is "b64Decode:<source>". */
export type Base64Source = 'basic-auth' | 'negotiate' | 'ntlm' | 'run'

/** One piece of base64 found by findBase64, already decoded. */
export interface Base64Candidate {
  readonly source: Base64Source
  readonly offset: number // of the base64 text in the scanned bytes
  readonly length: number // of the base64 text, in bytes (line breaks of a wrapped run included)
  readonly decoded: Buffer
}

/** Bounds and filter of findBase64. */
export interface Base64ScanOptions {
  readonly minRunChars: number // a bare run shorter than this is not tried (header tokens have no minimum)
  /** Whether a bare run's decoding is worth keeping (header tokens are always kept); default: every valid one. */
  readonly acceptRun?: (decoded: Buffer) => boolean
  readonly maxCandidates: number // the scan stops once it has this many
}

// Header names whose value is "<scheme> <token68>" (RFC 9110 11.6), lowercase.
const AUTH_HEADERS: readonly Buffer[] = ['authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate'].map((h) => Buffer.from(h, 'latin1'))
const SCHEMES: readonly { readonly name: Buffer; readonly source: Base64Source }[] = [
  { name: Buffer.from('basic', 'latin1'), source: 'basic-auth' },
  { name: Buffer.from('negotiate', 'latin1'), source: 'negotiate' },
  { name: Buffer.from('ntlm', 'latin1'), source: 'ntlm' },
]

// A bare run may go on after a line break when the line is this long and a whole number of groups: MIME wraps at
// 76, PEM at 64. Shorter lines are not joined, so two unrelated words on adjacent lines stay apart.
const MIN_WRAPPED_LINE_CHARS = 40
// A run holding "/" may be a path with base64 at its end ("ldap://h:1389/Basic/Command/Base64/<b64>"): the text
// after each of its first slashes is tried too, when the whole run is not accepted.
const MAX_SLASH_STARTS = 8

/**
 * Finds base64 in `data`: the token of an Authorization-style header (Basic, Negotiate, NTLM; any case, at a line
 * start) and bare runs of at least `minRunChars` base64 characters. Each byte is looked at a bounded number of times
 * (at most 1 + MAX_SLASH_STARTS decodes of a run), so the work is linear in `data.length`. Never throws.
 */
export function findBase64(data: Uint8Array, options: Base64ScanOptions): Base64Candidate[] {
  const found: Base64Candidate[] = []
  let i = 0
  while (i < data.length && found.length < options.maxCandidates) {
    if (i === 0 || data[i - 1] === 0x0a) {
      const header = matchAuthHeader(data, i)
      if (header !== null) {
        const decoded = decodeBase64Bytes(data.subarray(header.start, header.end))
        if (decoded !== null && decoded.length > 0) found.push({ source: header.source, offset: header.start, length: header.end - header.start, decoded })
        i = Math.max(header.end, i + 1)
        continue
      }
    }
    if (isRunChar(data[i])) {
      const end = runEnd(data, i)
      if (end - i >= options.minRunChars) {
        const candidate = decodeRun(data, i, end, options)
        if (candidate !== null) found.push(candidate)
      }
      i = end
      continue
    }
    i++
  }
  return found
}

function isRunChar(c: number | undefined): boolean {
  return c !== undefined && (VALUES[c] as number) >= 0
}

/** The end of the base64 run starting at `start`: alphabet characters, up to two "=", across wrapped lines. */
function runEnd(data: Uint8Array, start: number): number {
  let i = start
  let lineStart = start
  for (;;) {
    while (isRunChar(data[i])) i++
    const lineChars = i - lineStart
    let pads = 0
    while (pads < 2 && data[i] === 0x3d) {
      i++
      pads++
    }
    if (pads > 0 || lineChars < MIN_WRAPPED_LINE_CHARS || lineChars % 4 !== 0) return i
    const breakLength = data[i] === 0x0a ? 1 : data[i] === 0x0d && data[i + 1] === 0x0a ? 2 : 0
    if (breakLength === 0 || !isWholeLine(data, i + breakLength)) return i
    i += breakLength
    lineStart = i
  }
}

/** Whether the line at `start` is all base64 (a wrapped run's next line), not e.g. "Authorization: ..." */
function isWholeLine(data: Uint8Array, start: number): boolean {
  let i = start
  while (isRunChar(data[i])) i++
  if (i === start) return false
  while (data[i] === 0x3d) i++
  return i === data.length || data[i] === 0x0d || data[i] === 0x0a
}

/** The whole run if it decodes and is accepted, else the text after one of its first slashes; null when none. */
function decodeRun(data: Uint8Array, start: number, end: number, options: Base64ScanOptions): Base64Candidate | null {
  function tryAt(from: number): Base64Candidate | null {
    const decoded = decodeBase64Bytes(data.subarray(from, end), { whitespace: 'ignore' })
    if (decoded === null || decoded.length === 0) return null
    if (options.acceptRun !== undefined && !options.acceptRun(decoded)) return null
    return { source: 'run', offset: from, length: end - from, decoded }
  }
  const whole = tryAt(start)
  if (whole !== null) return whole
  let slashes = 0
  for (let i = start; i < end && slashes < MAX_SLASH_STARTS; i++) {
    if (data[i] !== 0x2f) continue
    slashes++
    if (end - (i + 1) < options.minRunChars) break
    const suffix = tryAt(i + 1)
    if (suffix !== null) return suffix
  }
  return null
}

/** "Authorization: Basic <token>" and its kin at `at`; the token's bounds, or null when the line is not one. */
function matchAuthHeader(data: Uint8Array, at: number): { readonly source: Base64Source; readonly start: number; readonly end: number } | null {
  let i = -1
  for (const name of AUTH_HEADERS) {
    if (startsWithIgnoreCase(data, at, name)) {
      i = at + name.length
      break
    }
  }
  if (i < 0) return null
  i = skipBlanks(data, i)
  if (data[i] !== 0x3a) return null
  i = skipBlanks(data, i + 1)
  const scheme = SCHEMES.find((s) => startsWithIgnoreCase(data, i, s.name))
  if (scheme === undefined) return null
  i += scheme.name.length
  const afterScheme = skipBlanks(data, i)
  if (afterScheme === i) return null // "Basicfoo" is another scheme
  let end = afterScheme
  while (end < data.length && !isTokenEnd(data[end] as number)) end++
  if (end === afterScheme) return null
  return { source: scheme.source, start: afterScheme, end }
}

function startsWithIgnoreCase(data: Uint8Array, at: number, lower: Buffer): boolean {
  if (at + lower.length > data.length) return false
  for (let j = 0; j < lower.length; j++) {
    const c = data[at + j] as number
    // Folding A-Z only: the names are ASCII, and folding other bytes would match non-ASCII look-alikes.
    const folded = c >= 0x41 && c <= 0x5a ? c | 0x20 : c
    if (folded !== lower[j]) return false
  }
  return true
}

function skipBlanks(data: Uint8Array, at: number): number {
  let i = at
  while (data[i] === 0x20 || data[i] === 0x09) i++
  return i
}

function isTokenEnd(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a || c === 0x2c
}
