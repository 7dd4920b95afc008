import { ConfigError, HoneytrapError } from '../core/errors.js'
import { loadConfig, type ConfigOverrides } from './load-config.js'
import type { ConfigCheckReply } from './load-config-isolated.js'

// Runs loadConfig in a short-lived child process (see load-config-isolated.ts) and writes the result as one JSON
// document on stdout. Usage: node config-check-process.js '<{"path": ..., "overrides": {...}}>'
const { path, overrides } = JSON.parse(process.argv[2] ?? '{}') as { path?: string; overrides?: ConfigOverrides }
let reply: ConfigCheckReply
try {
  reply = { ok: true, config: loadConfig(path, overrides ?? {}) }
} catch (err) {
  if (err instanceof ConfigError) reply = { ok: false, code: err.code, message: err.message, issues: err.issues }
  else if (err instanceof HoneytrapError) reply = { ok: false, code: err.code, message: err.message, issues: [] }
  else reply = { ok: false, code: null, message: err instanceof Error ? (err.stack ?? err.message) : String(err), issues: [] }
}
process.stdout.write(JSON.stringify(reply))
