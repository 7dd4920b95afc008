import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import Database from 'better-sqlite3'
import { startBackend, type BackendProcess } from '../netns/backend-process.js'
import { distScript } from '../netns/sensor-process.js'
import type { NetnsPair } from '../netns/netns-pair.js'
import type { BareRelaySpec } from './bare-relay.js'
import { startBenchProcess, type BenchProcess } from './bench-process.js'
import { startSystem, type SystemUnderTest } from './bench-system.js'
import type { ProxyBackendSpec } from './proxy-backend.js'
import { LATENCY_PATHS, medianOf, PROXY_PATHS, summarizeRound, type BulkDirection, type BulkPaths, type BulkRun, type ColdProbe, type LatencyPathName, type ProxyFigures, type ProxyPath } from './proxy-figures.js'
import type { BulkResult, LatencyPath, LatencyResult, PathLatencies, ProxyGenSpec } from './proxy-gen.js'
import { foreignCpuMs, readProcessTable, readProcUsage } from './proc-usage.js'
import { BENCH_LIMITS_YAML, settledRowCount, waitForQuiet, type ScenarioContext } from './scenarios.js'

/**
 * (d) Proxy mode against a direct connection to the same backend, in the same run. The backend runs in the sensor
 * namespace on the sensor's own veth address, on ports the capture rules exclude, and the proxy target is that same
 * address and port. So "direct" (attacker -> sensor:backend port, the kernel alone) and "proxy" (attacker ->
 * sensor:proxy port, the NFQUEUE SYN path on first contact, then the sensor's relay -> backend) cross the same veth to
 * the same backend process, and what differs is the relay. A third path goes through a bare Node relay
 * (bare-relay.ts) on excluded ports: the part of the difference that any relay written in Node pays. The paths
 * alternate within every round.
 */

// The pair's subnet is fixed so the config can name the sensor's address before the pair exists. Addresses exist only
// inside the namespaces this run makes, so another pair with the same subnet (a test running meanwhile) is harmless.
const PROXY_SUBNET = 77
type Service = 'sink' | 'source' | 'banner'
const PORTS: Readonly<Record<ProxyPath, Readonly<Record<Service, number>>>> = {
  direct: { sink: 7001, source: 7002, banner: 7003 }, // the backend itself (proxy-backend.ts)
  proxy: { sink: 9001, source: 9002, banner: 9003 }, // honeytrap-ts, proxy mode
  bare: { sink: 9101, source: 9102, banner: 9103 }, // the bare relay
}
const SERVICES: readonly Service[] = ['sink', 'source', 'banner']
// honeytrap-ts again, proxying to the same banner service through a target with warm connections.
const WARM_BANNER_PORT = 9004
const WARM_CONNECTIONS = 2
// netns/backend-server.ts, the tests' backend, as a second one: it hashes every byte it reads or writes.
type HashingService = 'digest' | 'source'
const HASHING_PORTS: Readonly<Record<'direct' | 'proxy', Readonly<Record<HashingService, number>>>> = {
  direct: { digest: 7011, source: 7012 },
  proxy: { digest: 9011, source: 9012 },
}
const HASHING_SERVICES: readonly HashingService[] = ['digest', 'source']
const BULK_MB = 512
const QUICK_BULK_MB = 256
const WARMUP_MB = 64
const BULK_ROUNDS = 5
const HASHING_ROUNDS = 3
const LATENCY_ROUNDS = 3
const LATENCY_PER_ROUND = 700 // per path: 2,100 of each in all
const QUICK_LATENCY_PER_ROUND = 500
const BULK_TIMEOUT_MS = 30_000 // 512 MB must move at 17 MB/s at least
const LATENCY_DEADLINE_MS = 20_000
const PROBE_TIMEOUT_MS = 3_000
const HELPER_LIFETIME_MS = 10 * 60_000 // backend and bare relay: far above the section's ~1 minute
const RELAY_HIGH_WATER_MARK_BYTES = 256 * 1024 // the sensor's relay.highWaterMarkBytes default, for the bare relay

