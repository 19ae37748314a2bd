/**
 * mesh's controller backup file: one consistent snapshot of every table, the same format from
 * either backend, so a backup of a SQLite controller restores onto PostgreSQL and back (the way
 * to scale out a controller that started on one machine).
 *
 * The file is gzip'd JSON lines, written to FILE.partial (mode 0600: it holds password and
 * secret hashes) and renamed into place only when complete:
 *   {"format":"mesh-controller-backup","version":1,"schema":"0005-connections","createdAt":…,"source":"sqlite"}
 *   {"t":"tenants","r":{"seq":1,"id":"t_…",…}}            one line per row, tables in TABLES order
 *   {"end":true,"rows":1234}                               absent: the file was cut short
 * Rows hold the columns as stored (text, integers, reals, null): both backends' schemas keep the
 * same column names and value shapes (see postgres/migrations.ts).
 *
 * Reading trusts nothing: the header, every table name and column name (checked against the
 * target's own columns before any SQL is built), value types, line length and the final count.
 */
import fs from 'node:fs'
import {createInterface} from 'node:readline'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import zlib from 'node:zlib'
import {MeshError} from '../../../shared/errors.js'

export const BACKUP_FORMAT = 'mesh-controller-backup'
export const BACKUP_VERSION = 1

/**
 * Every table with data, parents before children (restore inserts in this order). Not here:
 * `migrations` (the header's schema says it), `readiness_probe` (the /readyz scratch row) and
 * `presence` (who is connected to which running replica: nobody, once restored). `relays` is
 * kept (rows past their expiry are simply not listed after a restore); `settings` holds the
 * relay-mesh secret, so relays keep meshing with a restored controller. A backup of a schema
 * before 0007 restores with those tables empty.
 */
export const TABLES = [
  'tenants',
  'users',
  'sessions',
  'tokens',
  'refresh_tokens',
  'user_mfa',
  'mfa_recovery_codes',
  'networks',
  'network_members',
  'invites',
  'auth_keys',
  'nodes',
  'netmap_changes',
  'audit',
  'connections',
  'connection_log',
  'relay_keys',
  'relays',
  'settings',
] as const
export type Table = (typeof TABLES)[number]

export type Value = string | number | null
export type BackupRow = Record<string, Value>

export interface BackupHeader {
  readonly format: typeof BACKUP_FORMAT
  readonly version: typeof BACKUP_VERSION
  /** The newest migration applied to the database the backup was taken from. */
  readonly schema: string
  readonly createdAt: string
  readonly source: 'sqlite' | 'postgres'
}

/** Longest line read back: far above any row mesh writes (an audit detail is bounded by the API). */
const MAX_LINE = 8 * 1024 * 1024

const invalid = (message: string) => new MeshError('BACKUP_INVALID', {message})

/** A row value as JSON can carry it; Buffers and other objects are refused (mesh stores none). */
function value(v: unknown, where: string): Value {
  if (v === null || typeof v === 'string') return v
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v)
  throw new Error(`${where}: a value of type ${typeof v} cannot be backed up`)
}

/**
 * Writes a backup of `rows` to `file`: FILE.partial first, renamed when the last row is in.
 * Returns the row count and the file's size.
 */
export async function writeBackup(
  file: string,
  header: BackupHeader,
  rows: AsyncIterable<{table: Table; row: Record<string, unknown>}>,
): Promise<{rows: number; bytes: number}> {
  const partial = `${file}.partial`
  let count = 0
  async function* lines(): AsyncGenerator<string> {
    yield `${JSON.stringify(header)}\n`
    for await (const {table, row} of rows) {
      const r: BackupRow = {}
      for (const [k, v] of Object.entries(row)) r[k] = value(v, `${table}.${k}`)
      count++
      yield `${JSON.stringify({t: table, r})}\n`
    }
    yield `${JSON.stringify({end: true, rows: count})}\n`
  }
  try {
    await pipeline(
      Readable.from(lines()),
      zlib.createGzip(),
      fs.createWriteStream(partial, {mode: 0o600, flags: 'w'}),
    )
    fs.chmodSync(partial, 0o600)
    fs.renameSync(partial, file)
  } catch (err) {
    fs.rmSync(partial, {force: true})
    throw err
  }
  return {rows: count, bytes: fs.statSync(file).size}
}

