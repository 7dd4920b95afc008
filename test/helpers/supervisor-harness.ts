import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { readdirSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { onTestFinished } from 'vitest'
import type { Attack, Protocol } from '../../src/attack/attack.js'
import { parseConfig } from '../../src/config/load-config.js'
import type { ConfigInput } from '../../src/config/schema.js'
import type { ConnectionAttempt } from '../../src/monitor/packet-source.js'
import { createSupervisor } from '../../src/main.js'
import type { ResponderSet } from '../../src/responders/responder-set.js'
import { TemplateStore } from '../../src/responders/templates.js'
import { SourceLimiter } from '../../src/supervisor/source-limiter.js'
import type { Supervisor } from '../../src/supervisor/supervisor.js'

/** The supervisor on real loopback sockets, wired as main.ts wires it, and the clients its tests use. */
export const log = pino({ level: 'silent' })
export const LOOPBACK = '127.0.0.1'
// Generous deadlines for waits that normally end in milliseconds; a slow machine must not fail these tests.
export const WAIT_MS = 5_000

/** File descriptors this process has open now. */
export function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` until it holds, or fails with `what` at the deadline. */
export async function waitFor(what: string, check: () => boolean, deadlineMs = WAIT_MS): Promise<void> {
  const started = performance.now()
  while (!check()) {
    if (performance.now() - started > deadlineMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** A TCP port nobody listens on right now: bind port 0, note the port, close. */
export async function freeTcpPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '0.0.0.0', port: 0 }, resolve)
  })
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4')
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind({ address: '0.0.0.0', port: 0 }, resolve)
  })
  const port = socket.address().port
  await new Promise<void>((resolve) => socket.close(() => resolve()))
  return port
}

export function attemptFor(protocol: Protocol, dstPort: number, src: { address?: string; port?: number; dstAddress?: string; family?: 4 | 6 } = {}): ConnectionAttempt {
  return {
    family: src.family ?? 4,
    protocol,
    srcAddress: src.address ?? LOOPBACK,
    srcPort: src.port ?? 40_000,
    dstAddress: src.dstAddress ?? LOOPBACK,
    dstPort,
    facts: {
      ttl: 64,
      ipId: 1,
      dontFragment: true,
      tcpWindow: protocol === 'tcp' ? 65_495 : null,
      tcpFlags: protocol === 'tcp' ? 0x02 : null,
      tcpOptions: protocol === 'tcp' ? [2, 4, 8, 1, 3] : [],
      mss: protocol === 'tcp' ? 65_495 : null,
      windowScale: protocol === 'tcp' ? 7 : null,
    },
  }
}

export interface Harness {
  readonly supervisor: Supervisor
  readonly attacks: Attack[]
  readonly limiter: SourceLimiter
  readonly responders: ResponderSet
  /** Calls onAttempt for a TCP or UDP port and waits until it settles. */
  attempt(protocol: Protocol, port: number, src?: { address?: string; port?: number; dstAddress?: string; family?: 4 | 6 }): Promise<void>
  /** Waits until the sink holds at least `count` attacks. */
  attacksReady(count: number): Promise<Attack[]>
}

export interface HarnessOptions {
  readonly config?: ConfigInput
  readonly templates?: Readonly<Record<string, string | Buffer>> // file name ("80_tcp") -> contents
  readonly now?: () => number // the limiter's clock
}

/** A Supervisor wired as main.ts wires it, with its own templates directory; everything is closed after the test. */
export async function startSupervisor(options: HarnessOptions = {}): Promise<Harness> {
  const config = parseConfig(options.config ?? {})
  const dir = await mkdtemp(join(tmpdir(), 'ht-supervisor-'))
  for (const [name, contents] of Object.entries(options.templates ?? {})) await writeFile(join(dir, name), contents)
  const templates = new TemplateStore({ dir, maxTemplateBytes: config.responder.maxTemplateBytes, log })
  await templates.load()
  const limiter = new SourceLimiter({ ...config.limits, ...(options.now !== undefined && { now: options.now }) })
  const attacks: Attack[] = []
  const { supervisor, responders } = createSupervisor(config, { templates, limiter, excluded: [], sink: (attack) => attacks.push(attack), log })
  onTestFinished(async () => {
    await supervisor.close()
    responders.close()
    templates.close()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    supervisor,
    attacks,
    limiter,
    responders,
    attempt: async (protocol, port, src) => {
      await supervisor.onAttempt(attemptFor(protocol, port, src))
    },
    attacksReady: async (count) => {
      await waitFor(`${count} attack(s) in the sink`, () => attacks.length >= count)
      return attacks
    },
  }
}

export interface TcpClient {
  readonly socket: Socket
  readonly localPort: number
  /** Everything received so far. */
  received(): Buffer
  /** Resolves once at least `count` bytes have arrived. */
  bytes(count: number): Promise<Buffer>
  /** Settles when the socket closes: how the server ended it. */
  readonly closed: Promise<{ readonly gotEnd: boolean; readonly errorCode: string | undefined }>
}

/** Connects to 127.0.0.1:port (or `host`, from `localPort` if given); rejects with the connect error (ECONNREFUSED when nothing listens). */
export function connectTcp(port: number, options: { readonly host?: string; readonly localPort?: number } = {}): Promise<TcpClient> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: options.host ?? LOOPBACK, port, ...(options.localPort !== undefined && { localPort: options.localPort }) })
    onTestFinished(() => {
      socket.destroy()
    })
    const chunks: Buffer[] = []
    let gotEnd = false
    let errorCode: string | undefined
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => {
      gotEnd = true
    })
    const closed = new Promise<{ gotEnd: boolean; errorCode: string | undefined }>((resolveClosed) => {
      socket.on('close', () => resolveClosed({ gotEnd, errorCode }))
    })
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      socket.on('error', (err: NodeJS.ErrnoException) => {
        errorCode = err.code
      })
      const received = (): Buffer => Buffer.concat(chunks)
      resolve({
        socket,
        localPort: socket.localPort ?? -1,
        received,
        closed,
        bytes: async (count) => {
          await waitFor(`${count} bytes from the server`, () => received().length >= count)
          return received()
        },
      })
    })
  })
}

/**
 * Connects and waits until the server ends the connection, whether it is reset before or after the client saw the
 * connect complete (a reset right after accept can beat the 'connect' event); returns the error code or 'closed'.
 */
export function endOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port })
    onTestFinished(() => {
      socket.destroy()
    })
    let code = 'closed'
    socket.on('error', (err: NodeJS.ErrnoException) => {
      code = err.code ?? 'unknown'
    })
    socket.on('data', () => undefined)
    socket.on('close', () => resolve(code))
  })
}

/** The connect error's code, or 'connected' when the connect succeeded. */
export async function connectOutcome(port: number): Promise<string> {
  try {
    const client = await connectTcp(port)
    client.socket.destroy()
    return 'connected'
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'unknown'
  }
}

export interface UdpClient {
  readonly socket: UdpSocket
  readonly port: number
  readonly replies: Buffer[]
  send(data: Buffer | string, port: number): Promise<void>
}

export async function udpClient(): Promise<UdpClient> {
  const socket = createSocket('udp4')
  onTestFinished(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  const replies: Buffer[] = []
  socket.on('message', (m) => replies.push(m))
  socket.on('error', () => undefined)
  await new Promise<void>((resolve) => socket.bind({ address: LOOPBACK, port: 0 }, resolve))
  return {
    socket,
    port: socket.address().port,
    replies,
    send: (data, port) =>
      new Promise<void>((resolve, reject) => {
        socket.send(typeof data === 'string' ? Buffer.from(data) : data, port, LOOPBACK, (err) => (err ? reject(err) : resolve()))
      }),
  }
}

/** A TCP rule for exactly `port`. */
