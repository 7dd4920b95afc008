import { createServer, type Server, type Socket } from 'node:net'
import type { AddressFamily } from '../attack/attack.js'
import { ACCEPTED_SOCKET_OPTIONS } from '../core/socket-options.js'
import { listenerKey, wildcardAddress, type Listener } from './listener.js'

export interface TcpListenerOptions {
  readonly family: AddressFamily
  readonly port: number
  readonly backlog: number
  /** Called for every accepted connection; the callee counts it with sessionStarted()/sessionEnded() if it keeps it. */
  readonly onConnection: (listener: TcpListener, socket: Socket) => void
  /** Called once listening, before open() resolves (so before the monitor's verdict): socket options of the monitor's. */
  readonly prepare?: ((server: Server, family: AddressFamily) => void) | undefined
}

/** A wildcard TCP listener on one port. */
export class TcpListener implements Listener {
  readonly key: number
  readonly family: AddressFamily
  readonly protocol = 'tcp' as const
  readonly port: number
  lastUsedMs = Date.now()
  #active = 0
  readonly #server: Server

  private constructor(server: Server, options: TcpListenerOptions) {
    this.#server = server
    this.family = options.family
    this.port = options.port
    this.key = listenerKey(options.family, 'tcp', options.port)
  }

  /** Binds and listens; rejects with the system error (EADDRINUSE when a real service owns the port). */
  static open(options: TcpListenerOptions): Promise<TcpListener> {
    // allowHalfOpen: an attacker's FIN must not close our side by itself; a relay passes it on and keeps the other
    // direction flowing, and normal mode ends the session on it explicitly.
    const server = createServer(ACCEPTED_SOCKET_OPTIONS)
    const listener = new TcpListener(server, options)
    server.on('connection', (socket) => options.onConnection(listener, socket))
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(
        { host: wildcardAddress(options.family), port: options.port, backlog: options.backlog, ipv6Only: options.family === 6, exclusive: true },
        () => {
          server.off('error', reject)
          // Accept errors (EMFILE) surface here; the supervisor's limits keep them rare, and they must not crash.
          server.on('error', () => undefined)
          options.prepare?.(server, options.family)
          resolve(listener)
        },
      )
    })
  }

  get active(): number {
    return this.#active
  }

  /** Counts a session served through this listener (idle listeners, with none, are the ones evicted first). */
  sessionStarted(): void {
    this.#active++
  }

  sessionEnded(): void {
    this.#active--
  }

  close(): void {
    this.#server.close()
  }
}
