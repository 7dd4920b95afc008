import { execFile } from 'node:child_process'

/**
 * What `honeytrap-ts doctor` reports: a list of checks, each about one capture monitor (or all of them), and the
 * verdict drawn from them. Checks only read the host; a check that breaks or hangs becomes a finding, never a throw.
 */

export type MonitorName = 'nfqueue' | 'ebpf' | 'pcap'

/** In order of preference: ebpf steers inside the kernel, nfqueue holds SYNs, pcap only watches (loses first tries). */
export const MONITORS: readonly MonitorName[] = ['ebpf', 'nfqueue', 'pcap']

export type CheckStatus = 'ok' | 'warn' | 'fail'

export interface Check {
  readonly id: string // dotted, stable: `nfqueue.module`, `ebpf.probe`
  readonly monitor: MonitorName | 'all' // 'all': a failure here makes every monitor unusable
  readonly status: CheckStatus // fail: this monitor cannot work here; warn: it can, with a caveat
  readonly summary: string // one line
  readonly detail?: string // what was seen: versions, program ids, the error's message
  readonly fix?: string // the exact command or setting that makes a fail or a warn go away
}

export interface MonitorVerdict {
  readonly monitor: MonitorName
  readonly usable: boolean // no check of this monitor (or of all monitors) failed
  readonly failed: readonly string[] // ids of the failed checks
  readonly warned: readonly string[] // ids of the warnings
}

/** One verdict per monitor, in preference order. Pure. */
export function monitorVerdicts(checks: readonly Check[]): MonitorVerdict[] {
  return MONITORS.map((monitor) => {
    const own = checks.filter((c) => c.monitor === monitor || c.monitor === 'all')
    const failed = own.filter((c) => c.status === 'fail').map((c) => c.id)
    const warned = own.filter((c) => c.status === 'warn').map((c) => c.id)
    return { monitor, usable: failed.length === 0, failed, warned }
  })
}

/** The first usable monitor in preference order (ebpf, nfqueue, pcap), or null when none is. Pure. */
export function recommendMonitor(verdicts: readonly MonitorVerdict[]): MonitorName | null {
  for (const monitor of MONITORS) {
    if (verdicts.find((v) => v.monitor === monitor)?.usable === true) return monitor
  }
  return null
}

export interface CheckMeta {
  readonly id: string
  readonly monitor: MonitorName | 'all'
  readonly timeoutMs: number
  /** How a thrown error or a timeout counts: fail where the check decides usability, warn where it only informs. */
  readonly onError: 'fail' | 'warn'
}

/**
 * Runs one check's body with a deadline. Whatever goes wrong (a throw, a rejection, no answer in time) comes back as
 * a check with the error's message as its detail, so one broken probe never hides the others' findings.
 */
export async function guardCheck(meta: CheckMeta, body: () => Promise<Check | readonly Check[]> | Check | readonly Check[]): Promise<Check[]> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), meta.timeoutMs)
  })
  try {
    const result = await Promise.race([Promise.resolve().then(body), deadline])
    if (result === 'timeout') {
      return [{ id: meta.id, monitor: meta.monitor, status: meta.onError, summary: `check did not finish within ${meta.timeoutMs / 1000} s` }]
    }
    return Array.isArray(result) ? [...(result as readonly Check[])] : [result as Check]
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err)
    return [{ id: meta.id, monitor: meta.monitor, status: meta.onError, summary: 'check failed unexpectedly', detail }]
  } finally {
    clearTimeout(timer)
  }
}

export interface BoundedResult {
  readonly exitCode: number | null // null: killed (timeout) or never started
  readonly stdout: string
  readonly stderr: string
  readonly notFound: boolean // the program is not installed
  readonly timedOut: boolean
}

export const CHECK_TIMEOUT_MS = 5_000
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024 // bpftool's listing of a busy host fits

/**
 * Runs a program (never a shell) with a hard time limit: SIGKILL at the deadline, so a tool stuck on a lock cannot
 * keep the doctor running. Resolves whatever happens; never rejects.
 */
export async function execBounded(file: string, args: readonly string[], timeoutMs = CHECK_TIMEOUT_MS): Promise<BoundedResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve({ exitCode: 0, stdout, stderr, notFound: false, timedOut: false })
          return
        }
        const code: unknown = (err as { code?: unknown }).code
        resolve({
          exitCode: typeof code === 'number' ? code : null,
          stdout,
          stderr: stderr !== '' ? stderr : err.message,
          notFound: code === 'ENOENT',
          timedOut: err.killed === true && typeof code !== 'number',
        })
      },
    )
  })
}

/** The first non-empty line of a tool's error output, for a detail that stays one line. */
export function firstLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? ''
}
