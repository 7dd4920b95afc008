import type { Logger } from 'pino'
import { procNetLocalPorts, readProcNet, SOCKET_STATE } from './proc-net.js'

/**
 * How long a stopping sensor keeps its listening sockets open for handshakes already under way: long enough for the
 * attacker's ACK to cross any real path (a few hundred ms) and for one retransmitted SYN-ACK (the kernel's first is
 * at 1 s), short enough that a stop under a flood of spoofed SYNs, which never complete, stays prompt.
 */
export const HANDSHAKE_GRACE_MS = 2_000
const POLL_MS = 25

export interface HandshakeWait {
  readonly waitedMs: number
  readonly initiallyPending: number // ports of ours with a handshake under way when the wait began
  readonly pending: number // ... and when it ended (0: none)
}

/** The local ports of this network namespace's TCP handshakes under way (SYN received, ACK not yet), both families. */
export async function readHandshakePorts(): Promise<Set<number>> {
  const [v4, v6] = await Promise.all([readProcNet('tcp'), readProcNet('tcp6')])
  return new Set([...procNetLocalPorts(v4, SOCKET_STATE.tcpSynRecv), ...procNetLocalPorts(v6, SOCKET_STATE.tcpSynRecv)])
}

/**
 * Waits until no handshake is under way on a port `isOurs` says is the sensor's, or `graceMs` has passed. A listening
 * socket closed before its handshakes complete resets them, and those connections, whose SYN the sensor already
 * let in, would never be recorded. The caller keeps accepting (and recording) while it waits.
 */
export async function waitForHandshakes(
  isOurs: (port: number) => boolean,
  options: { readonly graceMs: number; readonly read?: () => Promise<ReadonlySet<number>> },
): Promise<HandshakeWait> {
  const read = options.read ?? readHandshakePorts
  const started = Date.now()
  let initiallyPending: number | null = null
  for (;;) {
    const pending = [...(await read())].filter(isOurs).length
    initiallyPending ??= pending
    const waitedMs = Date.now() - started
    if (pending === 0 || waitedMs >= options.graceMs) return { waitedMs, initiallyPending, pending }
    await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, options.graceMs - waitedMs)))
  }
}

/** Says what a wait did, when there was anything to wait for. */
export function logHandshakeWait(log: Logger, wait: HandshakeWait): void {
  if (wait.initiallyPending === 0) return
  const fields = { ports: wait.initiallyPending, waitedMs: wait.waitedMs, stillPending: wait.pending }
  if (wait.pending === 0) log.info(fields, 'handshakes under way completed before the listeners closed')
  else log.warn(fields, 'handshakes still under way when the listeners closed: those connections are reset unrecorded')
}
