import type { ChildProcess } from 'node:child_process'
import { HoneytrapError } from '../core/errors.js'

/** A child process's stdout read as JSON lines, its stderr kept, and the way to wait for a line and to stop it. */
export interface ChildLines<T> {
  readonly pid: number
  readonly lines: readonly T[] // the most recent ones (up to maxKept)
  stderr(): string
  /** Resolves with the first line (past or future) matching `predicate`; rejects after `timeoutMs` or if it exits. */
  waitFor(predicate: (line: T) => boolean, timeoutMs: number): Promise<T>
  /** Sends `signal` to the child's pid (SIGKILL after `timeoutMs`) and resolves with its exit code or signal. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>
}

export interface ChildLinesOptions<T> {
  readonly what: string // "sensor", "backend": for error messages
  readonly maxKept: number // bounded: a busy child writes a line per event for as long as it runs
  readonly parse: (text: string) => T // never throws: a line that is not JSON becomes some T too
  readonly stopTimeoutMs: number // default for stop()
}

const MAX_STDERR_CHARS = 64 * 1024

/**
 * Collects what a child started with `ip netns exec` writes. `ip netns exec` execs in place, so the child's pid is
 * the program's own: stop() signals exactly that process, never another by name.
 */
export function collectChildLines<T>(child: ChildProcess, options: ChildLinesOptions<T>): ChildLines<T> {
  const pid = child.pid
  if (pid === undefined) throw new HoneytrapError('HT_ERR_NETNS', `could not start the ${options.what} process`)
  const lines: T[] = []
  const waiters = new Set<{ predicate: (l: T) => boolean; resolve: (l: T) => void }>()
  let stderr = ''
  let buffered = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = options.parse(buffered.slice(0, nl))
      buffered = buffered.slice(nl + 1)
      lines.push(line)
      if (lines.length > options.maxKept) lines.splice(0, lines.length - options.maxKept / 2)
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.delete(w)
          w.resolve(line)
        }
      }
    }
  })
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < MAX_STDERR_CHARS) stderr += chunk
  })
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  const running = (): boolean => child.exitCode === null && child.signalCode === null

  const waitFor = (predicate: (line: T) => boolean, timeoutMs: number): Promise<T> => {
    const found = lines.find(predicate)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (l: T) => {
          clearTimeout(timer)
          resolve(l)
        },
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new HoneytrapError('HT_ERR_NETNS', `${options.what} line not seen within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`))
      }, timeoutMs)
      waiters.add(waiter)
      void exited.then(() => {
        if (!waiters.has(waiter)) return
        waiters.delete(waiter)
        clearTimeout(timer)
        reject(new HoneytrapError('HT_ERR_NETNS', `${options.what} exited before the awaited line; stderr: ${stderr.slice(-2000)}`))
      })
    })
  }

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = options.stopTimeoutMs): Promise<number | string> => {
    if (running()) process.kill(pid, signal)
    const timer = setTimeout(() => {
      if (running()) process.kill(pid, 'SIGKILL')
    }, timeoutMs)
    const code = await exited
    clearTimeout(timer)
    child.stdin?.destroy()
    return code
  }

  return { pid, lines, stderr: () => stderr, waitFor, stop }
}
