import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack, TranscriptChunk } from '../../src/attack/attack.js'
import { hasErrorCode } from '../../src/core/errors.js'
import { createUlid } from '../../src/core/ids.js'
import { openAttackDatabase } from '../../src/store/attack-query.js'
import { latestSchemaVersion } from '../../src/store/migrate.js'
import { createSqliteStore, type SqliteStoreOptions } from '../../src/store/sqlite-store.js'
import { decodeSynFacts } from '../../src/store/syn-facts-column.js'
import type { AttackStore } from '../../src/store/store.js'
import { captureLog } from '../helpers/log-capture.js'

const silent = pino({ level: 'silent' })

/** A temp dir whose stores and connections are closed, and which is removed, when the test finishes. */
function useTempDir(): { dir: string; track: (resource: AttackStore | Database.Database) => void } {
  const dir = mkdtempSync(join(tmpdir(), 'honeytrap-store-'))
  const resources: (AttackStore | Database.Database)[] = []
  onTestFinished(async () => {
    for (const resource of resources.reverse()) {
      if (resource instanceof Database) resource.close()
      else await resource.close()
    }
    rmSync(dir, { recursive: true, force: true })
  })
  return { dir, track: (resource) => resources.push(resource) }
}

function storeOptions(path: string, overrides: Partial<SqliteStoreOptions> = {}): SqliteStoreOptions {
  return {
    path,
    batchWindowMs: 50,
    batchMaxAttacks: 500,
    maxQueuedAttacks: 100_000,
    maxQueuedBytes: 256 * 1024 * 1024,
    log: silent,
    ...overrides,
  }
}

let port = 1024
function makeAttack(payload: Buffer, overrides: Partial<Attack> = {}): Attack {
  const startedAtMs = Date.now()
  port = port >= 65_000 ? 1024 : port + 1
  return {
    id: createUlid(),
    protocol: 'tcp',
    family: 4,
    mode: 'normal',
    source: { address: '198.18.0.2', port },
    target: { address: '198.18.0.1', port: 22 },
    startedAtMs,
    endedAtMs: startedAtMs + 1234,
    closeReason: 'peer-closed',
    payload,
    truncated: false,
    bytesReceived: payload.length,
    bytesSent: 17,
    response: Buffer.alloc(0),
    responseTruncated: false,
    transcript: payload.length > 0 ? [{ direction: 'in', offsetMs: 0, size: payload.length }] : [],
    transcriptTruncated: false,
    relay: null,
    synFacts: null,
    ...overrides,
  }
}

interface DbRow {
  id: string
  protocol: string
  family: number
  mode: string
  src_ip: string
  src_port: number
  dst_ip: string
  dst_port: number
  started_at: number
  ended_at: number
  close_reason: string
  bytes_received: number
  bytes_sent: number
  truncated: number
  payload: Buffer
  payload_size: number
  md5: string
  sha256: string
  sha512: string
  response: Buffer
  response_size: number
  response_truncated: number
  response_sha256: string | null
  transcript: string | null
  transcript_truncated: number
  relay_target: string | null
  relay_outcome: string | null
  fallback_reason: string | null
  syn_facts: string | null
}

function readRows(path: string): DbRow[] {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    // A response is stored once per distinct content, in `responses`, and joined back by its digest.
    return db.prepare<[], DbRow>('SELECT a.*, r.data AS response FROM attacks a LEFT JOIN responses r ON r.sha256 = a.response_sha256 ORDER BY a.id').all()
  } finally {
    db.close()
  }
}

