import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'

import { HoneytrapError } from '../core/errors.js'

/**
 * Running the netfilter tools: argument arrays through execFile (never a shell, so nothing an operator types can be
 * interpreted twice), optionally inside a named network namespace, with a time limit on every call.
 */

export interface ExecOptions {
  /** Run inside `ip netns exec NAME`; unset when the sensor already runs inside the namespace it guards. */
  readonly netns?: string | undefined
}

export interface CommandResult {
  readonly command: string // the exact command line, for error messages
  readonly exitCode: number // -1 when killed by a signal
  readonly stdout: string
  readonly stderr: string
  readonly notFound: boolean // the program is not installed
  readonly error: Error | null // execFile's error for a non-zero exit, kept as the `cause` of what callers throw
}

// -w takes seconds: long enough for a busy firewalld or docker to finish, short enough that a stuck lock holder
// becomes a clear error instead of a sensor that hangs at start-up.
export const XTABLES_LOCK_WAIT_S = 10
const COMMAND_TIMEOUT_MS = 30_000 // above the lock wait, so iptables reports the lock itself before we give up
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024 // a listing of a large firewall fits; anything bigger is not iptables

// `ip netns exec` reports a missing program itself (exit 255) instead of failing the spawn.
const NETNS_EXEC_NOT_FOUND = /exec of ".*" failed: No such file or directory/
const NETNS_MISSING = /Cannot open network namespace/

/** Runs `file args` (inside `opts.netns` when set) and resolves with its exit code and output, whatever the code. */
export async function runCommand(file: string, args: readonly string[], opts: ExecOptions = {}): Promise<CommandResult> {
  const [bin, argv] = opts.netns === undefined ? [file, [...args]] : ['ip', ['netns', 'exec', opts.netns, file, ...args]]
  const command = formatCommand(bin, argv)
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      argv,
      {
        timeout: COMMAND_TIMEOUT_MS,
        maxBuffer: MAX_OUTPUT_BYTES,
        encoding: 'utf8',
        // Stable English messages: they end up in error messages and the docs quote them.
        env: { ...process.env, LC_ALL: 'C' },
      },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve({ command, exitCode: 0, stdout, stderr, notFound: false, error: null })
          return
        }
        const code: unknown = (err as { code?: unknown }).code
        if (code === 'ENOENT') {
          resolve({ command, exitCode: 127, stdout, stderr: `${bin}: command not found`, notFound: true, error: err })
          return
        }
        if (typeof code !== 'number') {
          const why =
            err.killed === true
              ? `did not finish within ${COMMAND_TIMEOUT_MS} ms`
              : err.signal != null
                ? `was killed by ${err.signal}`
                : `could not be started: ${err.message}`
          reject(new HoneytrapError('HT_ERR_RULES', `\`${command}\` ${why}`, { cause: err }))
          return
        }
        if (opts.netns !== undefined && NETNS_MISSING.test(stderr)) {
          const message = `network namespace "${opts.netns}" does not exist: ${stderr.trim()}`
          reject(new HoneytrapError('HT_ERR_NETNS', message, { cause: err }))
          return
        }
        const notFound = opts.netns !== undefined && NETNS_EXEC_NOT_FOUND.test(stderr)
        resolve({ command, exitCode: code, stdout, stderr, notFound, error: err })
      },
    )
  })
}

/**
 * Reads a /proc text file as the namespace sees it. /proc/net and /proc/sys/net follow the reader's network
 * namespace, so for another namespace the read has to happen inside it. Resolves null when the file is absent
 * (module not loaded, IPv6 disabled) or unreadable.
 */
export async function readProcText(path: string, opts: ExecOptions = {}): Promise<string | null> {
  if (opts.netns === undefined) {
    try {
      return await readFile(path, 'utf8')
    } catch {
      return null
    }
  }
  const result = await runCommand('cat', [path], opts)
  return result.exitCode === 0 ? result.stdout : null
}

const CAP_NET_ADMIN = 12n
const CAP_NET_RAW = 13n // legacy iptables talks to the kernel through a raw socket

/** True when the CapEff line of /proc/self/status grants both capabilities iptables needs. Pure. */
export function hasFirewallCapabilities(procStatus: string): boolean {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(procStatus)
  if (!m?.[1]) return false
  const caps = BigInt(`0x${m[1]}`)
  return ((caps >> CAP_NET_ADMIN) & 1n) === 1n && ((caps >> CAP_NET_RAW) & 1n) === 1n
}

/**
 * Fails early with the fix instead of letting iptables print "Permission denied (you must be root)" halfway through
 * an install. Root passes; so does a process given CAP_NET_ADMIN and CAP_NET_RAW (a systemd unit, a container).
 */
export async function assertFirewallPrivilege(action: string): Promise<void> {
  if (process.geteuid?.() === 0) return
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '')
  if (hasFirewallCapabilities(status)) return
  throw new HoneytrapError(
    'HT_ERR_NOT_ROOT',
    `${action} needs root: run it with sudo (e.g. \`sudo honeytrap-ts iptables install\`), or grant the process ` +
      'CAP_NET_ADMIN and CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)',
  )
}

/** A command line for humans: arguments with spaces or quotes are single-quoted so the text can be pasted back. */
export function formatCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ')
}
