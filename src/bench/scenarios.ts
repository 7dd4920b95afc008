import { cpus } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { startSystem, type SystemKind, type SystemUnderTest } from './bench-system.js'
import { summarizeLatencies, type LatencySummary } from './latency-summary.js'
import type { LoadResult } from './load-gen.js'
import { runLoadGen, startHold } from './load-runner.js'
import { counterDelta, readKernelCounters, type KernelCounters } from './kernel-counters.js'
import { busyPercentOfOneCpu, foreignCpuMs, readMachineTicks, readProcessTable, readProcUsage, readThreadCpuMs } from './proc-usage.js'

/**
 * The benchmark's scenarios, each run against one system in fresh namespaces: (a) hot port, (b) new port at a fixed
 * concurrency, at an offered rate and one at a time, (c) memory. Each returns plain data; judging it is report.ts's job.
 */

export interface ScenarioContext {
  readonly dir: string
  readonly configPath: string
  readonly quick: boolean
  readonly genProcs: number // generator processes for the closed-loop modes
  readonly queue: number // the NFQUEUE both systems bind (config monitor.queue)
  readonly cpuProfileDir: string | null // --profile: main-thread CPU profiles of both systems, one folder per scenario
  readonly rules: Map<SystemKind, string> // filled on first start of each kind: both must see identical rules
  readonly progress: (line: string) => void
}

/** One load run with the resource use around it. */
export interface Measured {
  readonly load: Omit<LoadResult, 'connectUs'>
  readonly latency: LatencySummary | null // new-port modes only
  readonly perSecond: number // completed connections per second of the measured window
  readonly wallMs: number
  readonly systemCpuPct: number // the system under test, every thread, in % of one CPU
  readonly mainThreadCpuPct: number // the system's main (JavaScript) thread alone: 100 means it was the bottleneck
  readonly systemCpuUsPerConnection: number
  readonly generatorCpuPct: number // the load generator(s) over their window, in % of one CPU
  readonly machineBusyPct: number // the whole machine, in % of one CPU (the maximum is 100 × CPUs)
  readonly foreignCpuPct: number // processes outside this benchmark (other work on the machine), in % of one CPU
  readonly conntrackEntries: number | null // in the sensor namespace after the run
  readonly kernel: KernelCounters // drops during the run, both namespaces
}

/**
 * Runs `reference` and `honeytrap` alternately `rounds` times and keeps, for each, the run with the median rate; every
 * round's rate is kept in `rounds`. On a 2-core VM one run of the same code varies by ±10 %, as much as the margin a
 * 0.8 target leaves: alternating spreads outside load over both, and the median ignores one unlucky run.
 */
export async function alternateRounds<T extends Measured>(rounds: number, run: (kind: 'reference' | 'honeytrap-ts') => Promise<T>): Promise<{ reference: T & Rounds; honeytrap: T & Rounds }> {
  const ref: T[] = []
  const ht: T[] = []
  for (let i = 0; i < rounds; i++) {
    ref.push(await run('reference'))
    ht.push(await run('honeytrap-ts'))
  }
  return { reference: medianRun(ref), honeytrap: medianRun(ht) }
}

export interface Rounds {
  readonly rounds: readonly number[] // the rate of every round, in run order
}

function medianRun<T extends Measured>(runs: readonly T[]): T & Rounds {
  const sorted = [...runs].sort((x, y) => x.perSecond - y.perSecond)
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, rounds: runs.map((r) => r.perSecond) }
}

export interface HotFigures extends Measured {
  // honeytrap-ts: rows in its database, against connections made and those that finished cleanly (the rest were cut)
  readonly stored: { readonly rows: number; readonly connected: number; readonly finished: number } | null
}

export interface RateFigures extends Measured {
  readonly offered: number
  readonly atLeast1s: number // connects of 1 s or more, plus those that never connected within the 3 s timeout
  readonly atLeast1sShare: number
}

// How long the system sits idle before a settled RSS reading (start-up idle, and with the held connections).
const IDLE_SETTLE_MS = 15_000

