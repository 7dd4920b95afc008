import { z } from 'zod'
import type { Plugin, Subject } from '../plugin.js'
import { parseRfbSession } from './rfb-keys.js'

/** Options of the vncDownload decoder. */
export const VncDownloadOptions = z
  .strictObject({
    // Ports whose attack strings are read as RFB; a session on another port is read when it starts with "RFB 0".
    ports: z.array(z.number().int().min(1).max(65_535)).max(256).default([5900, 5901, 5800]),
  })
  .prefault({})

const RFB_PREFIX = Buffer.from('RFB 0', 'latin1')

/**
 * vncDownload: turns what an attacker typed (and pasted) into a VNC session back into text and hands it to the later
 * decoders as payloads, so the downloaders see the URLs and commands a bot typed into a remote desktop.
 * Payload origins: "vncDownload:typed" and "vncDownload:clipboard" (every distinct pasted text, one per line).
 */
export function createVncDownloadPlugin(options: z.infer<typeof VncDownloadOptions>): Plugin {
  const ports = new Set(options.ports)
  return {
    name: 'vncDownload',
    phase: 'decode',
    accepts(subject: Subject): boolean {
      if (subject.kind !== 'attack') return false
      return ports.has(subject.attack.target.port) || subject.data.subarray(0, RFB_PREFIX.length).equals(RFB_PREFIX)
    },
    async process(subject, ctx): Promise<void> {
      const session = parseRfbSession(subject.data)
      if (session.keyEvents === 0 && session.clipboard.length === 0) return
      if (session.typed.length > 0) ctx.addPayload(Buffer.from(session.typed, 'utf8'), 'vncDownload:typed')
      const pasted = [...new Set(session.clipboard)].filter((text) => text.length > 0)
      if (pasted.length > 0) ctx.addPayload(Buffer.from(pasted.join('\n'), 'utf8'), 'vncDownload:clipboard')
      ctx.addArtifact({
        kind: 'note',
        info: {
          typedChars: [...session.typed].length,
          keyEvents: session.keyEvents,
          lines: session.typed.split('\n').filter((line) => line.length > 0).length,
          clipboardTexts: pasted.length,
          version: session.version,
          skippedBytes: session.skippedBytes,
        },
      })
    },
  }
}
