import { join } from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parseConfig } from '../../src/config/load-config.js'
import type { ConfigError } from '../../src/core/errors.js'
import { startUpkeep } from '../../src/store/upkeep-scheduler.js'
import { captureLog } from '../helpers/log-capture.js'
import { waitFor } from '../helpers/netns-env.js'
import { DAY_MS, makeAttack, tempDir, writeAttacks } from '../helpers/retention-fixture.js'

// The sensor's scheduled upkeep for real: node-cron fires every second here, and each run is the compiled
// `honeytrap-ts db retention` in a child process against a database written by the real store.

describe('scheduled upkeep', () => {
  it('removes the attacks older than olderThan on its schedule, keeps the others, and logs what it did', { timeout: 30_000 }, async () => {
    const dir = tempDir()
    const dbPath = join(dir, 'attacks.db')
    const now = Date.now()
    await writeAttacks(dbPath, [makeAttack(now - 3 * DAY_MS, Buffer.from('old')), makeAttack(now - 2 * DAY_MS, Buffer.from('old')), makeAttack(now - 60_000, Buffer.from('new'))])
    const { log, lines } = captureLog()
    const upkeep = startUpkeep({ schedule: '* * * * * *', olderThan: '1d', vacuum: true, dbPath, quarantineDir: join(dir, 'quarantine'), log })
    onTestFinished(() => upkeep.stop())
    await waitFor(() => lines.filter((l) => l['msg'] === 'upkeep vacuum done').length, (n) => n >= 1, 20_000)
    upkeep.stop()
    const db = new Database(dbPath, { readonly: true })
    const left = (db.prepare('SELECT started_at FROM attacks').all() as { started_at: number }[]).map((r) => r.started_at)
    db.close()
    expect(left).toEqual([now - 60_000])
    const done = lines.find((l) => l['msg'] === 'upkeep retention done')
    expect(done?.['result']).toMatchObject({ attacks: 2 })
    expect(lines.some((l) => l['msg'] === 'upkeep retention failed')).toBe(false)
  })

  it('is off by default, and a bad schedule or age is refused with the config key', () => {
    expect(parseConfig({}).store.upkeep).toEqual({ schedule: null, olderThan: '90d', vacuum: false })
    for (const [upkeep, path] of [
      [{ schedule: 'every night' }, 'store.upkeep.schedule'],
      [{ schedule: '61 * * * *' }, 'store.upkeep.schedule'],
      [{ schedule: '0 3 * * *', olderThan: '90 days' }, 'store.upkeep.olderThan'],
      [{ schedule: '0 3 * * *', olderThan: '0d' }, 'store.upkeep.olderThan'],
    ] as const) {
      let caught: unknown
      try {
        parseConfig({ store: { upkeep } })
      } catch (err) {
        caught = err
      }
      expect((caught as ConfigError).issues.map((i) => i.path), JSON.stringify(upkeep)).toEqual([path])
    }
  })
})
