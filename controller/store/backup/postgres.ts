/**
 * Backup and restore of a PostgreSQL controller database (format.ts).
 *
 * Backup reads every table in one REPEATABLE READ READ ONLY transaction (one snapshot, while
 * the controllers keep writing), through a server-side cursor so a large audit log streams
 * instead of loading at once. Restore fills an EMPTY database (no tenants): it is migrated to
 * the backup's schema, filled in one transaction (identity columns taken from the backup, then
 * their sequences moved past the highest value), and migrated on to this binary's schema.
 */
import type pg from 'pg'
import {MeshError} from '../../../shared/errors.js'
import {checkout, openPostgres} from '../postgres/open.js'
import {MIGRATIONS} from '../postgres/migrations.js'
import {BACKUP_FORMAT, BACKUP_VERSION, TABLES, checkColumns, type BackupReader, type Table} from './format.js'

/** Rows fetched per round trip from the backup cursor. */
const FETCH = 1_000

export async function dumpPostgres(url: string): Promise<{
  header: {
    format: typeof BACKUP_FORMAT
    version: typeof BACKUP_VERSION
    schema: string
    createdAt: string
    source: 'postgres'
  }
  rows: AsyncGenerator<{table: Table; row: Record<string, unknown>}>
  close(): Promise<void>
}> {
  const pool = await openPostgres(url, {max: 1})
  const lease = await checkout(pool)
  const client = lease.client
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await client.query('ROLLBACK').catch((err: unknown) => lease.release(err))
    lease.release()
    await pool.end()
  }
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    const schema = (await client.query<{name: string | null}>('SELECT max(name) AS name FROM migrations'))
      .rows[0]?.name
    if (!schema) throw new MeshError('BACKUP_INVALID', {message: 'the database has no schema yet'})
    async function* rows(): AsyncGenerator<{table: Table; row: Record<string, unknown>}> {
      try {
        for (const table of TABLES) {
          const order = await orderOf(client, table)
          await client.query(
            `DECLARE backup_rows NO SCROLL CURSOR FOR SELECT * FROM ${table} ORDER BY ${order}`,
          )
          for (;;) {
            const batch = await client.query(`FETCH ${FETCH} FROM backup_rows`)
            for (const row of batch.rows as Record<string, unknown>[]) yield {table, row}
            if (batch.rows.length < FETCH) break
          }
          await client.query('CLOSE backup_rows')
        }
      } finally {
        await close()
      }
    }
    return {
      header: {
        format: BACKUP_FORMAT,
        version: BACKUP_VERSION,
        schema,
        createdAt: new Date().toISOString(),
        source: 'postgres',
      },
      rows: rows(),
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

/** The table's primary key columns: a stable order to read it in. */
async function orderOf(client: pg.ClientBase, table: Table): Promise<string> {
  const r = await client.query<{column_name: string}>(
    `SELECT a.attname AS column_name FROM pg_index i
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
       WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)`,
    [table],
  )
  const cols = r.rows.map((c) => c.column_name)
  if (cols.length === 0 || cols.some((c) => !/^[a-z_]+$/.test(c)))
    throw new Error(`${table}: no usable primary key`)
  return cols.join(', ')
}

export async function restorePostgres(url: string, backup: BackupReader): Promise<{rows: number}> {
  const upTo = MIGRATIONS.findIndex((m) => m.name === backup.header.schema)
  if (upTo < 0) {
    throw new MeshError('DATABASE_NEWER_THAN_BINARY', {
      message: `the backup's schema ${backup.header.schema} is not one this mesh knows`,
    })
  }
  const pool = await openPostgres(url, {max: 1, migrations: MIGRATIONS.slice(0, upTo + 1)})
  let count = 0
  try {
    const lease = await checkout(pool)
    const client = lease.client
    try {
      await client.query('BEGIN')
      // Two restores at once, or a controller starting meanwhile: only one finds it empty.
      await client.query('LOCK TABLE tenants IN EXCLUSIVE MODE')
      if ((await client.query('SELECT 1 FROM tenants LIMIT 1')).rows.length > 0) {
        throw new MeshError('RESTORE_TARGET_NOT_EMPTY', {
          message: 'the PostgreSQL database already has tenants',
        })
      }
      const columns = new Map<Table, Set<string>>()
      const identities = new Map<Table, string[]>()
      for (const t of TABLES) {
        const info = await client.query<{column_name: string; is_identity: string}>(
          `SELECT column_name, is_identity FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1`,
          [t],
        )
        columns.set(t, new Set(info.rows.map((c) => c.column_name)))
        identities.set(
          t,
          info.rows.filter((c) => c.is_identity === 'YES').map((c) => c.column_name),
        )
      }
      for await (const {table, row} of backup.rows()) {
        const cols = checkColumns(table, row, columns.get(table) as Set<string>)
        const overriding = (identities.get(table) ?? []).some((c) => cols.includes(c))
          ? ' OVERRIDING SYSTEM VALUE'
          : ''
        await client.query(
          `INSERT INTO ${table} (${cols.join(', ')})${overriding} VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`,
          cols.map((c) => row[c]),
        )
        count++
      }
      for (const [table, cols] of identities) {
        for (const col of cols) {
          await client.query(
            `SELECT setval(pg_get_serial_sequence($1, $2), greatest((SELECT max(${col}) FROM ${table}), 1), (SELECT max(${col}) FROM ${table}) IS NOT NULL)`,
            [table, col],
          )
        }
      }
      await client.query(
        'UPDATE networks SET node_count = (SELECT count(*) FROM nodes WHERE nodes.network_id = networks.id)',
      )
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch((gone: unknown) => lease.release(gone))
      throw err
    } finally {
      lease.release()
    }
  } finally {
    await pool.end()
  }
  // On to this binary's schema.
  await (await openPostgres(url, {max: 1})).end()
  return {rows: count}
}
