/**
 * UTF-16LE text in binary data (SMB and DCE-RPC strings, Windows shellcode), and the one "mostly printable" test the
 * decoders share. Pure: no I/O, no state beyond a lazily built lookup table. Nothing here throws on any input.
 */

// "Printable" means a graphic character (letter, mark, number, punctuation, symbol, space separator) or tab, CR, LF.
// Controls, format characters, private use, unassigned code points, lone surrogates and U+FFFD (what a decoder puts
// where the bytes were malformed) are not.
const GRAPHIC = /^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]$/u
const REPLACEMENT = 0xfffd

let bmpTable: Uint8Array | null = null

/** 1 for each printable BMP code point; built once on first use (65,536 regex tests, a few milliseconds). */
function printableBmp(): Uint8Array {
  if (bmpTable !== null) return bmpTable
  const table = new Uint8Array(0x10000)
  for (let cp = 0; cp < 0x10000; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue
    if (GRAPHIC.test(String.fromCharCode(cp))) table[cp] = 1
  }
  table[0x09] = 1
  table[0x0a] = 1
  table[0x0d] = 1
  table[REPLACEMENT] = 0
  bmpTable = table
  return table
}

/** Whether one code point is printable (definition above). */
export function isPrintableCodePoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false
  if (cp < 0x10000) return printableBmp()[cp] === 1
  return GRAPHIC.test(String.fromCodePoint(cp))
}

/** Whether at least `ratio` of the code points of `text` are printable; false for the empty text. */
export function isMostlyPrintable(text: string, ratio: number): boolean {
  let total = 0
  let printable = 0
  for (const ch of text) {
    total++
    if (isPrintableCodePoint(ch.codePointAt(0) as number)) printable++
  }
  return total > 0 && printable >= ratio * total
}

const UTF8 = new TextDecoder('utf-8', { fatal: false })

/** The same test on bytes read as UTF-8 (malformed sequences become U+FFFD, which is not printable). */
export function isMostlyPrintableUtf8(bytes: Uint8Array, ratio: number): boolean {
  return isMostlyPrintable(UTF8.decode(bytes), ratio)
}

/**
 * UTF-16LE bytes to a string. Malformed input does not throw: a lone surrogate becomes U+FFFD, and so does an odd
 * last byte (the half of a code unit a truncated capture leaves).
 */
export function decodeUtf16le(bytes: Uint8Array): string {
  const units = bytes.length >>> 1
  const copy = Buffer.alloc(units * 2)
  copy.set(bytes.subarray(0, units * 2))
  for (let k = 0; k < units; k++) {
    const u = copy.readUInt16LE(k * 2)
    if (u >= 0xd800 && u <= 0xdbff) {
      const next = k + 1 < units ? copy.readUInt16LE(k * 2 + 2) : -1
      if (next >= 0xdc00 && next <= 0xdfff) k++
      else copy.writeUInt16LE(REPLACEMENT, k * 2)
    } else if (u >= 0xdc00 && u <= 0xdfff) {
      copy.writeUInt16LE(REPLACEMENT, k * 2)
    }
  }
  const text = copy.toString('utf16le')
  return bytes.length % 2 === 1 ? text + '\ufffd' : text
}

/** UTF-16LE bytes to UTF-8 bytes, with the replacements of decodeUtf16le. */
export function utf16leToUtf8(bytes: Uint8Array): Buffer {
  return Buffer.from(decodeUtf16le(bytes), 'utf8')
}

/**
 * Random bytes read as UTF-16LE give a printable letter about half the time (CJK and Hangul fill half the BMP), and
 * so does ASCII UTF-16 read one byte off (0x4100 to 0x7a00 is nearly all CJK). Real strings in attack traffic (paths,
 * commands, host and user names) are mostly ASCII; a run with less than this share of ASCII is taken for noise.
 * The price: text in a non-Latin script with little ASCII in it is not found.
 */
export const DEFAULT_MIN_ASCII_SHARE = 0.25

// A lone surrogate between two printable ASCII characters is broken text (a mangled character), not a boundary:
// the run goes on across it, and it counts as U+FFFD against the printable ratio. Every other non-printable unit
// ends a run, NUL included: structures put small integers next to their strings ("K\0\0\0" is a length of 75),
// and bridging a NUL would glue such fields to the text.
function isAsciiGraphic(cp: number): boolean {
  return cp >= 0x20 && cp <= 0x7e
}

/** What findUtf16Runs keeps. */
export interface Utf16FindOptions {
  readonly minChars: number // code points; shorter runs are not returned
  readonly minAsciiShare?: number // 0..1, default DEFAULT_MIN_ASCII_SHARE
}

/** One run of UTF-16LE text found in the data. */
export interface Utf16Run {
  readonly offset: number // in bytes, even or odd (both alignments are searched)
  readonly byteLength: number
  readonly text: string // lone surrogates in the run replaced by U+FFFD
  readonly chars: number // code points in text
}

