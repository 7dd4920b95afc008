import { createHash, randomBytes } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Attack } from '../../src/attack/attack.js'
import type { ConfigInput } from '../../src/config/schema.js'
import { connectTcp, freeTcpPort, freeUdpPort, LOOPBACK, sleep, startSupervisor, udpClient, waitFor } from '../helpers/supervisor-harness.js'

// Proxy mode on loopback: a real backend server, the real supervisor and relay, real client sockets. Mirror mode
// cannot relay on loopback (the guard refuses the sensor's own addresses, which is tested here); its relays are
// tested across network namespaces in test/netns/relay.e2e.test.ts.

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** A TCP backend on loopback whose behaviour per connection is `serve`; closed after the test. */
async function backend(serve: (socket: Socket) => void): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = []
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket)
    socket.on('error', () => undefined)
    serve(socket)
  })
  server.listen({ host: LOOPBACK, port: 0 })
  await once(server, 'listening')
  onTestFinished(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { server, port: (server.address() as { port: number }).port, sockets }
}

/** Reads until the peer's FIN, then answers with the byte count and sha256 of what it read, then ends. */
function digestServer(socket: Socket): void {
  const hash = createHash('sha256')
  let bytes = 0
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length
    hash.update(chunk)
  })
  socket.on('end', () => socket.end(`${JSON.stringify({ bytes, sha256: hash.digest('hex') })}\n`))
}

function proxyConfig(port: number, backendPort: number, extra: ConfigInput = {}, host = LOOPBACK): ConfigInput {
  return {
    ...extra,
    proxy: { ...extra.proxy, targets: { be: { host, port: backendPort, protocol: 'tcp', ...extra.proxy?.targets?.['be'] } } },
    ports: { rules: [{ ports: `${port}/tcp`, mode: 'proxy', proxy: 'be' }] },
  }
}

/** The bytes a transcript's chunks of one direction slice out of the attack, in order. */
function slices(attack: Attack, direction: 'in' | 'out'): Buffer[] {
  const from = direction === 'in' ? attack.payload : attack.response
  let at = 0
  const out: Buffer[] = []
  for (const chunk of attack.transcript) {
    if (chunk.direction !== direction) continue
    out.push(from.subarray(at, at + chunk.size))
    at += chunk.size
  }
  return out
}

