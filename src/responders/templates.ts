import { constants as fsConstants, watch, type FSWatcher, type Stats } from 'node:fs'
import { open, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Protocol } from '../attack/attack.js'

const TEMPLATE_NAME = /^(\d{1,5})_(tcp|udp)$/
const DEFAULT_POLL_INTERVAL_MS = 1_000
// Editors write a file in several steps (truncate, write, rename); one reload after the burst is enough.
const WATCH_DEBOUNCE_MS = 150
// The directory and the watcher get report slots next to file names; no file can be called these.
const DIRECTORY_REPORT = '/'
const WATCH_REPORT = '//watch'

export interface TemplateStoreOptions {
  readonly dir: string
  readonly maxTemplateBytes: number // a file above this is skipped, never read
  readonly log: Logger
  readonly pollIntervalMs?: number // stat-based fallback for missed watch events; default 1000 ms
}

export type TemplateName =
  | { readonly ok: true; readonly port: number; readonly protocol: Protocol }
  | { readonly ok: false; readonly reason: string }

/** Parses a template file name, `<port>_<tcp|udp>` with a canonical port 1..65535; pure. */
export function parseTemplateName(name: string): TemplateName {
  const m = TEMPLATE_NAME.exec(name)
  if (m === null || m[1] === undefined || m[2] === undefined) return { ok: false, reason: 'name is not <port>_<tcp|udp>' }
  const port = Number(m[1])
  if (port < 1 || port > 65_535) return { ok: false, reason: 'port is not 1..65535' }
  // "080_tcp" next to "80_tcp" would make two files compete for one port.
  if (String(port) !== m[1]) return { ok: false, reason: 'port has leading zeros' }
  return { ok: true, port, protocol: m[2] === 'udp' ? 'udp' : 'tcp' }
}

// One number per port and protocol keeps get() to a single Map lookup with no string building.
function templateKey(port: number, protocol: Protocol): number {
  return port * 2 + (protocol === 'udp' ? 1 : 0)
}

interface Candidate {
  readonly name: string
  readonly key: number
  readonly path: string
  readonly stats: Stats | undefined // followed through symlinks; undefined when stat failed
  readonly error: unknown
}

type Scan =
  | { readonly ok: true; readonly dirIno: number; readonly candidates: Candidate[]; readonly ignored: { name: string; reason: string }[] }
  | { readonly ok: false; readonly error: unknown }

function errorCode(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'UNKNOWN'
}

/** Lists the directory and stats every template-named entry; never throws. */
async function scanDirectory(dir: string): Promise<Scan> {
  let names: string[]
  let dirIno: number
  try {
    dirIno = (await stat(dir)).ino
    names = await readdir(dir)
  } catch (error) {
    return { ok: false, error }
  }
  const candidates: Candidate[] = []
  const ignored: { name: string; reason: string }[] = []
  for (const name of names.sort()) {
    const parsed = parseTemplateName(name)
    if (!parsed.ok) {
      ignored.push({ name, reason: parsed.reason })
      continue
    }
    const path = join(dir, name)
    const key = templateKey(parsed.port, parsed.protocol)
    try {
      candidates.push({ name, key, path, stats: await stat(path), error: undefined })
    } catch (error) {
      candidates.push({ name, key, path, stats: undefined, error })
    }
  }
  return { ok: true, dirIno, candidates, ignored }
}

// What the poll compares: a change of name, inode, size or mtime of any template-named entry, or of the directory.
function fingerprintOf(scan: Scan): string {
  if (!scan.ok) return `!${errorCode(scan.error)}`
  const parts = scan.candidates.map((c) =>
    c.stats === undefined ? `${c.name}!${errorCode(c.error)}` : `${c.name}:${c.stats.ino}:${c.stats.size}:${c.stats.mtimeMs}:${c.stats.isFile()}`,
  )
  return `${scan.dirIno}|${parts.join('|')}`
}

type ReadResult =
  | { readonly kind: 'ok'; readonly bytes: Buffer }
  | { readonly kind: 'oversize'; readonly size: number }
  | { readonly kind: 'not-a-file' }
  | { readonly kind: 'unreadable'; readonly err: unknown }

