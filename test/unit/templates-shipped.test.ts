import { execFile } from 'node:child_process'
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parseTemplateName } from '../../src/responders/templates.js'

const TEMPLATES_DIR = fileURLToPath(new URL('../../templates/', import.meta.url))
const GENERATOR = fileURLToPath(new URL('../../scripts/generate-templates.mjs', import.meta.url))
const MAX_TEMPLATE_BYTES = 64 * 1024 // the default responder.maxTemplateBytes

async function template(name: string): Promise<Buffer> {
  return readFile(join(TEMPLATES_DIR, name))
}

/** Splits an HTTP or SIP message at the blank line; the head must be CRLF-only. */
function splitMessage(bytes: Buffer): { head: string[]; body: Buffer } {
  const end = bytes.indexOf('\r\n\r\n')
  expect(end).toBeGreaterThan(0)
  const head = bytes.subarray(0, end).toString('latin1')
  expect(head.replaceAll('\r\n', '')).not.toMatch(/[\r\n]/)
  return { head: head.split('\r\n'), body: bytes.subarray(end + 4) }
}

function header(head: string[], name: string): string | undefined {
  const prefix = `${name.toLowerCase()}:`
  return head.find((line) => line.toLowerCase().startsWith(prefix))?.slice(prefix.length).trim()
}

/** Every line ends with CRLF, and no CR or LF appears alone. */
function expectCrlfLines(bytes: Buffer): void {
  const text = bytes.toString('latin1')
  expect(text.endsWith('\r\n')).toBe(true)
  expect(text.replaceAll('\r\n', '')).not.toMatch(/[\r\n]/)
}

describe('parseTemplateName', () => {
  it('accepts <port>_<tcp|udp> with a canonical port 1..65535', () => {
    expect(parseTemplateName('80_tcp')).toEqual({ ok: true, port: 80, protocol: 'tcp' })
    expect(parseTemplateName('53_udp')).toEqual({ ok: true, port: 53, protocol: 'udp' })
    expect(parseTemplateName('1_tcp')).toEqual({ ok: true, port: 1, protocol: 'tcp' })
    expect(parseTemplateName('65535_udp')).toEqual({ ok: true, port: 65_535, protocol: 'udp' })
  })

  it.each(['99999_tcp', '65536_tcp', '0_tcp', '080_tcp', '80_xyz', '80_TCP', '80_tcp.bak', '_tcp', '80tcp', '.80_tcp', '80_tcp~', '123456_tcp', ''])(
    'rejects %j',
    (name) => {
      expect(parseTemplateName(name).ok).toBe(false)
    },
  )
})

