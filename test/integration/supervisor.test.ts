import { createSocket } from 'node:dgram'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ConfigInput } from '../../src/config/schema.js'
import {
  attemptFor,
  connectOutcome,
  connectTcp,
  endOutcome,
  freeTcpPort,
  freeUdpPort,
  LOOPBACK,
  openDescriptors,
  sleep,
  startSupervisor,
  udpClient,
  waitFor,
} from '../helpers/supervisor-harness.js'
import { describeNetns } from '../helpers/netns-env.js'
import { markServedSocket } from '../../src/monitor/served-socket.js'
import { attemptFromSavedSyn } from '../../src/monitor/nfqueue-source.js'
import type { ConnectionAttempt } from '../../src/monitor/packet-source.js'
function ruleFor(port: number, rule: { mode?: 'normal' | 'ignore'; reply?: 'auto' | 'banner' | 'on-data' | 'silence' }): ConfigInput['ports'] {
  return { rules: [{ ports: `${port}/tcp`, mode: rule.mode ?? 'normal', reply: rule.reply ?? 'auto' }] }
}

describe('TCP reply timing', () => {
  it('banner: the template arrives on connect, before the client sends anything', async () => {
    const port = await freeTcpPort()
    const banner = '220 ftp.example.com FTP server ready\r\n'
    const h = await startSupervisor({ config: { ports: ruleFor(port, { reply: 'banner' }) }, templates: { [`${port}_tcp`]: banner } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    expect((await client.bytes(banner.length)).toString()).toBe(banner)
    client.socket.end('USER anonymous\r\n')
    await client.closed
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({
      protocol: 'tcp',
      family: 4,
      mode: 'normal',
      source: { address: LOOPBACK, port: client.localPort },
      target: { address: LOOPBACK, port },
      closeReason: 'peer-closed',
      truncated: false,
      bytesReceived: 16,
      bytesSent: banner.length,
    })
    expect(attack!.payload.toString()).toBe('USER anonymous\r\n')
    expect(attack!.endedAtMs).toBeGreaterThanOrEqual(attack!.startedAtMs)
  })

  it('auto timing sends a banner on a port listed in bannerPorts', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { responder: { bannerPorts: [port] } }, templates: { [`${port}_tcp`]: 'SSH-2.0-OpenSSH_8.9\r\n' } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    expect((await client.bytes(21)).toString()).toBe('SSH-2.0-OpenSSH_8.9\r\n')
  })

  it('on-data: nothing before the first bytes, the template right after them, and only once', async () => {
    const port = await freeTcpPort()
    const reply = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'
    const h = await startSupervisor({ config: { ports: ruleFor(port, { reply: 'on-data' }) }, templates: { [`${port}_tcp`]: reply } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    await sleep(200)
    expect(client.received().length).toBe(0)

    const sentAt = performance.now()
    client.socket.write('GET / HTTP/1.1\r\n\r\n')
    expect((await client.bytes(reply.length)).toString()).toBe(reply)
    expect(performance.now() - sentAt).toBeLessThan(500)

    client.socket.write('GET /again HTTP/1.1\r\n\r\n')
    await sleep(150)
    expect(client.received().toString()).toBe(reply)
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack!.payload.toString()).toBe('GET / HTTP/1.1\r\n\r\nGET /again HTTP/1.1\r\n\r\n')
    expect(attack!.bytesSent).toBe(reply.length)
    expect(attack!.closeReason).toBe('peer-closed')
  })

  it('auto timing waits for data on a port not in bannerPorts', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { responder: { bannerPorts: [21] } }, templates: { [`${port}_tcp`]: 'OK' } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    await sleep(150)
    expect(client.received().length).toBe(0)
    client.socket.write('x')
    expect((await client.bytes(2)).toString()).toBe('OK')
  })

  it('silence: a reply after each interval of client silence, then close with replies-done', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({
      config: { ports: ruleFor(port, { reply: 'silence' }), responder: { silence: { intervalMs: 50, maxReplies: 3 } } },
      templates: { [`${port}_tcp`]: 'hello?' },
    })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const end = await client.closed
    expect(end.gotEnd).toBe(true)
    expect(client.received().toString()).toBe('hello?hello?hello?')
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('replies-done')
    expect(attack!.bytesSent).toBe(18)
    expect(attack!.payload.length).toBe(0)
  })

  it('silence: client data restarts the interval, so a chatty client gets no reply', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({
      config: { ports: ruleFor(port, { reply: 'silence' }), responder: { silence: { intervalMs: 250, maxReplies: 2 } } },
      templates: { [`${port}_tcp`]: 'R' },
    })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    for (let i = 0; i < 25; i++) {
      client.socket.write('.')
      await sleep(20)
    }
    expect(client.received().length).toBe(0)
    await client.closed
    expect(client.received().toString()).toBe('RR')
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('replies-done')
    expect(attack!.payload.toString()).toBe('.'.repeat(25))
  })

  it('no template: nothing is sent and the connection stays open until the idle timeout', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { responder: { idleTimeoutMs: 200 } } })
    await h.attempt('tcp', port)
    const started = performance.now()
    const client = await connectTcp(port)
    client.socket.write('probe')
    await sleep(100)
    expect(client.socket.destroyed).toBe(false)
    expect(h.attacks).toHaveLength(0)
    const end = await client.closed
    expect(performance.now() - started).toBeGreaterThanOrEqual(190)
    expect(end.gotEnd).toBe(true)
    expect(client.received().length).toBe(0)
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('idle-timeout')
    expect(attack!.bytesSent).toBe(0)
    expect(attack!.payload.toString()).toBe('probe')
  })
})

