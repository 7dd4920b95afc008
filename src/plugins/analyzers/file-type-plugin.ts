import { z } from 'zod'
import type { Plugin, PluginContext, Subject } from '../plugin.js'
import { detectFileType } from './file-type.js'

/** Options of the fileType analyser. */
export const FileTypeOptions = z
  .strictObject({
    kinds: z.array(z.enum(['attack', 'decoded', 'sample'])).min(1).max(3).default(['attack', 'decoded', 'sample']), // subjects examined
    scriptScanBytes: z.number().int().min(64).max(1024 * 1024).default(4096), // bytes searched for shell command lines
  })
  .prefault({})

/** Creates the fileType analyser: one `file-type` artifact (matchKey: the type) per subject of a known type. */
export function createFileTypePlugin(options: z.infer<typeof FileTypeOptions>): Plugin {
  return {
    name: 'fileType',
    phase: 'analyze',
    accepts(subject: Subject): boolean {
      return options.kinds.includes(subject.kind)
    },
    async process(subject: Subject, ctx: PluginContext): Promise<void> {
      const found = detectFileType(subject.data, { scriptScanBytes: options.scriptScanBytes })
      // Most attack strings are of no known type (an HTTP request, a login attempt): nothing to record.
      if (found === null) return
      ctx.addArtifact({ kind: 'file-type', matchKey: found.type, info: { type: found.type, description: found.description, details: found.details } })
    },
  }
}
