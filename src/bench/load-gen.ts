import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'

/**
 * The benchmark's load generator, run in the attacker namespace: `node load-gen.js '<json LoadSpec>'` prints one JSON
 * result line on stdout (`hold` prints a `hold-ready` line first). Every mode is bounded both in count (ports,
 * connections) and in time (its own duration plus a hard deadline that ends the process), so it always stops by itself.
 * It is one file (a little over 300 lines) because it runs standalone, and its modes share the connection code.
 *
 * Two connection styles:
 * - reply-then-close (hot): connect, send the request, and at the first reply bytes half-close; done at 'close'.
 *   The server ends it after our FIN (honeytrap-ts) or right after its reply (the reference); either way, done.
 * - send-and-close (every new-port mode): connect, send the request with FIN, read until the server closes. A port
 *   without a template stays silent in honeytrap-ts, so waiting for a reply there would wait for its idle timeout.
 */

export type LoadSpec = HotSpec | NewPortSpec | RateSpec | SerialSpec | HoldSpec

/** Closed loops on one port: `concurrency` connections in flight, counted after `warmupMs` for `durationMs`. */
export interface HotSpec {
  readonly mode: 'hot'
  readonly host: string
  readonly port: number
  readonly concurrency: number
  readonly warmupMs: number
  readonly durationMs: number
}

/**
 * Closed loops where every connection goes to the next never-used port of fromPort, fromPort + portStep, ... toPort,
 * counted after `warmupMs` (as the hot loop is: the first second runs cold code on both sides) for `durationMs`.
 */
export interface NewPortSpec {
  readonly mode: 'newport'
  readonly host: string
  readonly fromPort: number
  readonly toPort: number
  readonly portStep: number
  readonly concurrency: number
  readonly warmupMs: number
  readonly durationMs: number
  readonly connectTimeoutMs: number
}

/** Open loop: `ratePerSecond` connections per second to fresh ports for `durationMs`, whatever the answers. */
export interface RateSpec {
  readonly mode: 'rate'
  readonly host: string
  readonly fromPort: number
  readonly portStep: number
  readonly ratePerSecond: number
  readonly durationMs: number
  readonly connectTimeoutMs: number
}

/** One connection at a time, each to a fresh port, `count` of them or until `deadlineMs`. */
export interface SerialSpec {
  readonly mode: 'serial'
  readonly host: string
  readonly fromPort: number
  readonly portStep: number
  readonly count: number
  readonly deadlineMs: number
}

/** Opens `count` silent connections to one port (`concurrency` connects at a time), holds them until stdin closes. */
export interface HoldSpec {
  readonly mode: 'hold'
  readonly host: string
  readonly port: number
  readonly count: number
  readonly concurrency: number
  readonly holdMs: number
}

/** Outcome counters every mode reports. */
export interface LoadResult {
  readonly mode: LoadSpec['mode']
  readonly windowMs: number // the measured window: what rates divide by
  readonly started: number // connections attempted
  readonly connected: number // every one of these becomes a stored attack in honeytrap-ts
  readonly completed: number // finished within the window
  readonly finished: number // finished cleanly, window or not (hot: warm-up and drain included)
  readonly refused: number
  readonly timeouts: number // no connect within the connect timeout
  readonly stalled: number // connected but not closed within STALL_MS
  readonly errors: Record<string, number> // by error code
  readonly connectUs: readonly number[] // connect latency of every connection (new-port modes), microseconds
  readonly portsExhausted: boolean // the port range ended before the duration
  readonly maxLagMs: number // rate mode: how late the generator launched a connection at worst
  readonly cpuMs: number // the generator's own CPU time over the window
  readonly connectedAt?: number // hold mode: when every connection was up, ms after start
  readonly closedByPeer?: number // hold mode: connections the server closed while they were held
}

