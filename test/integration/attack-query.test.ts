import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack, TranscriptChunk } from '../../src/attack/attack.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { createUlid } from '../../src/core/ids.js'
import { iterateAttacks, listAttacks, openAttackDatabase, type AttackRow } from '../../src/store/attack-query.js'
import { parseStoredTranscript, toExportRecord, type ExportChunk, type ExportRecord } from '../../src/store/export-record.js'
import { latestSchemaVersion, loadMigrations, migrate } from '../../src/store/migrate.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'

// The database is written by the real store, as the sensor writes it.

const BASE_MS = Date.UTC(2025, 0, 2, 3, 4, 5, 678)

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'honeytrap-query-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function makeAttack(i: number): Attack {
  const payload = Buffer.from(Array.from({ length: i * 3 }, (_, k) => (k * 31 + i) & 0xff))
  const response = Buffer.from(Array.from({ length: i * 2 }, (_, k) => (k * 17 + i) & 0xff))
  // The attacker speaks, the sensor answers, the attacker finishes: chunks of size 0 are never listed.
  const half = Math.ceil(payload.length / 2)
  const chunks: TranscriptChunk[] = [
    { direction: 'in', offsetMs: 0, size: half },
    { direction: 'out', offsetMs: 3, size: response.length },
    { direction: 'in', offsetMs: 40, size: payload.length - half },
  ]
  const transcript = chunks.filter((c) => c.size > 0)
  return {
    id: createUlid(BASE_MS + i * 1000),
    protocol: i % 3 === 0 ? 'udp' : 'tcp',
    family: i % 2 === 0 ? 4 : 6,
    mode: 'normal',
    source: { address: i % 2 === 0 ? '203.0.113.5' : '2001:db8::5', port: 30_000 + i },
    target: { address: i % 2 === 0 ? '198.18.0.1' : 'fd00::1', port: i % 4 === 0 ? 445 : 22 },
    startedAtMs: BASE_MS + i * 1000,
    endedAtMs: BASE_MS + i * 1000 + 250 + i,
    closeReason: i % 5 === 0 ? 'size-limit' : 'peer-closed',
    payload,
    truncated: i % 5 === 0,
    bytesReceived: payload.length + (i % 5 === 0 ? 10 : 0),
    bytesSent: i * 2,
    response,
    responseTruncated: false,
    transcript,
    transcriptTruncated: false,
    relay: null,
    synFacts: null,
  }
}

function storeAt(path: string): ReturnType<typeof createSqliteStore> {
  return createSqliteStore({
    path,
    batchWindowMs: 20,
    batchMaxAttacks: 100,
    maxQueuedAttacks: 1000,
    maxQueuedBytes: 16 * 1024 * 1024,
    log: pino({ level: 'silent' }),
  })
}

/** Writes attacks through the real store (which creates or migrates the file) and closes it. */
async function store(path: string, attacks: readonly Attack[]): Promise<void> {
  const s = await storeAt(path)
  for (const attack of attacks) s.enqueue(attack)
  await s.close()
}

/** Concatenates the bytes of one direction of an exported transcript. */
function replay(chunks: readonly ExportChunk[], direction: 'in' | 'out'): Buffer {
  return Buffer.concat(chunks.filter((c) => c.direction === direction).map((c) => Buffer.from(c.data_base64, 'base64')))
}

/** Every byte value, then invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong NUL, a surrogate. */
const HOSTILE = Buffer.concat([
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  Buffer.from([0x80, 0xe2, 0x82, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0xff, 0xfe, 0x00, 0x1b, 0x5b, 0x32, 0x4a]),
])

/** Writes 20 attacks, one second apart, through the store; returns the path and the attacks oldest first. */
async function seed(): Promise<{ path: string; attacks: Attack[] }> {
  const path = join(tempDir(), 'attacks.db')
  const attacks = Array.from({ length: 20 }, (_, i) => makeAttack(i))
  // Enqueued out of time order: the queries must order by start time, not by insertion.
  await store(path, [...attacks].reverse())
  return { path, attacks }
}

