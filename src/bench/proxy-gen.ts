import { cpus } from 'node:os'
import { connect, type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { busyPercentOfOneCpu, readMachineTicks, readMainThreadCpuMs, readProcUsage, type MachineTicks } from './proc-usage.js'

/**
 * The client of the benchmark's proxy section (d), run in the attacker namespace: `node proxy-gen.js '<json spec>'`
 * prints one JSON result line. Each run is bounded in bytes or connections and in time, and a hard deadline ends the
 * process whatever is still open. The client must never be what limits a figure: uploads write one pre-allocated
 * buffer again and again, and downloads read into one pre-allocated buffer (`onread`), so no byte is made or copied
 * in JavaScript.
 *
 * - upload: one connection writes `bytes`, half-closes, and waits for the sink's count (or digest) line and FIN;
 * - download: one connection reads until the source's FIN;
 * - latency: `count` rounds of one connection to each path in turn (the order rotates between rounds), one at a
 *   time: connect time and time to the first byte of the banner, then a half-close and the wait for the close.
 * A bulk run also reads the CPU time of `watchPids` (every namespace shares /proc) and of the machine exactly at the
 * start and the end of the transfer, so that the CPU figures of a short transfer are not diluted by process start-up.
 */

export type ProxyGenSpec = BulkSpec | LatencySpec

export interface BulkSpec {
  readonly mode: 'upload' | 'download'
  readonly host: string
  readonly port: number
  readonly bytes: number // upload: bytes to send; download: bytes the source sends (checked)
  readonly timeoutMs: number
  readonly watchPids: readonly number[]
}

export interface LatencyPath {
  readonly name: string
  readonly host: string
  readonly port: number
}

export interface LatencySpec {
  readonly mode: 'latency'
  readonly paths: readonly LatencyPath[]
  readonly count: number // connections per path
  readonly connectTimeoutMs: number // bounds each connection, connect to close
  readonly deadlineMs: number // the whole run
}

export interface BulkResult {
  readonly mode: 'upload' | 'download'
  readonly ok: boolean // every byte went through and the peer confirmed (upload) or closed cleanly (download)
  readonly bytes: number // bytes sent (upload) or received (download)
  readonly transferMs: number // from the 'connect' event to the sink's answer (upload) or the source's FIN
  readonly connectMs: number // -1 when it never connected
  readonly error: string | null
  // Over the transfer: this generator, each of watchPids (every thread, then the main thread; null when unreadable),
  // and the whole machine in % of one CPU.
  readonly cpuMs: number
  readonly watchedCpuMs: readonly (number | null)[]
  readonly watchedMainThreadCpuMs: readonly (number | null)[]
  readonly machineBusyPct: number
}

export interface PathLatencies {
  readonly connectUs: number[] // connect() to the 'connect' event
  readonly firstByteUs: number[] // connect() to the first byte of the banner
  readonly failures: Record<string, number> // by error code, 'timeout' or 'no-banner'
}

export interface LatencyResult {
  readonly mode: 'latency'
  readonly paths: Record<string, PathLatencies>
  readonly windowMs: number
  readonly cpuMs: number
}

const BUFFER_BYTES = 1024 * 1024
const MAX_BULK_BYTES = 8 * 1024 ** 3 // a bound on a typo
const MAX_LATENCY_COUNT = 100_000
const DEADLINE_SLACK_MS = 10_000

function cpuMsNow(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1_000
}

function sinceMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6
}

/** CPU readings at one instant: this process, the watched ones (every thread, then the main thread), the machine. */
interface CpuMark {
  readonly own: number
  readonly watched: readonly (number | null)[]
  readonly watchedMain: readonly (number | null)[]
  readonly machine: MachineTicks
}

function markCpu(pids: readonly number[]): CpuMark {
  const read = (f: () => number): number | null => {
    try {
      return f()
    } catch {
      return null // the process is gone
    }
  }
  return {
    own: cpuMsNow(),
    watched: pids.map((pid) => read(() => readProcUsage(pid).cpuMs)),
    watchedMain: pids.map((pid) => read(() => readMainThreadCpuMs(pid))),
    machine: readMachineTicks(),
  }
}

