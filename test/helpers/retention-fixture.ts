import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { onTestFinished } from 'vitest'
import { attackRecord } from './attack-record.js'
import type { Attack } from '../../src/attack/attack.js'
import { createUlid } from '../../src/core/ids.js'
import { Quarantine } from '../../src/plugins/download/quarantine.js'
import type { RetentionResult } from '../../src/store/retention.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'
import type { AttackStore } from '../../src/store/store.js'

// The database of the retention and `db` command tests: attacks written by the real store, plugin rows by SQL in the
// shape of migrations/003-plugins.sql, samples in a real Quarantine, and hostile sample paths a hand edit could make.

export const DAY_MS = 86_400_000

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ht-retention-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** An attack that started at `startedAtMs` and was answered with `response`. */
export function makeAttack(startedAtMs: number, response: Buffer, payload: Buffer = Buffer.from(`GET /${startedAtMs} HTTP/1.0\r\n\r\n`)): Attack {
  return attackRecord(payload, { id: createUlid(startedAtMs), startedAtMs, response, source: { address: '203.0.113.9', port: 40_000 + (startedAtMs % 20_000) } })
}

/** The real store, closed at the end of the test; batchMaxAttacks 1 makes `flush` commit at once. */
export async function openStore(path: string, batchMaxAttacks = 100): Promise<AttackStore> {
  const store = await createSqliteStore({ path, batchWindowMs: 5, batchMaxAttacks, maxQueuedAttacks: 100_000, maxQueuedBytes: 512 * 1024 * 1024, log: pino({ level: 'silent' }) })
  onTestFinished(() => store.close())
  return store
}

export async function writeAttacks(path: string, attacks: readonly Attack[]): Promise<void> {
  const store = await openStore(path)
  for (const attack of attacks) store.enqueue(attack)
  await store.close()
}

export const SHARED_RESPONSE = Buffer.from('HTTP/1.0 200 OK\r\n\r\nshared template\u001b[2J')
export const OLD_ONLY_RESPONSE = Buffer.from('220 only the old attacks got this\r\n')
export const NEW_RESPONSE = Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')

export interface Fixture {
  readonly dir: string
  readonly path: string
  readonly quarantineDir: string
  readonly cutoffMs: number
  readonly oldIds: readonly string[]
  readonly keptIds: readonly string[]
  readonly files: { readonly shared: string; readonly old: string; readonly orphan: string; readonly outside: string; readonly badName: string; readonly viaSymlink: string }
  readonly expected: RetentionResult // what retention removes from this fixture
}

/**
 * Three attacks before the cutoff, one exactly at it and two after. Samples: one shared by an old and a new attack
 * (kept), one only old (removed with its file), one no download names (removed with its file), and three whose rows
 * go but whose files must stay: outside the quarantine, not named by the digest, and behind a symlink leading out.
 */
