import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { runDbCommand } from '../../src/cli/db-command.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { openAttackDatabase } from '../../src/store/attack-query.js'
import { vacuumDatabase } from '../../src/store/vacuum.js'
import { buildFixture, DAY_MS, makeAttack, stateOf, tempDir, writeAttacks } from '../helpers/retention-fixture.js'

// cli.ts does not route `db` yet (the lead wires it), so these call runDbCommand itself and read what it prints.

async function db(...args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = ''
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array): boolean => {
    stdout += chunk.toString()
    return true
  })
  try {
    return { code: await runDbCommand(args), stdout }
  } finally {
    spy.mockRestore()
  }
}

async function usageFailure(...args: string[]): Promise<string> {
  const err: unknown = await runDbCommand(args).then(
    () => null,
    (e: unknown) => e,
  )
  expect(hasErrorCode(err, 'HT_ERR_CLI_USAGE')).toBe(true)
  return (err as Error).message
}

describe('honeytrap-ts db retention', () => {
  it('counts with --dry-run without changing anything, then removes the same, finding the quarantine from --db', async () => {
    const fixture = await buildFixture()
    const before = stateOf(fixture)
    const dry = await db('retention', '--older-than', '90d', '--db', fixture.path, '--dry-run', '--json')
    expect(dry.code).toBe(0)
    const preview = JSON.parse(dry.stdout) as Record<string, unknown>
    // The command's cutoff is a little later than the fixture's: the attack exactly at the fixture's cutoff goes too.
    expect(preview).toMatchObject({ ...fixture.expected, attacks: 4, dryRun: true, db: fixture.path })
    expect(Date.parse(String(preview['cutoff']))).toBeGreaterThan(fixture.cutoffMs)
    expect(stateOf(fixture)).toEqual(before)

    const real = await db('retention', '--older-than', '90d', '--db', fixture.path, '--json')
    expect(real.code).toBe(0)
    expect(JSON.parse(real.stdout)).toMatchObject({ ...fixture.expected, attacks: 4, dryRun: false })
    const after = stateOf(fixture)
    expect(after['attacks']).toEqual([...fixture.keptIds.slice(1)].sort())
    expect(after['files']).toEqual({ shared: true, old: false, orphan: false, outside: true, badName: true, viaSymlink: true })
  })

  it('prints a short summary, and reads store.path and the quarantine from --config', async () => {
    const fixture = await buildFixture()
    const config = join(fixture.dir, 'honeytrap.yaml')
    writeFileSync(config, `store:\n  path: ${fixture.path}\nplugins:\n  downloads:\n    quarantineDir: ${join(fixture.dir, 'elsewhere')}\n`)
    const text = await db('retention', '--older-than', '90d', '--config', config)
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^removed 4 attacks, 3 plugin runs, 4 artifacts, 6 downloads, 1 response, 5 samples \(2 files\); attacks that started before \d{4}-/)
    // The configured quarantine is ./elsewhere: the files in ./quarantine are outside it now and stay, while the two
    // named by their digest in ./elsewhere (one of them through the symlink) are inside it and go.
    expect(stateOf(fixture)['files']).toEqual({ shared: true, old: true, orphan: true, outside: false, badName: true, viaSymlink: false })
    expect(text.stdout).not.toMatch(/\u001b/)
  })

  it('refuses bad flags with a usage error naming the flag', async () => {
    const path = join(tempDir(), 'absent.db')
    expect(await usageFailure('retention', '--db', path)).toContain('--older-than is required')
    expect(await usageFailure('retention', '--db', path, '--older-than', 'yesterday')).toContain('--older-than "yesterday"')
    expect(await usageFailure('retention', '--db', path, '--older-than', '0d')).toContain('--older-than "0d"')
    expect(await usageFailure('retention', '--db', path, '--older-than', '99999999999d')).toContain('--older-than')
    expect(await usageFailure('retention', '--db', path, '--older-than', '90d', '--colour')).toContain('--colour')
    expect(await usageFailure('vacuum', '--db', path, '--older-than', '90d')).toContain('--older-than')
    expect(await usageFailure('compact')).toContain('"compact"')
  })

  it('fails with HT_ERR_STORE_OPEN on a missing or foreign database, for both actions', async () => {
    const dir = tempDir()
    const foreign = join(dir, 'other.db')
    const other = new Database(foreign)
    other.exec('CREATE TABLE t (x)')
    other.close()
    for (const args of [['retention', '--older-than', '1d'], ['vacuum']]) {
      for (const path of [join(dir, 'absent.db'), foreign]) {
        const err: unknown = await runDbCommand([...args, '--db', path]).catch((e: unknown) => e)
        expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
      }
    }
  })
})

