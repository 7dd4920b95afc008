import type { Socket } from 'node:net'
import type { AttackRecorder } from '../attack/attack-recorder.js'
import type { CloseReason } from '../attack/attack.js'
import type { EndableSession } from './responder.js'

export interface TcpRelayOptions {
  readonly attacker: Socket // allowHalfOpen: a FIN from one side is passed on, not answered by ending both
  readonly upstream: Socket // connected, allowHalfOpen
  readonly recorder: AttackRecorder
  readonly idleTimeoutMs: number
  readonly highWaterMarkBytes: number // bytes queued towards one side before the other side is paused
  readonly spend: ((bytes: number) => boolean) | null // mirror's byte budget; false cuts the relay ('budget-spent')
  /** How long a graceful end waits for queued bytes to drain before both sockets are destroyed. */
  readonly lingerMs?: number
}

const DEFAULT_LINGER_MS = 2_000

/**
 * Relays bytes both ways between the attacker and the target, recording both directions, until both sides are closed.
 * Faithful to what each side does: a FIN is passed on as a FIN (the other direction keeps flowing), a reset as a reset,
 * and a slow reader slows its counterpart (pause at the high-water mark, resume on drain) instead of growing a buffer.
 */
export class TcpRelay implements EndableSession {
  readonly #o: TcpRelayOptions
  readonly #resolve: (reason: CloseReason) => void
  #reason: CloseReason | null = null
  #firstFin: 'attacker' | 'target' | null = null
  #open = 2 // sockets not yet closed
  #linger: NodeJS.Timeout | undefined

  constructor(options: TcpRelayOptions, resolve: (reason: CloseReason) => void) {
    this.#o = options
    this.#resolve = resolve
  }

  /** Starts relaying; `early` are attacker bytes that arrived (and were recorded) while the target was connecting. */
  start(early: readonly Buffer[], attackerEnded: boolean): void {
    const { attacker, upstream, recorder, highWaterMarkBytes } = this.#o
    attacker.setTimeout(this.#o.idleTimeoutMs)
    attacker.on('timeout', () => this.end('idle-timeout'))

    for (const chunk of early) if (!this.#forward(chunk, upstream)) return
    if (attacker.isPaused()) attacker.resume()
    attacker.on('data', (chunk: Buffer) => {
      recorder.received(chunk)
      if (this.#forward(chunk, upstream) && upstream.writableLength > highWaterMarkBytes) attacker.pause()
    })
    upstream.on('drain', () => attacker.resume())
    upstream.on('data', (chunk: Buffer) => {
      if (!this.#forward(chunk, attacker)) return
      recorder.sent(chunk)
      if (attacker.writableLength > highWaterMarkBytes) upstream.pause()
    })
    attacker.on('drain', () => upstream.resume())

    const onFin = (from: 'attacker' | 'target', to: Socket) => (): void => {
      this.#firstFin ??= from
      if (!to.destroyed) to.end()
    }
    if (attackerEnded) onFin('attacker', upstream)()
    else attacker.on('end', onFin('attacker', upstream))
    upstream.on('end', onFin('target', attacker))

    // A reset (or any socket error) on one side is passed on as a reset on the other.
    attacker.on('error', () => this.#reset('peer-reset', upstream))
    upstream.on('error', () => this.#reset('target-reset', attacker))
    const onClose = (): void => {
      if (--this.#open > 0) return
      clearTimeout(this.#linger)
      this.#resolve(this.#reason ?? (this.#firstFin === 'target' ? 'target-closed' : 'peer-closed'))
    }
    attacker.on('close', onClose)
    upstream.on('close', onClose)
  }

  /** Ends both sides gracefully (FIN after what is queued), then destroys them after the linger time at most. */
  end(reason: CloseReason): void {
    if (this.#reason !== null) return
    this.#reason = reason
    const { attacker, upstream } = this.#o
    attacker.setTimeout(0)
    for (const socket of [attacker, upstream]) {
      if (socket.destroyed) continue
      socket.end()
      socket.resume() // read and drop what the peer still sends, so its FIN can arrive
    }
    // A peer that never reads would hold its socket's queue (and the session) for ever.
    this.#linger = setTimeout(() => {
      attacker.destroy()
      upstream.destroy()
    }, this.#o.lingerMs ?? DEFAULT_LINGER_MS)
  }

  /** Writes `chunk` towards `to`, spending the byte budget first; false when the relay was cut instead. */
  #forward(chunk: Buffer, to: Socket): boolean {
    if (this.#reason !== null || to.destroyed) return false
    if (this.#o.spend !== null && !this.#o.spend(chunk.length)) {
      this.end('budget-spent')
      return false
    }
    to.write(chunk)
    return true
  }

  #reset(reason: CloseReason, other: Socket): void {
    this.#reason ??= reason
    if (!other.destroyed) other.resetAndDestroy()
  }
}
