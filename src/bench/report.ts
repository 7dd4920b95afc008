import type { BulkMedian, BulkPaths, BulkRun, ColdProbe, PathLatencyFigures, ProxyFigures } from './proxy-figures.js'
import type { AnalysisFigures, QueryTiming } from './analysis-scenario.js'
import type { EbpfFigures } from './ebpf-scenario.js'
import type { PipelineFigures } from './pipeline-scenario.js'
import type { HotFigures, Measured, MemoryFigures, RateFigures, Rounds } from './scenarios.js'

/**
 * Turns the benchmark's measurements into the figures of the issue, each next to the reference's, with the ratio
 * honeytrap-ts / reference and the target it is judged against. Pure: results in, rows and markdown out.
 */

export interface BenchResults {
  readonly startedAt: string
  readonly durationMs: number
  readonly machine: { readonly cpus: number; readonly model: string; readonly kernel: string; readonly node: string; readonly memMiB: number; readonly fdLimit: string }
  readonly tree: { readonly commit: string; readonly changedFiles: readonly string[] }
  readonly options: { readonly quick: boolean; readonly only: readonly string[]; readonly genProcs: number }
  readonly rules: { readonly reference: string | null; readonly honeytrap: string | null; readonly identical: boolean | null }
  readonly generatorCheck: { readonly plain1: HotFigures; readonly plain2: HotFigures } | null
  readonly a: { readonly reference: HotFigures; readonly honeytrap: HotFigures; readonly honeytrapInfo: HotFigures } | null
  readonly b: {
    readonly newport: { readonly reference: Measured; readonly honeytrap: Measured }
    readonly rate: { readonly reference: RateFigures; readonly honeytrap: RateFigures }
    readonly serial: { readonly reference: Measured; readonly honeytrap: Measured }
  } | null
  readonly c: { readonly reference: MemoryFigures; readonly honeytrap: MemoryFigures } | null
  readonly d: ProxyFigures | null // reference = a direct connection to the same backend, honeytrap-ts = its proxy
  readonly e: PipelineFigures | null // reference = the sensor with its plugin pipeline off, honeytrap-ts = on
  readonly f: AnalysisFigures | null // no reference: the issue's budgets for the analyst's commands
  readonly g: EbpfFigures | null // reference = the sensor on the NFQUEUE monitor, honeytrap-ts = on the eBPF monitor
}

export type Verdict = 'PASS' | 'MISSED' | ''

export interface ReportRow {
  readonly figure: string
  readonly reference: string
  readonly honeytrap: string
  readonly ratio: string
  readonly target: string
  readonly verdict: Verdict
}

const KIB_PER_MB = 1e6 / 1024 // MB as in the issue: 10^6 bytes
const MAX_IDLE_RSS_MB = 60
const MAX_KIB_PER_IDLE_CONNECTION = 6
const MIN_RATIO = 0.8
const MAX_SERIAL_P99_MS = 1
const MIN_PROXY_THROUGHPUT_RATIO = 0.7
const MAX_ADDED_FIRST_BYTE_P50_US = 200
const MIN_CAPTURE_RATIO_UNDER_BACKLOG = 0.9
const MAX_STATS_MS = 1_000
const MAX_LIST_PAGE_MS = 100
const MAX_TEXT_SEARCH_MS = 500
const MAX_EXPORT_100K_S = 5
const MIN_INGEST_PER_S = 50_000
const MIN_EBPF_NEWPORT_RATIO = 2
const MIN_EBPF_NEWPORT_PER_S = 7_300
const MIN_EBPF_HOT_RATIO = 1
const CARRIED_SHARE = 0.95

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

function ms(n: number | null | undefined): string {
  return n === null || n === undefined ? 'n/a' : n.toFixed(3)
}

function mb(kib: number): string {
  return (kib / KIB_PER_MB).toFixed(1)
}

function ratio(ht: number | null | undefined, ref: number | null | undefined): string {
  if (ht === null || ht === undefined || ref === null || ref === undefined || ref === 0) return 'n/a'
  return (ht / ref).toFixed(2)
}

function verdict(pass: boolean): Verdict {
  return pass ? 'PASS' : 'MISSED'
}

function share(n: number, of: number): string {
  return `${int(n)} of ${int(of)} (${of > 0 ? ((n / of) * 100).toFixed(2) : '0.00'} %)`
}