export const REQUEST = Buffer.from('GET / HTTP/1.0\r\n\r\n', 'latin1')
const STALL_MS = 5_000 // after connect, longest wait for the close
const DEADLINE_SLACK_MS = 20_000 // past the mode's own bound, the process exits whatever is still open
const HELD = { inWindow: true, keepLatency: false } as const // hold mode: counted, latencies not kept

type Style = 'reply-then-close' | 'send-and-close'
type Outcome = 'done' | 'refused' | 'timeout' | 'stalled' | 'error'

interface Exchange {
  readonly outcome: Outcome
  readonly connectUs: number // -1 when it never connected
  readonly code: string | null
}

/** One connection from connect to close, bounded by `connectTimeoutMs` then STALL_MS. Never rejects. */
function exchange(host: string, port: number, options: { readonly style: Style; readonly connectTimeoutMs: number }): Promise<Exchange> {
  const { style, connectTimeoutMs } = options
  return new Promise((resolve) => {
    const started = process.hrtime.bigint()
    let connectUs = -1
    let replied = false
    let settled = false
    const socket = connect({ host, port, noDelay: true })
    const finish = (outcome: Outcome, code: string | null = null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ outcome, connectUs, code })
    }
    let timer = setTimeout(() => finish('timeout'), connectTimeoutMs)
    socket.once('connect', () => {
      connectUs = Number((process.hrtime.bigint() - started) / 1_000n)
      clearTimeout(timer)
      timer = setTimeout(() => finish('stalled'), STALL_MS)
      if (style === 'send-and-close') socket.end(REQUEST)
      else socket.write(REQUEST)
    })
    socket.on('data', () => {
      if (replied) return
      replied = true
      if (style === 'reply-then-close') socket.end()
    })
    socket.once('close', () => finish(connectUs >= 0 ? 'done' : 'error', 'closed-before-connect'))
    socket.once('error', (err: NodeJS.ErrnoException) => {
      finish(connectUs < 0 && err.code === 'ECONNREFUSED' ? 'refused' : 'error', err.code ?? 'unknown')
    })
  })
}

/** Mutable counters behind a LoadResult. */
class Tally {
  started = 0
  connected = 0
  completed = 0
  finished = 0
  refused = 0
  timeouts = 0
  stalled = 0
  readonly errors: Record<string, number> = {}
  readonly connectUs: number[] = []

  add(result: Exchange, options: { readonly inWindow: boolean; readonly keepLatency: boolean }): void {
    const { inWindow, keepLatency } = options
    this.started++
    if (result.connectUs >= 0) {
      this.connected++
      if (keepLatency) this.connectUs.push(result.connectUs)
    }
    if (result.outcome === 'done') this.finished++
    if (result.outcome === 'done' && inWindow) this.completed++
    else if (result.outcome === 'refused') this.refused++
    else if (result.outcome === 'timeout') this.timeouts++
    else if (result.outcome === 'stalled') this.stalled++
    else if (result.outcome === 'error') this.errors[result.code ?? 'unknown'] = (this.errors[result.code ?? 'unknown'] ?? 0) + 1
  }

  result(mode: LoadSpec['mode'], extra: Partial<LoadResult> & { windowMs: number; cpuMs: number }): LoadResult {
    const { started, connected, completed, finished, refused, timeouts, stalled, errors, connectUs } = this
    return { mode, started, connected, completed, finished, refused, timeouts, stalled, errors, connectUs, portsExhausted: false, maxLagMs: 0, ...extra }
  }
}

function cpuMsNow(): number {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1_000
}

/** Hands out ports fromPort, fromPort + step, ... up to toPort, then null. */
function portCounter(range: { readonly fromPort: number; readonly step: number; readonly toPort: number }): () => number | null {
  const { step, toPort } = range
  let next = range.fromPort
  return () => {
    if (next > toPort) return null
    const port = next
    next += step
    return port
  }
}