/** The sensor's config for (d): the proxy ports, their targets on the sensor's own address, the other ports excluded. */
export function proxyConfig(sensorV4: string): string {
  const excluded = [`${PORTS.direct.sink}-${HASHING_PORTS.direct.source}/tcp`, `${PORTS.bare.sink}-${PORTS.bare.banner}/tcp`]
  const targets = [
    ...SERVICES.map((s) => ({ name: `bench-${s}`, port: PORTS.proxy[s], target: PORTS.direct[s] })),
    ...HASHING_SERVICES.map((s) => ({ name: `hashing-${s}`, port: HASHING_PORTS.proxy[s], target: HASHING_PORTS.direct[s] })),
    { name: 'bench-banner-warm', port: WARM_BANNER_PORT, target: PORTS.direct.banner, warm: WARM_CONNECTIONS },
  ]
  return [
    '# written by npm run bench, section (d)',
    BENCH_LIMITS_YAML,
    // A listener that sees no new connection for this long unbinds: longer than the section, so it stays warm.
    'listeners: { idleLifetimeMs: 600000 }',
    `rules: { exclude: ${JSON.stringify(excluded)} }`,
    'ports:',
    '  rules:',
    ...targets.map((t) => `    - { ports: "${t.port}/tcp", mode: proxy, proxy: ${t.name} }`),
    'proxy:',
    '  targets:',
    ...targets.map((t) => `    ${t.name}: { host: "${sensorV4}", port: ${t.target}, protocol: tcp${'warm' in t ? `, warm: ${t.warm}` : ''} }`),
    '',
  ].join('\n')
}

async function runGen<R>(pair: NetnsPair, spec: ProxyGenSpec): Promise<R> {
  const out = await pair.exec(pair.attackerNs, process.execPath, [distScript('bench/proxy-gen.js'), JSON.stringify(spec)])
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as R
}

interface Processes {
  readonly sys: SystemUnderTest
  readonly backend: BenchProcess
  readonly bare: BenchProcess
}

/** One transfer to `port`, watching the backend's and the relay's CPU (none on the direct path). */
async function bulkRun(
  p: Processes,
  options: { readonly path: ProxyPath; readonly direction: BulkDirection; readonly bytes: number; readonly port?: number; readonly backendPid?: number },
): Promise<BulkRun> {
  const { path, direction, bytes } = options
  const relayPid = path === 'proxy' ? p.sys.pid : path === 'bare' ? p.bare.pid : null
  const watchPids = [options.backendPid ?? p.backend.pid, ...(relayPid === null ? [] : [relayPid])]
  const port = options.port ?? PORTS[path][direction === 'upload' ? 'sink' : 'source']
  const table = readProcessTable()
  const started = performance.now()
  const r = await runGen<BulkResult>(p.sys.pair, { mode: direction, host: p.sys.pair.sensorV4, port, bytes, timeoutMs: BULK_TIMEOUT_MS, watchPids })
  const wallMs = performance.now() - started
  const pct = (ms: number | null | undefined): number => (ms === null || ms === undefined || r.transferMs <= 0 ? 0 : (ms / r.transferMs) * 100)
  const relayMs = r.watchedCpuMs[1] ?? 0
  return {
    path,
    direction,
    ok: r.ok,
    error: r.error,
    bytes: r.bytes,
    transferMs: r.transferMs,
    mbPerSecond: r.ok && r.transferMs > 0 ? r.bytes / 1_000 / r.transferMs : 0,
    generatorCpuPct: pct(r.cpuMs),
    relayCpuPct: pct(relayMs),
    relayMainThreadCpuPct: pct(r.watchedMainThreadCpuMs[1]),
    relayCpuUsPerMB: r.bytes > 0 ? (relayMs * 1_000) / (r.bytes / 1e6) : 0,
    backendCpuPct: pct(r.watchedCpuMs[0]),
    machineBusyPct: r.machineBusyPct,
    machineCpuUsPerMB: r.bytes > 0 ? (r.machineBusyPct / 100) * r.transferMs * 1_000 / (r.bytes / 1e6) : 0,
    foreignCpuPct: (foreignCpuMs(table, readProcessTable(), { rootPid: process.pid }) / wallMs) * 100,
  }
}

