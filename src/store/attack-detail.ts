import type Database from 'better-sqlite3'
import { hasTable } from './attack-query.js'

/** The samples of one attack, for `honeytrap-ts attacks show` (the attack row itself: getAttackRow in attack-query.ts). */

/** One row of `samples`: a downloaded file, stored once per distinct content (docs/schema.md). */
export interface SampleRow {
  readonly sha256: string
  readonly size: number // bytes
  readonly first_seen: number // ms since epoch, UTC
  readonly path: string // in the quarantine
}

/** The samples that downloads of attack `id` led to, by digest; none before schema 3. */
export function getAttackSamples(db: Database.Database, id: string): SampleRow[] {
  if (!hasTable(db, 'samples') || !hasTable(db, 'downloads')) return []
  return db
    .prepare<[string], SampleRow>(
      'SELECT sha256, size, first_seen, path FROM samples WHERE sha256 IN (SELECT sha256 FROM downloads WHERE attack_id = ? AND sha256 IS NOT NULL) ORDER BY sha256',
    )
    .all(id)
}
