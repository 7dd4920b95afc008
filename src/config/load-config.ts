import { readFileSync } from 'node:fs'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import type { z } from 'zod'
import { deepFreeze } from '../core/deep-freeze.js'
import { ConfigError, HoneytrapError, type ConfigIssue } from '../core/errors.js'
import { ConfigSchema, type Config } from './schema.js'

/** Values given on the command line; they override the file. */
export interface ConfigOverrides {
  readonly queue?: number
  readonly monitor?: string
  readonly dbPath?: string
  readonly templatesDir?: string
  readonly manageRules?: boolean
  readonly logLevel?: string
}

function describeIssue(issue: z.core.$ZodIssue): ConfigIssue {
  const path = issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.')
  let message = issue.message
  if (issue.code === 'unrecognized_keys') message = `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}; check the spelling against honeytrap.example.yaml`
  // A bad name in a map (proxy.targets): say what a name may be rather than zod's "Invalid key in record".
  if (issue.code === 'invalid_key') message = `invalid name: ${issue.issues.map((i) => i.message).join('; ')}`
  return { path, message }
}

function applyOverrides(raw: unknown, overrides: ConfigOverrides): unknown {
  const base = (raw ?? {}) as Record<string, Record<string, unknown> | undefined>
  const merged: Record<string, unknown> = {}
  // A section whose keys are all commented out reads as null in YAML: it means "the defaults", like no section.
  for (const [key, value] of Object.entries(base)) if (value !== null) merged[key] = value
  const section = (name: string): Record<string, unknown> => {
    const current = base[name]
    if (current !== undefined && current !== null && (typeof current !== 'object' || Array.isArray(current))) return {} // left for the schema to refuse
    const copy = typeof current === 'object' && current !== null && !Array.isArray(current) ? { ...current } : {}
    merged[name] = copy
    return copy
  }
  if (overrides.queue !== undefined) section('monitor')['queue'] = overrides.queue
  if (overrides.monitor !== undefined) section('monitor')['type'] = overrides.monitor
  if (overrides.dbPath !== undefined) section('store')['path'] = overrides.dbPath
  if (overrides.templatesDir !== undefined) section('responder')['templatesDir'] = overrides.templatesDir
  if (overrides.manageRules !== undefined) section('rules')['manage'] = overrides.manageRules
  if (overrides.logLevel !== undefined) section('log')['level'] = overrides.logLevel
  return merged
}

/** Validates a parsed config object (plus overrides) and returns it deep-frozen; throws ConfigError naming every bad key. */
export function parseConfig(raw: unknown, overrides: ConfigOverrides = {}, source = 'config'): Config {
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw new ConfigError(`${source}: the top level must be a mapping of sections (monitor:, rules:, ...)`, [
      { path: '(top level)', message: 'expected a mapping' },
    ])
  }
  const result = ConfigSchema.safeParse(applyOverrides(raw, overrides))
  if (!result.success) {
    const issues = result.error.issues.map(describeIssue)
    const lines = issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')
    throw new ConfigError(`${source} is invalid:\n${lines}`, issues)
  }
  return deepFreeze(result.data)
}

/** Reads and validates the YAML config at `path` (or only the defaults and overrides when `path` is undefined). */
export function loadConfig(path: string | undefined, overrides: ConfigOverrides = {}): Config {
  if (path === undefined) return parseConfig({}, overrides, 'built-in defaults')
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new HoneytrapError('HT_ERR_CONFIG_READ', `cannot read config file ${path}: ${(err as Error).message}`, { cause: err })
  }
  let raw: unknown
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true, maxAliasCount: 100 })
  } catch (err) {
    const detail = err instanceof YAMLParseError ? err.message : String(err)
    throw new HoneytrapError('HT_ERR_CONFIG_READ', `config file ${path} is not valid YAML: ${detail}`, { cause: err })
  }
  return parseConfig(raw, overrides, path)
}