export interface MemoryFigures {
  readonly startupKiB: number // 2 s after ready
  readonly idleKiB: number
  readonly heldConnections: number
  readonly heldEstablished: number // as the sensor namespace's kernel counts them while held
  readonly withIdleKiB: number
  readonly perIdleConnectionKiB: number
  readonly perIdleConnectionAnonKiB: number // the same from RssAnon alone
  readonly closedByPeerWhileHeld: number
  readonly scan: Measured
  readonly scanPorts: number
  readonly afterScanKiB: number
}

/** Limits high enough not to throttle the benchmark itself: every config the benchmark writes for honeytrap-ts has them. */
export const BENCH_LIMITS_YAML = 'limits: { maxConnections: 20000, maxConnectionsPerSource: 20000, newConnectionsPerSecondPerSource: 1000000 }'

/** The hot port: honeytrap-ts answers it on data from a template holding the reference reply (see run-bench.ts). */
export const HOT_PORT = 8080
const HOLD_PORT = 8080
const FIRST_NEW_PORT = 1025
const SCAN_CONCURRENCY = 48
const QUIET_SAMPLE_MS = 500
const QUIET_FOREIGN_PCT = 20

async function conntrackEntries(sys: SystemUnderTest): Promise<number | null> {
  const text = await sys.pair.exec(sys.pair.sensorNs, 'cat', ['/proc/sys/net/netfilter/nf_conntrack_count']).catch(() => null)
  return text === null ? null : Number(text.trim())
}

/** CPU time of the main (JavaScript) thread of `pid`, in ms. */
export function mainThreadCpuMs(pid: number): number {
  for (const [label, ms] of readThreadCpuMs(pid)) if (label.endsWith(` ${pid}`)) return ms
  return 0
}

/** Runs `load` and reads the CPU of the system, the generator and the machine around it. */
async function measure(sys: SystemUnderTest, load: () => Promise<LoadResult>, options: { readonly queue: number }): Promise<Measured> {
  const countersBefore = await readKernelCounters(sys.pair, options.queue)
  const tableBefore = readProcessTable()
  const before = readProcUsage(sys.pid)
  const mainBefore = mainThreadCpuMs(sys.pid)
  const machineBefore = readMachineTicks()
  const started = performance.now()
  const { connectUs, ...result } = await load()
  const wallMs = performance.now() - started
  const after = readProcUsage(sys.pid)
  const mainMs = mainThreadCpuMs(sys.pid) - mainBefore
  const machineBusyPct = busyPercentOfOneCpu(machineBefore, readMachineTicks(), { cpus: cpus().length })
  const foreignMs = foreignCpuMs(tableBefore, readProcessTable(), { rootPid: process.pid })
  const systemCpuMs = after.cpuMs - before.cpuMs
  return {
    load: result,
    latency: connectUs.length > 0 ? summarizeLatencies(connectUs) : null,
    perSecond: result.windowMs > 0 ? (result.completed * 1_000) / result.windowMs : 0,
    wallMs,
    systemCpuPct: (systemCpuMs / wallMs) * 100,
    mainThreadCpuPct: (mainMs / wallMs) * 100,
    systemCpuUsPerConnection: result.started > 0 ? (systemCpuMs * 1_000) / result.started : 0,
    generatorCpuPct: result.windowMs > 0 ? (result.cpuMs / result.windowMs) * 100 : 0,
    machineBusyPct,
    foreignCpuPct: (foreignMs / wallMs) * 100,
    conntrackEntries: await conntrackEntries(sys),
    kernel: counterDelta(countersBefore, await readKernelCounters(sys.pair, options.queue)),
  }
}

/**
 * Waits until processes outside this benchmark use less than QUIET_FOREIGN_PCT of a CPU over QUIET_SAMPLE_MS, for at
 * most `maxWaitMs`. Other work on a 2-core machine changes every figure; the wait makes a quiet sample likelier and
 * the foreign-CPU column of the report says how quiet it was.
 */
export async function waitForQuiet(maxWaitMs: number): Promise<void> {
  const deadline = performance.now() + maxWaitMs
  while (performance.now() < deadline) {
    const before = readProcessTable()
    await sleep(QUIET_SAMPLE_MS)
    if ((foreignCpuMs(before, readProcessTable(), { rootPid: process.pid }) / QUIET_SAMPLE_MS) * 100 < QUIET_FOREIGN_PCT) return
  }
}