describe('proxy (TCP, loopback)', () => {
  it('relays both ways and records the request, the response, the transcript and the target', async () => {
    const be = await backend((socket) => {
      socket.write('220 backend ready\r\n')
      socket.on('data', (chunk: Buffer) => socket.write(`echo:${chunk.toString()}`))
      socket.on('end', () => socket.end())
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    await client.bytes('220 backend ready\r\n'.length)
    client.socket.write('HELLO')
    const got = await client.bytes('220 backend ready\r\necho:HELLO'.length)
    expect(got.toString()).toBe('220 backend ready\r\necho:HELLO')
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ mode: 'proxy', closeReason: 'peer-closed', relay: { target: `${LOOPBACK}:${be.port}`, outcome: 'relayed', reason: null } })
    expect(attack!.payload.toString()).toBe('HELLO')
    expect(attack!.response.toString()).toBe('220 backend ready\r\necho:HELLO')
    expect(attack!.transcript.map((c) => c.direction)).toEqual(['out', 'in', 'out'])
    expect(Buffer.concat(slices(attack!, 'out')).toString()).toBe('220 backend ready\r\necho:HELLO')
    expect(h.responders.relayStats.snapshot().proxy).toMatchObject({ started: 1, relayed: 1 })
  })

  it('relays 10 MB each way with matching sha256 at both ends, past the read limit (kept bytes capped and flagged)', async () => {
    const size = 10 * 1024 * 1024
    const fromBackend = randomBytes(size)
    let backendGot = ''
    const be = await backend((socket) => {
      const hash = createHash('sha256')
      socket.on('data', (chunk: Buffer) => hash.update(chunk))
      socket.on('end', () => {
        backendGot = hash.digest('hex')
        socket.end()
      })
      socket.write(fromBackend)
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, { responder: { maxAttackBytes: 65_536 } }) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const toBackend = randomBytes(size)
    client.socket.end(toBackend)
    const closed = await client.closed
    expect(closed.gotEnd).toBe(true)
    expect(sha256(client.received())).toBe(sha256(fromBackend))
    await waitFor('the backend to finish reading', () => backendGot !== '')
    expect(backendGot).toBe(sha256(toBackend))
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ bytesReceived: size, bytesSent: size, truncated: true, responseTruncated: true })
    expect(attack!.payload.equals(toBackend.subarray(0, 65_536))).toBe(true)
    expect(attack!.response.equals(fromBackend.subarray(0, 65_536))).toBe(true)
  }, 30_000)

  it('passes a half-close on: the attacker half-closes and still receives the answer', async () => {
    const be = await backend(digestServer)
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const body = randomBytes(300_000)
    client.socket.end(body)
    const closed = await client.closed
    expect(closed).toEqual({ gotEnd: true, errorCode: undefined })
    expect(JSON.parse(client.received().toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('peer-closed') // the attacker's FIN came first
  })

  it('passes the target closing first on, and keeps the other direction open until the attacker closes', async () => {
    const be = await backend((socket) => {
      socket.on('data', () => undefined)
      socket.end('bye\n') // FIN at once, still reading
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    // A half-open client: it keeps its side open after the target's FIN, as a real attacker's stack may.
    const client = connect({ host: LOOPBACK, port, allowHalfOpen: true })
    onTestFinished(() => {
      client.destroy()
    })
    const received: Buffer[] = []
    client.on('data', (chunk: Buffer) => received.push(chunk))
    await once(client, 'end')
    client.write('still talking') // allowed: only the other direction is closed
    await sleep(100)
    client.end()
    await once(client, 'close')
    expect(Buffer.concat(received).toString()).toBe('bye\n')
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ closeReason: 'target-closed' })
    expect(attack!.payload.toString()).toBe('still talking')
    expect(attack!.response.toString()).toBe('bye\n')
  })

  it('passes a target reset on as a reset', async () => {
    const be = await backend((socket) => socket.once('data', () => socket.resetAndDestroy()))
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('x')
    expect((await client.closed).errorCode).toBe('ECONNRESET')
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ closeReason: 'target-reset', relay: { outcome: 'relayed' } })
  })

  it('passes an attacker reset on to the target as a reset', async () => {
    let targetSaw = ''
    const be = await backend((socket) => {
      socket.on('data', () => undefined)
      socket.on('error', (err: NodeJS.ErrnoException) => (targetSaw = err.code ?? 'error'))
      socket.on('close', () => (targetSaw ||= 'closed'))
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('x')
    await waitFor('the target connection', () => be.sockets.length === 1)
    await sleep(50)
    client.socket.resetAndDestroy()
    await waitFor('the target to see the reset', () => targetSaw !== '')
    expect(targetSaw).toBe('ECONNRESET')
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('peer-reset')
  })

  it('holds a fast sender back while the target does not read, instead of buffering it', async () => {
    let reading: Socket | undefined
    const be = await backend((socket) => {
      socket.pause() // a slow target: reads nothing until told to
      reading = socket
      digestServer(socket)
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const body = randomBytes(64 * 1024 * 1024)
    client.socket.end(body)
    await sleep(1_000)
    // Kernel buffers on the two hops hold some megabytes; the relay holds at most its high-water mark (256 KiB). Had
    // it buffered everything, the client would have handed all 64 MB over by now.
    expect(client.socket.writableLength).toBeGreaterThan(16 * 1024 * 1024)
    reading!.resume()
    const closed = await client.closed
    expect(closed.gotEnd).toBe(true)
    expect(JSON.parse(client.received().toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
    await h.attacksReady(1)
  }, 60_000)

  it('falls back to normal mode when the target refuses, answers from the template, and says why', async () => {
    const deadPort = await freeTcpPort()
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, deadPort), templates: { [`${port}_tcp`]: 'HTTP/1.0 200 OK\r\n\r\nfallback' } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('GET / HTTP/1.0\r\n\r\n')
    expect((await client.bytes(27)).toString()).toBe('HTTP/1.0 200 OK\r\n\r\nfallback')
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ mode: 'proxy', closeReason: 'peer-closed', relay: { target: `${LOOPBACK}:${deadPort}`, outcome: 'fallback', reason: 'connect-refused' } })
    expect(attack!.payload.toString()).toBe('GET / HTTP/1.0\r\n\r\n')
    expect(attack!.response.toString()).toBe('HTTP/1.0 200 OK\r\n\r\nfallback')
    expect(h.responders.relayStats.snapshot().proxy.fellBack).toEqual({ 'connect-refused': 1 })
  })

  it('keeps the listener serving after a failed target: the next session relays once the target is up', async () => {
    const port = await freeTcpPort()
    // Reserve a port for the backend, then start it only after the first (failed) session.
    const bePort = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, bePort) })
    await h.attempt('tcp', port)
    const first = await connectTcp(port)
    first.socket.end('one')
    await h.attacksReady(1)
    const server = createServer({ allowHalfOpen: true }, digestServer)
    server.listen({ host: LOOPBACK, port: bePort })
    await once(server, 'listening')
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const second = await connectTcp(port)
    second.socket.end('two')
    await second.closed
    expect(JSON.parse(second.received().toString())).toMatchObject({ bytes: 3 })
    const attacks = await h.attacksReady(2)
    expect(attacks.map((a) => a.relay?.outcome)).toEqual(['fallback', 'relayed'])
  })

  it('caps concurrent sessions per target: past maxConcurrent a session falls back (target-busy)', async () => {
    const be = await backend((socket) => {
      socket.on('data', () => undefined)
      socket.on('end', () => socket.end())
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, { proxy: { targets: { be: { host: LOOPBACK, port: be.port, protocol: 'tcp', maxConcurrent: 1 } } } }) })
    await h.attempt('tcp', port)
    const first = await connectTcp(port)
    await waitFor('the first relay', () => be.sockets.length === 1)
    const second = await connectTcp(port)
    second.socket.end('x')
    await h.attacksReady(1)
    expect(h.attacks[0]!.relay).toMatchObject({ outcome: 'fallback', reason: 'target-busy' })
    // The slot comes back when the first session ends.
    first.socket.end()
    await h.attacksReady(2)
    const third = await connectTcp(port)
    await waitFor('the third relay', () => be.sockets.length === 2)
    third.socket.end()
    const attacks = await h.attacksReady(3)
    expect(attacks[2]!.relay?.outcome).toBe('relayed')
  })

  it('resolves a host name target (localhost, from /etc/hosts) and relays', async () => {
    const be = await backend(digestServer)
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, {}, 'localhost') })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.end('abc')
    await client.closed
    expect(JSON.parse(client.received().toString())).toMatchObject({ bytes: 3 })
    const [attack] = await h.attacksReady(1)
    expect(attack!.relay?.outcome).toBe('relayed')
    expect(h.responders.resolver.lookups).toBe(1)
  })

  it('ends relayed sessions at shutdown and records them as shutdown', async () => {
    const be = await backend((socket) => socket.on('data', () => undefined))
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('x')
    await waitFor('the relay', () => be.sockets.length === 1)
    await h.supervisor.close()
    expect(h.attacks.map((a) => a.closeReason)).toEqual(['shutdown'])
    await client.closed
  })

  it('ends a relay with no bytes either way for the idle timeout', async () => {
    const be = await backend((socket) => socket.on('data', () => undefined))
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, { proxy: { idleTimeoutMs: 300 } }) })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const [attack] = await h.attacksReady(1)
    expect(attack!.closeReason).toBe('idle-timeout')
    expect((await client.closed).gotEnd).toBe(true)
  })
})