describe('TCP session ends', () => {
  it('peer FIN: peer-closed with the exact payload, binary bytes included', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const parts = [all, Buffer.from('\r\n\u0000middle'), Buffer.alloc(3_000, 0xab), all.subarray(100, 110)]
    for (const part of parts) {
      client.socket.write(part)
      await sleep(5)
    }
    client.socket.end()
    await client.closed
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('peer-closed')
    expect(attack!.payload.equals(Buffer.concat(parts))).toBe(true)
    expect(attack!.bytesReceived).toBe(Buffer.concat(parts).length)
    expect(attack!.truncated).toBe(false)
  })

  it('peer RST: peer-reset, keeping the bytes read before it', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { ports: ruleFor(port, { reply: 'on-data' }) }, templates: { [`${port}_tcp`]: 'ACK' } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('before reset')
    await client.bytes(3) // the server has read the bytes once it answered
    client.socket.resetAndDestroy()
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('peer-reset')
    expect(attack!.payload.toString()).toBe('before reset')
  })

  it('read limit: exactly maxAttackBytes kept, truncated, size-limit, and the connection is reset', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { responder: { maxAttackBytes: 1_000 } } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const sent = Buffer.from(Array.from({ length: 5_000 }, (_, i) => (i * 7) & 0xff))
    client.socket.write(sent)
    const end = await client.closed
    expect(end.errorCode).toBe('ECONNRESET')
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('size-limit')
    expect(attack!.truncated).toBe(true)
    expect(attack!.payload.length).toBe(1_000)
    expect(attack!.payload.equals(sent.subarray(0, 1_000))).toBe(true)
    expect(attack!.bytesReceived).toBeGreaterThan(1_000)
    expect(attack!.bytesReceived).toBeLessThanOrEqual(5_000)
  })

  it('exactly maxAttackBytes is not over the limit: the session goes on', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { responder: { maxAttackBytes: 1_000 } } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write(Buffer.alloc(1_000, 1))
    await sleep(100)
    expect(client.socket.destroyed).toBe(false)
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('peer-closed')
    expect(attack!.truncated).toBe(false)
    expect(attack!.payload.length).toBe(1_000)
  })

  it('max duration ends a session that is never idle', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { responder: { idleTimeoutMs: 10_000, maxDurationMs: 300 } } })
    await h.attempt('tcp', port)
    const started = performance.now()
    const client = await connectTcp(port)
    const ticker = setInterval(() => client.socket.write('tick'), 40)
    onTestFinished(() => clearInterval(ticker))
    const end = await client.closed
    clearInterval(ticker)
    expect(performance.now() - started).toBeGreaterThanOrEqual(290)
    expect(end.gotEnd).toBe(true)
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('max-duration')
    expect(attack!.endedAtMs - attack!.startedAtMs).toBeGreaterThanOrEqual(290)
  })
})

