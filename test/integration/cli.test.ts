import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pino from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack } from '../../src/attack/attack.js'
import { distScript } from '../../src/netns/sensor-process.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'

const run = promisify(execFile)

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

async function cli(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [distScript('cli/cli.js'), ...args])
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ht-cli-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const RESPONSE = Buffer.from('220 ready\r\n\u001b[2J\r\n') // 17 bytes, an escape sequence among them

function attack(i: number, payload: Buffer, family: 4 | 6 = 4): Attack {
  const startedAtMs = Date.UTC(2026, 10, 22, 12, 0, i)
  const source = { address: family === 4 ? `198.18.0.${i + 2}` : `fd00::${i + 2}`, port: 40_000 + i }
  return {
    id: `01JZ${String(i).padStart(22, '0')}`,
    protocol: i % 2 === 0 ? 'tcp' : 'udp',
    family,
    mode: i === 2 ? 'mirror' : 'normal',
    source,
    target: { address: family === 4 ? '198.18.0.1' : 'fd00::1', port: 80 + i },
    startedAtMs,
    endedAtMs: startedAtMs + 1_234,
    closeReason: 'peer-closed',
    payload,
    truncated: false,
    bytesReceived: payload.length,
    bytesSent: 17,
    response: RESPONSE,
    responseTruncated: false,
    transcript: [
      { direction: 'out' as const, offsetMs: 0, size: RESPONSE.length },
      { direction: 'in' as const, offsetMs: 5, size: payload.length },
    ].filter((c) => c.size > 0),
    transcriptTruncated: false,
    relay: i === 2 ? { target: `${source.address}:${80 + i}`, outcome: 'fallback', reason: 'loop' } : null,
    synFacts: null,
  }
}