describe('vacuumDatabase', () => {
  it('gives the space retention freed back to the file system and keeps what stays', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    const now = Date.now()
    const attacks = Array.from({ length: 200 }, (_, i) => makeAttack(now - (200 - i) * DAY_MS + DAY_MS / 2, Buffer.from(`r${i}`), Buffer.alloc(16_384, i)))
    await writeAttacks(path, attacks)
    const removed = await db('retention', '--older-than', '10d', '--db', path, '--json')
    expect(JSON.parse(removed.stdout)).toMatchObject({ attacks: 190 })
    const sizeBefore = statSync(path).size
    const result = await db('vacuum', '--db', path, '--json')
    expect(result.code).toBe(0)
    const report = JSON.parse(result.stdout) as { bytesBefore: number; bytesAfter: number; walCheckpointed: boolean }
    expect(report.bytesBefore).toBeGreaterThanOrEqual(sizeBefore)
    expect(report.walCheckpointed).toBe(true)
    // 190 of 200 attacks of 16 KiB are gone: the file keeps well under a quarter of its size.
    expect(report.bytesAfter).toBeLessThan(report.bytesBefore / 4)
    expect(statSync(path).size).toBe(report.bytesAfter)
    const reader = openAttackDatabase(path)
    onTestFinished(() => {
      reader.close()
    })
    expect(reader.prepare('SELECT id FROM attacks ORDER BY id').pluck().all()).toEqual(attacks.slice(190).map((a) => a.id))
    expect(reader.pragma('integrity_check', { simple: true })).toBe('ok')
  })

  it('fails with HT_ERR_STORE_BUSY, saying why, when another connection keeps the write lock', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    await writeAttacks(path, [makeAttack(Date.now(), Buffer.from('x'))])
    const locker = new Database(path)
    onTestFinished(() => {
      locker.close()
    })
    locker.exec('BEGIN IMMEDIATE')
    const startedMs = Date.now()
    let err: unknown = null
    try {
      vacuumDatabase(path, { busyTimeoutMs: 300 })
    } catch (e) {
      err = e
    }
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(250)
    expect(hasErrorCode(err, 'HT_ERR_STORE_BUSY')).toBe(true)
    expect((err as Error).message).toContain('held the write lock for more than 300 ms')
    locker.exec('ROLLBACK')
    expect(vacuumDatabase(path, { busyTimeoutMs: 300 }).bytesAfter).toBeGreaterThan(0)
  })

  it('runs beside a reader in the middle of a read, and says the WAL could not be emptied yet', async () => {
    const dir = tempDir()
    const path = join(dir, 'attacks.db')
    await writeAttacks(path, [makeAttack(Date.now(), Buffer.from('x'))])
    const reader = openAttackDatabase(path)
    onTestFinished(() => {
      reader.close()
    })
    reader.exec('BEGIN')
    expect(reader.prepare('SELECT count(*) FROM attacks').pluck().get()).toBe(1)
    expect(vacuumDatabase(path, { busyTimeoutMs: 200 }).walCheckpointed).toBe(false)
    // The reader still sees its snapshot, and the file is whole.
    expect(reader.prepare('SELECT count(*) FROM attacks').pluck().get()).toBe(1)
    reader.exec('COMMIT')
    expect(reader.pragma('integrity_check', { simple: true })).toBe('ok')
  })
})
