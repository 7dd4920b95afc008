import { Worker } from 'node:worker_threads'
import { deepFreeze } from '../core/deep-freeze.js'
import { ConfigError, HoneytrapError, type ConfigIssue, type ErrorCode } from '../core/errors.js'
import type { ConfigOverrides } from './load-config.js'
import type { Config } from './schema.js'

export type ConfigWorkerReply =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly code: ErrorCode | null; readonly message: string; readonly issues: readonly ConfigIssue[] }

/**
 * loadConfig, run in a thread that ends when it is done. The schema library and the YAML parser cost about 15 MB of
 * heap once loaded, and a long-running sensor needs them only at start-up: loaded in a thread, they go away with it,
 * which keeps the idle sensor within its memory budget. Same result and same errors as loadConfig.
 */
export async function loadConfigIsolated(path: string | undefined, overrides: ConfigOverrides = {}): Promise<Config> {
  if (import.meta.url.endsWith('.ts')) {
    // Running from the sources (tests): a worker thread cannot load .ts, and memory does not matter there.
    const { loadConfig } = await import('./load-config.js')
    return loadConfig(path, overrides)
  }
  const worker = new Worker(new URL('./config-worker.js', import.meta.url), { workerData: { path, overrides } })
  const reply = await new Promise<ConfigWorkerReply>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`config worker exited with code ${code} without an answer`)))
  })
  await worker.terminate()
  if (reply.ok) return deepFreeze(reply.config)
  if (reply.code === 'HT_ERR_CONFIG_INVALID') throw new ConfigError(reply.message, reply.issues)
  if (reply.code !== null) throw new HoneytrapError(reply.code, reply.message)
  throw new Error(reply.message)
}
