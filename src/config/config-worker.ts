import { parentPort, workerData } from 'node:worker_threads'
import { ConfigError, HoneytrapError } from '../core/errors.js'
import { loadConfig, type ConfigOverrides } from './load-config.js'
import type { ConfigWorkerReply } from './load-config-isolated.js'

// Runs loadConfig in a short-lived thread (see load-config-isolated.ts) and posts the result as plain data.
const { path, overrides } = workerData as { path: string | undefined; overrides: ConfigOverrides }
let reply: ConfigWorkerReply
try {
  reply = { ok: true, config: loadConfig(path, overrides) }
} catch (err) {
  if (err instanceof ConfigError) reply = { ok: false, code: err.code, message: err.message, issues: err.issues }
  else if (err instanceof HoneytrapError) reply = { ok: false, code: err.code, message: err.message, issues: [] }
  else reply = { ok: false, code: null, message: err instanceof Error ? (err.stack ?? err.message) : String(err), issues: [] }
}
parentPort?.postMessage(reply)