function schemaVersionOf(path: string): number {
  const db = new Database(path, { readonly: true })
  try {
    return Number(db.pragma('user_version', { simple: true }))
  } finally {
    db.close()
  }
}

function openForTest(path: string): Database.Database {
  const db = openAttackDatabase(path)
  onTestFinished(() => {
    db.close()
  })
  return db
}

describe('attack queries', () => {
  it('lists newest first with the total, and pages', async () => {
    const { path, attacks } = await seed()
    const db = openForTest(path)
    const newestFirst = [...attacks].reverse().map((a) => a.id)

    const page1 = listAttacks(db, { limit: 5 })
    expect(page1.total).toBe(20)
    expect(page1.attacks.map((row) => row.id)).toEqual(newestFirst.slice(0, 5))
    const page2 = listAttacks(db, { limit: 5, offset: 5 })
    expect(page2.total).toBe(20)
    expect(page2.attacks.map((row) => row.id)).toEqual(newestFirst.slice(5, 10))
    // Listings never carry the payload, the response or the transcript, only sizes, flags and digests.
    expect(page1.attacks[0]).not.toHaveProperty('payload')
    expect(page1.attacks[0]).not.toHaveProperty('response')
    expect(page1.attacks[0]).not.toHaveProperty('transcript')
    expect(page1.attacks[0]).toMatchObject({
      payload_size: attacks[19]!.payload.length,
      started_at: attacks[19]!.startedAtMs,
      response_size: 38,
      response_truncated: 0,
      response_sha256: createHash('sha256').update(attacks[19]!.response).digest('hex'),
      transcript_truncated: 0,
      relay_target: null,
      relay_outcome: null,
      fallback_reason: null,
      syn_facts: null,
    })
  })

  it('filters by start time, protocol and attacked port', async () => {
    const { path, attacks } = await seed()
    const db = openForTest(path)
    const ids = (list: readonly Attack[]): string[] => [...list].reverse().map((a) => a.id)

    const since = listAttacks(db, { limit: 100, sinceMs: BASE_MS + 15_000 })
    expect(since.total).toBe(5)
    expect(since.attacks.map((r) => r.id)).toEqual(ids(attacks.slice(15)))

    const udp = listAttacks(db, { limit: 100, protocol: 'udp' })
    expect(udp.attacks.map((r) => r.id)).toEqual(ids(attacks.filter((a) => a.protocol === 'udp')))
    expect(udp.total).toBe(7)

    const smb = listAttacks(db, { limit: 2, dstPort: 445, protocol: 'tcp', sinceMs: BASE_MS + 1 })
    const expected = attacks.filter((a) => a.target.port === 445 && a.protocol === 'tcp' && a.startedAtMs >= BASE_MS + 1)
    expect(smb.total).toBe(expected.length)
    expect(smb.attacks.map((r) => r.id)).toEqual(ids(expected).slice(0, 2))

    expect(listAttacks(db, { limit: 10, dstPort: 1 })).toEqual({ total: 0, attacks: [] })
  })

  it('iterates oldest first and exports JSON-lines records', async () => {
    const { path, attacks } = await seed()
    const db = openForTest(path)
    const rows: AttackRow[] = [...iterateAttacks(db)]
    expect(rows.map((row) => row.id)).toEqual(attacks.map((a) => a.id))

    const attack = attacks[5]!
    const record = toExportRecord(rows[5]!)
    expect(record).toEqual({
      id: attack.id,
      protocol: 'tcp',
      family: 6,
      src_ip: '2001:db8::5',
      src_port: 30_005,
      dst_ip: 'fd00::1',
      dst_port: 22,
      mode: 'normal',
      started_at: '2025-01-02T03:04:10.678Z',
      ended_at: '2025-01-02T03:04:10.933Z',
      duration_ms: 255,
      close_reason: 'size-limit',
      bytes_received: 25,
      bytes_sent: 10,
      truncated: true,
      payload_size: 15,
      payload_md5: createHash('md5').update(attack.payload).digest('hex'),
      payload_sha256: createHash('sha256').update(attack.payload).digest('hex'),
      payload_sha512: createHash('sha512').update(attack.payload).digest('hex'),
      payload_base64: attack.payload.toString('base64'),
      response_size: 10,
      response_truncated: false,
      response_sha256: createHash('sha256').update(attack.response).digest('hex'),
      response_base64: attack.response.toString('base64'),
      relay: null,
      syn_facts: null,
      transcript_truncated: false,
      transcript_error: null,
      plugin_runs: [], // no plugin results given: tests/integration/plugin-pipeline.test.ts covers them
      artifacts: [],
      downloads: [],
      transcript: [
        { direction: 'in', offset_ms: 0, size: 8, data_base64: attack.payload.subarray(0, 8).toString('base64') },
        { direction: 'out', offset_ms: 3, size: 10, data_base64: attack.response.toString('base64') },
        { direction: 'in', offset_ms: 40, size: 7, data_base64: attack.payload.subarray(8).toString('base64') },
      ],
    })
    // A JSON line round-trips to the same bytes.
    const line = JSON.stringify(record)
    const parsed = JSON.parse(line) as ExportRecord
    expect(Buffer.from(parsed.payload_base64, 'base64')).toEqual(attack.payload)
    expect(Buffer.from(parsed.response_base64, 'base64')).toEqual(attack.response)
    // The empty session of the first attack exports empty strings and an empty transcript, not null.
    expect(toExportRecord(rows[0]!)).toMatchObject({
      payload_size: 0,
      payload_base64: '',
      truncated: true,
      response_size: 0,
      response_base64: '',
      response_sha256: createHash('sha256').update(Buffer.alloc(0)).digest('hex'),
      transcript: [],
      transcript_error: null,
    })
  })

  it('opens read-only', async () => {
    const { path } = await seed()
    const db = openForTest(path)
    expect(db.readonly).toBe(true)
    expect(() => db.exec('DELETE FROM attacks')).toThrow(/readonly/)
  })

  it('refuses a missing file, a non-database and a foreign database with HT_ERR_STORE_OPEN', () => {
    const dir = tempDir()
    const attempt = (path: string): unknown => {
      try {
        openAttackDatabase(path).close()
      } catch (err) {
        return err
      }
      return undefined
    }
    const missing = join(dir, 'missing.db')
    expect(hasErrorCode(attempt(missing), 'HT_ERR_STORE_OPEN')).toBe(true)

    const text = join(dir, 'text.db')
    writeFileSync(text, 'hello\n'.repeat(1000))
    expect(hasErrorCode(attempt(text), 'HT_ERR_STORE_OPEN')).toBe(true)

    const foreign = join(dir, 'foreign.db')
    const other = new Database(foreign)
    other.exec('CREATE TABLE t (x)')
    other.close()
    const err = attempt(foreign)
    expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
    expect((err as Error).message).toContain('not a honeytrap-ts database')
  })
})

