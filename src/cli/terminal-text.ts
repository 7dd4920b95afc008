/**
 * Attacker bytes made safe for a terminal. Pure functions: no I/O, no state.
 *
 * A terminal interprets what it is sent: ESC and C1 sequences clear the screen, retitle the window, plant hyperlinks or
 * answer back into the shell's input; CR overwrites what was printed; bidi overrides and zero-width characters make
 * the text read differently from what it is. So every such byte or character is shown as an escape (`\x1b`,
 * `\u{202e}`), and the backslash itself as `\\`, so that an escape in the output always means one in the data.
 */

export interface EscapeOptions {
  /**
   * Also break the line after each `\n` (still shown as the visible escape `\n`, so nothing is lost or ambiguous):
   * for multi-line bodies. Without it the output is always a single line, for fields such as URLs.
   */
  readonly keepNewlines?: boolean
}

export interface HexdumpOptions {
  readonly maxBytes: number // bytes dumped at most; a last line says how many more there were
}

const BYTES_PER_LINE = 16
// At most one byte in five shown as an escape still reads as text (a request with a few ANSI sequences in it); above
// that (protocol headers, NUL padding, compressed or random bytes) a hexdump says more.
const MAX_ESCAPED_SHARE_OF_TEXT = 0.2
// Format characters (bidi controls, zero-width joiners, the BOM, tag characters), line and paragraph separators and
// surrogates: characters a terminal shows as nothing, or that change how the text around them is shown.
const INVISIBLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]$/u

function hex2(value: number): string {
  return value.toString(16).padStart(2, '0')
}

/** The ranges the analyst most needs flagged, checked explicitly so that they never depend on the Unicode tables. */
function isBidiOrZeroWidth(cp: number): boolean {
  return (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp === 0xfeff || cp === 0x061c
}

/** How one code point is shown: itself when printable, else an escape. */
function escapeCodePoint(cp: number, keepNewlines: boolean): string {
  if (cp === 0x0a) return keepNewlines ? '\\n\n' : '\\n'
  if (cp === 0x0d) return '\\r'
  if (cp === 0x09) return '\\t'
  if (cp === 0x5c) return '\\\\'
  if (cp < 0x20 || cp === 0x7f) return `\\x${hex2(cp)}`
  if (cp < 0x7f) return String.fromCharCode(cp)
  if (cp <= 0x9f || (cp >= 0xd800 && cp <= 0xdfff) || isBidiOrZeroWidth(cp)) return `\\u{${cp.toString(16)}}`
  const ch = String.fromCodePoint(cp)
  return INVISIBLE.test(ch) ? `\\u{${cp.toString(16)}}` : ch
}

function isContinuation(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x80 && byte <= 0xbf
}

/**
 * Decodes the UTF-8 sequence starting at `i`: returns `codePoint * 8 + length`, or -1 when the byte there starts no
 * valid sequence (a stray continuation byte, an overlong form, an encoded surrogate, a code point past U+10FFFF, a
 * sequence cut short). Hand-written because TextDecoder replaces invalid bytes with U+FFFD and so hides which they were.
 */
function decodeAt(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!
  if (b0 < 0x80) return b0 * 8 + 1
  const b1 = bytes[i + 1]
  if (b0 >= 0xc2 && b0 <= 0xdf) return isContinuation(b1) ? (((b0 & 0x1f) << 6) | (b1! & 0x3f)) * 8 + 2 : -1
  if (b0 >= 0xe0 && b0 <= 0xef) {
    // The second byte's range excludes overlong forms (E0) and UTF-16 surrogates (ED).
    const low = b0 === 0xe0 ? 0xa0 : 0x80
    const high = b0 === 0xed ? 0x9f : 0xbf
    if (b1 === undefined || b1 < low || b1 > high || !isContinuation(bytes[i + 2])) return -1
    return (((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (bytes[i + 2]! & 0x3f)) * 8 + 3
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    // Likewise overlong forms (F0) and code points past U+10FFFF (F4).
    const low = b0 === 0xf0 ? 0x90 : 0x80
    const high = b0 === 0xf4 ? 0x8f : 0xbf
    if (b1 === undefined || b1 < low || b1 > high || !isContinuation(bytes[i + 2]) || !isContinuation(bytes[i + 3])) return -1
    return (((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((bytes[i + 2]! & 0x3f) << 6) | (bytes[i + 3]! & 0x3f)) * 8 + 4
  }
  return -1
}

/**
 * Text safe to print: printable characters as they are; `\` `\r` `\n` `\t` as those escapes; other C0 controls, DEL and
 * invalid UTF-8 bytes as `\xHH`; C1 controls, bidi and zero-width characters and other invisible code points as `\u{H}`.
 * A Buffer is read as UTF-8; a string is taken as already decoded. The only raw control the result can hold is `\n`,
 * and only with `keepNewlines`.
 */
export function escapeForTerminal(input: Buffer | string, options: EscapeOptions = {}): string {
  const keep = options.keepNewlines === true
  let out = ''
  if (typeof input === 'string') {
    // for...of walks code points, and yields a lone surrogate as one unit, which escapeCodePoint escapes.
    for (const ch of input) out += escapeCodePoint(ch.codePointAt(0)!, keep)
    return out
  }
  for (let i = 0; i < input.length; ) {
    const decoded = decodeAt(input, i)
    if (decoded < 0) {
      out += `\\x${hex2(input[i]!)}`
      i += 1
    } else {
      out += escapeCodePoint(Math.floor(decoded / 8), keep)
      i += decoded % 8
    }
  }
  return out
}

/**
 * The classic `hexdump -C` layout, 16 bytes a line: offset, the bytes in hex in two groups of eight, then the bytes as
 * ASCII between bars, with `.` for anything not printable. Past `maxBytes`, a last line `… N more bytes`. Lines are
 * joined with `\n`, without a final one; empty input gives an empty string.
 */
export function hexdump(bytes: Uint8Array, options: HexdumpOptions): string {
  const shown = Math.min(bytes.length, Math.max(0, Math.floor(options.maxBytes)))
  const lines: string[] = []
  for (let offset = 0; offset < shown; offset += BYTES_PER_LINE) {
    const end = Math.min(offset + BYTES_PER_LINE, shown)
    let hex = ''
    let ascii = ''
    for (let i = offset; i < end; i++) {
      const byte = bytes[i]!
      hex += `${hex2(byte)} ${i - offset === 7 ? ' ' : ''}`
      ascii += byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '.'
    }
    // 49 columns: 16 bytes of "hh " plus the space between the groups, so the ASCII bars line up on a short last line.
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.padEnd(49)} |${ascii}|`)
  }
  if (bytes.length > shown) lines.push(`… ${bytes.length - shown} more bytes`)
  return lines.join('\n')
}

/**
 * Whether `bytes` read better as escaped text than as a hexdump: at most a fifth of them would be shown as escapes
 * (`\t`, `\r` and `\n` count as text). Empty input is text.
 */
export function isMostlyText(bytes: Uint8Array): boolean {
  let escaped = 0
  for (let i = 0; i < bytes.length; ) {
    const decoded = decodeAt(bytes, i)
    if (decoded < 0) {
      escaped += 1
      i += 1
      continue
    }
    const cp = Math.floor(decoded / 8)
    const length = decoded % 8
    const shownAsIs = cp === 0x09 || cp === 0x0a || cp === 0x0d || cp === 0x5c || !escapeCodePoint(cp, false).startsWith('\\')
    if (!shownAsIs) escaped += length
    i += length
  }
  return escaped <= bytes.length * MAX_ESCAPED_SHARE_OF_TEXT
}
