-- 003-plugins: what the post-processing plugins did with each attack (docs/plugins.md, docs/schema.md).
-- Applied by src/store/migrate.ts inside one transaction that also sets PRAGMA user_version = 3.
-- New tables only: no attack row is rewritten, so the migration takes milliseconds on a database of any size, and
-- attacks stored before it simply have no plugin runs (`honeytrap-ts replay` runs the plugins over them).
-- Everything here is written by the plugin pipeline (src/plugins/pipeline-store.ts), never by the attack writer.

-- One row per plugin and subject of an attack: the unit of work, of idempotence and of failure. A subject is the
-- attack string itself (subject_sha256 = attacks.sha256), a payload a decoder derived from it, or a downloaded sample.
-- A plugin that succeeded on a subject is never run on it again (replay skips it), which is what keeps artifacts from
-- being duplicated; a failed run is replaced, with its artifacts, when the plugin is run again.
CREATE TABLE plugin_runs (
  id             INTEGER PRIMARY KEY,
  attack_id      TEXT    NOT NULL,                                 -- attacks.id
  subject_sha256 TEXT    NOT NULL,                                 -- lowercase hex SHA-256 of the subject's bytes
  plugin         TEXT    NOT NULL,                                 -- the plugin's name, e.g. httpDownload
  status         TEXT    NOT NULL CHECK (status IN ('ok', 'failed', 'timeout', 'crashed')),
  -- failed: the plugin threw or rejected; timeout: it passed plugins.timeoutMs; crashed: it took its worker down
  -- (process.exit, a native crash, memory) or blocked it past the deadline.
  error          TEXT,                                             -- what went wrong (NULL when ok), at most 1,000 chars
  started_at     INTEGER NOT NULL,                                 -- ms since epoch, UTC
  duration_ms    INTEGER NOT NULL,
  UNIQUE (attack_id, subject_sha256, plugin)
);

-- What the plugins found. kind: decoded (data holds the payload), file-type, fuzzy-hash, scan, saved-file, url, note.
CREATE TABLE artifacts (
  id             INTEGER PRIMARY KEY,
  run_id         INTEGER NOT NULL REFERENCES plugin_runs (id) ON DELETE CASCADE,
  attack_id      TEXT    NOT NULL,                                 -- attacks.id (also via run_id; here for the index)
  subject_sha256 TEXT    NOT NULL,                                 -- the subject it describes (or was derived from)
  kind           TEXT    NOT NULL,
  match_key      TEXT,                                             -- indexed lookup value (fuzzy-hash: block size, ...)
  sha256         TEXT,                                             -- decoded: SHA-256 of data
  size           INTEGER,                                          -- decoded: length(data)
  data           BLOB,                                             -- decoded: the payload, at most plugins.maxSubjectBytes
  info           TEXT    NOT NULL                                  -- JSON object, the plugin's details
);
CREATE INDEX artifacts_attack_id ON artifacts (attack_id);
CREATE INDEX artifacts_kind_match_key ON artifacts (kind, match_key);

-- Downloaded files, once per distinct content, whichever attacks and URLs led to them. The bytes live in the
-- quarantine directory (path), readable by the owner only and never executable.
CREATE TABLE samples (
  sha256         TEXT    PRIMARY KEY,
  size           INTEGER NOT NULL,
  first_seen     INTEGER NOT NULL,                                 -- ms since epoch, UTC
  path           TEXT    NOT NULL                                  -- where the quarantine keeps it
) WITHOUT ROWID;

-- Every download attempt, success or failure (outcomes: DOWNLOAD_OUTCOMES in src/plugins/plugin.ts).
CREATE TABLE downloads (
  id             INTEGER PRIMARY KEY,
  run_id         INTEGER NOT NULL REFERENCES plugin_runs (id) ON DELETE CASCADE,
  attack_id      TEXT    NOT NULL,
  subject_sha256 TEXT    NOT NULL,                                 -- the subject the URL or script was found in
  plugin         TEXT    NOT NULL,                                 -- httpDownload, ftpDownload, tftpDownload, ...
  url            TEXT    NOT NULL,                                 -- as found, control bytes escaped, at most 2,048 chars
  outcome        TEXT    NOT NULL,
  reason         TEXT,
  address        TEXT,                                             -- the address connected to; NULL when none was
  bytes          INTEGER NOT NULL,                                 -- bytes received, kept or not
  sha256         TEXT,                                             -- samples.sha256 when outcome is ok or cached
  started_at     INTEGER NOT NULL,
  duration_ms    INTEGER NOT NULL
);
CREATE INDEX downloads_attack_id ON downloads (attack_id);
-- "Was this URL fetched lately?" (plugins.downloads.recentUrlTtlMs) and "which attacks point at this URL?".
CREATE INDEX downloads_url ON downloads (url, started_at);
CREATE INDEX downloads_sha256 ON downloads (sha256);

-- The live pipeline's progress: `cursor` is the rowid of the last attack it has taken (attacks are read in rowid
-- order, which is commit order); `skipped` counts attacks passed over because the backlog exceeded
-- plugins.maxBacklog (replay runs them later).
CREATE TABLE pipeline_state (
  key   TEXT    PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
