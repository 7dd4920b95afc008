import { createCipheriv, createHash, randomBytes, type Hash } from 'node:crypto'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, isIP, type Server, type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { HoneytrapError } from '../core/errors.js'
import { formatEndpoint } from '../core/format-endpoint.js'

/**
 * A backend for the mirror and proxy end-to-end tests and benchmarks, run inside the backend namespace:
 * `node backend-server.js --tcp PORT [--udp PORT] --mode MODE ...`. It writes one JSON line per event to stdout
 * (`listening`, `connection`, `closed`, `datagram`) and exits on SIGTERM or SIGINT. UDP echoes every datagram in
 * every mode; the modes choose what TCP does.
 */

export const BACKEND_MODES = ['echo', 'digest', 'source', 'banner', 'reset', 'slow'] as const
export type BackendMode = (typeof BACKEND_MODES)[number]

/** The parsed command line. */
export interface BackendOptions {
  readonly tcpPort: number | undefined // 0: any free port (reported in the listening event)
  readonly udpPort: number | undefined
  readonly host: string
  readonly mode: BackendMode
  readonly bytes: number // source: how many bytes to send
  readonly seed: string | undefined // source: same seed, same bytes; absent: crypto random
  readonly banner: string // banner: written on connect
  readonly rateBytesPerSec: number // slow: how fast it reads
  readonly idleTimeoutMs: number // a TCP connection silent this long is destroyed
  readonly maxConnections: number
  readonly exitOnStdinEnd: boolean // a lifeline: exit when the parent's pipe closes, even if it died without a signal
}

const MAX_SOURCE_BYTES = 16 * 1024 ** 3 // 16 GiB
const SOURCE_CHUNK_BYTES = 64 * 1024
const SLOW_TICK_MS = 50 // the slow reader's budget is refilled this often
const ONLY_FOR: Readonly<Record<string, BackendMode>> = { bytes: 'source', seed: 'source', banner: 'banner', rate: 'slow' }

function usageError(message: string): HoneytrapError {
  return new HoneytrapError('HT_ERR_CLI_USAGE', `backend-server: ${message}`)
}

function parseInteger(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined
  const value = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) throw usageError(`--${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`)
  return value
}

/** Parses the command line; throws HT_ERR_CLI_USAGE naming the bad flag. */
export function parseBackendArgs(argv: readonly string[]): BackendOptions {
  let values
  try {
    ;({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        tcp: { type: 'string' },
        udp: { type: 'string' },
        host: { type: 'string' },
        mode: { type: 'string' },
        bytes: { type: 'string' },
        seed: { type: 'string' },
        banner: { type: 'string' },
        rate: { type: 'string' },
        'idle-timeout-ms': { type: 'string' },
        'max-connections': { type: 'string' },
        'exit-on-stdin-end': { type: 'boolean' },
      },
    }))
  } catch (err) {
    throw new HoneytrapError('HT_ERR_CLI_USAGE', `backend-server: ${(err as Error).message}`, { cause: err })
  }
  const tcpPort = parseInteger('tcp', values.tcp, 0, 65_535)
  const udpPort = parseInteger('udp', values.udp, 0, 65_535)
  if (tcpPort === undefined && udpPort === undefined) throw usageError('give --tcp PORT, --udp PORT or both')
  const host = values.host ?? '::'
  if (isIP(host) === 0) throw usageError(`--host must be an IP address, got ${JSON.stringify(host)}`)
  const mode = values.mode ?? 'echo'
  if (!(BACKEND_MODES as readonly string[]).includes(mode)) throw usageError(`--mode must be one of ${BACKEND_MODES.join(', ')}, got ${JSON.stringify(mode)}`)
  for (const [flag, only] of Object.entries(ONLY_FOR)) {
    if ((values as Record<string, unknown>)[flag] !== undefined && mode !== only) throw usageError(`--${flag} applies only to --mode ${only}`)
  }
  return {
    tcpPort,
    udpPort,
    host,
    mode: mode as BackendMode,
    bytes: parseInteger('bytes', values.bytes, 0, MAX_SOURCE_BYTES) ?? 1024 * 1024,
    seed: values.seed,
    banner: values.banner ?? 'backend ready\r\n',
    rateBytesPerSec: parseInteger('rate', values.rate, 1, 1024 ** 3) ?? 64 * 1024,
    idleTimeoutMs: parseInteger('idle-timeout-ms', values['idle-timeout-ms'], 1, 3_600_000) ?? 30_000,
    maxConnections: parseInteger('max-connections', values['max-connections'], 1, 100_000) ?? 1_024,
    exitOnStdinEnd: values['exit-on-stdin-end'] ?? false,
  }
}