describe('listeners', () => {
  it('ignore mode binds nothing: the connect is refused', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { ports: ruleFor(port, { mode: 'ignore' }) } })
    await h.attempt('tcp', port)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
    expect(h.supervisor.stats()).toMatchObject({ listeners: 0, bound: 0, ignored: 1 })
  })

  it('defaultMode ignore binds nothing for an uncovered port', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { ports: { defaultMode: 'ignore' } } })
    await h.attempt('tcp', port)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
    expect(h.supervisor.stats().bound).toBe(0)
  })

  it('the listener is bound before onAttempt resolves', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    await h.attempt('tcp', port)
    expect(await connectOutcome(port)).toBe('connected')
    expect(h.supervisor.stats()).toMatchObject({ listeners: 1, bound: 1, binding: 0 })
  })

  it('concurrent attempts for one port share one bind', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    const pending = Array.from({ length: 20 }, (_, i) => h.supervisor.onAttempt(attemptFor('tcp', port, { port: 40_000 + i })))
    expect(h.supervisor.stats().binding).toBe(1)
    await Promise.all(pending)
    expect(h.supervisor.stats()).toMatchObject({ listeners: 1, bound: 1, binding: 0, bindFailures: 0, ownedByOthers: 0 })
    // Attempts once it is bound find the listener and bind nothing more.
    await h.attempt('tcp', port)
    expect(h.supervisor.stats().bound).toBe(1)
    expect(await connectOutcome(port)).toBe('connected')
  })

  it('a port owned by another service is left to it', async () => {
    const port = await freeTcpPort()
    const accepted: Socket[] = []
    const owner: Server = createServer((socket) => {
      accepted.push(socket)
      socket.end('real service\n')
    })
    await new Promise<void>((resolve) => owner.listen({ host: '0.0.0.0', port }, resolve))
    onTestFinished(() => new Promise<void>((resolve) => owner.close(() => resolve())))

    const h = await startSupervisor()
    await h.attempt('tcp', port)
    expect(h.supervisor.stats()).toMatchObject({ ownedByOthers: 1, bound: 0, listeners: 0 })
    const client = await connectTcp(port)
    await client.closed
    expect(client.received().toString()).toBe('real service\n')
    expect(accepted).toHaveLength(1)
    // A retransmitted SYN within ownedPortRecheckMs does not retry the bind.
    await h.attempt('tcp', port)
    expect(h.supervisor.stats()).toMatchObject({ ownedByOthers: 1, bound: 0 })
    await sleep(50)
    expect(h.attacks).toHaveLength(0)
  })

  it('a port owned on one address only is left to its owner as well', async () => {
    const port = await freeTcpPort()
    const owner: Server = createServer((socket) => socket.end('loopback service\n'))
    await new Promise<void>((resolve) => owner.listen({ host: LOOPBACK, port }, resolve))
    onTestFinished(() => new Promise<void>((resolve) => owner.close(() => resolve())))
    const h = await startSupervisor()
    await h.attempt('tcp', port)
    expect(h.supervisor.stats().ownedByOthers).toBe(1)
    const client = await connectTcp(port)
    await client.closed
    expect(client.received().toString()).toBe('loopback service\n')
  })

  it('an owned port is tried again after ownedPortRecheckMs', async () => {
    const port = await freeTcpPort()
    const owner: Server = createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => owner.listen({ host: '0.0.0.0', port }, resolve))
    const h = await startSupervisor({ config: { listeners: { ownedPortRecheckMs: 100 } } })
    await h.attempt('tcp', port)
    expect(h.supervisor.stats().ownedByOthers).toBe(1)
    await new Promise<void>((resolve) => owner.close(() => resolve()))
    await sleep(150)
    await h.attempt('tcp', port)
    expect(h.supervisor.stats()).toMatchObject({ ownedByOthers: 1, bound: 1 })
    expect(await connectOutcome(port)).toBe('connected')
  })

  it('retrying the bind of an owned TCP port does not leak descriptors', async () => {
    const port = await freeTcpPort()
    const owner: Server = createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => owner.listen({ host: '0.0.0.0', port }, resolve))
    onTestFinished(() => new Promise<void>((resolve) => owner.close(() => resolve())))
    const h = await startSupervisor({ config: { listeners: { ownedPortRecheckMs: 1 } } })
    await h.attempt('tcp', port)
    const before = openDescriptors()
    for (let i = 0; i < 40; i++) {
      await sleep(3)
      await h.attempt('tcp', port)
    }
    expect(h.supervisor.stats().ownedByOthers).toBe(41)
    expect(openDescriptors() - before).toBeLessThan(10)
  })

  it('a UDP port owned by another service is left to it, and retries do not leak descriptors', async () => {
    const port = await freeUdpPort()
    const owner = createSocket('udp4')
    const ownerGot: string[] = []
    owner.on('message', (m) => ownerGot.push(m.toString()))
    await new Promise<void>((resolve) => owner.bind({ address: '0.0.0.0', port }, resolve))
    onTestFinished(() => new Promise<void>((resolve) => owner.close(() => resolve())))
    const h = await startSupervisor({ config: { listeners: { ownedPortRecheckMs: 1 } } })
    await h.attempt('udp', port)
    expect(h.supervisor.stats()).toMatchObject({ ownedByOthers: 1, bound: 0, listeners: 0 })
    const client = await udpClient()
    await client.send('for the real service', port)
    await waitFor('the owner to get the datagram', () => ownerGot.length === 1)
    expect(ownerGot).toEqual(['for the real service'])
    // Each retry after ownedPortRecheckMs opens a socket whose bind fails; it must be closed again.
    const before = openDescriptors()
    for (let i = 0; i < 40; i++) {
      await sleep(3)
      await h.attempt('udp', port)
    }
    expect(h.supervisor.stats().ownedByOthers).toBe(41)
    expect(openDescriptors() - before).toBeLessThan(10)
    expect(h.attacks).toHaveLength(0)
  })

  it('an idle listener is closed after idleLifetimeMs and bound again on the next attempt', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { listeners: { idleLifetimeMs: 300 } } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.end()
    await client.closed
    await waitFor('the idle listener to close', () => h.supervisor.stats().idleClosed >= 1 && h.supervisor.stats().releasing === 0)
    expect(h.supervisor.stats().listeners).toBe(0)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
    await h.attempt('tcp', port)
    expect(h.supervisor.stats().bound).toBe(2)
    expect(await connectOutcome(port)).toBe('connected')
  })

  it('a listener in use is not closed as idle', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { listeners: { idleLifetimeMs: 300 } } })
    await h.attempt('tcp', port)
    const deadline = performance.now() + 900
    while (performance.now() < deadline) {
      expect(await connectOutcome(port)).toBe('connected')
      await sleep(50)
    }
    expect(h.supervisor.stats().idleClosed).toBe(0)
  })

  it('an idle listener is closed even when an older UDP listener is still busy with a session', async () => {
    // Datagrams of an open UDP session keep its listener in use without moving it in the eviction order, so the
    // sweep must not stop at the first listener that is in use.
    const udpPort = await freeUdpPort()
    const tcpPort = await freeTcpPort()
    const h = await startSupervisor({ config: { listeners: { idleLifetimeMs: 300 }, udp: { sessionIdleMs: 60_000 } } })
    await h.attempt('udp', udpPort)
    const client = await udpClient()
    await client.send('start', udpPort)
    await waitFor('the UDP session', () => h.supervisor.stats().sessions === 1)
    await h.attempt('tcp', tcpPort) // bound after the UDP session started: newer in the eviction order
    const ticker = setInterval(() => void client.send('tick', udpPort).catch(() => undefined), 50)
    onTestFinished(() => clearInterval(ticker))
    await waitFor('the idle TCP listener to close', () => h.supervisor.stats().idleClosed >= 1 && h.supervisor.stats().releasing === 0, 3_000)
    clearInterval(ticker)
    expect(await connectOutcome(tcpPort)).toBe('ECONNREFUSED')
    expect(h.supervisor.stats()).toMatchObject({ idleClosed: 1, listeners: 1, sessions: 1 })
  })

  it('maxListeners: the least recently used idle listener makes room', async () => {
    const ports: number[] = []
    while (ports.length < 5) {
      const port = await freeTcpPort()
      if (!ports.includes(port)) ports.push(port)
    }
    const h = await startSupervisor({ config: { listeners: { maxListeners: 3 } } })
    for (const port of ports) {
      await h.attempt('tcp', port)
      expect(h.supervisor.stats().listeners).toBeLessThanOrEqual(3)
    }
    await waitFor('the evicted listeners to be released', () => h.supervisor.stats().releasing === 0)
    expect(h.supervisor.stats()).toMatchObject({ listeners: 3, bound: 5, evicted: 2 })
    for (const port of ports.slice(2)) expect(await connectOutcome(port), `port ${port}`).toBe('connected')
    for (const port of ports.slice(0, 2)) expect(await connectOutcome(port), `port ${port}`).toBe('ECONNREFUSED')
  })

  it('maxListeners: a listener used again moves to the back of the eviction order', async () => {
    const ports: number[] = []
    while (ports.length < 4) {
      const port = await freeTcpPort()
      if (!ports.includes(port)) ports.push(port)
    }
    const [a, b, c, d] = ports as [number, number, number, number]
    const h = await startSupervisor({ config: { listeners: { maxListeners: 3 } } })
    await h.attempt('tcp', a)
    await h.attempt('tcp', b)
    await h.attempt('tcp', c)
    await h.attempt('tcp', a) // a is now the most recently used
    await h.attempt('tcp', d)
    await waitFor('the evicted listener to be released', () => h.supervisor.stats().releasing === 0)
    expect(h.supervisor.stats()).toMatchObject({ listeners: 3, evicted: 1 })
    expect(await connectOutcome(b)).toBe('ECONNREFUSED')
    for (const port of [a, c, d]) expect(await connectOutcome(port)).toBe('connected')
  })
})