async function runHot(spec: HotSpec): Promise<LoadResult> {
  const tally = new Tally()
  const windowStart = Date.now() + spec.warmupMs
  const windowEnd = windowStart + spec.durationMs
  let cpuAtStart = cpuMsNow()
  let cpuAtEnd = Number.NaN
  const startTimer = setTimeout(() => (cpuAtStart = cpuMsNow()), spec.warmupMs)
  const endTimer = setTimeout(() => (cpuAtEnd = cpuMsNow()), spec.warmupMs + spec.durationMs)
  const loop = async (): Promise<void> => {
    while (Date.now() < windowEnd) {
      const result = await exchange(spec.host, spec.port, { style: 'reply-then-close', connectTimeoutMs: 3_000 })
      const now = Date.now()
      tally.add(result, { inWindow: now >= windowStart && now < windowEnd, keepLatency: false })
    }
  }
  await Promise.all(Array.from({ length: spec.concurrency }, loop))
  clearTimeout(startTimer)
  clearTimeout(endTimer)
  if (Number.isNaN(cpuAtEnd)) cpuAtEnd = cpuMsNow()
  return tally.result('hot', { windowMs: spec.durationMs, cpuMs: cpuAtEnd - cpuAtStart })
}

async function runNewPort(spec: NewPortSpec): Promise<LoadResult> {
  const tally = new Tally()
  const nextPort = portCounter({ fromPort: spec.fromPort, step: spec.portStep, toPort: spec.toPort })
  const windowStart = performance.now() + spec.warmupMs
  const end = windowStart + spec.durationMs
  let cpuAtStart = cpuMsNow()
  const startTimer = setTimeout(() => (cpuAtStart = cpuMsNow()), spec.warmupMs)
  let exhausted = false
  let lastDone = windowStart
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const port = nextPort()
      if (port === null) {
        exhausted = true
        return
      }
      const result = await exchange(spec.host, port, { style: 'send-and-close', connectTimeoutMs: spec.connectTimeoutMs })
      lastDone = performance.now()
      const inWindow = lastDone >= windowStart && lastDone <= end
      tally.add(result, { inWindow, keepLatency: inWindow })
    }
  }
  await Promise.all(Array.from({ length: spec.concurrency }, loop))
  clearTimeout(startTimer)
  // A run that ran out of ports before its duration is measured up to its last connection, not to the duration.
  const windowMs = exhausted ? Math.max(0, lastDone - windowStart) : spec.durationMs
  return tally.result('newport', { windowMs, cpuMs: cpuMsNow() - cpuAtStart, portsExhausted: exhausted })
}

async function runRate(spec: RateSpec): Promise<LoadResult> {
  const tally = new Tally()
  const total = Math.floor((spec.ratePerSecond * spec.durationMs) / 1_000)
  const inFlight = new Set<Promise<void>>()
  const started = performance.now()
  const cpuAtStart = cpuMsNow()
  let launched = 0
  let maxLagMs = 0
  const launch = (port: number): void => {
    const p = exchange(spec.host, port, { style: 'send-and-close', connectTimeoutMs: spec.connectTimeoutMs }).then((r) => {
      tally.add(r, { inWindow: true, keepLatency: true })
      inFlight.delete(p)
    })
    inFlight.add(p)
  }
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const elapsedMs = performance.now() - started
      const due = Math.min(total, Math.floor((elapsedMs * spec.ratePerSecond) / 1_000) + 1)
      if (due > launched) maxLagMs = Math.max(maxLagMs, elapsedMs - (launched * 1_000) / spec.ratePerSecond)
      while (launched < due) launch(spec.fromPort + spec.portStep * launched++)
      if (launched >= total) resolve()
      else setTimeout(tick, 1)
    }
    tick()
  })
  const windowMs = performance.now() - started
  while (inFlight.size > 0) await Promise.all([...inFlight])
  return tally.result('rate', { windowMs, cpuMs: cpuMsNow() - cpuAtStart, maxLagMs })
}

