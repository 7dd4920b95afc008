/** The SQLite result code of an error from better-sqlite3 (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_PRIMARYKEY`, ...), or ''. */
function sqliteCode(err: unknown): string {
  const code: unknown = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : ''
}

/** A constraint violation: the same write would fail the same way every time. */
export function isConstraintError(err: unknown): boolean {
  return sqliteCode(err).startsWith('SQLITE_CONSTRAINT')
}

/** SQLITE_BUSY, SQLITE_LOCKED and their extended codes: another connection holds a lock the write needs; waiting is the fix. */
export function isLockError(err: unknown): boolean {
  const code = sqliteCode(err)
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')
}
