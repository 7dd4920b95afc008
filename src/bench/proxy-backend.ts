import type { Server, Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { listenBench, serveUntilStopped } from './bench-server.js'

/**
 * The backend of the benchmark's proxy section (d), run in the sensor namespace by startBenchProcess:
 * `node proxy-backend.js '<json ProxyBackendSpec>'`, ready on descriptor 3. Three listeners on one address, each as
 * cheap as a TCP server can be, so that the figures measure the path in front of it and not the backend:
 * - sink: counts what it reads and, after the client's FIN, answers the count as one line and closes;
 * - source: writes `sourceBytes` from one pre-allocated buffer, then closes; what it reads is dropped;
 * - banner: writes a short banner on accept, drops what it reads, closes after the client's FIN.
 * netns/backend-server.ts hashes every byte both ways (SHA-256, and AES-CTR or crypto random for `source`): on this
 * VM it serves a single connection at about 560 MB/s (digest) and 430 MB/s (source) against about 900 MB/s here, so
 * behind it the relay's cost would hide in the backend's. The process ends itself after `maxLifetimeMs`, or when
 * the benchmark that started it is gone.
 */

export interface ProxyBackendSpec {
  readonly host: string
  readonly sinkPort: number
  readonly sourcePort: number
  readonly bannerPort: number
  readonly sourceBytes: number // per connection to the source port
  readonly maxLifetimeMs: number
}

/** What the banner port writes on accept: short enough to arrive in one segment. */
export const PROXY_BANNER = Buffer.from('SSH-2.0-bench\r\n', 'latin1')

const SOURCE_CHUNK_BYTES = 1024 * 1024
const MAX_SOURCE_BYTES = 8 * 1024 ** 3 // 8 GiB: a bound on a typo, far above any run

function serveSink(socket: Socket): void {
  let received = 0
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length
  })
  socket.on('end', () => socket.end(`${received}\n`))
}

function serveSource(socket: Socket, options: { readonly bytes: number; readonly chunk: Buffer }): void {
  let remaining = options.bytes
  socket.resume() // whatever the client sends is dropped
  const pump = (): void => {
    while (remaining > 0 && !socket.destroyed) {
      const piece = remaining >= options.chunk.length ? options.chunk : options.chunk.subarray(0, remaining)
      remaining -= piece.length
      // The same buffer is queued again and again: its bytes never change, so no copy is needed.
      if (!socket.write(piece)) {
        socket.once('drain', pump)
        return
      }
    }
    if (!socket.destroyed) socket.end()
  }
  pump()
}

function serveBanner(socket: Socket): void {
  socket.write(PROXY_BANNER)
  socket.resume()
  socket.on('end', () => socket.end())
}

/** Starts the three listeners and reports ready on descriptor 3; they serve until SIGTERM, the lifetime bound or an orphaning. */
export async function runProxyBackend(spec: ProxyBackendSpec): Promise<void> {
  if (!Number.isSafeInteger(spec.sourceBytes) || spec.sourceBytes < 0 || spec.sourceBytes > MAX_SOURCE_BYTES) {
    throw new RangeError(`sourceBytes must be 0..${MAX_SOURCE_BYTES}`)
  }
  const chunk = Buffer.alloc(SOURCE_CHUNK_BYTES, 0x5a)
  const servers = [
    await listenBench(spec.host, spec.sinkPort, serveSink),
    await listenBench(spec.host, spec.sourcePort, (s) => serveSource(s, { bytes: spec.sourceBytes, chunk })),
    await listenBench(spec.host, spec.bannerPort, serveBanner),
  ]
  serveUntilStopped(servers, spec.maxLifetimeMs)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runProxyBackend(JSON.parse(process.argv[2] ?? '{}') as ProxyBackendSpec).catch((err: unknown) => {
    process.stderr.write(`proxy-backend: ${String(err)}\n`)
    process.exit(1)
  })
}