export async function buildFixture(nowMs = Date.now()): Promise<Fixture> {
  const dir = tempDir()
  const path = join(dir, 'attacks.db')
  const quarantineDir = join(dir, 'quarantine') // where the default config puts it: the `db` command finds it from --db
  const outsideDir = join(dir, 'elsewhere')
  mkdirSync(outsideDir)
  const cutoffMs = nowMs - 90 * DAY_MS
  const old = [makeAttack(nowMs - 200 * DAY_MS, SHARED_RESPONSE), makeAttack(nowMs - 120 * DAY_MS, OLD_ONLY_RESPONSE), makeAttack(cutoffMs - 1, SHARED_RESPONSE)]
  const kept = [makeAttack(cutoffMs, NEW_RESPONSE), makeAttack(nowMs - 89 * DAY_MS, SHARED_RESPONSE), makeAttack(nowMs - DAY_MS, NEW_RESPONSE)]
  await writeAttacks(path, [...kept, ...old])

  const quarantine = new Quarantine(quarantineDir)
  const shared = quarantine.store(Buffer.from('#!/bin/sh\necho shared\n'))
  const oldOnly = quarantine.store(Buffer.from('MZ old-only sample'))
  const orphan = quarantine.store(Buffer.from('no download names me'))
  const outsideData = Buffer.from('outside the quarantine')
  const outside = join(outsideDir, sha256(outsideData))
  writeFileSync(outside, outsideData)
  const badNameData = Buffer.from('inside, but not named by its digest')
  const badName = join(quarantineDir, 'zz', 'notes.txt')
  mkdirSync(join(quarantineDir, 'zz'))
  writeFileSync(badName, badNameData)
  const linkedData = Buffer.from('reached through a symlink')
  symlinkSync(outsideDir, join(quarantineDir, 'ln'))
  writeFileSync(join(outsideDir, sha256(linkedData)), linkedData)
  const viaSymlink = join(quarantineDir, 'ln', sha256(linkedData))

  const db = new Database(path)
  try {
    const run = db.prepare("INSERT INTO plugin_runs (attack_id, subject_sha256, plugin, status, error, started_at, duration_ms) VALUES (?, ?, 'httpDownload', 'ok', NULL, ?, 5)")
    const artifact = db.prepare("INSERT INTO artifacts (run_id, attack_id, subject_sha256, kind, info) VALUES (?, ?, ?, 'url', '{}')")
    const download = db.prepare(
      "INSERT INTO downloads (run_id, attack_id, subject_sha256, plugin, url, outcome, bytes, sha256, started_at, duration_ms) VALUES (?, ?, ?, 'httpDownload', 'http://198.51.100.7/x', ?, 10, ?, ?, 3)",
    )
    const sample = db.prepare('INSERT INTO samples (sha256, size, first_seen, path) VALUES (?, ?, ?, ?)')
    const plugins = (a: Attack, artifacts: number, downloads: readonly (string | null)[]): void => {
      const runId = Number(run.run(a.id, sha256(a.payload), a.startedAtMs).lastInsertRowid)
      for (let i = 0; i < artifacts; i++) artifact.run(runId, a.id, sha256(a.payload))
      for (const s of downloads) download.run(runId, a.id, sha256(a.payload), s === null ? 'failed' : 'ok', s, a.startedAtMs)
    }
    plugins(old[0]!, 1, [shared.sha256])
    plugins(old[1]!, 2, [oldOnly.sha256, null])
    plugins(old[2]!, 1, [sha256(outsideData), sha256(badNameData), sha256(linkedData)])
    plugins(kept[1]!, 1, [shared.sha256])
    plugins(kept[2]!, 0, [])
    for (const s of [shared, oldOnly, orphan]) sample.run(s.sha256, s.size, nowMs, s.path)
    sample.run(sha256(outsideData), outsideData.length, nowMs, outside)
    sample.run(sha256(badNameData), badNameData.length, nowMs, badName)
    sample.run(sha256(linkedData), linkedData.length, nowMs, viaSymlink)
  } finally {
    db.close()
  }
  return {
    dir,
    path,
    quarantineDir,
    cutoffMs,
    oldIds: old.map((a) => a.id),
    keptIds: kept.map((a) => a.id),
    files: { shared: shared.path, old: oldOnly.path, orphan: orphan.path, outside, badName, viaSymlink: join(outsideDir, sha256(linkedData)) },
    expected: {
      attacks: 3,
      pluginRuns: 3,
      artifacts: 4,
      downloads: 6,
      responsesRemoved: 1,
      samplesRemoved: 5,
      sampleFilesRemoved: 2,
      sampleFilesSkipped: 3,
      aborted: false,
    },
  }
}

/** Everything retention may change, in a comparable form. */
export function stateOf(fixture: Fixture): Record<string, unknown> {
  const db = new Database(fixture.path, { readonly: true })
  try {
    const column = (sql: string): unknown[] => db.prepare(sql).pluck().all()
    return {
      attacks: column('SELECT id FROM attacks ORDER BY id'),
      responses: column('SELECT sha256 FROM responses ORDER BY sha256'),
      runs: column('SELECT attack_id FROM plugin_runs ORDER BY attack_id'),
      artifacts: column('SELECT attack_id FROM artifacts ORDER BY attack_id'),
      downloads: column('SELECT attack_id FROM downloads ORDER BY attack_id'),
      samples: column('SELECT sha256 FROM samples ORDER BY sha256'),
      files: Object.fromEntries(Object.entries(fixture.files).map(([name, file]) => [name, existsSync(file)])),
    }
  } finally {
    db.close()
  }
}
