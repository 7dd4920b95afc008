import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { escapeForTerminal, hexdump, isMostlyText } from '../../src/cli/terminal-text.js'

// Byte sequences a terminal acts on, or that hide or reorder text, mixed into the generated input so that the
// properties meet them often (uniform random bytes almost never form a valid three-byte bidi override).
const HOSTILE_PIECES: readonly number[][] = [
  [0x1b, 0x5b, 0x32, 0x4a], // ESC[2J: clear the screen
  [0x1b, 0x5d, 0x30, 0x3b, 0x74, 0x07], // ESC]0;t BEL: set the window title
  [0x1b, 0x5d, 0x38, 0x3b, 0x3b, 0x68, 0x1b, 0x5c], // OSC 8 hyperlink, ST-terminated
  [0xc2, 0x9b], [0xc2, 0x85], [0xc2, 0x80], [0xc2, 0x9f], // C1 controls in UTF-8: CSI, NEL, first and last
  [0x9b], [0x90], // C1 bytes alone (invalid UTF-8; an 8-bit terminal would act on them)
  [0xe2, 0x80, 0xae], [0xe2, 0x80, 0xaa], [0xe2, 0x81, 0xa6], [0xe2, 0x81, 0xa9], // RLO, LRE, LRI, PDI
  [0xe2, 0x80, 0x8b], [0xe2, 0x80, 0x8f], [0xef, 0xbb, 0xbf], [0xd8, 0x9c], // ZWSP, RLM, BOM, ALM
  [0xe2, 0x80, 0xa8], [0xf3, 0xa0, 0x80, 0x81], // line separator, a tag character
  [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xff], // surrogate, overlong, > U+10FFFF, cut, 0xff
  [0x0d], [0x0a], [0x09], [0x00], [0x7f], [0x5c], [0x5c, 0x78, 0x31, 0x62], // CR LF TAB NUL DEL \ and a literal "\x1b"
  [0xc3, 0xa9], [0xf0, 0x9f, 0x98, 0x80], // é and an emoji: printable, kept
]

const hostileBytes = fc
  .array(
    fc.oneof(
      fc.constantFrom(...HOSTILE_PIECES).map((p) => Buffer.from(p)),
      fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)),
      fc.integer({ min: 0, max: 0x10ffff }).map((cp) => Buffer.from(String.fromCodePoint(cp))),
    ),
    { maxLength: 40 },
  )
  .map((parts) => Buffer.concat(parts))

// Strings with every code point, lone surrogates included (a JS string need not be valid UTF-16).
const hostileString = fc
  .array(fc.oneof(fc.integer({ min: 0, max: 0x10ffff }), fc.integer({ min: 0, max: 0x3000 })), { maxLength: 40 })
  .map((cps) => cps.map((cp) => String.fromCodePoint(cp)).join(''))

