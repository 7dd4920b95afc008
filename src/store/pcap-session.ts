import { createHash } from 'node:crypto'
import type { Direction } from '../attack/attack.js'
import { parseIpAddress } from '../config/cidr.js'
import type { AttackRow } from './attack-query.js'
import { parseStoredTranscript } from './export-record.js'
import {
  ipPacket,
  PROTO_TCP,
  PROTO_UDP,
  reverseEnds,
  splitBytes,
  TCP_ACK,
  TCP_FIN,
  TCP_MSS_IPV4,
  TCP_MSS_IPV6,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  tcpSegment,
  UDP_MAX_PAYLOAD,
  udpDatagram,
  type FlowEnds,
} from './pcap-writer.js'

/**
 * Turns one stored attack into the packets a capture at the sensor would have shown: a synthetic but consistent
 * TCP connection (handshake, data both ways, close) or UDP datagrams, timed from started_at and the transcript.
 * Everything derives from the row (ISNs and IP ids from a hash of its id), so exporting twice gives the same file.
 */

/** One packet to record, stamped in microseconds since the epoch. */
export interface CapturedPacket {
  readonly timestampUs: number
  readonly packet: Buffer
}

/** A run of bytes in one direction: in from the attacker, out to the attacker. */
export interface SessionChunk {
  readonly direction: Direction
  readonly offsetMs: number // since started_at; may go down (a wall-clock step), the packet clock never does
  readonly bytes: Buffer
}

// Window scale 14 (RFC 7323's maximum) turns the advertised 65535 into ~1 GiB, more than any stored payload, so a
// large chunk can go out in one burst without Wireshark calling the receiver's window full.
const WINDOW = 0xffff
const WINDOW_SHIFT = 14

/**
 * The chunks of a row with their bytes, in order. A missing transcript (schema 1) or one that does not fit the row's
 * bytes becomes the payload as one `in` chunk and the response as one `out` chunk. Bytes a transcript does not cover
 * (chunks past maxTranscriptChunks) follow its last chunk, so each direction always carries all its stored bytes.
 */
export function sessionChunks(row: AttackRow): SessionChunk[] {
  const parsed = row.transcript === null ? null : parseStoredTranscript(row.transcript, row.payload, row.response)
  const chunks: SessionChunk[] = []
  let inAt = 0
  let outAt = 0
  let lastOffsetMs = 0
  if (parsed !== null && typeof parsed !== 'string') {
    // The parser has checked every size against the BLOBs; slicing them again here avoids decoding its base64 copies.
    for (const chunk of parsed) {
      const start = chunk.direction === 'in' ? inAt : outAt
      const source = chunk.direction === 'in' ? row.payload : row.response
      if (chunk.size > 0) chunks.push({ direction: chunk.direction, offsetMs: chunk.offset_ms, bytes: source.subarray(start, start + chunk.size) })
      if (chunk.direction === 'in') inAt += chunk.size
      else outAt += chunk.size
      lastOffsetMs = chunk.offset_ms
    }
  }
  if (inAt < row.payload.length) chunks.push({ direction: 'in', offsetMs: lastOffsetMs, bytes: row.payload.subarray(inAt) })
  if (outAt < row.response.length) chunks.push({ direction: 'out', offsetMs: lastOffsetMs, bytes: row.response.subarray(outAt) })
  return chunks
}

/** The packets of one stored attack, in time order; never throws on a row's content. */
export function* sessionPackets(row: AttackRow): Generator<CapturedPacket> {
  const ends = flowEnds(row)
  const chunks = sessionChunks(row)
  const seed = createHash('sha256').update(row.id).digest()
  if (row.protocol === 'udp') yield* udpPackets(row, ends, chunks, seed)
  else yield* tcpPackets(row, ends, chunks, seed)
}

// The attacker -> sensor direction. An address that is not of the row's family (only a hand-edited row) becomes the
// family's unspecified address, so the session's bytes are still exported.
function flowEnds(row: AttackRow): FlowEnds {
  return {
    srcAddress: addressBytes(row.src_ip, row.family),
    dstAddress: addressBytes(row.dst_ip, row.family),
    srcPort: row.src_port & 0xffff,
    dstPort: row.dst_port & 0xffff,
  }
}

function addressBytes(text: string, family: 4 | 6): Uint8Array {
  const ip = parseIpAddress(text)
  if (ip !== null && ip.family === family) return ip.bytes
  return new Uint8Array(family === 4 ? 4 : 16)
}

// A clock that only moves forward: transcript offsets come from the wall clock and may step back.
interface PacketClock {
  advanceTo(ms: number): void
  readonly nowUs: number
}