function hotRows(a: NonNullable<BenchResults['a']>): ReportRow[] {
  const { reference: ref, honeytrap: ht, honeytrapInfo: info } = a
  const hotRatio = ht.perSecond / ref.perSecond
  const storedRow = (label: string, f: HotFigures): ReportRow => ({
    figure: `(a) attacks stored / connections made${label}`,
    reference: '(no storage)',
    honeytrap: f.stored === null ? 'n/a' : `${int(f.stored.rows)} / ${int(f.stored.connected)}`,
    ratio: '',
    target: 'every connection (± unfinished)',
    // Connections cut short (client timeout, reset) may or may not have reached the store: those are the ±.
    verdict: verdict(f.stored !== null && f.stored.rows >= f.stored.finished && f.stored.rows <= f.stored.connected),
  })
  return [
    { figure: '(a) hot port: completed connections/s, 64 in flight, log level warn', reference: int(ref.perSecond), honeytrap: int(ht.perSecond), ratio: ratio(ht.perSecond, ref.perSecond), target: `≥ ${MIN_RATIO} × reference`, verdict: verdict(hotRatio >= MIN_RATIO) },
    roundsRow('(a)', ref, ht),
    storedRow('', ht),
    { figure: '(a) same at log level info (the default)', reference: int(ref.perSecond), honeytrap: int(info.perSecond), ratio: ratio(info.perSecond, ref.perSecond), target: '(reported)', verdict: '' },
    storedRow(' (info)', info),
    { figure: '(a) CPU per connection of the system under test, µs', reference: int(ref.systemCpuUsPerConnection), honeytrap: int(ht.systemCpuUsPerConnection), ratio: ratio(ht.systemCpuUsPerConnection, ref.systemCpuUsPerConnection), target: '(reported)', verdict: '' },
  ]
}

/** Every round's rate and ratio, so a reader sees the spread behind the median. */
function roundsRow(label: string, ref: Measured & Partial<Rounds>, ht: Measured & Partial<Rounds>): ReportRow {
  const r = ref.rounds ?? [ref.perSecond]
  const h = ht.rounds ?? [ht.perSecond]
  return { figure: `${label} every round (median shown above)`, reference: r.map(int).join(' / '), honeytrap: h.map(int).join(' / '), ratio: h.map((v, i) => ratio(v, r[i] ?? Number.NaN)).join(' / '), target: '', verdict: '' }
}

function newPortRows(b: NonNullable<BenchResults['b']>): ReportRow[] {
  const { newport, rate, serial } = b
  const npRatio = newport.honeytrap.perSecond / newport.reference.perSecond
  const lat = (m: Measured): LatencyPick => ({ p50: m.latency?.p50Ms ?? null, p99: m.latency?.p99Ms ?? null })
  const np = { ref: lat(newport.reference), ht: lat(newport.honeytrap) }
  const se = { ref: lat(serial.reference), ht: lat(serial.honeytrap) }
  const ra = { ref: lat(rate.reference), ht: lat(rate.honeytrap) }
  return [
    { figure: '(b) new ports/s, 32 in flight', reference: int(newport.reference.perSecond), honeytrap: int(newport.honeytrap.perSecond), ratio: ratio(newport.honeytrap.perSecond, newport.reference.perSecond), target: `≥ ${MIN_RATIO} × reference`, verdict: verdict(npRatio >= MIN_RATIO) },
    roundsRow('(b)', newport.reference, newport.honeytrap),
    { figure: '(b) new-port connect p50, 32 in flight, ms', reference: ms(np.ref.p50), honeytrap: ms(np.ht.p50), ratio: ratio(np.ht.p50, np.ref.p50), target: '(reported)', verdict: '' },
    { figure: '(b) new-port connect p99, 32 in flight, ms', reference: ms(np.ref.p99), honeytrap: ms(np.ht.p99), ratio: ratio(np.ht.p99, np.ref.p99), target: '(reported)', verdict: '' },
    { figure: '(b) CPU per new port of the system under test, µs', reference: int(newport.reference.systemCpuUsPerConnection), honeytrap: int(newport.honeytrap.systemCpuUsPerConnection), ratio: ratio(newport.honeytrap.systemCpuUsPerConnection, newport.reference.systemCpuUsPerConnection), target: '(reported)', verdict: '' },
    { figure: `(b) new-port connect p50, one at a time (${int(serial.honeytrap.load.started)}), ms`, reference: ms(se.ref.p50), honeytrap: ms(se.ht.p50), ratio: ratio(se.ht.p50, se.ref.p50), target: '(reported)', verdict: '' },
    { figure: '(b) new-port connect p99, one at a time, ms', reference: ms(se.ref.p99), honeytrap: ms(se.ht.p99), ratio: ratio(se.ht.p99, se.ref.p99), target: `≤ ${MAX_SERIAL_P99_MS} ms`, verdict: verdict(se.ht.p99 !== null && se.ht.p99 <= MAX_SERIAL_P99_MS && serial.honeytrap.load.connected === serial.honeytrap.load.started) },
    { figure: '(b) connects ≥ 1 s (or failed) at 3,000 new ports/s offered', reference: share(rate.reference.atLeast1s, rate.reference.offered), honeytrap: share(rate.honeytrap.atLeast1s, rate.honeytrap.offered), ratio: '', target: 'none', verdict: verdict(rate.honeytrap.atLeast1s === 0 && rate.honeytrap.load.connected === rate.honeytrap.offered) },
    { figure: '(b) connect p50 / p99 at 3,000 new ports/s offered, ms', reference: `${ms(ra.ref.p50)} / ${ms(ra.ref.p99)}`, honeytrap: `${ms(ra.ht.p50)} / ${ms(ra.ht.p99)}`, ratio: ratio(ra.ht.p99, ra.ref.p99), target: '(reported)', verdict: '' },
  ]
}

