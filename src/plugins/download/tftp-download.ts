import { z } from 'zod'
import type { Plugin, PluginContext, Subject } from '../plugin.js'
import { fetchTftp } from './tftp-client.js'
import { parseTftpScript, TFTP_SCRIPT_LIMITS, type TftpJob } from './tftp-script.js'

/** Options of the tftpDownload plugin (docs/plugins.md). */
export const TftpDownloadOptions = z
  .strictObject({
    maxJobs: z.number().int().min(1).max(TFTP_SCRIPT_LIMITS.maxJobs).default(8), // files fetched per subject, at most
    retransmitMs: z.number().int().min(50).max(10_000).default(1_000), // ms before the last RRQ or ACK is sent again
    maxRetries: z.number().int().min(0).max(20).default(5), // retransmissions without progress before giving up
    rollover: z.union([z.literal('auto'), z.literal(0), z.literal(1)]).default('auto'), // block number after 65535
    answerStrangers: z.boolean().default(true), // ERROR 5 to packets from another port of the server (RFC 1350)
  })
  .prefault({})

/**
 * tftpDownload: finds the TFTP fetches a payload asks for (`tftp -i HOST GET FILE`, busybox `tftp -g -r FILE HOST`,
 * `tftp://` URLs) and downloads each file once per attack, recording every attempt and handing samples on.
 */
export function createTftpDownloadPlugin(options: z.infer<typeof TftpDownloadOptions>): Plugin {
  return {
    name: 'tftpDownload',
    phase: 'decode',
    async process(subject: Subject, ctx: PluginContext): Promise<void> {
      for (const job of parseTftpScript(subject.data, { maxJobs: options.maxJobs })) {
        if (ctx.signal.aborted) return
        await download(job, options, ctx)
      }
    },
  }
}

async function download(job: TftpJob, options: z.infer<typeof TftpDownloadOptions>, ctx: PluginContext): Promise<void> {
  const url = tftpUrl(job)
  if (!ctx.claim(url)) return
  const cached = ctx.downloads.recentUrlTtlMs > 0 ? ctx.history.recentDownload(url, ctx.downloads.recentUrlTtlMs) : null
  if (cached !== null) {
    ctx.addDownload({ url, outcome: 'cached', reason: `fetched recently as sample ${cached}`, address: null, bytes: 0, durationMs: 0, sha256: cached })
    return
  }
  const result = await fetchTftp({
    host: job.host,
    port: job.port,
    file: job.file,
    downloads: ctx.downloads,
    signal: ctx.signal,
    retransmitMs: options.retransmitMs,
    maxRetries: options.maxRetries,
    rollover: options.rollover,
    answerStrangers: options.answerStrangers,
  })
  ctx.log.debug({ outcome: result.outcome, address: result.address, bytes: result.bytes, durationMs: result.durationMs }, 'tftp download')
  const attempt = { url, outcome: result.outcome, reason: result.reason, address: result.address, bytes: result.bytes, durationMs: result.durationMs }
  ctx.addDownload(attempt, result.data ?? undefined)
}

/**
 * The URL a job is recorded (and claimed, and looked up in the history) under: always with the port, the file name
 * percent-encoded byte by byte (RFC 3617), so one file has one URL whichever syntax the script used.
 */
export function tftpUrl(job: TftpJob): string {
  const host = job.host.includes(':') ? `[${job.host}]` : job.host
  let path = ''
  for (let i = 0; i < job.file.length; i++) {
    const c = job.file[i] as string
    path += /[A-Za-z0-9._~\-/]/.test(c) ? c : `%${job.file.charCodeAt(i).toString(16).toUpperCase().padStart(2, '0')}`
  }
  return `tftp://${host}:${job.port}/${path}`
}