function createClock(startedAtMs: number): PacketClock {
  let nowUs = startedAtMs * 1_000
  return {
    advanceTo(ms: number): void {
      nowUs = Math.max(nowUs, ms * 1_000)
    },
    get nowUs(): number {
      return nowUs
    },
  }
}

function* udpPackets(row: AttackRow, ends: FlowEnds, chunks: readonly SessionChunk[], seed: Buffer): Generator<CapturedPacket> {
  const clock = createClock(row.started_at)
  const reverse = reverseEnds(ends)
  let ipId = seed.readUInt16BE(8)
  // A UDP session exists because a datagram arrived: with no bytes stored, that was an empty one.
  const list = chunks.length > 0 ? chunks : [{ direction: 'in' as const, offsetMs: 0, bytes: Buffer.alloc(0) }]
  for (const chunk of list) {
    clock.advanceTo(row.started_at + chunk.offsetMs)
    const flow = chunk.direction === 'in' ? ends : reverse
    const pieces = chunk.bytes.length > 0 ? splitBytes(chunk.bytes, UDP_MAX_PAYLOAD) : [chunk.bytes]
    for (const piece of pieces) {
      yield { timestampUs: clock.nowUs, packet: ipPacket(flow, PROTO_UDP, udpDatagram(flow, piece), ipId) }
      ipId = (ipId + 1) & 0xffff
    }
  }
}

// One end of the TCP connection: what it sends next.
interface TcpPeer {
  readonly ends: FlowEnds
  seq: number
  ipId: number
}

function* tcpPackets(row: AttackRow, ends: FlowEnds, chunks: readonly SessionChunk[], seed: Buffer): Generator<CapturedPacket> {
  const clock = createClock(row.started_at)
  const peers: Record<Direction, TcpPeer> = {
    in: { ends, seq: seed.readUInt32BE(0), ipId: seed.readUInt16BE(8) },
    out: { ends: reverseEnds(ends), seq: seed.readUInt32BE(4), ipId: seed.readUInt16BE(10) },
  }
  const mss = row.family === 4 ? TCP_MSS_IPV4 : TCP_MSS_IPV6
  const synOptions = Buffer.from([2, 4, mss >> 8, mss & 0xff, 1, 3, 3, WINDOW_SHIFT]) // MSS, NOP, window scale

  // Sends one segment from `from`, acknowledging everything the other side sent so far.
  function send(from: Direction, flags: number, payload?: Buffer): CapturedPacket {
    const self = peers[from]
    const other = peers[from === 'in' ? 'out' : 'in']
    const syn = (flags & TCP_SYN) !== 0
    const segment = tcpSegment(self.ends, {
      seq: self.seq,
      ack: (flags & TCP_ACK) !== 0 ? other.seq : 0,
      flags,
      window: WINDOW,
      options: syn ? synOptions : undefined,
      payload,
    })
    const packet = ipPacket(self.ends, PROTO_TCP, segment, self.ipId)
    self.ipId = (self.ipId + 1) & 0xffff
    // SYN and FIN each take one sequence number (RFC 793).
    self.seq = (self.seq + (payload?.length ?? 0) + (syn ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0
    return { timestampUs: clock.nowUs, packet }
  }

  yield send('in', TCP_SYN)
  yield send('out', TCP_SYN | TCP_ACK)
  yield send('in', TCP_ACK)
  for (const chunk of chunks) {
    clock.advanceTo(row.started_at + chunk.offsetMs)
    const pieces = [...splitBytes(chunk.bytes, mss)]
    for (const [i, piece] of pieces.entries()) yield send(chunk.direction, TCP_ACK | (i === pieces.length - 1 ? TCP_PSH : 0), piece)
    yield send(chunk.direction === 'in' ? 'out' : 'in', TCP_ACK)
  }
  clock.advanceTo(row.ended_at)
  yield* tcpClose(row, send)
}

// The end of the connection as the close reason tells it: a reset from the side that reset, else a FIN exchange
// started by the attacker when they closed, by the sensor for every other reason (timeouts, limits, shutdown).
function* tcpClose(row: AttackRow, send: (from: Direction, flags: number) => CapturedPacket): Generator<CapturedPacket> {
  if (row.close_reason === 'peer-reset') {
    yield send('in', TCP_RST | TCP_ACK)
    return
  }
  if (row.close_reason === 'target-reset') {
    yield send('out', TCP_RST | TCP_ACK)
    return
  }
  const first: Direction = row.close_reason === 'peer-closed' ? 'in' : 'out'
  const second: Direction = first === 'in' ? 'out' : 'in'
  yield send(first, TCP_FIN | TCP_ACK)
  yield send(second, TCP_FIN | TCP_ACK)
  yield send(first, TCP_ACK)
}
