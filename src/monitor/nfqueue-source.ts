import { createRequire } from 'node:module'
import type { Server, Socket } from 'node:net'
import type { Logger } from 'pino'
import type * as Nfqueue from 'nfqueue'
import type { AddressFamily } from '../attack/attack.js'
import { HoneytrapError } from '../core/errors.js'
import { parsePacket } from './ip-packet.js'
import { loadSocketAddon, markServedSocket, readSavedSyn } from './served-socket.js'
import type { AttemptHandler, ConnectionAttempt, MonitorStats, PacketSource } from './packet-source.js'

/** What the monitor needs of the supervisor to let SYNs to its listeners skip the queue. */
export interface QueueSkipTarget {
  prepareListeners(prepare: ((server: Server, family: AddressFamily) => void) | null): void
  readUnseenAttempts(read: ((socket: Socket) => ConnectionAttempt | null) | null): void
}

export interface NfqueueSourceOptions {
  readonly queue: number // the first queue
  readonly queues: number // queue .. queue + queues - 1, each through its own netlink socket
  readonly bufferBytes: number
  readonly maxHoldMs: number
  /** The mark bits (rules.mark) set on an attempt the sensor serves: the filter table's rule accepts those only. */
  readonly mark: number
  /** Whether the sensor serves the attempt's port now (a listener of its own is bound there), asked at the verdict. */
  readonly serves: (attempt: ConnectionAttempt) => boolean
  /**
   * rules.skipQueueForServedPorts: mark the supervisor's TCP listeners so that SYNs to them skip the queue, and read
   * each such connection's facts from the SYN the kernel saved for it. Null: every SYN goes through the queue.
   */
  readonly skipQueue: QueueSkipTarget | null
  readonly log: Logger
}

type NfqueueModule = typeof Nfqueue

// The only importer of the addon (doctor asks it too). Loaded lazily so commands that never capture (attacks list, export) work on a
// machine where the addon was not built.
export function loadNfqueueAddon(): NfqueueModule {
  const require = createRequire(import.meta.url)
  return require('nfqueue') as NfqueueModule
}

/**
 * Connection attempts from an iptables NFQUEUE rule. Every packet gets a verdict, and it is always ACCEPT: a packet
 * the sensor cannot parse or decide on goes through untouched, and one held for a bind goes through when the bind
 * settles or after `maxHoldMs`, whichever is first. The queue rules live in the mangle table, so ACCEPT there only
 * hands the packet on to the host's filter rules; an attempt on a port the sensor serves also gets the mark that the
 * sensor's filter rule accepts ahead of them (docs/iptables.md). The addon cannot take an exception from its
 * callback, so nothing thrown here may escape.
 */
export class NfqueueSource implements PacketSource {
  readonly name = 'nfqueue'
  readonly #o: NfqueueSourceOptions
  readonly #log: Logger
  #handler: AttemptHandler | null = null
  #accept = 1
  #stats = { packets: 0, attempts: 0, unparsable: 0, verdictErrors: 0, held: 0 }
  #holds = new Set<() => void>()

  constructor(options: NfqueueSourceOptions) {
    this.#o = options
    this.#log = options.log.child({ component: 'monitor', monitor: 'nfqueue', queue: options.queue })
  }

