/**
 * Opens the controller's SQLite file with the pragmas mesh relies on, and migrates it.
 */
import fs from 'node:fs'
import Database from 'better-sqlite3'
import {migrate, MIGRATIONS, type Migration} from './migrations.js'

/**
 * Pragmas:
 *  - journal_mode=WAL: readers never block the writer; one file plus -wal/-shm beside it.
 *  - synchronous=NORMAL: in WAL mode a commit is written to the WAL before better-sqlite3
 *    returns, so a crash of the PROCESS (SIGKILL, OOM kill, panic) never loses a committed
 *    transaction — a registration that got its 201 survives. What NORMAL gives up against FULL
 *    is durability across an OS crash or power loss, where the last transactions before the
 *    last checkpoint may roll back (the database stays consistent). FULL would fsync on every
 *    commit, costing milliseconds per registration and per presence update on 5,000-node
 *    networks; we take NORMAL, as most WAL deployments do.
 *  - foreign_keys=ON: SQLite's default is off; cascades and references depend on it.
 *  - busy_timeout=5000: a second process (a backup, the sqlite3 shell) holding a lock makes us
 *    wait up to 5 s instead of failing at once with SQLITE_BUSY.
 *  - wal_autocheckpoint=1000 (SQLite's default, set so it is stated): after a commit leaves more
 *    than 1000 pages (~4 MiB) in the WAL, SQLite copies them into the database and starts the
 *    WAL over. journal_size_limit=64 MiB: a WAL that grew past that during a burst (or while a
 *    long read held the checkpoint back) is truncated back to it after the next checkpoint.
 *    Without the limit the -wal file keeps its largest size for good; Headscale's grew to
 *    gigabytes. The contract: the WAL stays below the limit plus one burst.
 */
/** Bytes the -wal file is truncated back to after a checkpoint (see the pragmas above). */
export const WAL_SIZE_LIMIT = 64 * 1024 * 1024

export async function openSqlite(
  file: string,
  opts: {migrations?: readonly Migration[]} = {},
): Promise<Database.Database> {
  const existed = fs.existsSync(file)
  const db = new Database(file)
  try {
    if (!existed) fs.chmodSync(file, 0o600)
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.pragma('foreign_keys = ON')
    db.pragma('busy_timeout = 5000')
    db.pragma('wal_autocheckpoint = 1000')
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`)
    await migrate(db, opts.migrations ?? MIGRATIONS)
    // The -wal and -shm files hold the same data: same mode as the database.
    for (const extra of [`${file}-wal`, `${file}-shm`]) {
      if (fs.existsSync(extra)) fs.chmodSync(extra, 0o600)
    }
    return db
  } catch (err) {
    db.close()
    throw err
  }
}
