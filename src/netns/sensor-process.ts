import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { HoneytrapError } from '../core/errors.js'
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
  const lines: LogLine[] = []
  const waiters = new Set<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>()
  let stderr = ''
  let buffered = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      let line: LogLine
      try {
        line = JSON.parse(text) as LogLine
      } catch {
        line = { msg: text }
      }
      lines.push(line)
      // Bounded: at log level info a busy sensor writes a line per attack for as long as it runs.
      if (lines.length > MAX_KEPT_LINES) lines.splice(0, lines.length - MAX_KEPT_LINES / 2)
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.delete(w)
          w.resolve(line)
        }
      }
    }
  })
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))

  const waitFor = (predicate: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> => {
    const found = lines.find(predicate)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (l: LogLine) => {
          clearTimeout(timer)
          resolve(l)
        },
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new HoneytrapError('HT_ERR_NETNS', `sensor log line not seen within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`))
      }, timeoutMs)
      waiters.add(waiter)
      void exited.then(() => {
        if (!waiters.has(waiter)) return
        waiters.delete(waiter)
        clearTimeout(timer)
        reject(new HoneytrapError('HT_ERR_NETNS', `sensor exited before the awaited log line; stderr: ${stderr.slice(-2000)}`))
      })
    })
  }

  const pid = child.pid
  if (pid === undefined) throw new HoneytrapError('HT_ERR_NETNS', 'could not start the sensor process')
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | string> => {
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, signal)
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL')
    }, timeoutMs)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  const sensor: SensorProcess = { child, pid, lines, stderr: () => stderr, waitFor, stop }
  const timeoutMs = options.readyTimeoutMs ?? 30_000
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([ready, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)))])
  clearTimeout(timer)
  if (outcome !== true) {
    await stop('SIGKILL')
    const why = outcome === 'timeout' ? `not ready within ${timeoutMs} ms` : 'exited before it was ready'
    throw new HoneytrapError('HT_ERR_NETNS', `sensor ${why}; stderr: ${stderr.slice(-2000)}`)
  }
  return sensor
}

/** Runs the attack client in the attacker namespace with `plan` and returns its JSON result lines. */
export async function runAttackPlan(pair: NetnsPair, plan: readonly unknown[]): Promise<Record<string, unknown>[]> {
  const out = await pair.exec(pair.attackerNs, process.execPath, [distScript('netns/attack-client.js'), JSON.stringify(plan)])
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}
