import { createSocket } from 'node:dgram'
import { connect, type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'

/**
 * A scripted attacker, run inside the attacker namespace by the demo, the end-to-end tests and the benchmarks:
 * `node attack-client.js '<json plan>'` prints one JSON result per step. Every step is bounded in time and count.
 */

export type Step =
  | { readonly type: 'tcp'; readonly host: string; readonly port: number; readonly send?: string; readonly sendBase64?: string; readonly halfClose?: boolean; readonly waitMs?: number; readonly localPort?: number }
  | { readonly type: 'udp'; readonly host: string; readonly port: number; readonly sendBase64: string; readonly count?: number; readonly waitMs?: number }
  | { readonly type: 'scan'; readonly host: string; readonly from: number; readonly to: number; readonly concurrency: number; readonly timeoutMs: number; readonly send?: string; readonly deadlineMs: number }
  | { readonly type: 'hold'; readonly host: string; readonly port: number; readonly count: number; readonly holdMs: number }
  | { readonly type: 'sequence'; readonly host: string; readonly port: number; readonly count: number; readonly intervalMs: number; readonly token: string }

export interface TcpResult {
  readonly type: 'tcp'
  readonly connected: boolean
  readonly connectMs: number
  readonly received: string // base64
  readonly error: string | null
  readonly closedBy: 'peer' | 'timeout' | 'error'
}

function bytesOf(step: { send?: string; sendBase64?: string }): Buffer {
  if (step.sendBase64 !== undefined) return Buffer.from(step.sendBase64, 'base64')
  return Buffer.from(step.send ?? '', 'utf8')
}

/** One TCP connection: connect, send, optionally half-close, read until the peer closes or `waitMs` passes. */
function tcpStep(step: Extract<Step, { type: 'tcp' }>): Promise<TcpResult> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint()
    let connectMs = -1
    const chunks: Buffer[] = []
    let settled = false
    const socket: Socket = connect({ host: step.host, port: step.port, ...(step.localPort !== undefined && { localPort: step.localPort }) })
    const finish = (closedBy: TcpResult['closedBy'], error: string | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ type: 'tcp', connected: connectMs >= 0, connectMs, received: Buffer.concat(chunks).toString('base64'), error, closedBy })
    }
    const timer = setTimeout(() => finish('timeout', null), step.waitMs ?? 2_000)
    socket.on('connect', () => {
      connectMs = Number(process.hrtime.bigint() - started) / 1e6
      const payload = bytesOf(step)
      if (payload.length > 0) socket.write(payload)
      if (step.halfClose === true) socket.end()
    })
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('end', () => finish('peer', null))
    socket.on('error', (err: NodeJS.ErrnoException) => finish('error', err.code ?? err.message))
  })
}

/** Sends `count` datagrams from one socket (one session) and collects replies for `waitMs`. */
function udpStep(step: Extract<Step, { type: 'udp' }>): Promise<{ type: 'udp'; replies: string[] }> {
  return new Promise((resolve) => {
    const socket = createSocket(step.host.includes(':') ? 'udp6' : 'udp4')
    const replies: string[] = []
    socket.on('message', (m) => replies.push(m.toString('base64')))
    socket.on('error', () => undefined)
    const payload = Buffer.from(step.sendBase64, 'base64')
    let sent = 0
    const sendNext = (): void => {
      if (sent >= (step.count ?? 1)) return
      sent++
      socket.send(payload, step.port, step.host, () => setTimeout(sendNext, 5))
    }
    sendNext()
    setTimeout(() => {
      socket.close()
      resolve({ type: 'udp', replies })
    }, step.waitMs ?? 1_000)
  })
}

