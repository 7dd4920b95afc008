import { z } from 'zod'
import type { Plugin } from '../plugin.js'
import { findUtf16Runs, isMostlyPrintable } from './utf16.js'

/** Options of the deUnicode decoder. */
export const DeUnicodeOptions = z
  .strictObject({
    minChars: z.number().int().min(2).max(65_536).default(8), // code points: shorter UTF-16LE runs are ignored
    printableRatio: z.number().min(0.5).max(1).default(0.9), // share of printable code points a run needs
    maxPayloads: z.number().int().min(1).max(256).default(8), // derived payloads per subject; the longest runs win
  })
  .prefault({})

/**
 * deUnicode: the UTF-16LE text inside a subject (SMB and DCE-RPC paths, share and host names, commands; the strings
 * of Windows shellcode) as UTF-8, one payload per run, so the analysers and downloaders that read text see it.
 * Payload origin: "deUnicode". A subject with more qualifying runs than `maxPayloads` yields its longest ones (in
 * offset order); the same text found twice is yielded once.
 */
export function createDeUnicodePlugin(options: z.infer<typeof DeUnicodeOptions>): Plugin {
  return {
    name: 'deUnicode',
    phase: 'decode',
    async process(subject, ctx): Promise<void> {
      const texts = new Map<string, { readonly offset: number; readonly chars: number }>()
      for (const run of findUtf16Runs(subject.data, { minChars: options.minChars })) {
        if (texts.has(run.text) || !isMostlyPrintable(run.text, options.printableRatio)) continue
        texts.set(run.text, { offset: run.offset, chars: run.chars })
      }
      const kept = [...texts]
        .sort((a, b) => b[1].chars - a[1].chars || a[1].offset - b[1].offset)
        .slice(0, options.maxPayloads)
        .sort((a, b) => a[1].offset - b[1].offset)
      if (texts.size > kept.length) ctx.log.debug({ runs: texts.size, kept: kept.length }, 'utf-16 runs over the payload cap')
      for (const [text] of kept) {
        const data = Buffer.from(text, 'utf8')
        // UTF-8 of UTF-16 text equals its source only for data that is not UTF-16 at all; checked all the same.
        if (data.equals(subject.data)) continue
        ctx.addPayload(data, 'deUnicode')
      }
    },
  }
}
