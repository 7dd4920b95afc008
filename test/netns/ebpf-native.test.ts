import { execFile, type ChildProcess } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { release } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { afterAll, beforeAll, expect, it } from 'vitest'

import { createNetnsPair, type NetnsPair } from '../../src/netns/netns-pair.js'
import { describeNetns, waitFor } from '../helpers/netns-env.js'

const execFileAsync = promisify(execFile)
const CHILD = fileURLToPath(new URL('../helpers/ebpf-steer-child.mjs', import.meta.url))
const CLIENT = fileURLToPath(new URL('../helpers/ebpf-client.py', import.meta.url))
const BUILT = ['../../native/build/Release/honeytrap_bpf.node', '../../native/build/bpf/steer.bpf.o', '../../dist/monitor/ebpf/bpf-native.js']
const PASS_PORT = 8081 // a real service the steering leaves alone (pass_ports)
const SHADOWED_PORT = 8082 // a real service NOT in pass_ports: sk_lookup runs first, so the catch-all takes it
const PROGRAM_NAMES = ['honeytrap_steer', 'honeytrap_synfacts', 'honeytrap_synfacts_tc']
// tcx (tc ingress through a link) came with Linux 6.6; before it the SYN-facts program goes to XDP.
const [major = 0, minor = 0] = release().split('.').map((n) => Number.parseInt(n, 10))
const HAS_TCX = major > 6 || (major === 6 && minor >= 6)

interface ChildEvent {
  readonly event: string
  readonly [key: string]: unknown
}

/** `count` distinct ports in 1024-65535, none of `avoid`. */
function randomPorts(count: number, avoid: readonly number[]): number[] {
  const ports = new Set<number>()
  while (ports.size < count) {
    const port = randomInt(1024, 65_536)
    if (!avoid.includes(port)) ports.add(port)
  }
  return [...ports]
}

/** Ids of the loaded BPF programs whose name is one of ours (bpftool lists every namespace's programs). */
async function ourProgramIds(): Promise<number[]> {
  const { stdout } = await execFileAsync('bpftool', ['-j', 'prog', 'show'])
  const programs = JSON.parse(stdout) as { id: number; name?: string }[]
  return programs.filter((p) => p.name !== undefined && PROGRAM_NAMES.includes(p.name)).map((p) => p.id)
}

async function linkedProgramIds(): Promise<number[]> {
  const { stdout } = await execFileAsync('bpftool', ['-j', 'link', 'show'])
  return (JSON.parse(stdout) as { prog_id: number }[]).map((l) => l.prog_id)
}

