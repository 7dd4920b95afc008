import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import type { AddressFamily, CloseReason, Endpoint } from '../attack/attack.js'
import type { EndableSession } from '../responders/responder.js'
import { listenerKey, wildcardAddress, type Listener } from './listener.js'

/** One UDP session's behaviour, created by the supervisor for each new peer. */
export interface UdpSessionHandle {
  /** Handles one datagram from the peer, in arrival order; a close reason ends the session at once. */
  datagram(data: Buffer): CloseReason | null
  /** Ends the session (called exactly once). */
  finish(reason: CloseReason): void
}

export interface UdpListenerOptions {
  readonly family: AddressFamily
  readonly port: number
  readonly sessionIdleMs: number
  /**
   * A new peer: admit it and return its session, or null to drop the datagram (refusals are counted there). `control`
   * ends the session from outside (shutdown, maximum duration).
   */
  readonly startSession: (listener: UdpListener, peer: Endpoint, send: (data: Buffer) => void, control: EndableSession) => UdpSessionHandle | null
}

interface Session {
  readonly handle: UdpSessionHandle
  readonly timer: NodeJS.Timeout
}

/**
 * A wildcard UDP socket on one port with one session per peer (address and port). Sessions are created
 * synchronously in the message handler, so one datagram can never start two handlers.
 */
export class UdpListener implements Listener {
  readonly key: number
  readonly family: AddressFamily
  readonly protocol = 'udp' as const
  readonly port: number
  lastUsedMs = Date.now()
  readonly #socket: Socket
  readonly #options: UdpListenerOptions
  readonly #sessions = new Map<string, Session>()
  #closed = false

  private constructor(socket: Socket, options: UdpListenerOptions) {
    this.#socket = socket
    this.#options = options
    this.family = options.family
    this.port = options.port
    this.key = listenerKey(options.family, 'udp', options.port)
  }

  /** Binds the port; rejects with the system error (EADDRINUSE when a real service owns it). */
  static open(options: UdpListenerOptions): Promise<UdpListener> {
    const socket = createSocket({ type: options.family === 6 ? 'udp6' : 'udp4', ipv6Only: options.family === 6 })
    const listener = new UdpListener(socket, options)
    socket.on('message', (data, rinfo) => listener.#onMessage(data, rinfo))
    return new Promise((resolve, reject) => {
      // A failed bind still holds a descriptor: close it, or every retry on a port a real service owns leaks one.
      const onBindError = (err: Error): void => {
        socket.close()
        reject(err)
      }
      socket.once('error', onBindError)
      socket.bind({ address: wildcardAddress(options.family), port: options.port, exclusive: true }, () => {
        socket.off('error', onBindError)
        // Send errors (ICMP unreachable reported back, ENOBUFS) are the peer's business, not a failure.
        socket.on('error', () => undefined)
        resolve(listener)
      })
    })
  }

  get active(): number {
    return this.#sessions.size
  }

  /** Closes the socket and ends its open sessions with `reason` ('shutdown' or 'evicted'). */
  close(reason: CloseReason = 'shutdown'): void {
    if (this.#closed) return
    this.#closed = true
    for (const key of [...this.#sessions.keys()]) this.#end(key, reason)
    this.#socket.close()
  }

  /**
   * A datagram for this port that reached the sensor another way (the eBPF monitor's catch-all socket, before this
   * listener existed): handled exactly as if this socket had received it, replies included.
   */
  deliver(data: Buffer, peer: { readonly address: string; readonly port: number }): void {
    this.#onMessage(data, peer)
  }

  #onMessage(data: Buffer, rinfo: Pick<RemoteInfo, 'address' | 'port'>): void {
    if (this.#closed) return
    const key = `${rinfo.address}|${rinfo.port}`
    let session = this.#sessions.get(key)
    if (session === undefined) {
      const peer = { address: rinfo.address, port: rinfo.port }
      const send = (reply: Buffer): void => {
        if (!this.#closed) this.#socket.send(reply, peer.port, peer.address)
      }
      const handle = this.#options.startSession(this, peer, send, { end: (reason) => this.#end(key, reason) })
      if (handle === null) return
      session = { handle, timer: setTimeout(() => this.#end(key, 'idle-timeout'), this.#options.sessionIdleMs) }
      this.#sessions.set(key, session)
    } else {
      session.timer.refresh()
    }
    const reason = session.handle.datagram(data)
    if (reason !== null) this.#end(key, reason)
  }

  #end(key: string, reason: CloseReason): void {
    const session = this.#sessions.get(key)
    if (session === undefined) return
    this.#sessions.delete(key)
    clearTimeout(session.timer)
    session.handle.finish(reason)
  }
}
