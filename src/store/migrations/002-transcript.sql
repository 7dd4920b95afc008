-- 002-transcript: what the sensor sent back, the order of the exchange, and what a mirror or proxy session did.
-- Applied by src/store/migrate.ts inside one transaction that also sets PRAGMA user_version = 2.
-- One new table and ADD COLUMNs, each with a constant default: SQLite records the default in the schema and rewrites
-- no row, so the migration takes the same few milliseconds on a database of any size. Rows written before it read
-- back as: no response (response_size 0, response_sha256 NULL), transcript NULL, relay columns NULL ("not recorded":
-- bytes_sent still says how much was sent).

-- The bytes sent to the attacker (template replies, or what a relay target sent), capped at the read limit like
-- payload, are stored once per distinct content in `responses` and referenced by their digest: a port answering from a
-- template sends the same bytes to every attacker, and a copy per attack would take more room than the attacks.
CREATE TABLE responses (
  sha256 TEXT PRIMARY KEY,                                           -- lowercase hex SHA-256 of data
  data   BLOB NOT NULL
);
-- length of the response, stored so listings need not read the BLOB.
ALTER TABLE attacks ADD COLUMN response_size INTEGER NOT NULL DEFAULT 0;
-- 1: bytes sent past the read limit were not kept.
ALTER TABLE attacks ADD COLUMN response_truncated INTEGER NOT NULL DEFAULT 0 CHECK (response_truncated IN (0, 1));
-- The response: responses.sha256 (the row holding its bytes). Always set by the writer from schema 2 on (an empty
-- response has the digest of the empty string, and a row of its own); NULL only on rows written before this
-- migration, whose response was not recorded. Not a declared foreign key: the writer inserts the response first in
-- the same transaction, and a declared one would cost a lookup per attack for nothing.
ALTER TABLE attacks ADD COLUMN response_sha256 TEXT;

-- The exchange in order, as compact JSON: an array of [direction, offset_ms, size] triples, e.g.
--   [["in",0,517],["out",1,1024],["in",250,40]]
-- direction: "in" (from the attacker) or "out" (to the attacker); offset_ms: milliseconds since started_at; size: bytes.
-- The bytes are not repeated: the i-th "in" triple is the next size bytes of payload, the "out" triples slice
-- the response the same way, each direction from offset 0. The triples cover a prefix of each direction (bytes past the
-- read limit are not listed). '[]' for a session without a byte either way; NULL for rows written before this migration.
ALTER TABLE attacks ADD COLUMN transcript TEXT;
-- 1: the session had more chunks than responder.maxTranscriptChunks; the later ones are not listed.
ALTER TABLE attacks ADD COLUMN transcript_truncated INTEGER NOT NULL DEFAULT 0 CHECK (transcript_truncated IN (0, 1));

-- Mirror and proxy sessions only; all three NULL for every other session.
-- relay_target: "address:port" ("[v6]:port"), or "host:port" for a proxy target whose name did not resolve.
ALTER TABLE attacks ADD COLUMN relay_target TEXT;
-- relayed: the session was relayed to relay_target; fallback: it was served in normal mode instead (see fallback_reason).
ALTER TABLE attacks ADD COLUMN relay_outcome TEXT CHECK (relay_outcome IN ('relayed', 'fallback'))
  CHECK ((relay_outcome IS NULL) = (relay_target IS NULL));
-- Why a session fell back (own-address, loop, connect-refused, ...: FallbackReason in src/attack/attack.ts). Not
-- constrained to that list, so that a reason added later needs no migration.
ALTER TABLE attacks ADD COLUMN fallback_reason TEXT;

-- No index on relay_outcome: it has three values, NULL for most rows, and no listing filters on it; a query for the
-- fallbacks of a period goes through attacks_started_at. A partial index (WHERE relay_outcome IS NOT NULL) can come
-- in a later migration if the API ever filters on it.