describe('eviction and queued handshakes (regression)', () => {
  it('an evicted listener still accepts and records the handshake already waiting in its queue', async () => {
    const a = await freeTcpPort()
    let b = await freeTcpPort()
    while (b === a) b = await freeTcpPort()
    const h = await startSupervisor({ config: { listeners: { maxListeners: 1 } } })
    await h.attempt('tcp', a)
    const client = connect({ host: LOOPBACK, port: a })
    onTestFinished(() => void client.destroy())
    const connected = new Promise<string>((resolve) => {
      client.once('connect', () => resolve('connected'))
      client.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    })
    // net.connect calls connect(2) on the next tick; on loopback the kernel completes the handshake inside that call.
    // So after this tick the connection waits in a's accept queue, and the event loop has not accepted it yet.
    await new Promise<void>((resolve) => process.nextTick(resolve))
    // An attempt for b in this same tick evicts a (the bound is 1) before a's accept can run. Closing a at once
    // (the defect) reset that connection, and its attack was never recorded.
    const bindB = h.supervisor.onAttempt(attemptFor('tcp', b))
    expect(h.supervisor.stats().evicted).toBe(1)
    await bindB
    expect(await connected).toBe('connected')
    client.end('still recorded')
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ target: { port: a }, closeReason: 'peer-closed' })
    expect(attack!.payload.toString()).toBe('still recorded')
    expect(await connectOutcome(b)).toBe('connected')
    expect(h.supervisor.stats()).toMatchObject({ listeners: 1, evicted: 1 })
  })

  it('an attempt for a port whose listener is being released waits for it and binds the port again', async () => {
    const a = await freeTcpPort()
    let b = await freeTcpPort()
    while (b === a) b = await freeTcpPort()
    const h = await startSupervisor({ config: { listeners: { maxListeners: 1 } } })
    await h.attempt('tcp', a)
    const bindB = h.supervisor.onAttempt(attemptFor('tcp', b)) // evicts a; its socket closes after this poll phase
    const againA = h.supervisor.onAttempt(attemptFor('tcp', a)) // must wait for a's release, then evict b and bind a
    await Promise.all([bindB, againA])
    expect(await connectOutcome(a)).toBe('connected')
    expect(h.supervisor.stats()).toMatchObject({ listeners: 1, evicted: 2, ownedByOthers: 0, bindFailures: 0 })
  })
})

