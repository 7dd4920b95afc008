import { connect, type Socket } from 'node:net'
import type { CloseReason, FallbackReason } from '../attack/attack.js'
import { planRelay, type RelayLease, type RelayPlan, type RelayPlanner } from './relay-plan.js'
import type { RelayStats } from './relay-stats.js'
import type { Connection, EndableSession, Responder } from './responder.js'
import { TcpRelay } from './tcp-relay.js'
import type { WarmConnection } from './warm-upstream.js'

export interface RelayResponderOptions {
  readonly planner: RelayPlanner
  readonly fallback: Responder // normal mode: serves the session when the relay cannot
  readonly stats: RelayStats
  readonly connectTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly highWaterMarkBytes: number
}

function connectFailure(err: NodeJS.ErrnoException): FallbackReason {
  return err.code === 'ECONNREFUSED' ? 'connect-refused' : err.code === 'ETIMEDOUT' ? 'connect-timeout' : 'connect-failed'
}

/**
 * One mirror or proxy session: plan, connect to the target (holding what the attacker sends meanwhile), then relay;
 * or, when any step fails, hand the connection to normal mode. The attacker never sees the difference between a
 * relay that fell back and a normal port, and the record says which it was and why.
 */
class RelaySession implements EndableSession {
  readonly #conn: Connection
  readonly #o: RelayResponderOptions
  readonly #early: Buffer[] = []
  #earlyBytes = 0
  #attackerEnded = false
  #lease: RelayLease | null = null
  #upstream: Socket | null = null
  #connectTimer: NodeJS.Timeout | undefined
  #relay: TcpRelay | null = null
  #settled = false // relaying, fallen back, or ended: the connect phase is over

  constructor(conn: Connection, options: RelayResponderOptions) {
    this.#conn = conn
    this.#o = options
  }

