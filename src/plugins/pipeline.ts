import { hash } from 'node:crypto'
import type { Logger } from 'pino'
import type { StoredAttack } from '../attack/attack.js'
import {
  PLUGIN_PHASES,
  type ArtifactHistory,
  type DownloadAttempt,
  type DownloadKit,
  type NewArtifact,
  type Plugin,
  type PluginContext,
  type Subject,
  type SubjectKind,
} from './plugin.js'

/** A subject without its attack: how subjects travel between the pipeline, its host and the database. */
export interface SubjectRecord {
  readonly kind: SubjectKind
  readonly data: Buffer
  readonly sha256: string
  readonly depth: number
  readonly parentSha256: string | null
  readonly origin: string
}

/** One attack to process. `subjects` and `done` come from earlier runs (a replay, or a resume after a crash). */
export interface PipelineJob {
  readonly attack: StoredAttack
  readonly subjects: readonly SubjectRecord[] // derived subjects already stored, the attack string excluded
  readonly done: readonly string[] // runKey() of every run already recorded as ok (or given up on)
  readonly only: readonly string[] | null // run just these plugins (replay --plugin); null: all of them
}

export type RunStatus = 'ok' | 'failed' | 'timeout' | 'crashed'

/** What one plugin did with one subject. */
export interface RunResult {
  readonly subjectSha256: string
  readonly plugin: string
  readonly status: RunStatus
  readonly error: string | null
  readonly startedAtMs: number
  readonly durationMs: number
  readonly artifacts: readonly NewArtifact[]
  readonly payloads: readonly SubjectRecord[] // derived subjects it added (decoded payloads)
  /** `follow`: the sample goes through the rest of the pipeline (false past the depth or subject bounds, or a repeat). */
  readonly downloads: readonly { readonly attempt: DownloadAttempt; readonly sample: SubjectRecord | null; readonly follow: boolean }[]
}

/** Where the pipeline reports progress; the host relays it (a `begin` with no `end` names the plugin that crashed). */
export interface PipelineReporter {
  begin(subjectSha256: string, plugin: string): void
  end(result: RunResult): void
}

export interface PipelineLimits {
  readonly timeoutMs: number
  readonly maxDepth: number
  readonly maxSubjectsPerAttack: number
  readonly maxSubjectBytes: number
}

export interface PipelineOptions extends PipelineLimits {
  readonly plugins: readonly Plugin[] // in config order
  readonly downloads: DownloadKit
  readonly history: ArtifactHistory
  readonly log: Logger
  readonly signal: AbortSignal // shutdown
}

const MAX_ERROR_CHARS = 1_000
const MAX_ORIGIN_CHARS = 300

/** Buffers cross threads as plain Uint8Arrays (structured clone): make them Buffers again, without copying. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** The key of one run in `PipelineJob.done`. */
export function runKey(subjectSha256: string, plugin: string): string {
  return `${subjectSha256}/${plugin}`
}

/**
 * Runs the plugins over one attack: phases in order, plugins in config order within a phase. The decode phase is a
 * worklist: what a decoder or downloader adds is decoded in turn, up to `maxDepth` and `maxSubjectsPerAttack`, and
 * every subject then goes through analyze, save and postprocess. A plugin that throws, rejects or passes its deadline
 * is recorded and the next one runs. Never throws.
 */
export async function runPipeline(job: PipelineJob, options: PipelineOptions, reporter: PipelineReporter): Promise<void> {
  const root: Subject = { attack: job.attack, kind: 'attack', data: job.attack.payload, sha256: job.attack.sha256, depth: 0, parentSha256: null, origin: 'payload' }
  const subjects: Subject[] = [root]
  const known = new Set<string>([root.sha256])
  for (const s of job.subjects) {
    if (known.has(s.sha256)) continue
    known.add(s.sha256)
    subjects.push({ ...s, attack: job.attack })
  }
  const done = new Set(job.done)
  const claimed = new Set<string>()
  const only = job.only === null ? null : new Set(job.only)

  for (const phase of PLUGIN_PHASES) {
    const plugins = options.plugins.filter((p) => p.phase === phase && (only === null || only.has(p.name)))
    // `subjects` grows while the decode phase runs: a plain index loop visits what is added.
    for (let i = 0; i < subjects.length; i++) {
      const subject = subjects[i] as Subject
      for (const plugin of plugins) {
        if (options.signal.aborted) return
        if (done.has(runKey(subject.sha256, plugin.name))) continue
        if (!accepts(plugin, subject)) continue
        const result = await runOne(plugin, subject, { options, known, subjects, claimed, reporter })
        if (result === null) return
        for (const added of [...result.payloads, ...result.downloads.flatMap((d) => (d.sample !== null && d.follow ? [d.sample] : []))]) {
          subjects.push({ ...added, attack: job.attack })
        }
      }
    }
  }
}

function accepts(plugin: Plugin, subject: Subject): boolean {
  try {
    return plugin.accepts === undefined || plugin.accepts(subject)
  } catch {
    return false // a broken filter must not take the pipeline down; the plugin's run is what records failures
  }
}