describe('limits', () => {
  it('maxConnectionsPerSource: the third concurrent connection is reset and not recorded', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { limits: { maxConnectionsPerSource: 2 } } })
    await h.attempt('tcp', port)
    const first = await connectTcp(port)
    const second = await connectTcp(port)
    await waitFor('two sessions', () => h.supervisor.stats().sessions === 2)
    expect(await endOutcome(port)).toBe('ECONNRESET')
    expect(h.limiter.refused['max-per-source']).toBe(1)
    first.socket.end('one')
    second.socket.end('two')
    await h.attacksReady(2)
    await sleep(50)
    expect(h.attacks.map((a) => a.payload.toString()).sort()).toEqual(['one', 'two'])
    expect(h.supervisor.stats().recorded).toBe(2)
    // A slot is free again once a connection ended.
    const fourth = await connectTcp(port)
    fourth.socket.end('four')
    await h.attacksReady(3)
    expect(h.attacks[2]!.payload.toString()).toBe('four')
  })

  it('newConnectionsPerSecondPerSource: past the rate a connection is reset until the window moves', async () => {
    let now = 1_000_000
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { limits: { newConnectionsPerSecondPerSource: 3 } }, now: () => now })
    await h.attempt('tcp', port)
    for (let i = 0; i < 3; i++) {
      const client = await connectTcp(port)
      client.socket.end(`ok${i}`)
      await client.closed
    }
    await h.attacksReady(3)
    expect(await endOutcome(port)).toBe('ECONNRESET')
    expect(h.limiter.refused['rate-per-source']).toBe(1)
    now += 1_000
    const again = await connectTcp(port)
    again.socket.end('after the window')
    await h.attacksReady(4)
    expect(h.attacks.map((a) => a.payload.toString())).toEqual(['ok0', 'ok1', 'ok2', 'after the window'])
  })

  it('maxConnections: the global cap refuses past it', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { limits: { maxConnections: 1 } } })
    await h.attempt('tcp', port)
    const first = await connectTcp(port)
    await waitFor('one session', () => h.supervisor.stats().sessions === 1)
    expect(await endOutcome(port)).toBe('ECONNRESET')
    expect(h.limiter.refused['max-connections']).toBe(1)
    first.socket.end()
    await h.attacksReady(1)
    expect(h.limiter.active).toBe(0)
  })
})

describe('close', () => {
  it('ends open connections with shutdown, and every attack is in the sink when close() resolves', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { ports: ruleFor(port, { reply: 'on-data' }) }, templates: { [`${port}_tcp`]: '+' } })
    await h.attempt('tcp', port)
    const clients = await Promise.all([0, 1, 2].map(() => connectTcp(port)))
    for (const [i, client] of clients.entries()) client.socket.write(`client ${i}`)
    for (const client of clients) await client.bytes(1) // each session has read its bytes
    expect(h.attacks).toHaveLength(0)
    await h.supervisor.close()
    expect(h.attacks).toHaveLength(3)
    expect(h.attacks.every((a) => a.closeReason === 'shutdown')).toBe(true)
    expect(h.attacks.map((a) => a.payload.toString()).sort()).toEqual(['client 0', 'client 1', 'client 2'])
    for (const client of clients) expect((await client.closed).gotEnd).toBe(true)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
    expect(h.supervisor.stats().listeners).toBe(0)
  })

  it('attempts after close bind nothing', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    await h.supervisor.close()
    await h.attempt('tcp', port)
    expect(h.supervisor.stats().bound).toBe(0)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
  })

  it('close() while a bind is in flight leaves no listener behind', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    const pending = h.supervisor.onAttempt(attemptFor('tcp', port))
    await h.supervisor.close()
    await pending
    expect(h.supervisor.stats().listeners).toBe(0)
    expect(await connectOutcome(port)).toBe('ECONNREFUSED')
  })
})

