import { z } from 'zod'
import type { DownloadAttempt, Plugin, PluginContext, Subject } from '../plugin.js'
import { extractUrls, type ExtractedUrl } from './extract-urls.js'
import { fetchHttp } from './http-fetch.js'

/** Options of the httpDownload plugin (the address rules, size and time caps are plugins.downloads, shared). */
export const HttpDownloadOptions = z
  .strictObject({
    maxUrls: z.number().int().min(1).max(256).default(16), // URLs taken from one subject; the rest are ignored
    maxUrlChars: z.number().int().min(16).max(8_192).default(2_048), // a longer URL is ignored, never cut
    concurrency: z.number().int().min(1).max(8).default(2), // downloads in flight at once for one subject
    // Sent on every request. Droppers fetch with wget or curl, and many malware hosts answer a browser or an unknown
    // client with a decoy or nothing: looking like the dropper's own tool (Debian 12's wget) gets the real sample.
    userAgent: z.string().min(1).max(256).regex(/^[\x20-\x7e]+$/, 'printable ASCII only').default('Wget/1.21.3'),
    maxHeaderBytes: z.number().int().min(1_024).max(64 * 1_024).default(16 * 1_024), // response headers, bytes
    // Also fetch URLs found in downloaded files (a dropper script's second stages), within plugins.maxDepth.
    followSamples: z.boolean().default(false),
  })
  .prefault({})

const SCHEMES = ['http', 'https'] as const

/**
 * httpDownload: fetches the http(s) URLs found in the attack string and in every decoded payload, under the shared
 * address rules (plugins.downloads), and hands each attempt and each sample to the pipeline. No shell, ever: a URL
 * is parsed, never interpolated, so shell metacharacters in it are only path bytes. Network trouble is an
 * attempt's outcome; the plugin throws only on a bug.
 */
export function createHttpDownloadPlugin(options: z.infer<typeof HttpDownloadOptions>): Plugin {
  return {
    name: 'httpDownload',
    phase: 'decode',
    accepts(subject: Subject): boolean {
      return subject.kind !== 'sample' || options.followSamples
    },
    async process(subject, ctx): Promise<void> {
      const found = extractUrls(subject.data, { schemes: SCHEMES, maxUrls: options.maxUrls, maxUrlChars: options.maxUrlChars })
      const toFetch: ExtractedUrl[] = []
      for (const item of found) {
        // Claimed per attack: a URL in the attack string and again in its base64 form is fetched once.
        if (!ctx.claim(item.url)) continue
        const sha256 = ctx.history.recentDownload(item.url, ctx.downloads.recentUrlTtlMs)
        if (sha256 === null) {
          toFetch.push(item)
          continue
        }
        ctx.addDownload({ ...attempt(item.url, 'cached', `fetched recently as sample ${sha256}`), sha256 })
        ctx.addArtifact({ kind: 'url', matchKey: hostOf(item.url), info: { url: item.url, cached: sha256, credentialsRemoved: item.credentialsRemoved } })
      }
      await runLimited(toFetch, options.concurrency, ctx.signal, (item) => download(item, options, ctx))
    },
  }
}

async function download(item: ExtractedUrl, options: z.infer<typeof HttpDownloadOptions>, ctx: PluginContext): Promise<void> {
  const result = await fetchHttp(item.url, ctx.downloads, { userAgent: options.userAgent, maxHeaderBytes: options.maxHeaderBytes, signal: ctx.signal })
  ctx.addDownload(result.attempt, result.sample ?? undefined)
  const d = result.details
  ctx.addArtifact({
    kind: 'url',
    matchKey: hostOf(item.url),
    info: {
      url: item.url,
      outcome: result.attempt.outcome,
      credentialsRemoved: item.credentialsRemoved,
      redirects: [...d.redirects],
      tlsVerified: d.tlsVerified,
      httpStatus: d.httpStatus,
      contentType: d.contentType,
    },
  })
  ctx.log.debug({ outcome: result.attempt.outcome, bytes: result.attempt.bytes, durationMs: result.attempt.durationMs }, 'http download')
}

/** Runs `work` over `items` with at most `limit` at once; stops starting new ones once `signal` is aborted. */
async function runLimited<T>(items: readonly T[], limit: number, signal: AbortSignal, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  async function worker(): Promise<void> {
    while (next < items.length && !signal.aborted) {
      const item = items[next++] as T
      await work(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()))
}

function attempt(url: string, outcome: DownloadAttempt['outcome'], reason: string | null): DownloadAttempt {
  return { url, outcome, reason, address: null, bytes: 0, durationMs: 0 }
}

// The artifact's lookup key: the host, so "every sample from this server" is one indexed query.
function hostOf(url: string): string {
  return new URL(url).host
}
