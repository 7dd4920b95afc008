import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'
import { TLSSocket } from 'node:tls'
import type { DownloadAttempt, DownloadKit, DownloadOutcome } from '../plugin.js'
import { sanitizeUrl } from './extract-urls.js'

export interface HttpFetchOptions {
  readonly userAgent: string // sent as is; checked to be printable ASCII by the plugin's options
  readonly maxHeaderBytes: number // response headers larger than this end the download (protocol-error)
  readonly signal: AbortSignal // the plugin's deadline and shutdown (ctx.signal)
}

/** What one fetch found out besides its attempt: for the plugin's `url` artifact. */
export interface HttpFetchDetails {
  readonly redirects: readonly string[] // each Location followed, resolved and sanitised, in order
  readonly tlsVerified: boolean | null // null: no HTTPS hop answered; otherwise whether the last one's certificate verified
  readonly httpStatus: number | null // of the last answer
  readonly contentType: string | null // of the last answer, sanitised and cut
}

export interface HttpFetchResult {
  readonly attempt: DownloadAttempt
  readonly sample: Buffer | null // set exactly when attempt.outcome is 'ok'
  readonly details: HttpFetchDetails
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
const MAX_CONTENT_TYPE_CHARS = 128
// Redirect targets are kept in the plugin's artifact (64 KiB at most): 21 of these fit with room to spare.
const MAX_STORED_URL_CHARS = 512

type Hop =
  | { readonly kind: 'redirect'; readonly location: string }
  | { readonly kind: 'done'; readonly outcome: DownloadOutcome; readonly reason: string | null; readonly sample: Buffer | null }

interface HopState {
  bytes: number // received over all hops, kept or not
  tlsVerified: boolean | null
  httpStatus: number | null
  contentType: string | null
}

/**
 * Fetches `url` (http or https) under the kit's rules: every hop's host is resolved through `kit.resolve` and only
 * the address it returns is contacted; redirects are followed by hand, each re-checked; time and size are capped
 * over the whole chain. Never rejects for anything the network or the server does: that is the attempt's outcome.
 */
export async function fetchHttp(url: string, kit: DownloadKit, options: HttpFetchOptions): Promise<HttpFetchResult> {
  const started = performance.now()
  // One clock for resolution, connection, every redirect and the body: the attempt's budget is not per hop.
  const deadline = AbortSignal.timeout(kit.timeoutMs)
  const signal = AbortSignal.any([options.signal, deadline])
  const state: HopState = { bytes: 0, tlsVerified: null, httpStatus: null, contentType: null }
  const redirects: string[] = []
  const visited = new Set<string>()
  let address: string | null = null

  const finish = (outcome: DownloadOutcome, reason: string | null, sample: Buffer | null = null): HttpFetchResult => ({
    attempt: { url, outcome, reason, address, bytes: state.bytes, durationMs: Math.round(performance.now() - started) },
    sample: outcome === 'ok' ? sample : null,
    details: { redirects, tlsVerified: state.tlsVerified, httpStatus: state.httpStatus, contentType: state.contentType },
  })
  const aborted = (): HttpFetchResult =>
    finish('timeout', deadline.aborted ? `no complete answer within ${kit.timeoutMs} ms` : 'stopped: plugin deadline or shutdown')

  let current: URL
  try {
    current = new URL(url)
  } catch {
    return finish('unsupported', 'not a valid URL')
  }
  for (;;) {
    if (current.protocol !== 'http:' && current.protocol !== 'https:') {
      return finish('unsupported', `scheme ${sanitizeUrl(current.protocol, 16)} is not fetched over HTTP`)
    }
    // The hop as it goes on the wire: never credentials (no auth is ever sent), never a fragment.
    current.username = ''
    current.password = ''
    current.hash = ''
    visited.add(current.href)
    if (signal.aborted) return aborted()
    const target = await kit.resolve(current.hostname, signal)
    if (signal.aborted) return aborted()
    if (!target.ok) return finish(target.outcome, target.reason)
    address = target.address
    const hop = await requestOnce(current, target.address, target.family, { ...options, signal, maxBytes: kit.maxBytes }, state)
    if (hop.kind === 'done') {
      if (hop.outcome === 'timeout') return aborted()
      return finish(hop.outcome, hop.reason, hop.sample)
    }
    let next: URL
    try {
      next = new URL(hop.location, current)
    } catch {
      return finish('protocol-error', `redirect to an invalid URL: ${sanitizeUrl(hop.location, 256)}`)
    }
    next.username = ''
    next.password = ''
    next.hash = ''
    redirects.push(sanitizeUrl(next.href, MAX_STORED_URL_CHARS))
    if (visited.has(next.href)) return finish('redirect-limit', `redirect loop back to ${sanitizeUrl(next.href, 256)}`)
    if (redirects.length > kit.maxRedirects) return finish('redirect-limit', `more than ${kit.maxRedirects} redirects`)
    current = next
  }
}

interface HopOptions extends HttpFetchOptions {
  readonly maxBytes: number
}

/** One request to `address` for `url`; resolves with its result, never rejects for the peer's behaviour. */
function requestOnce(url: URL, address: string, family: 4 | 6, options: HopOptions, state: HopState): Promise<Hop> {
  return new Promise<Hop>((resolve, reject) => {
    const https = url.protocol === 'https:'
    const requestOptions: RequestOptions & { rejectUnauthorized?: boolean; servername?: string } = {
      // By address, never by name: the address the kit checked is the one contacted (no second lookup to rebind).
      host: address,
      family,
      port: url.port === '' ? (https ? 443 : 80) : Number(url.port),
      method: 'GET',
      path: `${url.pathname}${url.search}`,
      // url.host is the name (and port) as the URL wrote it; the WHATWG parser has already escaped it.
      headers: { Host: url.host, 'User-Agent': options.userAgent, Accept: '*/*', 'Accept-Encoding': 'identity', Connection: 'close' },
      setHost: false,
      // A fresh connection for each request: no pooled socket to another host, no cookies, no proxy (node:http reads
      // no proxy variables from the environment in Node 20), no auth.
      agent: false,
      maxHeaderSize: options.maxHeaderBytes,
      insecureHTTPParser: false,
    }
    if (https) {
      // Malware hosts use self-signed certificates; refusing them would lose the sample. Whether it verified is recorded.
      requestOptions.rejectUnauthorized = false
      if (isIP(url.hostname) === 0) requestOptions.servername = url.hostname
    }
    let settled = false
    const settle = (hop: Hop | Error): void => {
      if (settled) return
      settled = true
      options.signal.removeEventListener('abort', onAbort)
      req.destroy()
      if (hop instanceof Error) reject(hop)
      else resolve(hop)
    }
    const done = (outcome: DownloadOutcome, reason: string | null, sample: Buffer | null = null): void =>
      settle({ kind: 'done', outcome, reason, sample })
    const onAbort = (): void => done('timeout', null)

    const req = (https ? httpsRequest : httpRequest)(requestOptions)
    req.on('error', (err) => {
      const mapped = classifyError(err, state.bytes)
      settle(mapped instanceof Error ? mapped : { kind: 'done', ...mapped, sample: null })
    })
    req.on('response', (res) => onResponse(res, url, options, state, settle, done))
    if (options.signal.aborted) return done('timeout', null)
    options.signal.addEventListener('abort', onAbort, { once: true })
    req.end()
  })
}

function onResponse(
  res: IncomingMessage,
  url: URL,
  options: HopOptions,
  state: HopState,
  settle: (hop: Hop) => void,
  done: (outcome: DownloadOutcome, reason: string | null, sample?: Buffer | null) => void,
): void {
  const status = res.statusCode ?? 0
  state.httpStatus = status
  const type = res.headers['content-type']
  state.contentType = type === undefined ? null : sanitizeUrl(type, MAX_CONTENT_TYPE_CHARS)
  if (url.protocol === 'https:') state.tlsVerified = res.socket instanceof TLSSocket ? res.socket.authorized : false
  res.on('error', (err) => {
    const mapped = classifyError(err, state.bytes)
    done(mapped instanceof Error ? 'connect-failed' : mapped.outcome, mapped instanceof Error ? mapped.message : mapped.reason)
  })
  if (REDIRECT_STATUSES.has(status)) {
    const location = res.headers.location
    if (location === undefined || location === '') return done('protocol-error', `HTTP ${status} without Location`)
    return settle({ kind: 'redirect', location })
  }
  if (status < 200 || status > 299) return done('server-error', `HTTP ${status}`)
  const declared = res.headers['content-length']
  if (declared !== undefined && /^\d{1,20}$/.test(declared) && Number(declared) > options.maxBytes) {
    return done('too-large', `Content-Length ${declared} is more than ${options.maxBytes} bytes`)
  }
  const chunks: Buffer[] = []
  let kept = 0
  res.on('data', (chunk: Buffer) => {
    state.bytes += chunk.length
    kept += chunk.length
    // Checked before the chunk is kept: memory never holds more than maxBytes of the body.
    if (kept > options.maxBytes) {
      chunks.length = 0
      return done('too-large', `more than ${options.maxBytes} bytes`)
    }
    chunks.push(chunk)
  })
  res.on('end', () => {
    if (!res.complete) return done('connect-failed', `connection closed after ${state.bytes} bytes, before the body ended`)
    done('ok', null, Buffer.concat(chunks))
  })
  // 'close' without 'end': the peer went away mid-body. After 'end' or a settle this is a no-op.
  res.on('close', () => done('connect-failed', `connection closed after ${state.bytes} bytes, before the body ended`))
}

/**
 * What a socket, TLS or parser error means for the attempt. Only errors that show a bug of ours (an argument node
 * refused) come back as an Error, to be thrown; the peer cannot cause those.
 */
function classifyError(err: unknown, bytes: number): { outcome: DownloadOutcome; reason: string } | Error {
  const e: NodeJS.ErrnoException = err instanceof Error ? err : new Error(String(err))
  const code = typeof e.code === 'string' ? e.code : e.name
  const after = bytes > 0 ? ` after ${bytes} bytes` : ''
  if (code === 'AbortError' || code === 'ABORT_ERR') return { outcome: 'timeout', reason: 'aborted' }
  if (code.startsWith('ERR_INVALID') || code === 'ERR_OUT_OF_RANGE' || code === 'ERR_UNESCAPED_CHARACTERS') return e
  if (code.startsWith('HPE_')) return { outcome: 'protocol-error', reason: `${code}${after}` }
  if (code === 'EPROTO' || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS')) return { outcome: 'protocol-error', reason: `TLS: ${code}` }
  return { outcome: 'connect-failed', reason: `${code}${after}` }
}
