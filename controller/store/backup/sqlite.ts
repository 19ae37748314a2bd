/**
 * Backup and restore of a SQLite controller database (format.ts).
 *
 * Backup opens the file read-only beside a running controller (WAL lets a reader work while the
 * controller writes) and reads every table inside one read transaction: one consistent snapshot.
 * Restore creates a NEW database file: it is migrated to the backup's schema, filled in one
 * transaction, then migrated on to this binary's schema; on any failure the new file is removed.
 */
import fs from 'node:fs'
import Database from 'better-sqlite3'
import {MeshError} from '../../../shared/errors.js'
import {openSqlite} from '../sqlite/open.js'
import {MIGRATIONS} from '../sqlite/migrations.js'
import {BACKUP_FORMAT, BACKUP_VERSION, TABLES, checkColumns, type BackupReader, type Table} from './format.js'

/** The newest migration applied to an open SQLite database. */
const schemaOf = (db: Database.Database): string => {
  const r = db.prepare('SELECT max(name) AS name FROM migrations').get() as {name: string | null}
  if (!r.name) throw new MeshError('BACKUP_INVALID', {message: 'the database has no schema yet'})
  return r.name
}

/** Streams every row of a SQLite controller database from one read transaction. */
export async function dumpSqlite(file: string): Promise<{
  header: {
    format: typeof BACKUP_FORMAT
    version: typeof BACKUP_VERSION
    schema: string
    createdAt: string
    source: 'sqlite'
  }
  rows: AsyncGenerator<{table: Table; row: Record<string, unknown>}>
  close(): void
}> {
  if (!fs.existsSync(file)) throw new MeshError('NOT_FOUND', {message: `${file}: no such database file`})
  const db = new Database(file, {readonly: true, fileMustExist: true})
  db.pragma('busy_timeout = 5000')
  db.exec('BEGIN') // a read transaction: every SELECT below sees the same snapshot
  let closed = false
  const close = () => {
    if (closed) return
    closed = true
    if (db.inTransaction) db.exec('COMMIT')
    db.close()
  }
  try {
    const schema = schemaOf(db)
    async function* rows(): AsyncGenerator<{table: Table; row: Record<string, unknown>}> {
      try {
        // A file of an older schema (backed up before this binary ever opened it) lacks the
        // newer tables: they are empty in its backup.
        const present = new Set(
          (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as {name: string}[]).map(
            (r) => r.name,
          ),
        )
        for (const table of TABLES) {
          if (!present.has(table)) continue
          // Table names come from TABLES, never from input. rowid order is insertion order.
          for (const row of db.prepare(`SELECT * FROM ${table} ORDER BY rowid`).iterate()) {
            yield {table, row: row as Record<string, unknown>}
          }
        }
      } finally {
        close()
      }
    }
    return {
      header: {
        format: BACKUP_FORMAT,
        version: BACKUP_VERSION,
        schema,
        createdAt: new Date().toISOString(),
        source: 'sqlite',
      },
      rows: rows(),
      close,
    }
  } catch (err) {
    close()
    throw err
  }
}

/** Restores a backup into a new SQLite file at `file` (which must not exist). Returns the row count. */
export async function restoreSqlite(file: string, backup: BackupReader): Promise<{rows: number}> {
  if (fs.existsSync(file)) {
    throw new MeshError('RESTORE_TARGET_NOT_EMPTY', {message: `${file} exists; restore into a new path`})
  }
  const upTo = MIGRATIONS.findIndex((m) => m.name === backup.header.schema)
  if (upTo < 0) {
    throw new MeshError('DATABASE_NEWER_THAN_BINARY', {
      message: `the backup's schema ${backup.header.schema} is not one this mesh knows`,
    })
  }
  let db: Database.Database | undefined
  try {
    db = await openSqlite(file, {migrations: MIGRATIONS.slice(0, upTo + 1)})
    const columns = new Map<Table, Set<string>>()
    for (const t of TABLES) {
      const info = db.prepare(`PRAGMA table_info(${t})`).all() as {name: string}[]
      columns.set(t, new Set(info.map((c) => c.name)))
    }
    const statements = new Map<string, Database.Statement>()
    let count = 0
    db.exec('BEGIN IMMEDIATE')
    for await (const {table, row} of backup.rows()) {
      const cols = checkColumns(table, row, columns.get(table) as Set<string>)
      const sql = `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`
      let st = statements.get(sql)
      if (!st) statements.set(sql, (st = db.prepare(sql)))
      st.run(...cols.map((c) => row[c]))
      count++
    }
    // node_count is kept by triggers, which counted the restored nodes on top of the stored count.
    db.exec(
      'UPDATE networks SET node_count = (SELECT count(*) FROM nodes WHERE nodes.network_id = networks.id)',
    )
    db.exec('COMMIT')
    db.close()
    db = undefined
    // On to this binary's schema.
    ;(await openSqlite(file)).close()
    return {rows: count}
  } catch (err) {
    if (db?.open) {
      if (db.inTransaction) db.exec('ROLLBACK')
      db.close()
    }
    for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, {force: true})
    throw err
  }
}