/** Connects to every port in [from, to] with bounded concurrency and an overall deadline; counts outcomes. */
async function scanStep(step: Extract<Step, { type: 'scan' }>): Promise<Record<string, unknown>> {
  let next = step.from
  const counts = { open: 0, refused: 0, timeout: 0, other: 0, skipped: 0 }
  const failed: number[] = []
  const otherCodes: Record<string, number> = {} // what the "other" failures were, by error code
  const deadline = Date.now() + step.deadlineMs
  const connectMs: number[] = []
  const one = (port: number): Promise<void> =>
    new Promise((resolve) => {
      const started = process.hrtime.bigint()
      const socket = connect({ host: step.host, port })
      const timer = setTimeout(() => done('timeout'), step.timeoutMs)
      let finished = false
      function done(outcome: 'open' | 'refused' | 'timeout' | 'other'): void {
        if (finished) return
        finished = true
        clearTimeout(timer)
        counts[outcome]++
        if (outcome !== 'open' && failed.length < 100) failed.push(port)
        if (outcome === 'open' && step.send !== undefined) socket.end(step.send)
        else socket.destroy()
        resolve()
      }
      socket.on('connect', () => {
        connectMs.push(Number(process.hrtime.bigint() - started) / 1e6)
        done('open')
      })
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ECONNREFUSED') otherCodes[err.code ?? err.message] = (otherCodes[err.code ?? err.message] ?? 0) + 1
        done(err.code === 'ECONNREFUSED' ? 'refused' : 'other')
      })
    })
  const worker = async (): Promise<void> => {
    while (next <= step.to) {
      const port = next++
      if (Date.now() > deadline) {
        counts.skipped++
        continue
      }
      await one(port)
    }
  }
  const started = Date.now()
  await Promise.all(Array.from({ length: step.concurrency }, worker))
  connectMs.sort((a, b) => a - b)
  const pct = (p: number): number => connectMs[Math.min(connectMs.length - 1, Math.floor((p / 100) * connectMs.length))] ?? -1
  return { type: 'scan', ...counts, otherCodes, failed, elapsedMs: Date.now() - started, p50Ms: pct(50), p99Ms: pct(99), over1s: connectMs.filter((v) => v >= 1_000).length }
}

/** Opens `count` connections and keeps them open, silent, for `holdMs` (idle-connection load). */
async function holdStep(step: Extract<Step, { type: 'hold' }>): Promise<Record<string, unknown>> {
  const sockets: Socket[] = []
  let connected = 0
  let failedCount = 0
  await Promise.all(
    Array.from({ length: step.count }, () =>
      new Promise<void>((resolve) => {
        const s = connect({ host: step.host, port: step.port })
        sockets.push(s)
        s.on('connect', () => {
          connected++
          resolve()
        })
        s.on('error', () => {
          failedCount++
          resolve()
        })
        s.on('data', () => undefined)
        s.on('end', () => s.destroy())
      }),
    ),
  )
  process.stdout.write(`${JSON.stringify({ type: 'hold-ready', connected, failed: failedCount })}\n`)
  // Hold until `holdMs` passes or the sensor has closed every connection, whichever is first.
  const allClosed = Promise.all(sockets.map((s) => new Promise((r) => s.once('close', r))))
  await Promise.race([allClosed, new Promise((r) => setTimeout(r, step.holdMs))])
  for (const s of sockets) s.destroy()
  return { type: 'hold', connected, failed: failedCount }
}

/**
 * `count` short connections one after another, each sending `<token>-<i>` and closing; one line per connection with
 * the wall-clock time it was closed by us, so a test can tell which attacks had ended before some instant.
 */
async function sequenceStep(step: Extract<Step, { type: 'sequence' }>): Promise<Record<string, unknown>> {
  let ok = 0
  for (let i = 0; i < step.count; i++) {
    const line = await new Promise<Record<string, unknown>>((resolve) => {
      const socket = connect({ host: step.host, port: step.port })
      const timer = setTimeout(() => {
        socket.destroy()
        resolve({ type: 'seq', i, ok: false, error: 'timeout' })
      }, 2_000)
      socket.on('connect', () => {
        socket.end(`${step.token}-${i}`, () => {
          clearTimeout(timer)
          resolve({ type: 'seq', i, ok: true, endedAtMs: Date.now() })
          socket.destroy()
        })
      })
      socket.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        resolve({ type: 'seq', i, ok: false, error: err.code ?? err.message })
      })
    })
    if (line['ok'] === true) ok++
    process.stdout.write(`${JSON.stringify(line)}\n`)
    await new Promise((r) => setTimeout(r, step.intervalMs))
  }
  return { type: 'sequence', ok }
}

/** Runs the steps in order and writes one JSON line per result. */
export async function runPlan(steps: readonly Step[]): Promise<void> {
  for (const step of steps) {
    let result: unknown
    switch (step.type) {
      case 'tcp':
        result = await tcpStep(step)
        break
      case 'udp':
        result = await udpStep(step)
        break
      case 'scan':
        result = await scanStep(step)
        break
      case 'hold':
        result = await holdStep(step)
        break
      case 'sequence':
        result = await sequenceStep(step)
        break
    }
    process.stdout.write(`${JSON.stringify(result)}\n`)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const plan = JSON.parse(process.argv[2] ?? '[]') as Step[]
  runPlan(plan).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${String(err)}\n`)
      process.exit(1)
    },
  )
}
