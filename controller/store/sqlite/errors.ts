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

/** The MeshError for a SQLite storage failure, or undefined when `err` is something else. */
export function sqliteStorageError(err: unknown): MeshError | undefined {
  const code = (err as {code?: unknown} | null | undefined)?.code
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return undefined
  // The SQLite code stays in `cause` (for the log), off the wire.
  if (FULL.has(code)) return new MeshError('STORAGE_FULL', {cause: err})
  if (UNAVAILABLE.test(code)) return new MeshError('STORAGE_UNAVAILABLE', {cause: err})
  return undefined
}

/**
 * The table and columns of a violated UNIQUE constraint, from better-sqlite3's
 * "UNIQUE constraint failed: nodes.network_id, nodes.name"; undefined for anything else.
 */
export function sqliteUniqueViolation(err: unknown): {table: string; columns: string[]} | undefined {
  const e = err as {code?: unknown; message?: unknown} | null | undefined
  if (e?.code !== 'SQLITE_CONSTRAINT_UNIQUE' && e?.code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') return undefined
  const m = /constraint failed: (.+)$/.exec(String(e.message))
  if (!m) return undefined
  const cols = m[1]!.split(',').map((c) => c.trim().split('.'))
  const table = cols[0]?.[0]
  if (!table || cols.some((c) => c.length !== 2 || c[0] !== table)) return undefined
  return {table, columns: cols.map((c) => c[1]!)}
}