  start(): void {
    const { socket } = this.#conn
    this.#conn.register(this)
    this.#o.stats.started(this.#o.planner.mode)
    socket.on('data', this.#onEarlyData)
    socket.on('end', this.#onEarlyEnd)
    socket.on('error', this.#onEarlyError)
    socket.on('close', this.#onEarlyClose)
    planRelay(this.#o.planner, 'tcp', this.#conn, (p) => this.#onPlan(p))
  }

  /** Shutdown or maximum duration: ends the relay, or the connection still waiting for its target. */
  end(reason: CloseReason): void {
    if (this.#relay !== null) return this.#relay.end(reason)
    if (this.#settled) return
    this.#abandon()
    const { socket } = this.#conn
    if (!socket.destroyed) {
      socket.once('finish', () => socket.destroy())
      socket.end()
    }
    this.#conn.ended(reason)
  }

  #onEarlyData = (chunk: Buffer): void => {
    this.#conn.recorder.received(chunk)
    this.#early.push(chunk)
    this.#earlyBytes += chunk.length
    // Held until the target is up; past the high-water mark the attacker waits (TCP flow control) instead.
    if (this.#earlyBytes > this.#o.highWaterMarkBytes) this.#conn.socket.pause()
  }

  #onEarlyEnd = (): void => {
    this.#attackerEnded = true
  }

  #onEarlyError = (): void => this.#endEarly('peer-reset')

  #onEarlyClose = (hadError: boolean): void => this.#endEarly(hadError ? 'peer-reset' : 'peer-closed')

  #endEarly(reason: CloseReason): void {
    if (this.#settled) return
    this.#abandon()
    this.#conn.socket.destroy()
    this.#conn.ended(reason)
  }

  #onPlan(plan: RelayPlan): void {
    if (this.#settled) {
      if (plan.ok) plan.lease.release() // the attacker left while the name was resolving
      return
    }
    if (!plan.ok) return this.#fallBack(plan.reason, plan.label)
    this.#lease = plan.lease
    const warm = plan.lease.takeWarm?.() ?? null
    if (warm !== null) {
      this.#upstream = warm.socket
      return this.#onConnected(plan.lease, warm)
    }
    const { destination } = plan.lease
    const upstream = connect({ host: destination.address, port: destination.port, allowHalfOpen: true, noDelay: true })
    this.#upstream = upstream
    this.#connectTimer = setTimeout(() => this.#fallBack('connect-timeout', plan.lease.label), this.#o.connectTimeoutMs)
    upstream.once('connect', () => this.#onConnected(plan.lease))
    upstream.once('error', (err: NodeJS.ErrnoException) => this.#fallBack(connectFailure(err), plan.lease.label))
  }

  /** `warm`: a connection opened ahead, with what its target sent before this session took it (its banner). */
  #onConnected(lease: RelayLease, warm: WarmConnection | null = null): void {
    if (this.#settled) return
    this.#settled = true
    clearTimeout(this.#connectTimer)
    this.#detachEarly()
    const upstream = this.#upstream!
    upstream.removeAllListeners('error')
    const { recorder, log } = this.#conn
    recorder.setRelay({ target: lease.label, outcome: 'relayed', reason: null })
    this.#o.stats.relayed(this.#o.planner.mode)
    log.debug({ mode: this.#o.planner.mode, relayTarget: lease.label, warm: warm !== null }, 'relay connected')
    const relay = new TcpRelay(
      { attacker: this.#conn.socket, upstream, recorder, idleTimeoutMs: this.#o.idleTimeoutMs, highWaterMarkBytes: this.#o.highWaterMarkBytes, spend: lease.spend },
      (reason) => {
        lease.release()
        if (reason === 'budget-spent') this.#o.stats.budgetCut(this.#o.planner.mode)
        this.#conn.ended(reason)
      },
    )
    this.#relay = relay
    const early = this.#early.splice(0)
    relay.start(early, this.#attackerEnded, warm?.received ?? [])
  }

  #fallBack(reason: FallbackReason, label: string): void {
    if (this.#settled) return
    this.#abandon()
    const { recorder, socket, log } = this.#conn
    recorder.setRelay({ target: label, outcome: 'fallback', reason })
    this.#o.stats.fellBack(this.#o.planner.mode, reason)
    log.debug({ mode: this.#o.planner.mode, relayTarget: label, reason }, 'relay fell back to normal mode')
    const handOver = { dataSeen: this.#earlyBytes > 0, peerEnded: this.#attackerEnded }
    this.#early.length = 0
    if (socket.isPaused()) socket.resume()
    try {
      this.#o.fallback.handle(this.#conn, handOver)
    } catch (err) {
      // A responder bug, not attacker behaviour; this runs from a socket or timer callback, where a throw would end
      // the process.
      log.error({ err }, 'fallback responder failed')
      socket.destroy()
      this.#conn.ended('peer-reset')
    }
  }

  /** Leaves the connect phase: no more early handlers, no target connection, no lease. */
  #abandon(): void {
    this.#settled = true
    clearTimeout(this.#connectTimer)
    this.#detachEarly()
    if (this.#upstream !== null) {
      this.#upstream.removeAllListeners()
      this.#upstream.on('error', () => undefined) // a late error from the abandoned connect must not crash
      this.#upstream.destroy()
      this.#upstream = null
    }
    this.#lease?.release()
    this.#lease = null
  }

  #detachEarly(): void {
    const { socket } = this.#conn
    socket.off('data', this.#onEarlyData)
    socket.off('end', this.#onEarlyEnd)
    socket.off('error', this.#onEarlyError)
    socket.off('close', this.#onEarlyClose)
  }
}

/** Mirror or proxy mode for TCP, depending on the planner. */
export function createRelayResponder(options: RelayResponderOptions): Responder {
  return {
    mode: options.planner.mode,
    handle(conn: Connection): void {
      new RelaySession(conn, options).start()
    },
  }
}
