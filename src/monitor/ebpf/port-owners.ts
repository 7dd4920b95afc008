import { procNetLocalPorts, readProcNet, SOCKET_STATE } from '../../core/proc-net.js'
import { listeningPorts } from './bpf-native.js'

/** The local ports sockets of this network namespace hold: TCP ports listened on, UDP ports bound. */
export interface PortOwners {
  readonly tcp: ReadonlySet<number>
  readonly udp: ReadonlySet<number>
}

/**
 * The local ports in /proc/net/tcp, tcp6, udp or udp6 text that a new connection or datagram would be delivered to:
 * listening TCP sockets and unconnected UDP sockets.
 */
export function parseProcNetPorts(text: string, protocol: 'tcp' | 'udp'): Set<number> {
  return procNetLocalPorts(text, protocol === 'tcp' ? SOCKET_STATE.tcpListen : SOCKET_STATE.udpUnconnected)
}

/**
 * Reads the port owners of the calling process's network namespace. From sock_diag, which visits listening sockets
 * only; when the kernel cannot answer that (no inet_diag or udp_diag module), `onFallback` hears why and /proc/net is
 * read instead, which walks every connection of the host (a missing file, e.g. no IPv6, counts as empty).
 */
export async function readPortOwners(onFallback?: (err: unknown) => void): Promise<PortOwners> {
  try {
    const ports = listeningPorts()
    return { tcp: new Set(ports.tcp), udp: new Set(ports.udp) }
  } catch (err) {
    onFallback?.(err)
  }
  const [tcp4, tcp6, udp4, udp6] = await Promise.all([readProcNet('tcp'), readProcNet('tcp6'), readProcNet('udp'), readProcNet('udp6')])
  return {
    tcp: new Set([...parseProcNetPorts(tcp4, 'tcp'), ...parseProcNetPorts(tcp6, 'tcp')]),
    udp: new Set([...parseProcNetPorts(udp4, 'udp'), ...parseProcNetPorts(udp6, 'udp')]),
  }
}
