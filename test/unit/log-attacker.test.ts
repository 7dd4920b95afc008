import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { StoredAttack } from '../../src/attack/attack.js'
import { createUlid } from '../../src/core/ids.js'
import { createLogAttackerPlugin, LogAttackerOptions } from '../../src/plugins/savers/log-attacker.js'
import { attackOf, createTestContext, runPlugin, subjectOf } from '../helpers/plugin-harness.js'

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ht-log-attacker-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function envOf(dataDir: string): { log: pino.Logger; dataDir: string } {
  return { log: pino({ level: 'silent' }), dataDir }
}

/** The file's lines, each parsed; fails when the file does not end with a newline. */
async function readLines(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, 'utf8')
  if (text === '') return []
  expect(text.endsWith('\n')).toBe(true)
  return text.slice(0, -1).split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
}

function attackWith(payload: Buffer | string, i = 0): StoredAttack {
  return attackOf(payload, { id: createUlid(), source: { address: '203.0.113.9', port: 40000 + i } })
}

// Everything a payload could try to break a line with: newlines, quotes, backslashes, ANSI escapes, NUL, U+2028,
// invalid UTF-8.
const HOSTILE = Buffer.concat([Buffer.from('a\nb\r\n"},{"attackId":"forged"}\n\\\u001b[31mred\u001b[0m\u0000\u2028'), Buffer.from([0xff, 0xfe, 0xc3])])

describe('logAttacker', () => {
  it('appends one JSON line per attack to <dataDir>/attackers.jsonl, created 0600', async () => {
    const dataDir = await tempDir()
    const plugin = createLogAttackerPlugin(LogAttackerOptions.parse({}), envOf(dataDir))
    const attack = attackWith(HOSTILE)
    await runPlugin(plugin, subjectOf(attack))
    const path = join(dataDir, 'attackers.jsonl')
    expect(await readLines(path)).toEqual([
      {
        time: new Date(attack.startedAtMs).toISOString(),
        attackId: attack.id,
        protocol: 'tcp',
        src: '203.0.113.9',
        sport: 40000,
        dst: '198.18.0.1',
        dport: 80,
        mode: 'normal',
        closeReason: 'peer-closed',
        bytesReceived: HOSTILE.length,
        sha256: attack.sha256,
        md5: attack.md5,
      },
    ])
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('carries hostile payloads in base64 only, without breaking the line format', async () => {
    const dataDir = await tempDir()
    const plugin = createLogAttackerPlugin(LogAttackerOptions.parse({ includePayload: true }), envOf(dataDir))
    const attacks = [attackWith(HOSTILE, 1), attackWith(Buffer.alloc(0), 2), attackWith('plain', 3)]
    for (const attack of attacks) await runPlugin(plugin, subjectOf(attack))
    const lines = await readLines(join(dataDir, 'attackers.jsonl'))
    expect(lines.map((l) => l.attackId)).toEqual(attacks.map((a) => a.id))
    expect(lines.map((l) => Buffer.from(l.payload as string, 'base64'))).toEqual(attacks.map((a) => a.payload))
    expect(await readFile(join(dataDir, 'attackers.jsonl'), 'latin1')).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/)
  })

  it('keeps 100 concurrent lines intact, also lines larger than one write', async () => {
    const dataDir = await tempDir()
    const path = join(dataDir, 'logs', 'attackers.jsonl')
    const plugin = createLogAttackerPlugin(LogAttackerOptions.parse({ path, includePayload: true }), envOf('/nonexistent'))
    // Node writes a file in 512 KiB pieces: these lines (~930 KiB of base64) take two writes each.
    const attacks = Array.from({ length: 100 }, (_, i) => attackWith(Buffer.alloc(i % 25 === 0 ? 700 * 1024 : 2048, i), i))
    await Promise.all(attacks.map((attack) => runPlugin(plugin, subjectOf(attack))))
    await plugin.close?.()
    const lines = await readLines(path)
    expect(new Set(lines.map((l) => l.attackId))).toEqual(new Set(attacks.map((a) => a.id)))
    for (const line of lines) {
      const attack = attacks.find((a) => a.id === line.attackId)!
      expect(Buffer.from(line.payload as string, 'base64').equals(attack.payload)).toBe(true)
    }
  })

  it('rotates to <path>.1 once past maxFileBytes, keeping one older generation', async () => {
    const dataDir = await tempDir()
    const path = join(dataDir, 'attackers.jsonl')
    const plugin = createLogAttackerPlugin(LogAttackerOptions.parse({ path, maxFileBytes: 1024 }), envOf(dataDir))
    const attacks = Array.from({ length: 12 }, (_, i) => attackWith(`attack ${i}`, i))
    for (const attack of attacks) await runPlugin(plugin, subjectOf(attack))
    const older = await readLines(`${path}.1`)
    const current = await readLines(path)
    expect((await stat(path)).size).toBeLessThanOrEqual(1024)
    expect((await stat(`${path}.1`)).size).toBeLessThanOrEqual(1024)
    // What is left is the most recent attacks, in order, the older ones in `.1`.
    const kept = [...older, ...current].map((l) => l.attackId)
    expect(kept).toEqual(attacks.slice(-kept.length).map((a) => a.id))
    expect(current.length).toBeGreaterThan(0)
    expect(kept.length).toBeLessThan(attacks.length)
    // A line longer than the cap is still written whole, alone in a fresh file.
    const huge = attackWith(Buffer.alloc(2048, 0x41), 99)
    await createLogAttackerPlugin(LogAttackerOptions.parse({ path, maxFileBytes: 1024, includePayload: true }), envOf(dataDir)).process(subjectOf(huge), createTestContext().ctx)
    expect((await readLines(path)).map((l) => l.attackId)).toEqual([huge.id])
  })

  it('logs attack strings only, not their derived subjects', () => {
    const plugin = createLogAttackerPlugin(LogAttackerOptions.parse({}), envOf('/nonexistent'))
    const attack = attackWith('x')
    expect(plugin.accepts!(subjectOf(attack))).toBe(true)
    expect(plugin.accepts!(subjectOf(attack, Buffer.from('y'), 'decoded'))).toBe(false)
    expect(plugin.accepts!(subjectOf(attack, Buffer.from('y'), 'sample'))).toBe(false)
  })
})
