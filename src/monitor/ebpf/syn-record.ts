import type { AddressFamily } from '../../attack/attack.js'
import { formatIPv4, formatIPv6 } from '../ip-packet.js'
import type { SynFacts } from '../packet-source.js'

/**
 * The record native/bpf/synfacts.bpf.c writes to its ring buffer for each TCP SYN (layout in native/bpf/synfacts.h).
 * Every multi-byte field is big-endian; addresses take 16 bytes, an IPv4 one the first 4 (family tells which).
 */
export const SYN_RECORD_BYTES = 80
export const SYN_RECORD_VERSION = 1
const MAX_OPTIONS = 16

const IP_DF = 0x01
const HAS_MSS = 0x01
const HAS_WSCALE = 0x02
const OPTIONS_TRUNCATED = 0x04

/** One SYN as the XDP program saw it: the 4-tuple to join it with an accepted socket, and its header facts. */
export interface SynRecord {
  readonly family: AddressFamily
  readonly srcAddress: string
  readonly srcPort: number
  readonly dstAddress: string
  readonly dstPort: number
  readonly ifindex: number
  readonly monotonicNs: bigint // bpf_ktime_get_ns(): CLOCK_MONOTONIC, the clock of process.hrtime.bigint()
  readonly optionsTruncated: boolean // more than 16 option kinds, or an option ran past the TCP header
  readonly facts: SynFacts
}

/** Why a record was refused; records come from our own kernel program, so any of these means a version mismatch. */
export type SynRecordFailure = 'short' | 'version' | 'family' | 'option-count'

export type SynRecordResult = { readonly ok: true; readonly record: SynRecord } | { readonly ok: false; readonly reason: SynRecordFailure }

/** Parses one record from the first SYN_RECORD_BYTES of `bytes`; never throws, never reads past the end. */
export function parseSynRecord(bytes: Uint8Array): SynRecordResult {
  if (bytes.length < SYN_RECORD_BYTES) return { ok: false, reason: 'short' }
  const view = new DataView(bytes.buffer, bytes.byteOffset, SYN_RECORD_BYTES)
  if (view.getUint8(0) !== SYN_RECORD_VERSION) return { ok: false, reason: 'version' }
  const family = view.getUint8(1)
  if (family !== 4 && family !== 6) return { ok: false, reason: 'family' }
  const optionCount = view.getUint8(17)
  if (optionCount > MAX_OPTIONS) return { ok: false, reason: 'option-count' }
  const ipFlags = view.getUint8(3)
  const optionFlags = view.getUint8(16)
  const format = family === 4 ? formatIPv4 : formatIPv6
  const facts: SynFacts = {
    ttl: view.getUint8(2),
    ipId: family === 4 ? view.getUint16(4) : null,
    dontFragment: family === 4 && (ipFlags & IP_DF) !== 0,
    tcpWindow: view.getUint16(10),
    tcpFlags: view.getUint8(15),
    tcpOptions: Array.from(bytes.subarray(64, 64 + optionCount)),
    mss: (optionFlags & HAS_MSS) !== 0 ? view.getUint16(12) : null,
    windowScale: (optionFlags & HAS_WSCALE) !== 0 ? view.getUint8(14) : null,
  }
  const record: SynRecord = {
    family,
    srcAddress: format(bytes, 32),
    srcPort: view.getUint16(6),
    dstAddress: format(bytes, 48),
    dstPort: view.getUint16(8),
    ifindex: view.getUint32(20),
    monotonicNs: view.getBigUint64(24),
    optionsTruncated: (optionFlags & OPTIONS_TRUNCATED) !== 0,
    facts,
  }
  return { ok: true, record }
}

/** Splits a batch from the addon into records; a trailing partial record and refused records are counted. */
export function parseSynBatch(batch: Uint8Array): { readonly records: SynRecord[]; readonly unparsable: number } {
  const records: SynRecord[] = []
  let unparsable = 0
  for (let offset = 0; offset < batch.length; offset += SYN_RECORD_BYTES) {
    const result = parseSynRecord(batch.subarray(offset, offset + SYN_RECORD_BYTES))
    if (result.ok) records.push(result.record)
    else unparsable++
  }
  return { records, unparsable }
}
