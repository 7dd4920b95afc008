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
  /** Mirror's byte budget: how many of `bytes` may be sent (all of them, or fewer once it runs out); null: no budget. */
  readonly spend: ((bytes: number, partial: boolean) => number) | null
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

  /**
   * Starts relaying; `early` are attacker bytes that arrived (and were recorded) while the target was connecting,
   * `targetEarly` what a warm connection's target sent before the session took it (recorded here, as it is sent).
   */
  start(early: readonly Buffer[], attackerEnded: boolean, targetEarly: readonly Buffer[] = []): void {
    const { attacker, upstream, recorder, highWaterMarkBytes } = this.#o
    // Every handler is in place before the first byte is forwarded: a cut on the held bytes must still end the session.
    attacker.setTimeout(this.#o.idleTimeoutMs)
    attacker.on('timeout', () => this.end('idle-timeout'))
    attacker.on('data', (chunk: Buffer) => {
      recorder.received(chunk)
      if (this.#forward(chunk, upstream) && upstream.writableLength > highWaterMarkBytes) attacker.pause()
    })
    upstream.on('drain', () => attacker.resume())
    upstream.on('data', (chunk: Buffer) => {
      this.#toAttacker(chunk)
    })
    attacker.on('drain', () => upstream.resume())

    const onFin = (from: 'attacker' | 'target', to: Socket) => (): void => {
      this.#firstFin ??= from
      if (!to.destroyed && this.#reason === null) to.end()
    }
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

    for (const chunk of targetEarly) if (!this.#toAttacker(chunk)) break
    for (const chunk of early) if (this.#forward(chunk, upstream) < chunk.length) break
    if (attackerEnded) onFin('attacker', upstream)()
    else attacker.on('end', onFin('attacker', upstream))
    if (attacker.isPaused()) attacker.resume()
    if (upstream.isPaused() && attacker.writableLength <= highWaterMarkBytes) upstream.resume()
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

  /**
   * Writes `chunk` towards `to`, spending the byte budget first; returns the bytes written. When the budget covers
   * only part of the chunk, that part is written and the relay is cut: never a byte past the budget.
   */
  #forward(chunk: Buffer, to: Socket): number {
    if (this.#reason !== null || to.destroyed) return 0
    const allowed = this.#o.spend === null ? chunk.length : this.#o.spend(chunk.length, true)
    if (allowed > 0) to.write(allowed === chunk.length ? chunk : chunk.subarray(0, allowed))
    if (allowed < chunk.length) this.end('budget-spent')
    return allowed
  }

  /** Forwards and records a chunk from the target; false when not all of it could go (budget spent, relay ending). */
  #toAttacker(chunk: Buffer): boolean {
    const { attacker, upstream, recorder, highWaterMarkBytes } = this.#o
    const sent = this.#forward(chunk, attacker)
    if (sent === 0) return false
    recorder.sent(sent === chunk.length ? chunk : chunk.subarray(0, sent))
    if (attacker.writableLength > highWaterMarkBytes) upstream.pause()
    return sent === chunk.length
  }

  #reset(reason: CloseReason, other: Socket): void {
    this.#reason ??= reason
    if (!other.destroyed) other.resetAndDestroy()
  }
}
