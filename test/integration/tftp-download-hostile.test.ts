import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it, onTestFinished } from 'vitest'
import { fetchTftp, type TftpFetchOptions, type TftpFetchResult } from '../../src/plugins/download/tftp-client.js'
import { createTestContext, type TestContextOptions } from '../helpers/plugin-harness.js'
import { packet, startScriptedServer, type ScriptedServer, type ScriptOptions } from './tftp-download-servers.js'

// Scripted servers on node:dgram that lose, repeat, oversize or never end what they send.

// Every block starts with its own index: a block appended twice, skipped or misplaced changes the bytes.
function numbered(size: number): Buffer {
  const data = randomBytes(size)
  for (let i = 0; i + 4 <= size; i += 512) data.writeUInt32BE(i / 512, i)
  return data
}

async function serve(options: ScriptOptions): Promise<ScriptedServer> {
  const server = await startScriptedServer(options)
  onTestFinished(() => server.close())
  return server
}

async function fetchFrom(server: ScriptedServer, extra: Partial<TftpFetchOptions> = {}, context: TestContextOptions = {}): Promise<TftpFetchResult & { elapsedMs: number }> {
  const { ctx } = createTestContext(context)
  const started = performance.now()
  const result = await fetchTftp({ host: '127.0.0.1', port: server.port, file: 'x', downloads: ctx.downloads, signal: ctx.signal, ...extra })
  return { ...result, elapsedMs: performance.now() - started }
}

function count(values: readonly number[], value: number): number {
  return values.filter((v) => v === value).length
}