/** Every code point of the output that must never reach a terminal raw; `\n` only when newlines are kept. */
function forbiddenIn(text: string, keepNewlines: boolean): number[] {
  const bad: number[] = []
  for (const ch of text) {
    const cp = ch.codePointAt(0)!
    const isControl = (cp < 0x20 && !(keepNewlines && cp === 0x0a)) || cp === 0x7f || (cp >= 0x80 && cp <= 0x9f)
    const isBidiOrZeroWidth = (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || (cp >= 0x200b && cp <= 0x200f) || cp === 0xfeff
    const isSurrogate = cp >= 0xd800 && cp <= 0xdfff
    if (isControl || isBidiOrZeroWidth || isSurrogate) bad.push(cp)
  }
  return bad
}

/** Undoes escapeForTerminal on a Buffer's output: if the bytes come back, the escaping lost and confused nothing. */
function unescapeToBytes(text: string): Buffer {
  const out: Buffer[] = []
  for (let i = 0; i < text.length; ) {
    const ch = text[i]!
    if (ch === '\n') {
      // A kept line break always follows a visible \n, which already stands for the byte.
      expect(text.slice(i - 2, i)).toBe('\\n')
      i += 1
    } else if (ch !== '\\') {
      const cp = text.codePointAt(i)!
      out.push(Buffer.from(String.fromCodePoint(cp)))
      i += cp > 0xffff ? 2 : 1
    } else {
      const kind = text[i + 1]
      if (kind === 'x') {
        out.push(Buffer.from([Number.parseInt(text.slice(i + 2, i + 4), 16)]))
        i += 4
      } else if (kind === 'u') {
        const close = text.indexOf('}', i)
        out.push(Buffer.from(String.fromCodePoint(Number.parseInt(text.slice(i + 3, close), 16))))
        i = close + 1
      } else {
        const simple: Record<string, number> = { n: 0x0a, r: 0x0d, t: 0x09, '\\': 0x5c }
        expect(simple[kind ?? '']).toBeDefined()
        out.push(Buffer.from([simple[kind!]!]))
        i += 2
      }
    }
  }
  return Buffer.concat(out)
}

describe('escapeForTerminal', () => {
  it('keeps printable text and shows everything else as escapes', () => {
    expect(escapeForTerminal(Buffer.from('GET / HTTP/1.0'))).toBe('GET / HTTP/1.0')
    expect(escapeForTerminal(Buffer.from('héllo 😀 мир'))).toBe('héllo 😀 мир')
    expect(escapeForTerminal(Buffer.from('a\r\nb\tc\\d'))).toBe('a\\r\\nb\\tc\\\\d')
    expect(escapeForTerminal(Buffer.from('a\r\nb\n'), { keepNewlines: true })).toBe('a\\r\\n\nb\\n\n')
    expect(escapeForTerminal(Buffer.from('\u001b[2J\u001b]0;pwned\u0007'))).toBe('\\x1b[2J\\x1b]0;pwned\\x07')
    expect(escapeForTerminal(Buffer.from([0x00, 0x7f, 0xc2, 0x9b, 0x9b]))).toBe('\\x00\\x7f\\u{9b}\\x9b')
    expect(escapeForTerminal(Buffer.from('ab\u202edcba\u2066x\u2069\u200b\ufeff'))).toBe('ab\\u{202e}dcba\\u{2066}x\\u{2069}\\u{200b}\\u{feff}')
    // Invalid UTF-8: a surrogate, an overlong NUL, past U+10FFFF, a sequence cut short at the end.
    expect(escapeForTerminal(Buffer.from([0xed, 0xa0, 0x80, 0xc0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0xe2, 0x82]))).toBe(
      '\\xed\\xa0\\x80\\xc0\\x80\\xf4\\x90\\x80\\x80\\xe2\\x82',
    )
    expect(escapeForTerminal(`x${String.fromCharCode(0xd800)}\u0085y`)).toBe('x\\u{d800}\\u{85}y')
  })

  it('never lets a control, C1, ESC, DEL, bidi or zero-width character through, for any bytes', () => {
    fc.assert(
      fc.property(hostileBytes, fc.boolean(), (bytes, keepNewlines) => {
        expect(forbiddenIn(escapeForTerminal(bytes, { keepNewlines }), keepNewlines)).toEqual([])
      }),
      { numRuns: 2_000 },
    )
  })

  it('never lets them through for any string either, lone surrogates included', () => {
    fc.assert(
      fc.property(hostileString, fc.boolean(), (text, keepNewlines) => {
        expect(forbiddenIn(escapeForTerminal(text, { keepNewlines }), keepNewlines)).toEqual([])
      }),
      { numRuns: 2_000 },
    )
  })

  it('is lossless: the escapes read back to exactly the input bytes', () => {
    fc.assert(
      fc.property(hostileBytes, fc.boolean(), (bytes, keepNewlines) => {
        expect(unescapeToBytes(escapeForTerminal(bytes, { keepNewlines })).equals(bytes)).toBe(true)
      }),
      { numRuns: 2_000 },
    )
  })

  it('breaks lines only after a \\n of the data, so output lines match the data lines', () => {
    fc.assert(
      fc.property(hostileBytes, (bytes) => {
        const lines = escapeForTerminal(bytes, { keepNewlines: true }).split('\n')
        expect(lines.length - 1).toBe(bytes.filter((b) => b === 0x0a).length)
        expect(escapeForTerminal(bytes)).not.toContain('\n')
      }),
      { numRuns: 500 },
    )
  })
})

describe('hexdump', () => {
  it('matches hexdump -C line for line', () => {
    for (const size of [1, 7, 8, 9, 15, 16, 17, 100, 4_099]) {
      // Random bytes: hexdump -C would fold repeated lines into "*", which random lines never are.
      const bytes = randomBytes(size)
      const real = execFileSync('hexdump', ['-C'], { input: bytes }).toString('latin1').trimEnd().split('\n')
      expect(real.pop()).toBe(size.toString(16).padStart(8, '0')) // its final line is the total length
      expect(hexdump(bytes, { maxBytes: 1 << 20 })).toBe(real.join('\n'))
    }
  })

  it('shows printable ASCII and dots, and counts what is past maxBytes', () => {
    const bytes = Buffer.concat([Buffer.from('GET / HTTP/1.0\r\n\u001b[2J'), Buffer.alloc(30, 0x41)])
    expect(hexdump(bytes, { maxBytes: 20 })).toBe(
      [
        '00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a  |GET / HTTP/1.0..|',
        '00000010  1b 5b 32 4a                                       |.[2J|',
        '… 30 more bytes',
      ].join('\n'),
    )
    expect(hexdump(Buffer.alloc(0), { maxBytes: 10 })).toBe('')
    expect(hexdump(bytes, { maxBytes: 0 })).toBe('… 50 more bytes')
  })

  it('keeps every line bounded and printable, for any bytes and limit', () => {
    fc.assert(
      fc.property(hostileBytes, fc.integer({ min: 0, max: 300 }), (bytes, maxBytes) => {
        const lines = hexdump(bytes, { maxBytes }).split('\n')
        const dumped = Math.min(bytes.length, maxBytes)
        expect(lines.length).toBeLessThanOrEqual(Math.ceil(dumped / 16) + 1)
        for (const line of lines) {
          expect(line.length).toBeLessThanOrEqual(78)
          expect(line).toMatch(/^([0-9a-f]{8} {2}[0-9a-f ]{49} \|[\x20-\x7e]{1,16}\||… \d+ more bytes)?$/)
        }
      }),
      { numRuns: 1_000 },
    )
  })
})

describe('isMostlyText', () => {
  it('tells text (even with a few escape sequences) from binary', () => {
    expect(isMostlyText(Buffer.alloc(0))).toBe(true)
    expect(isMostlyText(Buffer.from('GET /index.html HTTP/1.1\r\nHost: x\r\nUser-Agent: \u001b[2Jcurl\r\n\r\n'))).toBe(true)
    expect(isMostlyText(Buffer.from('Привет, мир! héllo wörld\n'))).toBe(true)
    expect(isMostlyText(randomBytes(4_096))).toBe(false)
    // An SMB negotiate header: NUL padding and high bytes with a little ASCII.
    expect(isMostlyText(Buffer.from('00000085ff534d4272000000001853c00000000000000000000000000000fffe00004000006200025043204e4554574f524b', 'hex'))).toBe(false)
    expect(isMostlyText(Buffer.from('\u001b[2J\u001b[H\u001b[31m'))).toBe(false) // escapes and little else
  })
})
