import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { performance } from 'node:perf_hooks'
import { formatIpAddress, parseIpAddress } from '../../config/cidr.js'
import type { DownloadKit, DownloadOutcome } from '../plugin.js'

/** RFC 1350 block size: a DATA packet with fewer payload bytes is the last one. */
export const TFTP_BLOCK_BYTES = 512

const OP_RRQ = 1
const OP_DATA = 3
const OP_ACK = 4
const OP_ERROR = 5
const HEADER_BYTES = 4
// Error codes of RFC 1350 section 5 that the client sends.
const ERR_NOT_DEFINED = 0
const ERR_DISK_FULL = 3
const ERR_ILLEGAL_OPERATION = 4
const ERR_UNKNOWN_TID = 5
// A stranger can make us send at most this many ERROR 5 replies per transfer: no amplification beyond it.
const MAX_STRANGER_REPLIES = 8
const MAX_SERVER_MESSAGE_BYTES = 128

/** The block number a server uses after 65535: 0 (tftpd-hpa's default), 1 (some others), or 'auto' for either. */
export type TftpRollover = 'auto' | 0 | 1

export interface TftpFetchOptions {
  readonly host: string // name or address, resolved (and checked) through `downloads`
  readonly port: number
  readonly file: string // the remote name, one latin1 char per byte
  readonly downloads: DownloadKit // address rules, maxBytes, timeoutMs (whole transfer, lookup included)
  readonly signal: AbortSignal // the plugin's deadline or shutdown
  readonly retransmitMs?: number // wait before the last packet (RRQ or ACK) is sent again; default 1,000
  readonly maxRetries?: number // retransmissions without progress before giving up; default 5
  readonly rollover?: TftpRollover // default 'auto'
  readonly answerStrangers?: boolean // send ERROR 5 to another port of the server's address (RFC 1350 section 4); default true
}

/** How one fetch ended; `data` is the file when the outcome is ok. */
export interface TftpFetchResult {
  readonly outcome: DownloadOutcome
  readonly reason: string | null
  readonly address: string | null // the address contacted, null when none was
  readonly bytes: number // DATA payload bytes received, the last refused block included
  readonly durationMs: number
  readonly data: Buffer | null
}

type End = Omit<TftpFetchResult, 'address' | 'durationMs'>

/**
 * Fetches one file over TFTP (RFC 1350, octet mode, no options) from the one address `downloads.resolve` allows.
 * Resolves with the outcome for every network or server behaviour; it does not reject.
 */
export async function fetchTftp(options: TftpFetchOptions): Promise<TftpFetchResult> {
  const started = performance.now()
  const elapsed = (): number => Math.round(performance.now() - started)
  const timeoutMs = options.downloads.timeoutMs
  const deadline = AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs)])
  const timeoutReason = (): string => (options.signal.aborted ? 'plugin deadline or shutdown' : `no complete answer within ${timeoutMs} ms`)
  const target = await options.downloads.resolve(options.host, deadline)
  if (deadline.aborted) return { outcome: 'timeout', reason: timeoutReason(), address: target.ok ? target.address : null, bytes: 0, durationMs: elapsed(), data: null }
  if (!target.ok) return { outcome: target.outcome, reason: target.reason, address: null, bytes: 0, durationMs: elapsed(), data: null }
  const transfer = new TftpTransfer({
    address: target.address,
    family: target.family,
    port: options.port,
    file: options.file,
    maxBytes: options.downloads.maxBytes,
    retransmitMs: options.retransmitMs ?? 1_000,
    maxRetries: options.maxRetries ?? 5,
    rollover: options.rollover ?? 'auto',
    answerStrangers: options.answerStrangers ?? true,
  })
  const end = await transfer.run(deadline, timeoutReason)
  return { ...end, address: target.address, durationMs: elapsed() }
}

interface TransferOptions {
  readonly address: string
  readonly family: 4 | 6
  readonly port: number
  readonly file: string
  readonly maxBytes: number
  readonly retransmitMs: number
  readonly maxRetries: number
  readonly rollover: TftpRollover
  readonly answerStrangers: boolean
}

