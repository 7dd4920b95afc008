import { appendFile, mkdir, rename, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { z } from 'zod'
import type { StoredAttack } from '../../attack/attack.js'
import type { Plugin, PluginEnv, Subject } from '../plugin.js'

/** Options of the logAttacker saver. */
export const LogAttackerOptions = z
  .strictObject({
    path: z.string().min(1).max(4096).nullable().default(null), // null: `<dataDir>/attackers.jsonl`
    includePayload: z.boolean().default(false), // adds `payload`: the attack string in base64
    // Past this size the file is renamed to `<path>.1` (replacing an older `.1`) and a new one is started.
    maxFileBytes: z.number().int().min(1024).max(Number.MAX_SAFE_INTEGER).default(1024 * 1024 * 1024), // 1 GiB
  })
  .prefault({})

/** One line of the attackers log, as written (JSON, one object per line). */
export interface AttackerLine {
  readonly time: string // the attack's start, ISO 8601 UTC
  readonly attackId: string
  readonly protocol: string
  readonly src: string
  readonly sport: number
  readonly dst: string
  readonly dport: number
  readonly mode: string
  readonly closeReason: string
  readonly bytesReceived: number
  readonly sha256: string
  readonly md5: string
  readonly payload?: string // base64, only with includePayload
}

/**
 * The log line of `attack`, newline included. JSON.stringify escapes every control character (newlines and ANSI
 * escapes included) and attacker bytes only ever appear in base64, so no payload can end a line early or forge one.
 */
export function formatAttackerLine(attack: StoredAttack, includePayload: boolean): string {
  const line: AttackerLine = {
    time: new Date(attack.startedAtMs).toISOString(),
    attackId: attack.id,
    protocol: attack.protocol,
    src: attack.source.address,
    sport: attack.source.port,
    dst: attack.target.address,
    dport: attack.target.port,
    mode: attack.mode,
    closeReason: attack.closeReason,
    bytesReceived: attack.bytesReceived,
    sha256: attack.sha256,
    md5: attack.md5,
    ...(includePayload ? { payload: attack.payload.toString('base64') } : {}),
  }
  return `${JSON.stringify(line)}\n`
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
}

/**
 * An append-only JSON-lines file written by one queue: each line is one appendFile call that starts only after the
 * previous one finished, so lines never interleave whatever their size (Node splits writes past 512 KiB). The file
 * is opened per line (mode 0600 when created), so an external rotation (logrotate, mv) is picked up on the next line.
 * Rotation keeps one generation: past maxFileBytes the file becomes `<path>.1`, replacing the previous `.1`. A single
 * line larger than maxFileBytes is still written whole, alone in a fresh file.
 */
class LineLog {
  readonly #path: string
  readonly #maxFileBytes: number
  #tail: Promise<void> = Promise.resolve()
  #dirReady = false

  constructor(path: string, maxFileBytes: number) {
    this.#path = path
    this.#maxFileBytes = maxFileBytes
  }

  /** Resolves once `line` is in the file; rejects when this line could not be written (later lines still are). */
  append(line: string): Promise<void> {
    const run = this.#tail.then(() => this.#write(line))
    this.#tail = run.catch(() => undefined)
    return run
  }

  /** Resolves when every line queued so far is written. */
  drain(): Promise<void> {
    return this.#tail
  }

  async #write(line: string): Promise<void> {
    if (!this.#dirReady) {
      await mkdir(dirname(this.#path), { recursive: true, mode: 0o700 })
      this.#dirReady = true
    }
    const bytes = Buffer.byteLength(line)
    const size = await fileSize(this.#path)
    if (size > 0 && size + bytes > this.#maxFileBytes) await rename(this.#path, `${this.#path}.1`)
    // No abort signal on purpose: an aborted write could leave half a line, which would corrupt the next one.
    await appendFile(this.#path, line, { flag: 'a', mode: 0o600 })
  }
}

/**
 * logAttacker: one JSON line per attack (the attack string only, not its derived subjects) appended to a file that
 * other tools (fail2ban, a SIEM shipper, jq) can follow. Fields: see AttackerLine.
 */
export function createLogAttackerPlugin(options: z.infer<typeof LogAttackerOptions>, env: PluginEnv): Plugin {
  const log = new LineLog(options.path ?? join(env.dataDir, 'attackers.jsonl'), options.maxFileBytes)
  return {
    name: 'logAttacker',
    phase: 'postprocess',
    accepts(subject: Subject): boolean {
      return subject.kind === 'attack'
    },
    async process(subject): Promise<void> {
      if (subject.kind !== 'attack') return // derived subjects belong to an attack already logged
      await log.append(formatAttackerLine(subject.attack, options.includePayload))
    },
    async close(): Promise<void> {
      await log.drain()
    },
  }
}