describe('honeytrap-ts command line', () => {
  it('prints help and version', async () => {
    const help = await cli('--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('honeytrap-ts run')
    const version = await cli('--version')
    expect(version.code).toBe(0)
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
  })

  it('refuses unknown commands and flags with exit 2, naming them', async () => {
    const unknown = await cli('frobnicate')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('"frobnicate"')
    const flag = await cli('attacks', 'list', '--colour')
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain('--colour')
    const value = await cli('attacks', 'list', '--db', '/nonexistent.db', '--limit', 'many')
    expect(value.code).toBe(2)
    expect(value.stderr).toContain('--limit "many"')
    const since = await cli('attacks', 'list', '--db', '/nonexistent.db', '--since', 'yesterday')
    expect(since.code).toBe(2)
    expect(since.stderr).toContain('--since')
    const queue = await cli('run', '--queue', '70000')
    expect(queue.code).toBe(2)
    expect(queue.stderr).toContain('--queue "70000"')
  })

  it('refuses a bad config with exit 2 and the key path, and checks a good one', async () => {
    const dir = await tempDir()
    const bad = join(dir, 'bad.yaml')
    await writeFile(bad, 'monitor:\n  queue: 70000\nlistners: {}\n')
    const result = await cli('config', 'check', '--config', bad)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('monitor.queue')
    expect(result.stderr).toContain('listners')
    const good = join(dir, 'good.yaml')
    await writeFile(good, 'monitor:\n  queue: 7\n')
    const ok = await cli('config', 'check', '--config', good)
    expect(ok.code).toBe(0)
    expect((JSON.parse(ok.stdout) as { monitor: { queue: number } }).monitor.queue).toBe(7)
  })

  it('run validates its config (in its short-lived config thread) before starting anything', async () => {
    const dir = await tempDir()
    const bad = join(dir, 'bad.yaml')
    await writeFile(bad, 'responder:\n  maxAttackBytes: -5\n')
    const result = await cli('run', '--config', bad)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('responder.maxAttackBytes')
    const missing = await cli('run', '--config', join(dir, 'absent.yaml'))
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('HT_ERR_CONFIG_READ')
  })

  it('fails with a clear store error on a missing database', async () => {
    const result = await cli('attacks', 'list', '--db', '/nonexistent/attacks.db')
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('HT_ERR_STORE_OPEN')
  })

  it('lists and exports what the store wrote, with the documented fields', async () => {
    const dir = await tempDir()
    const db = join(dir, 'attacks.db')
    const store = await createSqliteStore({
      path: db,
      batchWindowMs: 20,
      batchMaxAttacks: 100,
      maxQueuedAttacks: 1_000,
      maxQueuedBytes: 1 << 24,
      log: pino({ level: 'silent' }),
    })
    const payloads = [Buffer.from('GET / HTTP/1.0\r\n\r\n'), Buffer.alloc(0), Buffer.from([0, 1, 2, 0xff, 0x1b, 0x5b, 0x32, 0x4a]), Buffer.from('USER x\r\n')]
    payloads.forEach((p, i) => store.enqueue(attack(i, p, i === 3 ? 6 : 4)))
    await store.close()

    const list = await cli('attacks', 'list', '--db', db, '--json')
    expect(list.code).toBe(0)
    const page = JSON.parse(list.stdout) as { total: number; attacks: { id: string }[] }
    expect(page.total).toBe(4)
    expect(page.attacks.map((a) => a.id)).toEqual([3, 2, 1, 0].map((i) => attack(i, Buffer.alloc(0)).id)) // newest first

    const table = await cli('attacks', 'list', '--db', db, '--protocol', 'udp')
    expect(table.code).toBe(0)
    expect(table.stdout).toContain('2 shown of 2')
    expect(table.stdout).not.toContain('\u001b') // piped: no colour, and never attacker bytes

    // The relay column: the fallback reason of the mirror session, '-' for the normal ones.
    const all = await cli('attacks', 'list', '--db', db)
    const rows = all.stdout.split('\n')
    expect(rows[0]).toMatch(/\bmode\s+relay\s+in\s+out\b/)
    expect(rows.find((row) => row.includes('198.18.0.4:40002'))).toMatch(/\bmirror\s+loop\s/)
    expect(rows.find((row) => row.includes('198.18.0.2:40000'))).toMatch(/\bnormal\s+-\s/)

    const exported = await cli('attacks', 'export', '--db', db, '--format', 'jsonl')
    expect(exported.code).toBe(0)
    const records = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(records).toHaveLength(4)
    records.forEach((r, i) => {
      const p = payloads[i]!
      expect(r).toMatchObject({
        id: attack(i, p).id,
        protocol: i % 2 === 0 ? 'tcp' : 'udp',
        src_port: 40_000 + i,
        dst_port: 80 + i,
        mode: i === 2 ? 'mirror' : 'normal',
        started_at: new Date(Date.UTC(2026, 10, 22, 12, 0, i)).toISOString(),
        ended_at: new Date(Date.UTC(2026, 10, 22, 12, 0, i) + 1_234).toISOString(),
        close_reason: 'peer-closed',
        bytes_received: p.length,
        bytes_sent: 17,
        truncated: false,
        payload_sha256: createHash('sha256').update(p).digest('hex'),
        payload_base64: p.toString('base64'),
        response_size: RESPONSE.length,
        response_sha256: createHash('sha256').update(RESPONSE).digest('hex'),
        response_base64: RESPONSE.toString('base64'),
        relay: i === 2 ? { target: '198.18.0.4:82', outcome: 'fallback', reason: 'loop' } : null,
        transcript_truncated: false,
        transcript_error: null,
      })
      const transcript = r['transcript'] as { direction: string; data_base64: string }[]
      const replay = (direction: string): Buffer => Buffer.concat(transcript.filter((c) => c.direction === direction).map((c) => Buffer.from(c.data_base64, 'base64')))
      expect(replay('in')).toEqual(p)
      expect(replay('out')).toEqual(RESPONSE)
      expect(String(r['started_at'])).toMatch(/Z$/)
    })
    expect(records[3]).toMatchObject({ src_ip: 'fd00::5', dst_ip: 'fd00::1', family: 6 })

    const badFormat = await cli('attacks', 'export', '--db', db, '--format', 'xml')
    expect(badFormat.code).toBe(2)
    expect(badFormat.stderr).toContain('--format "xml"')
  })
})

describe('honeytrap-ts replay', () => {
  async function seeded(): Promise<string> {
    const dir = await tempDir()
    const db = join(dir, 'attacks.db')
    const store = await createSqliteStore({ path: db, batchWindowMs: 20, batchMaxAttacks: 100, maxQueuedAttacks: 1_000, maxQueuedBytes: 1 << 24, log: pino({ level: 'silent' }) })
    const basic = `GET / HTTP/1.1\r\nAuthorization: Basic ${Buffer.from('admin:hunter2').toString('base64')}\r\n\r\n`
    store.enqueue(attack(0, Buffer.from(basic)))
    store.enqueue(attack(1, Buffer.from('no encoding here at all')))
    await store.close()
    return db
  }

  it('runs the named plugins over stored attacks, then does nothing more the second time', async () => {
    const db = await seeded()
    const first = await cli('replay', '--db', db, '--plugin', 'b64Decode', '--json')
    expect(first.code).toBe(0)
    expect(JSON.parse(first.stdout)).toMatchObject({ attacks: 2, total: 2, runs: 3, failed: 0, interrupted: false }) // 2 attack strings + 1 decoded
    const second = await cli('replay', '--db', db, '--plugin', 'b64Decode', '--json')
    expect(JSON.parse(second.stdout)).toMatchObject({ attacks: 2, runs: 0 })
    const exported = await cli('attacks', 'export', '--db', db)
    const records = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as { artifacts: { kind: string; info: Record<string, unknown>; data_base64: string | null }[] })
    const artifacts = records.flatMap((r) => r.artifacts)
    expect(artifacts.filter((a) => a.kind === 'decoded' && a.data_base64 !== null).map((a) => Buffer.from(a.data_base64!, 'base64').toString())).toEqual(['admin:hunter2'])
    expect(artifacts.some((a) => a.info['user'] === 'admin' && a.info['password'] === 'hunter2')).toBe(true)
  })

  it('filters by attack id and port, and refuses bad flags with exit 2 naming them', async () => {
    const db = await seeded()
    const one = await cli('replay', '--db', db, '--plugin', 'fileType', '--port', '81', '--json')
    expect(JSON.parse(one.stdout)).toMatchObject({ attacks: 1, total: 1 })
    for (const [args, message] of [
      [['--protocol', 'icmp'], /--protocol "icmp" is not valid/],
      [['--id', 'not-an-id'], /--id "not-an-id" is not an attack id/],
      [['--plugin', 'nope'], /--plugin "nope" is not a built-in plugin/],
      [['--since', 'yesterday'], /--since "yesterday" is not a duration/],
      [['--plugin', 'clamav'], /plugins\.list\.0\.options\.socket/],
    ] as const) {
      const result = await cli('replay', '--db', db, ...args)
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr).toMatch(message)
    }
  })
})