/** One lock-step read transfer on its own socket; `run` once. */
class TftpTransfer {
  readonly #options: TransferOptions
  readonly #socket: Socket
  #tid: number | null = null // the server's port for this transfer, fixed by its first packet
  #accept: readonly number[] = [1] // block numbers that are new data
  #lastBlock: number | null = null
  #lastSent: Buffer // RRQ, then the ACK of #lastBlock: what a timeout sends again
  #lastSentAt = 0
  #retries = 0
  #chunks: Buffer[] = []
  #bytes = 0
  #strangerReplies = 0
  #timer: NodeJS.Timeout | null = null
  #settle: ((end: End) => void) | null = null

  constructor(options: TransferOptions) {
    this.#options = options
    this.#socket = createSocket({ type: options.family === 6 ? 'udp6' : 'udp4' })
    this.#lastSent = readRequest(options.file)
  }

  run(deadline: AbortSignal, timeoutReason: () => string): Promise<End> {
    return new Promise<End>((resolve) => {
      const onAbort = (): void => this.#finish({ outcome: 'timeout', reason: timeoutReason(), bytes: this.#bytes, data: null }, ERR_NOT_DEFINED, 'transfer abandoned')
      this.#settle = (end) => {
        deadline.removeEventListener('abort', onAbort)
        resolve(end)
      }
      deadline.addEventListener('abort', onAbort, { once: true })
      this.#socket.on('message', (msg, from) => this.#onMessage(msg, from))
      this.#socket.on('error', (err: NodeJS.ErrnoException) => this.#finish({ outcome: 'connect-failed', reason: err.code ?? err.message, bytes: this.#bytes, data: null }))
      this.#send(this.#lastSent)
    })
  }

  #onMessage(msg: Buffer, from: RemoteInfo): void {
    if (this.#settle === null) return
    // Only the address the policy passed is heard, and never answered otherwise: no reflection towards third parties.
    if (canonical(from.address) !== this.#options.address) return
    this.#tid ??= from.port
    if (from.port !== this.#tid) return this.#answerStranger(from.port)
    if (msg.length < HEADER_BYTES) return this.#refuse(`packet of ${msg.length} bytes`)
    const opcode = msg.readUInt16BE(0)
    if (opcode === OP_ERROR) {
      // An ERROR is never answered (RFC 1350 section 7): the server has already ended the transfer.
      const reason = `TFTP error ${msg.readUInt16BE(2)}: ${serverMessage(msg.subarray(HEADER_BYTES))}`
      return this.#finish({ outcome: 'server-error', reason, bytes: this.#bytes, data: null })
    }
    if (opcode !== OP_DATA) return this.#refuse(`opcode ${opcode} where DATA was expected`)
    const payload = msg.subarray(HEADER_BYTES)
    // Larger blocks need the blksize option (RFC 2348), which this client never asks for.
    if (payload.length > TFTP_BLOCK_BYTES) return this.#refuse(`DATA block of ${payload.length} bytes`)
    const block = msg.readUInt16BE(2)
    if (this.#accept.includes(block)) return this.#onNewBlock(block, payload)
    if (block === this.#lastBlock) return this.#onDuplicate()
    // Any other block is stale or impossible in lock-step: ignored; the timer covers a real loss.
  }

  #onNewBlock(block: number, payload: Buffer): void {
    this.#bytes += payload.length
    if (this.#bytes > this.#options.maxBytes) {
      // ERROR 3 stops the server at once instead of letting it retransmit until its own timeout.
      return this.#finish({ outcome: 'too-large', reason: `more than ${this.#options.maxBytes} bytes`, bytes: this.#bytes, data: null }, ERR_DISK_FULL, 'disk full or allocation exceeded')
    }
    this.#chunks.push(payload)
    this.#lastBlock = block
    this.#accept = blocksAfter(block, this.#options.rollover)
    this.#retries = 0
    this.#lastSent = acknowledgement(block)
    if (payload.length < TFTP_BLOCK_BYTES) {
      // The final ACK is sent and the transfer ends; a server whose final ACK is lost times out on its side harmlessly.
      const data = Buffer.concat(this.#chunks, this.#bytes)
      return this.#finish({ outcome: 'ok', reason: null, bytes: this.#bytes, data }, null, '', this.#lastSent)
    }
    this.#send(this.#lastSent)
  }

  /**
   * A DATA block we already acknowledged. Answering every duplicate is the Sorcerer's Apprentice bug (RFC 1123
   * 4.2.3.1): a delayed packet makes each side answer the other's duplicates and every later block travels twice. A
   * duplicate that comes back sooner than half a retransmission interval after our ACK crossed it in flight, and is
   * ignored; a later one means our ACK was lost, and gets that same ACK again (counted as a retransmission).
   */
  #onDuplicate(): void {
    if (performance.now() - this.#lastSentAt < this.#options.retransmitMs / 2) return
    this.#retransmit()
  }

  #retransmit(): void {
    if (this.#retries >= this.#options.maxRetries) {
      const waited = this.#lastBlock === null ? 'the read request' : `the ACK of block ${this.#lastBlock}`
      return this.#finish({ outcome: 'timeout', reason: `no answer to ${waited} after ${this.#retries} retransmissions`, bytes: this.#bytes, data: null })
    }
    this.#retries += 1
    this.#send(this.#lastSent)
  }

  #answerStranger(port: number): void {
    if (!this.#options.answerStrangers || this.#strangerReplies >= MAX_STRANGER_REPLIES) return
    this.#strangerReplies += 1
    // A failed courtesy reply changes nothing for the transfer: its error is dropped, not raised on the socket.
    this.#socket.send(errorPacket(ERR_UNKNOWN_TID, 'unknown transfer ID'), port, this.#options.address, () => undefined)
  }

  #refuse(reason: string): void {
    this.#finish({ outcome: 'protocol-error', reason, bytes: this.#bytes, data: null }, ERR_ILLEGAL_OPERATION, 'illegal TFTP operation')
  }

  /** The request (and its retransmissions) goes to the server's port; ACKs go to its transfer port. */
  #send(packet: Buffer): void {
    this.#lastSentAt = performance.now()
    const port = this.#lastBlock === null ? this.#options.port : (this.#tid ?? this.#options.port)
    this.#socket.send(packet, port, this.#options.address, (err) => {
      if (err !== null && err !== undefined) this.#finish({ outcome: 'connect-failed', reason: (err as NodeJS.ErrnoException).code ?? err.message, bytes: this.#bytes, data: null })
    })
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.#retransmit(), this.#options.retransmitMs)
  }

  /** Settles once; a parting ERROR (once a transfer port is known) or final ACK is sent before the socket closes. */
  #finish(end: End, errorCode: number | null = null, errorText = '', parting: Buffer | null = null): void {
    const settle = this.#settle
    if (settle === null) return
    this.#settle = null
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#chunks = []
    const last = parting ?? (errorCode !== null && this.#tid !== null ? errorPacket(errorCode, errorText) : null)
    const close = (): void => {
      this.#socket.removeAllListeners('message')
      this.#socket.close()
    }
    // The socket may already be broken (an 'error' ended the transfer): closing it is then all there is to do.
    if (last !== null && this.#tid !== null && end.outcome !== 'connect-failed') this.#socket.send(last, this.#tid, this.#options.address, close)
    else close()
    settle(end)
  }
}

