import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { describe, expect, it, onTestFinished } from 'vitest'
import { iterateAttacks, openAttackDatabase } from '../../src/store/attack-query.js'
import { loadMigrations, migrate } from '../../src/store/migrate.js'
import { applyRetention, previewRetention } from '../../src/store/retention.js'
import {
  buildFixture, DAY_MS, makeAttack, NEW_RESPONSE, openStore, SHARED_RESPONSE, sha256, stateOf, tempDir, writeAttacks,
} from '../helpers/retention-fixture.js'

function openReadWrite(path: string): Database.Database {
  const db = new Database(path, { fileMustExist: true, timeout: 5_000 })
  onTestFinished(() => {
    db.close()
  })
  return db
}

function count(path: string, sql: string): number {
  const db = new Database(path, { readonly: true })
  try {
    return db.prepare<[], number>(sql).pluck().get() ?? -1
  } finally {
    db.close()
  }
}

describe('applyRetention', () => {
  it.each([1, 2, 1_000])('removes exactly the old attacks and what only they used (batch size %i)', async (batchSize) => {
    const fixture = await buildFixture()
    const db = openReadWrite(fixture.path)
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1)
    const progress: string[] = []
    const result = await applyRetention(db, { olderThanMs: fixture.cutoffMs, batchSize, quarantineDir: fixture.quarantineDir, onProgress: (p) => progress.push(p.phase) })
    expect(result).toEqual(fixture.expected)
    expect(new Set(progress)).toEqual(new Set(['attacks', 'responses', 'samples']))
    // The connection's foreign_keys setting is given back.
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1)

    const after = stateOf(fixture)
    expect(after['attacks']).toEqual([...fixture.keptIds].sort())
    expect(after['responses']).toEqual([sha256(NEW_RESPONSE), sha256(SHARED_RESPONSE)].sort())
    // Plugin rows only of the kept attacks (the one exactly at the cutoff has none).
    expect(after['runs']).toEqual([fixture.keptIds[1], fixture.keptIds[2]].sort())
    expect(after['artifacts']).toEqual([fixture.keptIds[1]])
    expect(after['downloads']).toEqual([fixture.keptIds[1]])
    expect(after['samples']).toEqual([sha256(Buffer.from('#!/bin/sh\necho shared\n'))])
    // Files: the shared sample stays; the old-only and orphan samples go; the three hostile paths are never touched.
    expect(after['files']).toEqual({ shared: true, old: false, orphan: false, outside: true, badName: true, viaSymlink: true })

    // The kept attacks still read back whole, the shared response included.
    const reader = openAttackDatabase(fixture.path)
    onTestFinished(() => {
      reader.close()
    })
    const responses = [...iterateAttacks(reader)].map((row) => row.response.toString('latin1'))
    expect(responses).toEqual([NEW_RESPONSE, SHARED_RESPONSE, NEW_RESPONSE].map((b) => b.toString('latin1')))

    // A second run finds nothing more to do.
    const again = await applyRetention(db, { olderThanMs: fixture.cutoffMs, batchSize, quarantineDir: fixture.quarantineDir })
    expect(again).toMatchObject({ attacks: 0, responsesRemoved: 0, samplesRemoved: 0, sampleFilesRemoved: 0 })
  })

  it('previews the same counts on a read-only connection and changes nothing', async () => {
    const fixture = await buildFixture()
    const before = stateOf(fixture)
    const reader = openAttackDatabase(fixture.path)
    onTestFinished(() => {
      reader.close()
    })
    const preview = previewRetention(reader, { olderThanMs: fixture.cutoffMs, quarantineDir: fixture.quarantineDir })
    expect(preview).toEqual(fixture.expected)
    expect(stateOf(fixture)).toEqual(before)
    const result = await applyRetention(openReadWrite(fixture.path), { olderThanMs: fixture.cutoffMs, quarantineDir: fixture.quarantineDir })
    expect(result).toEqual(preview)
  })

  it('deletes no file without a quarantine directory, and stops between batches when aborted', async () => {
    const fixture = await buildFixture()
    const controller = new AbortController()
    const db = openReadWrite(fixture.path)
    const partial = await applyRetention(db, { olderThanMs: fixture.cutoffMs, batchSize: 1, quarantineDir: null, signal: controller.signal, onProgress: () => controller.abort() })
    expect(partial).toMatchObject({ attacks: 1, aborted: true, responsesRemoved: 0, samplesRemoved: 0 })
    const rest = await applyRetention(db, { olderThanMs: fixture.cutoffMs, quarantineDir: null })
    expect(rest).toMatchObject({ attacks: 2, samplesRemoved: 5, sampleFilesRemoved: 0, sampleFilesSkipped: 5, aborted: false })
    expect(Object.values(stateOf(fixture)['files'] as Record<string, boolean>).every(Boolean)).toBe(true)
  })

  it('works on a schema-2 database (no plugin tables)', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const now = Date.now()
    await writeAttacks(path, [makeAttack(now - 100 * DAY_MS, Buffer.from('old')), makeAttack(now - 95 * DAY_MS, SHARED_RESPONSE), makeAttack(now, SHARED_RESPONSE)])
    // Migration 003 only added tables: without them, and with user_version 2, the file is what schema 2 wrote.
    const edit = new Database(path)
    edit.exec('DROP TABLE artifacts; DROP TABLE downloads; DROP TABLE plugin_runs; DROP TABLE samples; DROP TABLE pipeline_state; PRAGMA user_version = 2')
    edit.close()
    const options = { olderThanMs: now - 90 * DAY_MS, quarantineDir: join(dir, 'quarantine') }
    const expected = { attacks: 2, pluginRuns: 0, artifacts: 0, downloads: 0, responsesRemoved: 1, samplesRemoved: 0, sampleFilesRemoved: 0, sampleFilesSkipped: 0, aborted: false }
    const reader = openAttackDatabase(path)
    onTestFinished(() => {
      reader.close()
    })
    expect(previewRetention(reader, options)).toEqual(expected)
    expect(await applyRetention(openReadWrite(path), options)).toEqual(expected)
    expect(count(path, 'SELECT count(*) FROM responses')).toBe(1)
  })

  it('works on a schema-1 database (no responses either)', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const migrationsDir = join(dir, 'migrations-v1')
    mkdirSync(migrationsDir)
    const first = loadMigrations()[0]!
    writeFileSync(join(migrationsDir, first.name), first.sql)
    const db = new Database(path)
    onTestFinished(() => {
      db.close()
    })
    migrate(db, { migrationsDir })
    const insert = db.prepare(`INSERT INTO attacks (id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at, ended_at,
      close_reason, bytes_received, bytes_sent, truncated, payload, payload_size, md5, sha256, sha512) VALUES (?, 'tcp', 4, 'normal', '203.0.113.1', 1, '198.18.0.1', 23, ?, ?,
      'peer-closed', 0, 0, 0, x'', 0, '', '', '')`)
    const now = Date.now()
    insert.run('old', now - 100 * DAY_MS, now - 100 * DAY_MS)
    insert.run('new', now, now)
    const result = await applyRetention(db, { olderThanMs: now - 90 * DAY_MS })
    expect(result).toMatchObject({ attacks: 1, responsesRemoved: 0, pluginRuns: 0 })
    expect(db.prepare('SELECT id FROM attacks').pluck().all()).toEqual(['new'])
  })

  it('keeps a response that an attack committed between its snapshot and its delete refers to', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const now = Date.now()
    const responses = [1, 2, 3, 4, 5].map((i) => Buffer.from(`old response ${i}`))
    await writeAttacks(path, responses.map((r, i) => makeAttack(now - (100 + i) * DAY_MS, r)))
    // The candidate examined last (keyset order is by digest): re-used by a new attack after the first batch.
    const last = responses.reduce((a, b) => (sha256(a) > sha256(b) ? a : b))
    const store = await openStore(path, 1) // a fresh writer: it has not seen `last` and inserts it (OR IGNORE)
    let added = false
    const result = await applyRetention(openReadWrite(path), {
      olderThanMs: now - 90 * DAY_MS,
      batchSize: 1,
      onProgress: (p) => {
        if (p.phase !== 'responses' || added) return
        added = true
        store.enqueue(makeAttack(now, last))
        void store.flush() // commits synchronously, before retention's next transaction
      },
    })
    expect(added).toBe(true)
    expect(result).toMatchObject({ attacks: 5, responsesRemoved: 4 })
    expect(count(path, `SELECT count(*) FROM responses WHERE sha256 = '${sha256(last)}'`)).toBe(1)
  })

  // Known race, for the lead: sqlite-writer.ts skips INSERT OR IGNORE for digests it has committed before. Once
  // retention removes such a response, the writer's next attack with the same bytes refers to a missing row. Turn
  // this into `it` once the writer re-inserts (or notices the removal).
  it('keeps the response of a new attack whose writer had stored the same bytes before retention', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const now = Date.now()
    const template = Buffer.from('a template only old attacks got')
    const store = await openStore(path, 1)
    store.enqueue(makeAttack(now - 100 * DAY_MS, template))
    await store.flush()
    await applyRetention(openReadWrite(path), { olderThanMs: now - 90 * DAY_MS })
    store.enqueue(makeAttack(now, template))
    await store.flush()
    expect(count(path, 'SELECT count(*) FROM attacks a LEFT JOIN responses r ON r.sha256 = a.response_sha256 WHERE r.sha256 IS NULL')).toBe(0)
  })

  it('loses nothing the sensor writes from another process while it runs', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const now = Date.now()
    // Old attacks with 8 KiB payloads, half answered with nothing (the digest the writer below uses too).
    const old = Array.from({ length: 4_000 }, (_, i) => makeAttack(now - (100 + i / 40) * DAY_MS, i % 2 === 0 ? Buffer.alloc(0) : Buffer.from(`r${i}`), Buffer.alloc(8_192, i)))
    await writeAttacks(path, old)
    const writer = spawnWriter(path)
    await writer.ready
    const startedMs = Date.now()
    const result = await applyRetention(openReadWrite(path), { olderThanMs: now - 90 * DAY_MS, batchSize: 5 })
    const endedMs = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const stored = await writer.kill()
    expect(result.attacks).toBe(4_000)
    // One more only if the writer had committed nothing yet when the empty response was examined.
    expect(result.responsesRemoved).toBeGreaterThanOrEqual(2_000)
    expect(result.responsesRemoved).toBeLessThanOrEqual(2_001)
    // The writer really wrote while retention ran, never waited long, and never dropped a batch. Retention leaves the
    // lock free half of the time and the writer tries every 50 ms at most: a wait of 1 s would take ~20 misses in a row.
    console.log(`retention ${endedMs - startedMs} ms: ${stored.during(startedMs, endedMs)} attacks stored, longest wait without one ${stored.longestWait(startedMs, endedMs)} ms`)
    expect(stored.during(startedMs, endedMs)).toBeGreaterThan(0)
    expect(stored.longestWait(startedMs, endedMs)).toBeLessThan(1_000)
    expect(stored.dropLines).toBe(0)
    const reader = openAttackDatabase(path)
    onTestFinished(() => {
      reader.close()
    })
    const ids = new Set(reader.prepare<[], string>('SELECT id FROM attacks').pluck().all())
    expect(stored.ids.length).toBeGreaterThan(50)
    expect(stored.ids.filter((id) => !ids.has(id))).toEqual([])
    expect(count(path, `SELECT count(*) FROM attacks WHERE started_at < ${now - 90 * DAY_MS}`)).toBe(0)
    expect(count(path, 'SELECT count(*) FROM attacks a LEFT JOIN responses r ON r.sha256 = a.response_sha256 WHERE r.sha256 IS NULL')).toBe(0)
  })

  it('never starves the sensor\'s writer, however long it runs: no wait of a second for the lock', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const now = Date.now()
    // Many small attacks in small batches: a run of a thousand short transactions, the lock taken most of the time.
    await writeAttacks(path, Array.from({ length: 24_000 }, (_, i) => makeAttack(now - (100 + i / 400) * DAY_MS, Buffer.alloc(0), Buffer.alloc(64, i))))
    const writer = spawnWriter(path)
    await writer.ready
    const startedMs = Date.now()
    const result = await applyRetention(openReadWrite(path), { olderThanMs: now - 90 * DAY_MS, batchSize: 24 })
    const endedMs = Date.now()
    const stored = await writer.kill()
    console.log(`retention of 24,000 in ${endedMs - startedMs} ms: ${stored.during(startedMs, endedMs)} attacks stored, longest wait without one ${stored.longestWait(startedMs, endedMs)} ms`)
    expect(result.attacks).toBe(24_000)
    expect(stored.longestWait(startedMs, endedMs)).toBeLessThan(1_000)
    expect(stored.dropLines).toBe(0)
  })
})

