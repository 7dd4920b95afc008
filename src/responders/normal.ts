import type { Socket } from 'node:net'
import type { CloseReason } from '../attack/attack.js'
import { IdleSweeper, type IdleMember } from './idle-sweeper.js'
import type { Connection, EndableSession, HandOver, Responder } from './responder.js'
import type { TemplateStore } from './templates.js'

export interface NormalResponderOptions {
  readonly templates: TemplateStore
  readonly idleTimeoutMs: number
  readonly silence: { readonly intervalMs: number; readonly maxReplies: number }
}

// Reasons after which we close gracefully (FIN, pending replies flushed); the others reset.
const GRACEFUL: ReadonlySet<CloseReason> = new Set(['peer-closed', 'idle-timeout', 'max-duration', 'replies-done', 'shutdown'])

const kSession = Symbol('normal-session')
type SessionSocket = Socket & { [kSession]?: NormalSession }

/**
 * One connection in normal mode. Its socket handlers are shared module-level functions that find the session on the
 * socket, its timers get the session as an argument, and its idle timeout is the responder's one sweeper: no closure
 * and no timer per connection, which matters when ten thousand idle connections are held open and on the hot path.
 */
class NormalSession implements EndableSession, IdleMember {
  readonly conn: Connection
  readonly options: NormalResponderOptions
  readonly idle: IdleSweeper<NormalSession>
  done = false
  answered = false
  replies = 0
  idleTick = 0
  silenceTimer: NodeJS.Timeout | undefined

  constructor(conn: Connection, options: NormalResponderOptions, idle: IdleSweeper<NormalSession>) {
    this.conn = conn
    this.options = options
    this.idle = idle
  }

  start(handOver: HandOver | undefined): void {
    const socket = this.conn.socket as SessionSocket
    socket[kSession] = this
    // No setNoDelay here: the listeners are created with noDelay, so every accepted socket already has it.
    this.idle.add(this)
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onError)
    socket.on('close', onClose)
    this.conn.register(this)
    const reply = this.conn.policy.reply
    if (reply === 'banner') this.send()
    else if (reply === 'silence') this.armSilence()
    else if (handOver?.dataSeen === true) {
      // Taken over from a relay that could not reach its target: the attacker's first bytes are already in.
      this.answered = true
      this.send()
    }
    // Its FIN came too (and will not be emitted again): a normal port would have answered and closed, as above.
    if (handOver?.peerEnded === true) this.end('peer-closed')
  }

  data(chunk: Buffer): void {
    this.idle.touch(this)
    if (this.conn.recorder.received(chunk)) return this.end('size-limit')
    const reply = this.conn.policy.reply
    if (reply === 'on-data' && !this.answered) {
      this.answered = true
      this.send()
    } else if (reply === 'silence') this.armSilence()
  }

  send(): void {
    const socket = this.conn.socket
    // Looked up per reply so a template changed while the connection is open is used at once.
    const template = this.options.templates.get(this.conn.target.port, 'tcp')
    if (template === undefined || socket.destroyed || socket.writableEnded) return
    socket.write(template)
    this.conn.recorder.sent(template)
    this.idle.touch(this)
  }

  idleExpired(): void {
    this.end('idle-timeout')
  }

  armSilence(): void {
    clearTimeout(this.silenceTimer)
    this.silenceTimer = setTimeout(onSilence, this.options.silence.intervalMs, this)
  }

  /** Ends the session once; later calls (a close racing an error, the sweep racing the peer) do nothing. */
  end(reason: CloseReason): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.silenceTimer)
    this.idle.delete(this)
    const socket = this.conn.socket
    if (!socket.destroyed) {
      if (GRACEFUL.has(reason)) {
        // Flush what was written, send FIN, then let go: an attacker who never closes must not hold the socket.
        socket.once('finish', destroySocket)
        socket.end()
      } else socket.resetAndDestroy()
    }
    this.conn.ended(reason)
  }
}

function sessionOf(socket: Socket): NormalSession | undefined {
  return (socket as SessionSocket)[kSession]
}

function onData(this: Socket, chunk: Buffer): void {
  sessionOf(this)?.data(chunk)
}

function onEnd(this: Socket): void {
  sessionOf(this)?.end('peer-closed')
}

function onError(this: Socket): void {
  sessionOf(this)?.end('peer-reset')
}

function onClose(this: Socket, hadError: boolean): void {
  sessionOf(this)?.end(hadError ? 'peer-reset' : 'peer-closed')
}

function destroySocket(this: Socket): void {
  this.destroy()
}

function onSilence(session: NormalSession): void {
  session.send()
  session.replies++
  if (session.replies >= session.options.silence.maxReplies) session.end('replies-done')
  else session.armSilence()
}

/**
 * Normal mode: answers from the port's template. With no template the port stays silent and keeps reading, like a
 * service waiting for a request; that is the least fingerprintable default (no filler bytes, no random data).
 */
export function createNormalResponder(options: NormalResponderOptions): Responder {
  const idle = new IdleSweeper<NormalSession>(options.idleTimeoutMs)
  return {
    mode: 'normal',
    handle(conn: Connection, handOver?: HandOver): void {
      new NormalSession(conn, options, idle).start(handOver)
    },
  }
}