  async start(handler: AttemptHandler): Promise<void> {
    let addon: NfqueueModule
    try {
      addon = loadNfqueueAddon()
    } catch (err) {
      throw new HoneytrapError('HT_ERR_MONITOR_OPEN', 'the nfqueue addon is not built; run `npm ci` (needs libnetfilter-queue-dev, see README)', { cause: err })
    }
    this.#accept = addon.NF_ACCEPT
    // The addon reads one packet per readiness of its socket, so each queue adds one packet per event-loop turn.
    const queues: Nfqueue.NFQueue[] = []
    for (let number = this.#o.queue; number < this.#o.queue + this.#o.queues; number++) {
      const queue = new addon.NFQueue()
      try {
        queue.open(number, this.#o.bufferBytes)
      } catch (err) {
        const hint = process.getuid?.() === 0 ? `is another program bound to queue ${number}? (honeytrap-ts iptables status)` : 'run as root (CAP_NET_ADMIN is needed)'
        throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `cannot open NFQUEUE ${number}: ${(err as Error).message}; ${hint}`, { cause: err })
      }
      queues.push(queue)
    }
    this.#handler = handler
    for (const queue of queues) queue.run((packet) => this.#onPacket(packet))
    const skipping = this.#startQueueSkip()
    this.#log.info({ queues: this.#o.queues, bufferBytes: this.#o.bufferBytes, servedPortsSkipQueue: skipping }, 'monitor started')
  }

  /**
   * SYNs to a port the sensor already serves need no decision, only their header facts, which the kernel saves with
   * each connection (TCP_SAVE_SYN) for the supervisor to read at accept. Without the addon nothing is marked and
   * every SYN keeps coming through the queue, facts and all.
   */
  #startQueueSkip(): boolean {
    const target = this.#o.skipQueue
    if (target === null) return false
    try {
      loadSocketAddon()
    } catch (err) {
      this.#log.warn({ err }, 'cannot mark listeners: every SYN goes through the queue, also to ports already served')
      return false
    }
    target.readUnseenAttempts(attemptFromSavedSyn)
    const mark = this.#o.mark
    target.prepareListeners((server, family) => markServedSocket(server, family, mark))
    return true
  }

  async stop(): Promise<void> {
    this.#handler = null
    for (const release of [...this.#holds]) release()
    this.#o.skipQueue?.prepareListeners(null)
    this.#o.skipQueue?.readUnseenAttempts(null)
  }

  stats(): MonitorStats {
    return { ...this.#stats }
  }

  #onPacket(packet: Nfqueue.NFQueuePacket): void {
    try {
      this.#stats.packets++
      const handler = this.#handler
      const parsed = parsePacket(packet.payload)
      if (!parsed.ok) {
        this.#stats.unparsable++
        if (this.#log.isLevelEnabled('trace')) this.#log.trace({ reason: parsed.reason, len: packet.payload.length }, 'packet not parsed')
        this.#verdict(packet, null)
        return
      }
      this.#stats.attempts++
      const pending = handler === null ? undefined : handler(parsed.attempt)
      if (pending === undefined) {
        this.#verdict(packet, parsed.attempt)
        return
      }
      this.#hold(packet, parsed.attempt, pending)
    } catch (err) {
      this.#log.warn({ err }, 'packet handling failed, accepting')
      this.#verdict(packet, null)
    }
  }

  #hold(packet: Nfqueue.NFQueuePacket, attempt: ConnectionAttempt, pending: Promise<void>): void {
    this.#stats.held++
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      clearTimeout(timer)
      this.#holds.delete(release)
      this.#stats.held--
      this.#verdict(packet, attempt)
    }
    const timer = setTimeout(release, this.#o.maxHoldMs)
    this.#holds.add(release)
    pending.then(release, release)
  }

  #verdict(packet: Nfqueue.NFQueuePacket, attempt: ConnectionAttempt | null): void {
    try {
      // Stopping (handler gone): the sensor serves nothing more, so nothing more skips the host's rules.
      let served = false
      try {
        served = attempt !== null && this.#handler !== null && this.#o.serves(attempt)
      } catch (err) {
        this.#log.warn({ err }, 'serve check failed, leaving the packet to the host rules')
      }
      // The mark replaces the packet's: keep its other bits (policy routing, other tools) and add ours.
      if (served) packet.setVerdict(this.#accept, (packet.info.nfmark | this.#o.mark) >>> 0)
      else packet.setVerdict(this.#accept)
    } catch (err) {
      this.#stats.verdictErrors++
      this.#log.warn({ err }, 'verdict failed')
    }
  }
}

/** The attempt the kernel's saved copy of a connection's SYN describes, parsed like a queued one; null without it. */
export function attemptFromSavedSyn(socket: Socket): ConnectionAttempt | null {
  const syn = readSavedSyn(socket)
  if (syn === null) return null
  const parsed = parsePacket(syn)
  return parsed.ok ? parsed.attempt : null
}