interface WriterReport {
  readonly ids: readonly string[] // every attack the store logged as committed
  readonly dropLines: number
  during(fromMs: number, toMs: number): number // commits logged in that interval
  longestWait(fromMs: number, toMs: number): number // longest stretch of that interval without a commit, ms
}

/** The sensor's store in a child process (test/helpers/store-writer-child.mjs, on the build), writing until killed. */
function spawnWriter(path: string): { readonly ready: Promise<void>; kill(): Promise<WriterReport> } {
  const helper = fileURLToPath(new URL('../helpers/store-writer-child.mjs', import.meta.url))
  const child = spawn(process.execPath, [helper, path, '20', 'info'], { stdio: ['ignore', 'pipe', 'inherit'] })
  onTestFinished(() => {
    child.kill('SIGKILL')
  })
  const stored: { id: string; atMs: number }[] = []
  let dropLines = 0
  let buffered = ''
  let markReady: () => void = () => undefined
  const ready = new Promise<void>((resolve) => (markReady = resolve))
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    const lines = (buffered + chunk).split('\n')
    buffered = lines.pop() ?? ''
    for (const line of lines) {
      if (line === 'ready') markReady()
      if (!line.startsWith('{')) continue
      const record = JSON.parse(line) as { msg?: string; attackId?: string; time?: string }
      if (record.msg === 'attack stored') stored.push({ id: String(record.attackId), atMs: Date.parse(String(record.time)) })
      if (record.msg === 'store dropped attacks after repeated write failures') dropLines += 1
    }
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    ready,
    async kill(): Promise<WriterReport> {
      child.kill('SIGKILL')
      await exited
      const committedAt = (from: number, to: number): number[] => stored.filter((s) => s.atMs >= from && s.atMs <= to).map((s) => s.atMs)
      return {
        ids: stored.map((s) => s.id),
        dropLines,
        during: (from, to) => committedAt(from, to).length,
        longestWait: (from, to) => {
          const edges = [from, ...committedAt(from, to), to]
          return Math.max(...edges.slice(1).map((at, i) => at - edges[i]!))
        },
      }
    },
  }
}
