import { connect, createServer, Server, type Socket } from 'node:net'
import { formatIpAddress, parseIpAddress } from '../../config/cidr.js'
import type { DownloadKit, DownloadOutcome } from '../plugin.js'

/** How the data connection is opened; 'passive-then-active' tries active mode when passive mode cannot connect. */
export type FtpMode = 'passive' | 'active' | 'passive-then-active'

/** One file to fetch over FTP. Text fields are latin1 (one char per byte), sent as those bytes. */
export interface FtpRequest {
  readonly host: string // a name or an address literal; resolved and checked through DownloadKit.resolve
  readonly port: number
  readonly user: string; readonly password: string; readonly file: string
  readonly mode: FtpMode
}

/** The end of one fetch: the file (outcome ok) or why there is none. */
export interface FtpResult {
  readonly outcome: DownloadOutcome
  readonly reason: string | null // "550 No such file or directory.", "data connection: ECONNREFUSED", ...
  readonly address: string | null // the control connection's peer, null when none was contacted
  readonly bytes: number // data bytes received, kept or not
  readonly data: Buffer | null
}

/** The bounds on what an FTP server can make the client hold or do. */
export const FTP_CLIENT_LIMITS = {
  maxLineBytes: 4096, // one reply line; longer breaks the protocol
  maxReplyLines: 256, // lines of one multi-line reply
  maxQueuedReplies: 16, // replies nobody asked for yet (a server flooding "200 ok")
  maxCommandBytes: 1024, // a longer command is not sent
} as const

interface FtpReply { readonly code: number; readonly text: string }

/** A fetch that ended without the file; `retry` marks a data-connection failure before RETR, which another mode may get past. */
class FtpFailure extends Error {
  constructor(readonly outcome: DownloadOutcome, reason: string, readonly retry = false) { super(reason) }
}

/**
 * Fetches one file: USER/PASS, TYPE I, a passive (PASV, or EPSV over IPv6) or active (PORT, or EPRT over IPv6) data
 * connection, RETR, QUIT. Bounded by kit.maxBytes and kit.timeoutMs (resolve to last byte) and by `signal`; never
 * rejects for what the server does. The address in a PASV or EPSV reply is never connected to: the data connection
 * goes to the control connection's peer, because the reply is the attacker's to write, and honouring it would let any
 * attack string point the sensor at a host of the operator's own network (the FTP bounce attack). Servers behind NAT
 * that announce a private address work the same way (what curl's --ftp-skip-pasv-ip does).
 */
export async function fetchFtpFile(request: FtpRequest, kit: DownloadKit, signal: AbortSignal): Promise<FtpResult> {
  const failed = (outcome: DownloadOutcome, reason: string, address: string | null = null, bytes = 0): FtpResult => ({ outcome, reason, address, bytes, data: null })
  // Checked before any contact (and again per command): a CR LF in a name would start a second command.
  if (![request.user, request.password, request.file].every(isSendable)) return failed('unsupported', 'a login or file name carries a line break, a NUL or too many bytes')
  const stop = AbortSignal.any([signal, AbortSignal.timeout(kit.timeoutMs)])
  const stopped = (): FtpFailure => new FtpFailure('timeout', signal.aborted ? 'aborted (plugin deadline or shutdown)' : `no complete answer within ${kit.timeoutMs} ms`)
  const target = await kit.resolve(request.host, stop)
  if (stop.aborted) return failed('timeout', stopped().message)
  if (!target.ok) return failed(target.outcome, target.reason)
  const session = new FtpSession({ request, kit, stop, stopped, peer: target.address })
  try {
    const data = await session.run(target.family)
    return { outcome: 'ok', reason: null, address: target.address, bytes: data.length, data }
  } catch (err) {
    if (!(err instanceof FtpFailure)) throw err
    return failed(err.outcome, err.message, target.address, session.bytes)
  } finally {
    session.close()
  }
}

interface SessionOptions {
  readonly request: FtpRequest; readonly kit: DownloadKit
  readonly stop: AbortSignal; readonly stopped: () => FtpFailure // the deadline, and the failure it means
  readonly peer: string // the control connection's peer: the only address a data connection goes to or comes from
}