/**
 * Finds runs of UTF-16LE text in `data`: printable code units (ASCII with a zero high byte, any other printable BMP
 * character, or a valid surrogate pair), and lone surrogates between printable ASCII (above). Both byte
 * alignments are searched; the runs come back in offset order. Linear in `data.length`.
 */
export function findUtf16Runs(data: Uint8Array, options: Utf16FindOptions): Utf16Run[] {
  const runs = [...findAligned(data, 0, options), ...findAligned(data, 1, options)]
  return runs.sort((a, b) => a.offset - b.offset)
}

function findAligned(data: Uint8Array, alignment: 0 | 1, options: Utf16FindOptions): Utf16Run[] {
  const minAscii = options.minAsciiShare ?? DEFAULT_MIN_ASCII_SHARE
  const runs: Utf16Run[] = []
  let start = -1
  let end = -1 // just past the last printable unit of the open run
  let chars = 0
  let ascii = 0
  let gap = false // a lone surrogate after a printable ASCII character, bridged if printable ASCII follows
  let lastAscii = false
  function close(): void {
    // Trimming drops only non-ASCII characters, so `ascii` still counts the trimmed run's.
    if (start >= 0 && chars >= options.minChars) {
      const run = trimEdges(decodeUtf16le(data.subarray(start, end)), start)
      if (run.chars >= options.minChars && ascii >= minAscii * run.chars) runs.push(run)
    }
    start = -1
    gap = false
  }
  let i = alignment
  while (i + 1 < data.length) {
    const u = (data[i] as number) | ((data[i + 1] as number) << 8)
    let cp = u
    let width = 2
    if (u >= 0xd800 && u <= 0xdbff && i + 3 < data.length) {
      const low = (data[i + 2] as number) | ((data[i + 3] as number) << 8)
      if (low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00)
        width = 4
      }
    }
    const printable = width === 4 || u < 0xd800 || u > 0xdfff ? isPrintableCodePoint(cp) : false
    if (printable) {
      if (gap && !isAsciiGraphic(cp)) close()
      if (start < 0) {
        start = i
        chars = 0
        ascii = 0
      }
      chars += gap ? 2 : 1 // a bridged surrogate is one code point of the run (U+FFFD)
      if (cp < 0x80) ascii++
      gap = false
      lastAscii = isAsciiGraphic(cp)
      end = i + width
    } else if (start >= 0) {
      const lone = width === 2 && u >= 0xd800 && u <= 0xdfff
      if (gap || !lastAscii || !lone) close()
      else gap = true
    }
    i += width
  }
  close()
  return runs
}

/**
 * Drops a non-ASCII segment at either end of a run when it touches an ASCII letter or digit: random bytes next to a
 * string (shellcode around "kernel32.dll") read as CJK or Hangul half the time, while real text rarely runs a
 * non-Latin word into a Latin one without a space or punctuation ("C:\\Users\\张三" keeps its name).
 */
function trimEdges(text: string, offset: number): Utf16Run {
  const points = Array.from(text)
  let first = 0
  while (first < points.length && (points[first]?.codePointAt(0) as number) >= 0x80) first++
  if (first === points.length || !isAsciiAlphanumeric(points[first])) first = 0
  let last = points.length
  while (last > first && (points[last - 1]?.codePointAt(0) as number) >= 0x80) last--
  if (last === first || !isAsciiAlphanumeric(points[last - 1])) last = points.length
  const kept = points.slice(first, last)
  const byteOffset = offset + utf16Length(points.slice(0, first))
  return { offset: byteOffset, byteLength: utf16Length(kept), text: kept.join(''), chars: kept.length }
}

function isAsciiAlphanumeric(ch: string | undefined): boolean {
  return ch !== undefined && /^[A-Za-z0-9]$/.test(ch)
}

function utf16Length(points: readonly string[]): number {
  let units = 0
  for (const p of points) units += p.length // a lone surrogate's U+FFFD and every BMP character are one unit
  return units * 2
}

/** Whether `bytes` as a whole reads as UTF-16LE text (mostly printable, enough ASCII): e.g. PowerShell -enc input. */
export function isUtf16leText(bytes: Uint8Array, ratio: number, minAsciiShare: number = DEFAULT_MIN_ASCII_SHARE): boolean {
  if (bytes.length < 2 || bytes.length % 2 !== 0) return false
  const text = decodeUtf16le(bytes)
  let total = 0
  let ascii = 0
  for (const ch of text) {
    total++
    const cp = ch.codePointAt(0) as number
    if (cp < 0x80 && isPrintableCodePoint(cp)) ascii++
  }
  return ascii >= minAsciiShare * total && isMostlyPrintable(text, ratio)
}
