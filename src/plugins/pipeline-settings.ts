import { dirname, join } from 'node:path'
import type { Config } from '../config/schema.js'

/**
 * What the pipeline process and its worker need to know, as plain JSON (it crosses a process and a thread boundary):
 * the `plugins` section with every path resolved.
 */
export interface PipelineSettings {
  readonly plugins: Config['plugins']
  readonly dbPath: string | null // null only in tests that run the worker without a database
  readonly dataDir: string
  readonly quarantineDir: string
  readonly logLevel: string
}

/** The settings the sensor and `replay` derive from a validated config. */
export function pipelineSettings(config: Config): PipelineSettings {
  const dataDir = config.plugins.dataDir ?? dirname(config.store.path)
  return {
    plugins: config.plugins,
    dbPath: config.store.path,
    dataDir,
    quarantineDir: config.plugins.downloads.quarantineDir ?? join(dataDir, 'quarantine'),
    logLevel: config.log.level,
  }
}
