import { createRequire } from 'node:module'
import type { Server, Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { HoneytrapError } from '../core/errors.js'
import { socketFd } from './socket-fd.js'

/**
 * The socket options behind the NFQUEUE monitor's queue skip (docs/iptables.md), which Node cannot set: through the
 * small socket addon (native/src/socket-addon.cc), not the eBPF one, so that this monitor never loads libbpf.
 */

// src/monitor and dist/monitor are both two levels below the package root, where native/build/ lives.
const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/honeytrap_socket.node', import.meta.url))

interface SocketAddon {
  markServedSocket(fd: number, family: 4 | 6, mark: number): void
  readSavedSyn(fd: number): Buffer | null
}

let addon: SocketAddon | null = null

/** Loads the addon (once); throws HT_ERR_MONITOR_OPEN saying how to build it when it is not built. */
export function loadSocketAddon(): SocketAddon {
  if (addon !== null) return addon
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as SocketAddon
  } catch (err) {
    throw new HoneytrapError('HT_ERR_MONITOR_OPEN', 'the socket addon is not built; run `npm run build:native` (needs build-essential, clang and libbpf-dev)', { cause: err })
  }
  return addon
}

/**
 * Gives a listening socket of the sensor TCP_SAVE_SYN, the mark bits and IP(V6)_TRANSPARENT, so that the NFQUEUE
 * rules let SYNs to it skip the queue and each connection accepted from it keeps the headers of its SYN for
 * readSavedSyn. Throws HT_ERR_MONITOR_OPEN when the addon is missing or the kernel refuses (EPERM without
 * CAP_NET_ADMIN).
 */
export function markServedSocket(server: Server, family: 4 | 6, mark: number): void {
  const native = loadSocketAddon()
  try {
    native.markServedSocket(socketFd(server), family, mark)
  } catch (err) {
    throw new HoneytrapError('HT_ERR_MONITOR_OPEN', `marking a listener: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * The IP and TCP headers of the SYN that opened `socket`, accepted from a listener that markServedSocket prepared
 * (TCP_SAVED_SYN): what the queue would have shown of it. Null when the kernel kept none (a SYN cookie, a listener
 * without TCP_SAVE_SYN) or the socket is already closed. The kernel frees its copy on this read, so it is read once.
 */
export function readSavedSyn(socket: Socket): Buffer | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) return null
  return loadSocketAddon().readSavedSyn(fd)
}