describeNetns.each(['auto', 'xdp'] as const)('eBPF native layer: sk_lookup steering and SYN facts (hook %s) in a namespace pair', (hook) => {
  let pair: NetnsPair
  let child: ChildProcess
  let sensorDev: string
  let ready: ChildEvent
  const events: ChildEvent[] = []

  const client = async (args: readonly string[]): Promise<Record<string, unknown>> =>
    JSON.parse(await pair.exec(pair.attackerNs, 'python3', [CLIENT, ...args])) as Record<string, unknown>

  beforeAll(async () => {
    const missing = BUILT.filter((p) => !existsSync(fileURLToPath(new URL(p, import.meta.url))))
    if (missing.length > 0) throw new Error(`not built: ${missing.join(', ')}; run npm run build:native and npm run build first`)
    pair = await createNetnsPair({ label: 'ebpf' })
    const links = await pair.exec(pair.sensorNs, 'ip', ['-o', 'link', 'show', 'type', 'veth'])
    sensorDev = /^\d+: ([^@:]+)/.exec(links)?.[1] ?? ''
    expect(sensorDev).toMatch(/^hts/)
    // lo has no driver XDP, so it shows the fallback to generic mode.
    const config = { interfaces: [sensorDev, 'lo'], hook, realPorts: [PASS_PORT, SHADOWED_PORT], passPorts: [PASS_PORT] }
    child = pair.spawn(pair.sensorNs, process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] })
    createInterface({ input: child.stdout! }).on('line', (line) => events.push(JSON.parse(line) as ChildEvent))
    const found = await waitFor(() => events.find((e) => e.event === 'ready'), (e) => e !== undefined, 15_000)
    if (found === undefined) throw new Error('the steering child did not get ready')
    ready = found
  })

  afterAll(async () => {
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      process.kill(child.pid, 'SIGKILL')
      await exited
    }
    await pair?.destroy()
  })

  it('took a Node dgram socket fd for the socket map, and reports the hook the SYN-facts program got on each interface', () => {
    expect(ready['dgramFd']).toEqual(expect.any(Number))
    const tcx = hook === 'auto' && HAS_TCX
    expect(ready['xdp']).toEqual([
      { name: sensorDev, ifindex: expect.any(Number), mode: tcx ? 'tcx' : 'native' }, // veth has driver XDP
      { name: 'lo', ifindex: 1, mode: tcx ? 'tcx' : 'generic' },
    ])
  })

  it("lists its attached program among the namespace's sk_lookup programs, by the id it was loaded with", () => {
    // What a second sensor reads before it attaches (and refuses to): exactly one steering program, this one.
    expect(ready['lookupPrograms']).toEqual([{ id: ready['programId'], name: 'honeytrap_steer' }])
  })

  it.each([4, 6] as const)('steers TCP to 50 random ports (IPv%i) into the one listener, which sees the port dialled', async (family) => {
    const host = family === 4 ? pair.sensorV4 : pair.sensorV6
    // Only this test's connections: the other family's run drew 50 random ports too, and they may share some.
    const from = events.length
    const ports = randomPorts(50, [PASS_PORT, SHADOWED_PORT])
    const out = await client(['tcp', host, ...ports.map(String)])
    expect(out['results']).toEqual(ports.map((port) => ({ port, reply: `catch-all ${port}` })))
    const seen = await waitFor(
      () => events.slice(from).filter((e) => e.event === 'tcp' && ports.includes(e['localPort'] as number)),
      (list) => list.length >= ports.length,
      5000,
    )
    const expectedLocal = family === 4 ? `::ffff:${pair.sensorV4}` : pair.sensorV6
    expect(new Set(seen.map((e) => e['localPort']))).toEqual(new Set(ports))
    expect(new Set(seen.map((e) => e['localAddress']))).toEqual(new Set([expectedLocal]))
  })

  it('leaves a pass port to the real server bound on it, and takes a real port that is not passed', async () => {
    const out = await client(['tcp', pair.sensorV4, String(PASS_PORT), String(SHADOWED_PORT)])
    expect(out['results']).toEqual([
      { port: PASS_PORT, reply: `real ${PASS_PORT}` },
      { port: SHADOWED_PORT, reply: `catch-all ${SHADOWED_PORT}` },
    ])
  })

  it.each([4, 6] as const)('steers UDP to 20 random ports (IPv%i) into the catch-all, each datagram with its original destination', async (family) => {
    const host = family === 4 ? pair.sensorV4 : pair.sensorV6
    const ports = randomPorts(20, [ready['udpPort'] as number])
    const out = await client(['udp', host, ...ports.map(String)])
    const seen = await waitFor(
      () => events.filter((e) => e.event === 'udp' && e['srcPort'] === out['sport'] && e['family'] === family),
      (list) => list.length >= ports.length,
      5000,
    )
    expect(seen.map((e) => e['dstPort']).sort()).toEqual([...ports].sort())
    for (const e of seen) {
      expect(e).toMatchObject({ dstAddress: host, srcAddress: family === 4 ? pair.attackerV4 : pair.attackerV6, payload: `probe ${e['dstPort'] as number}`, truncated: false })
      expect(e['ttl']).toBe(64)
    }
  })

  it('reports a hand-made IPv4 SYN with exactly its header values', async () => {
    const sport = randomInt(20_000, 30_000)
    const dport = randomInt(1024, 65_536)
    await client(['syn4', pair.attackerV4, pair.sensorV4, String(sport), String(dport)])
    const record = await waitFor(() => events.find((e) => e.event === 'syn' && e['srcPort'] === sport && e['dstPort'] === dport), (e) => e !== undefined, 5000)
    expect(record).toMatchObject({
      family: 4, srcAddress: pair.attackerV4, dstAddress: pair.sensorV4, dstPort: dport, optionsTruncated: false,
      facts: { ttl: 77, ipId: 0x1234, dontFragment: true, tcpWindow: 29200, tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3], mss: 1400, windowScale: 7 },
    })
  })

  it('reports a hand-made IPv6 SYN with exactly its header values', async () => {
    const sport = randomInt(30_000, 40_000)
    const dport = randomInt(1024, 65_536)
    await client(['syn6', pair.attackerV6, pair.sensorV6, String(sport), String(dport)])
    const record = await waitFor(() => events.find((e) => e.event === 'syn' && e['srcPort'] === sport && e['dstPort'] === dport), (e) => e !== undefined, 5000)
    expect(record).toMatchObject({
      family: 6, srcAddress: pair.attackerV6, dstAddress: pair.sensorV6, dstPort: dport, optionsTruncated: false,
      facts: { ttl: 55, ipId: null, dontFragment: false, tcpWindow: 29200, tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3], mss: 1400, windowScale: 7 },
    })
  })

  it('hands a steady stream of SYN facts to JS in batches, at most about one per millisecond, losing none', async () => {
    const synStats = async (): Promise<{ records: number; batches: number }> => {
      const seen = events.filter((e) => e.event === 'counters').length
      child.stdin!.write('counters\n')
      const counters = await waitFor(() => events.filter((e) => e.event === 'counters'), (list) => list.length > seen, 5000)
      return (counters.at(-1) as unknown as { syn: { records: number; batches: number } }).syn
    }
    const before = await synStats()
    // 100 SYNs 200 µs apart: without the pump's rest after each batch, its thread wakes and calls JS once per SYN.
    const count = 100
    const dport = randomPorts(1, [PASS_PORT, SHADOWED_PORT, ...events.filter((e) => e.event === 'syn').map((e) => e['dstPort'] as number)])[0]!
    const sent = await client(['synstream4', pair.attackerV4, pair.sensorV4, String(randomInt(40_000, 50_000)), String(dport), String(count), '200'])
    const isOurs = (e: ChildEvent): boolean => e.event === 'syn' && e['dstPort'] === dport
    await waitFor(() => events.filter(isOurs).length, (n) => n >= count, 5000)
    const after = await synStats()
    const batches = after.batches - before.batches
    expect(events.filter(isOurs)).toHaveLength(count)
    expect(after.records - before.records).toBe(count)
    // One batch per started millisecond of the stream, plus the stragglers of its last one, however slow the sender.
    expect(batches).toBeLessThanOrEqual(Math.ceil(sent['elapsedMs'] as number) + 3)
    expect(batches).toBeLessThan(count / 2)
  })

  it('lists the ports real sockets hold from sock_diag, the same as /proc/net says, its own sockets included', async () => {
    child.stdin!.write('ports\n')
    const ports = (await waitFor(() => events.find((e) => e.event === 'ports'), (e) => e !== undefined, 5000)) as unknown as {
      diag: { tcp: number[]; udp: number[] }
      proc: { tcp: number[]; udp: number[] }
    }
    const sorted = (list: number[]): number[] => [...new Set(list)].sort((a, b) => a - b)
    expect(sorted(ports.diag.tcp)).toEqual(sorted(ports.proc.tcp))
    expect(sorted(ports.diag.udp)).toEqual(sorted(ports.proc.udp))
    expect(ports.diag.tcp).toEqual(expect.arrayContaining([PASS_PORT, SHADOWED_PORT, ready['tcpPort']]))
    expect(ports.diag.udp).toEqual(expect.arrayContaining([ready['udpPort']]))
  })

  it('counts what it did: steered connections, passed ones, no assign errors, no lost records', async () => {
    child.stdin!.write('counters\n')
    const counters = await waitFor(() => events.find((e) => e.event === 'counters'), (e) => e !== undefined, 5000)
    expect(counters).toMatchObject({
      steering: { steered: expect.any(Number), passed: expect.any(Number), noSocket: 0, assignErrors: 0, attached: true },
      syn: { lost: 0, dropped: 0, unparsable: 0, callbackErrors: 0 },
      udp: { dropped: 0, unparsable: 0, callbackErrors: 0 },
    })
    const steering = (counters as unknown as { steering: { steered: number; passed: number } }).steering
    expect(steering.steered).toBeGreaterThanOrEqual(100 + 1 + 40 + 2) // 2x50 TCP, the shadowed port, 2x20 UDP, 2 SYNs
    expect(steering.passed).toBeGreaterThanOrEqual(1)
  })

  it('after SIGKILL of the child, no program or link of ours is left and a random port refuses again', async () => {
    const ids = await ourProgramIds()
    expect(ids.length).toBeGreaterThanOrEqual(2)
    const exited = once(child, 'exit')
    process.kill(child.pid!, 'SIGKILL')
    await exited
    const deadline = Date.now() + 10_000
    let left = ids
    while (left.length > 0 && Date.now() < deadline) {
      const [programs, linked] = await Promise.all([ourProgramIds(), linkedProgramIds()])
      left = ids.filter((id) => programs.includes(id) || linked.includes(id))
      if (left.length > 0) await new Promise((r) => setTimeout(r, 100))
    }
    expect(left).toEqual([])
    const port = randomPorts(1, [PASS_PORT, SHADOWED_PORT])[0]!
    const out = await client(['tcp', pair.sensorV4, String(port)])
    expect(out['results']).toEqual([{ port, error: 'ConnectionRefusedError' }])
  })
})