function digest(algorithm: string, data: Buffer): string {
  return createHash(algorithm).update(data).digest('hex')
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('sqlite store', () => {
  it('stores a response sent to many attackers once, and every attack still reads it back', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    const store = await createSqliteStore(storeOptions(path, { batchMaxAttacks: 7 }))
    track(store)
    const template = Buffer.from('HTTP/1.0 200 OK\r\nServer: Apache\r\n\r\n')
    const other = Buffer.from('SSH-2.0-OpenSSH_8.9\r\n')
    const attacks = Array.from({ length: 50 }, (_, i) => makeAttack(Buffer.from(`GET /${i}`), { response: i % 10 === 9 ? other : template, bytesSent: 36 }))
    for (const attack of attacks) store.enqueue(attack)
    await store.flush()
    const db = new Database(path, { readonly: true })
    try {
      expect(db.prepare<[], { n: number }>('SELECT count(*) AS n FROM responses').get()!.n).toBe(2)
    } finally {
      db.close()
    }
    const rows = readRows(path)
    expect(rows.map((r) => r.response.toString())).toEqual(attacks.map((a) => a.response.toString()))
  })

  it('stores every attack with its fields and the digests of its payload and response', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'nested', 'deeper', 'attacks.db')
    const store = await createSqliteStore(storeOptions(path))
    track(store)

    const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const big = Buffer.alloc(3 * 1024 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff
    const payloads: Buffer[] = [
      Buffer.alloc(0),
      allBytes,
      Buffer.from([0x00]),
      Buffer.from('GET / HTTP/1.0\r\n\r\n'), // small: shares Node's 8 KiB pool with other buffers
      big.subarray(1000, 1000 + 70_000), // a view into a larger buffer: only its own bytes must be stored
      big.subarray(0, 1024 * 1024),
    ]
    for (let i = 0; i < 200; i++) payloads.push(allBytes.subarray(i % 256, (i % 256) + ((i * 13) % 200)))
    const relays = [
      null,
      { target: '203.0.113.9:40001', outcome: 'relayed', reason: null },
      { target: '[2001:db8::9]:50002', outcome: 'fallback', reason: 'loop' },
      { target: 'backend.example:8080', outcome: 'fallback', reason: 'resolve-failed' },
    ] as const
    const attacks = payloads.map((payload, i) => {
      // The responses are the payloads of other attacks: empty, every byte value, a view into a larger buffer, 1 MiB.
      const response = payloads[(i + 1) % payloads.length]!
      const relay = relays[i % relays.length]!
      const chunks: TranscriptChunk[] = [
        { direction: 'out', offsetMs: 0, size: response.length },
        { direction: 'in', offsetMs: i, size: payload.length },
      ]
      return makeAttack(payload, {
        protocol: i % 3 === 0 ? 'udp' : 'tcp',
        family: i % 2 === 0 ? 4 : 6,
        source: i % 2 === 0 ? { address: '203.0.113.9', port: 40_000 + i } : { address: '2001:db8::9', port: 50_000 + i },
        target: i % 2 === 0 ? { address: '198.18.0.1', port: 1 + i } : { address: 'fd00::1', port: 1 + i },
        mode: relay === null ? (i % 8 === 0 ? 'ignore' : 'normal') : i % 2 === 0 ? 'proxy' : 'mirror',
        closeReason: i % 5 === 0 ? 'size-limit' : i % 7 === 0 ? 'target-reset' : 'idle-timeout',
        truncated: i % 5 === 0,
        bytesReceived: payload.length + (i % 5 === 0 ? 99 : 0),
        bytesSent: response.length + (i % 6 === 0 ? 7 : 0),
        response,
        responseTruncated: i % 6 === 0,
        transcript: chunks.filter((c) => c.size > 0),
        transcriptTruncated: i % 9 === 0,
        relay,
        // Linux's SYN, IPv4 and IPv6, a UDP datagram's, and none (the monitor did not see it).
        synFacts: [
          { ttl: 64, ipId: 4321, dontFragment: true, tcpWindow: 64240, tcpFlags: 2, tcpOptions: [2, 4, 8, 1, 3], mss: 1460, windowScale: 7 },
          { ttl: 55, ipId: null, dontFragment: false, tcpWindow: 64800, tcpFlags: 2, tcpOptions: [2, 4, 8, 1, 3], mss: 1440, windowScale: 7 },
          { ttl: 113, ipId: 7, dontFragment: false, tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null },
          null,
        ][i % 4]!,
      })
    })
    for (const attack of attacks) store.enqueue(attack)
    await store.flush()

    expect(store.stats()).toMatchObject({ queued: 0, written: attacks.length, dropped: 0, writeErrors: 0 })
    // The caller's buffers are untouched (they were copied, not transferred).
    expect(big.length).toBe(3 * 1024 * 1024)
    expect(payloads[1]).toEqual(allBytes)
    expect(attacks.filter((a) => a.relay?.outcome === 'fallback').length).toBeGreaterThan(0)

    const rows = new Map(readRows(path).map((row) => [row.id, row]))
    expect(rows.size).toBe(attacks.length)
    for (const attack of attacks) {
      const { payload, response, ...row } = rows.get(attack.id)!
      // Buffer.equals: a deep equal of megabyte buffers element by element takes seconds.
      expect(payload.equals(attack.payload)).toBe(true)
      expect(response.equals(attack.response)).toBe(true)
      expect(row).toEqual({
        id: attack.id,
        protocol: attack.protocol,
        family: attack.family,
        mode: attack.mode,
        src_ip: attack.source.address,
        src_port: attack.source.port,
        dst_ip: attack.target.address,
        dst_port: attack.target.port,
        started_at: attack.startedAtMs,
        ended_at: attack.endedAtMs,
        close_reason: attack.closeReason,
        bytes_received: attack.bytesReceived,
        bytes_sent: attack.bytesSent,
        truncated: attack.truncated ? 1 : 0,
        payload_size: attack.payload.length,
        md5: digest('md5', attack.payload),
        sha256: digest('sha256', attack.payload),
        sha512: digest('sha512', attack.payload),
        response_size: attack.response.length,
        response_truncated: attack.responseTruncated ? 1 : 0,
        response_sha256: digest('sha256', attack.response),
        transcript: JSON.stringify(attack.transcript.map((c) => [c.direction, c.offsetMs, c.size])),
        transcript_truncated: attack.transcriptTruncated ? 1 : 0,
        relay_target: attack.relay?.target ?? null,
        relay_outcome: attack.relay?.outcome ?? null,
        fallback_reason: attack.relay?.reason ?? null,
        syn_facts: attack.synFacts === null ? null : JSON.stringify(attack.synFacts),
      })
      expect(decodeSynFacts(row.syn_facts)).toEqual(attack.synFacts)
    }

    // Attack data is sensitive: the file is 0600 and the directories the store created are 0700.
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700)
    expect(statSync(join(dir, 'nested', 'deeper')).mode & 0o777).toBe(0o700)
  })

  it('opens in WAL mode with the schema migrated', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    track(await createSqliteStore(storeOptions(path)))
    const db = new Database(path, { readonly: true })
    track(db)
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(db.pragma('user_version', { simple: true })).toBe(latestSchemaVersion())
    expect(latestSchemaVersion()).toBe(6)
  })

  it('batches a burst into few transactions', async () => {
    const { dir, track } = useTempDir()
    const store = await createSqliteStore(storeOptions(join(dir, 'attacks.db'), { batchMaxAttacks: 500, batchWindowMs: 1000 }))
    track(store)
    for (let i = 0; i < 5000; i++) store.enqueue(makeAttack(Buffer.from([i & 0xff])))
    await store.flush()
    const stats = store.stats()
    expect(stats.written).toBe(5000)
    expect(stats.batches).toBeGreaterThanOrEqual(10)
    expect(stats.batches).toBeLessThanOrEqual(11)
  })

  it('writes a lone attack after the batch window without a flush', async () => {
    const { dir, track } = useTempDir()
    const store = await createSqliteStore(storeOptions(join(dir, 'attacks.db'), { batchWindowMs: 100 }))
    track(store)
    const startMs = Date.now()
    store.enqueue(makeAttack(Buffer.from('x')))
    await until(() => store.stats().written === 1)
    expect(Date.now() - startMs).toBeGreaterThanOrEqual(90)
    expect(store.stats()).toMatchObject({ written: 1, batches: 1, queued: 0 })
  })

  it('drops and counts past the attack bound, and warns once per interval', async () => {
    const { dir, track } = useTempDir()
    const { log, lines } = captureLog('warn')
    const store = await createSqliteStore(storeOptions(join(dir, 'attacks.db'), { maxQueuedAttacks: 100, batchWindowMs: 1000, log }))
    track(store)
    for (let i = 0; i < 250; i++) store.enqueue(makeAttack(Buffer.from('payload')))
    expect(store.stats()).toMatchObject({ queued: 100, dropped: 150 })
    await store.flush()
    expect(store.stats()).toMatchObject({ queued: 0, written: 100, dropped: 150 })
    await new Promise((resolve) => setImmediate(resolve))
    const warnings = lines.filter((line) => line.level === 40)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ dropped: 1, reason: 'queue-full' })
    // Once the queue drained, enqueue accepts again.
    store.enqueue(makeAttack(Buffer.from('later')))
    await store.flush()
    expect(store.stats().written).toBe(101)
  })

  it('drops and counts past the byte bound', async () => {
    const { dir, track } = useTempDir()
    const store = await createSqliteStore(storeOptions(join(dir, 'attacks.db'), { maxQueuedBytes: 1000, batchWindowMs: 1000 }))
    track(store)
    for (let i = 0; i < 5; i++) store.enqueue(makeAttack(Buffer.alloc(300, i)))
    expect(store.stats()).toMatchObject({ queued: 3, dropped: 2 })
    // Empty payloads cost no bytes, only a place in the attack bound.
    store.enqueue(makeAttack(Buffer.alloc(0)))
    await store.flush()
    expect(store.stats()).toMatchObject({ written: 4, dropped: 2 })
  })

  it('counts response bytes against the byte bound too', async () => {
    const { dir, track } = useTempDir()
    const store = await createSqliteStore(storeOptions(join(dir, 'attacks.db'), { maxQueuedBytes: 1000, batchWindowMs: 1000 }))
    track(store)
    // 300 in + 400 out: one fits, the second would make 1400.
    for (let i = 0; i < 2; i++) store.enqueue(makeAttack(Buffer.alloc(300, i), { response: Buffer.alloc(400, i) }))
    expect(store.stats()).toMatchObject({ queued: 1, dropped: 1 })
    store.enqueue(makeAttack(Buffer.alloc(0), { response: Buffer.alloc(300) }))
    expect(store.stats()).toMatchObject({ queued: 2, dropped: 1 })
    await store.flush()
    // Written attacks give their bytes back: a full-size one fits again.
    store.enqueue(makeAttack(Buffer.alloc(500), { response: Buffer.alloc(500) }))
    await store.flush()
    expect(store.stats()).toMatchObject({ written: 3, dropped: 1, queued: 0 })
  })

  it("names the relay target and outcome in the 'attack stored' line of mirror and proxy sessions only", async () => {
    const { dir, track } = useTempDir()
    const { log, lines } = captureLog()
    const store = await createSqliteStore(storeOptions(join(dir, 'attacks.db'), { log }))
    track(store)
    const normal = makeAttack(Buffer.from('GET /'), { response: Buffer.from('HTTP/1.0 200 OK\r\n\r\n') })
    const relayed = makeAttack(Buffer.from('SSH-2.0-x'), { mode: 'mirror', relay: { target: '198.18.0.2:22', outcome: 'relayed', reason: null } })
    const fellBack = makeAttack(Buffer.from('x'), { mode: 'proxy', relay: { target: '10.0.0.9:25', outcome: 'fallback', reason: 'connect-refused' } })
    for (const attack of [normal, relayed, fellBack]) store.enqueue(attack)
    await store.flush()
    await new Promise((resolve) => setImmediate(resolve))
    const stored = new Map(lines.filter((line) => line.msg === 'attack stored').map((line) => [line.attackId, line]))
    expect(stored.size).toBe(3)
    const relayKeys = ['relayTarget', 'relayOutcome', 'fallbackReason']
    for (const key of relayKeys) expect(stored.get(normal.id)).not.toHaveProperty(key)
    expect(stored.get(normal.id)).toMatchObject({ mode: 'normal', bytesSent: 17 })
    expect(stored.get(relayed.id)).toMatchObject({ mode: 'mirror', relayTarget: '198.18.0.2:22', relayOutcome: 'relayed' })
    expect(stored.get(relayed.id)).not.toHaveProperty('fallbackReason')
    expect(stored.get(fellBack.id)).toMatchObject({ mode: 'proxy', relayTarget: '10.0.0.9:25', relayOutcome: 'fallback', fallbackReason: 'connect-refused' })
    // Neither direction's bytes reach the log.
    for (const line of stored.values()) expect(JSON.stringify(line)).not.toMatch(/GET|HTTP|SSH/)
  })

  it('close flushes, is idempotent, and later enqueues are dropped and counted', async () => {
    const { dir } = useTempDir()
    const path = join(dir, 'attacks.db')
    const store = await createSqliteStore(storeOptions(path, { batchWindowMs: 10_000 }))
    const attacks = Array.from({ length: 10 }, (_, i) => makeAttack(Buffer.from(`attack ${i}`)))
    for (const attack of attacks) store.enqueue(attack)
    const first = store.close()
    const second = store.close()
    await Promise.all([first, second])
    await store.close()
    // The writer checkpointed the WAL into the database and removed it when it closed.
    expect(() => statSync(`${path}-wal`)).toThrow()
    expect(store.stats()).toMatchObject({ written: 10, dropped: 0, queued: 0 })
    expect(readRows(path).map((row) => row.id)).toEqual(attacks.map((attack) => attack.id))

    expect(() => store.enqueue(makeAttack(Buffer.from('too late')))).not.toThrow()
    expect(store.stats().dropped).toBe(1)
    await store.flush()
  })

  it('keeps the data when reopened', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    const first = await createSqliteStore(storeOptions(path))
    const a = makeAttack(Buffer.from('first'))
    first.enqueue(a)
    await first.close()
    const second = await createSqliteStore(storeOptions(path))
    track(second)
    const b = makeAttack(Buffer.from('second'))
    second.enqueue(b)
    await second.flush()
    expect(readRows(path).map((row) => row.id)).toEqual([a.id, b.id])
  })

  it('refuses a database written by a newer schema', async () => {
    const { dir } = useTempDir()
    const path = join(dir, 'attacks.db')
    await (await createSqliteStore(storeOptions(path))).close()
    const db = new Database(path)
    db.pragma('user_version = 99')
    db.close()
    const err: unknown = await createSqliteStore(storeOptions(path)).catch((e: unknown) => e)
    expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
    expect((err as Error).message).toContain(path)
    expect((err as Error).message).toContain('99')
  })

  it('refuses a file that is not a database, and leaves it alone', async () => {
    const { dir } = useTempDir()
    const path = join(dir, 'attacks.db')
    const content = Buffer.from('this is a text file, not SQLite\n'.repeat(200))
    writeFileSync(path, content)
    const err: unknown = await createSqliteStore(storeOptions(path)).catch((e: unknown) => e)
    expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
    expect((err as Error).message).toContain(path)
    expect((err as Error).message).toContain('not a SQLite database')
    expect((err as Error).cause).toMatchObject({ code: 'SQLITE_NOTADB' })
    expect(readFileSync(path)).toEqual(content)
  })

  it('refuses a path that is a directory', async () => {
    const { dir } = useTempDir()
    const path = join(dir, 'attacks.db')
    mkdirSync(path)
    const err: unknown = await createSqliteStore(storeOptions(path)).catch((e: unknown) => e)
    expect(hasErrorCode(err, 'HT_ERR_STORE_OPEN')).toBe(true)
  })

  it('lets a read-only connection query while the writer inserts', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    const store = await createSqliteStore(storeOptions(path, { batchWindowMs: 5, batchMaxAttacks: 50 }))
    track(store)
    const reader = openAttackDatabase(path)
    track(reader)
    const count = reader.prepare<[], { n: number }>('SELECT count(*) AS n FROM attacks')
    const seen: number[] = []
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 50; i++) store.enqueue(makeAttack(Buffer.alloc(2000, i)))
      seen.push(count.get()!.n)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await store.flush()
    seen.push(count.get()!.n)
    expect(seen.at(-1)).toBe(2000)
    // Counts only grow, and the reader saw the table part-way filled: it read during the writes, not after them.
    expect(seen).toEqual([...seen].sort((x, y) => x - y))
    expect(seen.some((n) => n > 0 && n < 2000)).toBe(true)
  })

  it('waits out a lock held by another process without stalling the event loop, and loses nothing', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    const { log, lines } = captureLog()
    // Default busy timeout: what the sensor runs with.
    const store = await createSqliteStore(storeOptions(path, { batchWindowMs: 10, log }))
    track(store)
    const locker = new Database(path)
    track(locker)
    locker.exec('BEGIN EXCLUSIVE')
    // The event loop's longest gap while the lock is held: a write waiting out the lock on the loop would show here.
    let last = performance.now()
    let longestGapMs = 0
    const ticker = setInterval(() => {
      const now = performance.now()
      longestGapMs = Math.max(longestGapMs, now - last)
      last = now
    }, 5)
    const attacks: Attack[] = []
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 20; i++) {
        const attack = makeAttack(Buffer.from(`locked out ${round} ${i}`))
        attacks.push(attack)
        store.enqueue(attack)
      }
      await new Promise((resolve) => setTimeout(resolve, 150))
    }
    clearInterval(ticker)
    expect(store.stats()).toMatchObject({ written: 0, dropped: 0, writeErrors: 0, queued: 200 })
    expect(store.stats().lockWaits).toBeGreaterThanOrEqual(3)
    expect(longestGapMs).toBeLessThan(250) // a 1 s busy timeout on the loop, as before, would stand out here
    expect(lines.filter((l) => l.msg?.startsWith('store waiting for the database lock') === true)).toHaveLength(1)
    locker.exec('COMMIT')
    await store.flush()
    expect(store.stats()).toMatchObject({ written: 200, dropped: 0, writeErrors: 0, queued: 0 })
    expect(readRows(path).map((row) => row.id)).toEqual(attacks.map((a) => a.id))
    expect(lines.find((l) => l.msg === 'store has the database lock again')?.waitedMs).toBeGreaterThan(1000)
  })

  it('stops waiting for a lock when it closes: after closeLockWaitMs the rest is dropped, counted and logged', async () => {
    const { dir } = useTempDir()
    const path = join(dir, 'attacks.db')
    const { log, lines } = captureLog()
    const store = await createSqliteStore(storeOptions(path, { closeLockWaitMs: 300, log }))
    const locker = new Database(path)
    onTestFinished(() => {
      locker.close()
    })
    locker.exec('BEGIN EXCLUSIVE')
    for (let i = 0; i < 5; i++) store.enqueue(makeAttack(Buffer.from(`never stored ${i}`)))
    const started = performance.now()
    await store.close()
    const tookMs = performance.now() - started
    expect(tookMs).toBeGreaterThanOrEqual(290)
    expect(tookMs).toBeLessThan(5_000)
    expect(store.stats()).toMatchObject({ written: 0, dropped: 5, queued: 0 })
    expect(lines.find((l) => l.level === 50)?.msg).toMatch(/stayed locked by another process/)
    locker.exec('ROLLBACK')
    expect(readRows(path)).toEqual([])
  })

  it('drops a batch that keeps failing and still writes the following ones', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    const store = await createSqliteStore(storeOptions(path, { retryBaseDelayMs: 5, maxWriteAttempts: 3 }))
    track(store)
    const saboteur = new Database(path)
    track(saboteur)
    // A failure that is neither a lock nor a constraint and does not go away by itself: every insert now calls a
    // function that does not exist (SQLITE_ERROR), until the trigger is dropped.
    saboteur.exec('CREATE TRIGGER sabotage BEFORE INSERT ON attacks BEGIN SELECT no_such_function(); END')
    for (let i = 0; i < 5; i++) store.enqueue(makeAttack(Buffer.from(`lost ${i}`)))
    await store.flush()
    expect(store.stats()).toMatchObject({ written: 0, dropped: 5, writeErrors: 3, queued: 0, lockWaits: 0 })
    saboteur.exec('DROP TRIGGER sabotage')
    const kept = makeAttack(Buffer.from('kept'))
    store.enqueue(kept)
    await store.flush()
    expect(store.stats()).toMatchObject({ written: 1, dropped: 5 })
    expect(readRows(path).map((row) => row.id)).toEqual([kept.id])
  })

  it('drops only the bad row of a batch, at once', async () => {
    const { dir, track } = useTempDir()
    const path = join(dir, 'attacks.db')
    const store = await createSqliteStore(storeOptions(path, { retryBaseDelayMs: 60_000 }))
    track(store)
    const [a, b, c] = [makeAttack(Buffer.from('a')), makeAttack(Buffer.from('b')), makeAttack(Buffer.from('c'))]
    // The same attack twice violates the primary key; retrying cannot help, so no 60 s backoff may happen.
    for (const attack of [a, b, a, c]) store.enqueue(attack)
    await store.flush()
    expect(store.stats()).toMatchObject({ written: 3, dropped: 1, writeErrors: 1, queued: 0 })
    expect(readRows(path).map((row) => row.id)).toEqual([a.id, b.id, c.id])
  })

  it('keeps every attack enqueued before the last batch window when the process is SIGKILLed', async () => {
    const { dir } = useTempDir()
    const path = join(dir, 'attacks.db')
    const batchWindowMs = 200
    const helper = fileURLToPath(new URL('../helpers/store-writer-child.mjs', import.meta.url))
    const child = spawn(process.execPath, [helper, path, String(batchWindowMs), 'info'], { stdio: ['ignore', 'pipe', 'inherit'] })
    onTestFinished(() => {
      child.kill('SIGKILL')
    })
    const enqueued: { id: string; atMs: number }[] = []
    const storedLogs: Record<string, unknown>[] = []
    let buffered = ''
    let ready = false
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        const match = /^enqueued ([0-9A-Z]{26}) (\d+)$/.exec(line)
        if (match) enqueued.push({ id: match[1]!, atMs: Number(match[2]) })
        else if (line === 'ready') ready = true
        else if (line.startsWith('{')) {
          const record = JSON.parse(line) as Record<string, unknown>
          if (record.msg === 'attack stored') storedLogs.push(record)
        }
      }
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
    await until(() => ready)
    await new Promise((resolve) => setTimeout(resolve, 1500 + Math.random() * 1500))
    const killAtMs = Date.now()
    child.kill('SIGKILL')
    expect(await exited).toBe('SIGKILL')

    // After a crash the WAL is still there; a read-only connection (the CLI's) must still see the committed rows.
    const db = openAttackDatabase(path)
    const ids = new Set(db.prepare<[], string>('SELECT id FROM attacks').pluck().all())
    db.close()
    const mustHave = enqueued.filter((attack) => attack.atMs < killAtMs - (batchWindowMs + 500))
    expect(mustHave.length).toBeGreaterThan(500)
    expect(mustHave.filter((attack) => !ids.has(attack.id))).toEqual([])
    // Nothing is stored that was not enqueued, and an 'attack stored' line means the row is committed.
    const enqueuedIds = new Set(enqueued.map((attack) => attack.id))
    expect([...ids].filter((id) => !enqueuedIds.has(id))).toEqual([])
    expect(storedLogs.length).toBeGreaterThan(0)
    for (const record of storedLogs) expect(ids.has(record.attackId as string)).toBe(true)
    // The log line carries the fixed fields and never the payload.
    expect(Object.keys(storedLogs[0]!).sort()).toEqual(
      ['attackId', 'bytesReceived', 'bytesSent', 'closeReason', 'component', 'dport', 'dst', 'level', 'mode', 'msg', 'protocol', 'sha256', 'sport', 'src', 'time', 'truncated'].sort(),
    )
  })
})
