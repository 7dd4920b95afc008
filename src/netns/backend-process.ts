import type { ChildProcess } from 'node:child_process'
import { collectChildLines } from './child-lines.js'
import type { NetnsPair } from './netns-pair.js'
import { distScript } from './sensor-process.js'

// The most recent events kept for waitFor and for tests to read (a UDP flood writes one per datagram).
const MAX_KEPT_EVENTS = 10_000

/** One JSON line of backend-server: `listening`, `connection`, `closed`, `datagram` or `exit`. */
export type BackendEvent = Readonly<Record<string, unknown>> & { readonly event: string }

/** A backend-server process inside a namespace, with its events collected. */
export interface BackendProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly tcpPort: number | null // as bound (useful with --tcp 0), null without --tcp
  readonly udpPort: number | null
  readonly events: readonly BackendEvent[] // the most recent ones (up to MAX_KEPT_EVENTS)
  readonly stderr: () => string
  /** Resolves with the first event (past or future) matching `predicate`; rejects after `timeoutMs` or if it exits. */
  waitFor(predicate: (event: BackendEvent) => boolean, timeoutMs: number): Promise<BackendEvent>
  /** Sends `signal` to the backend's pid (SIGKILL after `timeoutMs`) and resolves with its exit code or signal. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>
}

/**
 * Starts `backend-server ARGS` in namespace `ns` and resolves once it reports `listening`. `ip netns exec` execs in
 * place, so the child's pid is node's own and stop() signals exactly that process; stdin is a pipe and the script is
 * given --exit-on-stdin-end, so it also exits when this process dies without stopping it.
 */
export async function startBackend(pair: NetnsPair, ns: string, args: readonly string[], options: { readonly readyTimeoutMs?: number } = {}): Promise<BackendProcess> {
  const child = pair.spawn(ns, process.execPath, [distScript('netns/backend-server.js'), '--exit-on-stdin-end', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  const { pid, lines: events, stderr, waitFor, stop } = collectChildLines<BackendEvent>(child, {
    what: 'backend',
    maxKept: MAX_KEPT_EVENTS,
    parse: (text) => {
      try {
        return JSON.parse(text) as BackendEvent
      } catch {
        return { event: 'unparsed', text }
      }
    },
    stopTimeoutMs: 5_000,
  })
  child.stdin?.on('error', () => undefined) // EPIPE once the backend has exited

  const timeoutMs = options.readyTimeoutMs ?? 10_000
  let listening: BackendEvent
  try {
    listening = await waitFor((e) => e.event === 'listening', timeoutMs)
  } catch (err) {
    await stop('SIGKILL')
    throw err
  }
  const port = (value: unknown): number | null => (typeof value === 'number' ? value : null)
  return { child, pid, tcpPort: port(listening['tcp']), udpPort: port(listening['udp']), events, stderr, waitFor, stop }
}
