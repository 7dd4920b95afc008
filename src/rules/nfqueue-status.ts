import { readProcText, type ExecOptions } from './rules-exec.js'

/** The kernel's view of the NFQUEUE instances of one network namespace. */
export const NFNETLINK_QUEUE_PATH = '/proc/net/netfilter/nfnetlink_queue'

/**
 * One bound queue, one line of /proc/net/netfilter/nfnetlink_queue. The kernel keeps a line only while a program is
 * bound to the queue, so "there is a line" is the same as "bound". Counter meanings follow the kernel's names.
 */
export interface QueueInfo {
  readonly queue: number // queue number (the iptables --queue-num)
  readonly portId: number // netlink port id of the bound program (usually its pid for the first socket)
  readonly queueTotal: number // packets waiting for a verdict right now
  readonly copyMode: number // 0 none, 1 meta, 2 packet
  readonly copyRange: number // bytes of each packet copied to the program
  readonly dropped: number // packets dropped because the queue was full (the sensor is too slow)
  readonly userDropped: number // packets dropped because the netlink socket buffer overflowed
  readonly idSequence: number // id of the last packet queued: grows with every packet
}

export interface QueueTable {
  /** False when the file is missing: the nfnetlink_queue module is not loaded, so nothing can be bound. */
  readonly available: boolean
  readonly queues: readonly QueueInfo[]
}

/**
 * Parses the file's lines ("%5u %6u %5u %1u %5u %5u %5u %8u %2d": queue, portid, total, copy mode, copy range,
 * dropped, user dropped, id sequence, always 1). Older kernels printed with %d, so a counter past 2^31 showed as
 * negative: it is read back as the unsigned value. Lines that do not have 8 integers are skipped, never fatal.
 */
export function parseNfnetlinkQueue(text: string): QueueInfo[] {
  const queues: QueueInfo[] = []
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 8) continue
    const n: number[] = []
    for (const field of fields.slice(0, 8)) {
      const value = parseCounter(field)
      if (value !== null) n.push(value)
    }
    if (n.length !== 8) continue
    const at = (i: number): number => n[i] ?? 0 // always present: length was checked just above
    queues.push({
      queue: at(0),
      portId: at(1),
      queueTotal: at(2),
      copyMode: at(3),
      copyRange: at(4),
      dropped: at(5),
      userDropped: at(6),
      idSequence: at(7),
    })
  }
  return queues
}

function parseCounter(field: string): number | null {
  if (!/^-?\d+$/.test(field)) return null
  const value = Number(field)
  if (!Number.isSafeInteger(value) || value < -0x8000_0000 || value > 0xffff_ffff) return null
  return value >>> 0
}

/** Reads the queue table as the namespace in `opts.netns` (or this process's own) sees it. */
export async function loadNfnetlinkQueue(opts: ExecOptions = {}): Promise<QueueTable> {
  const text = await readProcText(NFNETLINK_QUEUE_PATH, opts)
  if (text === null) return { available: false, queues: [] }
  return { available: true, queues: parseNfnetlinkQueue(text) }
}

/** The line for `queue`, or null when no program is bound to it. */
export function findQueue(table: QueueTable, queue: number): QueueInfo | null {
  return table.queues.find((q) => q.queue === queue) ?? null
}
