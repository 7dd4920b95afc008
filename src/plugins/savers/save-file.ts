import { randomBytes } from 'node:crypto'
import { link, mkdir, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { ulidTimeMs } from '../../core/ids.js'
import type { Plugin, PluginEnv, Subject, SubjectKind } from '../plugin.js'

/** Options of the saveFile saver. */
export const SaveFileOptions = z
  .strictObject({
    dir: z.string().min(1).max(4096).nullable().default(null), // null: `<dataDir>/saved`
    kinds: z.array(z.enum(['attack', 'decoded', 'sample'])).min(1).max(3).default(['attack', 'decoded', 'sample']),
  })
  .prefault({})

const SHA256_HEX = /^[0-9a-f]{64}$/

/**
 * The file name of a subject: `<start time>_<attack id>_<sha256 prefix>.<kind>.bin`. Built only from the attack's
 * start time, its ULID and the subject's hex digest, all checked here: nothing the attacker chose reaches the path.
 * Throws on an id that is not a ULID or a digest that is not hex (a store bug, not traffic).
 */
export function savedFileName(subject: Subject): string {
  const { attack } = subject
  if (Number.isNaN(ulidTimeMs(attack.id))) throw new Error(`saveFile: attack id is not a ULID: ${JSON.stringify(attack.id.slice(0, 40))}`)
  if (!SHA256_HEX.test(subject.sha256)) throw new Error('saveFile: subject sha256 is not lowercase hex')
  const started = new Date(attack.startedAtMs)
  if (Number.isNaN(started.getTime())) throw new Error('saveFile: attack start time is not a valid date')
  // ':' is not allowed in file names on some systems the files may be copied to.
  const time = started.toISOString().replaceAll(':', '-')
  return `${time}_${attack.id}_${subject.sha256.slice(0, 16)}.${subject.kind}.bin`
}

/**
 * Writes `data` to `path` only if `path` does not exist; false when it does. The bytes go to a temporary file first
 * (created O_EXCL) and are hard-linked into place (link never replaces), so a name that exists always holds the whole
 * file, even after a crash or an abort mid-write.
 */
async function writeOnce(path: string, data: Buffer, signal: AbortSignal): Promise<boolean> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await writeFile(temporary, data, { flag: 'wx', mode: 0o600, signal })
    return await link(temporary, path).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return false
        throw err
      },
    )
  } finally {
    // Also after a failed or aborted write: the temporary name must not stay behind.
    await unlink(temporary).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }
}

/**
 * saveFile: keeps attack strings, decoded payloads and samples as files for offline analysis, one subdirectory per
 * kind under `dir`. Files are 0600 and directories 0700 (the sensor's user only). Saving the same subject of the same
 * attack again is not an error: the existing file is kept and reported (`info.existed`).
 */
export function createSaveFilePlugin(options: z.infer<typeof SaveFileOptions>, env: PluginEnv): Plugin {
  const dir = options.dir ?? join(env.dataDir, 'saved')
  const kinds = new Set<SubjectKind>(options.kinds)
  return {
    name: 'saveFile',
    phase: 'save',
    accepts(subject: Subject): boolean {
      return kinds.has(subject.kind)
    },
    async process(subject, ctx): Promise<void> {
      const name = savedFileName(subject)
      const kindDir = join(dir, subject.kind)
      // Every time, not once: an operator may move the directory away while the sensor runs.
      await mkdir(kindDir, { recursive: true, mode: 0o700 })
      const path = join(kindDir, name)
      const created = await writeOnce(path, subject.data, ctx.signal)
      if (!created) ctx.log.debug({ path }, 'subject already saved')
      ctx.addArtifact({ kind: 'saved-file', info: { path, bytes: subject.data.length, existed: !created } })
    },
  }
}
