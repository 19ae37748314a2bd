/**
 * `mesh controller backup` and `restore`, for either backend (format.ts has the file format).
 */
import type {DatabaseTarget} from '../database.js'
import {readBackup, writeBackup, type BackupHeader} from './format.js'
import {dumpPostgres, restorePostgres} from './postgres.js'
import {dumpSqlite, restoreSqlite} from './sqlite.js'

export interface BackupResult {
  readonly file: string
  readonly rows: number
  readonly bytes: number
  readonly schema: string
  readonly source: BackupHeader['source']
}

/** Takes an online, consistent backup of the database into `file`. */
export async function backupDatabase(target: DatabaseTarget, file: string): Promise<BackupResult> {
  const dump = target.kind === 'sqlite' ? await dumpSqlite(target.path) : await dumpPostgres(target.url)
  try {
    const {rows, bytes} = await writeBackup(file, dump.header, dump.rows)
    return {file, rows, bytes, schema: dump.header.schema, source: dump.header.source}
  } finally {
    await dump.close()
  }
}

/** Restores `file` into an empty database (a new SQLite path, or a PostgreSQL database without tenants). */
export async function restoreDatabase(
  target: DatabaseTarget,
  file: string,
): Promise<{rows: number; schema: string; source: BackupHeader['source']}> {
  const backup = await readBackup(file)
  const {rows} =
    target.kind === 'sqlite'
      ? await restoreSqlite(target.path, backup)
      : await restorePostgres(target.url, backup)
  return {rows, schema: backup.header.schema, source: backup.header.source}
}
