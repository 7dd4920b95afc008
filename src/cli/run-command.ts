import { closeSync, writeSync } from 'node:fs'
import { loadConfigIsolated } from '../config/load-config-isolated.js'
import { HoneytrapError } from '../core/errors.js'
import { createRootLogger, startSensor } from '../main.js'
import { intFlag, parseFlags } from './usage.js'

/** `honeytrap-ts run`: the sensor in the foreground until SIGINT/SIGTERM. Resolves with the exit code. */
export async function runRunCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('run', args, {
    config: { type: 'string' },
    queue: { type: 'string' },
    monitor: { type: 'string' },
    db: { type: 'string' },
    templates: { type: 'string' },
    'no-rules': { type: 'boolean' },
    'log-level': { type: 'string' },
    'ready-fd': { type: 'string' },
  })
  const readyFd = intFlag('ready-fd', values['ready-fd'], 3, 1_023)
  const queue = intFlag('queue', values.queue, 0, 65_535)
  const config = await loadConfigIsolated(values.config, {
    ...(queue !== undefined && { queue }),
    ...(values.monitor !== undefined && { monitor: values.monitor }),
    ...(values.db !== undefined && { dbPath: values.db }),
    ...(values.templates !== undefined && { templatesDir: values.templates }),
    ...(values['no-rules'] === true && { manageRules: false }),
    ...(values['log-level'] !== undefined && { logLevel: values['log-level'] }),
  })
  if (process.getuid?.() !== 0) {
    throw new HoneytrapError('HT_ERR_NOT_ROOT', 'run needs root: NFQUEUE and iptables need CAP_NET_ADMIN (try: sudo honeytrap-ts run)')
  }
  const log = createRootLogger(config.log.level)
  const sensor = await startSensor(config, log)
  if (readyFd !== undefined) {
    // Readiness for supervisors and tests (s6-style): one line on the descriptor, whatever the log level.
    writeSync(readyFd, 'ready\n')
    closeSync(readyFd)
  }

  return new Promise<number>(() => {
    let signals = 0
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++
      if (signals > 1) {
        // A second Ctrl-C means "now": skip the drain. The capture rules have --queue-bypass, so traffic still flows.
        log.warn({ signal }, 'second signal, exiting without draining')
        process.exit(130)
      }
      log.info({ signal }, 'stopping (send the signal again to exit at once)')
      // The nfqueue addon cannot be closed and its poll handle keeps the event loop alive, so once everything is
      // stored the process exits explicitly (logs are written synchronously, nothing is left in a buffer).
      sensor.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'stop failed')
          process.exit(1)
        },
      )
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    process.on('SIGHUP', () => {
      log.info('SIGHUP: reloading templates')
      void sensor.templates.reload()
    })
  })
}
