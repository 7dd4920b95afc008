-- 004-plugin-indexes: the artifacts and downloads of a plugin run, found by their run.
-- Applied by src/store/migrate.ts inside one transaction that also sets PRAGMA user_version = 4.
-- Replacing a failed run (plugin_runs ON DELETE CASCADE, with foreign_keys on as the writers set it) and `db retention`
-- look children up by run_id; without these indexes each such delete scanned both tables whole.
CREATE INDEX artifacts_run_id ON artifacts (run_id);
CREATE INDEX downloads_run_id ON downloads (run_id);