/** The blocks that may follow `block`: the next one, or after 65535 whatever the rollover setting allows. */
function blocksAfter(block: number, rollover: TftpRollover): readonly number[] {
  if (block < 65_535) return [block + 1]
  return rollover === 'auto' ? [0, 1] : [rollover]
}

function readRequest(file: string): Buffer {
  const opcode = Buffer.alloc(2)
  opcode.writeUInt16BE(OP_RRQ)
  return Buffer.concat([opcode, Buffer.from(file, 'latin1'), Buffer.from([0]), Buffer.from('octet\0', 'ascii')])
}

function acknowledgement(block: number): Buffer {
  const packet = Buffer.alloc(HEADER_BYTES)
  packet.writeUInt16BE(OP_ACK, 0)
  packet.writeUInt16BE(block, 2)
  return packet
}

function errorPacket(code: number, text: string): Buffer {
  const head = Buffer.alloc(HEADER_BYTES)
  head.writeUInt16BE(OP_ERROR, 0)
  head.writeUInt16BE(code, 2)
  return Buffer.concat([head, Buffer.from(`${text}\0`, 'ascii')])
}

/** The server's message up to its NUL, as printable ASCII ('?' for anything else): it ends up in logs and reports. */
function serverMessage(bytes: Buffer): string {
  const end = bytes.indexOf(0)
  const text = bytes.subarray(0, Math.min(end === -1 ? bytes.length : end, MAX_SERVER_MESSAGE_BYTES))
  let out = ''
  for (const byte of text) out += byte >= 0x20 && byte <= 0x7e ? String.fromCharCode(byte) : '?'
  return out
}

function canonical(address: string): string {
  const ip = parseIpAddress(address)
  return ip === null ? address : formatIpAddress(ip)
}
