import { percentile } from './latency-summary.js'
import type { LatencyResult, PathLatencies } from './proxy-gen.js'

/** The figures of the benchmark's proxy section (d), as proxy-scenario.ts measures them and report.ts reads them. */

export const PROXY_PATHS = ['direct', 'proxy', 'bare'] as const
export type ProxyPath = (typeof PROXY_PATHS)[number]
// The latency runs add the proxy with warm connections (proxy.targets.*.warm): the same relay, no connect per session.
export const LATENCY_PATHS = [...PROXY_PATHS, 'warm'] as const
export type LatencyPathName = (typeof LATENCY_PATHS)[number]
export type BulkDirection = 'upload' | 'download'

/** One bulk transfer on one connection, with the CPU of every process on its path over the transfer. */
export interface BulkRun {
  readonly path: ProxyPath
  readonly direction: BulkDirection
  readonly ok: boolean
  readonly error: string | null
  readonly bytes: number
  readonly transferMs: number
  readonly mbPerSecond: number // MB = 10^6 bytes; 0 when the transfer failed
  // In % of one CPU over the transfer. The relay is honeytrap-ts (proxy), the bare relay (bare), or none (direct).
  readonly generatorCpuPct: number
  readonly relayCpuPct: number
  readonly relayMainThreadCpuPct: number
  readonly relayCpuUsPerMB: number
  readonly backendCpuPct: number
  readonly machineBusyPct: number // 100 × CPUs is the whole machine
  readonly machineCpuUsPerMB: number // every CPU's busy time over the transfer, per MB moved
  readonly foreignCpuPct: number // processes outside the benchmark, over the generator's whole run
}

export type BulkMedian = BulkRun & { readonly rounds: readonly number[] } // the median round; every round's MB/s

export type BulkPaths = Readonly<Record<ProxyPath, BulkMedian>>

/** Sequential connections to the banner port of one path, latencies in µs. */
export interface PathLatencyFigures {
  readonly count: number
  readonly connectP50Us: number | null
  readonly connectP99Us: number | null
  readonly firstByteP50Us: number | null
  readonly firstByteP99Us: number | null
  readonly failures: Readonly<Record<string, number>>
}

/** The first connection of the run to a banner port: the proxy's has no listener yet. */
export interface ColdProbe {
  readonly connectUs: number | null
  readonly firstByteUs: number | null
  readonly error: string | null
}

/** Everything section (d) measured. */
export interface ProxyFigures {
  readonly bulkBytes: number
  readonly upload: BulkPaths
  readonly download: BulkPaths
  // The same transfers with netns/backend-server.ts as the backend (SHA-256 of every byte), direct and proxy only.
  readonly hashing: Readonly<Record<BulkDirection, Readonly<Record<'direct' | 'proxy', BulkMedian>>>>
  readonly latency: Readonly<Record<LatencyPathName, PathLatencyFigures>> & {
    readonly rounds: readonly Readonly<Record<LatencyPathName, PathLatencyFigures>>[]
    // CPU of each relay over the latency runs, per connection it relayed
    readonly proxyCpuUsPerConnection: number
    readonly bareCpuUsPerConnection: number
  }
  readonly cold: Readonly<Record<'direct' | 'proxy', ColdProbe>>
  // Every proxied connection becomes one stored attack, relayed (not fallen back to normal mode).
  readonly stored: { readonly rows: number; readonly relayed: number; readonly proxied: number; readonly proxiedOk: number }
}

/** The run with the median MB/s, with every round's MB/s in run order. */
export function medianOf(runs: readonly BulkRun[]): BulkMedian {
  const sorted = [...runs].sort((x, y) => x.mbPerSecond - y.mbPerSecond)
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, rounds: runs.map((r) => r.mbPerSecond) }
}

/** p50 and p99 of every sample of one path, and its failures by code. */
export function summarizePath(samples: readonly PathLatencies[]): PathLatencyFigures {
  const sorted = (pick: (s: PathLatencies) => readonly number[]): number[] => Array.from(Float64Array.from(samples.flatMap(pick)).sort())
  const connect = sorted((s) => s.connectUs)
  const firstByte = sorted((s) => s.firstByteUs)
  const failures: Record<string, number> = {}
  for (const s of samples) for (const [code, n] of Object.entries(s.failures)) failures[code] = (failures[code] ?? 0) + n
  return {
    count: connect.length,
    connectP50Us: percentile(connect, 50),
    connectP99Us: percentile(connect, 99),
    firstByteP50Us: percentile(firstByte, 50),
    firstByteP99Us: percentile(firstByte, 99),
    failures,
  }
}

/** summarizePath for each path over `results`. */
export function summarizeRound(results: readonly LatencyResult[]): Record<LatencyPathName, PathLatencyFigures> {
  const of = (path: LatencyPathName): PathLatencyFigures => summarizePath(results.flatMap((r) => (r.paths[path] === undefined ? [] : [r.paths[path]])))
  return { direct: of('direct'), proxy: of('proxy'), bare: of('bare'), warm: of('warm') }
}