interface LatencyPick {
  readonly p50: number | null
  readonly p99: number | null
}

function memoryRows(c: NonNullable<BenchResults['c']>): ReportRow[] {
  const { reference: ref, honeytrap: ht } = c
  const scanLabel = ht.scanPorts === 65_535 ? '65,535-port scan' : `scan of ports 1-${ht.scanPorts} (--quick)`
  const scanCell = (m: MemoryFigures): string => `${int(m.scan.perSecond)} ports/s, ${int(m.scan.latency?.atLeast1s ?? 0)} ≥ 1 s, ${int(m.scan.load.timeouts)} timeouts`
  return [
    { figure: '(c) RSS 2 s after start-up, MB', reference: mb(ref.startupKiB), honeytrap: mb(ht.startupKiB), ratio: ratio(ht.startupKiB, ref.startupKiB), target: '(reported)', verdict: '' },
    { figure: '(c) RSS idle (settled, 15 s after start-up), MB', reference: mb(ref.idleKiB), honeytrap: mb(ht.idleKiB), ratio: ratio(ht.idleKiB, ref.idleKiB), target: `≤ ${MAX_IDLE_RSS_MB} MB`, verdict: verdict(ht.idleKiB <= MAX_IDLE_RSS_MB * KIB_PER_MB) },
    { figure: `(c) RSS with ${int(ht.heldConnections)} idle connections, MB`, reference: mb(ref.withIdleKiB), honeytrap: mb(ht.withIdleKiB), ratio: ratio(ht.withIdleKiB, ref.withIdleKiB), target: '(reported)', verdict: '' },
    { figure: '(c) RSS per idle connection, KiB', reference: ref.perIdleConnectionKiB.toFixed(2), honeytrap: ht.perIdleConnectionKiB.toFixed(2), ratio: ratio(ht.perIdleConnectionKiB, ref.perIdleConnectionKiB), target: `≤ ${MAX_KIB_PER_IDLE_CONNECTION} KiB`, verdict: verdict(ht.perIdleConnectionKiB <= MAX_KIB_PER_IDLE_CONNECTION && ht.heldConnections === 10_000 && ht.closedByPeerWhileHeld === 0) },
    { figure: '(c) of which anonymous memory (RssAnon: heap, malloc), KiB per idle connection', reference: ref.perIdleConnectionAnonKiB.toFixed(2), honeytrap: ht.perIdleConnectionAnonKiB.toFixed(2), ratio: ratio(ht.perIdleConnectionAnonKiB, ref.perIdleConnectionAnonKiB), target: '(reported)', verdict: '' },
    { figure: `(c) RSS after a ${scanLabel}, MB`, reference: mb(ref.afterScanKiB), honeytrap: mb(ht.afterScanKiB), ratio: ratio(ht.afterScanKiB, ref.afterScanKiB), target: '(reported)', verdict: '' },
    { figure: `(c) the ${scanLabel}, 48 in flight`, reference: scanCell(ref), honeytrap: scanCell(ht), ratio: ratio(ht.scan.perSecond, ref.scan.perSecond), target: '(reported)', verdict: '' },
  ]
}

function usMs(us: number | null): string {
  return us === null ? 'n/a' : ms(us / 1_000)
}

/** A path's latency minus direct's in µs, signed, or n/a. */
function added(path: number | null, direct: number | null): { readonly text: string; readonly us: number | null } {
  if (path === null || direct === null) return { text: 'n/a', us: null }
  const us = path - direct
  return { text: `${us >= 0 ? '+' : '−'}${int(Math.abs(us))}`, us }
}

/** MB/s of a transfer, or why it failed. */
function cellOf(run: BulkRun): string {
  return run.ok ? run.mbPerSecond.toFixed(0) : `failed (${run.error ?? 'unknown'})`
}

function bulkRows(label: string, paths: BulkPaths, megabytes: string): ReportRow[] {
  const { direct, proxy, bare } = paths
  const pass = direct.ok && proxy.ok && direct.mbPerSecond > 0 && proxy.mbPerSecond / direct.mbPerSecond >= MIN_PROXY_THROUGHPUT_RATIO
  const each = (run: BulkMedian): string => run.rounds.map((v) => v.toFixed(0)).join(' / ')
  return [
    { figure: `(d) bulk ${label}, MB/s, ${megabytes} MB on one connection: direct (reference) and proxy`, reference: cellOf(direct), honeytrap: cellOf(proxy), ratio: ratio(proxy.mbPerSecond, direct.mbPerSecond), target: `≥ ${MIN_PROXY_THROUGHPUT_RATIO} × direct`, verdict: verdict(pass) },
    { figure: `(d) ${label}: every round (median shown above)`, reference: each(direct), honeytrap: each(proxy), ratio: proxy.rounds.map((v, i) => ratio(v, direct.rounds[i] ?? Number.NaN)).join(' / '), target: '', verdict: '' },
    { figure: `(d) ${label}: a bare Node relay (reference) and the proxy, MB/s`, reference: cellOf(bare), honeytrap: cellOf(proxy), ratio: ratio(proxy.mbPerSecond, bare.mbPerSecond), target: '(reported)', verdict: '' },
    { figure: `(d) ${label}: bare relay, every round (ratio: bare / direct)`, reference: each(bare), honeytrap: '', ratio: bare.rounds.map((v, i) => ratio(v, direct.rounds[i] ?? Number.NaN)).join(' / '), target: '', verdict: '' },
  ]
}

