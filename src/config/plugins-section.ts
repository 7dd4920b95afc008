import { z } from 'zod'
import { BUILTIN_PLUGINS, DEFAULT_PLUGIN_LIST } from '../plugins/builtin-plugins.js'
import { Cidr, PositiveInt } from './common-schemas.js'

/** A plugin's name: a built-in (b64Decode, httpDownload, ...) or the `name` a module in plugins.dir gives itself. */
const PluginName = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, 'a plugin name is 1-64 letters, digits, "_" or "-", starting with a letter')

const PluginEntry = z.strictObject({
  name: PluginName,
  enabled: z.boolean().default(true),
  // The plugin's own options; built-in plugins validate theirs here (docs/plugin-options.md lists them), user plugins at start.
  options: z.record(z.string(), z.unknown()).default({}),
})

/** The `plugins` section: the pipeline's bounds, the rules every downloader shares, and the plugins in order. */
export const PluginsSection = z
  .strictObject({
    enabled: z.boolean().default(true), // false: no pipeline process at all (replay still works offline)
    dataDir: z.string().min(1).nullable().default(null), // quarantine, saved files, logs; null: the database's directory
    dir: z.string().min(1).nullable().default(null), // the user's plugins: *.js / *.mjs ES modules, loaded at start
    timeoutMs: PositiveInt.max(3_600_000).default(60_000), // deadline of one plugin on one subject
    maxDepth: z.number().int().min(0).max(8).default(3), // derived from derived from ...: decoders stop here
    maxSubjectsPerAttack: PositiveInt.max(1_000).default(32), // attack string + derived payloads + samples
    maxSubjectBytes: PositiveInt.max(256 * 1024 * 1024).default(4 * 1024 * 1024), // a larger derived payload is cut
    maxBacklog: PositiveInt.default(100_000), // attacks waiting; past it the oldest are skipped (counted; replay runs them)
    pollIntervalMs: PositiveInt.max(60_000).default(250), // how often the pipeline looks for newly stored attacks
    nice: z.number().int().min(0).max(19).default(19), // priority of the pipeline process (nice): capture always comes first
    // The pipeline pauses while the sensor's event loop is busier than this (0-1, sampled every 250 ms) and resumes
    // when it is calm again: under an attack flood, capture takes the machine and the plugins catch up afterwards.
    pauseAboveLoad: z.number().min(0.05).max(1).default(0.5),
    maxMemoryMb: PositiveInt.min(32).max(65_536).default(512), // heap of the plugin worker; past it the worker is replaced
    downloads: z
      .strictObject({
        maxBytes: PositiveInt.max(1024 * 1024 * 1024).default(16 * 1024 * 1024), // a larger file is abandoned (too-large)
        timeoutMs: PositiveInt.max(600_000).default(30_000), // one download, connect to last byte, redirects included
        maxRedirects: z.number().int().min(0).max(20).default(5),
        allow: z.array(Cidr).default([]), // non-public ranges downloads may reach anyway (a lab's own servers)
        deny: z.array(Cidr).default([]), // public ranges they must not reach
        recentUrlTtlMs: z.number().int().min(0).default(3_600_000), // a URL fetched this recently is not fetched again
        quarantineDir: z.string().min(1).nullable().default(null), // null: <dataDir>/quarantine
      })
      .prefault({}),
    list: z.array(PluginEntry).default(DEFAULT_PLUGIN_LIST.map((name) => ({ name, enabled: true, options: {} }))),
  })
  .prefault({})

/** Refuses duplicate names and built-in options that do not validate, naming the key (plugins.list.N.options.key). */
export function checkPluginList(config: { readonly plugins: z.infer<typeof PluginsSection> }, ctx: z.RefinementCtx): void {
  const seen = new Set<string>()
  config.plugins.list.forEach((entry, i) => {
    if (seen.has(entry.name)) ctx.addIssue({ code: 'custom', path: ['plugins', 'list', i, 'name'], message: `plugin "${entry.name}" is listed twice; list each plugin once` })
    seen.add(entry.name)
    const builtin = BUILTIN_PLUGINS[entry.name]
    if (builtin === undefined) {
      if (config.plugins.dir === null) {
        const known = Object.keys(BUILTIN_PLUGINS).join(', ')
        ctx.addIssue({ code: 'custom', path: ['plugins', 'list', i, 'name'], message: `unknown plugin "${entry.name}"; built-in plugins are ${known} (or set plugins.dir to load your own)` })
      }
      return
    }
    const result = builtin.options.safeParse(entry.options)
    if (!result.success) {
      for (const issue of result.error.issues) {
        const message = issue.code === 'unrecognized_keys' ? `unknown option(s) ${issue.keys.map((k) => `"${k}"`).join(', ')} for ${entry.name}; see docs/plugin-options.md` : issue.message
        ctx.addIssue({ code: 'custom', path: ['plugins', 'list', i, 'options', ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))], message })
      }
    }
  })
}
