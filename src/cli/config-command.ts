import { loadConfig } from '../config/load-config.js'
import { parseFlags, usageError } from './usage.js'

/** `honeytrap-ts config check`: validates a config and prints the effective values (defaults filled in). */
export function runConfigCommand(args: readonly string[]): number {
  const [sub, ...rest] = args
  if (sub !== 'check') {
    throw usageError(`config: unknown subcommand "${sub ?? ''}"; expected "check"`)
  }
  const { values } = parseFlags('config check', rest, { config: { type: 'string' } })
  const config = loadConfig(values.config)
  process.stdout.write(`${JSON.stringify(config, null, 2)}\n`)
  return 0
}