describe('UDP', () => {
  it('two datagrams from one client socket make one session, in order', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 200 } } })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send('first|', port)
    await client.send('second', port)
    const [attack] = await h.attacksReady(1)
    await sleep(100)
    expect(h.attacks).toHaveLength(1)
    expect(attack).toMatchObject({
      protocol: 'udp',
      family: 4,
      mode: 'normal',
      source: { address: LOOPBACK, port: client.port },
      target: { port },
      closeReason: 'idle-timeout',
      bytesReceived: 12,
      bytesSent: 0,
      truncated: false,
    })
    expect(attack!.payload.toString()).toBe('first|second')
  })

  it('max duration also ends a UDP session whose peer never falls silent', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 10_000 }, responder: { maxDurationMs: 300 } } })
    await h.attempt('udp', port)
    const client = await udpClient()
    const ticker = setInterval(() => void client.send('tick', port), 40)
    onTestFinished(() => clearInterval(ticker))
    const [attack] = await h.attacksReady(1)
    clearInterval(ticker)
    expect(attack!.closeReason).toBe('max-duration')
    expect(attack!.endedAtMs - attack!.startedAtMs).toBeGreaterThanOrEqual(290)
    expect(attack!.payload.toString()).toMatch(/^(tick)+$/)
  })

  it('20 datagrams fired at once from one socket are still one session', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 300 } } })
    await h.attempt('udp', port)
    const client = await udpClient()
    const datagrams = Array.from({ length: 20 }, (_, i) => Buffer.from(`[${String(i).padStart(2, '0')}]`))
    await Promise.all(datagrams.map((d) => client.send(d, port)))
    const [attack] = await h.attacksReady(1)
    await sleep(100)
    expect(h.attacks).toHaveLength(1)
    expect(attack!.payload.toString()).toBe(Buffer.concat(datagrams).toString())
    expect(attack!.bytesReceived).toBe(80)
  })

  it('two client sockets make two sessions', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 200 } } })
    await h.attempt('udp', port)
    const a = await udpClient()
    const b = await udpClient()
    await a.send('from a', port)
    await b.send('from b', port)
    await a.send(' again', port)
    await h.attacksReady(2)
    await sleep(100)
    expect(h.attacks).toHaveLength(2)
    const bySource = new Map(h.attacks.map((x) => [x.source.port, x.payload.toString()]))
    expect(bySource.get(a.port)).toBe('from a again')
    expect(bySource.get(b.port)).toBe('from b')
    expect(new Set(h.attacks.map((x) => x.id)).size).toBe(2)
  })

  it('answers each datagram with the template', async () => {
    const port = await freeUdpPort()
    const template = 'PONG-PONG!'
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 300, maxReplyRatio: 3 } }, templates: { [`${port}_udp`]: template } })
    await h.attempt('udp', port)
    const client = await udpClient()
    for (let i = 0; i < 3; i++) {
      await client.send(`ping ${i}`, port)
      await waitFor(`reply ${i + 1}`, () => client.replies.length === i + 1)
    }
    expect(client.replies.map((r) => r.toString())).toEqual([template, template, template])
    const [attack] = await h.attacksReady(1)
    expect(attack!.bytesSent).toBe(3 * template.length)
    expect(attack!.payload.toString()).toBe('ping 0ping 1ping 2')
  })

  it('a TCP template is not used for UDP', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 200 } }, templates: { [`${port}_tcp`]: 'tcp only' } })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send('hello', port)
    const [attack] = await h.attacksReady(1)
    expect(client.replies).toHaveLength(0)
    expect(attack!.bytesSent).toBe(0)
  })

  it('replies are capped at maxReplyRatio times the bytes received', async () => {
    const port = await freeUdpPort()
    const template = Buffer.alloc(500, 0x41)
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 2_000, maxReplyRatio: 3 } }, templates: { [`${port}_udp`]: template } })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send(Buffer.alloc(10, 1), port) // 500 > 3 × 10: no reply
    await sleep(200)
    expect(client.replies).toHaveLength(0)
    await client.send(Buffer.alloc(200, 2), port) // 500 ≤ 3 × 210: a reply
    await waitFor('the reply to the larger datagram', () => client.replies.length === 1)
    expect(client.replies[0]!.equals(template)).toBe(true)
    await h.supervisor.close()
    expect(h.attacks).toHaveLength(1)
    expect(h.attacks[0]).toMatchObject({ bytesReceived: 210, bytesSent: 500, closeReason: 'shutdown' })
    expect(client.replies).toHaveLength(1)
  })

  it('a fresh session with a single small datagram gets no reply at all', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 2_000, maxReplyRatio: 3 } }, templates: { [`${port}_udp`]: Buffer.alloc(500, 0x41) } })
    await h.attempt('udp', port)
    const probes = await Promise.all([udpClient(), udpClient(), udpClient()])
    for (const probe of probes) await probe.send(Buffer.alloc(40, 0), port)
    await sleep(200)
    for (const probe of probes) expect(probe.replies).toHaveLength(0)
    await h.supervisor.close()
    expect(h.attacks.map((a) => a.bytesSent)).toEqual([0, 0, 0])
  })

  it('the session idle timer restarts with each datagram and ends it with idle-timeout', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 400 } } })
    await h.attempt('udp', port)
    const client = await udpClient()
    const started = Date.now()
    for (let i = 0; i < 6; i++) {
      await client.send(String(i), port)
      await sleep(100)
    }
    // 600 ms in, well past one idle period: the session is still open because each datagram restarted it.
    expect(h.attacks).toHaveLength(0)
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('idle-timeout')
    expect(attack!.payload.toString()).toBe('012345')
    expect(attack!.endedAtMs - started).toBeGreaterThanOrEqual(800)
  })

  it('the read limit ends a UDP session with size-limit', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 5_000 }, responder: { maxAttackBytes: 100 } } })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send(Buffer.alloc(60, 1), port)
    await client.send(Buffer.alloc(60, 2), port)
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('size-limit')
    expect(attack!.truncated).toBe(true)
    expect(attack!.payload.equals(Buffer.concat([Buffer.alloc(60, 1), Buffer.alloc(40, 2)]))).toBe(true)
    expect(attack!.bytesReceived).toBe(120)
  })

  it('the target address comes from the attempt when onAttempt was called for that peer', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 200 } } })
    const announced = await udpClient()
    const unannounced = await udpClient()
    await h.attempt('udp', port, { port: announced.port, dstAddress: '127.0.0.1' })
    await announced.send('announced', port)
    await unannounced.send('unannounced', port)
    await h.attacksReady(2)
    const bySource = new Map(h.attacks.map((a) => [a.source.port, a]))
    expect(bySource.get(announced.port)!.target).toEqual({ address: '127.0.0.1', port })
    // Without an attempt, the wildcard socket cannot tell which local address was hit.
    expect(bySource.get(unannounced.port)!.target).toEqual({ address: '0.0.0.0', port })
  })

  it('maxConnectionsPerSource also bounds UDP sessions', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 300 }, limits: { maxConnectionsPerSource: 1 } } })
    await h.attempt('udp', port)
    const a = await udpClient()
    const b = await udpClient()
    await a.send('a', port)
    await waitFor('the first session', () => h.supervisor.stats().sessions === 1)
    await b.send('b', port)
    await h.attacksReady(1)
    await sleep(100)
    expect(h.attacks.map((x) => x.payload.toString())).toEqual(['a'])
    expect(h.limiter.refused['max-per-source']).toBe(1)
  })

  it('close() ends UDP sessions with shutdown before it resolves', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { udp: { sessionIdleMs: 60_000 } } })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send('still talking', port)
    await waitFor('the session', () => h.supervisor.stats().sessions === 1)
    await h.supervisor.close()
    expect(h.attacks).toHaveLength(1)
    expect(h.attacks[0]).toMatchObject({ closeReason: 'shutdown' })
    expect(h.attacks[0]!.payload.toString()).toBe('still talking')
  })

  it('ignore mode binds no UDP socket', async () => {
    const port = await freeUdpPort()
    const h = await startSupervisor({ config: { ports: { rules: [{ ports: `${port}/udp`, mode: 'ignore' }] } } })
    await h.attempt('udp', port)
    expect(h.supervisor.stats()).toMatchObject({ listeners: 0, bound: 0, ignored: 1 })
    // The port is still free: binding it ourselves succeeds.
    const probe = createSocket('udp4')
    onTestFinished(() => new Promise<void>((resolve) => probe.close(() => resolve())))
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject)
      probe.bind({ address: '0.0.0.0', port, exclusive: true }, resolve)
    })
  })

  it('an evicted UDP listener ends its sessions with evicted', async () => {
    const udpPort = await freeUdpPort()
    const tcpPort = await freeTcpPort()
    const h = await startSupervisor({ config: { listeners: { maxListeners: 1 }, udp: { sessionIdleMs: 60_000 } } })
    await h.attempt('udp', udpPort)
    const client = await udpClient()
    await client.send('open session', udpPort)
    await waitFor('the session', () => h.supervisor.stats().sessions === 1)
    await h.attempt('tcp', tcpPort)
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('evicted')
    expect(h.supervisor.stats()).toMatchObject({ evicted: 1, listeners: 1 })
  })
})

