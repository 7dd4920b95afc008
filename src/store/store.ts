import type { Attack } from '../attack/attack.js'

/** Counters of one store since it was opened; all are attack counts except `batches`, `writeErrors` and `lockWaits`. */
export interface StoreStats {
  readonly queued: number // enqueued, not yet committed (waiting for its batch or in flight to the writer)
  readonly written: number // committed to the database
  readonly dropped: number // never written: queue full, store closed, writer gone, or a batch that kept failing
  readonly batches: number // batches committed (one transaction each)
  readonly writeErrors: number // failed write attempts, retries included (a locked database is not one)
  readonly lockWaits: number // write attempts that found the database locked by another process and were tried again later
}

/**
 * Where finished attacks go. The responder calls `enqueue` on its hot path, so the store does its work elsewhere
 * (the SQLite store: batches on a timer) and reports trouble through logs and `stats()`, never by throwing.
 */
export interface AttackStore {
  /** Queues a finished attack; O(1), never blocks, never throws. Past the queue bound it drops and counts. */
  enqueue(attack: Attack): void
  /** Resolves when everything enqueued before the call is committed (or, after repeated failures, counted as dropped). */
  flush(): Promise<void>
  /** Flushes and closes the database. Idempotent. */
  close(): Promise<void>
  stats(): StoreStats
}
