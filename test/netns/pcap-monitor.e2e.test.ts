import { afterAll, beforeAll, expect, it } from 'vitest'
import { runAttackPlan } from '../../src/netns/sensor-process.js'
import { describeNetns, eventually, listening, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

// The whole sensor on `monitor: pcap`: no capture rules, the first attempt at a new port lost (the kernel has answered
// it before the listener exists), the next one served and stored like any other.


describeNetns('sensor with the pcap monitor', () => {
  let fx: SensorFixture

  beforeAll(async () => {
    fx = await startSensorFixture({ label: 'pcapmon', configYaml: 'monitor: { type: pcap }\nresponder: { idleTimeoutMs: 1500 }\nudp: { sessionIdleMs: 500 }\nplugins: { enabled: false }\n' })
  }, 60_000)

  afterAll(async () => {
    await fx?.teardown()
  })

  it('installs no capture rules', async () => {
    const rules = (await fx.pair.exec(fx.pair.sensorNs, 'iptables', ['-S'])) + (await fx.pair.exec(fx.pair.sensorNs, 'ip6tables', ['-S']))
    expect(rules).not.toMatch(/NFQUEUE|HONEYTRAP/i)
  })

  it('loses the first TCP attempt at a new port, then serves and stores the next', async () => {
    const { pair } = fx
    const [first] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 2323, send: 'root\r\n', halfClose: true, waitMs: 1_500 }])
    expect(first?.['connected']).toBe(false) // refused: the listener came after the kernel's RST
    expect(await eventually(() => listening(fx.pair, 'tcp', 2323), 5_000)).toBe(true)
    const [second] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 2323, send: 'root\r\nadmin\r\n', halfClose: true, waitMs: 2_000 }])
    expect(second?.['connected']).toBe(true)
    const rows = await waitFor(() => readRows<{ payload: Buffer; src_ip: string }>(fx.dbPath, 'SELECT payload, src_ip FROM attacks WHERE dst_port = 2323'), (r) => r.length === 1, 5_000)
    expect(rows).toHaveLength(1)
    expect(rows[0]!.payload.toString('latin1')).toBe('root\r\nadmin\r\n')
    expect(rows[0]!.src_ip).toBe(pair.attackerV4)
  })

  it('does the same for UDP and IPv6', async () => {
    const { pair } = fx
    const probe = Buffer.from('OPTIONS sip:x SIP/2.0\r\n\r\n').toString('base64')
    await runAttackPlan(pair, [{ type: 'udp', host: pair.sensorV4, port: 5060, sendBase64: probe, count: 1, waitMs: 300 }])
    expect(await eventually(() => listening(fx.pair, 'udp', 5060), 5_000)).toBe(true)
    await runAttackPlan(pair, [{ type: 'udp', host: pair.sensorV4, port: 5060, sendBase64: probe, count: 1, waitMs: 800 }])
    await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV6, port: 8081, send: 'x', waitMs: 800 }])
    expect(await eventually(() => listening(fx.pair, 'tcp', 8081), 5_000)).toBe(true)
    const [v6] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV6, port: 8081, send: 'GET / HTTP/1.0\r\n\r\n', halfClose: true, waitMs: 2_000 }])
    expect(v6?.['connected']).toBe(true)
    const rows = await waitFor(
      () => readRows<{ dst_port: number; family: number; protocol: string }>(fx.dbPath, 'SELECT dst_port, family, protocol FROM attacks WHERE dst_port IN (5060, 8081) ORDER BY dst_port'),
      (r) => r.length === 2,
      5_000,
    )
    expect(rows).toEqual([
      { dst_port: 5060, family: 4, protocol: 'udp' },
      { dst_port: 8081, family: 6, protocol: 'tcp' },
    ])
  })
})