describe('proxy with warm connections (TCP, loopback)', () => {
  /** A backend that greets at once and echoes; its connections as they are accepted and as they close. */
  async function greetingBackend(): Promise<Awaited<ReturnType<typeof backend>> & { closed: () => number }> {
    let closed = 0
    const be = await backend((socket) => {
      socket.write('220 backend ready\r\n')
      socket.on('data', (chunk: Buffer) => socket.write(`echo:${chunk.toString()}`))
      socket.on('end', () => socket.end())
      socket.on('close', () => closed++)
    })
    return { ...be, closed: () => closed }
  }

  it('hands the attacker a connection opened ahead: the banner it already holds first, recorded, then the relay', async () => {
    const be = await greetingBackend()
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, { proxy: { targets: { be: { host: LOOPBACK, port: be.port, protocol: 'tcp', warm: 2 } } } }) })
    // Opened at start, before any attacker: the backend has two connections and has greeted on both.
    await waitFor('two warm connections', () => h.responders.warmStats()['be']?.ready === 2)
    expect(be.sockets).toHaveLength(2)
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    await client.bytes('220 backend ready\r\n'.length)
    client.socket.write('HELLO')
    expect((await client.bytes('220 backend ready\r\necho:HELLO'.length)).toString()).toBe('220 backend ready\r\necho:HELLO')
    // The session took one (no third connect for it) and the pool opened a replacement.
    await waitFor('the replacement', () => be.sockets.length === 3 && h.responders.warmStats()['be']?.ready === 2)
    expect(h.responders.warmStats()['be']).toMatchObject({ taken: 1, opened: 3, failed: 0 })
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack).toMatchObject({ mode: 'proxy', closeReason: 'peer-closed', relay: { target: `${LOOPBACK}:${be.port}`, outcome: 'relayed', reason: null } })
    expect(attack!.response.toString()).toBe('220 backend ready\r\necho:HELLO')
    expect(attack!.transcript.map((c) => c.direction)).toEqual(['out', 'in', 'out'])
    expect(Buffer.concat(slices(attack!, 'out')).toString()).toBe('220 backend ready\r\necho:HELLO')
    // At stop the unused ones are closed: the backend sees every connection it accepted closed.
    h.responders.close()
    await waitFor('the backend to see every connection closed', () => be.closed() === be.sockets.length)
    expect(h.responders.warmStats()['be']?.ready).toBe(0)
  })

  it('holds at most 64 KiB of a long greeting while waiting, and the attacker still gets every byte in order', async () => {
    const greeting = randomBytes(300 * 1024)
    const be = await backend((socket) => {
      socket.write(greeting)
      socket.on('data', () => undefined)
      socket.on('end', () => socket.end())
    })
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, { proxy: { targets: { be: { host: LOOPBACK, port: be.port, protocol: 'tcp', warm: 1 } } } }) })
    await waitFor('a warm connection', () => h.responders.warmStats()['be']?.ready === 1)
    await sleep(200) // the greeting arrives and the pool stops reading past 64 KiB: the rest waits in the kernel
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    const got = await client.bytes(greeting.length)
    expect(sha256(got)).toBe(sha256(greeting))
    expect(h.responders.warmStats()['be']?.taken).toBe(1)
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack!.relay?.outcome).toBe('relayed')
    expect(attack!.bytesSent).toBe(greeting.length)
  })

  it('replaces a warm connection unused after warmMaxAgeMs, and never hands out one the target closed', async () => {
    const be = await greetingBackend()
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: proxyConfig(port, be.port, { proxy: { targets: { be: { host: LOOPBACK, port: be.port, protocol: 'tcp', warm: 1, warmMaxAgeMs: 500 } } } }) })
    await waitFor('the first warm connection', () => be.sockets.length === 1)
    await waitFor('a replacement after 500 ms', () => be.sockets.length >= 2, 3_000)
    expect(h.responders.warmStats()['be']?.expired).toBeGreaterThanOrEqual(1)
    await waitFor('the expired one closed', () => be.closed() >= 1)
    // The target ends the ready connection itself: the pool drops it, and a session connects the usual way.
    await waitFor('one ready', () => h.responders.warmStats()['be']?.ready === 1)
    const openedBefore = be.sockets.length
    for (const socket of be.sockets) socket.end()
    await waitFor('the pool to notice', () => h.responders.warmStats()['be']?.ready === 0)
    expect(h.responders.warmStats()['be']?.failed).toBeGreaterThanOrEqual(1)
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('HI')
    expect((await client.bytes('220 backend ready\r\necho:HI'.length)).toString()).toBe('220 backend ready\r\necho:HI')
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack!.relay?.outcome).toBe('relayed')
    // Its own connect: the pool waits out its retry delay (1 s) and had none to give.
    expect(h.responders.warmStats()['be']?.taken).toBe(0)
    expect(be.sockets.length).toBe(openedBefore + 1)
  })

  it('falls back as before when the target is down, and tries again slowly (1 s, doubling), not on every session', async () => {
    const port = await freeTcpPort()
    const dead = await freeTcpPort() // nothing listens there
    const h = await startSupervisor({ config: proxyConfig(port, dead, { proxy: { targets: { be: { host: LOOPBACK, port: dead, protocol: 'tcp', warm: 4 } } } }) })
    await waitFor('the first failures', () => (h.responders.warmStats()['be']?.failed ?? 0) >= 1)
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.end('x')
    const [attack] = await h.attacksReady(1)
    expect(attack!.relay).toMatchObject({ outcome: 'fallback', reason: 'connect-refused' })
    await sleep(1_500)
    // Four at start, four after 1 s; the next round is due 2 s after that.
    expect(h.responders.warmStats()['be']).toMatchObject({ ready: 0, opened: 0, failed: 8 })
  })
})