function proxyRows(d: ProxyFigures): ReportRow[] {
  const { direct, proxy, bare, warm, rounds } = d.latency
  const megabytes = int(d.bulkBytes / 1e6)
  const pair = (p50: number | null, p99: number | null): string => `${usMs(p50)} / ${usMs(p99)}`
  const addedPair = (path: PathLatencyFigures, key: 'connect' | 'firstByte'): string => {
    const p50 = key === 'connect' ? added(path.connectP50Us, direct.connectP50Us) : added(path.firstByteP50Us, direct.firstByteP50Us)
    const p99 = key === 'connect' ? added(path.connectP99Us, direct.connectP99Us) : added(path.firstByteP99Us, direct.firstByteP99Us)
    return `${p50.text} / ${p99.text}`
  }
  const firstAdded = added(proxy.firstByteP50Us, direct.firstByteP50Us)
  const warmAdded = added(warm.firstByteP50Us, direct.firstByteP50Us)
  const failed = (f: Readonly<Record<string, number>>): number => Object.values(f).reduce((s, n) => s + n, 0)
  const latencyOk = failed(proxy.failures) === 0 && failed(direct.failures) === 0 && failed(warm.failures) === 0
  const coldCell = (c: ColdProbe): string => (c.error !== null ? `failed (${c.error})` : pair(c.connectUs, c.firstByteUs))
  const { stored } = d
  return [
    ...bulkRows('upload (attacker to backend)', d.upload, megabytes),
    ...bulkRows('download (backend to attacker)', d.download, megabytes),
    {
      figure: '(d) the same with netns/backend-server.js as the backend (it hashes every byte), MB/s, upload / download: direct (reference) and proxy',
      reference: `${cellOf(d.hashing.upload.direct)} / ${cellOf(d.hashing.download.direct)}`,
      honeytrap: `${cellOf(d.hashing.upload.proxy)} / ${cellOf(d.hashing.download.proxy)}`,
      ratio: `${ratio(d.hashing.upload.proxy.mbPerSecond, d.hashing.upload.direct.mbPerSecond)} / ${ratio(d.hashing.download.proxy.mbPerSecond, d.hashing.download.direct.mbPerSecond)}`,
      target: '(reported)',
      verdict: '',
    },
    {
      figure: '(d) whole-machine CPU per MB, µs, upload / download: direct (reference) and proxy',
      reference: `${int(d.upload.direct.machineCpuUsPerMB)} / ${int(d.download.direct.machineCpuUsPerMB)}`,
      honeytrap: `${int(d.upload.proxy.machineCpuUsPerMB)} / ${int(d.download.proxy.machineCpuUsPerMB)}`,
      ratio: `${ratio(d.upload.proxy.machineCpuUsPerMB, d.upload.direct.machineCpuUsPerMB)} / ${ratio(d.download.proxy.machineCpuUsPerMB, d.download.direct.machineCpuUsPerMB)}`,
      target: '(reported)',
      verdict: '',
    },
    { figure: '(d) relay CPU per MB, µs, upload / download: bare relay (reference) and proxy', reference: `${int(d.upload.bare.relayCpuUsPerMB)} / ${int(d.download.bare.relayCpuUsPerMB)}`, honeytrap: `${int(d.upload.proxy.relayCpuUsPerMB)} / ${int(d.download.proxy.relayCpuUsPerMB)}`, ratio: `${ratio(d.upload.proxy.relayCpuUsPerMB, d.upload.bare.relayCpuUsPerMB)} / ${ratio(d.download.proxy.relayCpuUsPerMB, d.download.bare.relayCpuUsPerMB)}`, target: '(reported)', verdict: '' },
    { figure: `(d) connect p50 / p99 to a warm port, ms, ${int(proxy.count)} sequential connections per path: direct (reference) and proxy`, reference: pair(direct.connectP50Us, direct.connectP99Us), honeytrap: pair(proxy.connectP50Us, proxy.connectP99Us), ratio: ratio(proxy.connectP50Us, direct.connectP50Us), target: '(reported)', verdict: '' },
    { figure: '(d) first byte p50 / p99 (connect() to the first banner byte), ms: direct (reference) and proxy', reference: pair(direct.firstByteP50Us, direct.firstByteP99Us), honeytrap: pair(proxy.firstByteP50Us, proxy.firstByteP99Us), ratio: ratio(proxy.firstByteP50Us, direct.firstByteP50Us), target: '(reported)', verdict: '' },
    { figure: '(d) added first-byte latency p50 (proxy − direct), µs', reference: '', honeytrap: firstAdded.text, ratio: '', target: `≤ ${MAX_ADDED_FIRST_BYTE_P50_US} µs`, verdict: verdict(latencyOk && firstAdded.us !== null && firstAdded.us <= MAX_ADDED_FIRST_BYTE_P50_US) },
    { figure: '(d) added first-byte p50, every round: bare relay (reference) and proxy', reference: rounds.map((r) => added(r.bare.firstByteP50Us, r.direct.firstByteP50Us).text).join(' / '), honeytrap: rounds.map((r) => added(r.proxy.firstByteP50Us, r.direct.firstByteP50Us).text).join(' / '), ratio: '', target: '', verdict: '' },
    {
      figure: `(d) added first-byte latency p50 with warm connections (proxy.targets.*.warm: 2; warm − direct), µs; every round`,
      reference: '',
      honeytrap: `${warmAdded.text}; ${rounds.map((r) => added(r.warm.firstByteP50Us, r.direct.firstByteP50Us).text).join(' / ')}`,
      ratio: '',
      target: `≤ ${MAX_ADDED_FIRST_BYTE_P50_US} µs`,
      verdict: verdict(latencyOk && warmAdded.us !== null && warmAdded.us <= MAX_ADDED_FIRST_BYTE_P50_US),
    },
    { figure: '(d) added connect and first-byte latency p50 / p99 with warm connections (warm − direct), µs', reference: '', honeytrap: `${addedPair(warm, 'connect')}; ${addedPair(warm, 'firstByte')}`, ratio: '', target: '(reported)', verdict: '' },
    { figure: '(d) added connect latency p50 / p99 (path − direct), µs: bare relay (reference) and proxy', reference: addedPair(bare, 'connect'), honeytrap: addedPair(proxy, 'connect'), ratio: '', target: '(reported)', verdict: '' },
    { figure: '(d) added first-byte latency p50 / p99 (path − direct), µs: bare relay (reference) and proxy', reference: addedPair(bare, 'firstByte'), honeytrap: addedPair(proxy, 'firstByte'), ratio: '', target: '(reported)', verdict: '' },
    { figure: '(d) relay CPU per connection in the latency runs, µs: bare relay (reference) and proxy (with and without warm connections)', reference: int(d.latency.bareCpuUsPerConnection), honeytrap: int(d.latency.proxyCpuUsPerConnection), ratio: ratio(d.latency.proxyCpuUsPerConnection, d.latency.bareCpuUsPerConnection), target: '(reported)', verdict: '' },
    { figure: '(d) failed connections in the latency runs: direct (reference) and proxy (+ warm)', reference: String(failed(direct.failures)), honeytrap: `${failed(proxy.failures)} + ${failed(warm.failures)}`, ratio: '', target: 'none', verdict: verdict(latencyOk) },
    { figure: '(d) first connection of the run (proxy port not yet bound): connect / first byte, ms', reference: coldCell(d.cold.direct), honeytrap: coldCell(d.cold.proxy), ratio: ratio(d.cold.proxy.firstByteUs, d.cold.direct.firstByteUs), target: '(reported)', verdict: '' },
    {
      figure: '(d) attacks stored, relayed / proxied connections',
      reference: '(no storage)',
      honeytrap: `${int(stored.rows)}, ${int(stored.relayed)} / ${int(stored.proxied)}`,
      ratio: '',
      target: 'every proxied connection, relayed',
      verdict: verdict(stored.rows === stored.relayed && stored.rows >= stored.proxiedOk && stored.rows <= stored.proxied),
    },
  ]
}

