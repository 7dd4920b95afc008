import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack } from '../../src/attack/attack.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { createUlid } from '../../src/core/ids.js'
import { iterateAttacks, listAttacks, openAttackDatabase, toExportRecord, type AttackRow } from '../../src/store/attack-query.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'

// The database is written by the real store (its writer thread runs from dist/: `npm test` builds first).

const BASE_MS = Date.UTC(2025, 0, 2, 3, 4, 5, 678)

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'honeytrap-query-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function makeAttack(i: number): Attack {
  const payload = Buffer.from(Array.from({ length: i * 3 }, (_, k) => (k * 31 + i) & 0xff))
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
  }
}

/** Writes 20 attacks, one second apart, through the store; returns the path and the attacks oldest first. */
async function seed(): Promise<{ path: string; attacks: Attack[] }> {
  const path = join(tempDir(), 'attacks.db')
  const store = await createSqliteStore({
    path,
    batchWindowMs: 20,
    batchMaxAttacks: 100,
    maxQueuedAttacks: 1000,
    maxQueuedBytes: 1024 * 1024,
    log: pino({ level: 'silent' }),
  })
  const attacks = Array.from({ length: 20 }, (_, i) => makeAttack(i))
  // Enqueued out of time order: the queries must order by start time, not by insertion.
  for (const attack of [...attacks].reverse()) store.enqueue(attack)
  await store.close()
  return { path, attacks }
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
    // Listings never carry the payload, only its size and digests.
    expect(page1.attacks[0]).not.toHaveProperty('payload')
    expect(page1.attacks[0]).toMatchObject({ payload_size: attacks[19]!.payload.length, started_at: attacks[19]!.startedAtMs })
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
    })
    // A JSON line round-trips to the same bytes.
    const line = JSON.stringify(record)
    expect(Buffer.from((JSON.parse(line) as { payload_base64: string }).payload_base64, 'base64')).toEqual(attack.payload)
    // The empty payload of the first attack exports as an empty string, not null.
    expect(toExportRecord(rows[0]!)).toMatchObject({ payload_size: 0, payload_base64: '', truncated: true })
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
