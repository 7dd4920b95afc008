import type { CloseReason } from '../attack/attack.js'
import type { Connection, Responder, SessionLimits } from './responder.js'
import type { TemplateStore } from './templates.js'

export interface NormalResponderOptions {
  readonly templates: TemplateStore
  readonly limits: SessionLimits
  readonly silence: { readonly intervalMs: number; readonly maxReplies: number }
}

// Reasons after which we close gracefully (FIN, pending replies flushed); the others reset.
const GRACEFUL: ReadonlySet<CloseReason> = new Set(['peer-closed', 'idle-timeout', 'max-duration', 'replies-done', 'shutdown'])

/**
 * Normal mode: answers from the port's template. With no template the port stays silent and keeps reading, like a
 * service waiting for a request; that is the least fingerprintable default (no filler bytes, no random data).
 */
export function createNormalResponder(options: NormalResponderOptions): Responder {
  const { templates, limits, silence } = options

  function handle(conn: Connection): Promise<CloseReason> {
    const { socket, recorder, policy, target } = conn
    return new Promise<CloseReason>((resolve) => {
      let done = false
      let answered = false
      let replies = 0
      let silenceTimer: NodeJS.Timeout | undefined

      const finish = (reason: CloseReason): void => {
        if (done) return
        done = true
        clearTimeout(maxTimer)
        if (silenceTimer !== undefined) clearTimeout(silenceTimer)
        socket.setTimeout(0)
        if (GRACEFUL.has(reason) && !socket.destroyed) socket.end(() => socket.destroy())
        else if (!socket.destroyed) socket.resetAndDestroy()
        resolve(reason)
      }

      const send = (): void => {
        // Looked up per reply so a template changed while the connection is open is used at once.
        const template = templates.get(target.port, 'tcp')
        if (template === undefined || socket.destroyed || socket.writableEnded) return
        socket.write(template)
        recorder.sent(template.length)
      }

      const armSilence = (): void => {
        if (silenceTimer !== undefined) clearTimeout(silenceTimer)
        silenceTimer = setTimeout(() => {
          send()
          replies++
          if (replies >= silence.maxReplies) finish('replies-done')
          else armSilence()
        }, silence.intervalMs)
      }

      const maxTimer = setTimeout(() => finish('max-duration'), limits.maxDurationMs)
      conn.onShutdown(() => finish('shutdown'))
      // No setNoDelay here: the listeners are created with noDelay, so every accepted socket already has it.
      socket.setTimeout(limits.idleTimeoutMs, () => finish('idle-timeout'))
      socket.on('data', (chunk: Buffer) => {
        if (recorder.received(chunk)) return finish('size-limit')
        if (policy.reply === 'on-data' && !answered) {
          answered = true
          send()
        } else if (policy.reply === 'silence') armSilence()
      })
      socket.on('end', () => finish('peer-closed'))
      socket.on('error', () => finish('peer-reset'))
      socket.on('close', (hadError) => finish(hadError ? 'peer-reset' : 'peer-closed'))

      if (policy.reply === 'banner') send()
      else if (policy.reply === 'silence') armSilence()
    })
  }

  return { mode: 'normal', handle }
}