/** (e): the reference column is the sensor with its plugin pipeline off, the honeytrap-ts column the same with it on. */
function pipelineRows(e: PipelineFigures): ReportRow[] {
  const { throughput: t, capture } = e
  const captureRatio = capture.on.perSecond / capture.off.perSecond
  return [
    { figure: `(e) pipeline throughput, attacks/s (default plugins: decode + analyze, downloads off; ${int(t.attacks)} attacks, ${int(t.runs)} runs, ${int(t.failed)} failed)`, reference: '', honeytrap: t.attacksPerSecond.toFixed(0), ratio: '', target: '(reported)', verdict: '' },
    { figure: '(e) pipeline CPU while at full speed, % of one core', reference: '', honeytrap: t.cpuPct.toFixed(0), ratio: '', target: '(reported)', verdict: '' },
    { figure: '(e) hot port under a plugin backlog, completed connections/s: pipeline off / on', reference: int(capture.off.perSecond), honeytrap: int(capture.on.perSecond), ratio: captureRatio.toFixed(2), target: `≥ ${MIN_CAPTURE_RATIO_UNDER_BACKLOG} × off`, verdict: verdict(captureRatio >= MIN_CAPTURE_RATIO_UNDER_BACKLOG) },
    roundsRow('(e)', capture.off, capture.on),
    { figure: '(e) attacks waiting for the plugins when each "on" round ended / processed in it', reference: '', honeytrap: capture.backlogAtEnd.map((b, i) => `${int(b)} / ${int(capture.processed[i] ?? 0)}`).join(', '), ratio: '', target: 'a backlog (> 0)', verdict: verdict(capture.backlogAtEnd.every((b) => b > 0)) },
  ]
}