/** Starts `kind` for one scenario, records its rules the first time, runs `body` and always stops it. */
async function withSystem<T>(
  ctx: ScenarioContext,
  body: (sys: SystemUnderTest) => Promise<T>,
  options: { readonly kind: SystemKind; readonly scenario: string; readonly logLevel?: 'warn' | 'info' },
): Promise<T> {
  const { kind, ...systemOptions } = options
  await waitForQuiet(ctx.quick ? 3_000 : 10_000)
  ctx.progress(`${options.scenario}: ${kind}${options.logLevel === 'info' ? ' (log level info)' : ''}`)
  const sys = await startSystem(kind, {
    ...systemOptions,
    dir: ctx.dir,
    configPath: ctx.configPath,
    scenario: `${options.scenario}-${kind}`,
    plainPort: HOT_PORT,
    ...(ctx.cpuProfileDir !== null && kind !== 'plain' && { cpuProfileDir: join(ctx.cpuProfileDir, `${options.scenario}-${kind}`) }),
  })
  try {
    if (kind !== 'plain' && !ctx.rules.has(kind)) ctx.rules.set(kind, await sys.rules())
    return await body(sys)
  } finally {
    await sys.stop()
  }
}

/** Polls the attack count until it reaches `expected` or stops growing for 3 s (the batch window is 200 ms). */
export async function settledRowCount(dbPath: string, expected: number): Promise<number> {
  const count = (): number => {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true })
    try {
      return (db.prepare('SELECT count(*) AS n FROM attacks').get() as { n: number }).n
    } finally {
      db.close()
    }
  }
  let last = -1
  let stableSince = performance.now()
  const deadline = performance.now() + 20_000
  for (;;) {
    const n = count()
    if (n >= expected || performance.now() > deadline) return n
    if (n !== last) {
      last = n
      stableSince = performance.now()
    } else if (performance.now() - stableSince > 3_000) return n
    await sleep(200)
  }
}

/** (a) Closed loops on one port, 64 in flight; for honeytrap-ts, also the stored row count. */
export function hotScenario(kind: SystemKind, ctx: ScenarioContext, options: { readonly procs?: number; readonly logLevel?: 'warn' | 'info' } = {}): Promise<HotFigures> {
  const procs = options.procs ?? ctx.genProcs
  const scenario = `hot${procs > 1 ? `-${procs}procs` : ''}${options.logLevel === 'info' ? '-info' : ''}`
  const logLevel = options.logLevel === undefined ? {} : { logLevel: options.logLevel }
  return withSystem(ctx, async (sys) => {
    const durationMs = ctx.quick ? 3_000 : 8_000
    const spec = { mode: 'hot', port: HOT_PORT, concurrency: 64, warmupMs: 1_000, durationMs } as const
    const measured = await measure(sys, () => runLoadGen(sys.pair, spec, { procs }), ctx)
    const { connected, finished } = measured.load
    const stored = sys.dbPath === null ? null : { rows: await settledRowCount(sys.dbPath, connected), connected, finished }
    return { ...measured, stored }
  }, { kind, scenario, ...logLevel })
}

/** (b) Closed loops where every connection opens a never-used port, 32 in flight. */
export function newPortScenario(kind: SystemKind, ctx: ScenarioContext): Promise<Measured> {
  return withSystem(ctx, (sys) => {
    const spec = { mode: 'newport', fromPort: FIRST_NEW_PORT, toPort: 65_535, portStep: 1, concurrency: 32, warmupMs: 1_000, durationMs: ctx.quick ? 3_000 : 8_000, connectTimeoutMs: 3_000 } as const
    return measure(sys, () => runLoadGen(sys.pair, spec, { procs: ctx.genProcs }), ctx)
  }, { kind, scenario: 'newport' })
}

