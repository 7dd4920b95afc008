-- 005-fulltext: full-text search over the printable text of attack strings (`attacks list --text/--match`), and
-- the indexes that keep `attacks stats` under a second on a million attacks.
-- Applied by src/store/migrate.ts inside one transaction that also sets PRAGMA user_version = 5.
--
-- attack_text is an FTS5 index keyed by attacks.rowid. Contentless (content=''): the text is derived from the payload
-- (src/store/printable-text.ts: runs of 4+ printable ASCII or UTF-16LE characters, at most 64 Ki characters per
-- attack), so a second copy of it would only double the file; a search returns rowids and the rows come from attacks.
-- contentless_delete=1 lets a row be removed by rowid, which retention needs. The unicode61 tokenizer splits on
-- anything that is not a letter or a digit, so "/bin/busybox" is the two tokens bin, busybox and the phrase
-- "bin busybox" finds it; remove_diacritics 0 keeps bytes as they were sent.
--
-- The writer (src/store/sqlite-writer.ts) inserts a row in the same transaction as its attack; the trigger below
-- removes it with the attack, whoever deletes (db retention, a future tool), so the index never names a missing row.
CREATE VIRTUAL TABLE attack_text USING fts5(
  text,
  content = '',
  contentless_delete = 1,
  tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TRIGGER attacks_text_delete AFTER DELETE ON attacks BEGIN
  DELETE FROM attack_text WHERE rowid = old.rowid;
END;

-- Attacks stored before this migration. ht_printable is registered by migrate.ts on the migrating connection. On a
-- large database this is the one migration that takes time (about 100,000 attacks a second here): it runs once.
INSERT INTO attack_text (rowid, text)
  SELECT rowid, ht_printable(payload) FROM attacks WHERE payload_size > 0;

-- Indexes for `attacks stats` and the source filters on a large file, found with the million-attack benchmark
-- (npm run bench, section f): each one lets a query read only an index instead of every row.
-- Top ports by protocol: a covering scan, already grouped.
CREATE INDEX attacks_dst_port_protocol ON attacks (dst_port, protocol);
-- "Was this source seen before?" is one seek per source; it also serves every lookup attacks_src_ip served.
CREATE INDEX attacks_src_ip_started_at ON attacks (src_ip, started_at);
DROP INDEX attacks_src_ip;