/** (f): each query's median of five runs on a warm page cache, and its slowest run. */
function analysisRows(f: AnalysisFigures): ReportRow[] {
  const n = int(f.attacks)
  const timed = (t: QueryTiming, maxMs: number): ReportRow => ({
    figure: `(f) ${t.label}, ms median (slowest) over ${n} attacks; ${int(t.matched)} matched`,
    reference: '',
    honeytrap: `${t.medianMs.toFixed(1)} (${t.maxMs.toFixed(1)})`,
    ratio: '',
    target: `≤ ${int(maxMs)} ms`,
    verdict: verdict(t.medianMs <= maxMs),
  })
  // The budget is for 100,000 attacks; a --quick run exports its whole (smaller) month, so it scales.
  const exportBudget = (MAX_EXPORT_100K_S * f.export.attacks) / 100_000
  return [
    { figure: `(f) writer ingest with the full-text index, attacks/s (batches of ${f.ingest.batchSize}, ${n} attacks, file ${mb(f.dbBytes / 1024)} MB)`, reference: '', honeytrap: int(f.ingest.attacksPerSecond), ratio: '', target: `≥ ${int(MIN_INGEST_PER_S)}`, verdict: verdict(f.ingest.attacksPerSecond >= MIN_INGEST_PER_S) },
    timed(f.stats, MAX_STATS_MS),
    timed(f.listPage, MAX_LIST_PAGE_MS),
    ...f.textSearches.map((t) => timed(t, MAX_TEXT_SEARCH_MS)),
    { figure: `(f) attacks export --format jsonl of ${int(f.export.attacks)} attacks through the CLI, s (${mb(f.export.bytes / 1024)} MB)`, reference: '', honeytrap: f.export.seconds.toFixed(2), ratio: '', target: `≤ ${exportBudget.toFixed(1)} s`, verdict: verdict(f.export.seconds <= exportBudget) },
  ]
}

/** (g): the reference column is the sensor on the NFQUEUE monitor, the honeytrap-ts column the same on eBPF. */
function ebpfRows(g: EbpfFigures): ReportRow[] {
  const { newport, hot, rates, idle } = g
  const npRatio = newport.ebpf.perSecond / newport.nfqueue.perSecond
  const hotRatio = hot.ebpf.perSecond / hot.nfqueue.perSecond
  const p = (m: Measured): { p50: number | null; p99: number | null } => ({ p50: m.latency?.p50Ms ?? null, p99: m.latency?.p99Ms ?? null })
  return [
    {
      figure: '(g) new ports/s, 32 in flight: NFQUEUE monitor (reference) / eBPF monitor',
      reference: int(newport.nfqueue.perSecond),
      honeytrap: int(newport.ebpf.perSecond),
      ratio: npRatio.toFixed(2),
      target: `≥ ${MIN_EBPF_NEWPORT_RATIO} × NFQUEUE and ≥ ${int(MIN_EBPF_NEWPORT_PER_S)}/s`,
      verdict: verdict(npRatio >= MIN_EBPF_NEWPORT_RATIO && newport.ebpf.perSecond >= MIN_EBPF_NEWPORT_PER_S),
    },
    roundsRow('(g)', newport.nfqueue, newport.ebpf),
    { figure: '(g) new-port connect p50 / p99, 32 in flight, ms', reference: `${ms(p(newport.nfqueue).p50)} / ${ms(p(newport.nfqueue).p99)}`, honeytrap: `${ms(p(newport.ebpf).p50)} / ${ms(p(newport.ebpf).p99)}`, ratio: ratio(p(newport.ebpf).p99, p(newport.nfqueue).p99), target: '(reported)', verdict: '' },
    { figure: '(g) generator CPU during new ports, % of one core (the load generator\'s own limit)', reference: int(newport.nfqueue.generatorCpuPct), honeytrap: int(newport.ebpf.generatorCpuPct), ratio: '', target: '(reported)', verdict: '' },
    { figure: '(g) hot port: completed connections/s, 64 in flight', reference: int(hot.nfqueue.perSecond), honeytrap: int(hot.ebpf.perSecond), ratio: hotRatio.toFixed(2), target: `≥ ${MIN_EBPF_HOT_RATIO} × NFQUEUE`, verdict: verdict(hotRatio >= MIN_EBPF_HOT_RATIO) },
    roundsRow('(g)', hot.nfqueue, hot.ebpf),
    // The target holds at every rate the machine can carry: one no higher than the best rate the eBPF sensor reached
    // in the closed loop of the same run (its capacity), and at which its connections completed at (95 % of) the
    // offered rate. Past that, handshakes queue up and overflow whatever the monitor: reported. Completion alone is
    // not enough: connects that a retransmitted SYN completes a second later still count as completed.
    ...rates.map((r) => {
      const capacity = Math.max(...(newport.ebpf.rounds ?? [newport.ebpf.perSecond]))
      const carried = r.offered <= capacity && r.ebpf.perSecond >= CARRIED_SHARE * r.offered
      return {
        figure: `(g) connects ≥ 1 s (or failed) at ${int(r.offered)} new ports/s offered${carried ? '' : ` (past what the machine carries: ${int(capacity)}/s in the closed loop, ${int(r.ebpf.perSecond)}/s completed)`}; p99 ms`,
        reference: `${share(r.nfqueue.atLeast1s, r.nfqueue.offered)}; ${ms(p(r.nfqueue).p99)}`,
        honeytrap: `${share(r.ebpf.atLeast1s, r.ebpf.offered)}; ${ms(p(r.ebpf).p99)}`,
        ratio: '',
        target: carried ? 'none (eBPF)' : '(reported)',
        verdict: carried ? verdict(r.ebpf.atLeast1s === 0 && r.ebpf.load.connected === r.ebpf.offered) : ('' as const),
      }
    }),
    { figure: '(g) RSS idle (settled, 15 s after start-up), MB', reference: mb(idle.nfqueue.idleKiB), honeytrap: mb(idle.ebpf.idleKiB), ratio: ratio(idle.ebpf.idleKiB, idle.nfqueue.idleKiB), target: '(reported)', verdict: '' },
  ]
}

