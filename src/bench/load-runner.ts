import { HoneytrapError } from '../core/errors.js'
import type { NetnsPair } from '../netns/netns-pair.js'
import { distScript } from '../netns/sensor-process.js'
import type { HoldSpec, LoadResult, LoadSpec } from './load-gen.js'

/**
 * Runs the load generator in the attacker namespace of a pair, as one process or as several that share the work
 * (concurrency, rate and ports split between them, results merged), and drives the interactive `hold` mode.
 */

type HostlessSpec<S extends LoadSpec = LoadSpec> = S extends LoadSpec ? Omit<S, 'host'> : never

/** Splits one spec into `procs` specs for parallel processes; ports interleave so no port is used twice. */
export function splitSpec(spec: LoadSpec, procs: number): LoadSpec[] {
  if (procs <= 1 || spec.mode === 'serial' || spec.mode === 'hold') return [spec]
  const share = (total: number, k: number): number => Math.floor(total / procs) + (k < total % procs ? 1 : 0)
  return Array.from({ length: procs }, (_, k): LoadSpec => {
    switch (spec.mode) {
      case 'hot':
        return { ...spec, concurrency: share(spec.concurrency, k) }
      case 'newport':
        return { ...spec, concurrency: share(spec.concurrency, k), fromPort: spec.fromPort + k * spec.portStep, portStep: spec.portStep * procs }
      case 'rate':
        return { ...spec, ratePerSecond: spec.ratePerSecond / procs, fromPort: spec.fromPort + k * spec.portStep, portStep: spec.portStep * procs }
    }
  })
}

/** Merges the results of the processes of one split run: counters add up, windows and lags take the largest. */
export function mergeResults(results: readonly LoadResult[]): LoadResult {
  const [first, ...rest] = results
  if (first === undefined) throw new HoneytrapError('HT_ERR_NETNS', 'no load generator result to merge')
  return rest.reduce<LoadResult>((a, b) => {
    const errors: Record<string, number> = { ...a.errors }
    for (const [code, n] of Object.entries(b.errors)) errors[code] = (errors[code] ?? 0) + n
    return {
      ...a,
      windowMs: Math.max(a.windowMs, b.windowMs),
      started: a.started + b.started,
      connected: a.connected + b.connected,
      completed: a.completed + b.completed,
      finished: a.finished + b.finished,
      refused: a.refused + b.refused,
      timeouts: a.timeouts + b.timeouts,
      stalled: a.stalled + b.stalled,
      errors,
      connectUs: [...a.connectUs, ...b.connectUs],
      portsExhausted: a.portsExhausted || b.portsExhausted,
      maxLagMs: Math.max(a.maxLagMs, b.maxLagMs),
      cpuMs: a.cpuMs + b.cpuMs,
    }
  }, first)
}

/** Runs `spec` against the pair's sensor address with `procs` generator processes and returns the merged result. */
export async function runLoadGen(pair: NetnsPair, spec: HostlessSpec, options: { readonly procs?: number } = {}): Promise<LoadResult> {
  const procs = options.procs ?? 1
  const full = { ...spec, host: pair.sensorV4 } as LoadSpec
  const outputs = await Promise.all(
    splitSpec(full, procs).map((part) => pair.exec(pair.attackerNs, process.execPath, [distScript('bench/load-gen.js'), JSON.stringify(part)])),
  )
  return mergeResults(outputs.map((out) => JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as LoadResult))
}

/** A running `hold`: `connected` once every connection is up; `release()` closes them and returns the final result. */
export interface HeldConnections {
  readonly connected: number
  readonly connectedAtMs: number
  release(): Promise<LoadResult>
}

/** Opens the held connections and resolves once all are up (or failed); rejects after `readyTimeoutMs`. */
export async function startHold(pair: NetnsPair, options: Omit<HoldSpec, 'host' | 'mode'> & { readonly readyTimeoutMs: number }): Promise<HeldConnections> {
  const { readyTimeoutMs, ...spec } = options
  const full: HoldSpec = { ...spec, mode: 'hold', host: pair.sensorV4 }
  const child = pair.spawn(pair.attackerNs, process.execPath, [distScript('bench/load-gen.js'), JSON.stringify(full)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const lines: string[] = []
  let buffered = ''
  let stderr = ''
  const lineWaiters: (() => void)[] = []
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, nl))
      buffered = buffered.slice(nl + 1)
      for (const wake of lineWaiters.splice(0)) wake()
    }
  })
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => (stderr += chunk))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  void exited.then(() => lineWaiters.splice(0).forEach((wake) => wake()))
  const nthLine = async (n: number, timeoutMs: number): Promise<string> => {
    const deadline = Date.now() + timeoutMs
    while (lines.length <= n) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
        throw new HoneytrapError('HT_ERR_NETNS', `hold: no result line ${n + 1} (exit ${String(child.exitCode ?? child.signalCode)}); stderr: ${stderr.slice(-2000)}`)
      }
      await new Promise<void>((resolve) => {
        lineWaiters.push(resolve)
        setTimeout(resolve, 250)
      })
    }
    return lines[n] ?? ''
  }
  const ready = JSON.parse(await nthLine(0, readyTimeoutMs)) as { connected: number; connectedAt: number }
  return {
    connected: ready.connected,
    connectedAtMs: ready.connectedAt,
    async release(): Promise<LoadResult> {
      child.stdin?.end()
      return JSON.parse(await nthLine(1, 20_000)) as LoadResult
    },
  }
}