function emit(event: Record<string, unknown>): void {
  // stdout is a pipe or a file: writes are synchronous on Linux, so nothing is lost when the process exits.
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

/** `addr:port`, with IPv4-mapped addresses (a dual-stack socket's view of IPv4 peers) shown as plain IPv4. */
function formatRemote(address: string | undefined, port: number | undefined): string {
  const plain = address?.startsWith('::ffff:') === true && isIP(address.slice(7)) === 4 ? address.slice(7) : (address ?? '?')
  return formatEndpoint(plain, port ?? 0)
}

/** A byte generator: AES-128-CTR keystream of the seed (reproducible), or crypto random without one. */
function createByteSource(seed: string | undefined): (size: number) => Buffer {
  if (seed === undefined) return (size) => randomBytes(size)
  const key = createHash('sha256').update(seed).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  return (size) => cipher.update(Buffer.alloc(size))
}

/** Serves one TCP connection in `options.mode`; emits `closed` when the socket closes. */
function serveConnection(socket: Socket, options: BackendOptions): void {
  const remote = formatRemote(socket.remoteAddress, socket.remotePort)
  emit({ event: 'connection', remote })
  const receivedHash: Hash = createHash('sha256')
  const sentHash: Hash = createHash('sha256')
  let received = 0
  let sent = 0
  const write = (chunk: Buffer): boolean => {
    sent += chunk.length
    sentHash.update(chunk)
    return socket.write(chunk)
  }
  const consume = (chunk: Buffer): void => {
    received += chunk.length
    receivedHash.update(chunk)
  }
  const digestLine = (): Buffer => Buffer.from(`${JSON.stringify({ bytes: received, sha256: receivedHash.copy().digest('hex') })}\n`)
  socket.setTimeout(options.idleTimeoutMs, () => socket.destroy())
  socket.on('error', () => undefined) // a client's reset is part of the test; 'close' reports it
  socket.on('close', (hadError) => {
    clearInterval(slowTimer)
    emit({ event: 'closed', remote, received, sha256: receivedHash.digest('hex'), sent, sentSha256: sentHash.digest('hex'), hadError })
  })
  let slowTimer: NodeJS.Timeout | undefined

  const echo = (): void => {
    socket.on('data', (chunk: Buffer) => {
      consume(chunk)
      if (!write(chunk)) socket.pause()
    })
    socket.on('drain', () => socket.resume())
    // Queued writes are flushed before the FIN that end() sends: the client gets every byte back.
    socket.on('end', () => socket.end())
  }

  switch (options.mode) {
    case 'echo':
      echo()
      break
    case 'banner':
      write(Buffer.from(options.banner, 'utf8'))
      echo()
      break
    case 'digest':
      socket.on('data', consume)
      socket.on('end', () => {
        write(digestLine())
        socket.end()
      })
      break
    case 'source': {
      const next = createByteSource(options.seed)
      socket.on('data', consume) // whatever the client says is counted, never answered
      socket.on('end', () => undefined)
      let remaining = options.bytes
      const pump = (): void => {
        while (remaining > 0 && !socket.destroyed) {
          const chunk = next(Math.min(SOURCE_CHUNK_BYTES, remaining))
          remaining -= chunk.length
          if (!write(chunk)) {
            socket.once('drain', pump)
            return
          }
        }
        if (!socket.destroyed) socket.end()
      }
      pump()
      break
    }
    case 'reset':
      socket.once('data', (chunk: Buffer) => {
        consume(chunk)
        socket.resetAndDestroy()
      })
      break
    case 'slow': {
      // Paused mode: bytes are taken from the socket only as the budget allows, so the kernel's receive buffer fills
      // and TCP's window closes on the sender, which is what a relay in front of this reader must cope with.
      let budget = 0
      const burst = Math.max(1, (options.rateBytesPerSec * SLOW_TICK_MS) / 1000)
      slowTimer = setInterval(() => {
        budget = Math.min(budget + burst, 2 * burst)
        while (budget >= 1) {
          const n = Math.min(Math.floor(budget), socket.readableLength)
          if (n === 0) {
            socket.read(0) // refills the buffer from the kernel, or emits 'end' once the FIN was read
            break
          }
          const chunk = socket.read(n) as Buffer | null
          if (chunk === null) break
          consume(chunk)
          budget -= chunk.length
        }
      }, SLOW_TICK_MS)
      socket.on('end', () => {
        clearInterval(slowTimer)
        write(digestLine())
        socket.end()
      })
      break
    }
  }
}

function listenTcp(options: BackendOptions, port: number, sockets: Set<Socket>): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    serveConnection(socket, options)
  })
  server.maxConnections = options.maxConnections
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    // ipv6Only false: on '::' one socket takes both families, as the sensor may reach the backend over either.
    server.listen({ host: options.host, port, ipv6Only: false }, () => resolve(server))
  })
}

function listenUdp(options: BackendOptions, port: number): Promise<UdpSocket> {
  const socket = createSocket({ type: isIP(options.host) === 4 ? 'udp4' : 'udp6', ipv6Only: false })
  socket.on('message', (message, rinfo) => {
    emit({ event: 'datagram', remote: formatRemote(rinfo.address, rinfo.port), size: message.length })
    socket.send(message, rinfo.port, rinfo.address)
  })
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.bind({ address: options.host, port }, () => {
      socket.off('error', reject)
      socket.on('error', () => undefined) // e.g. ICMP unreachable for an echo: the next datagram still works
      resolve(socket)
    })
  })
}

/** Starts the listeners, reports `listening`, and serves until SIGTERM/SIGINT (or stdin's end with the lifeline). */
export async function runBackendServer(options: BackendOptions): Promise<void> {
  const sockets = new Set<Socket>()
  const server = options.tcpPort === undefined ? undefined : await listenTcp(options, options.tcpPort, sockets)
  const udp = options.udpPort === undefined ? undefined : await listenUdp(options, options.udpPort)
  const tcpAddress = server?.address()
  emit({
    event: 'listening',
    tcp: typeof tcpAddress === 'object' && tcpAddress !== null ? tcpAddress.port : null,
    udp: udp === undefined ? null : udp.address().port,
    mode: options.mode,
    pid: process.pid,
  })
  const shutdown = (signal: string): void => {
    server?.close()
    udp?.close()
    for (const s of sockets) s.destroy()
    emit({ event: 'exit', signal })
    process.exit(0)
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  if (options.exitOnStdinEnd) {
    process.stdin.on('data', () => undefined)
    process.stdin.once('end', () => shutdown('stdin-end'))
    process.stdin.once('error', () => shutdown('stdin-end'))
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  let options: BackendOptions
  try {
    options = parseBackendArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`)
    process.exit(2)
  }
  runBackendServer(options).catch((err: unknown) => {
    process.stderr.write(`backend-server: ${String(err)}\n`)
    process.exit(1)
  })
}