describe('honeytrap-ts attacks show', () => {
  it('prints one attack as a dialogue without a raw control byte, as JSON with --json, and names a missing id', async () => {
    const dir = await tempDir()
    const db = join(dir, 'attacks.db')
    const store = await createSqliteStore({ path: db, batchWindowMs: 20, batchMaxAttacks: 100, maxQueuedAttacks: 1_000, maxQueuedBytes: 1 << 24, log: pino({ level: 'silent' }) })
    const hostile = Buffer.from('GET /\u001b[2J\u001b]0;pwned\u0007 HTTP/1.0\r\n\r\n', 'latin1')
    store.enqueue(attack(0, hostile))
    await store.close()
    const id = `01JZ${'0'.repeat(22)}`
    const shown = await cli('attacks', 'show', id, '--db', db)
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(/>>> in {2}\+5 ms {2}\d+ bytes/)
    expect(shown.stdout).toMatch(/<<< out \+0 ms {2}17 bytes/)
    expect(shown.stdout).toContain('\\x1b[2J')
    expect(shown.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/) // not piped to a TTY: no colour either
    const json = await cli('attacks', 'show', id, '--db', db, '--json')
    expect(Buffer.from((JSON.parse(json.stdout) as { payload_base64: string }).payload_base64, 'base64').equals(hostile)).toBe(true)
    const missing = await cli('attacks', 'show', `01JZ${'9'.repeat(22)}`, '--db', db)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('HT_ERR_NOT_FOUND')
    for (const args of [[], ['not-an-id'], [id, id]]) {
      const bad = await cli('attacks', 'show', ...args, '--db', db)
      expect(bad.code, args.join(' ')).toBe(2)
      expect(bad.stderr).toContain('attacks show takes one attack id')
    }
  })
})

