import type { Writable } from 'node:stream'
import type { AttackRow } from './attack-query.js'
import { sessionPackets } from './pcap-session.js'
import { pcapFileHeader, pcapRecord } from './pcap-writer.js'

// Records are gathered into writes of about this size: one write per 60-byte ACK would cost more in stream calls
// than in bytes, and a bounded batch keeps memory flat however large a session is.
const BATCH_BYTES = 64 * 1024

/**
 * Writes a libpcap file (link type RAW) of `rows` to `out`, one synthetic TCP connection or UDP flow per row, waiting
 * for 'drain' whenever `out` is full so that memory stays flat. Resolves with the number of sessions written; rejects
 * if `out` fails. Does not end `out`: the caller owns it (it may be stdout). Attacker bytes go into packet payloads,
 * so `out` must not be a terminal.
 */
export async function writePcap(rows: Iterable<AttackRow>, out: Writable): Promise<number> {
  const header = pcapFileHeader()
  let batch: Buffer[] = [header]
  let batchBytes = header.length
  let sessions = 0
  // Held for the whole export: an error emitted between two writes (a full disk, a closed pipe) would otherwise have
  // no listener and end the process instead of rejecting this promise.
  let failure: Error | null = null
  function onError(err: Error): void {
    failure ??= err
  }

  async function flush(): Promise<void> {
    const data = Buffer.concat(batch, batchBytes)
    batch = []
    batchBytes = 0
    if (failure !== null) throw failure
    if (out.destroyed) throw new Error('the pcap output was closed before the export finished')
    if (!out.write(data)) await drained(out)
  }

  out.on('error', onError)
  try {
    for (const row of rows) {
      for (const { timestampUs, packet } of sessionPackets(row)) {
        const record = pcapRecord(timestampUs, packet)
        batch.push(record)
        batchBytes += record.length
        if (batchBytes >= BATCH_BYTES) await flush()
      }
      sessions++
    }
    if (batchBytes > 0) await flush()
    return sessions
  } finally {
    out.off('error', onError)
  }
}

// Resolves on 'drain'; rejects on 'error', or on 'close' first (a destroyed stream never drains, and waiting for it
// would hang the export).
function drained(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    function cleanup(): void {
      out.off('drain', onDrain)
      out.off('error', onError)
      out.off('close', onClose)
    }
    function onDrain(): void {
      cleanup()
      resolve()
    }
    function onError(err: Error): void {
      cleanup()
      reject(err)
    }
    function onClose(): void {
      cleanup()
      reject(new Error('the pcap output was closed before the export finished'))
    }
    out.on('drain', onDrain)
    out.on('error', onError)
    out.on('close', onClose)
  })
}
