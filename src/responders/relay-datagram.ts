import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { FallbackReason } from '../attack/attack.js'
import { planRelay, type RelayLease, type RelayPlan, type RelayPlanner } from './relay-plan.js'
import type { RelayStats } from './relay-stats.js'
import type { DatagramHandler, DatagramResponder, DatagramSession } from './responder.js'

export interface RelayDatagramResponderOptions {
  readonly planner: RelayPlanner
  readonly fallback: DatagramResponder // normal mode
  readonly stats: RelayStats
  /** Bytes sent to the peer never exceed this many times what the peer sent, as in normal mode. */
  readonly maxReplyRatio: number
  readonly maxPendingDatagrams?: number // held while a proxy name resolves; later ones are recorded, not forwarded
}

const DEFAULT_MAX_PENDING = 64

/**
 * One mirror or proxy UDP session: a connected socket towards the target per attacker address and port, so each
 * reply is matched to its session by the kernel. An ICMP error for the target before any reply (nothing listens
 * there) turns the session over to normal mode. Replies to the peer are capped by the reply ratio, because the peer's
 * address may be spoofed: a relayed amplifying service (DNS, NTP) must not amplify through the sensor.
 */
class RelayDatagramSession implements DatagramHandler {
  readonly #session: DatagramSession
  readonly #o: RelayDatagramResponderOptions
  #pending: Buffer[] | null = [] // datagrams waiting for the plan; null once it is known
  #lease: RelayLease | null = null
  #upstream: Socket | null = null
  #fallback: DatagramHandler | null = null
  #replied = false
  #lastForwarded: Buffer | null = null
  #closed = false

  constructor(session: DatagramSession, options: RelayDatagramResponderOptions) {
    this.#session = session
    this.#o = options
  }

  start(): void {
    this.#o.stats.started(this.#o.planner.mode)
    planRelay(this.#o.planner, 'udp', this.#session, (p) => this.#onPlan(p))
  }

  datagram(data: Buffer): void {
    if (this.#fallback !== null) return this.#fallback.datagram(data)
    if (this.#pending !== null) {
      if (this.#pending.length < (this.#o.maxPendingDatagrams ?? DEFAULT_MAX_PENDING)) this.#pending.push(data)
      return
    }
    this.#forward(data)
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#fallback?.close()
    this.#upstream?.close()
    this.#upstream = null
    this.#lease?.release()
    this.#lease = null
  }

  #onPlan(plan: RelayPlan): void {
    if (this.#closed) {
      if (plan.ok) plan.lease.release()
      return
    }
    if (!plan.ok) return this.#fallBack(plan.reason, plan.label)
    const { lease } = plan
    this.#lease = lease
    const upstream = createSocket(isIPv6(lease.destination.address) ? 'udp6' : 'udp4')
    this.#upstream = upstream
    upstream.on('message', (reply) => this.#reply(reply))
    // ECONNREFUSED: the target's ICMP port unreachable for an earlier datagram.
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.#replied) this.#fallBack(err.code === 'ECONNREFUSED' ? 'connect-refused' : 'connect-failed', lease.label)
    })
    upstream.connect(lease.destination.port, lease.destination.address, () => {
      if (this.#closed || this.#fallback !== null) return
      const s = this.#session
      s.recorder.setRelay({ target: lease.label, outcome: 'relayed', reason: null })
      this.#o.stats.relayed(this.#o.planner.mode)
      s.log.debug({ mode: this.#o.planner.mode, relayTarget: lease.label }, 'relay connected')
      const pending = this.#pending ?? []
      this.#pending = null
      for (const data of pending) this.#forward(data)
    })
  }

  #forward(data: Buffer): void {
    const upstream = this.#upstream
    if (upstream === null || this.#lease === null) return
    if (this.#lease.spend !== null && this.#lease.spend(data.length, false) < data.length) return this.#budgetSpent()
    upstream.send(data)
    this.#lastForwarded = data
  }

  #reply(reply: Buffer): void {
    if (this.#closed || this.#fallback !== null) return
    const { recorder } = this.#session
    if (recorder.bytesSent + reply.length > this.#o.maxReplyRatio * recorder.bytesReceived) return
    if (this.#lease?.spend != null && this.#lease.spend(reply.length, false) < reply.length) return this.#budgetSpent()
    this.#replied = true
    this.#session.send(reply)
    recorder.sent(reply)
  }

  /** The byte budget is spent: stop relaying; datagrams are still recorded, nothing more is sent. */
  #budgetSpent(): void {
    if (this.#upstream === null) return
    this.#o.stats.budgetCut(this.#o.planner.mode)
    this.#upstream.close()
    this.#upstream = null
    this.#lease?.release()
    this.#lease = null
  }

  #fallBack(reason: FallbackReason, label: string): void {
    if (this.#closed || this.#fallback !== null) return
    const s = this.#session
    this.#upstream?.close()
    this.#upstream = null
    this.#lease?.release()
    this.#lease = null
    s.recorder.setRelay({ target: label, outcome: 'fallback', reason })
    this.#o.stats.fellBack(this.#o.planner.mode, reason)
    s.log.debug({ mode: this.#o.planner.mode, relayTarget: label, reason }, 'relay fell back to normal mode')
    this.#fallback = this.#o.fallback.open(s)
    // Answer what went unanswered: the datagram whose forwarding drew the ICMP error, and any still waiting.
    const pending = this.#pending ?? (this.#lastForwarded === null ? [] : [this.#lastForwarded])
    this.#pending = null
    for (const data of pending) this.#fallback.datagram(data)
  }
}

/** Mirror or proxy mode for UDP, depending on the planner. */
export function createRelayDatagramResponder(options: RelayDatagramResponderOptions): DatagramResponder {
  return {
    mode: options.planner.mode,
    open(session: DatagramSession): DatagramHandler {
      const handler = new RelayDatagramSession(session, options)
      handler.start()
      return handler
    },
  }
}
