import { createHash, randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { connect, type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import { formatEndpoint } from '../core/format-endpoint.js'

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
  | { readonly type: 'bulk'; readonly host: string; readonly port: number; readonly bytes: number; readonly halfClose: boolean; readonly readTimeoutMs: number; readonly chunkBytes?: number }
  | { readonly type: 'udp-exchange'; readonly host: string; readonly port: number; readonly datagrams: readonly string[]; readonly waitMs: number }

// Bounds of the bulk and udp-exchange steps: a plan is test input, but a typo must not send a terabyte.
const MAX_BULK_BYTES = 4 * 1024 ** 3 // 4 GiB sent per bulk step
const MAX_BULK_CHUNK_BYTES = 4 * 1024 * 1024 // 4 MiB per write
const RECEIVED_HEAD_BYTES = 4096 // how much of the answer a bulk result quotes
const MAX_EXCHANGE_DATAGRAMS = 1_000 // sent per udp-exchange step
const MAX_EXCHANGE_REPLIES = 10_000 // kept per udp-exchange step

export interface TcpResult {
  readonly type: 'tcp'
  readonly connected: boolean
  readonly connectMs: number
  readonly received: string // base64
  readonly error: string | null
  readonly closedBy: 'peer' | 'timeout' | 'error'
}

/** What one bulk connection did: hashes of both directions, who ended it, and when things happened (ms from start). */
export interface BulkResult {
  readonly type: 'bulk'
  readonly connected: boolean
  readonly sentBytes: number // handed to the socket; all of them reached the peer's kernel only if closedBy is 'fin'
  readonly sentSha256: string
  readonly receivedBytes: number
  readonly receivedSha256: string
  readonly received: string // the first RECEIVED_HEAD_BYTES bytes as UTF-8 (lossy for binary answers)
  readonly closedBy: 'fin' | 'reset' | 'timeout' | 'error' // error: the connection failed (see error)
  readonly connectMs: number // -1 when it never connected
  readonly firstByteMs: number // -1 when nothing was received
  readonly elapsedMs: number
  readonly error?: string // the errno code (ECONNREFUSED, ENETUNREACH, ...) when closedBy is 'reset' or 'error'
}

/** One datagram received by a udp-exchange step. */
export interface UdpReply {
  readonly from: string // addr:port, [addr]:port for IPv6
  readonly size: number
  readonly text: string // UTF-8 (lossy for binary)
  readonly base64: string
  readonly atMs: number // from the first send
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

/**
 * One TCP connection that sends `bytes` random bytes (waiting for 'drain' whenever the socket asks), optionally
 * half-closes, and reads until the peer's FIN, a reset, or `readTimeoutMs` after the start, whichever is first.
 */
function bulkStep(step: Extract<Step, { type: 'bulk' }>): Promise<BulkResult> {
  if (!Number.isSafeInteger(step.bytes) || step.bytes < 0 || step.bytes > MAX_BULK_BYTES) throw new RangeError(`bulk: bytes must be 0..${MAX_BULK_BYTES}`)
  const chunkBytes = step.chunkBytes ?? 64 * 1024
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_BULK_CHUNK_BYTES) throw new RangeError(`bulk: chunkBytes must be 1..${MAX_BULK_CHUNK_BYTES}`)
  return new Promise((resolve) => {
    const started = process.hrtime.bigint()
    const sinceStart = (): number => Number(process.hrtime.bigint() - started) / 1e6
    const sentHash = createHash('sha256')
    const receivedHash = createHash('sha256')
    const head: Buffer[] = []
    let headBytes = 0
    let sentBytes = 0
    let receivedBytes = 0
    let connectMs = -1
    let firstByteMs = -1
    let settled = false
    // allowHalfOpen: the peer's FIN must not end our side while we are still sending (the digest case).
    const socket: Socket = connect({ host: step.host, port: step.port, allowHalfOpen: true })
    const finish = (closedBy: BulkResult['closedBy'], error?: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({
        type: 'bulk',
        connected: connectMs >= 0,
        sentBytes,
        sentSha256: sentHash.digest('hex'),
        receivedBytes,
        receivedSha256: receivedHash.digest('hex'),
        received: Buffer.concat(head).toString('utf8'),
        closedBy,
        connectMs,
        firstByteMs,
        elapsedMs: sinceStart(),
        ...(error !== undefined && { error }),
      })
    }
    const timer = setTimeout(() => finish('timeout'), step.readTimeoutMs)
    const send = async (): Promise<void> => {
      while (sentBytes < step.bytes && !settled) {
        const chunk = randomBytes(Math.min(chunkBytes, step.bytes - sentBytes))
        sentHash.update(chunk)
        sentBytes += chunk.length
        if (!socket.write(chunk)) {
          // 'close' also releases the wait: a reset or the timeout ends the step without a 'drain'.
          await new Promise<void>((r) => {
            const done = (): void => {
              socket.off('drain', done)
              socket.off('close', done)
              r()
            }
            socket.on('drain', done)
            socket.on('close', done)
          })
        }
      }
      if (step.halfClose && !settled) socket.end()
    }
    socket.on('connect', () => {
      connectMs = sinceStart()
      void send()
    })
    socket.on('data', (d: Buffer) => {
      if (firstByteMs < 0) firstByteMs = sinceStart()
      receivedBytes += d.length
      receivedHash.update(d)
      if (headBytes < RECEIVED_HEAD_BYTES) {
        const part = d.subarray(0, RECEIVED_HEAD_BYTES - headBytes)
        head.push(part)
        headBytes += part.length
      }
    })
    socket.on('end', () => finish('fin'))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? err.message
      // EPIPE: we wrote after the peer's RST had already closed the connection.
      finish(connectMs >= 0 && (code === 'ECONNRESET' || code === 'EPIPE') ? 'reset' : 'error', code)
    })
  })
}


/** Sends each datagram (UTF-8) from one socket, in order, and collects every reply with its source until `waitMs` after the last send. */
async function udpExchangeStep(step: Extract<Step, { type: 'udp-exchange' }>): Promise<Record<string, unknown>> {
  if (step.datagrams.length > MAX_EXCHANGE_DATAGRAMS) throw new RangeError(`udp-exchange: at most ${MAX_EXCHANGE_DATAGRAMS} datagrams`)
  const socket = createSocket(step.host.includes(':') ? 'udp6' : 'udp4')
  const started = Date.now()
  const replies: UdpReply[] = []
  let dropped = 0
  const errors: string[] = []
  socket.on('message', (m, rinfo) => {
    if (replies.length >= MAX_EXCHANGE_REPLIES) {
      dropped++
      return
    }
    replies.push({ from: formatEndpoint(rinfo.address, rinfo.port), size: m.length, text: m.toString('utf8'), base64: m.toString('base64'), atMs: Date.now() - started })
  })
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (errors.length < 100) errors.push(err.code ?? err.message)
  })
  let sent = 0
  for (const datagram of step.datagrams) {
    const error = await new Promise<Error | null>((r) => socket.send(Buffer.from(datagram, 'utf8'), step.port, step.host, (err) => r(err)))
    if (error === null) sent++
    else if (errors.length < 100) errors.push((error as NodeJS.ErrnoException).code ?? error.message)
  }
  await new Promise((r) => setTimeout(r, step.waitMs))
  socket.close()
  return { type: 'udp-exchange', sent, replies, dropped, errors }
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
      case 'bulk':
        result = await bulkStep(step)
        break
      case 'udp-exchange':
        result = await udpExchangeStep(step)
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