describe('honeytrap-ts attacks export formats', () => {
  it('writes JSON lines, a JSON array, CSV, a pcap and raw files, each honouring the filters', async () => {
    const dir = await tempDir()
    const db = join(dir, 'attacks.db')
    const store = await createSqliteStore({ path: db, batchWindowMs: 20, batchMaxAttacks: 100, maxQueuedAttacks: 1_000, maxQueuedBytes: 1 << 24, log: pino({ level: 'silent' }) })
    const payloads = [Buffer.from('GET / HTTP/1.0\r\n\r\n'), Buffer.from('x,"y"\r\n'), Buffer.from([0, 1, 2, 0xff]), Buffer.from('USER x\r\n')]
    payloads.forEach((p, i) => store.enqueue(attack(i, p)))
    await store.close()
    const jsonl = await cli('attacks', 'export', '--db', db, '--protocol', 'tcp')
    expect(jsonl.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id)).toEqual([0, 2].map((i) => `01JZ${String(i).padStart(22, '0')}`))
    const json = await cli('attacks', 'export', '--db', db, '--format', 'json')
    expect((JSON.parse(json.stdout) as unknown[]).length).toBe(4)
    const empty = await cli('attacks', 'export', '--db', db, '--format', 'json', '--port', '1')
    expect(JSON.parse(empty.stdout)).toEqual([])
    const csv = await cli('attacks', 'export', '--db', db, '--format', 'csv', '--contains', 'USER')
    const lines = csv.stdout.split('\r\n').filter((l) => l !== '')
    expect(lines[0]).toMatch(/^id,protocol,family,mode,src_ip,/)
    expect(lines).toHaveLength(2)
    expect(lines[1]).toContain(`01JZ${'3'.padStart(22, '0')},udp,4,normal,198.18.0.5,40003`)
    const pcapPath = join(dir, 'out.pcap')
    expect((await cli('attacks', 'export', '--db', db, '--format', 'pcap', '--output', pcapPath)).code).toBe(0)
    const pcap = await readFile(pcapPath)
    expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4)
    expect(pcap.readUInt32LE(20)).toBe(101) // LINKTYPE_RAW
    const rawDir = join(dir, 'raw')
    const raw = await cli('attacks', 'export', '--db', db, '--format', 'raw', '--output', rawDir, '--min-size', '5')
    expect(raw.code).toBe(0)
    const files = (await readdir(rawDir)).sort()
    expect(files).toEqual([0, 1, 3].map((i) => `01JZ${String(i).padStart(22, '0')}.bin`))
    expect(await readFile(join(rawDir, files[1]!))).toEqual(payloads[1])
    for (const [args, message] of [
      [['--format', 'xml'], /--format "xml" is not valid; expected jsonl, json, csv, pcap, raw/],
      [['--format', 'raw'], /give the directory with --output DIR/],
      [['--port', 'x'], /--port "x" is not a port/],
    ] as const) {
      const bad = await cli('attacks', 'export', '--db', db, ...args)
      expect(bad.code).toBe(2)
      expect(bad.stderr).toMatch(message)
    }
  })
})