function bannerPaths(pair: NetnsPair, paths: readonly LatencyPathName[]): LatencyPath[] {
  return paths.map((name) => ({ name, host: pair.sensorV4, port: name === 'warm' ? WARM_BANNER_PORT : PORTS[name].banner }))
}

function coldProbe(p: PathLatencies | undefined): ColdProbe {
  return { connectUs: p?.connectUs[0] ?? null, firstByteUs: p?.firstByteUs[0] ?? null, error: Object.keys(p?.failures ?? {})[0] ?? null }
}

function attempts(p: PathLatencies | undefined): number {
  return (p?.connectUs.length ?? 0) + Object.values(p?.failures ?? {}).reduce((s, n) => s + n, 0)
}

/** Relayed attacks in the database (the others fell back to normal mode). */
function relayedRows(dbPath: string): number {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare("SELECT count(*) AS n FROM attacks WHERE relay_outcome = 'relayed'").get() as { n: number }).n
  } finally {
    db.close()
  }
}

/** Starts the backend and the bare relay next to the sensor; stops the first if the second fails. */
async function startHelpers(sys: SystemUnderTest, sourceBytes: number): Promise<{ readonly backend: BenchProcess; readonly bare: BenchProcess }> {
  const { pair } = sys
  const host = pair.sensorV4
  const backendSpec: ProxyBackendSpec = { host, sinkPort: PORTS.direct.sink, sourcePort: PORTS.direct.source, bannerPort: PORTS.direct.banner, sourceBytes, maxLifetimeMs: HELPER_LIFETIME_MS }
  const backend = await startBenchProcess(pair, 'proxy-backend.js', { args: [JSON.stringify(backendSpec)] })
  try {
    const routes = SERVICES.map((s) => ({ port: PORTS.bare[s], targetPort: PORTS.direct[s] }))
    const bareSpec: BareRelaySpec = { host, routes, highWaterMarkBytes: RELAY_HIGH_WATER_MARK_BYTES, maxLifetimeMs: HELPER_LIFETIME_MS }
    return { backend, bare: await startBenchProcess(pair, 'bare-relay.js', { args: [JSON.stringify(bareSpec)] }) }
  } catch (err) {
    await backend.stop('SIGKILL')
    throw err
  }
}

/**
 * Direct and proxy transfers both ways with netns/backend-server.ts as the backend: digest mode hashes what it reads,
 * source mode makes its bytes with AES-CTR and hashes them. A backend that costs something per byte, like any real one.
 */
async function hashingRuns(
  p: Processes,
  options: { readonly bytes: number; readonly rounds: number; readonly progress: (line: string) => void },
): Promise<{ readonly figures: ProxyFigures['hashing']; readonly proxied: number; readonly proxiedOk: number }> {
  const { pair } = p.sys
  const host = pair.sensorV4
  const digest = await startBackend(pair, pair.sensorNs, ['--tcp', String(HASHING_PORTS.direct.digest), '--host', host, '--mode', 'digest', '--max-connections', '16'])
  let source: BackendProcess | null = null
  try {
    source = await startBackend(pair, pair.sensorNs, ['--tcp', String(HASHING_PORTS.direct.source), '--host', host, '--mode', 'source', '--bytes', String(options.bytes), '--seed', 'bench', '--max-connections', '16'])
    const backends: Record<BulkDirection, { readonly pid: number; readonly service: HashingService }> = { upload: { pid: digest.pid, service: 'digest' }, download: { pid: source.pid, service: 'source' } }
    const runs: Record<BulkDirection, Record<'direct' | 'proxy', BulkRun[]>> = { upload: { direct: [], proxy: [] }, download: { direct: [], proxy: [] } }
    let proxied = 0
    let proxiedOk = 0
    for (let round = 0; round < options.rounds; round++) {
      options.progress(`proxy: round ${round + 1} of ${options.rounds} with backend-server.js as the backend`)
      for (const direction of ['upload', 'download'] as const) {
        const order = round % 2 === 0 ? (['direct', 'proxy'] as const) : (['proxy', 'direct'] as const)
        for (const path of order) {
          const { pid, service } = backends[direction]
          const run = await bulkRun(p, { path, direction, bytes: options.bytes, port: HASHING_PORTS[path][service], backendPid: pid })
          runs[direction][path].push(run)
          if (path === 'proxy') {
            proxied++
            if (run.ok) proxiedOk++
          }
        }
      }
    }
    const figures = {
      upload: { direct: medianOf(runs.upload.direct), proxy: medianOf(runs.upload.proxy) },
      download: { direct: medianOf(runs.download.direct), proxy: medianOf(runs.download.proxy) },
    }
    return { figures, proxied, proxiedOk }
  } finally {
    await source?.stop('SIGTERM')
    await digest.stop('SIGTERM')
  }
}

