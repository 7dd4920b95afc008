import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'

export interface FdLimit {
  readonly soft: number
  readonly hard: number
}

/** Parses the "Max open files" line of /proc/<pid>/limits; null when absent. "unlimited" reads as Infinity. */
export function parseOpenFilesLimit(text: string): FdLimit | null {
  const line = text.split('\n').find((l) => l.startsWith('Max open files'))
  if (line === undefined) return null
  const [soft, hard] = line.slice('Max open files'.length).trim().split(/\s+/)
  const num = (v: string | undefined): number => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v))
  const limit = { soft: num(soft), hard: num(hard) }
  return Number.isNaN(limit.soft) || Number.isNaN(limit.hard) ? null : limit
}

/**
 * Raises the soft RLIMIT_NOFILE to the hard limit and returns what holds afterwards. Node has no setrlimit; it raises
 * the soft limit itself at start-up on most builds, and `prlimit` (util-linux) on our own pid covers the rest.
 */
export async function raiseFdLimit(): Promise<FdLimit | null> {
  const read = async (): Promise<FdLimit | null> => parseOpenFilesLimit(await readFile('/proc/self/limits', 'utf8').catch(() => ''))
  const before = await read()
  if (before === null || before.soft >= before.hard) return before
  const hard = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited'
  await promisify(execFile)('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`]).catch(() => undefined)
  return read()
}
