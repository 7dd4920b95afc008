import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HoneytrapError } from '../core/errors.js'
import { collectChildLines } from './child-lines.js'
import type { NetnsPair } from './netns-pair.js'

// The most recent log lines kept for waitFor and for tests to read.
const MAX_KEPT_LINES = 10_000

/** A log line of the sensor, as parsed JSON. */
export type LogLine = Record<string, unknown> & { readonly msg?: string; readonly level?: number }

/** A sensor process started inside a namespace, with its NDJSON log collected. */
export interface SensorProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly lines: readonly LogLine[] // the most recent ones (up to MAX_KEPT_LINES)
  readonly stderr: () => string
  /** Resolves with the first log line (past or future) matching `predicate`; rejects after `timeoutMs`. */
  waitFor(predicate: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine>
  /** Sends `signal` to the sensor's pid and resolves with its exit code (or the signal that ended it). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>
}

/** Path of a compiled script of this package (the CLI, the attack client), also when called from the sources. */
export function distScript(relative: string): string {
  // src/netns/ and dist/netns/ both sit two levels below the package root.
  return fileURLToPath(new URL(`../../dist/${relative}`, import.meta.url))
}

/**
 * Starts `honeytrap-ts run ARGS` in the sensor namespace and waits until it reports ready on descriptor 3. `ip netns exec` execs the
 * command in place, so the child's pid is the sensor's own: stopping it by pid never touches another process.
 */
export async function startSensorProcess(pair: NetnsPair, args: readonly string[], options: { readonly readyTimeoutMs?: number } = {}): Promise<SensorProcess> {
  const child = pair.spawn(pair.sensorNs, process.execPath, [distScript('cli/cli.js'), 'run', '--ready-fd', '3', ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  })
  const ready = new Promise<boolean>((resolve) => {
    const fd3 = child.stdio[3] as NodeJS.ReadableStream | null
    fd3?.once('data', () => resolve(true))
    fd3?.once('end', () => resolve(false))
  })
  const { pid, lines, stderr, waitFor, stop } = collectChildLines<LogLine>(child, {
    what: 'sensor',
    maxKept: MAX_KEPT_LINES, // at log level info a busy sensor writes a line per attack for as long as it runs
    parse: (text) => {
      try {
        return JSON.parse(text) as LogLine
      } catch {
        return { msg: text }
      }
    },
    stopTimeoutMs: 20_000,
  })
  const sensor: SensorProcess = { child, pid, lines, stderr, waitFor, stop }
  const timeoutMs = options.readyTimeoutMs ?? 30_000
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([ready, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)))])
  clearTimeout(timer)
  if (outcome !== true) {
    await stop('SIGKILL')
    const why = outcome === 'timeout' ? `not ready within ${timeoutMs} ms` : 'exited before it was ready'
    throw new HoneytrapError('HT_ERR_NETNS', `sensor ${why}; stderr: ${stderr().slice(-2000)}`)
  }
  return sensor
}

/** Runs the attack client with `plan` in the attacker namespace (or `options.ns`) and returns its JSON result lines. */
export async function runAttackPlan(pair: NetnsPair, plan: readonly unknown[], options: { readonly ns?: string } = {}): Promise<Record<string, unknown>[]> {
  const out = await pair.exec(options.ns ?? pair.attackerNs, process.execPath, [distScript('netns/attack-client.js'), JSON.stringify(plan)])
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}