async function runSerial(spec: SerialSpec): Promise<LoadResult> {
  const tally = new Tally()
  const started = performance.now()
  const cpuAtStart = cpuMsNow()
  for (let i = 0; i < spec.count && performance.now() - started < spec.deadlineMs; i++) {
    const result = await exchange(spec.host, spec.fromPort + spec.portStep * i, { style: 'send-and-close', connectTimeoutMs: 3_000 })
    tally.add(result, { inWindow: true, keepLatency: true })
  }
  return tally.result('serial', { windowMs: performance.now() - started, cpuMs: cpuMsNow() - cpuAtStart })
}

async function runHold(spec: HoldSpec): Promise<LoadResult> {
  const tally = new Tally()
  const sockets: Socket[] = []
  let released = false
  let closedByPeer = 0
  const started = performance.now()
  const cpuAtStart = cpuMsNow()
  let opened = 0
  const openOne = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = process.hrtime.bigint()
      const socket = connect({ host: spec.host, port: spec.port })
      let up = false
      const timer = setTimeout(() => {
        tally.add({ outcome: 'timeout', connectUs: -1, code: null }, HELD)
        socket.destroy()
        resolve()
      }, 3_000)
      socket.once('connect', () => {
        clearTimeout(timer)
        up = true
        sockets.push(socket)
        tally.add({ outcome: 'done', connectUs: Number((process.hrtime.bigint() - t0) / 1_000n), code: null }, HELD)
        socket.once('close', () => {
          if (!released) closedByPeer++
        })
        resolve()
      })
      socket.on('data', () => undefined)
      socket.once('error', (err: NodeJS.ErrnoException) => {
        if (up) return // a reset of a held connection: counted by its 'close'
        clearTimeout(timer)
        tally.add({ outcome: err.code === 'ECONNREFUSED' ? 'refused' : 'error', connectUs: -1, code: err.code ?? 'unknown' }, HELD)
        resolve()
      })
    })
  const loop = async (): Promise<void> => {
    while (opened < spec.count) {
      opened++
      await openOne()
    }
  }
  await Promise.all(Array.from({ length: spec.concurrency }, loop))
  const connectedAt = performance.now() - started
  process.stdout.write(`${JSON.stringify({ type: 'hold-ready', connected: sockets.length, connectedAt })}\n`)
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, spec.holdMs)
    process.stdin.once('end', resolve).once('close', resolve).resume()
    process.stdin.once('end', () => clearTimeout(timer))
  })
  released = true
  for (const socket of sockets) socket.destroy()
  return tally.result('hold', { windowMs: performance.now() - started, cpuMs: cpuMsNow() - cpuAtStart, connectedAt, closedByPeer })
}

/** How long a spec may run at most, before the hard deadline ends the process. */
export function specBoundMs(spec: LoadSpec): number {
  switch (spec.mode) {
    case 'hot':
      return spec.warmupMs + spec.durationMs
    case 'newport':
      return spec.warmupMs + spec.durationMs + spec.connectTimeoutMs
    case 'rate':
      return spec.durationMs + spec.connectTimeoutMs
    case 'serial':
      return spec.deadlineMs
    case 'hold':
      return spec.holdMs + (spec.count / spec.concurrency) * 3_000
  }
}

/** Runs one spec to its end. */
export function runLoad(spec: LoadSpec): Promise<LoadResult> {
  switch (spec.mode) {
    case 'hot':
      return runHot(spec)
    case 'newport':
      return runNewPort(spec)
    case 'rate':
      return runRate(spec)
    case 'serial':
      return runSerial(spec)
    case 'hold':
      return runHold(spec)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec
  setTimeout(() => {
    process.stderr.write(`load-gen: hard deadline passed in mode ${spec.mode}\n`)
    process.exit(3)
  }, specBoundMs(spec) + STALL_MS + DEADLINE_SLACK_MS).unref()
  runLoad(spec).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0))
    },
    (err: unknown) => {
      process.stderr.write(`load-gen: ${String(err)}\n`)
      process.exit(1)
    },
  )
}