function cpuBetween(start: CpuMark, end: CpuMark): Pick<BulkResult, 'cpuMs' | 'watchedCpuMs' | 'watchedMainThreadCpuMs' | 'machineBusyPct'> {
  const delta = (a: readonly (number | null)[], b: readonly (number | null)[]): (number | null)[] =>
    a.map((v, i) => {
      const w = b[i]
      return v === null || w === null || w === undefined ? null : w - v
    })
  return {
    cpuMs: end.own - start.own,
    watchedCpuMs: delta(start.watched, end.watched),
    watchedMainThreadCpuMs: delta(start.watchedMain, end.watchedMain),
    machineBusyPct: busyPercentOfOneCpu(start.machine, end.machine, { cpus: cpus().length }),
  }
}

/** One bulk connection, timed from its 'connect' event (which calls `onConnect`) to the peer's FIN; `check` names what went wrong. */
function bulk(
  spec: BulkSpec,
  socket: Socket,
  options: { readonly onConnect: () => void; readonly check: () => string | null; readonly moved: () => number },
): Promise<BulkResult> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint()
    let connectedAt = 0n
    let connectMs = -1
    let start: CpuMark | null = null
    let settled = false
    const finish = (error: string | null): void => {
      if (settled) return
      settled = true
      const end = markCpu(spec.watchPids)
      clearTimeout(timer)
      const transferMs = connectMs < 0 ? 0 : sinceMs(connectedAt)
      socket.destroy()
      const problem = error ?? options.check()
      const cpu = cpuBetween(start ?? end, end)
      resolve({ mode: spec.mode, ok: problem === null, bytes: options.moved(), transferMs, connectMs, error: problem, ...cpu })
    }
    const timer = setTimeout(() => finish('timeout'), spec.timeoutMs)
    socket.once('connect', () => {
      start = markCpu(spec.watchPids)
      connectedAt = process.hrtime.bigint()
      connectMs = sinceMs(t0)
      options.onConnect()
    })
    socket.once('end', () => finish(null))
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message))
  })
}

/** The byte count in a sink's answer: a bare number (proxy-backend.ts) or backend-server's `{"bytes":N,...}` line. */
function countedBytes(answer: string): number | null {
  const text = answer.trim()
  if (!text.startsWith('{')) return text === '' ? null : Number(text)
  try {
    const bytes = (JSON.parse(text) as { bytes?: unknown }).bytes
    return typeof bytes === 'number' ? bytes : null
  } catch {
    return null
  }
}

function upload(spec: BulkSpec, buffer: Buffer): Promise<BulkResult> {
  let sent = 0
  let answer = ''
  const socket = connect({ host: spec.host, port: spec.port, allowHalfOpen: true })
  const pump = (): void => {
    while (sent < spec.bytes && !socket.destroyed) {
      const piece = spec.bytes - sent >= buffer.length ? buffer : buffer.subarray(0, spec.bytes - sent)
      sent += piece.length
      // The same buffer is queued again and again: its bytes never change, so no copy is needed.
      if (!socket.write(piece)) {
        socket.once('drain', pump)
        return
      }
    }
    if (!socket.destroyed) socket.end()
  }
  socket.setEncoding('latin1')
  socket.on('data', (text: string) => {
    answer += text
  })
  const check = (): string | null => (sent === spec.bytes && countedBytes(answer) === spec.bytes ? null : `sent ${sent}, sink counted ${answer.trim().slice(0, 200) || 'nothing'}`)
  return bulk(spec, socket, { onConnect: pump, check, moved: () => sent })
}

