import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { collectChildLines, type ChildLines } from '../../src/netns/child-lines.js'
import { createNetnsPair, type NetnsPair } from '../../src/netns/netns-pair.js'
import { describeNetns, waitFor } from '../helpers/netns-env.js'

// The pcap monitor on real captures: a child process runs PcapSource in the sensor namespace (once on the veth,
// Ethernet headers, once on "any", Linux cooked headers), the attacker namespace sends SYNs and datagrams, and what
// the monitors report is compared with what tshark, capturing in the attacker namespace, saw leave the client stack.

const CHILD = fileURLToPath(new URL('../helpers/pcap-source-child.mjs', import.meta.url))
const EXCLUDE = '2222/tcp,5353/udp'
const ATTACKER_TTL = 77 // set in the attacker namespace, so a default of 64 cannot pass for a value read off the wire
const ATTACKER_HOP_LIMIT = 55

type Line = Record<string, unknown> & { readonly event?: string }
/** One packet the client stack sends; `reported: false` when the monitors must stay silent about it. */
interface Probe {
  readonly proto: 'tcp' | 'udp'
  readonly host: string
  readonly port: number
  readonly localPort: number
  readonly reported: boolean
  readonly exchange?: boolean // an open port: data both ways, so ACKs and data segments follow the SYN
}

// Runs in a namespace: one step after another, each bounded to 3 s; prints each local port with its outcome.
const CLIENT = `
const net = require('node:net'), dgram = require('node:dgram')
const step = (p) => new Promise((resolve) => {
  const done = (r) => { clearTimeout(timer); resolve(r) }
  const timer = setTimeout(() => done('timeout'), 3000)
  if (p.proto === 'udp') {
    const s = dgram.createSocket(p.host.includes(':') ? 'udp6' : 'udp4')
    s.bind(p.localPort, () => s.send('probe', p.port, p.host, (err) => { s.close(); done(err ? err.code : 'sent') }))
    return
  }
  const s = net.connect({ host: p.host, port: p.port, localPort: p.localPort })
  s.on('error', (err) => done(err.code))
  s.on('connect', () => { if (!p.exchange) { s.destroy(); done('connected') } else s.write('hello') })
  s.on('data', () => s.end())
  s.on('close', () => done('closed'))
})
;(async () => { for (const p of JSON.parse(process.argv[1])) console.log(JSON.stringify([p.localPort, await step(p)])) })()
`
// Echoes one chunk and closes; on "::" so one server takes IPv4 and IPv6.
const SERVER = `require('node:net').createServer((s) => { s.on('error', () => {}); s.once('data', (d) => s.end(d)) })
  .listen({ port: Number(process.argv[1]), host: '::' }, () => console.log('{"event":"listening"}'))`
// Sends hand-built frames (hex arguments) out of a device through a packet socket.
const INJECT = 'import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind((sys.argv[1],0))\nfor h in sys.argv[2:]: s.send(bytes.fromhex(h))'

function key(proto: unknown, src: unknown, sport: unknown, dst: unknown, dport: unknown): string {
  return `${String(proto)} ${String(src)}:${String(sport)} -> ${String(dst)}:${String(dport)}`
}

function u16(value: number): number[] {
  return [(value >>> 8) & 0xff, value & 0xff]
}

function addressBytes(address: string): number[] {
  if (!address.includes(':')) return address.split('.').map(Number)
  const [head = '', tail = ''] = address.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : tail.split(':')
  return [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t].flatMap((g) => u16(parseInt(g, 16)))
}

/** A TCP header with options MSS 1340, NOP, window scale 5 and window 29200 (checksum left 0: nothing checks it). */
function tcpHeader(sport: number, dport: number, flags: number): number[] {
  return [...u16(sport), ...u16(dport), 0, 0, 0x10, 0x01, 0, 0, 0, 0, 0x70, flags, ...u16(29_200), 0, 0, 0, 0, 2, 4, ...u16(1340), 1, 3, 3, 5]
}

