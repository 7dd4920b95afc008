import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Logger } from 'pino'
import { HoneytrapError } from '../core/errors.js'
import { BUILTIN_PLUGINS } from './builtin-plugins.js'
import { PLUGIN_PHASES, type Plugin, type PluginEnv, type PluginFactory } from './plugin.js'
import type { PipelineSettings } from './pipeline-settings.js'

/**
 * Creates the enabled plugins in config order: built-ins from the registry, the others from `plugins.dir`, where the
 * plugin `name` is the module `name.mjs` or `name.js` whose default export is a PluginFactory. Any failure is a
 * start-up error naming the plugin and the fix (HT_ERR_PLUGIN_LOAD): a sensor must not run with half its plugins.
 */
export async function loadPlugins(settings: PipelineSettings, log: Logger): Promise<Plugin[]> {
  const env: PluginEnv = { log, dataDir: settings.dataDir }
  const plugins: Plugin[] = []
  for (const entry of settings.plugins.list) {
    if (!entry.enabled) continue
    const pluginEnv: PluginEnv = { log: log.child({ plugin: entry.name }), dataDir: env.dataDir }
    const builtin = BUILTIN_PLUGINS[entry.name]
    let plugin: Plugin
    try {
      plugin = builtin !== undefined ? builtin.create(entry.options, pluginEnv) : await loadUserPlugin(settings, entry.name, entry.options, pluginEnv)
    } catch (err) {
      if (err instanceof HoneytrapError && err.code === 'HT_ERR_PLUGIN_LOAD') throw err
      throw new HoneytrapError('HT_ERR_PLUGIN_LOAD', `plugin ${entry.name} could not be created: ${(err as Error).message}; check plugins.list (its options) in the config`, { cause: err })
    }
    checkShape(plugin, entry.name)
    plugins.push(plugin)
  }
  return plugins
}

async function loadUserPlugin(settings: PipelineSettings, name: string, options: Readonly<Record<string, unknown>>, env: PluginEnv): Promise<Plugin> {
  const dir = settings.plugins.dir
  if (dir === null) throw new HoneytrapError('HT_ERR_PLUGIN_LOAD', `plugin ${name} is not built in and plugins.dir is not set; set plugins.dir to the directory holding ${name}.mjs`)
  const file = ['.mjs', '.js'].map((ext) => join(resolve(dir), `${name}${ext}`)).find((path) => existsSync(path))
  if (file === undefined) throw new HoneytrapError('HT_ERR_PLUGIN_LOAD', `plugin ${name}: neither ${name}.mjs nor ${name}.js is in plugins.dir (${dir}); name the module after the plugin`)
  let module: { default?: unknown }
  try {
    module = (await import(pathToFileURL(file).href)) as { default?: unknown }
  } catch (err) {
    throw new HoneytrapError('HT_ERR_PLUGIN_LOAD', `plugin ${name}: importing ${file} failed: ${(err as Error).message}`, { cause: err })
  }
  if (typeof module.default !== 'function') throw new HoneytrapError('HT_ERR_PLUGIN_LOAD', `plugin ${name}: ${file} has no default export function (export default function createPlugin(options, env) { ... }); see docs/plugins.md`)
  return (module.default as PluginFactory)(options, env)
}

function checkShape(plugin: unknown, name: string): asserts plugin is Plugin {
  const p = plugin as Partial<Plugin> | null
  const problems: string[] = []
  if (p === null || typeof p !== 'object') problems.push('the factory returned no object')
  else {
    if (p.name !== name) problems.push(`its name is ${JSON.stringify(p.name)}, not "${name}" as listed`)
    if (!PLUGIN_PHASES.includes(p.phase as never)) problems.push(`its phase ${JSON.stringify(p.phase)} is not one of ${PLUGIN_PHASES.join(', ')}`)
    if (typeof p.process !== 'function') problems.push('it has no process(subject, ctx) function')
    if (p.accepts !== undefined && typeof p.accepts !== 'function') problems.push('accepts is not a function')
  }
  if (problems.length > 0) throw new HoneytrapError('HT_ERR_PLUGIN_LOAD', `plugin ${name} is not a valid plugin: ${problems.join('; ')}; see docs/plugins.md`)
}