/** Every row the selected sections produced, in the issue's order. */
export function buildRows(results: BenchResults): ReportRow[] {
  return [
    ...(results.a === null ? [] : hotRows(results.a)),
    ...(results.b === null ? [] : newPortRows(results.b)),
    ...(results.c === null ? [] : memoryRows(results.c)),
    ...(results.d === null ? [] : proxyRows(results.d)),
    ...(results.e === null ? [] : pipelineRows(results.e)),
    ...(results.f === null ? [] : analysisRows(results.f)),
    ...(results.g === null ? [] : ebpfRows(results.g)),
  ]
}

function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

/** The main table: figure, reference, honeytrap-ts, ratio, target, result. */
export function formatResultsTable(rows: readonly ReportRow[]): string {
  return markdownTable(
    ['figure', 'reference', 'honeytrap-ts', 'ratio', 'target', 'result'],
    rows.map((r) => [r.figure, r.reference, r.honeytrap, r.ratio, r.target, r.verdict]),
  )
}

/** Where the CPU went in each closed-loop run: tells whether the generator or the system under test was the limit. */
export function formatLoadTable(results: BenchResults): string {
  const rows: [string, HotFigures | Measured][] = []
  if (results.generatorCheck !== null) {
    rows.push(['hot: plain server (no queue), 1 generator process', results.generatorCheck.plain1])
    rows.push(['hot: plain server (no queue), 2 generator processes', results.generatorCheck.plain2])
  }
  if (results.a !== null) {
    rows.push([`hot: reference, ${results.options.genProcs} generator process(es)`, results.a.reference])
    rows.push(['hot: honeytrap-ts, log level warn', results.a.honeytrap])
    rows.push(['hot: honeytrap-ts, log level info', results.a.honeytrapInfo])
  }
  if (results.c !== null) {
    rows.push(['scan: reference', results.c.reference.scan])
    rows.push(['scan: honeytrap-ts', results.c.honeytrap.scan])
  }
  if (results.b !== null) {
    rows.push(['new port: reference', results.b.newport.reference])
    rows.push(['new port: honeytrap-ts', results.b.newport.honeytrap])
    rows.push(['3,000/s offered: reference', results.b.rate.reference])
    rows.push(['3,000/s offered: honeytrap-ts', results.b.rate.honeytrap])
    rows.push(['one at a time: reference', results.b.serial.reference])
    rows.push(['one at a time: honeytrap-ts', results.b.serial.honeytrap])
  }
  const pct = (n: number): string => `${Math.round(n)} %`
  return markdownTable(
    ['run', 'connections/s', 'generator CPU', 'system CPU (main thread)', 'system CPU/conn (µs)', 'machine busy', 'other processes', 'SYN retransmits', 'drops: queue full / socket full / listen', 'failures'],
    rows.map(([name, m]) => [
      name,
      int(m.perSecond),
      pct(m.generatorCpuPct),
      `${pct(m.systemCpuPct)} (${pct(m.mainThreadCpuPct)})`,
      int(m.systemCpuUsPerConnection),
      pct(m.machineBusyPct),
      pct(m.foreignCpuPct),
      int(m.kernel.synRetransmits),
      `${int(m.kernel.queueDropped)} / ${int(m.kernel.queueUserDropped)} / ${int(m.kernel.listenDrops)}`,
      String(m.load.refused + m.load.timeouts + m.load.stalled + Object.values(m.load.errors).reduce((s, n) => s + n, 0)),
    ]),
  )
}