interface RunState {
  readonly options: PipelineOptions
  readonly known: Set<string> // sha256 of every subject of the attack, so the same bytes are processed once
  readonly subjects: readonly Subject[]
  readonly claimed: Set<string>
  readonly reporter: PipelineReporter
}

async function runOne(plugin: Plugin, subject: Subject, state: RunState): Promise<RunResult | null> {
  const { options, reporter } = state
  const startedAtMs = Date.now()
  const started = performance.now()
  const artifacts: NewArtifact[] = []
  const payloads: SubjectRecord[] = []
  const downloads: { attempt: DownloadAttempt; sample: SubjectRecord | null; follow: boolean }[] = []
  const deadline = new AbortController()
  const signal = AbortSignal.any([deadline.signal, options.signal])
  let open = true // after the run is recorded, a plugin that carries on in the background reports into nothing

  const derive = (kind: SubjectKind, data: Buffer, origin: string): SubjectRecord | null => {
    if (subject.depth + 1 > options.maxDepth) return null
    if (state.subjects.length + payloads.length + downloads.length >= options.maxSubjectsPerAttack) return null
    // A decoded payload is cut at maxSubjectBytes; a sample never is (downloads.maxBytes bounds it): the quarantine
    // must hold the file that was served, and its digest must be that file's.
    const kept = kind === 'decoded' && data.length > options.maxSubjectBytes ? data.subarray(0, options.maxSubjectBytes) : data
    const sha256 = hash('sha256', kept, 'hex')
    if (state.known.has(sha256)) return null
    state.known.add(sha256)
    return { kind, data: Buffer.from(kept), sha256, depth: subject.depth + 1, parentSha256: subject.sha256, origin: clip(origin, MAX_ORIGIN_CHARS) }
  }

  const ctx: PluginContext = {
    log: options.log.child({ plugin: plugin.name, attackId: subject.attack.id }),
    signal,
    addArtifact(artifact) {
      if (open) artifacts.push(artifact)
    },
    addPayload(data, origin) {
      if (!open || plugin.phase !== 'decode' || !Buffer.isBuffer(data) || data.length === 0) return
      const record = derive('decoded', data, origin)
      if (record !== null) payloads.push(record)
    },
    addDownload(attempt, sample) {
      if (!open) return
      if (sample !== undefined && attempt.outcome === 'ok' && sample.length <= options.downloads.maxBytes) {
        // The sample is stored whatever the depth bound says; only its further processing is bounded.
        const followed = derive('sample', sample, attempt.url)
        const record = followed ?? { kind: 'sample' as const, data: sample, sha256: hash('sha256', sample, 'hex'), depth: subject.depth + 1, parentSha256: subject.sha256, origin: clip(attempt.url, MAX_ORIGIN_CHARS) }
        downloads.push({ attempt, sample: record, follow: followed !== null })
      } else {
        const tooLarge = sample !== undefined && attempt.outcome === 'ok'
        downloads.push({ attempt: tooLarge ? { ...attempt, outcome: 'too-large', reason: `larger than ${options.downloads.maxBytes} bytes` } : attempt, sample: null, follow: false })
      }
    },
    claim(key) {
      if (state.claimed.has(key)) return false
      state.claimed.add(key)
      return true
    },
    downloads: options.downloads,
    history: options.history,
  }

  reporter.begin(subject.sha256, plugin.name)
  let status: RunStatus = 'ok'
  let error: string | null = null
  let timer: NodeJS.Timeout | undefined
  try {
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), options.timeoutMs)
    })
    // A shutdown does not wait for a plugin that ignores its signal: the run is dropped (below) and done again later.
    const shutdown = new Promise<'shutdown'>((resolve) => {
      if (options.signal.aborted) resolve('shutdown')
      options.signal.addEventListener('abort', () => resolve('shutdown'), { once: true, signal: deadline.signal })
    })
    const outcome = await Promise.race([plugin.process(subject, ctx).then(() => 'ok' as const), timeout, shutdown])
    if (outcome === 'timeout') {
      status = 'timeout'
      error = `did not finish within plugins.timeoutMs (${options.timeoutMs} ms)`
    }
  } catch (err) {
    status = 'failed'
    error = clip(err instanceof Error ? `${err.name}: ${err.message}` : String(err), MAX_ERROR_CHARS)
  } finally {
    clearTimeout(timer)
    open = false
    deadline.abort(new Error('plugin deadline'))
  }
  // Cut short by a shutdown: not a result of the plugin's. Nothing is reported, so the run is done again next time.
  if (options.signal.aborted) return null
  const result: RunResult = {
    subjectSha256: subject.sha256,
    plugin: plugin.name,
    status,
    error,
    startedAtMs,
    durationMs: Math.round(performance.now() - started),
    artifacts,
    payloads,
    downloads,
  }
  reporter.end(result)
  return result
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}
