/**
 * SQLite failures that are the host's doing, not a bug: the disk is full, or the database
 * cannot be written at all. They answer 503 with their own code (the client retries; the
 * operator frees space or fixes the disk) instead of 500 INTERNAL with a stack.
 *
 * Which result codes (better-sqlite3 puts SQLite's extended code on `err.code`):
 *  - SQLITE_FULL: SQLite's own "database or disk is full" — a write got ENOSPC (unixWrite maps
 *    ENOSPC to SQLITE_FULL), or the database reached max_page_count.
 *  - SQLITE_IOERR_SHMSIZE: the WAL index (-shm) could not grow, which on Linux means no space.
 *  Both → STORAGE_FULL (503, Retry-After; exit 75). Nothing is half written: the transaction
 *  rolls back, and writes succeed again once space is freed.
 *  - SQLITE_READONLY*, the other SQLITE_IOERR_* (EIO, EDQUOT on write, fsync failures),
 *    SQLITE_CANTOPEN: the disk went read-only, is failing, or the file was taken away. Not a
 *    bug either, but not self-healing: → STORAGE_UNAVAILABLE (503; exit 69).
 * SQLITE_CORRUPT, SQLITE_CONSTRAINT and the rest stay what they are (a bug: INTERNAL).
 */
import {MeshError} from '../../../shared/errors.js'

const FULL = new Set(['SQLITE_FULL', 'SQLITE_IOERR_SHMSIZE'])
const UNAVAILABLE = /^SQLITE_(?:READONLY|IOERR|CANTOPEN)(?:_[A-Z_]+)?$/

/** The MeshError for a storage failure, or undefined when `err` is something else. */
export function storageError(err: unknown): MeshError | undefined {
  const code = (err as {code?: unknown} | null | undefined)?.code
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return undefined
  // The SQLite code stays in `cause` (for the log), off the wire.
  if (FULL.has(code)) return new MeshError('STORAGE_FULL', {cause: err})
  if (UNAVAILABLE.test(code)) return new MeshError('STORAGE_UNAVAILABLE', {cause: err})
  return undefined
}

export const isStorageErrorCode = (code: string): boolean =>
  code === 'STORAGE_FULL' || code === 'STORAGE_UNAVAILABLE'

interface MinimalLogger {
  error(obj: object, msg: string): void
}

/**
 * One log line per `intervalMs` for storage failures, with how many were left out since the
 * last one, and no stack: a full disk fails every write, and a stack per request would fill
 * what is left of the disk with the same line.
 */
export class StorageFailureLog {
  private lastAt = -Infinity
  private suppressed = 0

  constructor(
    private readonly log: MinimalLogger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Logs (or counts) one failure; `where` names what failed (a route, "ephemeral sweep"). */
  report(error: MeshError, where: string): void {
    const t = this.now()
    if (t - this.lastAt < this.intervalMs) {
      this.suppressed++
      return
    }
    const sqlite = (error.cause as {code?: unknown} | undefined)?.code
    this.log.error(
      {code: error.code, sqlite, where, suppressed: this.suppressed},
      `${error.message}: writes fail until ${error.code === 'STORAGE_FULL' ? 'space is freed' : 'the disk is fixed'}` +
        (this.suppressed > 0 ? ` (${this.suppressed} more such failures not logged)` : ''),
    )
    this.lastAt = t
    this.suppressed = 0
  }
}
