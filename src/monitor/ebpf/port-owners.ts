import { readFile } from 'node:fs/promises'

/** The local ports sockets of this network namespace hold: TCP ports listened on, UDP ports bound. */
export interface PortOwners {
  readonly tcp: ReadonlySet<number>
  readonly udp: ReadonlySet<number>
}

const TCP_LISTEN = '0A'
const UDP_UNCONNECTED = '07'
// A file is small (one line per socket), but a host under a flood may hold many; bound the parse anyway.
const MAX_LINES = 200_000

/**
 * The local ports of the sockets listed in /proc/net/tcp, tcp6, udp or udp6 text: `sl local_address rem_address st
 * ...`, addresses as HEX_ADDRESS:HEX_PORT. Only listening TCP sockets and unconnected UDP sockets count: those are
 * what a new connection or datagram would be delivered to. Malformed lines are skipped.
 */
export function parseProcNetPorts(text: string, protocol: 'tcp' | 'udp'): Set<number> {
  const wanted = protocol === 'tcp' ? TCP_LISTEN : UDP_UNCONNECTED
  const ports = new Set<number>()
  const lines = text.split('\n', MAX_LINES)
  for (let i = 1; i < lines.length; i++) {
    const fields = lines[i]!.trim().split(/\s+/)
    if (fields.length < 4 || fields[3] !== wanted) continue
    const local = fields[1]!
    const colon = local.lastIndexOf(':')
    if (colon < 0) continue
    const port = Number.parseInt(local.slice(colon + 1), 16)
    if (Number.isInteger(port) && port > 0 && port <= 65_535) ports.add(port)
  }
  return ports
}

/** Reads the port owners of the calling process's network namespace (a missing file, e.g. no IPv6, counts as empty). */
export async function readPortOwners(): Promise<PortOwners> {
  const read = (file: string): Promise<string> => readFile(`/proc/net/${file}`, 'utf8').catch(() => '')
  const [tcp4, tcp6, udp4, udp6] = await Promise.all([read('tcp'), read('tcp6'), read('udp'), read('udp6')])
  return {
    tcp: new Set([...parseProcNetPorts(tcp4, 'tcp'), ...parseProcNetPorts(tcp6, 'tcp')]),
    udp: new Set([...parseProcNetPorts(udp4, 'udp'), ...parseProcNetPorts(udp6, 'udp')]),
  }
}
