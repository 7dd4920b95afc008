import { z } from 'zod'
import type { Plugin, PluginContext } from '../plugin.js'
import { sanitizeUrl } from './extract-urls.js'
import { fetchFtpFile } from './ftp-client.js'
import { parseFtpScript, type FtpJob } from './ftp-script.js'

/** Options of the ftpDownload downloader. */
export const FtpDownloadOptions = z
  .strictObject({
    // How the data connection is opened: passive works from behind NAT, active is what Windows ftp.exe uses.
    mode: z.enum(['passive', 'active', 'passive-then-active']).default('passive-then-active'),
    maxJobs: z.number().int().min(1).max(16).default(8), // FTP sessions (host, port, login) followed per subject
    maxFilesPerJob: z.number().int().min(1).max(32).default(8), // files fetched per session
  })
  .prefault({})

/**
 * ftpDownload: fetches the files that Windows FTP dropper scripts (`echo open ... >> f & ftp -s:f`) and `ftp://` URLs
 * in a subject ask for, one FTP session per file, and hands each to the pipeline as a sample. Each attempt is
 * recorded under `ftp://host:port/file` (without the login, which stays out of the records).
 */
export function createFtpDownloadPlugin(options: z.infer<typeof FtpDownloadOptions>): Plugin {
  return {
    name: 'ftpDownload',
    phase: 'decode',
    async process(subject, ctx): Promise<void> {
      const jobs = parseFtpScript(subject.data, { maxJobs: options.maxJobs, maxFilesPerJob: options.maxFilesPerJob })
      for (const job of jobs) {
        for (const file of job.files) {
          if (ctx.signal.aborted) return
          await fetchOne(job, file, ctx, options)
        }
      }
    },
  }
}

async function fetchOne(job: FtpJob, file: string, ctx: PluginContext, options: z.infer<typeof FtpDownloadOptions>): Promise<void> {
  const url = ftpUrl(job.host, job.port, file)
  if (!ctx.claim(url)) return
  const cached = ctx.downloads.recentUrlTtlMs > 0 ? ctx.history.recentDownload(url, ctx.downloads.recentUrlTtlMs) : null
  if (cached !== null) {
    ctx.addDownload({ url, outcome: 'cached', reason: `fetched recently as sample ${cached}`, address: null, bytes: 0, durationMs: 0, sha256: cached })
    return
  }
  const started = performance.now()
  const result = await fetchFtpFile({ host: job.host, port: job.port, user: job.user, password: job.password, file, mode: options.mode }, ctx.downloads, ctx.signal)
  const durationMs = Math.round(performance.now() - started)
  ctx.log.debug({ url, outcome: result.outcome, modeHint: job.modeHint, bytes: result.bytes }, 'ftp download')
  const attempt = { url, outcome: result.outcome, reason: result.reason, address: result.address, bytes: result.bytes, durationMs }
  if (result.data !== null) ctx.addDownload(attempt, result.data)
  else ctx.addDownload(attempt)
}

/** The URL an attempt is recorded and de-duplicated under: no login, the path percent-encoded where it must be. */
export function ftpUrl(host: string, port: number, file: string): string {
  const authority = host.includes(':') ? `[${host}]` : host
  // Latin1 chars are the file name's bytes: encode them as bytes, not as the UTF-8 of their code points.
  const path = [...file].map((c) => (c.charCodeAt(0) > 0x20 && c.charCodeAt(0) < 0x7f && c !== '%' && c !== '#' && c !== '?' ? c : `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)).join('')
  return sanitizeUrl(`ftp://${authority}:${port}/${path.replace(/^\//, '%2F')}`)
}
