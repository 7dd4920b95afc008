import Database from 'better-sqlite3'

let probe: Database.Statement<[string]> | null = null

/**
 * Checks an FTS5 query's syntax against SQLite itself (an empty in-memory index with the tokenizer of attack_text),
 * so that a bad `--match` fails before any database is opened, with SQLite's own words. Returns null when the query
 * is valid, else the problem.
 */
export function checkFtsQuery(query: string): string | null {
  if (probe === null) {
    const db = new Database(':memory:')
    db.exec("CREATE VIRTUAL TABLE t USING fts5(text, content = '', tokenize = 'unicode61 remove_diacritics 0')")
    probe = db.prepare<[string]>('SELECT rowid FROM t WHERE t MATCH ?')
  }
  try {
    probe.all(query)
    return null
  } catch (err) {
    return (err instanceof Error ? err.message : String(err)).replace(/^fts5: /, '')
  }
}