describe('connections whose SYN skipped the queue (the NFQUEUE monitor reads the saved SYN)', () => {
  const FACTS = { ttl: 57, ipId: 777, dontFragment: false, tcpWindow: 1_024, tcpFlags: 0x02, tcpOptions: [2], mss: 536, windowScale: null }
  const unseen = (srcPort: number, dstPort: number): ConnectionAttempt => ({
    family: 4,
    protocol: 'tcp',
    srcAddress: LOOPBACK,
    srcPort,
    dstAddress: '127.0.0.9',
    dstPort,
    facts: FACTS,
  })

  it('takes the attacked address and facts from the reader for a connection the monitor did not see', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    const asked: number[] = []
    h.supervisor.readUnseenAttempts((socket) => {
      asked.push(socket.remotePort ?? -1)
      return unseen(socket.remotePort ?? -1, port)
    })
    await h.attempt('tcp', port) // binds; that attempt's own source port never connects
    const client = await connectTcp(port)
    client.socket.end('x')
    const [attack] = await h.attacksReady(1)
    expect(asked).toEqual([client.localPort])
    expect(attack!.target).toEqual({ address: '127.0.0.9', port })
    expect(attack!.synFacts).toEqual(FACTS)
  })

  it('does not ask the reader about a connection the monitor saw', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    let asked = 0
    h.supervisor.readUnseenAttempts(() => {
      asked++
      return null
    })
    const localPort = await freeTcpPort()
    await h.attempt('tcp', port, { port: localPort }) // the monitor saw this very connection's SYN
    const client = await connectTcp(port, { localPort })
    client.socket.end('x')
    const [attack] = await h.attacksReady(1)
    expect(asked).toBe(0)
    expect(attack!.synFacts).not.toBeNull()
  })

  it('ignores an attempt for other ports, and stops asking a reader that throws', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    await h.attempt('tcp', port)
    h.supervisor.readUnseenAttempts(() => unseen(1, port)) // not this connection's source port
    const first = await connectTcp(port)
    first.socket.end('a')
    let calls = 0
    h.supervisor.readUnseenAttempts(() => {
      calls++
      throw new Error('broken reader')
    })
    for (const text of ['b', 'c']) {
      const client = await connectTcp(port)
      client.socket.end(text)
      await client.closed
    }
    const attacks = await h.attacksReady(3)
    expect(attacks.map((a) => [a.payload.toString(), a.target.address, a.synFacts])).toEqual([
      ['a', LOOPBACK, null],
      ['b', LOOPBACK, null],
      ['c', LOOPBACK, null],
    ])
    expect(calls).toBe(1)
  })
})