describeNetns('pcap monitor (PcapSource) on a live capture in a namespace pair', () => {
  let pair: NetnsPair
  const started: ChildLines<Line>[] = []
  let attackerDev = ''
  let monitors: { readonly ether: ChildLines<Line>; readonly cooked: ChildLines<Line> }
  let tshark: ChildLines<Line>
  let reportedSoFar = 0

  function start(ns: string, file: string, args: readonly string[]): ChildLines<Line> & { readonly exited: Promise<number | string> } {
    const child = pair.spawn(ns, file, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
    const parse = (text: string): Line => {
      try {
        return JSON.parse(text) as Line
      } catch {
        return { text }
      }
    }
    const lines = collectChildLines<Line>(child, { what: `${file} ${args[0] ?? ''}`, maxKept: 1000, parse, stopTimeoutMs: 5000 })
    started.push(lines)
    return Object.assign(lines, { exited })
  }

  async function link(ns: string): Promise<{ dev: string; mac: number[] }> {
    const out = await pair.exec(ns, 'ip', ['-o', 'link', 'show', 'type', 'veth'])
    const m = /^\d+: ([^@:]+)@.* link\/ether ([0-9a-f:]{17}) /.exec(out)
    if (m?.[1] === undefined || m[2] === undefined) throw new Error(`no veth in ${ns}: ${out}`)
    return { dev: m[1], mac: m[2].split(':').map((b) => parseInt(b, 16)) }
  }

  /** Sends the probes from `ns` and a UDP sentinel after them, and waits until both monitors have reported it. */
  async function send(ns: string, probes: readonly Probe[], sentinelPort: number): Promise<string[]> {
    const results = await pair.exec(ns, process.execPath, ['-e', CLIENT, JSON.stringify(probes)])
    // Sent last: a monitor that reports it has seen everything before it (one interface, frames in order).
    const sentinel = { proto: 'udp', host: pair.sensorV4, port: 5999, localPort: sentinelPort }
    await pair.exec(pair.attackerNs, process.execPath, ['-e', CLIENT, JSON.stringify([sentinel])])
    for (const m of [monitors.ether, monitors.cooked]) await m.waitFor((l) => l.event === 'attempt' && l['srcPort'] === sentinelPort, 10_000)
    return results.trim().split('\n')
  }

  function reported(monitor: ChildLines<Line>): Line[] {
    return monitor.lines.filter((l) => l.event === 'attempt')
  }

  beforeAll(async () => {
    pair = await createNetnsPair({ label: 'pcap' })
    const sensorDev = (await link(pair.sensorNs)).dev
    attackerDev = (await link(pair.attackerNs)).dev
    await pair.exec(pair.attackerNs, 'sysctl', ['-qw', `net.ipv4.ip_default_ttl=${ATTACKER_TTL}`, `net.ipv6.conf.${attackerDev}.hop_limit=${ATTACKER_HOP_LIMIT}`])
    const servers = [start(pair.sensorNs, process.execPath, ['-e', SERVER, '8080']), start(pair.attackerNs, process.execPath, ['-e', SERVER, '7001'])]
    const fields = ['tcp.srcport', 'udp.srcport', 'ip.ttl', 'ipv6.hlim', 'ip.id', 'ip.flags.df', 'tcp.flags', 'tcp.window_size_value', 'tcp.option_kind', 'tcp.options.mss_val', 'tcp.options.wscale.shift']
    tshark = start(pair.attackerNs, 'tshark', ['-i', attackerDev, '-n', '-l', '-f', 'tcp or udp', '-T', 'fields', '-E', 'separator=/t', ...fields.flatMap((f) => ['-e', f])])
    monitors = { ether: start(pair.sensorNs, process.execPath, [CHILD, sensorDev, EXCLUDE]), cooked: start(pair.sensorNs, process.execPath, [CHILD, 'any', EXCLUDE]) }
    for (const c of [monitors.ether, monitors.cooked, ...servers]) await c.waitFor((l) => l.event === 'ready' || l.event === 'listening', 15_000)
    await waitFor(() => tshark.stderr(), (s) => s.includes('Capturing on'), 20_000)
  })

  afterAll(async () => {
    for (const child of started) await child.stop('SIGKILL', 2000).catch(() => undefined)
    await pair?.destroy()
  })

  it('reports the SYNs and datagrams a client stack sends, with the header facts tshark sees, and nothing else', async () => {
    expect(tshark.stderr()).toContain('Capturing on')
    const [a4, a6] = [pair.sensorV4, pair.sensorV6]
    const probes: Probe[] = [
      { proto: 'tcp', host: a4, port: 3001, localPort: 40001, reported: true },
      { proto: 'tcp', host: a4, port: 3002, localPort: 40002, reported: true },
      { proto: 'tcp', host: a6, port: 3003, localPort: 40003, reported: true },
      { proto: 'tcp', host: a6, port: 3004, localPort: 40004, reported: true },
      { proto: 'tcp', host: a4, port: 2222, localPort: 40005, reported: false },
      { proto: 'tcp', host: a6, port: 2222, localPort: 40006, reported: false },
      { proto: 'udp', host: a4, port: 5300, localPort: 40007, reported: true },
      { proto: 'udp', host: a6, port: 5301, localPort: 40008, reported: true },
      { proto: 'udp', host: a4, port: 5353, localPort: 40009, reported: false },
      { proto: 'udp', host: a6, port: 5353, localPort: 40010, reported: false },
      { proto: 'udp', host: a4, port: 2222, localPort: 40011, reported: true }, // only 2222/tcp is excluded
      { proto: 'tcp', host: a4, port: 8080, localPort: 40012, reported: true, exchange: true },
      { proto: 'tcp', host: a6, port: 8080, localPort: 40013, reported: true, exchange: true },
    ]
    // The sensor as a client first: the SYN-ACK, ACKs and data that come back to it are inbound, and not attempts.
    const outbound = [pair.attackerV4, pair.attackerV6].map((host, i) => ({ proto: 'tcp', host, port: 7001, localPort: 41001 + i, exchange: true }))
    const outResults = await pair.exec(pair.sensorNs, process.execPath, ['-e', CLIENT, JSON.stringify(outbound)])
    expect(outResults.trim().split('\n')).toEqual(['[41001,"closed"]', '[41002,"closed"]'])
    const results = await send(pair.attackerNs, probes, 40099)
    expect(results.map((l) => JSON.parse(l) as unknown)).toEqual(probes.map((p) => [p.localPort, p.proto === 'udp' ? 'sent' : p.exchange === true ? 'closed' : 'ECONNREFUSED']))

    const attackerOf = (host: string): string => (host === a4 ? pair.attackerV4 : pair.attackerV6)
    const expected = probes.filter((p) => p.reported).map((p) => key(p.proto, attackerOf(p.host), p.localPort, p.host, p.port))
    expected.push(key('udp', pair.attackerV4, 40099, a4, 5999))
    for (const monitor of [monitors.ether, monitors.cooked]) {
      expect(reported(monitor).map((l) => key(l['protocol'], l['srcAddress'], l['srcPort'], l['dstAddress'], l['dstPort'])).sort()).toEqual(expected.sort())
    }
    reportedSoFar = expected.length

    // tshark's dissection of the first packet from each source port (the SYN, or the datagram) as it left the client.
    const columns = (line: Line): string[] => String(line['text'] ?? '').split('\t')
    const portOf = (cols: readonly string[]): number => Number(cols[0] || cols[1])
    await tshark.waitFor((l) => portOf(columns(l)) === 40099, 10_000)
    await tshark.stop('SIGINT', 5000)
    const sent = new Map<number, string[]>()
    for (const cols of tshark.lines.map(columns)) if (!sent.has(portOf(cols))) sent.set(portOf(cols), cols)
    for (const line of [...reported(monitors.ether), ...reported(monitors.cooked)]) {
      const facts = line['facts'] as Record<string, unknown>
      const cols = sent.get(line['srcPort'] as number)
      expect(cols, `tshark saw ${String(line['srcPort'])}`).toBeDefined()
      const [, , ttl, hlim, ipId, df, flags, window, kinds, mss, wscale] = cols ?? []
      const v4 = line['family'] === 4
      expect(facts['ttl']).toBe(v4 ? ATTACKER_TTL : ATTACKER_HOP_LIMIT)
      expect(facts['ttl']).toBe(Number(v4 ? ttl : hlim))
      expect(facts['ipId']).toBe(v4 ? Number(ipId) : null)
      expect(facts['dontFragment']).toBe(v4 && (df === '1' || df === 'True'))
      if (line['protocol'] === 'udp') {
        expect(facts).toMatchObject({ tcpWindow: null, tcpFlags: null, tcpOptions: [], mss: null, windowScale: null })
        continue
      }
      expect(flags).toBe('0x0002')
      expect(facts).toMatchObject({ tcpFlags: 0x02, tcpWindow: Number(window), mss: Number(mss), windowScale: Number(wscale) })
      expect(facts['tcpOptions']).toEqual(kinds?.split(',').map(Number))
      expect(facts['tcpOptions']).toEqual([2, 4, 8, 1, 3]) // Linux: MSS, SACK permitted, timestamps, NOP, window scale
      expect(facts['mss']).toBe(v4 ? 1460 : 1440) // veth MTU 1500 minus 40 (IPv4 + TCP) or 60 (IPv6 + TCP)
    }
  })

  it('reads a VLAN tag on Ethernet and TCP behind an IPv6 extension header, and checks flags and ports there itself', async () => {
    const sensor = await link(pair.sensorNs)
    const attacker = await link(pair.attackerNs)
    const [s4, a4, s6, a6] = [pair.sensorV4, pair.attackerV4, pair.sensorV6, pair.attackerV6].map(addressBytes)
    const ipv4 = (sport: number, dport: number, flags: number): number[] => {
      const tcp = tcpHeader(sport, dport, flags)
      return [0x45, 0, ...u16(20 + tcp.length), 0xbe, 0xef, 0x40, 0, 99, 6, 0, 0, ...(a4 ?? []), ...(s4 ?? []), ...tcp]
    }
    // Destination Options (next header 60) before TCP: the capture filter cannot look past it.
    const ipv6 = (sport: number, dport: number, flags: number): number[] => {
      const payload = [6, 0, 1, 4, 0, 0, 0, 0, ...tcpHeader(sport, dport, flags)]
      return [0x60, 0, 0, 0, ...u16(payload.length), 60, 44, ...(a6 ?? []), ...(s6 ?? []), ...payload]
    }
    const frame = (ethertype: number[], packet: number[]): string => Buffer.from([...sensor.mac, ...attacker.mac, ...ethertype, ...packet]).toString('hex')
    const frames = [
      frame([0x81, 0x00, 0x00, 0x0a, 0x08, 0x00], ipv4(40020, 3020, 0x02)), // VLAN 10: Ethernet reports it, "any" does not
      frame([0x86, 0xdd], ipv6(40021, 3021, 0x02)),
      frame([0x86, 0xdd], ipv6(40022, 3022, 0x12)), // SYN-ACK
      frame([0x86, 0xdd], ipv6(40023, 2222, 0x02)), // excluded port
    ]
    await pair.exec(pair.attackerNs, 'python3', ['-c', INJECT, attackerDev, ...frames])
    await send(pair.attackerNs, [], 40098)

    const byPort = (monitor: ChildLines<Line>, port: number): Line[] => reported(monitor).filter((l) => l['srcPort'] === port)
    const facts = { ipId: null, dontFragment: false, tcpWindow: 29_200, tcpFlags: 0x02, tcpOptions: [2, 1, 3], mss: 1340, windowScale: 5 }
    expect(byPort(monitors.ether, 40020)).toEqual([
      { event: 'attempt', family: 4, protocol: 'tcp', srcAddress: pair.attackerV4, srcPort: 40020, dstAddress: pair.sensorV4, dstPort: 3020, facts: { ...facts, ttl: 99, ipId: 0xbeef, dontFragment: true } },
    ])
    expect(byPort(monitors.cooked, 40020)).toEqual([])
    for (const monitor of [monitors.ether, monitors.cooked]) {
      expect(byPort(monitor, 40021)).toEqual([
        { event: 'attempt', family: 6, protocol: 'tcp', srcAddress: pair.attackerV6, srcPort: 40021, dstAddress: pair.sensorV6, dstPort: 3021, facts: { ...facts, ttl: 44 } },
      ])
      expect([...byPort(monitor, 40022), ...byPort(monitor, 40023)]).toEqual([])
    }
    expect(reported(monitors.ether)).toHaveLength(reportedSoFar + 3)
    expect(reported(monitors.cooked)).toHaveLength(reportedSoFar + 2)
  })

  it('stops cleanly: the child ends on its own soon after stop(), with the counts of what it reported', async () => {
    for (const [monitor, attempts] of [[monitors.ether, reportedSoFar + 3], [monitors.cooked, reportedSoFar + 2]] as const) {
      const stopAt = Date.now()
      expect(await monitor.stop('SIGTERM', 5000)).toBe(0)
      expect(Date.now() - stopAt).toBeLessThan(3000)
      const stats = monitor.lines.find((l) => l.event === 'stopped')?.['stats'] as Record<string, number> | undefined
      expect(stats).toMatchObject({ attempts, unparsable: 0, verdictErrors: 0, held: 0 })
      // At least the attempts, the two frames checked and refused in JavaScript, and the tagged copy on "any".
      expect(stats?.['packets']).toBeGreaterThanOrEqual(attempts + 2)
    }
  })

  it('fails to start with HT_ERR_MONITOR_OPEN naming the interface and the fix', async () => {
    const missing = start(pair.sensorNs, process.execPath, [CHILD, 'htnosuch0'])
    expect(await missing.waitFor((l) => l.event === 'error', 10_000)).toMatchObject({ code: 'HT_ERR_MONITOR_OPEN', message: expect.stringMatching(/htnosuch0.*ip link/) })
    expect(await missing.exited).toBe(1)
    // Without privilege: the same child as user nobody.
    const unprivileged = start(pair.sensorNs, 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CHILD, 'any'])
    expect(await unprivileged.waitFor((l) => l.event === 'error', 10_000)).toMatchObject({ code: 'HT_ERR_MONITOR_OPEN', message: expect.stringMatching(/any.*CAP_NET_RAW/) })
    expect(await unprivileged.exited).toBe(1)
  })
})
