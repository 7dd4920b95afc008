import { connect, type NetConnectOpts } from 'node:net'
import { z } from 'zod'
import { ConfigError } from '../../core/errors.js'
import type { Plugin, Subject } from '../plugin.js'

/** Options of the clamav analyzer. */
export const ClamavOptions = z
  .strictObject({
    // clamd's socket: an absolute unix socket path ("/run/clamav/clamd.ctl") or "host:port" ("[::1]:3310").
    // Required: the config is refused without it (plugins.list.N.options.socket) rather than guess where clamd listens.
    socket: z
      .string()
      .min(1)
      .max(4096)
      .regex(/^(?:\/.*|(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$/, 'an absolute unix socket path or "host:port", e.g. /run/clamav/clamd.ctl'),
    timeoutMs: z.number().int().min(100).max(600_000).default(30_000), // per scan: connect to verdict
    kinds: z.array(z.enum(['attack', 'decoded', 'sample'])).min(1).max(3).default(['sample']), // subjects scanned
    // Bytes sent per subject; a larger subject is scanned by its first maxScanBytes (info.partial). clamd's own
    // StreamMaxLength (default 25 MiB) still applies: past it clamd answers with an error (verdict 'error').
    maxScanBytes: z.number().int().min(1024).max(4 * 1024 * 1024 * 1024 - 1).default(25 * 1024 * 1024),
  }) // no prefault: without options there is no socket, and the config says so (plugins.list.N.options.socket)

/** What clamd said about one subject. */
export interface ClamdVerdict {
  readonly verdict: 'clean' | 'infected' | 'error'
  readonly signature: string | null // set when infected
  readonly reason: string | null // set on error: clamd's own words ("INSTREAM size limit exceeded")
}

// "z" prefix: the command and the reply are NUL-terminated (clamd(8), "zCOMMAND").
const INSTREAM = Buffer.from('zINSTREAM\0', 'latin1')
const CHUNK_BYTES = 64 * 1024
// A reply is one short line; anything longer is not clamd.
const MAX_REPLY_BYTES = 4096

/**
 * Reads a clamd INSTREAM reply. A reply that is neither OK, FOUND nor ERROR returns null: not a verdict.
 * Examples: "stream: OK", "stream: Win.Trojan.X FOUND", "INSTREAM size limit exceeded. ERROR".
 */
export function parseClamdReply(reply: string): ClamdVerdict | null {
  const text = reply.trim()
  if (text === 'stream: OK') return { verdict: 'clean', signature: null, reason: null }
  if (text.startsWith('stream: ') && text.endsWith(' FOUND')) {
    const signature = text.slice('stream: '.length, -' FOUND'.length).trim()
    if (signature.length > 0) return { verdict: 'infected', signature, reason: null }
  }
  if (text.endsWith(' ERROR')) {
    const reason = text.slice(0, -' ERROR'.length).replace(/^stream: /, '').replace(/\.$/, '').trim()
    return { verdict: 'error', signature: null, reason: reason.length > 0 ? reason : 'clamd error' }
  }
  return null
}

/** Where to connect, from the `socket` option; throws a ConfigError naming the option when it is unusable. */
function parseSocketOption(socket: string | null): NetConnectOpts {
  const problem = (message: string): ConfigError =>
    new ConfigError(`clamav: ${message}`, [{ path: 'options.socket', message }])
  if (socket === null) {
    throw problem('the "socket" option is required: clamd\'s unix socket path or "host:port" (e.g. /run/clamav/clamd.ctl)')
  }
  if (socket.startsWith('/')) return { path: socket }
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(socket)
  const port = Number(match?.[3])
  if (match === null || port < 1 || port > 65_535) {
    throw problem(`"socket" must be an absolute unix socket path or "host:port", not "${socket.slice(0, 100)}"`)
  }
  return { host: match[1] ?? match[2] ?? '', port }
}

/**
 * Streams `data` to clamd and resolves with its reply (without the NUL). Rejects when clamd cannot be reached,
 * closes without a reply, answers too much, or `signal` aborts. clamd may answer before the stream ends (size limit)
 * and then close: the reply wins over the write error that follows.
 */
function askClamd(target: NetConnectOpts, data: Buffer, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(target)
    let received = Buffer.alloc(0)
    let settled = false
    function settle(err: Error | null, reply: string): void {
      if (settled) return
      settled = true
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      if (err === null) resolve(reply)
      else reject(err)
    }
    function onAbort(): void {
      settle(new Error('clamd did not answer in time', { cause: signal.reason }), '')
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const end = received.indexOf(0)
      if (end >= 0) settle(null, received.toString('utf8', 0, end))
      else if (received.length > MAX_REPLY_BYTES) settle(new Error('clamd reply too long'), '')
    })
    socket.on('end', () => settle(new Error('clamd closed the connection without a reply'), ''))
    socket.on('error', (err) => settle(new Error(`clamd connection failed: ${err.message}`, { cause: err }), ''))
    socket.once('connect', () => {
      // The subject is in memory already: queueing views of it costs no copy, so no need to wait for 'drain'.
      socket.write(INSTREAM)
      for (let offset = 0; offset < data.length && !settled; offset += CHUNK_BYTES) {
        const chunk = data.subarray(offset, offset + CHUNK_BYTES)
        const header = Buffer.alloc(4)
        header.writeUInt32BE(chunk.length)
        socket.write(header)
        socket.write(chunk)
      }
      if (!settled) socket.write(Buffer.alloc(4)) // a zero-length chunk ends the stream
    })
  })
}

/**
 * clamav: scans subjects with a running clamd over its INSTREAM protocol; artifact `scan` with matchKey the verdict.
 * Failure rule: when clamd answers, the answer is the artifact, its own ERROR replies included (verdict 'error' with
 * clamd's reason, e.g. a subject past StreamMaxLength); when clamd does not answer (down, refused, timeout, a reply
 * that is not clamd's), process() throws and the pipeline records the run as failed: no artifact claims a scan that
 * did not happen.
 */
export function createClamavPlugin(options: z.infer<typeof ClamavOptions>): Plugin {
  const target = parseSocketOption(options.socket)
  const kinds = new Set<string>(options.kinds)
  return {
    name: 'clamav',
    phase: 'analyze',
    accepts(subject: Subject): boolean {
      return kinds.has(subject.kind)
    },
    async process(subject, ctx): Promise<void> {
      const partial = subject.data.length > options.maxScanBytes
      const data = partial ? subject.data.subarray(0, options.maxScanBytes) : subject.data
      const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(options.timeoutMs)])
      const reply = await askClamd(target, data, signal)
      const result = parseClamdReply(reply)
      if (result === null) throw new Error(`clamd reply not understood: ${JSON.stringify(reply.slice(0, 200))}`)
      ctx.addArtifact({
        kind: 'scan',
        matchKey: result.verdict,
        info: { engine: 'clamav', ...result, scannedBytes: data.length, partial },
      })
    },
  }
}
