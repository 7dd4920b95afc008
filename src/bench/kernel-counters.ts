import type { NetnsPair } from '../netns/netns-pair.js'
import { findQueue, parseNfnetlinkQueue } from '../rules/nfqueue-status.js'

/**
 * Where the kernel dropped SYNs during a run, read from the counters of both namespaces: a connect of 1 s or more is
 * a dropped SYN retransmitted after the initial RTO, and these tell which queue dropped it.
 */

export interface KernelCounters {
  readonly synRetransmits: number // attacker side: SYNs sent again (TcpExt TCPSynRetrans)
  readonly listenOverflows: number // sensor side: accept queue full (TcpExt ListenOverflows)
  readonly listenDrops: number // sensor side: every SYN or ACK dropped at a listener (TcpExt ListenDrops)
  readonly queueDropped: number // NFQUEUE full (queue_maxlen, 1024 by default): packet dropped
  readonly queueUserDropped: number // the netlink socket buffer overflowed: packet dropped
}

/** Parses /proc/net/netstat or /proc/net/snmp: header and value lines in pairs, keyed "TcpExt.ListenDrops". Pure. */
export function parseSnmpCounters(text: string): Map<string, number> {
  const counters = new Map<string, number>()
  const lines = text.split('\n')
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = (lines[i] ?? '').trim().split(/\s+/)
    const values = (lines[i + 1] ?? '').trim().split(/\s+/)
    const prefix = names[0]?.replace(/:$/, '')
    if (prefix === undefined || values[0] !== names[0]) continue
    for (let k = 1; k < names.length; k++) counters.set(`${prefix}.${names[k]}`, Number(values[k]))
  }
  return counters
}

async function readText(pair: NetnsPair, ns: string, path: string): Promise<string> {
  return pair.exec(ns, 'cat', [path]).catch(() => '')
}

/** Reads the counters of both namespaces of `pair`; `queue` is the NFQUEUE number the system under test binds. */
export async function readKernelCounters(pair: NetnsPair, queue: number): Promise<KernelCounters> {
  const attacker = parseSnmpCounters(await readText(pair, pair.attackerNs, '/proc/net/netstat'))
  const sensor = parseSnmpCounters(await readText(pair, pair.sensorNs, '/proc/net/netstat'))
  const queueInfo = findQueue({ available: true, queues: parseNfnetlinkQueue(await readText(pair, pair.sensorNs, '/proc/net/netfilter/nfnetlink_queue')) }, queue)
  return {
    synRetransmits: attacker.get('TcpExt.TCPSynRetrans') ?? 0,
    listenOverflows: sensor.get('TcpExt.ListenOverflows') ?? 0,
    listenDrops: sensor.get('TcpExt.ListenDrops') ?? 0,
    queueDropped: queueInfo?.dropped ?? 0,
    queueUserDropped: queueInfo?.userDropped ?? 0,
  }
}

/** `after - before`, counter by counter. */
export function counterDelta(before: KernelCounters, after: KernelCounters): KernelCounters {
  return {
    synRetransmits: after.synRetransmits - before.synRetransmits,
    listenOverflows: after.listenOverflows - before.listenOverflows,
    listenDrops: after.listenDrops - before.listenDrops,
    queueDropped: after.queueDropped - before.queueDropped,
    queueUserDropped: after.queueUserDropped - before.queueUserDropped,
  }
}
