import { isIPv4, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { AttackRecorder } from '../attack/attack-recorder.js'
import type { AddressFamily, Attack, CloseReason, Endpoint, Protocol } from '../attack/attack.js'
import { acceptQueued } from '../core/accept-queued.js'
import { HANDSHAKE_GRACE_MS, logHandshakeWait, waitForHandshakes } from '../core/pending-handshakes.js'
import type { ConnectionAttempt, SynFacts } from '../monitor/packet-source.js'
import type { ResponderSet } from '../responders/responder-set.js'
import type { Connection, DatagramSession, EndableSession } from '../responders/responder.js'
import { listenerKey, type Listener } from './listener.js'
import type { PortPolicy, PortPolicyTable } from './port-policy.js'
import type { SourceLimiter } from './source-limiter.js'
import { TcpListener } from './tcp-listener.js'
import { UdpListener, type UdpSessionHandle } from './udp-listener.js'

/** Where finished attacks go (the store's enqueue). */
export type AttackSink = (attack: Attack) => void

export interface SupervisorOptions {
  readonly listeners: {
    readonly idleLifetimeMs: number
    readonly maxListeners: number
    readonly ownedPortRecheckMs: number
    readonly backlog: number
  }
  readonly maxAttackBytes: number
  readonly maxTranscriptChunks: number
  readonly maxSessionMs: number // sessions older than this are ended ('max-duration') by a sweep
  readonly udpSessionIdleMs: number
  readonly policy: PortPolicyTable
  readonly limiter: SourceLimiter
  readonly responders: ResponderSet['tcp']
  readonly datagramResponders: ResponderSet['udp']
  readonly sink: AttackSink
  readonly log: Logger
}

export interface SupervisorStats {
  readonly listeners: number
  readonly binding: number
  readonly releasing: number // listeners taken out of service whose socket is not closed yet (a few loop turns)
  readonly sessions: number
  readonly bound: number
  readonly bindFailures: number
  readonly ownedByOthers: number
  readonly evicted: number
  readonly idleClosed: number
  readonly ignored: number
  readonly recorded: number
  readonly listenerLimitHits: number
}

/** A session in progress (TCP connection or UDP session): when it began and how to end it early. */
interface OpenSession {
  readonly startedAtMs: number
  readonly control: EndableSession | undefined // set by the responder (TCP) or the UDP listener
}

/**
 * One accepted TCP connection: the responder's Connection and the supervisor's open session in one object, so that
 * a held connection costs one small object here and no closures.
 */
class TcpConnection implements Connection, OpenSession {
  readonly socket: Socket
  readonly policy: PortPolicy
  readonly recorder: AttackRecorder
  readonly log: Logger
  readonly listener: TcpListener | null // null: steered by the eBPF monitor into its one socket
  readonly #onEnded: (conn: TcpConnection, reason: CloseReason) => void // the supervisor's, shared by every connection
  control: EndableSession | undefined = undefined
  #ended = false

  constructor(socket: Socket, policy: PortPolicy, recorder: AttackRecorder, log: Logger, listener: TcpListener | null, onEnded: (conn: TcpConnection, reason: CloseReason) => void) {
    this.socket = socket
    this.policy = policy
    this.recorder = recorder
    this.log = log
    this.listener = listener
    this.#onEnded = onEnded
  }

  ended(reason: CloseReason): void {
    if (this.#ended) return
    this.#ended = true
    this.#onEnded(this, reason)
  }

  get source(): Endpoint {
    return this.recorder.source
  }

  get target(): Endpoint {
    return this.recorder.target
  }

  get startedAtMs(): number {
    return this.recorder.startedAtMs
  }

  register(control: EndableSession): void {
    this.control = control
  }
}

/** What the monitor saw of an attempt before its session began. */
interface SeenAttempt {
  readonly address: string // the attacked address
  readonly facts: SynFacts | null
}

// An attempt the eBPF monitor makes up for a steered datagram: no SYN, so no header facts.
const NO_FACTS: SynFacts = Object.freeze({ ttl: 0, ipId: null, dontFragment: false, tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null })

/** '::ffff:198.51.100.7' (an IPv4 peer of a dual-stack socket) as '198.51.100.7'; any other address unchanged. */
function unmapV4(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

// Bounds how often a recurring condition is logged (limits under a flood would otherwise flood the log too).
const WARN_INTERVAL_MS = 10_000
// Attempts whose session has not started yet; far more than can be in flight between verdict and accept.
const MAX_TARGETS = 4_096
// How long the record of a steered session that ended before its SYN's facts arrived waits for them (the ring buffer's
// reader thread, scheduled late on a busy machine): it adds to the SIGKILL bound of those records only.
const LATE_FACTS_MS = 100

/**
 * Turns connection attempts into listeners, bound on demand before the monitor lets the packet through, and
 * connections into recorded attacks. One listener per (family, protocol, port); concurrent and retransmitted SYNs for a
 * port being bound share one bind; a port a real service owns is left alone. Listeners are kept in least-recently-used
 * order (a Map re-inserted on use), so both the idle sweep and eviction look only at the oldest entries.
 */
export class Supervisor {
  readonly #o: SupervisorOptions
  readonly #log: Logger
  readonly #listeners = new Map<number, Listener>()
  readonly #binding = new Map<number, Promise<void>>()
  readonly #owned = new Map<number, number>() // key -> time until which we don't retry the bind
  readonly #releasing = new Map<number, Promise<void>>() // listeners taken out of service, until their socket is closed
  readonly #sessions = new Set<OpenSession>()
  #drained: (() => void) | null = null
  // The destination address of recent attempts, from the monitor: a wildcard UDP socket cannot tell it, and for TCP it
  // saves a getsockname() per connection. Keyed by protocol, source address and port, and destination port.
  readonly #targets = new Map<string, SeenAttempt>()
  // Steered TCP sessions whose SYN facts had not arrived at accept (the eBPF monitor's ring buffer races the accept):
  // the facts go to the recorder when they come. One entry per open session at most, removed when it ends.
  readonly #awaitingFacts = new Map<string, AttackRecorder>()
  // Ended steered sessions whose record waits (at most LATE_FACTS_MS) for their SYN's facts; written at close.
  // In the order they ended, so one timer serves them all: the first is always the next one due.
  readonly #lateFacts = new Map<string, { readonly recorder: AttackRecorder; readonly reason: CloseReason; readonly endedAtMs: number; readonly dueAt: number }>()
  #lateTimer: NodeJS.Timeout | undefined
  readonly #sweepTimer: NodeJS.Timeout
  readonly #sessionSweepTimer: NodeJS.Timeout
  #closing = false
  #closed: Promise<void> | null = null
  #listenerClosed: ((protocol: Protocol, port: number) => void) | null = null
  #prepareListener: ((server: Server, family: AddressFamily) => void) | null = null
  #readUnseen: ((socket: Socket) => ConnectionAttempt | null) | null = null
  #synFactsExpected = false
  #lastLimitWarnMs = 0
  #counters = { bound: 0, bindFailures: 0, ownedByOthers: 0, evicted: 0, idleClosed: 0, ignored: 0, recorded: 0, listenerLimitHits: 0 }

  constructor(options: SupervisorOptions) {
    this.#o = options
    this.#log = options.log.child({ component: 'supervisor' })
    const sweepEveryMs = Math.max(250, Math.min(5_000, Math.floor(options.listeners.idleLifetimeMs / 4)))
    this.#sweepTimer = setInterval(() => this.#sweep(), sweepEveryMs).unref()
    // One timer for every session's maximum duration instead of one per session; ends them within a second or so.
    const sessionSweepMs = Math.max(50, Math.min(1_000, Math.floor(options.maxSessionMs / 4)))
    this.#sessionSweepTimer = setInterval(() => this.#sweepSessions(), sessionSweepMs).unref()
  }

  /** The monitor's handler: resolves when a listener for the attempt's port exists (or none will be made). */
  onAttempt = (attempt: ConnectionAttempt): void | Promise<void> => {
    if (this.#closing) return
    const policy = this.#o.policy.resolve(attempt.protocol, attempt.dstPort)
    if (policy.mode === 'ignore') {
      this.#counters.ignored++
      return
    }
    this.#rememberTarget(attempt)
    const key = listenerKey(attempt.family, attempt.protocol, attempt.dstPort)
    const existing = this.#listeners.get(key)
    if (existing !== undefined) {
      this.#touch(existing)
      return
    }
    const pending = this.#binding.get(key)
    if (pending !== undefined) return pending
    const releasing = this.#releasing.get(key)
    if (releasing !== undefined) return releasing.then(() => this.onAttempt(attempt))
    const ownedUntil = this.#owned.get(key)
    if (ownedUntil !== undefined) {
      if (Date.now() < ownedUntil) return
      this.#owned.delete(key)
    }
    const bind = this.#bind(attempt.family, attempt.protocol, attempt.dstPort, key).finally(() => this.#binding.delete(key))
    this.#binding.set(key, bind)
    return bind
  }

  /**
   * A connection the eBPF monitor steered into the sensor's one TCP socket. The kernel gave the accepted socket the
   * address and port the attacker dialled, so that is the attacked port; from here on it is served exactly as on a
   * per-port listener.
   */
  acceptSteered = (socket: Socket): void => {
    const port = socket.localPort
    if (port === undefined || socket.remoteAddress === undefined) {
      socket.destroy()
      return
    }
    // The program leaves ignored and excluded ports to the kernel; one can still arrive while its map is updated.
    if (this.#o.policy.resolve('tcp', port).mode === 'ignore') {
      this.#counters.ignored++
      socket.resetAndDestroy()
      return
    }
    this.#serveTcp(null, socket, port, isIPv4(unmapV4(socket.remoteAddress)) ? 4 : 6)
  }

  /**
   * A datagram the eBPF monitor's catch-all UDP socket read, with its original destination. Its port gets listeners
   * for both families, as an NFQUEUE attempt would (both, so that the monitor can leave the port to them for either
   * family), and the datagram is handed to the one of its family as if it had received it.
   */
  async steeredDatagram(datagram: {
    readonly family: AddressFamily
    readonly srcAddress: string
    readonly srcPort: number
    readonly dstAddress: string
    readonly dstPort: number
    readonly ttl: number | null
    readonly payload: Buffer
  }): Promise<void> {
    const { dstPort } = datagram
    if (this.#closing || this.#o.policy.resolve('udp', dstPort).mode === 'ignore') return
    const base = { protocol: 'udp' as const, srcAddress: datagram.srcAddress, srcPort: datagram.srcPort, dstPort }
    // The datagram's own family last: each attempt records its destination for the session, under the same peer.
    const other = this.onAttempt({ ...base, family: datagram.family === 4 ? 6 : 4, dstAddress: datagram.family === 4 ? '::' : '0.0.0.0', facts: NO_FACTS })
    // The catch-all socket learns the hop count of a datagram, not its IP id or DF bit.
    const facts = datagram.ttl === null ? NO_FACTS : { ...NO_FACTS, ttl: datagram.ttl }
    const own = this.onAttempt({ ...base, family: datagram.family, dstAddress: datagram.dstAddress, facts })
    await Promise.all([other, own])
    const listener = this.#listeners.get(listenerKey(datagram.family, 'udp', dstPort))
    if (listener instanceof UdpListener) listener.deliver(datagram.payload, { address: datagram.srcAddress, port: datagram.srcPort })
  }

  /**
   * Called with the protocol and port of every listener this supervisor closes (idle or evicted), once its socket is
   * released: the eBPF monitor steers a closed UDP port again at once instead of at its next scan. One subscriber.
   */
  onListenerClosed(listener: ((protocol: Protocol, port: number) => void) | null): void {
    this.#listenerClosed = listener
  }

  /**
   * Called on every TCP listener this supervisor binds from now on, once it listens and before its bind settles:
   * the NFQUEUE monitor marks the sockets it lets SYNs reach without the queue. A throw is logged and stops the calls
   * (the port is then served through the queue, as every port is without it). One subscriber.
   */
  prepareListeners(prepare: ((server: Server, family: AddressFamily) => void) | null): void {
    this.#prepareListener = prepare
  }

  /**
   * Called for each connection accepted from one of this supervisor's listeners that the monitor did not see (its SYN
   * skipped the queue): the NFQUEUE monitor reads the attempt, attacked address and header facts, from the SYN the
   * kernel saved for the socket. A throw is logged and stops the calls. One subscriber.
   */
  readUnseenAttempts(read: ((socket: Socket) => ConnectionAttempt | null) | null): void {
    this.#readUnseen = read
  }

  /**
   * Whether SYN facts come separately for connections the monitor did not see (the eBPF monitor's SYN-facts program is
   * attached, for every steered connection): only then does such a session wait for its facts,
   * and its record for them, briefly, when it ends first.
   */
  expectSynFacts(on: boolean): void {
    this.#synFactsExpected = on
  }

  /** True when this supervisor holds a listener for the port in that family (the eBPF monitor's pass decisions). */
  hasListener(family: AddressFamily, protocol: Protocol, port: number): boolean {
    return this.#listeners.has(listenerKey(family, protocol, port))
  }

  stats(): SupervisorStats {
    // Open sessions, including those whose listener was closed meanwhile (they run on to their own end).
    return { listeners: this.#listeners.size, binding: this.#binding.size, releasing: this.#releasing.size, sessions: this.#sessions.size, ...this.#counters }
  }

  /** Closes every listener, ends every session with 'shutdown' and waits until each attack has reached the sink. */
  close(): Promise<void> {
    this.#closed ??= this.#close()
    return this.#closed
  }

  async #close(): Promise<void> {
    // Handshakes still under way on our ports complete first (the listeners keep serving meanwhile); then those the
    // kernel has completed but the event loop has not accepted yet, which would be reset with their listener,
    // unrecorded: two check phases let every one already queued in (see #closeListener), to be ended as 'shutdown'.
    if (this.#listeners.size > 0) {
      const ours = (port: number): boolean => this.#listeners.has(listenerKey(4, 'tcp', port)) || this.#listeners.has(listenerKey(6, 'tcp', port))
      logHandshakeWait(this.#log, await waitForHandshakes(ours, { graceMs: HANDSHAKE_GRACE_MS }))
    }
    await acceptQueued()
    this.#closing = true
    clearInterval(this.#sweepTimer)
    clearInterval(this.#sessionSweepTimer)
    await Promise.allSettled([...this.#binding.values()])
    const drained = this.#sessions.size === 0 ? null : new Promise<void>((resolve) => (this.#drained = resolve))
    for (const session of [...this.#sessions]) session.control?.end('shutdown')
    for (const listener of this.#listeners.values()) listener.close()
    this.#listeners.clear()
    await Promise.allSettled([...this.#releasing.values()])
    if (drained !== null) await drained
    clearTimeout(this.#lateTimer)
    this.#lateTimer = undefined
    for (const key of [...this.#lateFacts.keys()]) this.#recordLate(key)
  }

  #sweepSessions(): void {
    const cutoff = Date.now() - this.#o.maxSessionMs
    for (const session of this.#sessions) if (session.startedAtMs <= cutoff) session.control?.end('max-duration')
  }

  /**
   * Header facts of SYNs the SYN-facts program (tc or XDP) saw: joined to the session they opened, whether it was
   * accepted already or is still to come (then kept with the attempts, bounded the same way).
   */
  synFactsSeen(records: readonly { readonly srcAddress: string; readonly srcPort: number; readonly dstAddress: string; readonly dstPort: number; readonly facts: SynFacts }[]): void {
    for (const record of records) {
      const key = `tcp|${record.srcAddress}|${record.srcPort}|${record.dstPort}`
      const recorder = this.#awaitingFacts.get(key)
      if (recorder !== undefined) {
        recorder.setSynFacts(record.facts)
        this.#awaitingFacts.delete(key)
      } else if (this.#lateFacts.has(key)) {
        this.#lateFacts.get(key)!.recorder.setSynFacts(record.facts)
        this.#recordLate(key)
      } else {
        this.#remember(key, { address: record.dstAddress, facts: record.facts })
      }
    }
  }

  #rememberTarget(attempt: ConnectionAttempt): void {
    this.#remember(`${attempt.protocol}|${attempt.srcAddress}|${attempt.srcPort}|${attempt.dstPort}`, { address: attempt.dstAddress, facts: attempt.facts === NO_FACTS ? null : attempt.facts })
  }

  #remember(key: string, seen: SeenAttempt): void {
    this.#targets.set(key, seen)
    if (this.#targets.size > MAX_TARGETS) {
      // Attempts that never became a session (half-open scans) age out first in, first out.
      const oldest = this.#targets.keys().next()
      if (oldest.done !== true) this.#targets.delete(oldest.value)
    }
  }

  /** The attacked address and the opening packet's facts, as the monitor saw them; null when not seen (or aged out). */
  #takeTarget(protocol: Protocol, srcAddress: string, srcPort: number, dstPort: number): SeenAttempt | null {
    const key = `${protocol}|${srcAddress}|${srcPort}|${dstPort}`
    const seen = this.#targets.get(key)
    if (seen === undefined) return null
    this.#targets.delete(key)
    return seen
  }

  #touch(listener: Listener): void {
    // A listener being released still accepts what was already queued; it must not come back into service.
    if (this.#listeners.get(listener.key) !== listener) return
    listener.lastUsedMs = Date.now()
    this.#listeners.delete(listener.key)
    this.#listeners.set(listener.key, listener)
  }

  async #bind(family: AddressFamily, protocol: Protocol, port: number, key: number): Promise<void> {
    if (!this.#makeRoom()) return
    try {
      const listener =
        protocol === 'tcp'
          ? await TcpListener.open({ family, port, backlog: this.#o.listeners.backlog, onConnection: (l, s) => this.#serveTcp(l, s, l.port, l.family), prepare: this.#prepare })
          : await UdpListener.open({ family, port, sessionIdleMs: this.#o.udpSessionIdleMs, startSession: (l, peer, send, control) => this.#startUdp(l, peer, send, control) })
      if (this.#closing) {
        listener.close()
        return
      }
      this.#listeners.set(key, listener)
      this.#counters.bound++
      this.#log.debug({ family, protocol, port, listeners: this.#listeners.size }, 'listener started')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      // Whatever the reason, don't retry on every retransmitted SYN: a real service (EADDRINUSE) keeps its port.
      this.#owned.set(key, Date.now() + this.#o.listeners.ownedPortRecheckMs)
      if (code === 'EADDRINUSE') {
        this.#counters.ownedByOthers++
        this.#log.debug({ family, protocol, port }, 'port owned by another service')
      } else {
        this.#counters.bindFailures++
        this.#log.warn({ family, protocol, port, err }, 'listener bind failed')
      }
    }
  }

  readonly #prepare = (server: Server, family: AddressFamily): void => {
    const prepare = this.#prepareListener
    if (prepare === null) return
    try {
      prepare(server, family)
    } catch (err) {
      this.#prepareListener = null
      this.#log.warn({ err }, 'preparing listeners failed; their SYNs go through the queue from now on')
    }
  }

  /** Makes room for one more listener, closing the least recently used idle one if the bound is reached. */
  #makeRoom(): boolean {
    const max = this.#o.listeners.maxListeners
    // Called before this bind joins #binding, so the listener about to be made is the "+ 1".
    if (this.#listeners.size + this.#binding.size + 1 <= max) return true
    this.#counters.listenerLimitHits++
    let victim: Listener | undefined
    for (const listener of this.#listeners.values()) {
      if (listener.active === 0) {
        victim = listener
        break
      }
      victim ??= listener // every listener busy: the oldest still goes; its open sessions carry on (TCP)
    }
    this.#warnLimit({ maxListeners: max }, 'listener bound reached, evicting least recently used')
    if (victim === undefined) return false
    this.#closeListener(victim, 'evicted')
    this.#counters.evicted++
    return true
  }

  /**
   * Takes a listener out of service. Its socket is closed after the current poll phase, not now: a handshake the
   * kernel already completed may still wait in its accept queue (the event loop had not reached it yet), and closing at
   * once would reset that connection unrecorded. Until the socket is released, an attempt for the same port waits.
   */
  #closeListener(listener: Listener, reason: 'evicted' | 'idle'): void {
    this.#listeners.delete(listener.key)
    // acceptQueued: whatever the kernel had already queued on the socket is accepted before it closes.
    const released = acceptQueued().then(
      () =>
        new Promise<void>((resolve) => {
          if (listener instanceof UdpListener) listener.close(reason === 'evicted' ? 'evicted' : 'idle-timeout')
          else listener.close()
          // The descriptor is freed in this iteration's close phase: the port can be bound again from the next one.
          setImmediate(() => {
            resolve()
            this.#listenerClosed?.(listener.protocol, listener.port)
          })
        }),
    )
    this.#releasing.set(listener.key, released)
    void released.then(() => this.#releasing.delete(listener.key))
    this.#log.debug({ family: listener.family, protocol: listener.protocol, port: listener.port, reason }, 'listener closed')
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#o.listeners.idleLifetimeMs
    for (const listener of this.#listeners.values()) {
      if (listener.lastUsedMs > cutoff) break // LRU order (only #touch changes lastUsedMs): everything after is newer
      this.#closeListener(listener, 'idle')
      this.#counters.idleClosed++
    }
    // The owned-port cache is bounded by the port space, but expired entries are dropped to keep it small.
    const now = Date.now()
    for (const [key, until] of this.#owned) if (until <= now) this.#owned.delete(key)
  }

  #warnLimit(fields: Record<string, unknown>, message: string): void {
    const now = Date.now()
    if (now - this.#lastLimitWarnMs < WARN_INTERVAL_MS) return
    this.#lastLimitWarnMs = now
    this.#log.warn({ ...fields, refused: this.#o.limiter.refused, evicted: this.#counters.evicted }, message)
  }

  #admit(source: string): boolean {
    const refusal = this.#o.limiter.admit(source)
    if (refusal === null) return true
    this.#warnLimit({ limit: refusal, src: source }, 'connection limit reached, refusing')
    return false
  }

  #record(attack: Attack): void {
    this.#counters.recorded++
    this.#o.sink(attack)
  }

  /** A connection on `port`: from its own listener, or steered (listener null: the eBPF monitor's one socket). */
  #serveTcp(listener: TcpListener | null, socket: Socket, port: number, family: AddressFamily): void {
    // A dual-stack socket (the steered one) names IPv4 peers as ::ffff:a.b.c.d; records keep the plain address.
    const srcAddress = socket.remoteAddress === undefined ? undefined : unmapV4(socket.remoteAddress)
    const srcPort = socket.remotePort
    if (this.#closing || srcAddress === undefined || srcPort === undefined || !this.#admit(srcAddress)) {
      socket.resetAndDestroy()
      return
    }
    if (listener !== null) this.#touch(listener)
    const source: Endpoint = { address: srcAddress, port: srcPort }
    const seen = this.#takeTarget('tcp', srcAddress, srcPort, port) ?? (listener === null ? null : this.#unseenTarget(socket, srcPort, port))
    const dstAddress = seen?.address ?? (socket.localAddress === undefined ? '' : unmapV4(socket.localAddress))
    const target: Endpoint = { address: dstAddress, port }
    const policy = this.#o.policy.resolve('tcp', port)
    const recorder = new AttackRecorder({ protocol: 'tcp', family, mode: policy.mode, source, target, maxAttackBytes: this.#o.maxAttackBytes, maxTranscriptChunks: this.#o.maxTranscriptChunks })
    // Steered by the eBPF monitor: the facts come from the SYN-facts program when it runs, before or after this accept.
    if (seen?.facts != null) recorder.setSynFacts(seen.facts)
    else if (listener === null && this.#synFactsExpected) this.#awaitingFacts.set(`tcp|${srcAddress}|${srcPort}|${port}`, recorder)
    const log = this.#log.isLevelEnabled('debug') ? this.#log.child({ attackId: recorder.id, src: srcAddress, dport: port }) : this.#log
    const conn = new TcpConnection(socket, policy, recorder, log, listener, this.#tcpEnded)
    this.#sessions.add(conn)
    listener?.sessionStarted()
    log.debug({ sport: srcPort }, 'connection accepted')
    try {
      // 'ignore' ports are never bound; a listener bound before its policy said so is served like a normal port.
      this.#o.responders[policy.mode === 'ignore' ? 'normal' : policy.mode].handle(conn)
    } catch (err) {
      // A responder bug, not attacker behaviour: keep the evidence, log the stack, drop the socket.
      log.error({ err }, 'responder failed')
      socket.destroy()
      conn.ended('peer-reset')
    }
  }

  readonly #tcpEnded = (conn: TcpConnection, reason: CloseReason): void => this.#endSession(conn, conn.recorder, reason, conn.listener)

  /** The attacked address and SYN facts of a connection whose SYN skipped the queue, when the monitor can read them. */
  #unseenTarget(socket: Socket, srcPort: number, port: number): SeenAttempt | null {
    const read = this.#readUnseen
    if (read === null) return null
    try {
      const attempt = read(socket)
      // The socket's own SYN, so the ports agree; anything else is not trusted for the record.
      if (attempt === null || attempt.protocol !== 'tcp' || attempt.srcPort !== srcPort || attempt.dstPort !== port) return null
      return { address: attempt.dstAddress, facts: attempt.facts }
    } catch (err) {
      this.#readUnseen = null
      this.#log.warn({ err }, 'reading saved syns failed; connections past the queue are recorded without their facts from now on')
      return null
    }
  }

  #endSession(session: OpenSession, recorder: AttackRecorder, reason: CloseReason, listener: TcpListener | null): void {
    this.#sessions.delete(session)
    listener?.sessionEnded()
    this.#o.limiter.release(recorder.source.address)
    const key = this.#awaitingFacts.size > 0 ? `tcp|${recorder.source.address}|${recorder.source.port}|${recorder.target.port}` : null
    if (key !== null && this.#awaitingFacts.get(key) === recorder) {
      this.#awaitingFacts.delete(key)
      // A session can end (connect, send, close) before its SYN's facts have come through the ring buffer and the
      // addon's thread, which a busy machine schedules late: its record waits for them a moment, with its real end time.
      this.#lateFacts.set(key, { recorder, reason, endedAtMs: Date.now(), dueAt: performance.now() + LATE_FACTS_MS })
      this.#lateTimer ??= setTimeout(() => this.#recordOverdue(), LATE_FACTS_MS)
    } else {
      this.#record(recorder.finish(reason))
    }
    if (this.#log.isLevelEnabled('debug')) this.#log.debug({ attackId: recorder.id, reason, bytesReceived: recorder.bytesReceived }, 'session closed')
    if (this.#sessions.size === 0) this.#drained?.()
  }

  #recordLate(key: string): void {
    const late = this.#lateFacts.get(key)
    if (late === undefined) return
    this.#lateFacts.delete(key)
    this.#record(late.recorder.finish(late.reason, late.endedAtMs))
  }

  /** Writes the late records whose wait is over and sets the timer for the next one: one timer, not one per session. */
  #recordOverdue(): void {
    this.#lateTimer = undefined
    const now = performance.now()
    for (const [key, late] of this.#lateFacts) {
      if (late.dueAt > now) {
        this.#lateTimer = setTimeout(() => this.#recordOverdue(), late.dueAt - now)
        return
      }
      this.#recordLate(key)
    }
  }

  #startUdp(listener: UdpListener, peer: Endpoint, send: (data: Buffer) => void, control: EndableSession): UdpSessionHandle | null {
    if (this.#closing || !this.#admit(peer.address)) return null
    const policy = this.#o.policy.resolve('udp', listener.port)
    const seen = this.#takeTarget('udp', peer.address, peer.port, listener.port)
    const dstAddress = seen?.address ?? (listener.family === 6 ? '::' : '0.0.0.0')
    const target: Endpoint = { address: dstAddress, port: listener.port }
    const recorder = new AttackRecorder({ protocol: 'udp', family: listener.family, mode: policy.mode, source: peer, target, maxAttackBytes: this.#o.maxAttackBytes, maxTranscriptChunks: this.#o.maxTranscriptChunks })
    if (seen?.facts != null) recorder.setSynFacts(seen.facts)
    const session: OpenSession = { startedAtMs: recorder.startedAtMs, control }
    this.#sessions.add(session)
    const log = this.#log.isLevelEnabled('debug') ? this.#log.child({ attackId: recorder.id, src: peer.address, dport: listener.port }) : this.#log
    const datagramSession: DatagramSession = { source: peer, target, policy, recorder, log, send }
    const handler = this.#o.datagramResponders[policy.mode === 'ignore' ? 'normal' : policy.mode].open(datagramSession)
    // A relay keeps relaying past the read limit (it only stops keeping bytes); normal mode ends there, as for TCP.
    const endsAtLimit = policy.mode !== 'mirror' && policy.mode !== 'proxy'
    return {
      datagram: (data: Buffer): CloseReason | null => {
        this.#touch(listener)
        if (recorder.received(data) && endsAtLimit) return 'size-limit'
        handler.datagram(data)
        return null
      },
      finish: (reason: CloseReason): void => {
        handler.close()
        this.#endSession(session, recorder, reason, null)
      },
    }
  }
}
