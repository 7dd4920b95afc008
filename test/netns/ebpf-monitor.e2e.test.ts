import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { shippedTemplatesDir } from '../../src/config/paths.js'
import { distScript, runAttackPlan } from '../../src/netns/sensor-process.js'
import { describeNetns, eventually, loadedHoneytrapPrograms, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

// The whole sensor on `monitor: ebpf`: no rules and no queue; the very first connection to any port is served (the
// sk_lookup program steers it into the sensor's one TCP socket), real services and excluded ports are left alone, UDP
// is served from the first datagram, and after a SIGKILL the host behaves as if the sensor had never run.


describeNetns('sensor with the eBPF monitor', () => {
  let fx: SensorFixture
  let service: ChildProcess | undefined
  const before: string[] = []

  beforeAll(async () => {
    before.push(...(await loadedHoneytrapPrograms()))
    fx = await startSensorFixture({
      label: 'ebpfmon',
      configYaml: [
        // A scan of /proc/net far apart: a service started while running must be left alone from its bind (the bind
        // watch), not from the next scan.
        'monitor: { type: ebpf, ebpf: { serviceScanMs: 30000 } }',
        "rules: { exclude: ['7000'] }",
        'ports: { rules: [{ ports: "7001", mode: ignore }] }',
        `responder: { idleTimeoutMs: 1500, templatesDir: ${JSON.stringify(shippedTemplatesDir())} }`,
        'udp: { sessionIdleMs: 500 }',
        'plugins: { enabled: false }',
        '',
      ].join('\n'),
    })
  }, 60_000)

  afterAll(async () => {
    if (service?.pid !== undefined && service.exitCode === null) service.kill('SIGKILL')
    await fx?.teardown()
  })

  it('serves the very first connection to never-used ports, IPv4 and IPv6, with no rules installed', async () => {
    const { pair } = fx
    const rules = (await pair.exec(pair.sensorNs, 'iptables', ['-S'])) + (await pair.exec(pair.sensorNs, 'ip6tables', ['-S']))
    expect(rules).not.toMatch(/NFQUEUE/)
    const ports = [2323, 8081, 31337, 60001]
    const plan = ports.map((port, i) => ({ type: 'tcp', host: i % 2 === 0 ? pair.sensorV4 : pair.sensorV6, port, send: `probe ${port}\r\n`, halfClose: true, waitMs: 2_000 }))
    const results = await runAttackPlan(pair, plan)
    for (const result of results) expect(result['connected']).toBe(true)
    const rows = await waitFor(
      () => readRows<{ dst_port: number; family: number; src_ip: string; dst_ip: string; payload: Buffer; syn_facts: string | null }>(fx.dbPath, 'SELECT dst_port, family, src_ip, dst_ip, payload, syn_facts FROM attacks WHERE protocol = ? ORDER BY dst_port', 'tcp'),
      (r) => r.length === ports.length,
      5_000,
    )
    expect(rows.map((r) => r.dst_port)).toEqual(ports)
    for (const [i, row] of rows.entries()) {
      const v4 = i % 2 === 0
      expect(row).toMatchObject({ family: v4 ? 4 : 6, src_ip: v4 ? pair.attackerV4 : pair.attackerV6, dst_ip: v4 ? pair.sensorV4 : pair.sensorV6 })
      expect(row.payload.toString('latin1')).toBe(`probe ${row.dst_port}\r\n`)
      // The XDP program's facts of the SYN, joined to the accepted connection: the same as NFQUEUE records.
      expect(row.syn_facts).not.toBeNull()
      expect(JSON.parse(row.syn_facts!)).toMatchObject({
        ttl: 64,
        tcpFlags: 0x02,
        tcpOptions: [2, 4, 8, 1, 3],
        mss: v4 ? 1460 : 1440,
        windowScale: expect.any(Number),
        ...(v4 ? { dontFragment: true, ipId: expect.any(Number) } : { ipId: null }),
      })
    }
  })

  it('serves UDP from the first datagram, from the port it was sent to', async () => {
    const { pair } = fx
    // As large as a real scanner's OPTIONS: the sensor never answers a datagram with more bytes than it carried.
    const probe = Buffer.from(
      `OPTIONS sip:100@${pair.sensorV4} SIP/2.0\r\nVia: SIP/2.0/UDP ${pair.attackerV4}:5060;branch=z9hG4bK-${'x'.repeat(32)};rport\r\n` +
        `From: "sipvicious"<sip:100@1.1.1.1>;tag=${'6'.repeat(40)}\r\nTo: "sipvicious"<sip:100@1.1.1.1>\r\nCall-ID: ${'7'.repeat(40)}\r\n` +
        `CSeq: 1 OPTIONS\r\nContact: <sip:100@${pair.attackerV4}:5060>\r\nAccept: application/sdp\r\nMax-Forwards: 70\r\n` +
        `User-Agent: friendly-scanner ${'y'.repeat(120)}\r\nContent-Length: 0\r\n\r\n`,
    )
    const [result] = await runAttackPlan(pair, [{ type: 'udp', host: pair.sensorV4, port: 5060, sendBase64: probe.toString('base64'), count: 1, waitMs: 1_000 }])
    const replies = result?.['replies'] as string[]
    expect(replies.length).toBeGreaterThanOrEqual(1)
    expect(Buffer.from(replies[0]!, 'base64').toString('latin1')).toMatch(/^SIP\/2\.0 200 OK\r\n/)
    const rows = await waitFor(() => readRows<{ payload: Buffer; dst_ip: string; src_ip: string }>(fx.dbPath, "SELECT payload, dst_ip, src_ip FROM attacks WHERE protocol = 'udp' AND dst_port = 5060"), (r) => r.length === 1, 5_000)
    expect(rows[0]!.payload.equals(probe)).toBe(true)
    expect(rows[0]).toMatchObject({ src_ip: pair.attackerV4, dst_ip: pair.sensorV4 })
  })

  it('leaves excluded and ignored ports, and a real service that starts later, to the kernel', async () => {
    const { pair } = fx
    const [excluded, ignored] = await runAttackPlan(pair, [
      { type: 'tcp', host: pair.sensorV4, port: 7000, send: 'x', waitMs: 1_000 },
      { type: 'tcp', host: pair.sensorV4, port: 7001, send: 'x', waitMs: 1_000 },
    ])
    expect(excluded?.['connected']).toBe(false)
    expect(ignored?.['connected']).toBe(false)
    // A real HTTP server starts on 8000 while the sensor runs, and answers its first connection itself: the bind watch
    // passed its port at the bind, 30 s before the next scan of the host's ports would have.
    service = pair.spawn(pair.sensorNs, process.execPath, ['-e', "require('net').createServer((s) => s.end('REAL SERVICE\\n')).listen(8000, () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve) => service!.stdout?.once('data', () => resolve()))
    const [real] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 8000, waitMs: 2_000 }])
    expect(real?.['connected']).toBe(true)
    expect(Buffer.from(String(real?.['received']), 'base64').toString('latin1')).toBe('REAL SERVICE\n')
    expect(readRows<{ n: number }>(fx.dbPath, 'SELECT count(*) AS n FROM attacks WHERE dst_port IN (7000, 7001, 8000)')[0]!.n).toBe(0)
  })

  it('refuses a second sensor in the same namespace, naming the first, which keeps serving', async () => {
    const { pair } = fx
    const second = pair.spawn(pair.sensorNs, process.execPath, [distScript('cli/cli.js'), 'run', '--config', join(fx.dir, 'config.yaml'), '--db', join(fx.dir, 'second.db')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    second.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const killer = setTimeout(() => second.kill('SIGKILL'), 30_000) // by its own pid: ip netns exec execs in place
    const code = await new Promise<number | null>((resolve) => second.once('exit', (c) => resolve(c)))
    clearTimeout(killer)
    expect(code).toBe(1)
    expect(stderr).toContain(`another honeytrap-ts sensor (PID ${fx.sensor!.pid}) already steers this network namespace with eBPF`)
    expect(stderr).toContain('[HT_ERR_MONITOR_OPEN]')
    const [served] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 24242, send: 'still here\r\n', halfClose: true, waitMs: 2_000 }])
    expect(served?.['connected']).toBe(true)
    const rows = await waitFor(() => readRows<{ n: number }>(fx.dbPath, 'SELECT count(*) AS n FROM attacks WHERE dst_port = 24242'), (r) => r[0]?.n === 1, 5_000)
    expect(rows[0]?.n).toBe(1)
  })

  it('reads SYN facts on an interface added while it runs, and lets go of it when it goes', async () => {
    const { pair } = fx
    const tag = randomBytes(3).toString('hex')
    const [sensorDev, attackerDev] = [`htx${tag}`, `hty${tag}`]
    // A /24 the pair's own link does not use; it exists only in these two namespaces.
    const subnet = (Number(pair.sensorV4.split('.')[2]) % 254) + 1
    const [sensorAddress, attackerAddress] = [`198.18.${subnet}.1`, `198.18.${subnet}.2`]
    await pair.exec(pair.sensorNs, 'ip', ['link', 'add', sensorDev, 'type', 'veth', 'peer', 'name', attackerDev, 'netns', pair.attackerNs])
    await pair.exec(pair.sensorNs, 'ip', ['addr', 'add', `${sensorAddress}/24`, 'dev', sensorDev])
    await pair.exec(pair.attackerNs, 'ip', ['addr', 'add', `${attackerAddress}/24`, 'dev', attackerDev])
    await pair.exec(pair.sensorNs, 'ip', ['link', 'set', sensorDev, 'up'])
    await pair.exec(pair.attackerNs, 'ip', ['link', 'set', attackerDev, 'up'])
    await fx.sensor!.waitFor((l) => l.msg === 'syn facts: new interface' && (l['interface'] as { name?: string } | undefined)?.name === sensorDev, 5_000)
    const [result] = await runAttackPlan(pair, [{ type: 'tcp', host: sensorAddress, port: 25252, send: 'new link\r\n', halfClose: true, waitMs: 2_000 }])
    expect(result?.['connected']).toBe(true)
    const rows = await waitFor(
      () => readRows<{ src_ip: string; syn_facts: string | null }>(fx.dbPath, 'SELECT src_ip, syn_facts FROM attacks WHERE dst_port = 25252'),
      (r) => r.length === 1,
      5_000,
    )
    expect(rows[0]?.src_ip).toBe(attackerAddress)
    // The only way to that address is the new link: its facts came from the program attached to it after the start.
    expect(JSON.parse(rows[0]?.syn_facts ?? 'null')).toMatchObject({ ttl: 64, tcpFlags: 0x02, mss: 1460 })
    await pair.exec(pair.sensorNs, 'ip', ['link', 'del', sensorDev])
    await fx.sensor!.waitFor((l) => l.msg === 'syn facts: interface gone' && l['interface'] === sensorDev, 5_000)
  })

  it('leaves nothing attached after a SIGKILL: the host refuses new ports again by itself', async () => {
    const { pair } = fx
    expect((await loadedHoneytrapPrograms()).length).toBeGreaterThan(before.length)
    await fx.sensor!.stop('SIGKILL')
    fx.sensor = undefined
    await eventually(async () => (await loadedHoneytrapPrograms()).length <= before.length, 10_000, 200)
    expect(await loadedHoneytrapPrograms()).toEqual(before)
    const [after] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 40404, send: 'x', waitMs: 1_000 }])
    expect(after?.['connected']).toBe(false)
  })
})
