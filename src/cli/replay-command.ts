import pino from 'pino'
import { loadConfig, parseConfig } from '../config/load-config.js'
import type { Config } from '../config/schema.js'
import { BUILTIN_PLUGINS } from '../plugins/builtin-plugins.js'
import { pipelineSettings } from '../plugins/pipeline-settings.js'
import { replayAttacks, type ReplayProgress } from '../plugins/replay.js'
import { createProgressBar } from './progress-bar.js'
import { durationFlag, intFlag, parseFlags, usageError } from './usage.js'

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/

/**
 * `honeytrap-ts replay`: runs plugins over attacks already stored (all enabled plugins of the config, or those named
 * with --plugin), with a progress bar on a terminal. Writes the database (read-write), safe while the sensor runs.
 */
export async function runReplayCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('replay', args, {
    config: { type: 'string' },
    db: { type: 'string' },
    plugin: { type: 'string', multiple: true },
    since: { type: 'string' },
    until: { type: 'string' },
    port: { type: 'string' },
    protocol: { type: 'string' },
    id: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    'log-level': { type: 'string', default: 'warn' },
  })
  if (values.protocol !== undefined && values.protocol !== 'tcp' && values.protocol !== 'udp') {
    throw usageError(`--protocol "${values.protocol}" is not valid; expected tcp or udp`)
  }
  const sinceAgo = durationFlag('since', values.since)
  const untilAgo = durationFlag('until', values.until)
  const port = intFlag('port', values.port, 1, 65_535)
  for (const id of values.id ?? []) if (!ULID.test(id)) throw usageError(`--id "${id}" is not an attack id (26 characters, as attacks list shows)`)
  const config = withPlugins(loadConfig(values.config, { ...(values.db !== undefined && { dbPath: values.db }), logLevel: values['log-level'] }), values.plugin)

  const log = pino({ level: config.log.level, base: null }, pino.destination(2))
  const abort = new AbortController()
  process.once('SIGINT', () => abort.abort())
  const bar = values.json !== true ? createProgressBar('attacks') : null
  const summary = await replayAttacks({
    settings: pipelineSettings(config),
    filter: {
      ...(sinceAgo !== undefined && { sinceMs: Date.now() - sinceAgo }),
      ...(untilAgo !== undefined && { untilMs: Date.now() - untilAgo }),
      ...(values.protocol !== undefined && { protocol: values.protocol }),
      ...(port !== undefined && { dstPort: port }),
      ...(values.id !== undefined && { ids: values.id }),
    },
    log,
    signal: abort.signal,
    ...(bar !== null && { onProgress: (p: ReplayProgress) => bar.update(p.done, p.total) }),
  })
  bar?.end()
  if (values.json === true) process.stdout.write(`${JSON.stringify(summary)}\n`)
  else {
    process.stdout.write(
      `${summary.interrupted ? 'interrupted after' : 'replayed'} ${summary.attacks} of ${summary.total} attacks: ${summary.runs} plugin runs, ${summary.failed} failed, ${summary.timeouts} timed out, ${summary.crashes} crashed\n`,
    )
  }
  return summary.interrupted ? 130 : 0
}

/** The config with its plugin list narrowed to `names`; a built-in not in the list runs with its default options. */
function withPlugins(config: Config, names: readonly string[] | undefined): Config {
  if (names === undefined || names.length === 0) return config
  const list = names.map((name) => {
    const entry = config.plugins.list.find((e) => e.name === name)
    if (entry !== undefined) return { ...entry, enabled: true }
    if (BUILTIN_PLUGINS[name] === undefined && config.plugins.dir === null) {
      throw usageError(`--plugin "${name}" is not a built-in plugin (${Object.keys(BUILTIN_PLUGINS).join(', ')}) and the config sets no plugins.dir`)
    }
    return { name, enabled: true, options: {} }
  })
  // Validated again as a whole, so a built-in's default options and the list's rules are checked as at start-up.
  return parseConfig({ ...config, plugins: { ...config.plugins, list } }, {}, '--plugin')
}