/** A database at schema 1 (only migration 001 applied), as an older honeytrap-ts left it, with rows written its way. */
function schemaOneDatabase(path: string, attacks: readonly Attack[]): void {
  const migrationsDir = join(tempDir(), 'migrations-v1')
  mkdirSync(migrationsDir)
  const first = loadMigrations()[0]!
  writeFileSync(join(migrationsDir, first.name), first.sql)
  const db = new Database(path)
  try {
    expect(migrate(db, { migrationsDir })).toMatchObject({ toVersion: 1 })
    const insert = db.prepare(`INSERT INTO attacks (id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at,
      ended_at, close_reason, bytes_received, bytes_sent, truncated, payload, payload_size, md5, sha256, sha512)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    for (const a of attacks) {
      const d = (algorithm: string): string => createHash(algorithm).update(a.payload).digest('hex')
      insert.run(a.id, a.protocol, a.family, a.mode, a.source.address, a.source.port, a.target.address, a.target.port, a.startedAtMs,
        a.endedAtMs, a.closeReason, a.bytesReceived, a.bytesSent, a.truncated ? 1 : 0, a.payload, a.payload.length, d('md5'), d('sha256'), d('sha512'))
    }
  } finally {
    db.close()
  }
}

function exportAll(path: string): ExportRecord[] {
  const db = openForTest(path)
  return [...iterateAttacks(db)].map((row) => toExportRecord(row))
}

/** A relayed session whose transcript alternates in many small chunks over hostile bytes in both directions. */
function chattyAttack(i: number, overrides: Partial<Attack> = {}): Attack {
  const payload = Buffer.concat([HOSTILE, Buffer.from([i])])
  const response = Buffer.from(HOSTILE).reverse()
  const transcript: TranscriptChunk[] = []
  for (let at = 0, k = 0; at < payload.length; k++) {
    const size = Math.min(1 + ((k * 37) % 50), payload.length - at)
    transcript.push({ direction: 'in', offsetMs: k * 10, size })
    at += size
  }
  for (let at = 0, k = 0; at < response.length; k++) {
    const size = Math.min(1 + ((k * 53) % 90), response.length - at)
    // Interleaved after the in chunks of the same time: the order between directions is the transcript's.
    transcript.splice(Math.min(2 * k + 1, transcript.length), 0, { direction: 'out', offsetMs: k * 10 + 1, size })
    at += size
  }
  return {
    ...makeAttack(i),
    mode: 'mirror',
    payload,
    bytesReceived: payload.length,
    response,
    bytesSent: response.length,
    transcript,
    relay: { target: '[2001:db8::5]:30001', outcome: 'relayed', reason: null },
    closeReason: 'target-closed',
    ...overrides,
  }
}

describe('schema 2: responses, transcripts and relays', () => {
  it('round-trips response, transcript and relay exactly, and the transcript replays both directions', async () => {
    const path = join(tempDir(), 'attacks.db')
    const relayed = chattyAttack(1)
    const fellBack = chattyAttack(2, {
      mode: 'proxy',
      relay: { target: 'backend.invalid:8080', outcome: 'fallback', reason: 'resolve-failed' },
      closeReason: 'peer-closed',
    })
    const budget = chattyAttack(3, { closeReason: 'budget-spent', relay: { target: '203.0.113.5:30003', outcome: 'fallback', reason: 'budget-bytes' } })
    await store(path, [relayed, fellBack, budget])

    const db = openForTest(path)
    const rows = [...iterateAttacks(db)]
    expect(rows).toHaveLength(3)
    for (const [i, attack] of [relayed, fellBack, budget].entries()) {
      const row = rows[i]!
      expect(row.response.equals(attack.response)).toBe(true)
      expect(row.payload.equals(attack.payload)).toBe(true)
      expect(JSON.parse(row.transcript!)).toEqual(attack.transcript.map((c) => [c.direction, c.offsetMs, c.size]))
      expect(row).toMatchObject({
        mode: attack.mode,
        close_reason: attack.closeReason,
        response_size: attack.response.length,
        relay_target: attack.relay!.target,
        relay_outcome: attack.relay!.outcome,
        fallback_reason: attack.relay!.reason,
      })

      const record = JSON.parse(JSON.stringify(toExportRecord(row))) as ExportRecord
      expect(record.relay).toEqual(attack.relay)
      expect(record.response_sha256).toBe(createHash('sha256').update(attack.response).digest('hex'))
      expect(Buffer.from(record.payload_base64, 'base64').equals(attack.payload)).toBe(true)
      expect(Buffer.from(record.response_base64, 'base64').equals(attack.response)).toBe(true)
      expect(record.transcript!.map((c) => [c.direction, c.offset_ms, c.size])).toEqual(attack.transcript.map((c) => [c.direction, c.offsetMs, c.size]))
      // Replaying the export alone gives back every byte of both directions, in order.
      expect(replay(record.transcript!, 'in').equals(attack.payload)).toBe(true)
      expect(replay(record.transcript!, 'out').equals(attack.response)).toBe(true)
    }
    const list = listAttacks(db, { limit: 10 })
    expect(list.attacks.map((r) => [r.mode, r.relay_outcome, r.fallback_reason])).toEqual([
      ['mirror', 'fallback', 'budget-bytes'],
      ['proxy', 'fallback', 'resolve-failed'],
      ['mirror', 'relayed', null],
    ])
  })

  it('exports the truncation flags of a capped session, and its transcript covers a prefix', async () => {
    const path = join(tempDir(), 'attacks.db')
    const full = chattyAttack(4)
    // As the recorder leaves it when both directions hit the read limit and the chunk cap was reached.
    const capped = chattyAttack(4, {
      truncated: true,
      bytesReceived: full.payload.length + 1000,
      responseTruncated: true,
      bytesSent: full.response.length + 500,
      transcript: full.transcript.slice(0, 7),
      transcriptTruncated: true,
      closeReason: 'size-limit',
    })
    await store(path, [capped])
    const [record] = exportAll(path)
    expect(record).toMatchObject({ truncated: true, response_truncated: true, transcript_truncated: true, transcript_error: null })
    expect(record!.transcript).toHaveLength(7)
    const inBytes = replay(record!.transcript!, 'in')
    const outBytes = replay(record!.transcript!, 'out')
    expect(inBytes.equals(capped.payload.subarray(0, inBytes.length))).toBe(true)
    expect(outBytes.equals(capped.response.subarray(0, outBytes.length))).toBe(true)
    expect(inBytes.length).toBeLessThan(capped.payload.length)
  })

  it('migrates a schema-1 database with rows: old rows still list and export, new rows carry everything', async () => {
    const path = join(tempDir(), 'attacks.db')
    const old = [makeAttack(5), makeAttack(6), makeAttack(0)]
    schemaOneDatabase(path, old)
    // The read-only CLI reads the old file as it is, without migrating it: missing columns read as their defaults.
    const before = openAttackDatabase(path)
    expect(before.pragma('user_version', { simple: true })).toBe(1)
    const oldList = listAttacks(before, { limit: 10 })
    expect(oldList.total).toBe(3)
    for (const row of oldList.attacks) expect(row).toMatchObject({ response_size: 0, response_sha256: null, relay_target: null, relay_outcome: null })
    const oldRecords = [...iterateAttacks(before)].map((row) => toExportRecord(row))
    expect(oldRecords.map((r) => r.payload_base64)).toEqual([old[2]!, old[0]!, old[1]!].map((a) => a.payload.toString('base64')))
    expect(oldRecords.every((r) => r.transcript === null && r.response_base64 === '' && r.relay === null)).toBe(true)
    before.close()
    expect(schemaVersionOf(path)).toBe(1) // still not migrated
    // Starting the sensor (its store) migrates the file.
    const fresh = chattyAttack(7)
    await store(path, [fresh])

    const db = openForTest(path)
    expect(db.pragma('user_version', { simple: true })).toBe(latestSchemaVersion())
    const list = listAttacks(db, { limit: 10 })
    expect(list.total).toBe(4)
    expect(list.attacks.map((r) => r.id)).toEqual([fresh.id, old[1]!.id, old[0]!.id, old[2]!.id])
    for (const row of list.attacks.slice(1)) {
      expect(row).toMatchObject({ response_size: 0, response_truncated: 0, response_sha256: null, transcript_truncated: 0, relay_target: null })
    }

    const records = [...iterateAttacks(db)].map((row) => toExportRecord(row))
    const [zero, five, six, seven] = records
    for (const [record, attack] of [[zero, old[2]!], [five, old[0]!], [six, old[1]!]] as const) {
      expect(record).toMatchObject({
        id: attack.id,
        payload_base64: attack.payload.toString('base64'),
        payload_sha256: createHash('sha256').update(attack.payload).digest('hex'),
        bytes_sent: attack.bytesSent,
        // Not recorded before schema 2: told apart from a recorded empty response by the null digest.
        response_size: 0,
        response_base64: '',
        response_sha256: null,
        relay: null,
        transcript: null,
        transcript_truncated: false,
        transcript_error: null,
      })
    }
    expect(seven).toMatchObject({ id: fresh.id, relay: fresh.relay, transcript_error: null })
    expect(replay(seven!.transcript!, 'in').equals(fresh.payload)).toBe(true)
    expect(replay(seven!.transcript!, 'out').equals(fresh.response)).toBe(true)
  })

  it('exports a row whose transcript was hand-edited into garbage, with transcript null and the reason', async () => {
    const path = join(tempDir(), 'attacks.db')
    const attacks = [makeAttack(3), makeAttack(4), makeAttack(5), makeAttack(6)]
    await store(path, attacks)
    const edit = new Database(path)
    const set = edit.prepare('UPDATE attacks SET transcript = ? WHERE id = ?')
    set.run('not json', attacks[0]!.id)
    set.run('[["in",0,99999]]', attacks[1]!.id)
    set.run('{"in":[0,1]}', attacks[2]!.id)
    edit.close()

    const records = exportAll(path)
    expect(records.map((r) => r.transcript_error === null)).toEqual([false, false, false, true])
    expect(records[0]).toMatchObject({ transcript: null, transcript_error: 'transcript is not valid JSON' })
    expect(records[1]).toMatchObject({ transcript: null, transcript_error: expect.stringContaining('ends at byte 99999 of the payload') })
    expect(records[2]).toMatchObject({ transcript: null, transcript_error: 'transcript is not a JSON array' })
    // The rest of a damaged row still exports.
    expect(records[0]!.payload_base64).toBe(attacks[0]!.payload.toString('base64'))
    expect(records[3]!.transcript).toHaveLength(3)
  })

  it('reads only well-formed transcripts that fit their bytes', () => {
    const payload = Buffer.from('abcdef')
    const response = Buffer.from([0xff, 0x00, 0xfe])
    const bad: readonly [string, RegExp][] = [
      ['', /not valid JSON/],
      ['null', /not a JSON array/],
      ['"[]"', /not a JSON array/],
      ['[1]', /chunk 0 is not a \[direction, offset_ms, size\] triple/],
      ['[["in",0]]', /chunk 0 is not a/],
      ['[["in",0,1,2]]', /chunk 0 is not a/],
      ['[["in",0,1],["up",1,1]]', /chunk 1 has direction "up"/],
      ['[["in","0",1]]', /offset_ms that is not an integer/],
      ['[["in",0.5,1]]', /offset_ms that is not an integer/],
      ['[["in",0,-1]]', /size that is not a non-negative integer/],
      ['[["in",0,1e300]]', /size that is not a non-negative integer/],
      ['[["out",0,2],["out",1,2]]', /chunk 1 ends at byte 4 of the response, which has 3/],
    ]
    for (const [text, message] of bad) expect(parseStoredTranscript(text, payload, response), text).toMatch(message)
    expect(parseStoredTranscript('[]', payload, response)).toEqual([])
    // A prefix is fine (a capped transcript); a clock step back may make offsets go down.
    expect(parseStoredTranscript('[["in",5,2],["out",3,3],["in",4,1]]', payload, response)).toEqual([
      { direction: 'in', offset_ms: 5, size: 2, data_base64: Buffer.from('ab').toString('base64') },
      { direction: 'out', offset_ms: 3, size: 3, data_base64: response.toString('base64') },
      { direction: 'in', offset_ms: 4, size: 1, data_base64: Buffer.from('c').toString('base64') },
    ])
  })
})
