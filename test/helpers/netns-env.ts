import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import { describe } from 'vitest'
import type { NetnsPair } from '../../src/netns/netns-pair.js'

/**
 * Namespace tests need root (ip netns, iptables, NFQUEUE). Where the runner is not root they skip, and say so loudly;
 * CI sets HONEYTRAP_REQUIRE_NETNS=1 so that a missing privilege fails the run instead of skipping it.
 */
export const isRoot = process.getuid?.() === 0

if (!isRoot) {
  const message = 'namespace end-to-end tests need root (ip netns, iptables, NFQUEUE)'
  if (process.env['HONEYTRAP_REQUIRE_NETNS'] === '1') throw new Error(`${message}, and HONEYTRAP_REQUIRE_NETNS=1 forbids skipping them`)
  console.warn(`\n*** SKIPPING: ${message}; run the suite as root ***\n`)
}

/** `describe` for namespace suites: runs as root, skips (loudly, see above) otherwise. */
export const describeNetns = describe.skipIf(!isRoot)

/** Polls `query` until `accept` holds or `timeoutMs` passes; returns the last value either way. */
export async function waitFor<T>(query: () => T, accept: (value: T) => boolean, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let value = query()
  while (!accept(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, intervalMs))
    value = query()
  }
  return value
}

/** Names of the BPF programs of ours (honeytrap_*) loaded on the host, from bpftool. */
export async function loadedHoneytrapPrograms(): Promise<string[]> {
  const { stdout } = await promisify(execFile)('bpftool', ['prog', 'show', '--json'], { timeout: 10_000, maxBuffer: 16 * 1024 * 1024 })
  return (JSON.parse(stdout) as { name?: string }[]).map((p) => p.name ?? '').filter((n) => n.startsWith('honeytrap'))
}

/** True when a socket of the sensor's namespace listens on (TCP) or is bound to (UDP) `port`. */
export async function listening(pair: NetnsPair, proto: 'tcp' | 'udp', port: number): Promise<boolean> {
  const out = await pair.exec(pair.sensorNs, 'ss', ['-Hn', proto === 'tcp' ? '-lt' : '-lu', `sport = :${port}`])
  return out.trim() !== ''
}

/** Polls an async condition until it holds or `timeoutMs` passes; true when it held. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** Reads rows from a database the sensor is writing (a read-only WAL reader never blocks the writer). */
export function readRows<T>(dbPath: string, sql: string, ...params: unknown[]): T[] {
  let db: Database.Database
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true })
  } catch {
    return []
  }
  try {
    return db.prepare(sql).all(...params) as T[]
  } catch {
    return [] // the schema may not exist yet in the first instants
  } finally {
    db.close()
  }
}
