import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import pino from 'pino'
import { loadConfig } from '../config/load-config.js'
import { resolveExcludes, ruleOptionsFor } from '../main.js'
import { createNetnsPair, type NetnsPair } from '../netns/netns-pair.js'
import { distScript, startSensorProcess } from '../netns/sensor-process.js'
import type { RuleOptions } from '../rules/iptables-rules.js'
import { installRules } from '../rules/iptables-runner.js'
import { startBenchProcess } from './bench-process.js'

/**
 * One system under test, alone in a fresh pair of namespaces: the plain server (no queue: the generator check), the
 * reference monitor, or honeytrap-ts itself. Fresh namespaces per scenario give every new-port test never-used ports,
 * an empty conntrack table and no TIME_WAIT left over from the previous test.
 */

export type SystemKind = 'plain' | 'reference' | 'honeytrap-ts'

export interface SystemOptions {
  readonly dir: string // scratch directory: databases live here
  readonly configPath: string // the sensor's config; the reference takes its queue and rule options from it too
  readonly scenario: string // names the database file
  readonly logLevel?: 'warn' | 'info' // honeytrap-ts only
  readonly plainPort?: number // plain only
  readonly cpuProfileDir?: string // reference and honeytrap-ts: profile the main thread (cpu-profiler.ts), written here at exit
  readonly subnet?: number // the pair's 198.18.<subnet>.0/24: fixed when the config must name the sensor's address
}

export interface SystemUnderTest {
  readonly kind: SystemKind
  readonly pair: NetnsPair
  readonly pid: number
  readonly dbPath: string | null // honeytrap-ts only
  /** The filter tables of the sensor namespace (iptables -S, then ip6tables -S), as the system sees them. */
  rules(): Promise<string>
  /** Stops the process and deletes both namespaces. */
  stop(): Promise<void>
}

// The client side of the link: enough ephemeral ports for 10,000 held connections next to other traffic, and reuse
// of TIME_WAIT ports for new connections (hot port: the client closes first with honeytrap-ts, so TIME_WAIT is ours).
const ATTACKER_SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.ipv4.ip_local_port_range', '1024 65535'],
  ['net.ipv4.tcp_tw_reuse', '1'],
]

// Every system started and not yet stopped, so that an interrupted run can still stop them (by pid) and remove them.
const active = new Set<SystemUnderTest>()

const rulesLog = pino({ level: 'warn', base: { component: 'bench' } }, pino.destination(2))

/** The rule options `honeytrap-ts run` derives from a config, as main.ts does, so the reference gets the same rules. */
export async function benchRuleOptions(configPath: string): Promise<RuleOptions> {
  const config = loadConfig(configPath)
  return ruleOptionsFor(config, await resolveExcludes(config))
}

/**
 * Calls `start` with the CPU profiler preload in the environment when `dir` is set. startSensorProcess and
 * startBenchProcess spawn before their first await, so the variables reach the system under test and nothing started
 * later (the load generator never sees them).
 */
function withProfilerEnv<T>(dir: string | undefined, start: () => Promise<T>): Promise<T> {
  if (dir === undefined) return start()
  const saved = { NODE_OPTIONS: process.env['NODE_OPTIONS'], HT_BENCH_CPU_PROFILE_DIR: process.env['HT_BENCH_CPU_PROFILE_DIR'] }
  process.env['NODE_OPTIONS'] = `--import=${pathToFileURL(distScript('bench/cpu-profiler.js')).href}`
  process.env['HT_BENCH_CPU_PROFILE_DIR'] = dir
  try {
    return start()
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
}

/** Creates the namespaces, tunes the client side and starts `kind`; on failure nothing is left behind. */
export async function startSystem(kind: SystemKind, options: SystemOptions): Promise<SystemUnderTest> {
  const pair = await createNetnsPair({ label: 'bench', ...(options.subnet !== undefined && { subnet: options.subnet }) })
  try {
    for (const [key, value] of ATTACKER_SYSCTLS) await pair.exec(pair.attackerNs, 'sysctl', ['-qw', `${key}=${value}`])
    let pid: number
    let stopProcess: () => Promise<unknown>
    let dbPath: string | null = null
    if (kind === 'honeytrap-ts') {
      dbPath = join(options.dir, `${options.scenario}.db`)
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${dbPath}${suffix}`, { force: true }) // rows must be this run's
      const args = ['--config', options.configPath, '--db', dbPath, '--log-level', options.logLevel ?? 'warn']
      const sensor = await withProfilerEnv(options.cpuProfileDir, () => startSensorProcess(pair, args))
      pid = sensor.pid
      stopProcess = () => sensor.stop('SIGTERM')
    } else if (kind === 'reference') {
      const config = loadConfig(options.configPath)
      const args = [
        ...['--queue', String(config.monitor.queue), '--queues', String(config.monitor.queues), '--buffer-bytes', String(config.monitor.queueBufferBytes)],
        ...['--max-listeners', String(config.listeners.maxListeners), '--mark', String(config.rules.mark)],
      ]
      const reference = await withProfilerEnv(options.cpuProfileDir, () => startBenchProcess(pair, 'reference-monitor.js', { args }))
      pid = reference.pid
      stopProcess = () => reference.stop('SIGTERM')
      try {
        // Installed after the queue is bound, like the sensor does, so no SYN ever meets an unbound queue. Without the
        // queue skip's -m socket rule: the reference marks no listener, so that rule would only cost it a lookup per SYN.
        const rules = { ...(await benchRuleOptions(options.configPath)), skipQueueForServedPorts: false }
        await installRules(rules, { log: rulesLog, netns: pair.sensorNs })
      } catch (err) {
        await reference.stop('SIGKILL')
        throw err
      }
    } else {
      const plain = await startBenchProcess(pair, 'reference-monitor.js', { args: ['--plain-port', String(options.plainPort ?? 8080)] })
      pid = plain.pid
      stopProcess = () => plain.stop('SIGTERM')
    }
    const system: SystemUnderTest = {
      kind,
      pair,
      pid,
      dbPath,
      async rules(): Promise<string> {
        const listings: string[] = []
        for (const bin of ['iptables', 'ip6tables']) {
          for (const table of ['mangle', 'filter']) {
            listings.push(await pair.exec(pair.sensorNs, bin, ['-w', '10', '-t', table, '-S']).catch(() => `(${bin} -t ${table} unavailable)\n`))
          }
        }
        return listings.join('')
      },
      async stop(): Promise<void> {
        active.delete(system)
        await stopProcess().catch(() => undefined)
        await pair.destroy()
      },
    }
    active.add(system)
    return system
  } catch (err) {
    await pair.destroy()
    throw err
  }
}

/** Stops every system still running (an interrupted or timed-out run). */
export async function stopAllSystems(): Promise<void> {
  for (const system of [...active]) await system.stop()
}
