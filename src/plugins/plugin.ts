import type { Logger } from 'pino'
import type { StoredAttack } from '../attack/attack.js'

/**
 * The plugin contract: built-in plugins and the user's own (ES modules in `plugins.dir`) implement it. Documented with
 * a worked example in docs/plugins.md; keep the two in step.
 */

/** Phases always run in this order; within a phase, plugins run in config order. */
export const PLUGIN_PHASES = ['decode', 'analyze', 'save', 'postprocess'] as const
export type PluginPhase = (typeof PLUGIN_PHASES)[number]

/**
 * What a plugin looks at:
 * - attack: the attack string itself (the bytes the attacker sent)
 * - decoded: a payload a decoder derived from another subject (base64, UTF-16, XOR, text typed into VNC, ...)
 * - sample: a file a downloader fetched because of the attack
 */
export type SubjectKind = 'attack' | 'decoded' | 'sample'

export interface Subject {
  readonly attack: StoredAttack // the attack this subject came from, read-only
  readonly kind: SubjectKind
  readonly data: Buffer // never larger than plugins.maxSubjectBytes
  readonly sha256: string // lowercase hex of data: the subject's identity within its attack
  readonly depth: number // 0 for the attack string, parent's depth + 1 for what was derived from it
  readonly parentSha256: string | null // the subject this one was derived from; null for the attack string
  readonly origin: string // how it came to be: "payload", "b64Decode:basic-auth", "http://host/x.sh", ...
}

/** What a plugin found, stored in the artifacts table and linked to its attack and subject. */
export const ARTIFACT_KINDS = ['decoded', 'file-type', 'fuzzy-hash', 'scan', 'saved-file', 'url', 'note'] as const
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number]

export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue }

export interface NewArtifact {
  readonly kind: ArtifactKind
  /** Details, kept as JSON (at most 64 KiB once serialised; larger is refused with an error in the run). */
  readonly info: { readonly [key: string]: JsonValue }
  /** An indexed value other plugins look up (fuzzy-hash: the block size; file-type: the type; scan: the verdict). */
  readonly matchKey?: string
}

/** Every outcome a download attempt can have; docs/plugins.md explains each. */
export const DOWNLOAD_OUTCOMES = [
  'ok', // the whole file was fetched (sha256 and bytes set)
  'cached', // the same URL was fetched successfully within plugins.downloads.recentUrlTtlMs: not fetched again
  'refused', // the target address is not allowed (loopback, private, the sensor's own, ...): never contacted
  'resolve-failed', // the host name did not resolve
  'connect-failed', // the connection was refused, reset or unreachable
  'timeout', // no complete answer within plugins.downloads.timeoutMs
  'too-large', // more than plugins.downloads.maxBytes: the bytes are dropped, nothing is kept
  'redirect-limit', // more than plugins.downloads.maxRedirects redirects, or a redirect loop
  'server-error', // the server answered with an error (HTTP status, FTP reply code, TFTP error packet)
  'protocol-error', // the server's answer broke the protocol
  'unsupported', // a URL or script the downloader recognised but cannot fetch (e.g. a scheme it does not speak)
] as const
export type DownloadOutcome = (typeof DOWNLOAD_OUTCOMES)[number]

/** One download attempt, success or failure. */
export interface DownloadAttempt {
  readonly url: string // what was asked for, as found in the subject (http://, https://, ftp://, tftp://)
  readonly outcome: DownloadOutcome
  readonly reason: string | null // detail: "HTTP 404", "address 10.0.0.1 is private", "ECONNREFUSED", ...
  readonly address: string | null // the address actually contacted, null when none was
  readonly bytes: number // bytes received (kept or not)
  readonly durationMs: number
  readonly sha256?: string // outcome cached: the sample fetched earlier (ctx.history.recentDownload's answer)
}

/** Where a downloader may connect; the same answer for every downloader (docs/plugins.md, "Address rules"). */
export type ResolvedTarget =
  | { readonly ok: true; readonly address: string; readonly family: 4 | 6 }
  | { readonly ok: false; readonly outcome: 'refused' | 'resolve-failed'; readonly reason: string }

/** The rules every downloader shares: one place decides where they may go and how much they may fetch. */
export interface DownloadKit {
  readonly maxBytes: number // a download larger than this is abandoned (outcome too-large)
  readonly timeoutMs: number // per download attempt, connect to last byte
  readonly maxRedirects: number
  readonly recentUrlTtlMs: number // a URL fetched successfully this recently is not fetched again (outcome cached)
  /**
   * Resolves `host` (a name or an address literal) and checks every address it has; the downloader must connect to
   * the returned address and no other (no second lookup), so a name cannot resolve differently between check and use.
   */
  resolve(host: string, signal: AbortSignal): Promise<ResolvedTarget>
  /** The same check for an address the downloader was handed directly (an FTP PASV or PORT reply, a TFTP peer). */
  checkAddress(address: string): string | null // the reason it is refused, or null when allowed
}

/** Narrow read access to earlier results, for plugins that compare (fuzzyHash similarity, recent downloads). */
export interface ArtifactHistory {
  /**
   * Artifacts of `kind` whose matchKey is one of `matchKeys`, newest first, at most `limit`. With `field` (a key of
   * their info), `info` is that field's value alone: much cheaper than the whole info when hundreds are compared.
   */
  find(kind: ArtifactKind, matchKeys: readonly string[], limit: number, field?: string): readonly { readonly attackId: string; readonly subjectSha256: string; readonly info: JsonValue }[]
  /** The sample sha256 of a successful download of `url` not older than `maxAgeMs`, or null. */
  recentDownload(url: string, maxAgeMs: number): string | null
}

export interface PluginContext {
  readonly log: Logger // bound to { plugin, attackId }
  /** Aborted at the plugin's deadline (plugins.timeoutMs) or at shutdown: pass it to every I/O call. */
  readonly signal: AbortSignal
  addArtifact(artifact: NewArtifact): void
  /** Decode phase only: a payload derived from the subject; it goes through the rest of the pipeline (bounded depth). */
  addPayload(data: Buffer, origin: string): void
  /**
   * Records a download attempt; with `sample` (outcome ok) the file is stored once by sha256 in the quarantine
   * directory and goes through the rest of the pipeline as a subject.
   */
  addDownload(attempt: DownloadAttempt, sample?: Buffer): void
  /** True the first time `key` is claimed within this attack (so a URL found twice is fetched once); false after. */
  claim(key: string): boolean
  readonly downloads: DownloadKit
  readonly history: ArtifactHistory
}

export interface Plugin {
  readonly name: string
  readonly phase: PluginPhase
  /** Which subjects it wants; default: every subject. */
  accepts?(subject: Subject): boolean
  /** Processes one subject. A throw or a rejection is recorded as the run's failure; the other plugins still run. */
  process(subject: Subject, ctx: PluginContext): Promise<void>
  close?(): Promise<void>
}

/** What a plugin module gets when it is created (its own options come from its entry in the config). */
export interface PluginEnv {
  readonly log: Logger
  readonly dataDir: string // a directory the plugin may write to (quarantine, saved files, logs live under it)
}

/**
 * A plugin module's default export: `export default function createPlugin(options, env) { return { name, phase,
 * process } }`. `options` is the `options` object of its config entry, unvalidated: the plugin checks it and throws
 * on a bad value (the error is shown with the plugin's name at start-up).
 */
export type PluginFactory = (options: Readonly<Record<string, unknown>>, env: PluginEnv) => Plugin | Promise<Plugin>
