import type Database from 'better-sqlite3'

/** What the plugins stored for one attack, in the export's field names (docs/schema.md, docs/plugins.md). */
export interface ExportPluginRun {
  readonly plugin: string
  readonly subject_sha256: string
  readonly status: 'ok' | 'failed' | 'timeout' | 'crashed'
  readonly error: string | null
  readonly started_at: string
  readonly duration_ms: number
}

export interface ExportArtifact {
  readonly plugin: string
  readonly subject_sha256: string
  readonly kind: string
  readonly match_key: string | null
  readonly info: unknown // the plugin's JSON details
  readonly sha256: string | null // decoded payloads: their digest, size and bytes
  readonly size: number | null
  readonly data_base64: string | null
}

export interface ExportDownload {
  readonly plugin: string
  readonly subject_sha256: string
  readonly url: string
  readonly outcome: string
  readonly reason: string | null
  readonly address: string | null
  readonly bytes: number
  readonly sha256: string | null // the sample in the quarantine, when outcome is ok or cached
  readonly started_at: string
  readonly duration_ms: number
}

export interface PluginResults {
  readonly plugin_runs: readonly ExportPluginRun[]
  readonly artifacts: readonly ExportArtifact[]
  readonly downloads: readonly ExportDownload[]
}

const EMPTY: PluginResults = { plugin_runs: [], artifacts: [], downloads: [] }

/**
 * Reads the plugin results of attacks, one attack at a time, through statements prepared once. A database from before
 * schema 3 has none: every attack reads as having no results.
 */
export function pluginResultsReader(db: Database.Database): (attackId: string) => PluginResults {
  const present = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'plugin_runs'").get() !== undefined
  if (!present) return () => EMPTY
  const runs = db.prepare<[string], { plugin: string; subject_sha256: string; status: ExportPluginRun['status']; error: string | null; started_at: number; duration_ms: number }>(
    'SELECT plugin, subject_sha256, status, error, started_at, duration_ms FROM plugin_runs WHERE attack_id = ? ORDER BY id',
  )
  const artifacts = db.prepare<[string], { plugin: string; subject_sha256: string; kind: string; match_key: string | null; info: string; sha256: string | null; size: number | null; data: Buffer | null }>(
    'SELECT r.plugin, a.subject_sha256, a.kind, a.match_key, a.info, a.sha256, a.size, a.data FROM artifacts a JOIN plugin_runs r ON r.id = a.run_id WHERE a.attack_id = ? ORDER BY a.id',
  )
  const downloads = db.prepare<[string], { plugin: string; subject_sha256: string; url: string; outcome: string; reason: string | null; address: string | null; bytes: number; sha256: string | null; started_at: number; duration_ms: number }>(
    'SELECT plugin, subject_sha256, url, outcome, reason, address, bytes, sha256, started_at, duration_ms FROM downloads WHERE attack_id = ? ORDER BY id',
  )
  return (attackId) => {
    const attackRuns = runs.all(attackId)
    // Artifacts and downloads belong to a run: an attack without runs has neither, and two queries are saved.
    if (attackRuns.length === 0) return EMPTY
    return readResults(attackId, attackRuns)
  }
  function readResults(attackId: string, attackRuns: ReturnType<typeof runs.all>): PluginResults {
    return {
      plugin_runs: attackRuns.map((r) => ({ ...r, started_at: new Date(r.started_at).toISOString() })),
      artifacts: artifacts.all(attackId).map((a) => ({
        plugin: a.plugin,
        subject_sha256: a.subject_sha256,
        kind: a.kind,
        match_key: a.match_key,
        info: parseInfo(a.info),
        sha256: a.sha256,
        size: a.size,
        data_base64: a.data === null ? null : a.data.toString('base64'),
      })),
      downloads: downloads.all(attackId).map((d) => ({ ...d, started_at: new Date(d.started_at).toISOString() })),
    }
  }
}

function parseInfo(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return { unreadable: text.slice(0, 200) }
  }
}