/** (d) Bulk throughput both ways and connect / first-byte latency: direct, through the proxy and a bare relay. */
export async function proxyScenario(ctx: ScenarioContext): Promise<ProxyFigures> {
  await waitForQuiet(ctx.quick ? 3_000 : 10_000)
  ctx.progress('proxy: honeytrap-ts with a backend on its own address')
  const configPath = join(ctx.dir, 'proxy-config.yaml')
  writeFileSync(configPath, proxyConfig(`198.18.${PROXY_SUBNET}.1`))
  const sys = await startSystem('honeytrap-ts', {
    dir: ctx.dir,
    configPath,
    scenario: 'proxy-honeytrap-ts',
    subnet: PROXY_SUBNET,
    ...(ctx.cpuProfileDir !== null && { cpuProfileDir: join(ctx.cpuProfileDir, 'proxy-honeytrap-ts') }),
  })
  let helpers: { readonly backend: BenchProcess; readonly bare: BenchProcess } | null = null
  try {
    const { pair } = sys
    const bulkBytes = (ctx.quick ? QUICK_BULK_MB : BULK_MB) * 1e6
    helpers = await startHelpers(sys, bulkBytes)
    const p: Processes = { sys, ...helpers }
    let proxied = 0
    let proxiedOk = 0
    const countProxy = (attempted: number, ok: number): void => {
      proxied += attempted
      proxiedOk += ok
    }

    // The very first connection to the proxy's banner port: its SYN is held while the sensor binds the port.
    const cold = await runGen<LatencyResult>(pair, { mode: 'latency', paths: bannerPaths(pair, ['direct', 'proxy']), count: 1, connectTimeoutMs: PROBE_TIMEOUT_MS, deadlineMs: LATENCY_DEADLINE_MS })
    countProxy(attempts(cold.paths['proxy']), cold.paths['proxy']?.connectUs.length ?? 0)
    // The warm path's port is bound the same way, before its rounds, not counted in them.
    const coldWarm = await runGen<LatencyResult>(pair, { mode: 'latency', paths: bannerPaths(pair, ['warm']), count: 1, connectTimeoutMs: PROBE_TIMEOUT_MS, deadlineMs: LATENCY_DEADLINE_MS })
    countProxy(attempts(coldWarm.paths['warm']), coldWarm.paths['warm']?.connectUs.length ?? 0)

    // Warm-up, not counted: binds the bulk ports and lets every process's JIT settle. The source always sends bulkBytes.
    for (const direction of ['upload', 'download'] as const) {
      for (const path of PROXY_PATHS) {
        const warm = await bulkRun(p, { path, direction, bytes: direction === 'upload' ? WARMUP_MB * 1e6 : bulkBytes })
        if (path === 'proxy') countProxy(1, warm.ok ? 1 : 0)
      }
    }

    const runs: Record<BulkDirection, Record<ProxyPath, BulkRun[]>> = { upload: { direct: [], proxy: [], bare: [] }, download: { direct: [], proxy: [], bare: [] } }
    const bulkRounds = ctx.quick ? 1 : BULK_ROUNDS
    for (let round = 0; round < bulkRounds; round++) {
      ctx.progress(`proxy: bulk round ${round + 1} of ${bulkRounds}, ${bulkBytes / 1e6} MB each way on each path`)
      for (const direction of ['upload', 'download'] as const) {
        // Rotate which path goes first, so that none always runs right after the same other one.
        const shift = round % PROXY_PATHS.length
        for (const path of [...PROXY_PATHS.slice(shift), ...PROXY_PATHS.slice(0, shift)]) {
          const run = await bulkRun(p, { path, direction, bytes: bulkBytes })
          runs[direction][path].push(run)
          if (path === 'proxy') countProxy(1, run.ok ? 1 : 0)
        }
      }
    }

    const hashing = await hashingRuns(p, { bytes: bulkBytes, rounds: ctx.quick ? 1 : HASHING_ROUNDS, progress: ctx.progress })
    countProxy(hashing.proxied, hashing.proxiedOk)

    const latencyRounds = ctx.quick ? 1 : LATENCY_ROUNDS
    const perRound = ctx.quick ? QUICK_LATENCY_PER_ROUND : LATENCY_PER_ROUND
    const samples: LatencyResult[] = []
    const relayCpu = { proxy: 0, bare: 0 }
    for (let round = 0; round < latencyRounds; round++) {
      ctx.progress(`proxy: latency round ${round + 1} of ${latencyRounds}, ${perRound} connections per path`)
      const before = { proxy: readProcUsage(sys.pid).cpuMs, bare: readProcUsage(p.bare.pid).cpuMs }
      const result = await runGen<LatencyResult>(pair, { mode: 'latency', paths: bannerPaths(pair, LATENCY_PATHS), count: perRound, connectTimeoutMs: PROBE_TIMEOUT_MS, deadlineMs: LATENCY_DEADLINE_MS })
      relayCpu.proxy += readProcUsage(sys.pid).cpuMs - before.proxy
      relayCpu.bare += readProcUsage(p.bare.pid).cpuMs - before.bare
      samples.push(result)
      countProxy(attempts(result.paths['proxy']), result.paths['proxy']?.connectUs.length ?? 0)
      countProxy(attempts(result.paths['warm']), result.paths['warm']?.connectUs.length ?? 0)
    }
    const relayedConnections = (path: LatencyPathName): number => samples.reduce((sum, r) => sum + attempts(r.paths[path]), 0)

    const rows = sys.dbPath === null ? 0 : await settledRowCount(sys.dbPath, proxied)
    const relayed = sys.dbPath === null ? 0 : relayedRows(sys.dbPath)
    const medians = (direction: BulkDirection): BulkPaths => ({ direct: medianOf(runs[direction].direct), proxy: medianOf(runs[direction].proxy), bare: medianOf(runs[direction].bare) })
    return {
      bulkBytes,
      upload: medians('upload'),
      download: medians('download'),
      hashing: hashing.figures,
      latency: {
        ...summarizeRound(samples),
        rounds: samples.map((s) => summarizeRound([s])),
        // The sensor relays the warm path's connections too.
        proxyCpuUsPerConnection: (relayCpu.proxy * 1_000) / Math.max(1, relayedConnections('proxy') + relayedConnections('warm')),
        bareCpuUsPerConnection: (relayCpu.bare * 1_000) / Math.max(1, relayedConnections('bare')),
      },
      cold: { direct: coldProbe(cold.paths['direct']), proxy: coldProbe(cold.paths['proxy']) },
      stored: { rows, relayed, proxied, proxiedOk },
    }
  } finally {
    await helpers?.bare.stop('SIGTERM')
    await helpers?.backend.stop('SIGTERM')
    await sys.stop()
  }
}