function download(spec: BulkSpec, buffer: Buffer): Promise<BulkResult> {
  let received = 0
  // onread: the kernel copies straight into `buffer`, up to its size per read; the bytes are only counted.
  const socket = connect({
    host: spec.host,
    port: spec.port,
    onread: {
      buffer,
      callback: (n: number): boolean => {
        received += n
        return true
      },
    },
  })
  const check = (): string | null => (received === spec.bytes ? null : `received ${received} of ${spec.bytes}`)
  // Nothing to say: the source talks until it is done.
  return bulk(spec, socket, { onConnect: () => socket.end(), check, moved: () => received })
}

interface Probe {
  readonly connectUs: number
  readonly firstByteUs: number
  readonly error: string | null
}

/** One connection: connect, wait for the first banner byte, half-close, wait for the close. Never rejects. */
function probe(path: LatencyPath, timeoutMs: number): Promise<Probe> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint()
    let connectUs = -1
    let firstByteUs = -1
    let settled = false
    const socket = connect({ host: path.host, port: path.port, noDelay: true })
    const finish = (error: string | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ connectUs, firstByteUs, error: error ?? (firstByteUs < 0 ? 'no-banner' : null) })
    }
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    socket.once('connect', () => {
      connectUs = Number(process.hrtime.bigint() - t0) / 1_000
    })
    socket.on('data', () => {
      if (firstByteUs >= 0) return
      firstByteUs = Number(process.hrtime.bigint() - t0) / 1_000
      socket.end()
    })
    socket.once('close', () => finish(null))
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message))
  })
}

async function latency(spec: LatencySpec): Promise<LatencyResult> {
  if (!Number.isSafeInteger(spec.count) || spec.count < 0 || spec.count > MAX_LATENCY_COUNT) throw new RangeError(`count must be 0..${MAX_LATENCY_COUNT}`)
  const cpuAtStart = cpuMsNow()
  const paths: Record<string, PathLatencies> = {}
  for (const path of spec.paths) paths[path.name] = { connectUs: [], firstByteUs: [], failures: {} }
  const started = process.hrtime.bigint()
  for (let i = 0; i < spec.count && sinceMs(started) < spec.deadlineMs; i++) {
    // Rotating the order spreads any effect of "the connection just before" evenly over the paths.
    const shift = i % spec.paths.length
    for (const path of [...spec.paths.slice(shift), ...spec.paths.slice(0, shift)]) {
      const result = await probe(path, spec.connectTimeoutMs)
      const into = paths[path.name]!
      if (result.error !== null) into.failures[result.error] = (into.failures[result.error] ?? 0) + 1
      else {
        into.connectUs.push(result.connectUs)
        into.firstByteUs.push(result.firstByteUs)
      }
    }
  }
  return { mode: 'latency', paths, windowMs: sinceMs(started), cpuMs: cpuMsNow() - cpuAtStart }
}

/** Runs one spec to its end. */
export async function runProxyGen(spec: ProxyGenSpec): Promise<BulkResult | LatencyResult> {
  if (spec.mode === 'latency') return latency(spec)
  if (!Number.isSafeInteger(spec.bytes) || spec.bytes < 0 || spec.bytes > MAX_BULK_BYTES) throw new RangeError(`bytes must be 0..${MAX_BULK_BYTES}`)
  const buffer = Buffer.alloc(BUFFER_BYTES, 0xa5)
  return spec.mode === 'upload' ? upload(spec, buffer) : download(spec, buffer)
}

/** How long a spec may run before the hard deadline ends the process. */
export function proxyGenBoundMs(spec: ProxyGenSpec): number {
  return (spec.mode === 'latency' ? spec.deadlineMs + spec.connectTimeoutMs : spec.timeoutMs) + DEADLINE_SLACK_MS
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ProxyGenSpec
  setTimeout(() => {
    process.stderr.write(`proxy-gen: hard deadline passed in mode ${spec.mode}\n`)
    process.exit(3)
  }, proxyGenBoundMs(spec)).unref()
  runProxyGen(spec).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0)),
    (err: unknown) => {
      process.stderr.write(`proxy-gen: ${String(err)}\n`)
      process.exit(1)
    },
  )
}