describe('mirror on loopback', () => {
  it('never mirrors to the sensor itself: falls back to normal mode (special-address)', async () => {
    const port = await freeTcpPort()
    const h = await startSupervisor({ config: { ports: { rules: [{ ports: `${port}/tcp`, mode: 'mirror' }] } }, templates: { [`${port}_tcp`]: 'normal' } })
    await h.attempt('tcp', port)
    const client = await connectTcp(port)
    client.socket.write('x')
    expect((await client.bytes(6)).toString()).toBe('normal')
    client.socket.end()
    const [attack] = await h.attacksReady(1)
    expect(attack!.relay).toEqual({ target: `${LOOPBACK}:${port}`, outcome: 'fallback', reason: 'special-address' })
  })
})

describe('proxy (UDP, loopback)', () => {
  it('relays datagrams both ways and records them; replies stay under the reply ratio', async () => {
    const be = createSocket('udp4')
    onTestFinished(() => new Promise<void>((resolve) => be.close(() => resolve())))
    be.on('message', (msg, rinfo) => be.send(Buffer.concat([Buffer.from('re:'), msg]), rinfo.port, rinfo.address))
    await new Promise<void>((resolve) => be.bind({ address: LOOPBACK, port: 0 }, resolve))
    const port = await freeUdpPort()
    const h = await startSupervisor({
      config: { proxy: { targets: { dns: { host: LOOPBACK, port: be.address().port, protocol: 'udp' } } }, ports: { rules: [{ ports: `${port}/udp`, mode: 'proxy', proxy: 'dns' }] } },
    })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send('query-1', port)
    await waitFor('the first reply', () => client.replies.length === 1)
    await client.send('query-2', port)
    await waitFor('the second reply', () => client.replies.length === 2)
    expect(client.replies.map((r) => r.toString())).toEqual(['re:query-1', 're:query-2'])
    await h.supervisor.close()
    const [attack] = h.attacks
    expect(attack).toMatchObject({ protocol: 'udp', mode: 'proxy', relay: { outcome: 'relayed' } })
    expect(attack!.payload.toString()).toBe('query-1query-2')
    expect(attack!.response.toString()).toBe('re:query-1re:query-2')
    expect(attack!.transcript.map((c) => c.direction)).toEqual(['in', 'out', 'in', 'out'])
  })

  it('falls back to normal mode when the target port is closed (ICMP unreachable)', async () => {
    const dead = await freeUdpPort()
    const port = await freeUdpPort()
    const h = await startSupervisor({
      config: { proxy: { targets: { dns: { host: LOOPBACK, port: dead, protocol: 'udp' } } }, ports: { rules: [{ ports: `${port}/udp`, mode: 'proxy', proxy: 'dns' }] } },
      templates: { [`${port}_udp`]: 'tmpl' },
    })
    await h.attempt('udp', port)
    const client = await udpClient()
    await client.send('probe-one', port)
    await waitFor('the fallback reply', () => client.replies.length === 1)
    expect(client.replies[0]!.toString()).toBe('tmpl')
    await h.supervisor.close()
    expect(h.attacks[0]!.relay).toMatchObject({ outcome: 'fallback', reason: 'connect-refused' })
  })
})
