import { mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { TemplateStore, type TemplateStoreOptions } from '../../src/responders/templates.js'

const log = pino({ level: 'silent' })
const RELOAD_DEADLINE_MS = 2_000 // the documented promise: a change is served within 2 s

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ht-templates-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function createStore(dir: string, options: Partial<TemplateStoreOptions> = {}): TemplateStore {
  const store = new TemplateStore({ dir, maxTemplateBytes: 64 * 1024, log, ...options })
  onTestFinished(() => store.close())
  return store
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` until it holds; returns how long that took, or fails at the deadline. */
async function within(deadlineMs: number, check: () => boolean): Promise<number> {
  const started = performance.now()
  while (!check()) {
    if (performance.now() - started > deadlineMs + 500) throw new Error(`condition not met within ${deadlineMs} ms`)
    await sleep(20)
  }
  return performance.now() - started
}

function text(store: TemplateStore, port: number, protocol: 'tcp' | 'udp' = 'tcp'): string | undefined {
  return store.get(port, protocol)?.toString('latin1')
}

describe('TemplateStore loading', () => {
  it('serves each <port>_<proto> file by port and protocol', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), 'HTTP/1.1 200 OK\r\n\r\n')
    await writeFile(join(dir, '53_udp'), Buffer.from([0x12, 0x34, 0x81, 0x80]))
    await writeFile(join(dir, '5060_tcp'), 'SIP/2.0 200 OK\r\n')
    await writeFile(join(dir, '5060_udp'), '')
    const store = createStore(dir)
    await store.load()
    expect(store.size).toBe(4)
    expect(text(store, 80)).toBe('HTTP/1.1 200 OK\r\n\r\n')
    expect(store.get(80, 'udp')).toBeUndefined()
    expect(store.get(53, 'udp')).toEqual(Buffer.from([0x12, 0x34, 0x81, 0x80]))
    expect(store.get(53, 'tcp')).toBeUndefined()
    expect(text(store, 5060)).toBe('SIP/2.0 200 OK\r\n')
    expect(store.get(5060, 'udp')).toEqual(Buffer.alloc(0)) // an empty file is a template that sends nothing
    expect(store.get(81, 'tcp')).toBeUndefined()
  })

  it('skips names that are not templates and directories named like templates', async () => {
    const dir = await tempDir()
    for (const name of ['99999_tcp', '65536_udp', '80_xyz', '80_tcp.bak', '_tcp', '0_tcp', '080_tcp', '.81_tcp.swp', '80_tcp~', 'README']) {
      await writeFile(join(dir, name), 'not a template')
    }
    await mkdir(join(dir, '82_tcp'))
    await writeFile(join(dir, '82_tcp', 'inner'), 'x')
    await writeFile(join(dir, '83_udp'), 'real')
    const store = createStore(dir)
    await store.load()
    expect(store.size).toBe(1)
    expect(text(store, 83, 'udp')).toBe('real')
    expect(store.get(80, 'tcp')).toBeUndefined()
    expect(store.get(82, 'tcp')).toBeUndefined()
  })

  it('skips files over maxTemplateBytes and serves those at the cap', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), Buffer.alloc(17, 0x41))
    await writeFile(join(dir, '81_tcp'), Buffer.alloc(16, 0x42))
    const store = createStore(dir, { maxTemplateBytes: 16 })
    await store.load()
    expect(store.get(80, 'tcp')).toBeUndefined()
    expect(store.get(81, 'tcp')).toEqual(Buffer.alloc(16, 0x42))
    expect(store.size).toBe(1)
  })

  it('skips unreadable entries: a dangling symlink and a directory', async () => {
    const dir = await tempDir()
    await symlink(join(dir, 'missing-target'), join(dir, '84_tcp'))
    await mkdir(join(dir, '81_tcp'))
    await writeFile(join(dir, '85_tcp'), 'ok')
    const store = createStore(dir)
    await expect(store.load()).resolves.toBeUndefined()
    expect(store.get(84, 'tcp')).toBeUndefined()
    expect(store.get(81, 'tcp')).toBeUndefined()
    expect(store.size).toBe(1)
  })

  it('follows a symlink to a regular file', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, 'shared-banner'), '220 ready\r\n')
    await symlink(join(dir, 'shared-banner'), join(dir, '21_tcp'))
    const store = createStore(dir)
    await store.load()
    expect(text(store, 21)).toBe('220 ready\r\n')
  })

  it('treats a missing directory as empty and picks it up once it appears', async () => {
    const parent = await tempDir()
    const dir = join(parent, 'later')
    const store = createStore(dir)
    await expect(store.load()).resolves.toBeUndefined()
    expect(store.size).toBe(0)
    await mkdir(dir)
    await writeFile(join(dir, '25_tcp'), '220 mail\r\n')
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 25) === '220 mail\r\n')).toBeLessThan(RELOAD_DEADLINE_MS)
  })

  it('loads the shipped templates', async () => {
    const dir = fileURLToPath(new URL('../../templates/', import.meta.url))
    const store = createStore(dir)
    await store.load()
    expect(store.size).toBe((await readdir(dir)).length)
    expect(store.get(445, 'tcp')?.subarray(4, 8)).toEqual(Buffer.from([0xfe, 0x53, 0x4d, 0x42]))
    expect(store.get(5060, 'udp')).toBeDefined()
  })
})

describe('TemplateStore automatic reload', () => {
  it('picks up an added, a changed and a removed file within 2 s without reload()', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), 'one')
    const store = createStore(dir)
    await store.load()
    expect(text(store, 80)).toBe('one')

    await writeFile(join(dir, '21_tcp'), '220 added\r\n')
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 21) === '220 added\r\n')).toBeLessThan(RELOAD_DEADLINE_MS)

    await writeFile(join(dir, '80_tcp'), 'two') // same size: only the content and mtime change
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 80) === 'two')).toBeLessThan(RELOAD_DEADLINE_MS)

    await rm(join(dir, '80_tcp'))
    expect(await within(RELOAD_DEADLINE_MS, () => store.get(80, 'tcp') === undefined)).toBeLessThan(RELOAD_DEADLINE_MS)
    expect(store.size).toBe(1)
  })

  it('picks up a file written elsewhere and renamed into place, as editors do', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), 'old')
    const store = createStore(dir)
    await store.load()
    await writeFile(join(dir, '.80_tcp.tmp'), 'new content')
    await rename(join(dir, '.80_tcp.tmp'), join(dir, '80_tcp'))
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 80) === 'new content')).toBeLessThan(RELOAD_DEADLINE_MS)
  })

  it('follows a templates directory replaced by rename, and watches the new one', async () => {
    const parent = await tempDir()
    const dir = join(parent, 'templates')
    await mkdir(dir)
    await writeFile(join(dir, '80_tcp'), 'first')
    const store = createStore(dir, { pollIntervalMs: 200 })
    await store.load()

    const next = join(parent, 'templates.next')
    await mkdir(next)
    await writeFile(join(next, '80_tcp'), 'second')
    await rename(dir, join(parent, 'templates.old'))
    await rename(next, dir)
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 80) === 'second')).toBeLessThan(RELOAD_DEADLINE_MS)

    await writeFile(join(dir, '81_tcp'), 'in the new directory')
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 81) === 'in the new directory')).toBeLessThan(RELOAD_DEADLINE_MS)
  })

  it('drops a template that grows past the cap', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), 'small')
    const store = createStore(dir, { maxTemplateBytes: 8 })
    await store.load()
    await writeFile(join(dir, '80_tcp'), 'far too large for the cap')
    expect(await within(RELOAD_DEADLINE_MS, () => store.get(80, 'tcp') === undefined)).toBeLessThan(RELOAD_DEADLINE_MS)
  })

  it('keeps the previous content when an edit leaves the file unreadable', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), 'good')
    await writeFile(join(dir, '81_tcp'), 'also good')
    const store = createStore(dir)
    await store.load()

    // Broken edits, each swapped in by rename so no reload can see the file missing in between; then a marker
    // file: once the marker is served, the reload has seen the broken entries.
    await symlink(join(dir, 'missing-target'), join(dir, '.dangling'))
    await rename(join(dir, '.dangling'), join(dir, '80_tcp'))
    await mkdir(join(dir, 'some-directory'))
    await symlink(join(dir, 'some-directory'), join(dir, '.to-directory'))
    await rename(join(dir, '.to-directory'), join(dir, '81_tcp'))
    await writeFile(join(dir, '90_tcp'), 'marker')
    await within(RELOAD_DEADLINE_MS, () => text(store, 90) === 'marker')
    expect(text(store, 80)).toBe('good')
    expect(text(store, 81)).toBe('also good')

    // Repairing the symlink serves the new content.
    await writeFile(join(dir, 'missing-target'), 'repaired')
    expect(await within(RELOAD_DEADLINE_MS, () => text(store, 80) === 'repaired')).toBeLessThan(RELOAD_DEADLINE_MS)

    // Removing the broken entry outright is intent, not a broken edit: the port goes quiet.
    await rm(join(dir, '81_tcp'))
    expect(await within(RELOAD_DEADLINE_MS, () => store.get(81, 'tcp') === undefined)).toBeLessThan(RELOAD_DEADLINE_MS)
  })

  it('swaps the whole map at once: a reader never sees part of a reload', async () => {
    const dir = await tempDir()
    const ports = Array.from({ length: 50 }, (_, i) => 10_000 + i)
    await Promise.all(ports.map((port) => writeFile(join(dir, `${port}_tcp`), 'v1')))
    const store = createStore(dir)
    await store.load()
    await Promise.all(ports.map((port) => writeFile(join(dir, `${port}_tcp`), 'v2')))
    const reloading = store.reload()
    const seen = new Set<string>()
    while (text(store, ports[0] ?? 0) !== 'v2') {
      seen.add(ports.map((port) => text(store, port)).join(','))
      await sleep(0)
    }
    await reloading
    seen.add(ports.map((port) => text(store, port)).join(','))
    for (const snapshot of seen) expect(new Set(snapshot.split(',')).size).toBe(1)
  })
})

describe('TemplateStore reload() and close()', () => {
  it('reload() reads the directory now, even without load()', async () => {
    const dir = await tempDir()
    const store = createStore(dir)
    await store.reload()
    expect(store.size).toBe(0)
    await writeFile(join(dir, '6379_tcp'), '-NOAUTH Authentication required.\r\n')
    await store.reload()
    expect(text(store, 6379)).toBe('-NOAUTH Authentication required.\r\n')
  })

  it('concurrent reload() calls all resolve, and the last one sees the last change', async () => {
    const dir = await tempDir()
    const store = createStore(dir)
    await writeFile(join(dir, '80_tcp'), 'a')
    const first = store.reload()
    await writeFile(join(dir, '80_tcp'), 'b')
    const second = store.reload()
    const third = store.reload()
    await Promise.all([first, second, third])
    expect(text(store, 80)).toBe('b')
  })

  it('close() stops watching and polling; loaded templates stay readable', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, '80_tcp'), 'before close')
    const store = createStore(dir, { pollIntervalMs: 100 })
    await store.load()
    store.close()
    await writeFile(join(dir, '21_tcp'), '220 after close\r\n')
    await writeFile(join(dir, '80_tcp'), 'changed after close')
    await sleep(1_000)
    expect(store.get(21, 'tcp')).toBeUndefined()
    expect(text(store, 80)).toBe('before close')
    await expect(store.reload()).resolves.toBeUndefined()
    expect(store.size).toBe(1)
  })
})
