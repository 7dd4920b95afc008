import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { Plugin } from '../plugin.js'
import { findXorKeys } from './xor.js'

/** Options of the xorDecode decoder. */
export const XorDecodeOptions = z
  .strictObject({
    maxKeyLength: z.number().int().min(1).max(8).default(4), // bytes: repeating keys up to this long are looked for
    maxScanBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024), // bytes searched for cribs
    minBytes: z.number().int().min(4).max(65_536).default(12), // bytes: shorter decoded text is ignored
    printableRatio: z.number().min(0.5).max(1).default(0.9), // share of printable characters decoded text needs
    maxPayloads: z.number().int().min(1).max(256).default(8), // derived payloads per subject
  })
  .prefault({})

/**
 * xorDecode: finds XOR keys (one byte, or repeating keys up to `maxKeyLength`) that turn part of a subject into a
 * known plaintext: a URL, a shell or PowerShell command, a download command, or a Windows PE file. Yields the decoded
 * text around the plaintext, or the decoded PE from its "MZ" to the end of the subject. Payload origin:
 * "xorDecode:key=<hex>", the key as applied from the payload's first byte (for a blob encoded from its start, the
 * key its encoder used). The work is linear in the bytes scanned (see xor.ts), so a large subject costs at most
 * `maxScanBytes` of searching.
 */
export function createXorDecodePlugin(options: z.infer<typeof XorDecodeOptions>): Plugin {
  return {
    name: 'xorDecode',
    phase: 'decode',
    async process(subject, ctx): Promise<void> {
      const findings = findXorKeys(subject.data, {
        maxKeyLength: options.maxKeyLength,
        maxScanBytes: options.maxScanBytes,
        printableRatio: options.printableRatio,
        minBytes: options.minBytes,
        // Repeats are dropped below; a few spare findings keep them from crowding out new ones.
        maxFindings: options.maxPayloads * 2,
      })
      const seen = new Set<string>([subject.sha256])
      let payloads = 0
      for (const finding of findings) {
        if (payloads >= options.maxPayloads) break
        const sha256 = createHash('sha256').update(finding.data).digest('hex')
        if (seen.has(sha256)) continue
        seen.add(sha256)
        payloads++
        ctx.addPayload(finding.data, `xorDecode:key=${finding.key.toString('hex')}`)
      }
    },
  }
}
