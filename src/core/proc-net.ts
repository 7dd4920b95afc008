import { readFile } from 'node:fs/promises'

/** TCP and UDP socket states as /proc/net/{tcp,tcp6,udp,udp6} print them (the kernel's enum, in hex). */
export const SOCKET_STATE = { tcpListen: '0A', tcpSynRecv: '03', udpUnconnected: '07' } as const

// A file is small (one line per socket), but a host under a flood may hold many; bound the parse anyway.
const MAX_LINES = 200_000

/**
 * The local ports of the sockets in `state` listed in /proc/net/tcp, tcp6, udp or udp6 text: `sl local_address
 * rem_address st ...`, addresses as HEX_ADDRESS:HEX_PORT. Malformed lines are skipped.
 */
export function procNetLocalPorts(text: string, state: string): Set<number> {
  const ports = new Set<number>()
  const lines = text.split('\n', MAX_LINES)
  for (let i = 1; i < lines.length; i++) {
    const fields = lines[i]!.trim().split(/\s+/)
    if (fields.length < 4 || fields[3] !== state) continue
    const local = fields[1]!
    const colon = local.lastIndexOf(':')
    if (colon < 0) continue
    const port = Number.parseInt(local.slice(colon + 1), 16)
    if (Number.isInteger(port) && port > 0 && port <= 65_535) ports.add(port)
  }
  return ports
}

/** A /proc/net file of the calling process's network namespace; a missing one (no IPv6, say) reads as empty. */
export function readProcNet(file: 'tcp' | 'tcp6' | 'udp' | 'udp6'): Promise<string> {
  return readFile(`/proc/net/${file}`, 'utf8').catch(() => '')
}
