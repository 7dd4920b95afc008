import { writeSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'

// How often a benchmark helper checks that the benchmark that started it is still there.
const PARENT_CHECK_MS = 1_000
const READY_FD = 3 // as startBenchProcess expects

/** A TCP server for a benchmark helper process: half-open allowed, Nagle off, a client's reset is just its end. */
export function listenBench(host: string, port: number, serve: (socket: Socket) => void): Promise<Server> {
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', () => undefined)
    serve(socket)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port, backlog: 511 }, () => resolve(server))
  })
}

/**
 * Reports ready on descriptor 3, then serves until SIGTERM/SIGINT, the lifetime bound, or the benchmark going away:
 * `ip netns exec` execs in place, so the parent is the benchmark, and once it is gone (re-parented) nobody would stop
 * this process.
 */
export function serveUntilStopped(servers: readonly Server[], maxLifetimeMs: number): void {
  const stop = (): void => {
    for (const server of servers) server.close()
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  setTimeout(stop, maxLifetimeMs).unref()
  const parent = process.ppid
  setInterval(() => process.ppid !== parent && stop(), PARENT_CHECK_MS).unref()
  writeSync(READY_FD, 'ready\n')
}
