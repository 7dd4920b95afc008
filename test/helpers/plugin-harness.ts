import { createHash } from 'node:crypto'
import pino from 'pino'
import type { StoredAttack } from '../../src/attack/attack.js'
import { AddressGuard } from '../../src/responders/address-guard.js'
import { DownloadPolicy, type DownloadPolicyOptions } from '../../src/plugins/download/download-policy.js'
import { attackRecord } from './attack-record.js'
import type { ArtifactHistory, DownloadAttempt, NewArtifact, Plugin, PluginContext, Subject, SubjectKind } from '../../src/plugins/plugin.js'

/** Runs single plugins outside the pipeline: what a plugin's own tests need (the pipeline has tests of its own). */

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** A stored attack around `payload`, with plausible metadata and the digests the store would compute. */
export function attackOf(payload: Buffer | string, overrides: Partial<StoredAttack> = {}): StoredAttack {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload
  return {
    ...attackRecord(bytes, { startedAtMs: 1_700_000_000_000, endedAtMs: 1_700_000_000_050 }),
    md5: createHash('md5').update(bytes).digest('hex'),
    sha256: sha256Hex(bytes),
    sha512: createHash('sha512').update(bytes).digest('hex'),
    ...overrides,
  }
}

/** The attack string of `attack` as a subject (or any bytes as a subject of another kind). */
export function subjectOf(attack: StoredAttack, data: Buffer = attack.payload, kind: SubjectKind = 'attack'): Subject {
  return { attack, kind, data, sha256: sha256Hex(data), depth: kind === 'attack' ? 0 : 1, parentSha256: kind === 'attack' ? null : attack.sha256, origin: kind === 'attack' ? 'payload' : 'test' }
}

/** Everything a plugin reported through its context. */
export interface Collected {
  readonly artifacts: NewArtifact[]
  readonly payloads: { data: Buffer; origin: string }[]
  readonly downloads: { attempt: DownloadAttempt; sample: Buffer | undefined }[]
}

export interface TestContextOptions {
  readonly policy?: Partial<DownloadPolicyOptions>
  readonly history?: ArtifactHistory
  readonly timeoutMs?: number // aborts ctx.signal after this; default 10 s
}

const EMPTY_HISTORY: ArtifactHistory = { find: () => [], recentDownload: () => null }

/** A PluginContext that records what the plugin reports. Downloads may reach loopback and the test namespaces' ranges
 * (override with `policy`); nothing else non-public. */
export function createTestContext(options: TestContextOptions = {}): { ctx: PluginContext; collected: Collected } {
  const collected: Collected = { artifacts: [], payloads: [], downloads: [] }
  const claimed = new Set<string>()
  const downloads = new DownloadPolicy({
    maxBytes: 8 * 1024 * 1024,
    timeoutMs: 5_000,
    maxRedirects: 5,
    recentUrlTtlMs: 3_600_000,
    // Loopback and the test namespaces' ranges; an interface list that lists nothing, so loopback is not "own".
    allow: ['127.0.0.0/8', '::1/128', '198.18.0.0/15', 'fd00:4855::/32'],
    deny: [],
    guard: new AddressGuard({ deny: [], interfaces: () => ({}) }),
    ...options.policy,
  })
  const ctx: PluginContext = {
    log: pino({ level: 'silent' }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    addArtifact: (artifact) => collected.artifacts.push(artifact),
    addPayload: (data, origin) => collected.payloads.push({ data, origin }),
    addDownload: (attempt, sample) => collected.downloads.push({ attempt, sample }),
    claim: (key) => {
      if (claimed.has(key)) return false
      claimed.add(key)
      return true
    },
    downloads,
    history: options.history ?? EMPTY_HISTORY,
  }
  return { ctx, collected }
}

/** Runs `plugin` on `subject` when it accepts it; returns what it reported. */
export async function runPlugin(plugin: Plugin, subject: Subject, options: TestContextOptions = {}): Promise<Collected> {
  const { ctx, collected } = createTestContext(options)
  if (plugin.accepts === undefined || plugin.accepts(subject)) await plugin.process(subject, ctx)
  return collected
}
