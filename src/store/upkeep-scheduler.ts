import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import cron from 'node-cron'
import type { Logger } from 'pino'

export interface UpkeepOptions {
  readonly schedule: string // cron expression (validated with the config)
  readonly olderThan: string // "90d", "36h"
  readonly vacuum: boolean
  readonly dbPath: string
  readonly quarantineDir: string
  readonly log: Logger
}

/** The scheduled upkeep of a running sensor. */
export interface Upkeep {
  /** Stops the schedule; a run in progress finishes in its own process (each transaction of it is complete). */
  stop(): void
}

// The upkeep runs `honeytrap-ts db ...` as a child at this priority: its deletes and file removals must not take CPU
// from capture, and the sensor's event loop must never wait on them.
const NICE = 10
const MAX_OUTPUT_CHARS = 64 * 1024

/** The compiled CLI (tests run from src/ and use the build in dist/, as `npm test` makes it first). */
function cliScript(): string {
  const url = import.meta.url.endsWith('.ts') ? new URL('../../dist/cli/cli.js', import.meta.url) : new URL('../cli/cli.js', import.meta.url)
  return fileURLToPath(url)
}

/** Runs one `honeytrap-ts db ...` command; resolves with its exit code and what it printed (cut at 64 KiB). */
function runDbCommand(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('nice', ['-n', String(NICE), process.execPath, cliScript(), 'db', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT_CHARS) stdout += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT_CHARS) stderr += chunk.toString()
    })
    child.on('error', (err) => resolve({ code: null, stdout, stderr: `${stderr}${err.message}` }))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text.slice(0, 1_000)
  }
}

/**
 * Runs `db retention` (then `db vacuum` when asked) on `schedule`, one run at a time: a run still going when the next
 * is due makes that one skip (logged). The result of each command is logged at info, a failure at warn; nothing here
 * ever throws into the sensor.
 */
export function startUpkeep(options: UpkeepOptions): Upkeep {
  const log = options.log.child({ component: 'upkeep' })
  let running = false
  const task = cron.schedule(
    options.schedule,
    async () => {
      if (running) {
        log.warn({ schedule: options.schedule }, 'upkeep still running, this run skipped')
        return
      }
      running = true
      try {
        const retention = await runDbCommand(['retention', '--older-than', options.olderThan, '--db', options.dbPath, '--quarantine', options.quarantineDir, '--json'])
        if (retention.code !== 0) {
          log.warn({ code: retention.code, stderr: retention.stderr.trim().slice(-2_000) }, 'upkeep retention failed')
          return
        }
        log.info({ olderThan: options.olderThan, result: parseJson(retention.stdout) }, 'upkeep retention done')
        if (!options.vacuum) return
        const vacuum = await runDbCommand(['vacuum', '--db', options.dbPath, '--json'])
        if (vacuum.code !== 0) log.warn({ code: vacuum.code, stderr: vacuum.stderr.trim().slice(-2_000) }, 'upkeep vacuum failed')
        else log.info({ result: parseJson(vacuum.stdout) }, 'upkeep vacuum done')
      } finally {
        running = false
      }
    },
    {
      name: 'honeytrap-upkeep',
      // node-cron's own messages (a missed run after the machine slept, ...) go to our log, not to the console.
      logger: {
        info: (message) => log.debug({ cron: message }, 'cron'),
        warn: (message) => log.warn({ cron: message }, 'cron'),
        error: (message, err) => log.warn({ cron: String(message), err }, 'cron'),
        debug: (message) => log.debug({ cron: String(message) }, 'cron'),
      },
    },
  )
  log.info({ schedule: options.schedule, olderThan: options.olderThan, vacuum: options.vacuum }, 'upkeep scheduled')
  return {
    stop() {
      void task.stop()
    },
  }
}