/** Reads a regular file of at most maxBytes; the size is checked on the open handle, so reading is never unbounded. */
async function readTemplate(path: string, maxBytes: number): Promise<ReadResult> {
  let handle
  try {
    // O_NONBLOCK: a FIFO swapped in after the stat must not hang a libuv thread waiting for a writer.
    handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
  } catch (err) {
    return { kind: 'unreadable', err }
  }
  try {
    const stats = await handle.stat()
    if (!stats.isFile()) return { kind: 'not-a-file' }
    if (stats.size > maxBytes) return { kind: 'oversize', size: stats.size }
    // One spare byte tells a file that grew since fstat from one that did not; a growing file is read next time.
    const bytes = Buffer.alloc(stats.size + 1)
    let filled = 0
    for (;;) {
      const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, filled)
      if (bytesRead === 0) break
      filled += bytesRead
      if (filled === bytes.length) return { kind: 'unreadable', err: new Error('file grew while being read') }
    }
    return { kind: 'ok', bytes: bytes.subarray(0, filled) }
  } catch (err) {
    return { kind: 'unreadable', err }
  } finally {
    await handle.close().catch(() => undefined)
  }
}

function sameTemplates(a: ReadonlyMap<number, Buffer>, b: ReadonlyMap<number, Buffer>): boolean {
  if (a.size !== b.size) return false
  for (const [key, bytes] of a) {
    const other = b.get(key)
    if (other === undefined || !other.equals(bytes)) return false
  }
  return true
}

/**
 * The response templates of a directory (`<port>_<proto>` files), kept current by fs.watch plus a stat poll.
 * Reading never throws: bad names, oversize and unreadable files are logged and skipped.
 */
export class TemplateStore {
  readonly #dir: string
  readonly #maxTemplateBytes: number
  readonly #log: Logger
  readonly #pollIntervalMs: number
  #templates: ReadonlyMap<number, Buffer> = new Map()
  #loadedOnce = false
  #fingerprint: string | undefined
  // name -> reason last logged, so a problem is logged once and again only when it changes.
  readonly #reported = new Map<string, string>()
  #running: Promise<void> | undefined
  #queued: Promise<void> | undefined
  #watching = false
  #closed = false
  #watcher: FSWatcher | undefined
  #watchedIno: number | undefined
  #debounce: NodeJS.Timeout | undefined
  #pollTimer: NodeJS.Timeout | undefined
  #polling = false

  constructor(options: TemplateStoreOptions) {
    this.#dir = options.dir
    this.#maxTemplateBytes = options.maxTemplateBytes
    this.#log = options.log.child({ component: 'templates' })
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS
  }

  /** Number of templates currently served. */
  get size(): number {
    return this.#templates.size
  }

  /** The template for a port, or undefined; O(1). The Buffer is shared: callers must not modify it. */
  get(port: number, protocol: Protocol): Buffer | undefined {
    return this.#templates.get(templateKey(port, protocol))
  }

  /** Reads the directory, then keeps watching it until close(); never rejects. */
  async load(): Promise<void> {
    if (this.#closed) return
    this.#watching = true
    await this.reload()
    if (this.#pollTimer === undefined && !this.#closed) {
      this.#pollTimer = setInterval(() => {
        this.#poll().catch((err: unknown) => this.#log.warn({ err, dir: this.#dir }, 'template poll failed'))
      }, this.#pollIntervalMs)
      this.#pollTimer.unref()
    }
  }