describe('shipped templates', () => {
  it('are all named by the rule, regular, non-empty and within the size cap', async () => {
    const names = await readdir(TEMPLATES_DIR)
    expect(names.length).toBeGreaterThan(0)
    for (const name of names) {
      expect(parseTemplateName(name), name).toMatchObject({ ok: true })
      const stats = await lstat(join(TEMPLATES_DIR, name))
      expect(stats.isFile(), name).toBe(true)
      expect(stats.size, name).toBeGreaterThan(0)
      expect(stats.size, name).toBeLessThanOrEqual(MAX_TEMPLATE_BYTES)
    }
    const required = ['21_tcp', '23_tcp', '25_tcp', '80_tcp', '110_tcp', '135_tcp', '139_tcp', '143_tcp', '445_tcp', '1433_tcp', '3306_tcp', '3389_tcp', '4444_tcp', '5060_tcp', '5060_udp', '5900_tcp', '6379_tcp', '8080_tcp', '21000_tcp']
    expect(names).toEqual(expect.arrayContaining(required))
  })

  it('are exactly what scripts/generate-templates.mjs produces', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ht-templates-gen-'))
    onTestFinished(() => rm(out, { recursive: true, force: true }))
    await promisify(execFile)(process.execPath, [GENERATOR, out])
    const generated = (await readdir(out)).sort()
    expect((await readdir(TEMPLATES_DIR)).sort()).toEqual(generated)
    for (const name of generated) {
      expect((await readFile(join(out, name))).equals(await template(name)), name).toBe(true)
    }
  })

  it.each(['80_tcp', '8080_tcp'])('%s is an HTTP/1.1 200 whose Content-Length is the body length', async (name) => {
    const { head, body } = splitMessage(await template(name))
    expect(head[0]).toMatch(/^HTTP\/1\.1 200 /)
    expect(Number(header(head, 'Content-Length'))).toBe(body.length)
    expect(header(head, 'Content-Type')).toMatch(/^text\/html/)
    expect(body.toString('latin1')).toMatch(/<\/html>\s*$/)
  })

  it('80_tcp names its server', async () => {
    const { head } = splitMessage(await template('80_tcp'))
    expect(header(head, 'Server')).toBe('Microsoft-IIS/10.0')
  })

  it('445_tcp is an SMB2 NEGOTIATE response in a matching Direct TCP frame', async () => {
    const bytes = await template('445_tcp')
    expect(bytes[0]).toBe(0x00)
    expect(bytes.readUIntBE(1, 3)).toBe(bytes.length - 4)
    const smb = bytes.subarray(4)
    expect(smb.subarray(0, 4)).toEqual(Buffer.from([0xfe, 0x53, 0x4d, 0x42]))
    expect(smb.readUInt16LE(4)).toBe(64) // header StructureSize
    expect(smb.readUInt32LE(8)).toBe(0) // STATUS_SUCCESS
    expect(smb.readUInt16LE(12)).toBe(0) // NEGOTIATE
    expect(smb.readUInt32LE(16) & 1).toBe(1) // SMB2_FLAGS_SERVER_TO_REDIR
    expect(smb.readUInt16LE(64)).toBe(65) // negotiate response StructureSize
    expect([0x0210, 0x0302]).toContain(smb.readUInt16LE(68))
    const offset = smb.readUInt16LE(64 + 56)
    const length = smb.readUInt16LE(64 + 58)
    expect(offset).toBe(128)
    expect(offset + length).toBe(smb.length)
    const token = smb.subarray(offset)
    expect(token[0]).toBe(0x60) // [APPLICATION 0]
    expect(token[1]).toBe(token.length - 2) // short-form DER length covers the rest
    expect(token.subarray(2, 10)).toEqual(Buffer.from([0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02])) // SPNEGO OID
  })

  it('139_tcp is a NetBIOS positive session response', async () => {
    expect(await template('139_tcp')).toEqual(Buffer.from([0x82, 0x00, 0x00, 0x00]))
  })

  it('135_tcp is a little-endian DCE/RPC bind_ack whose frag_length is the file length', async () => {
    const bytes = await template('135_tcp')
    expect([bytes[0], bytes[1], bytes[2]]).toEqual([5, 0, 12])
    expect(bytes[3]).toBe(0x03) // first and last fragment
    expect(bytes[4]).toBe(0x10) // little-endian integers, ASCII
    expect(bytes.readUInt16LE(8)).toBe(bytes.length)
    expect(bytes.readUInt16LE(10)).toBe(0) // no auth verifier
    const secAddrLength = bytes.readUInt16LE(24)
    expect(bytes.subarray(26, 26 + secAddrLength).toString('latin1')).toBe('135\0')
    const results = 26 + secAddrLength + ((4 - ((26 + secAddrLength) % 4)) % 4)
    expect(bytes[results]).toBe(1) // n_results
    expect(bytes.readUInt16LE(results + 4)).toBe(0) // acceptance
    const ndr = Buffer.from('045d888aeb1cc9119fe808002b104860', 'hex')
    expect(bytes.subarray(results + 8, results + 24)).toEqual(ndr)
    expect(bytes.readUInt32LE(results + 24)).toBe(2)
    expect(results + 28).toBe(bytes.length)
  })

  it('1433_tcp is a TDS PRELOGIN response whose length field is the file length', async () => {
    const bytes = await template('1433_tcp')
    expect(bytes[0]).toBe(0x04)
    expect(bytes[1]).toBe(0x01) // end of message
    expect(bytes.readUInt16BE(2)).toBe(bytes.length)
    const payload = bytes.subarray(8)
    const tokens: number[] = []
    let at = 0
    while (payload[at] !== 0xff) {
      const token = payload[at]
      expect(token).toBeDefined()
      const offset = payload.readUInt16BE(at + 1)
      const length = payload.readUInt16BE(at + 3)
      expect(offset + length).toBeLessThanOrEqual(payload.length)
      tokens.push(token ?? -1)
      at += 5
    }
    expect(tokens).toEqual([0x00, 0x01, 0x02, 0x03, 0x04]) // VERSION, ENCRYPTION, INSTOPT, THREADID, MARS
    expect(payload.readUInt16BE(1)).toBe(at + 1) // VERSION data right after the terminator
    expect(payload.readUInt16BE(3)).toBe(6)
  })

  it('3306_tcp is a MySQL HandshakeV10 whose 3-byte length is the payload length', async () => {
    const bytes = await template('3306_tcp')
    expect(bytes.readUIntLE(0, 3)).toBe(bytes.length - 4)
    expect(bytes[3]).toBe(0) // sequence id
    expect(bytes[4]).toBe(10) // protocol version
    const versionEnd = bytes.indexOf(0, 5)
    expect(bytes.subarray(5, versionEnd).toString('latin1')).toMatch(/^\d+\.\d+\.\d+/)
    let at = versionEnd + 1 + 4 // connection id
    const part1 = bytes.subarray(at, at + 8)
    at += 8
    expect(bytes[at]).toBe(0) // filler
    const capabilities = bytes.readUInt16LE(at + 1) | (bytes.readUInt16LE(at + 6) << 16)
    expect(capabilities & 0x0200).toBe(0x0200) // CLIENT_PROTOCOL_41
    expect(capabilities & 0x8_0000).toBe(0x8_0000) // CLIENT_PLUGIN_AUTH
    const authDataLength = bytes[at + 8] ?? 0
    expect(authDataLength).toBe(21)
    at += 9 + 10 // through the reserved bytes
    const part2 = bytes.subarray(at, at + authDataLength - 8 - 1)
    expect(bytes[at + authDataLength - 8 - 1]).toBe(0)
    const scramble = Buffer.concat([part1, part2])
    expect(scramble.length).toBe(20)
    expect(scramble.includes(0)).toBe(false)
    at += authDataLength - 8
    expect(bytes.subarray(at).toString('latin1')).toBe('mysql_native_password\0')
  })

  it('3389_tcp is an X.224 Connection Confirm in a TPKT whose length is the file length', async () => {
    const bytes = await template('3389_tcp')
    expect(bytes[0]).toBe(3) // TPKT version
    expect(bytes.readUInt16BE(2)).toBe(bytes.length)
    expect(bytes[4]).toBe(bytes.length - 5) // X.224 length indicator excludes itself
    expect(bytes[5]).toBe(0xd0)
    expect(bytes[11]).toBe(0x02) // TYPE_RDP_NEG_RSP
    expect(bytes.readUInt16LE(13)).toBe(8)
    expect([0x1, 0x2]).toContain(bytes.readUInt32LE(15)) // PROTOCOL_SSL or PROTOCOL_HYBRID
  })

  it.each([
    ['5060_udp', 'UDP'],
    ['5060_tcp', 'TCP'],
  ])('%s is a SIP 200 OK to OPTIONS with CRLF lines and a matching Content-Length', async (name, transport) => {
    const bytes = await template(name)
    const { head, body } = splitMessage(bytes)
    expect(bytes.toString('latin1').endsWith('\r\n\r\n')).toBe(true)
    expect(head[0]).toBe('SIP/2.0 200 OK')
    expect(Number(header(head, 'Content-Length'))).toBe(body.length)
    expect(header(head, 'CSeq')).toMatch(/^\d+ OPTIONS$/)
    expect(header(head, 'Via')).toMatch(new RegExp(`^SIP/2\\.0/${transport} `))
    for (const required of ['From', 'To', 'Call-ID', 'Allow', 'Accept']) expect(header(head, required), required).toBeDefined()
    expect(header(head, 'Server') ?? header(head, 'User-Agent')).toBeDefined()
  })

  it('5900_tcp is the RFB 3.8 protocol version', async () => {
    expect(await template('5900_tcp')).toEqual(Buffer.from('RFB 003.008\n', 'latin1'))
  })

  it('6379_tcp is one RESP error line', async () => {
    const bytes = await template('6379_tcp')
    expect(bytes.toString('latin1')).toMatch(/^-NOAUTH [^\r\n]+\r\n$/)
  })

  it.each([
    ['21_tcp', /^220 /],
    ['25_tcp', /^220 [a-z0-9.-]+ ESMTP /],
    ['110_tcp', /^\+OK /],
    ['143_tcp', /^\* OK \[CAPABILITY IMAP4rev1 [^\]]*\] /],
  ])('%s is a single CRLF-terminated greeting', async (name, pattern) => {
    const bytes = await template(name)
    expectCrlfLines(bytes)
    expect(bytes.toString('latin1').split('\r\n')).toHaveLength(2)
    expect(bytes.toString('latin1')).toMatch(pattern)
  })

  it('23_tcp negotiates telnet options, then prompts for a login', async () => {
    const bytes = await template('23_tcp')
    let at = 0
    while (bytes[at] === 0xff) {
      expect([251, 252, 253, 254]).toContain(bytes[at + 1]) // WILL, WONT, DO, DONT
      at += 3
    }
    expect(at).toBeGreaterThan(0)
    const text = bytes.subarray(at).toString('latin1')
    expect(text).not.toContain('\xff')
    expect(text).toMatch(/login: $/)
    expect(text.replaceAll('\r\n', '')).not.toMatch(/[\r\n]/)
  })

  it.each(['4444_tcp', '21000_tcp'])('%s is a Windows cmd.exe banner ending at the prompt', async (name) => {
    const text = (await template(name)).toString('latin1')
    expect(text).toMatch(/^Microsoft Windows \[Version 10\.0\.\d+\]\r\n\(c\) \d{4} Microsoft Corporation\. All rights reserved\.\r\n\r\nC:\\Windows\\system32>$/)
  })
})
