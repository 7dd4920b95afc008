import { readdirSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runAttackPlan } from '../../src/netns/sensor-process.js'
import { isRoot, readRows, waitFor } from '../helpers/netns-env.js'
import { startSensorFixture, type SensorFixture } from '../helpers/sensor-fixture.js'

// Far below the 65,535 ports, so the scan must go through LRU eviction to answer every port. Above the default
// (4,096) for margin on a loaded CI machine: the listener evicted is then ~4 s old at this rate rather than ~1 s.
// (Evicting a listener with a handshake still queued used to lose that record; see the regression test in
// test/integration/supervisor.test.ts.)
const MAX_LISTENERS = 16_384
// The scan comes from one address at ~5,000 connections/s on a fast machine: the per-source rate limit (default
// 5,000/s) would rightly reset some of them. This test is about the listener bound, so that limit is lifted here; the
// limit itself is tested in test/integration/supervisor.test.ts.
const LIMITS = 'limits: { newConnectionsPerSecondPerSource: 1000000 }'

// NFQUEUE binds and evicts listeners as the scan goes; eBPF takes every port through its one socket. (pcap would
// lose each port's first SYN: a full scan against it is two scans, and sensor.e2e covers that loss.)
describe.skipIf(!isRoot).each([['nfqueue'], ['ebpf']] as const)('a scan of all 65,535 TCP ports, monitor %s', (monitor) => {
  let fx: SensorFixture

  beforeAll(async () => {
    fx = await startSensorFixture({
      label: `scan-${monitor}`,
      logLevel: 'warn',
      // eBPF: every port's handshakes wait in the one steering socket's accept queue, and a scan at the kernel's speed
      // outruns the sensor's accepts; the queue is capped by net.core.somaxconn (4,096 by default), which
      // docs/monitors.md advises raising. NFQUEUE paces the scan instead: each SYN waits for its port's bind.
      beforeStart: async (pair) => {
        if (monitor === 'ebpf') await pair.exec(pair.sensorNs, 'sysctl', ['-qw', 'net.core.somaxconn=65535'])
      },
      configYaml: `monitor: { type: ${monitor} }\nlisteners: { maxListeners: ${MAX_LISTENERS} }\nresponder: { idleTimeoutMs: 2000 }\n${LIMITS}\n`,
    })
  })

  afterAll(() => fx?.teardown())

  it('answers every port but the excluded ssh port, with bounded listeners and descriptors, and stays alive', async () => {
    const { pair, dbPath } = fx
    const sensor = fx.sensor!
    const [scan] = await runAttackPlan(pair, [
      { type: 'scan', host: pair.sensorV4, from: 1, to: 65_535, concurrency: 48, timeoutMs: 3_000, deadlineMs: 150_000 },
    ])
    // Port 22 is excluded by default (the operator's ssh), so it alone is refused.
    // The message carries the error codes of any "other" failure and the sensor's warnings (limits reached), so a
    // failure here says what the client saw and why.
    const warnings = (): string => fx.sensor?.lines.filter((l) => (l.level ?? 0) >= 40).map((l) => JSON.stringify(l)).join('\n') ?? ''
    expect(scan, `otherCodes: ${JSON.stringify(scan?.['otherCodes'])}\nsensor warnings: ${warnings()}`).toMatchObject({ open: 65_534, refused: 1, timeout: 0, other: 0, skipped: 0, failed: [22] })
    // A connect of a second or more is a SYN retransmitted: the sensor held it that long (its event loop blocked).
    expect(scan?.['over1s'], `connects of 1 s or more; sensor warnings: ${warnings()}`).toBe(0)

    const fds = readdirSync(`/proc/${sensor.pid}/fd`).length
    expect(fds).toBeLessThanOrEqual(MAX_LISTENERS + 200)
    const listeners = (await pair.exec(pair.sensorNs, 'ss', ['-Hltn'])).trim().split('\n').length
    expect(listeners).toBeLessThanOrEqual(MAX_LISTENERS)

    // Still alive and still answering new ports after the flood.
    expect(sensor.child.exitCode).toBeNull()
    const [after] = await runAttackPlan(pair, [{ type: 'tcp', host: pair.sensorV4, port: 80, send: 'GET / HTTP/1.0\r\n\r\n', waitMs: 2_000 }])
    expect(after?.['connected']).toBe(true)

    // Every answered connection became a stored attack.
    const stored = await waitFor(
      () => readRows<{ n: number }>(dbPath, 'SELECT count(*) AS n FROM attacks')[0]?.n ?? 0,
      (n) => n >= 65_534,
      30_000,
      500,
    )
    expect(stored, `sensor warnings: ${warnings()}`).toBeGreaterThanOrEqual(65_534)
    console.info(`full scan (${monitor}): ${String(scan?.['elapsedMs'])} ms, connect p50 ${String(scan?.['p50Ms'])} ms, p99 ${String(scan?.['p99Ms'])} ms, sensor fds ${fds}, listeners ${listeners}`)
  }, 240_000)
})