  /** Re-reads the directory now (SIGHUP); resolves after a read that started after the call; never rejects. */
  reload(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued
    if (this.#running === undefined) return this.#startReload()
    // One reload is under way and may have listed the directory already: queue exactly one more after it.
    this.#queued = this.#running.then(() => {
      this.#queued = undefined
      return this.#startReload()
    })
    return this.#queued
  }

  /** Stops the watcher and the timers; the templates already loaded stay readable. */
  close(): void {
    this.#closed = true
    clearTimeout(this.#debounce)
    clearInterval(this.#pollTimer)
    this.#debounce = undefined
    this.#pollTimer = undefined
    this.#unwatch()
  }

  #startReload(): Promise<void> {
    const run: Promise<void> = this.#loadOnce()
      .catch((err: unknown) => this.#log.warn({ err, dir: this.#dir }, 'template reload failed'))
      .finally(() => {
        if (this.#running === run) this.#running = undefined
      })
    this.#running = run
    return run
  }

  async #loadOnce(): Promise<void> {
    if (this.#closed) return
    const scan = await scanDirectory(this.#dir)
    if (this.#closed) return
    this.#syncWatcher(scan)
    const next = new Map<number, Buffer>()
    const problems = new Set<string>()
    if (!scan.ok) {
      problems.add(DIRECTORY_REPORT)
      this.#report('warn', DIRECTORY_REPORT, `directory unreadable: ${errorCode(scan.error)}`, { dir: this.#dir, err: scan.error })
    } else {
      for (const { name, reason } of scan.ignored) {
        problems.add(name)
        this.#report('debug', name, reason, { name })
      }
      for (const candidate of scan.candidates) {
        const problem = await this.#loadCandidate(candidate, next)
        if (problem !== undefined) problems.add(candidate.name)
      }
    }
    if (this.#closed) return
    for (const name of this.#reported.keys()) if (!problems.has(name) && name !== WATCH_REPORT) this.#reported.delete(name)
    this.#fingerprint = fingerprintOf(scan)
    const changed = !this.#loadedOnce || !sameTemplates(this.#templates, next)
    // One assignment: get() sees the old map or the new one, never a map being filled.
    this.#templates = next
    this.#loadedOnce = true
    if (changed) this.#log.info({ count: next.size, dir: this.#dir }, 'templates loaded')
  }

  // Adds one candidate to `next`; returns the reason when it could not be read as it is now.
  async #loadCandidate(candidate: Candidate, next: Map<number, Buffer>): Promise<string | undefined> {
    const { name, key, stats } = candidate
    const keepPrevious = (reason: string, err?: unknown): string => {
      // A broken edit (dangling symlink, directory, read error) must not silence a port that was answering.
      const previous = this.#templates.get(key)
      if (previous !== undefined) next.set(key, previous)
      this.#report('warn', name, reason, { name, err, keptPrevious: previous !== undefined })
      return reason
    }
    if (stats === undefined) return keepPrevious(`unreadable: ${errorCode(candidate.error)}`, candidate.error)
    if (!stats.isFile()) return keepPrevious('not a regular file')
    const result = stats.size > this.#maxTemplateBytes ? { kind: 'oversize' as const, size: stats.size } : await readTemplate(candidate.path, this.#maxTemplateBytes)
    switch (result.kind) {
      case 'ok':
        next.set(key, result.bytes)
        return undefined
      case 'oversize': {
        const reason = `larger than maxTemplateBytes (${result.size} bytes)`
        this.#report('warn', name, reason, { name, size: result.size, maxTemplateBytes: this.#maxTemplateBytes })
        return reason
      }
      case 'not-a-file':
        return keepPrevious('not a regular file')
      case 'unreadable':
        return keepPrevious(`unreadable: ${errorCode(result.err)}`, result.err)
    }
  }

  #report(level: 'debug' | 'warn', name: string, reason: string, fields: Record<string, unknown>): void {
    if (this.#reported.get(name) === reason) return
    this.#reported.set(name, reason)
    if (level === 'debug') this.#log.debug({ ...fields, reason }, 'template ignored')
    else this.#log.warn({ ...fields, reason }, 'template skipped')
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#closed) return
    this.#polling = true
    try {
      const scan = await scanDirectory(this.#dir)
      if (this.#closed) return
      this.#syncWatcher(scan)
      if (fingerprintOf(scan) !== this.#fingerprint) await this.reload()
    } finally {
      this.#polling = false
    }
  }

  // Watches the directory that is there now: a directory replaced by rename keeps the old inode's watch silent.
  #syncWatcher(scan: Scan): void {
    if (!this.#watching || this.#closed) return
    if (!scan.ok) return this.#unwatch()
    if (this.#watcher !== undefined && this.#watchedIno === scan.dirIno) return
    this.#unwatch()
    try {
      const watcher = watch(this.#dir, { persistent: false }, () => this.#scheduleReload())
      watcher.on('error', (err) => {
        // The poll keeps the templates current and re-creates the watcher on its next round.
        this.#log.warn({ err, dir: this.#dir }, 'template watch failed')
        if (this.#watcher === watcher) this.#unwatch()
      })
      this.#watcher = watcher
      this.#watchedIno = scan.dirIno
      this.#reported.delete(WATCH_REPORT)
    } catch (err) {
      // Retried on every poll (inotify watches can run out); say so once, the poll still catches changes.
      if (this.#reported.get(WATCH_REPORT) === undefined) this.#log.warn({ err, dir: this.#dir }, 'template watch failed')
      this.#reported.set(WATCH_REPORT, errorCode(err))
    }
  }

  #unwatch(): void {
    this.#watcher?.close()
    this.#watcher = undefined
    this.#watchedIno = undefined
  }

  #scheduleReload(): void {
    if (this.#closed) return
    clearTimeout(this.#debounce)
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      void this.reload()
    }, WATCH_DEBOUNCE_MS)
    this.#debounce.unref()
  }
}
