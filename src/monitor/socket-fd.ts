import type { Socket as DgramSocket } from 'node:dgram'
import type { Server } from 'node:net'
import { HoneytrapError } from '../core/errors.js'

/**
 * The file descriptor under a listening net.Server or a bound dgram socket, for the native addons. Node has no public API
 * for it: a dgram socket keeps its UDP handle under the symbol described 'state symbol' (its `_handle` getter is
 * deprecated, DEP0112), a server its TCP handle in `_handle` (Node 20 to 24). Throws when neither is there (not
 * listening or bound yet, or Node changed).
 */
export function socketFd(owner: Server | DgramSocket): number {
  const state = Object.getOwnPropertySymbols(owner).find((s) => s.description === 'state symbol')
  const handle =
    state === undefined
      ? (owner as unknown as { _handle?: unknown })._handle
      : (owner as unknown as Record<symbol, { handle?: unknown } | undefined>)[state]?.handle
  const fd = (handle as { fd?: unknown } | undefined | null)?.fd
  if (typeof fd !== 'number' || fd < 0) throw new HoneytrapError('HT_ERR_MONITOR_OPEN', 'cannot find the socket file descriptor (not listening yet?)')
  return fd
}
