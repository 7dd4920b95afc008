import type { ChildProcess } from 'node:child_process'
import { HoneytrapError } from '../core/errors.js'
import type { NetnsPair } from '../netns/netns-pair.js'
import { distScript } from '../netns/sensor-process.js'

/**
 * Starts one of the benchmark's own scripts (the reference monitor, the plain server) in the sensor namespace and
 * waits for its readiness line on descriptor 3: the same protocol as `honeytrap-ts run --ready-fd 3`, which
 * netns/sensor-process.ts implements for the CLI only.
 */

/** A benchmark script running in a namespace. `pid` is the script's own: `ip netns exec` execs in place. */
export interface BenchProcess {
  readonly pid: number
  readonly child: ChildProcess
  stderr(): string
  /** Sends `signal` to the pid (SIGKILL after `timeoutMs`) and resolves with the exit code or signal. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>
}

/** Spawns `node dist/bench/<script> ...args` in `ns` and resolves once it has written to descriptor 3. */
export async function startBenchProcess(pair: NetnsPair, script: string, options: { readonly args: readonly string[]; readonly readyTimeoutMs?: number }): Promise<BenchProcess> {
  const child = pair.spawn(pair.sensorNs, process.execPath, [distScript(`bench/${script}`), ...options.args], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] })
  const pid = child.pid
  if (pid === undefined) throw new HoneytrapError('HT_ERR_NETNS', `could not start ${script}`)
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-8_000)))
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | string> => {
    const alive = (): boolean => child.exitCode === null && child.signalCode === null
    if (alive()) process.kill(pid, signal)
    const timer = setTimeout(() => alive() && process.kill(pid, 'SIGKILL'), timeoutMs)
    const code = await exited
    clearTimeout(timer)
    return code
  }

  const fd3 = child.stdio[3] as NodeJS.ReadableStream | null
  const ready = new Promise<'ready' | 'exited'>((resolve) => {
    fd3?.once('data', () => resolve('ready'))
    fd3?.once('end', () => resolve('exited'))
    void exited.then(() => resolve('exited'))
  })
  let timer: NodeJS.Timeout | undefined
  const timeoutMs = options.readyTimeoutMs ?? 15_000
  const outcome = await Promise.race([ready, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)))])
  clearTimeout(timer)
  if (outcome !== 'ready') {
    await stop('SIGKILL')
    throw new HoneytrapError('HT_ERR_NETNS', `${script} ${outcome === 'timeout' ? `not ready within ${timeoutMs} ms` : 'exited before it was ready'}; stderr: ${stderr}`)
  }
  return { pid, child, stderr: () => stderr, stop }
}