export interface BackupReader {
  readonly header: BackupHeader
  /** The rows in file order; throws BACKUP_INVALID at the first bad line or a missing end. */
  rows(): AsyncGenerator<{table: Table; row: BackupRow}>
}

const SCHEMA_RE = /^\d{4}-[a-z0-9-]{1,60}$/
const COLUMN_RE = /^[a-z][a-z0-9_]{0,62}$/

/** Opens a backup file and reads its header; rows() reads the rest, checking as it goes. */
export async function readBackup(file: string): Promise<BackupReader> {
  if (!fs.existsSync(file)) throw invalid(`${file}: no such file`)
  const input = fs.createReadStream(file).pipe(zlib.createGunzip())
  const rl = createInterface({input, crlfDelay: Infinity})
  const it = rl[Symbol.asyncIterator]()
  const next = async (): Promise<string | undefined> => {
    try {
      const r = await it.next()
      if (r.done) return undefined
      if (r.value.length > MAX_LINE) throw invalid(`a line is longer than ${MAX_LINE} bytes`)
      return r.value
    } catch (err) {
      if (err instanceof MeshError) throw err
      throw invalid(`${file}: not a gzip'd mesh backup (${(err as Error).message})`)
    }
  }
  const parse = (line: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(line) as unknown
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
    } catch {
      // falls through
    }
    throw invalid('a line is not a JSON object')
  }
  const first = await next()
  const h = first === undefined ? undefined : parse(first)
  if (
    !h ||
    h.format !== BACKUP_FORMAT ||
    h.version !== BACKUP_VERSION ||
    typeof h.schema !== 'string' ||
    !SCHEMA_RE.test(h.schema) ||
    (h.source !== 'sqlite' && h.source !== 'postgres') ||
    typeof h.createdAt !== 'string'
  ) {
    rl.close()
    throw invalid(`${file}: not a mesh controller backup (version ${BACKUP_VERSION})`)
  }
  const header = h as unknown as BackupHeader
  return {
    header,
    async *rows() {
      let count = 0
      let order = 0
      try {
        for (;;) {
          const line = await next()
          if (line === undefined) throw invalid('the backup is cut short (no end line): take it again')
          const rec = parse(line)
          if (rec.end === true) {
            if (rec.rows !== count)
              throw invalid(`the backup says ${String(rec.rows)} rows, but holds ${count}`)
            if ((await next()) !== undefined) throw invalid('lines after the end line')
            return
          }
          const table = rec.t
          const at = TABLES.indexOf(table as Table)
          if (at < 0) throw invalid(`unknown table ${JSON.stringify(table)}`)
          if (at < order) throw invalid(`table ${String(table)} out of order`)
          order = at
          const r = rec.r
          if (r === null || typeof r !== 'object' || Array.isArray(r)) throw invalid('a row is not an object')
          for (const [k, v] of Object.entries(r as Record<string, unknown>)) {
            if (!COLUMN_RE.test(k)) throw invalid(`bad column name ${JSON.stringify(k).slice(0, 80)}`)
            if (!(v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))))
              throw invalid(`${String(table)}.${k}: a value of an unexpected type`)
          }
          count++
          yield {table: table as Table, row: r as BackupRow}
        }
      } finally {
        rl.close()
        input.destroy()
      }
    },
  }
}

/** The columns of `row` that the target table has; any other column refuses the backup. */
export function checkColumns(table: Table, row: BackupRow, known: ReadonlySet<string>): string[] {
  const cols = Object.keys(row)
  for (const c of cols) {
    if (!known.has(c)) throw invalid(`${table}.${c}: no such column in this database's schema`)
  }
  return cols
}
