import { spawn } from 'node:child_process'
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { once } from 'node:events'

/** TFTP servers for the tftpDownload tests: the real tftpd-hpa, and a scripted one that misbehaves on request. */

const OP_RRQ = 1
const OP_DATA = 3
const OP_ACK = 4
const OP_ERROR = 5

function socketType(address: string): 'udp4' | 'udp6' {
  return address.includes(':') ? 'udp6' : 'udp4'
}

async function bound(address: string, port = 0): Promise<Socket> {
  const socket = createSocket(socketType(address))
  socket.bind(port, address)
  await once(socket, 'listening')
  return socket
}

/** A UDP port that was free a moment ago: bind to 0, read it, close. */
export async function freeUdpPort(address: string): Promise<number> {
  const socket = await bound(address)
  const { port } = socket.address()
  socket.close()
  return port
}

export function packet(opcode: number, second: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(4)
  head.writeUInt16BE(opcode, 0)
  head.writeUInt16BE(second, 2)
  return Buffer.concat([head, rest])
}

export interface Tftpd {
  readonly address: string
  readonly port: number
  stop(): Promise<void>
}

/**
 * Debian's tftpd-hpa in the foreground, serving `dir` (chrooted, files must be world-readable) on address:port. Resolves
 * once it answers a read request (with "file not found"), so the tests never race its start.
 */
export async function startTftpd(dir: string, address: string, port?: number): Promise<Tftpd> {
  const chosen = port ?? (await freeUdpPort(address))
  const listen = `${address.includes(':') ? `[${address}]` : address}:${chosen}`
  const child = spawn('in.tftpd', ['--foreground', '--secure', '--address', listen, dir], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))
  const exited = once(child, 'exit')
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    await exited
  }
  const probe = await bound(address)
  try {
    const answered = once(probe, 'message')
    const failed = exited.then(() => Promise.reject(new Error(`in.tftpd exited at start: ${stderr.trim()}`)))
    const request = Buffer.concat([Buffer.from([0, OP_RRQ]), Buffer.from('probe-missing\0octet\0')])
    for (let i = 0; i < 50; i++) {
      probe.send(request, chosen, address)
      const winner = await Promise.race([answered.then(() => true), failed, new Promise<false>((r) => setTimeout(() => r(false), 100))])
      if (winner) return { address, port: chosen, stop }
    }
    throw new Error(`in.tftpd on ${listen} did not answer within 5 s: ${stderr.trim()}`)
  } catch (err) {
    await stop()
    throw err
  } finally {
    probe.close()
  }
}

export interface ScriptOptions {
  readonly address?: string // default 127.0.0.1
  readonly file?: Buffer // served in blocks; ignored when endless
  readonly endless?: boolean // full blocks forever
  readonly silent?: boolean // hears requests, never answers
  readonly blockBytes?: number // payload of a full block; more than 512 is hostile
  readonly wrapTo?: 0 | 1 // the block number after 65535
  readonly duplicateData?: boolean // every DATA sent twice in a row
  readonly loseData?: ReadonlySet<number> // blocks (by index from 1) whose first sending is lost
  readonly loseAcks?: ReadonlySet<number> // blocks whose first ACK is lost
  readonly resendMs?: number // the server's own retransmission of DATA; default 150
  readonly strangerBefore?: number // block index that a second port of the server sends first (with junk)
  readonly strangerAddress?: string // that stranger's address; default the server's
  readonly replyToRequest?: Buffer // answered to the request instead of DATA
}

/** A scripted server: one transfer, what it heard recorded for the test to check. */
export interface ScriptedServer {
  readonly port: number
  readonly requests: Buffer[] // RRQs heard on the request port, retransmissions included
  readonly acks: number[] // ACKed block numbers in arrival order, duplicates included
  readonly errors: { readonly code: number; readonly message: string }[] // ERROR packets from the client
  readonly strangerHeard: Buffer[] // what the client sent to the stranger port
  readonly done: Promise<void> // the transfer ended (final ACK, ERROR, or closed)
  close(): void
}

const MAX_SERVER_RESENDS = 30

export async function startScriptedServer(options: ScriptOptions): Promise<ScriptedServer> {
  const address = options.address ?? '127.0.0.1'
  const size = options.blockBytes ?? 512
  const file = options.file ?? Buffer.alloc(0)
  const listen = await bound(address)
  const transfer = await bound(address)
  const stranger = await bound(options.strangerAddress ?? address)
  const requests: Buffer[] = []
  const acks: number[] = []
  const errors: { code: number; message: string }[] = []
  const strangerHeard: Buffer[] = []
  const lostData = new Set<number>()
  const lostAcks = new Set<number>()
  let client: RemoteInfo | null = null
  let current = 0
  let resends = 0
  let timer: NodeJS.Timeout | null = null
  let finish: () => void = () => undefined
  const done = new Promise<void>((resolve) => (finish = resolve))

  function end(): void {
    if (timer !== null) clearTimeout(timer)
    timer = null
    finish()
  }
  function wire(index: number): number {
    if (index <= 65_535) return index
    return options.wrapTo === 1 ? ((index - 1) % 65_535) + 1 : index % 65_536
  }
  function payloadOf(index: number): Buffer {
    if (options.endless === true) return Buffer.alloc(size, index & 0xff)
    return file.subarray((index - 1) * size, index * size)
  }
  function sendBlock(index: number, again: boolean): void {
    if (client === null) return
    current = index
    resends = again ? resends + 1 : 0
    if (resends > MAX_SERVER_RESENDS) return end()
    const data = packet(OP_DATA, wire(index), payloadOf(index))
    if (options.strangerBefore === index && !again) stranger.send(packet(OP_DATA, wire(index), Buffer.alloc(size, 0x58)), client.port, client.address)
    if (options.loseData?.has(index) === true && !lostData.has(index)) lostData.add(index)
    else {
      transfer.send(data, client.port, client.address)
      if (options.duplicateData === true) transfer.send(data, client.port, client.address)
    }
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => sendBlock(index, true), options.resendMs ?? 150)
  }

  listen.on('message', (msg, from) => {
    requests.push(msg)
    if (options.silent === true) return
    // A retransmitted request means DATA 1 was lost: send it again, as a server that reuses the transfer would.
    if (client !== null) return void (from.port === client.port && current === 1 && sendBlock(1, true))
    client = from
    if (options.replyToRequest !== undefined) {
      transfer.send(options.replyToRequest, from.port, from.address)
      return end()
    }
    sendBlock(1, false)
  })
  transfer.on('message', (msg, from) => {
    if (client === null || from.port !== client.port || msg.length < 4) return
    const opcode = msg.readUInt16BE(0)
    if (opcode === OP_ERROR) {
      errors.push({ code: msg.readUInt16BE(2), message: msg.subarray(4, msg.indexOf(0, 4)).toString('latin1') })
      return end()
    }
    if (opcode !== OP_ACK) return
    const block = msg.readUInt16BE(2)
    acks.push(block)
    if (block !== wire(current)) return
    if (options.loseAcks?.has(current) === true && !lostAcks.has(current)) return void lostAcks.add(current)
    if (options.endless !== true && payloadOf(current).length < size) return end()
    sendBlock(current + 1, false)
  })
  stranger.on('message', (msg) => strangerHeard.push(msg))

  function close(): void {
    end()
    for (const socket of [listen, transfer, stranger]) socket.close()
  }
  return { port: listen.address().port, requests, acks, errors, strangerHeard, done, close }
}
