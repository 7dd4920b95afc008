import type { DatagramHandler, DatagramResponder, DatagramSession } from './responder.js'
import type { TemplateStore } from './templates.js'

export interface NormalDatagramResponderOptions {
  readonly templates: TemplateStore
  /** Bytes sent in a session never exceed this many times the bytes received: no use as an amplifier. */
  readonly maxReplyRatio: number
}

/**
 * Normal mode for UDP: each datagram is answered with the port's template, at once. UDP sources are trivially spoofed,
 * so replies are capped by what the peer sent: a 40-byte probe cannot make the sensor send a kilobyte to a victim.
 */
export function createNormalDatagramResponder(options: NormalDatagramResponderOptions): DatagramResponder {
  const { templates, maxReplyRatio } = options
  const answer = (session: DatagramSession): void => {
    const template = templates.get(session.target.port, 'udp')
    if (template === undefined) return
    const { recorder } = session
    if (recorder.bytesSent + template.length > maxReplyRatio * recorder.bytesReceived) return
    session.send(template)
    recorder.sent(template)
  }
  return {
    mode: 'normal',
    open(session: DatagramSession): DatagramHandler {
      return { datagram: () => answer(session), close: () => undefined }
    },
  }
}
