import type { AddressFamily } from '../../attack/attack.js'
import { formatIPv4, formatIPv6 } from '../ip-packet.js'

/**
 * One datagram as the addon's catch-all UDP socket received it (layout in native/src/udp-catch-all.h): a 48-byte
 * big-endian header, then the payload. The destination is the one the sender used (IP_ORIGDSTADDR), which is what
 * Node's dgram cannot report for a socket that sk_lookup fed datagrams for other ports.
 */
export const UDP_RECORD_HEADER_BYTES = 48
const VERSION = 1
const TRUNCATED = 0x01
const TTL_KNOWN = 0x02
const DESTINATION_KNOWN = 0x04

export interface UdpDatagram {
  readonly family: AddressFamily
  readonly srcAddress: string
  readonly srcPort: number
  readonly dstAddress: string // '' when the kernel gave no original destination (never expected)
  readonly dstPort: number // 0 likewise
  readonly ttl: number | null
  readonly datagramBytes: number // on the wire; larger than payload.length when truncated
  readonly truncated: boolean
  readonly payload: Buffer
}

/** Splits a batch into datagrams. Stops at the first malformed header (the rest cannot be framed) and counts it. */
export function parseUdpBatch(batch: Buffer): { readonly datagrams: UdpDatagram[]; readonly unparsable: number } {
  const datagrams: UdpDatagram[] = []
  let offset = 0
  while (offset < batch.length) {
    if (batch.length - offset < UDP_RECORD_HEADER_BYTES) return { datagrams, unparsable: 1 }
    const version = batch.readUInt8(offset)
    const family = batch.readUInt8(offset + 1)
    const stored = batch.readUInt32BE(offset + 8)
    const end = offset + UDP_RECORD_HEADER_BYTES + stored
    if (version !== VERSION || (family !== 4 && family !== 6) || end > batch.length) return { datagrams, unparsable: 1 }
    const flags = batch.readUInt8(offset + 3)
    const format = family === 4 ? formatIPv4 : formatIPv6
    const destinationKnown = (flags & DESTINATION_KNOWN) !== 0
    datagrams.push({
      family,
      srcAddress: format(batch, offset + 16),
      srcPort: batch.readUInt16BE(offset + 4),
      dstAddress: destinationKnown ? format(batch, offset + 32) : '',
      dstPort: destinationKnown ? batch.readUInt16BE(offset + 6) : 0,
      ttl: (flags & TTL_KNOWN) !== 0 ? batch.readUInt8(offset + 2) : null,
      datagramBytes: batch.readUInt32BE(offset + 12),
      truncated: (flags & TRUNCATED) !== 0,
      payload: Buffer.from(batch.subarray(offset + UDP_RECORD_HEADER_BYTES, end)),
    })
    offset = end
  }
  return { datagrams, unparsable: 0 }
}
