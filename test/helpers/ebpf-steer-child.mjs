// The sensor side of test/netns/ebpf-native.test.ts, run inside the sensor namespace (the addon attaches to the
// calling process's netns). One dual-stack TCP listener and the addon's catch-all UDP socket take every port through
// the sk_lookup program; XDP reports SYN facts from the given interfaces. Reports JSON lines on stdout; takes
// commands ("counters", "ports", "pass <tcp|udp> <port> <0|1>") as lines on stdin.
// Usage: node ebpf-steer-child.mjs '<json: { interfaces: string[], realPorts: number[], passPorts: number[] }>'
// Plain .mjs on the build (dist/), because a plain node child process cannot run the .ts sources.
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { readFileSync } from 'node:fs'
import { attachedLookupPrograms, listeningPorts, openSteering, openSynFacts, openUdpCatchAll } from '../../dist/monitor/ebpf/bpf-native.js'
import { socketFd } from '../../dist/monitor/socket-fd.js'
import { parseProcNetPorts } from '../../dist/monitor/ebpf/port-owners.js'

const config = JSON.parse(process.argv[2] ?? '{}')
const report = (event) => process.stdout.write(`${JSON.stringify(event, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`)

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '::', port, ipv6Only: false }, () => resolve(server.address().port))
  })
}

const catchAll = createServer((socket) => {
  report({ event: 'tcp', localAddress: socket.localAddress, localPort: socket.localPort, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort })
  socket.on('error', () => undefined)
  socket.end(`catch-all ${socket.localPort}\n`)
})
const catchAllPort = await listen(catchAll, 0)

// Real services: each answers with its own name so the client can tell who took the connection.
for (const port of config.realPorts ?? []) {
  await listen(createServer((socket) => socket.on('error', () => undefined).end(`real ${port}\n`)), port)
}

const udp = openUdpCatchAll({
  onDatagrams: (datagrams) => {
    for (const d of datagrams) report({ event: 'udp', ...d, payload: d.payload.toString('latin1') })
  },
})
const syn = openSynFacts({
  interfaces: config.interfaces ?? [],
  hook: config.hook ?? 'auto',
  onRecords: (records) => {
    for (const record of records) report({ event: 'syn', ...record })
  },
})
const steering = openSteering()
steering.setSocket('tcp', socketFd(catchAll))
steering.setSocket('udp', udp.fd)
for (const port of config.passPorts ?? []) steering.passPort('tcp', port, true)
// A Node dgram socket's fd works too (socketFd): it goes in the per-family udp6 key, which stays unused here.
const dgram = createSocket({ type: 'udp6', ipv6Only: false })
dgram.bind(0, '::')
await once(dgram, 'listening')
steering.setSocket('udp6', socketFd(dgram))
steering.attach()

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, ...args] = line.trim().split(' ')
  if (command === 'ports') {
    const proc = (protocol) => ['', '6'].flatMap((v) => [...parseProcNetPorts(readFileSync(`/proc/net/${protocol}${v}`, 'utf8'), protocol)])
    report({ event: 'ports', diag: listeningPorts(), proc: { tcp: proc('tcp'), udp: proc('udp') } })
  } else if (command === 'counters') report({ event: 'counters', steering: steering.counters(), syn: syn.stats(), udp: udp.stats() })
  else if (command === 'pass') steering.passPort(args[0], Number(args[1]), args[2] === '1')
  report({ event: 'done', command })
})

report({ event: 'ready', pid: process.pid, tcpPort: catchAllPort, udpPort: udp.port, dgramFd: socketFd(dgram), xdp: syn.interfaces(), programId: steering.programId(), lookupPrograms: attachedLookupPrograms() })
