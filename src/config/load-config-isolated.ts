import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { deepFreeze } from '../core/deep-freeze.js'
import { ConfigError, HoneytrapError, type ConfigIssue, type ErrorCode } from '../core/errors.js'
import type { ConfigOverrides } from './load-config.js'
import type { Config } from './schema.js'

export type ConfigCheckReply =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly code: ErrorCode | null; readonly message: string; readonly issues: readonly ConfigIssue[] }

/**
 * loadConfig, run in a child process that ends when it is done. The schema library and the YAML parser cost about
 * 15 MB once loaded, and a long-running sensor needs them only at start-up; a worker thread was tried first, but the
 * memory it leaves behind (about 2.5 MB of allocator arenas) still counted against the idle budget. A child costs about
 * 100 ms at start and leaves nothing. Same result and same errors as loadConfig.
 */
export async function loadConfigIsolated(path: string | undefined, overrides: ConfigOverrides = {}): Promise<Config> {
  if (import.meta.url.endsWith('.ts')) {
    // Running from the sources (tests): there is no compiled script to run, and memory does not matter there.
    const { loadConfig } = await import('./load-config.js')
    return loadConfig(path, overrides)
  }
  const script = fileURLToPath(new URL('./config-check-process.js', import.meta.url))
  const { stdout } = await promisify(execFile)(process.execPath, [script, JSON.stringify({ path, overrides })], { maxBuffer: 16 * 1024 * 1024 })
  const reply = JSON.parse(stdout) as ConfigCheckReply
  if (reply.ok) return deepFreeze(reply.config)
  if (reply.code === 'HT_ERR_CONFIG_INVALID') throw new ConfigError(reply.message, reply.issues)
  if (reply.code !== null) throw new HoneytrapError(reply.code, reply.message)
  throw new Error(reply.message)
}