describeNetns('saved SYNs through the real socket options (root: IP_TRANSPARENT needs CAP_NET_ADMIN)', () => {
  it.each([
    [4, LOOPBACK],
    [6, '::1'],
  ] as const)('IPv%i: a marked listener keeps each SYN, read once, with the facts the client sent', async (family, address) => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    h.supervisor.prepareListeners((server, f) => markServedSocket(server, f, 0x40_0000))
    h.supervisor.readUnseenAttempts(attemptFromSavedSyn)
    await h.attempt('tcp', port, { family, address, dstAddress: address })
    const client = await connectTcp(port, { host: address })
    client.socket.end('x')
    const [attack] = await h.attacksReady(1)
    expect(attack!.target).toEqual({ address, port })
    // Linux's own SYN: DF on IPv4, MSS, SACK permitted, timestamps, NOP, window scale.
    expect(attack!.synFacts).toMatchObject({ ttl: 64, dontFragment: family === 4, tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3] })
    expect(attack!.synFacts?.ipId === null).toBe(family === 6)
  })

  it('a listener without the options keeps no SYN: the record has no facts', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor()
    h.supervisor.readUnseenAttempts(attemptFromSavedSyn)
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.end('x')
    const [attack] = await h.attacksReady(1)
    expect(attack!.target).toEqual({ address: LOOPBACK, port })
    expect(attack!.synFacts).toBeNull()
  })
})

describe('steered connections and their SYN facts (the eBPF monitor)', () => {
  /** A server standing in for the eBPF monitor's steering socket: each accepted socket goes to acceptSteered. */
  async function steeringServer(accept: (socket: Socket) => void): Promise<number> {
    const server: Server = createServer({ allowHalfOpen: true }, accept)
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
    await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve))
    return (server.address() as { port: number }).port
  }

  const FACTS = { ttl: 61, ipId: 4_242, dontFragment: true, tcpWindow: 29_200, tcpFlags: 0x02, tcpOptions: [2, 4, 8, 1, 3], mss: 1_400, windowScale: 7 }

  it('a session that ends before its facts arrive waits for them, and keeps its real end time', async () => {
    const h = await startSupervisor()
    h.supervisor.expectSynFacts(true)
    const port = await steeringServer((socket) => h.supervisor.acceptSteered(socket))
    const client = await connectTcp(port)
    const srcPort = client.socket.localPort!
    client.socket.end('GET / HTTP/1.0\r\n\r\n')
    await client.closed
    const closedAt = Date.now()
    expect(h.attacks).toHaveLength(0) // the session is over (our FIN reached the client); its record waits
    await sleep(40)
    expect(h.attacks).toHaveLength(0)
    h.supervisor.synFactsSeen([{ srcAddress: LOOPBACK, srcPort, dstAddress: LOOPBACK, dstPort: port, facts: FACTS }])
    const [attack] = await h.attacksReady(1)
    expect(attack!.synFacts).toEqual(FACTS)
    expect(attack!.closeReason).toBe('peer-closed')
    expect(attack!.endedAtMs).toBeLessThanOrEqual(closedAt)
  })

  it('records without facts when they never come, shortly after the session ends', async () => {
    const h = await startSupervisor()
    h.supervisor.expectSynFacts(true)
    const port = await steeringServer((socket) => h.supervisor.acceptSteered(socket))
    const client = await connectTcp(port)
    client.socket.end('probe')
    await client.closed
    const [attack] = await h.attacksReady(1)
    expect(attack!.synFacts).toBeNull()
    expect(attack!.payload.toString()).toBe('probe')
  })

  it('times each waiting record from its own end: a later one is not written with an earlier one', async () => {
    const h = await startSupervisor()
    h.supervisor.expectSynFacts(true)
    const port = await steeringServer((socket) => h.supervisor.acceptSteered(socket))
    const ended: number[] = []
    for (const text of ['first', 'second']) {
      const client = await connectTcp(port)
      client.socket.end(text)
      await client.closed
      ended.push(performance.now())
      if (text === 'first') await sleep(60)
    }
    const [first] = await h.attacksReady(1)
    const firstAt = performance.now()
    expect(first!.payload.toString()).toBe('first')
    expect(h.attacks).toHaveLength(1) // the second waits its own 100 ms, though the first's timer has fired
    expect(firstAt - ended[0]!).toBeGreaterThanOrEqual(95)
    const [, second] = await h.attacksReady(2)
    expect(second!.payload.toString()).toBe('second')
    expect(performance.now() - ended[1]!).toBeGreaterThanOrEqual(95)
  })

  it('does not hold records when no facts are expected (XDP not attached)', async () => {
    const h = await startSupervisor()
    const port = await steeringServer((socket) => h.supervisor.acceptSteered(socket))
    const client = await connectTcp(port)
    client.socket.end('probe')
    await client.closed
    // Our FIN reached the client after the session ended, and its record went to the sink in that same call.
    expect(h.attacks).toHaveLength(1)
    expect(h.attacks[0]!.synFacts).toBeNull()
  })
})
