import { connect, type Socket } from 'node:net'
import type { Endpoint } from '../attack/attack.js'
import type { ResolvedAddress } from './target-resolver.js'

export interface WarmUpstreamOptions {
  readonly host: string // the target as configured (an address or a name)
  readonly port: number
  readonly size: number // connections kept open and ready
  readonly maxAgeMs: number // a ready connection is replaced after this long, before the backend's own timeouts
  readonly connectTimeoutMs: number
  readonly resolve: (host: string) => ResolvedAddress | null | Promise<ResolvedAddress | null>
  readonly retryFirstMs?: number // after a failed or short-lived connection, wait this long before the next (doubling)
  readonly retryMaxMs?: number
}

/** A connection handed to a session: the socket (paused) and what the target sent before it was taken. */
export interface WarmConnection {
  readonly socket: Socket
  readonly received: readonly Buffer[]
}

export interface WarmUpstreamStats {
  readonly ready: number // open, connected and waiting now
  readonly opened: number // connections that came up
  readonly taken: number // handed to sessions
  readonly expired: number // replaced at maxAgeMs unused
  readonly failed: number // connects that failed, and ready connections the target closed or reset
}

interface Slot {
  readonly socket: Socket
  readonly destination: Endpoint
  readonly received: Buffer[]
  receivedBytes: number
  connected: boolean
  ageTimer: NodeJS.Timeout | undefined
  readonly onData: (chunk: Buffer) => void
  readonly onLost: () => void
  readonly onConnect: () => void
}

// What a ready connection holds from the target before it is paused: a banner and a greeting fit many times over.
const MAX_HELD_BYTES = 64 * 1024
const DEFAULT_RETRY_FIRST_MS = 1_000
const DEFAULT_RETRY_MAX_MS = 30_000

/** The pool's handlers on a waiting connection; the end of it in any way loses it. */
function handlersOf(slot: Slot): readonly (readonly [string, (chunk: Buffer) => void])[] {
  return [
    ['connect', slot.onConnect],
    ['data', slot.onData],
    ['timeout', slot.onLost],
    ['end', slot.onLost],
    ['error', slot.onLost],
    ['close', slot.onLost],
  ]
}

/**
 * Connections to one proxy target opened ahead of the attackers. A session that takes one skips the connect and the
 * target's wake-up to greet: the banner already waits in it, and the attacker gets it as fast as from a host that
 * serves it itself (a relay's added round trip is a tell). Each connection serves one session. The target sees
 * connections that are closed unused at maxAgeMs; a connect that fails, or a connection the target ends before that,
 * delays the next attempt (1 s doubling to 30 s), so a target that is down or refuses idle connections is not hammered.
 */
export class WarmUpstream {
  readonly #o: WarmUpstreamOptions
  readonly #slots = new Set<Slot>()
  #opening = 0 // resolutions and connects under way
  #retryTimer: NodeJS.Timeout | undefined
  #retryMs: number
  #closed = false
  #opened = 0
  #taken = 0
  #expired = 0
  #failed = 0

  constructor(options: WarmUpstreamOptions) {
    this.#o = options
    this.#retryMs = options.retryFirstMs ?? DEFAULT_RETRY_FIRST_MS
    this.#fill()
  }

  /** A ready connection to `destination` (the address the session resolved), or null when none is ready. */
  take(destination: Endpoint): WarmConnection | null {
    for (const slot of this.#slots) {
      if (!slot.connected || slot.destination.address !== destination.address || slot.destination.port !== destination.port) continue
      this.#release(slot)
      const { socket } = slot
      this.#detach(slot)
      socket.pause() // the session attaches its handlers, then resumes
      socket.ref()
      this.#taken += 1
      this.#retryMs = this.#o.retryFirstMs ?? DEFAULT_RETRY_FIRST_MS
      this.#fill()
      return { socket, received: slot.received }
    }
    return null
  }

  /** Closes every ready connection and opens no more. */
  close(): void {
    this.#closed = true
    clearTimeout(this.#retryTimer)
    for (const slot of [...this.#slots]) this.#discard(slot)
  }

  stats(): WarmUpstreamStats {
    let ready = 0
    for (const slot of this.#slots) if (slot.connected) ready += 1
    return { ready, opened: this.#opened, taken: this.#taken, expired: this.#expired, failed: this.#failed }
  }

  #fill(): void {
    if (this.#closed || this.#retryTimer !== undefined) return
    while (this.#slots.size + this.#opening < this.#o.size) this.#open()
  }

  #open(): void {
    this.#opening += 1
    const resolved = this.#o.resolve(this.#o.host)
    if (resolved instanceof Promise) void resolved.then((r) => this.#connect(r))
    else this.#connect(resolved)
  }

  #connect(resolved: ResolvedAddress | null): void {
    this.#opening -= 1
    if (this.#closed) return
    if (resolved === null) return this.#failure()
    const destination: Endpoint = { address: resolved.address, port: this.#o.port }
    const socket = connect({ host: destination.address, port: destination.port, allowHalfOpen: true, noDelay: true })
    socket.unref() // waiting connections alone do not keep the process alive
    const slot: Slot = {
      socket,
      destination,
      received: [],
      receivedBytes: 0,
      connected: false,
      ageTimer: undefined,
      onData: (chunk: Buffer) => {
        slot.received.push(chunk)
        slot.receivedBytes += chunk.length
        if (slot.receivedBytes >= MAX_HELD_BYTES) socket.pause()
      },
      // The target ended or reset it before any session took it: useless now, and a sign to slow down.
      onLost: () => this.#lost(slot),
      onConnect: () => {
        slot.connected = true
        socket.setTimeout(0)
        this.#opened += 1
        slot.ageTimer = setTimeout(() => {
          this.#expired += 1
          this.#retryMs = this.#o.retryFirstMs ?? DEFAULT_RETRY_FIRST_MS // it lived its whole life: the target is fine
          this.#discard(slot)
          this.#fill()
        }, this.#o.maxAgeMs)
        slot.ageTimer.unref()
      },
    }
    this.#slots.add(slot)
    socket.setTimeout(this.#o.connectTimeoutMs)
    for (const [event, handler] of handlersOf(slot)) socket.on(event, handler)
  }

  #lost(slot: Slot): void {
    if (!this.#slots.has(slot)) return
    this.#discard(slot)
    this.#failure()
  }

  #failure(): void {
    this.#failed += 1
    if (this.#closed || this.#retryTimer !== undefined) return
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#fill()
    }, this.#retryMs)
    this.#retryTimer.unref()
    this.#retryMs = Math.min(this.#retryMs * 2, this.#o.retryMaxMs ?? DEFAULT_RETRY_MAX_MS)
  }

  #release(slot: Slot): void {
    clearTimeout(slot.ageTimer)
    this.#slots.delete(slot)
  }

  /** Removes this pool's handlers only: the socket's own (Node's) stay for the session that takes it. */
  #detach(slot: Slot): void {
    for (const [event, handler] of handlersOf(slot)) slot.socket.off(event, handler)
  }

  #discard(slot: Slot): void {
    this.#release(slot)
    this.#detach(slot)
    slot.socket.on('error', () => undefined) // a late error from a discarded socket must not crash
    slot.socket.destroy()
  }
}