/** (b) Open loop: 3,000 new ports per second offered (or `ratePerSecond`), each connect bounded by 3 s. */
export function rateScenario(kind: SystemKind, ctx: ScenarioContext, ratePerSecond = 3_000): Promise<RateFigures> {
  return withSystem(ctx, async (sys) => {
    const spec = { mode: 'rate', fromPort: FIRST_NEW_PORT, portStep: 1, ratePerSecond, durationMs: ctx.quick ? 2_000 : 5_000, connectTimeoutMs: 3_000 } as const
    const measured = await measure(sys, () => runLoadGen(sys.pair, spec), ctx)
    const offered = measured.load.started
    const atLeast1s = (measured.latency?.atLeast1s ?? 0) + measured.load.timeouts
    return { ...measured, offered, atLeast1s, atLeast1sShare: offered > 0 ? atLeast1s / offered : 0 }
  }, { kind, scenario: ratePerSecond === 3_000 ? 'rate' : `rate-${ratePerSecond}` })
}

/** (b) One connection at a time to never-used ports: the latency of the bind-before-accept path alone. */
export function serialScenario(kind: SystemKind, ctx: ScenarioContext): Promise<Measured> {
  return withSystem(ctx, (sys) => {
    const spec = { mode: 'serial', fromPort: FIRST_NEW_PORT, portStep: 1, count: ctx.quick ? 200 : 500, deadlineMs: 30_000 } as const
    return measure(sys, () => runLoadGen(sys.pair, spec), ctx)
  }, { kind, scenario: 'serial' })
}

/** RSS of a system left idle: just after start-up, and settled (V8's memory reducer has run). */
export function idleRssScenario(kind: SystemKind, ctx: ScenarioContext): Promise<{ readonly startupKiB: number; readonly idleKiB: number }> {
  return withSystem(ctx, async (sys) => {
    await sleep(2_000)
    const startupKiB = readProcUsage(sys.pid).rssKiB
    await sleep(IDLE_SETTLE_MS - 2_000)
    return { startupKiB, idleKiB: readProcUsage(sys.pid).rssKiB }
  }, { kind, scenario: 'idle' })
}

/** (c) RSS idle, with 10,000 idle connections, and after a scan of every port (a part of them with --quick). */
export function memoryScenario(kind: SystemKind, ctx: ScenarioContext): Promise<MemoryFigures> {
  return withSystem(ctx, async (sys) => {
    // Idle is measured twice: just after start-up, and settled, once V8's memory reducer has run (it shrinks the heap
    // after some seconds without activity), which is what a sensor waiting for its next attacker looks like.
    await sleep(2_000)
    const startupKiB = readProcUsage(sys.pid).rssKiB
    await sleep(IDLE_SETTLE_MS - 2_000)
    const idle = readProcUsage(sys.pid)
    const idleKiB = idle.rssKiB
    const held = await startHold(sys.pair, { port: HOLD_PORT, count: 10_000, concurrency: 100, holdMs: 120_000, readyTimeoutMs: 90_000 })
    await sleep(IDLE_SETTLE_MS)
    const withIdle = readProcUsage(sys.pid)
    const withIdleKiB = withIdle.rssKiB
    const established = await sys.pair.exec(sys.pair.sensorNs, 'ss', ['-Htn', 'state', 'established', 'sport', '=', `:${HOLD_PORT}`])
    const heldEstablished = established.split('\n').filter((l) => l.trim() !== '').length
    const released = await held.release()
    await sleep(2_000)
    const scanPorts = ctx.quick ? 16_384 : 65_535
    const spec = { mode: 'newport', fromPort: 1, toPort: scanPorts, portStep: 1, concurrency: SCAN_CONCURRENCY, warmupMs: 0, durationMs: 150_000, connectTimeoutMs: 3_000 } as const
    const scan = await measure(sys, () => runLoadGen(sys.pair, spec), ctx)
    await sleep(2_000)
    return {
      startupKiB,
      idleKiB,
      heldConnections: held.connected,
      heldEstablished,
      withIdleKiB,
      perIdleConnectionKiB: held.connected > 0 ? (withIdleKiB - idleKiB) / held.connected : 0,
      perIdleConnectionAnonKiB: held.connected > 0 ? (withIdle.rssAnonKiB - idle.rssAnonKiB) / held.connected : 0,
      closedByPeerWhileHeld: released.closedByPeer ?? 0,
      scan,
      scanPorts,
      afterScanKiB: readProcUsage(sys.pid).rssKiB,
    }
  }, { kind, scenario: 'memory' })
}