/** One control connection and the data connections it opens (all in #open); close() ends all of them. */
class FtpSession {
  bytes = 0 // data bytes received
  readonly #o: SessionOptions
  readonly #open = new Set<Socket | Server>()
  readonly #replies: FtpReply[] = []
  readonly #parser = new ReplyParser()
  #failure: FtpFailure | null = null
  #wake: (() => void) | null = null
  #control: Socket | null = null

  constructor(options: SessionOptions) {
    this.#o = options
    options.stop.addEventListener('abort', () => this.#fail(options.stopped()), { once: true })
  }

  async run(family: 4 | 6): Promise<Buffer> {
    const control = await this.#connect(this.#o.request.port, this.#o.stop, 'control connection')
    this.#control = control
    control.on('data', (chunk: Buffer) => {
      try { this.#replies.push(...this.#parser.push(chunk)) } catch (err) { this.#fail(err instanceof FtpFailure ? err : new FtpFailure('protocol-error', String(err))) }
      if (this.#replies.length > FTP_CLIENT_LIMITS.maxQueuedReplies) this.#fail(new FtpFailure('protocol-error', 'too many unsolicited replies'))
      this.#wake?.()
    })
    control.on('error', (err: NodeJS.ErrnoException) => this.#fail(new FtpFailure('connect-failed', `control connection: ${err.code ?? err.message}`)))
    control.on('close', () => this.#fail(new FtpFailure('protocol-error', 'control connection closed')))
    let greeting = await this.#read()
    for (let i = 0; i < 3 && greeting.code < 200; i++) greeting = await this.#read() // 120: ready in a moment
    expect(greeting, 2)
    let login = await this.#command(`USER ${this.#o.request.user}`)
    if (login.code === 331 || login.code === 332) login = await this.#command(`PASS ${this.#o.request.password}`)
    if (login.code === 332) throw new FtpFailure('unsupported', describe(login)) // an account (ACCT) is asked for
    expect(login, 2)
    expect(await this.#command('TYPE I'), 2)
    const modes = this.#o.request.mode === 'passive-then-active' ? (['passive', 'active'] as const) : [this.#o.request.mode]
    let earlier = ''
    for (const [i, mode] of modes.entries()) {
      try {
        const data = await (mode === 'passive' ? this.#passive(family) : this.#active(family))
        control.end('QUIT\r\n') // no waiting for the answer: the file is here
        return data
      } catch (err) {
        if (!(err instanceof FtpFailure)) throw err
        if (err.retry && i < modes.length - 1) { earlier = ` (${mode}: ${err.message})`; continue }
        throw new FtpFailure(err.outcome, `${err.message}${earlier}`)
      }
    }
    throw new FtpFailure('protocol-error', 'no data connection mode')
  }

  close(): void {
    for (const item of this.#open) void (item instanceof Server ? item.close() : item.destroy())
  }

  async #passive(family: 4 | 6): Promise<Buffer> {
    const reply = await this.#command(family === 6 ? 'EPSV' : 'PASV')
    if (reply.code !== (family === 6 ? 229 : 227)) throw new FtpFailure(reply.code >= 400 ? 'server-error' : 'protocol-error', describe(reply), true)
    const port = passivePort(reply.text, family)
    if (port === null) throw new FtpFailure('protocol-error', `unreadable reply ${describe(reply)}`, true)
    const refused = this.#o.kit.checkAddress(this.#o.peer)
    if (refused !== null) throw new FtpFailure('refused', refused)
    // A data port that never answers must leave time for active mode.
    const limit = AbortSignal.any([this.#o.stop, AbortSignal.timeout(Math.max(1000, Math.floor(this.#o.kit.timeoutMs / 3)))])
    const socket = await this.#connect(port, limit, 'data connection').catch((err: unknown) => {
      if (this.#o.stop.aborted) throw this.#o.stopped()
      throw err instanceof FtpFailure ? new FtpFailure('connect-failed', err.message, true) : err
    })
    return this.#retrieve(Promise.resolve(socket))
  }

  async #active(family: 4 | 6): Promise<Buffer> {
    const local = parseIpAddress(this.#control?.localAddress ?? '')
    if (local === null) throw new FtpFailure('connect-failed', 'control connection has no local address')
    const refused = this.#o.kit.checkAddress(this.#o.peer)
    if (refused !== null) throw new FtpFailure('refused', refused)
    const host = formatIpAddress(local)
    const server = createServer()
    this.#open.add(server)
    const accepted = new Promise<Socket>((resolve, reject) => {
      this.#o.stop.addEventListener('abort', () => reject(this.#o.stopped()), { once: true })
      server.on('connection', (socket) => {
        const from = parseIpAddress(socket.remoteAddress ?? '')
        // Exactly one data connection, and only from the server we talk to: anyone else racing to it is dropped.
        if (from === null || formatIpAddress(from) !== this.#o.peer || !server.listening) return void socket.destroy()
        this.#open.add(socket)
        server.close()
        resolve(socket)
      })
    })
    accepted.catch(() => undefined) // awaited by #retrieve; a rejection before then is not unhandled
    const port = await new Promise<number>((resolve, reject) => {
      server.on('error', (err: NodeJS.ErrnoException) => reject(new FtpFailure('connect-failed', `data listener: ${err.code ?? err.message}`)))
      server.listen({ host, port: 0 }, () => resolve((server.address() as { port: number }).port))
    })
    expect(await this.#command(family === 6 ? `EPRT |2|${host}|${port}|` : `PORT ${host.replaceAll('.', ',')},${port >> 8},${port & 255}`), 2)
    return this.#retrieve(accepted)
  }

  /** RETR over a data connection that is (passive) or will be (active) there; ends when both the data and the reply do. */
  async #retrieve(data: Promise<Socket>): Promise<Buffer> {
    const received = data.then((socket) => this.#receive(socket))
    const replies = (async (): Promise<void> => {
      let reply = await this.#command(`RETR ${this.#o.request.file}`)
      if (reply.code < 200) reply = await this.#read()
      expect(reply, 2)
    })()
    return (await Promise.all([received, replies]))[0]
  }

  #receive(socket: Socket): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const onStop = (): void => reject(this.#o.stopped())
      this.#o.stop.addEventListener('abort', onStop, { once: true })
      socket.on('data', (chunk: Buffer) => {
        this.bytes += chunk.length
        if (this.bytes <= this.#o.kit.maxBytes) return void chunks.push(chunk)
        socket.destroy()
        reject(new FtpFailure('too-large', `more than ${this.#o.kit.maxBytes} bytes`))
      })
      socket.on('end', () => resolve(Buffer.concat(chunks)))
      socket.on('error', (err: NodeJS.ErrnoException) => reject(new FtpFailure('connect-failed', `data connection: ${err.code ?? err.message}`)))
      socket.on('close', () => { this.#o.stop.removeEventListener('abort', onStop); reject(new FtpFailure('protocol-error', 'data connection closed before its end')) })
    })
  }

  /** A connection to the peer; `limit` bounds the connect only, the transfer has the deadline of the whole fetch. */
  #connect(port: number, limit: AbortSignal, what: string): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      if (limit.aborted) return reject(this.#o.stop.aborted ? this.#o.stopped() : new FtpFailure('timeout', `${what}: no answer`))
      const socket = connect({ host: this.#o.peer, port })
      this.#open.add(socket)
      const onStop = (): void => { socket.destroy(); reject(this.#o.stop.aborted ? this.#o.stopped() : new FtpFailure('timeout', `${what}: no answer`)) }
      limit.addEventListener('abort', onStop, { once: true })
      const settled = (): void => limit.removeEventListener('abort', onStop)
      socket.once('connect', () => { settled(); resolve(socket) })
      socket.once('error', (err: NodeJS.ErrnoException) => { settled(); reject(new FtpFailure('connect-failed', `${what}: ${err.code ?? err.message}`)) })
    })
  }

  async #read(): Promise<FtpReply> {
    for (;;) {
      const reply = this.#replies.shift()
      if (reply !== undefined) return reply
      if (this.#failure !== null) throw this.#failure
      await new Promise<void>((resolve) => { this.#wake = resolve })
    }
  }

  /** Sends one command; one that could carry a second command (CR, LF, NUL) fails the fetch instead. */
  async #command(line: string): Promise<FtpReply> {
    if (!isSendable(line)) throw new FtpFailure('unsupported', 'a command would carry a line break, a NUL or too many bytes')
    this.#control?.write(Buffer.from(`${line}\r\n`, 'latin1'))
    return this.#read()
  }

  #fail(failure: FtpFailure): void {
    this.#failure ??= failure
    this.#wake?.()
  }
}

/** Splits control bytes into replies (RFC 959 4.2): "123-" opens a multi-line reply that a line "123 " ends. */
class ReplyParser {
  #pending = Buffer.alloc(0)
  #open: { code: number; text: string; lines: number } | null = null

  /** The replies `chunk` completes; throws an FtpFailure (protocol-error) past the limits or on a line that is no reply. */
  push(chunk: Buffer): FtpReply[] {
    this.#pending = Buffer.concat([this.#pending, chunk])
    const replies: FtpReply[] = []
    for (let end = this.#pending.indexOf(0x0a); end !== -1; end = this.#pending.indexOf(0x0a)) {
      const line = this.#pending.subarray(0, end).toString('latin1').replace(/\r$/, '')
      this.#pending = this.#pending.subarray(end + 1)
      if (line.length > FTP_CLIENT_LIMITS.maxLineBytes) throw new FtpFailure('protocol-error', 'reply line too long')
      const reply = this.#line(line)
      if (reply !== null) replies.push(reply)
    }
    if (this.#pending.length > FTP_CLIENT_LIMITS.maxLineBytes) throw new FtpFailure('protocol-error', 'reply line too long')
    return replies
  }

  #line(line: string): FtpReply | null {
    const match = /^([1-5][0-9][0-9])([ -]?)(.*)$/.exec(line)
    if (this.#open !== null) {
      if (++this.#open.lines > FTP_CLIENT_LIMITS.maxReplyLines) throw new FtpFailure('protocol-error', 'reply too long')
      if (match === null || Number(match[1]) !== this.#open.code || match[2] !== ' ') return null
      const { code, text } = this.#open
      this.#open = null
      return { code, text }
    }
    if (match === null) throw new FtpFailure('protocol-error', `not an FTP reply: "${clean(line)}"`)
    const reply = { code: Number(match[1]), text: clean(match[3] ?? '') }
    if (match[2] !== '-') return reply
    this.#open = { ...reply, lines: 1 }
    return null
  }
}

function isSendable(text: string): boolean {
  return !/[\r\n\0]|[^\x00-\xff]/.test(text) && text.length <= FTP_CLIENT_LIMITS.maxCommandBytes
}

/** Throws unless the reply is of the class wanted (2: success); a 4yz or 5yz is the server's refusal, shown with its code. */
function expect(reply: FtpReply, wanted: number): void {
  if (Math.floor(reply.code / 100) === wanted) return
  throw new FtpFailure(reply.code >= 400 ? 'server-error' : 'protocol-error', describe(reply))
}

function describe(reply: FtpReply): string {
  return `${reply.code} ${reply.text}`.trim()
}

/** Reply text as it may be stored and shown: printable ASCII, cut to 160 characters. */
function clean(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').trim().slice(0, 160)
}

/** The port of "227 ... (h1,h2,h3,h4,p1,p2)" (the h's are ignored: see fetchFtpFile) or "229 ... (|||port|)" (RFC 2428). */
function passivePort(text: string, family: 4 | 6): number | null {
  const match = family === 6 ? /\(([!-~])\1\1(\d{1,5})\1\)/.exec(text) : /\d{1,3},\d{1,3},\d{1,3},\d{1,3},(\d{1,3}),(\d{1,3})/.exec(text)
  if (match === null) return null
  const port = family === 6 ? Number(match[2]) : Number(match[1]) > 255 || Number(match[2]) > 255 ? 0 : Number(match[1]) * 256 + Number(match[2])
  return port >= 1 && port <= 65_535 ? port : null
}
