import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it, onTestFinished } from 'vitest'
import { hasErrorCode } from '../../src/core/errors.js'
import { APPLICATION_ID, latestSchemaVersion, loadMigrations, migrate } from '../../src/store/migrate.js'

/** A real SQLite file in a fresh temp dir, closed and removed when the test finishes. */
function openTempDb(): { db: Database.Database; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'honeytrap-migrate-'))
  const db = new Database(join(dir, 'test.db'))
  onTestFinished(() => {
    db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { db, dir }
}

function tables(db: Database.Database): string[] {
  return db.prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all()
}

function userVersion(db: Database.Database): number {
  return Number(db.pragma('user_version', { simple: true }))
}

function writeMigrations(dir: string, files: Record<string, string>): string {
  const migrationsDir = join(dir, 'migrations')
  mkdirSync(migrationsDir)
  for (const [name, sql] of Object.entries(files)) writeFileSync(join(migrationsDir, name), sql)
  return migrationsDir
}

function caught(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected a throw')
}

describe('migrate', () => {
  it('creates the schema on a fresh database and marks it as ours', () => {
    const { db } = openTempDb()
    const result = migrate(db)
    expect(result).toEqual({ fromVersion: 0, toVersion: latestSchemaVersion(), applied: ['001-initial.sql', '002-transcript.sql', '003-plugins.sql', '004-plugin-indexes.sql', '005-fulltext.sql', '006-syn-facts.sql'] })
    expect(tables(db)).toEqual([
      'artifacts', 'attack_text', 'attack_text_config', 'attack_text_data', 'attack_text_docsize', 'attack_text_idx', 'attacks', 'downloads', 'meta',
      'pipeline_state', 'plugin_runs', 'responses', 'samples',
    ])
    expect(db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID)
    const indexes = db.prepare<[], string>("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'attacks' AND sql IS NOT NULL ORDER BY name").pluck().all()
    expect(indexes).toEqual(['attacks_dst_port_protocol', 'attacks_dst_port_started_at', 'attacks_sha256', 'attacks_src_ip_started_at', 'attacks_started_at'])
    expect(db.prepare<[], string>("SELECT value FROM meta WHERE key = 'created_at'").pluck().get()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })

  it('does nothing the second time', () => {
    const { db } = openTempDb()
    migrate(db)
    expect(migrate(db)).toEqual({ fromVersion: 6, toVersion: 6, applied: [] })
  })

  it('refuses a database whose version is newer than the code knows', () => {
    const { db } = openTempDb()
    migrate(db)
    db.pragma('user_version = 7')
    const err = caught(() => migrate(db))
    expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
    expect((err as Error).message).toMatch(/schema version 7.*knows versions up to 6/)
    expect(userVersion(db)).toBe(7)
  })

  it("refuses another program's database without touching it", () => {
    const { db } = openTempDb()
    db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY)')
    expect(hasErrorCode(caught(() => migrate(db)), 'HT_ERR_STORE_OPEN')).toBe(true)
    expect(tables(db)).toEqual(['customers'])

    const { db: other } = openTempDb()
    other.pragma('application_id = 1234')
    expect(hasErrorCode(caught(() => migrate(other)), 'HT_ERR_STORE_OPEN')).toBe(true)
    expect(userVersion(other)).toBe(0)
  })

  it('applies migrations in numeric order, one transaction each', () => {
    const { db, dir } = openTempDb()
    const migrationsDir = writeMigrations(dir, {
      '003-third.sql': "INSERT INTO steps VALUES ('third');",
      '001-first.sql': 'CREATE TABLE steps (name TEXT);',
      '002-second.sql': "INSERT INTO steps VALUES ('second');",
      'README.md': 'not a migration',
    })
    const result = migrate(db, { migrationsDir })
    expect(result.applied).toEqual(['001-first.sql', '002-second.sql', '003-third.sql'])
    expect(db.prepare<[], string>('SELECT name FROM steps').pluck().all()).toEqual(['second', 'third'])
    expect(userVersion(db)).toBe(3)
  })

  it('rolls a failed migration back and keeps the last good version', () => {
    const { db, dir } = openTempDb()
    const migrationsDir = writeMigrations(dir, {
      '001-first.sql': 'CREATE TABLE kept (x INTEGER);',
      '002-broken.sql': 'CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;',
    })
    const err = caught(() => migrate(db, { migrationsDir }))
    expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
    expect((err as Error).message).toContain('002-broken.sql')
    expect(userVersion(db)).toBe(1)
    expect(tables(db)).toEqual(['kept'])
  })

  it('rejects migration files with gaps in their numbering', () => {
    const { dir } = openTempDb()
    const migrationsDir = writeMigrations(dir, { '001-a.sql': 'SELECT 1;', '003-c.sql': 'SELECT 1;' })
    expect(() => loadMigrations(migrationsDir)).toThrow(/003-c\.sql is out of sequence/)
  })

  it('migrates a schema-1 database with rows to 2 in place, without touching its rows', () => {
    const { db, dir } = openTempDb()
    const first = loadMigrations()[0]!
    expect(migrate(db, { migrationsDir: writeMigrations(dir, { [first.name]: first.sql }) })).toMatchObject({ toVersion: 1 })
    const insert = db.prepare(`INSERT INTO attacks (id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at,
      ended_at, close_reason, bytes_received, bytes_sent, truncated, payload, payload_size, md5, sha256, sha512)
      VALUES (?, 'tcp', 4, 'normal', '203.0.113.5', 40000, '198.18.0.1', 23, 1000, 2000, 'peer-closed', 3, 12, 0, ?, 3, 'm', 's', 'x')`)
    insert.run('01JZ0000000000000000000001', Buffer.from([0x00, 0xff, 0x80]))
    insert.run('01JZ0000000000000000000002', Buffer.alloc(0))
    const before = db.prepare('SELECT * FROM attacks ORDER BY id').all()

    expect(migrate(db)).toEqual({ fromVersion: 1, toVersion: 6, applied: ['002-transcript.sql', '003-plugins.sql', '004-plugin-indexes.sql', '005-fulltext.sql', '006-syn-facts.sql'] })
    const after = db.prepare<[], Record<string, unknown>>('SELECT * FROM attacks ORDER BY id').all()
    expect(after).toHaveLength(2)
    after.forEach((row, i) => {
      // Every column of schema 1 is as it was, and the new ones read "not recorded".
      expect(row).toMatchObject(before[i] as Record<string, unknown>)
      expect(row).toMatchObject({
        response_size: 0,
        response_truncated: 0,
        response_sha256: null,
        transcript: null,
        transcript_truncated: 0,
        relay_target: null,
        relay_outcome: null,
        fallback_reason: null,
      })
    })
  })

  it('keeps the relay columns consistent', () => {
    const { db } = openTempDb()
    migrate(db)
    const insert = db.prepare(`INSERT INTO attacks (id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at,
      ended_at, close_reason, bytes_received, bytes_sent, truncated, payload, payload_size, md5, sha256, sha512, relay_target,
      relay_outcome, fallback_reason) VALUES (?, 'tcp', 4, 'mirror', '203.0.113.5', 40000, '198.18.0.1', 23, 1000, 2000,
      'peer-closed', 0, 0, 0, x'', 0, 'm', 's', 'x', ?, ?, ?)`)
    insert.run('01JZ0000000000000000000001', '203.0.113.5:23', 'relayed', null)
    insert.run('01JZ0000000000000000000002', '203.0.113.5:23', 'fallback', 'loop')
    insert.run('01JZ0000000000000000000003', null, null, null)
    expect(() => insert.run('01JZ0000000000000000000004', '203.0.113.5:23', 'maybe', null)).toThrow(/CHECK constraint failed/)
    expect(() => insert.run('01JZ0000000000000000000005', '203.0.113.5:23', null, null)).toThrow(/CHECK constraint failed/)
    expect(() => insert.run('01JZ0000000000000000000006', null, 'relayed', null)).toThrow(/CHECK constraint failed/)
    expect(() => db.prepare("UPDATE attacks SET response_truncated = 2").run()).toThrow(/CHECK constraint failed/)
  })
})