describe('tftp client against hostile servers', () => {
  it('lost DATA and lost ACKs: the request and the ACKs are sent again, and the file is intact', async () => {
    const file = numbered(6 * 512 + 100)
    const server = await serve({ file, loseData: new Set([1, 3]), loseAcks: new Set([2, 5]), resendMs: 300 })
    const result = await fetchFrom(server, { retransmitMs: 100 })
    expect(result).toMatchObject({ outcome: 'ok', bytes: file.length })
    expect(result.data).toEqual(file)
    expect(server.requests.length).toBeGreaterThanOrEqual(2) // DATA 1 lost: the RRQ went again
    expect(count(server.acks, 2)).toBeGreaterThanOrEqual(2)
    expect(count(server.acks, 5)).toBeGreaterThanOrEqual(2)
  })

  it('a DATA the server sends again after a lost ACK is acknowledged again at once', async () => {
    const file = numbered(4 * 512 + 10)
    // The client's own timer (1 s) would be too late: the re-ACK must answer the server's retransmission (600 ms).
    const server = await serve({ file, loseAcks: new Set([2]), resendMs: 600 })
    const result = await fetchFrom(server, { retransmitMs: 1_000 })
    expect(result).toMatchObject({ outcome: 'ok' })
    expect(result.data).toEqual(file)
    expect(count(server.acks, 2)).toBe(2)
    expect(result.elapsedMs).toBeLessThan(1_000)
  })

  it.each(['127.0.0.1', '::1'])('every DATA sent twice (%s): the file is not doubled, and each block is ACKed once', async (address) => {
    const file = numbered(10 * 512 + 33)
    const server = await serve({ file, duplicateData: true, address })
    const result = await fetchFrom(server, { host: address })
    expect(result).toMatchObject({ outcome: 'ok', bytes: file.length })
    expect(result.data).toEqual(file)
    await server.done
    // No answer to the echoes: an ACK per duplicate would make a server without the RFC 1123 fix send all twice.
    expect(server.acks).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
  })

  it('a server that never answers: the request is sent 1 + maxRetries times, then timeout', async () => {
    const server = await serve({ silent: true })
    const result = await fetchFrom(server, { retransmitMs: 100, maxRetries: 3 })
    expect(result).toMatchObject({ outcome: 'timeout', address: '127.0.0.1', bytes: 0, data: null })
    expect(result.reason).toBe('no answer to the read request after 3 retransmissions')
    expect(server.requests).toHaveLength(4)
    expect(result.elapsedMs).toBeGreaterThanOrEqual(350)
    expect(result.elapsedMs).toBeLessThan(1_500)
  })

  it('the whole transfer is bounded by downloads.timeoutMs and by the plugin deadline', async () => {
    const server = await serve({ silent: true })
    const capped = await fetchFrom(server, { retransmitMs: 100, maxRetries: 20 }, { policy: { timeoutMs: 300 } })
    expect(capped).toMatchObject({ outcome: 'timeout', reason: 'no complete answer within 300 ms' })
    expect(capped.elapsedMs).toBeLessThan(1_000)
    const deadline = await fetchFrom(server, { retransmitMs: 100, maxRetries: 20 }, { timeoutMs: 250 })
    expect(deadline).toMatchObject({ outcome: 'timeout', reason: 'plugin deadline or shutdown' })
    expect(deadline.elapsedMs).toBeLessThan(1_000)
  })

  it('a DATA from another port of the server (wrong TID) is ignored and told ERROR 5', async () => {
    const file = numbered(3 * 512 + 5)
    const server = await serve({ file, strangerBefore: 2 })
    const result = await fetchFrom(server)
    expect(result).toMatchObject({ outcome: 'ok' })
    expect(result.data).toEqual(file)
    expect(server.strangerHeard.map((p) => [p.readUInt16BE(0), p.readUInt16BE(2)])).toEqual([[5, 5]])
  })

  it('a DATA from another address is ignored and never answered', async () => {
    const file = numbered(3 * 512 + 5)
    const server = await serve({ file, strangerBefore: 2, strangerAddress: '127.0.0.2' })
    const result = await fetchFrom(server)
    expect(result.data).toEqual(file)
    await sleep(50)
    expect(server.strangerHeard).toEqual([])
  })

  it('a DATA block over 512 bytes is a protocol error, and the server is told ERROR 4', async () => {
    const server = await serve({ file: randomBytes(2_000), blockBytes: 600 })
    const result = await fetchFrom(server)
    expect(result).toMatchObject({ outcome: 'protocol-error', reason: 'DATA block of 600 bytes', data: null })
    await server.done
    expect(server.errors.map((e) => e.code)).toEqual([4])
  })

  it('an endless file ends at maxBytes as too-large, and the server is told ERROR 3', async () => {
    const server = await serve({ endless: true })
    const result = await fetchFrom(server, {}, { policy: { maxBytes: 64 * 1024 } })
    expect(result).toMatchObject({ outcome: 'too-large', bytes: 64 * 1024 + 512, data: null })
    await server.done
    expect(server.errors).toEqual([{ code: 3, message: 'disk full or allocation exceeded' }])
  })

  it('an ERROR packet becomes server-error with its code and a sanitised, bounded message', async () => {
    const message = Buffer.concat([Buffer.from('no\x1b\x07\xff', 'latin1'), Buffer.alloc(300, 0x41)]) // no NUL at all
    const server = await serve({ replyToRequest: packet(5, 2, message) })
    const result = await fetchFrom(server)
    expect(result.outcome).toBe('server-error')
    expect(result.reason).toBe(`TFTP error 2: no???${'A'.repeat(123)}`)
  })

  it.each([
    ['a packet too short for a header', Buffer.from([0, 3, 0]), 'packet of 3 bytes'],
    ['an unknown opcode', packet(9, 1), 'opcode 9 where DATA was expected'],
    ['an ACK from the server', packet(4, 1), 'opcode 4 where DATA was expected'],
  ])('%s is a protocol error, answered with ERROR 4', async (_, reply, reason) => {
    const server = await serve({ replyToRequest: reply })
    const result = await fetchFrom(server)
    expect(result).toMatchObject({ outcome: 'protocol-error', reason })
    await sleep(50)
    expect(server.errors.map((e) => e.code)).toEqual([4])
  })

  it('a server that wraps the block number to 1 after 65535 (file just over 32 MiB)', async () => {
    const file = numbered(32 * 1024 * 1024 + 600)
    const server = await serve({ file, wrapTo: 1 })
    const result = await fetchFrom(server, {}, { policy: { maxBytes: 40 * 1024 * 1024, timeoutMs: 60_000 }, timeoutMs: 60_000 })
    expect(result).toMatchObject({ outcome: 'ok', bytes: file.length })
    expect(result.data?.equals(file)).toBe(true)
  })
})