/** Where the CPU went in the bulk transfers of (d): the median run of each path and direction. */
export function formatProxyLoadTable(d: ProxyFigures): string {
  const pct = (n: number): string => `${Math.round(n)} %`
  const runs: [string, BulkRun][] = []
  for (const direction of ['upload', 'download'] as const) {
    runs.push([`${direction}: direct`, d[direction].direct], [`${direction}: proxy (honeytrap-ts)`, d[direction].proxy], [`${direction}: bare Node relay`, d[direction].bare])
  }
  return markdownTable(
    ['run', 'MB/s', 'generator CPU', 'relay CPU (main thread)', 'backend CPU', 'machine busy', 'machine CPU per MB (µs)', 'other processes'],
    runs.map(([name, r]) => [
      name,
      r.mbPerSecond.toFixed(0),
      pct(r.generatorCpuPct),
      r.path === 'direct' ? '(none)' : `${pct(r.relayCpuPct)} (${pct(r.relayMainThreadCpuPct)})`,
      pct(r.backendCpuPct),
      pct(r.machineBusyPct),
      int(r.machineCpuUsPerMB),
      pct(r.foreignCpuPct),
    ]),
  )
}

/** One line per missed target, for the end of the output. */
export function missedTargets(rows: readonly ReportRow[]): string[] {
  return rows.filter((r) => r.verdict === 'MISSED').map((r) => `MISSED: ${r.figure}: honeytrap-ts ${r.honeytrap} (reference ${r.reference}), target ${r.target}`)
}

// A process at or above this share of one core is taken as saturated (a Node process is one JavaScript thread).
const SATURATED_PCT = 85

/**
 * Which side limited each closed-loop figure, from where the CPU went: the generator check (a plain server with no
 * queue, driven by one and by two generator processes), then the generator's and the main threads' CPU in (a).
 */
export function bottleneckNotes(results: BenchResults): string[] {
  const notes: string[] = []
  const check = results.generatorCheck
  if (check !== null) {
    const gain = check.plain2.perSecond / check.plain1.perSecond
    notes.push(
      `Generator check: one generator process reached ${int(check.plain1.perSecond)} connections/s against a plain server at ` +
        `${Math.round(check.plain1.generatorCpuPct)} % of a core; two processes reached ${int(check.plain2.perSecond)} (× ${gain.toFixed(2)}). ` +
        (gain < 1.15 ? 'A second process adds little on 2 cores: generator and server share the same CPUs.' : 'A second process helps: consider --gen-procs 2.'),
    )
  }
  const a = results.a
  if (a !== null) {
    const describe = (name: string, m: Measured): string => {
      const generatorBound = m.generatorCpuPct >= SATURATED_PCT
      const systemBound = m.mainThreadCpuPct >= SATURATED_PCT
      const limit = generatorBound && !systemBound ? 'the generator' : systemBound && !generatorBound ? `${name}'s main thread` : generatorBound ? 'both' : 'neither alone (latency or the kernel)'
      return `${name}: generator ${Math.round(m.generatorCpuPct)} %, main thread ${Math.round(m.mainThreadCpuPct)} %: limited by ${limit}`
    }
    notes.push(`Hot port: ${describe('reference', a.reference)}; ${describe('honeytrap-ts', a.honeytrap)}.`)
    if (a.reference.generatorCpuPct >= SATURATED_PCT) {
      notes.push('The reference figure is a lower bound of its capacity (the generator ran out first), so the ratio in (a) is an upper bound.')
    }
  }
  const d = results.d
  if (d !== null) {
    const describe = (name: string, r: BulkRun): string =>
      `${name} ${Math.round(r.mbPerSecond)} MB/s with honeytrap-ts at ${Math.round(r.relayCpuPct)} % (main thread ${Math.round(r.relayMainThreadCpuPct)} %), ` +
      `the generator at ${Math.round(r.generatorCpuPct)} %, the backend at ${Math.round(r.backendCpuPct)} % and the machine at ${Math.round(r.machineBusyPct)} % of ${results.machine.cpus * 100} %`
    notes.push(`Proxy bulk: ${describe('upload', d.upload.proxy)}; ${describe('download', d.download.proxy)}.`)
  }
  const foreign = [
    ...(a === null ? [] : [a.reference, a.honeytrap, a.honeytrapInfo]),
    ...(results.b === null ? [] : [results.b.newport.reference, results.b.newport.honeytrap, results.b.rate.reference, results.b.rate.honeytrap]),
    ...(d === null ? [] : [d.upload.direct, d.upload.proxy, d.upload.bare, d.download.direct, d.download.proxy, d.download.bare]),
  ].map((m) => m.foreignCpuPct)
  const worst = Math.max(0, ...foreign)
  if (worst >= 10) notes.push(`Other processes on the machine used up to ${Math.round(worst)} % of a core during a run: figures of that run are noisy.`)
  return notes
}
