-- 001-initial: the attacks table and a small meta table.
-- Applied by src/store/migrate.ts inside one transaction that also sets PRAGMA user_version = 1.
-- Times are integers in milliseconds since the Unix epoch (UTC); byte counts are integers; booleans are 0/1.

-- A rowid table, not WITHOUT ROWID: each row carries its payload BLOB (up to the read limit, 1 MiB by default), and
-- SQLite advises WITHOUT ROWID only for rows smaller than about a twentieth of a page. Here the B-tree keyed by rowid
-- keeps the blobs in overflow pages while the ULID primary key lives in its own small index.
CREATE TABLE attacks (
  id             TEXT    PRIMARY KEY,                               -- ULID: 26 chars, sorts by start time
  protocol       TEXT    NOT NULL CHECK (protocol IN ('tcp', 'udp')),
  family         INTEGER NOT NULL CHECK (family IN (4, 6)),         -- IP version
  mode           TEXT    NOT NULL,                                  -- responder mode that served the session
  src_ip         TEXT    NOT NULL,                                  -- attacker address, textual IPv4 or IPv6
  src_port       INTEGER NOT NULL,
  dst_ip         TEXT    NOT NULL,                                  -- sensor address that was attacked
  dst_port       INTEGER NOT NULL,
  started_at     INTEGER NOT NULL,                                  -- ms since epoch, UTC
  ended_at       INTEGER NOT NULL,                                  -- ms since epoch, UTC
  close_reason   TEXT    NOT NULL,
  bytes_received INTEGER NOT NULL,                                  -- every byte the attacker sent, kept or not
  bytes_sent     INTEGER NOT NULL,
  truncated      INTEGER NOT NULL CHECK (truncated IN (0, 1)),      -- 1: bytes past the read limit were not kept
  payload        BLOB    NOT NULL,                                  -- the attack string (bytes kept), may be empty
  payload_size   INTEGER NOT NULL,                                  -- length(payload), stored so lists need not read it
  md5            TEXT    NOT NULL,                                  -- lowercase hex digests of payload
  sha256         TEXT    NOT NULL,
  sha512         TEXT    NOT NULL
);

-- Newest-first listings and "since" filters.
CREATE INDEX attacks_started_at ON attacks (started_at);
-- Listings filtered by attacked port, still in time order.
CREATE INDEX attacks_dst_port_started_at ON attacks (dst_port, started_at);
-- "Everything from this attacker".
CREATE INDEX attacks_src_ip ON attacks (src_ip);
-- "Have we seen this payload before?"
CREATE INDEX attacks_sha256 ON attacks (sha256);

-- Facts about the database file itself. The schema version is PRAGMA user_version, never a row here, so that there
-- is one source of truth for it.
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
