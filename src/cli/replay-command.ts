import pino from 'pino'
import { loadConfig, parseConfig } from '../config/load-config.js'
import type { Config } from '../config/schema.js'
import { BUILTIN_PLUGINS } from '../plugins/builtin-plugins.js'
import { pipelineSettings } from '../plugins/pipeline-settings.js'
import { replayAttacks, type ReplayProgress } from '../plugins/replay.js'
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
  const bar = process.stderr.isTTY && values.json !== true ? progressBar() : null
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
    ...(bar !== null && { onProgress: bar.update }),
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

/** A one-line progress bar on stderr, redrawn at most ten times a second. */
function progressBar(): { update: (p: ReplayProgress) => void; end: () => void } {
  const started = Date.now()
  let last = 0
  let lastLine = ''
  const draw = (p: ReplayProgress): void => {
    const width = 30
    const ratio = p.total === 0 ? 1 : p.done / p.total
    const filled = Math.round(ratio * width)
    const seconds = (Date.now() - started) / 1000
    const rate = seconds > 0 ? p.done / seconds : 0
    const eta = rate > 0 ? Math.round((p.total - p.done) / rate) : 0
    lastLine = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total} attacks  ${rate.toFixed(1)}/s  eta ${eta}s`
    process.stderr.write(`\r${lastLine}\x1b[K`)
  }
  return {
    update(p) {
      const now = Date.now()
      if (now - last < 100 && p.done !== p.total) return
      last = now
      draw(p)
    },
    end() {
      if (lastLine !== '') process.stderr.write('\n')
    },
  }
}
