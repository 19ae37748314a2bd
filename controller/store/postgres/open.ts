/**
 * Opens a pool of connections to the controller's PostgreSQL database and migrates it.
 */
import pg from 'pg'
import {MeshError} from '../../../shared/errors.js'
import {postgresStorageError} from './errors.js'
import {migrate, MIGRATIONS, type Migration} from './migrations.js'

interface MinimalLogger {
  warn(obj: object, msg: string): void
}

export interface PostgresOptions {
  /** For tests: play an older or newer binary. */
  migrations?: readonly Migration[]
  /** application_name of every connection (at most 63 bytes). Default `mesh-controller`. */
  applicationName?: string
  /** Connections in the pool. Default 10. */
  max?: number
  /** Where a connection that breaks while idle in the pool is reported (pino-compatible). */
  log?: MinimalLogger
}

/** PostgreSQL's type OID for BIGINT (int8). */
const INT8_OID = 20

/**
 * BIGINT as a JavaScript number. node-postgres returns int8 as a string, because it can exceed
 * 2^53; mesh's BIGINTs (seq, audit id, netmap versions, uint32 addresses, count(*)) stay far
 * below that, and a string where the adapter expects a number compares wrongly without a type
 * error. A value past 2^53 fails the query instead of losing precision.
 */
function parseInt8(text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n)) throw new RangeError(`BIGINT ${text} does not fit a JavaScript number`)
  return n
}

const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? parseInt8
      : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
}

/**
 * Connects, migrates and returns the pool. The URL is libpq's (postgres://user:pass@host:port/db,
 * with ?sslmode=… and the PG* environment variables as node-postgres reads them).
 *
 * Pool settings:
 *  - connectionTimeoutMillis 10 s: node-postgres waits forever by default; a black-holed host or
 *    a full server must fail start-up and requests, not hang them.
 *  - idle_in_transaction_session_timeout 60 s: a transaction left open by a bug would hold its
 *    row locks (a network's row: every registration in it) until the process dies; the server
 *    ends such a session instead.
 *  - keepAlive: TCP keepalives notice a server or load balancer that vanished without a FIN.
 *  - application_name: `mesh-controller` (or opts.applicationName: each replica names its
 *    connections after itself, which is also how the 0006 triggers tell replicas' changes apart),
 *    who is connected, in pg_stat_activity.
 *  - An 'error' listener: node-postgres emits 'error' on the pool when an idle connection breaks
 *    (server restart, failover). Unheard, Node turns it into an uncaught exception that kills
 *    the controller; the pool has already dropped the connection and opens a new one on demand.
 *
 * Throws STORAGE_UNAVAILABLE when the server cannot be reached or refuses the login (the message
 * names host, port and database, never the password) or goes away while migrating, and
 * DATABASE_NEWER_THAN_BINARY as migrate() does; the pool is closed on any error.
 */
export async function openPostgres(url: string, opts: PostgresOptions = {}): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: 10_000,
    idle_in_transaction_session_timeout: 60_000,
    keepAlive: true,
    application_name: opts.applicationName ?? 'mesh-controller',
    types,
  })
  pool.on('error', (err) => opts.log?.warn({err}, 'PostgreSQL connection lost while idle'))
  try {
    let lease: Lease
    try {
      lease = await checkout(pool)
    } catch (err) {
      throw new MeshError('STORAGE_UNAVAILABLE', {
        message: `cannot connect to PostgreSQL at ${describe(url)}: ${(err as Error).message}`,
        hint: 'check that PostgreSQL is running and that the URL (host, port, user, password, database) is right',
        cause: err,
      })
    }
    try {
      await migrate(lease.client, opts.migrations ?? MIGRATIONS)
    } catch (err) {
      // Thrown away, not returned to the pool: it may still hold the migration lock.
      lease.release(err)
      throw postgresStorageError(err) ?? err
    }
    lease.release()
    return pool
  } catch (err) {
    await pool.end()
    throw err
  }
}

export interface Lease {
  readonly client: pg.PoolClient
  /** Back to the pool; with an error (or when the connection broke) closed instead. */
  release(err?: unknown): void
}

/**
 * Takes one connection out of the pool, listening for its 'error' while it is out.
 *
 * The trap: node-postgres' pool listens for a connection's 'error' only while it is idle in the
 * pool. A checked-out connection that breaks (server restart, failover, network) emits 'error'
 * on the client, and with no listener Node turns it into an uncaught exception that kills the
 * controller — seen here when the server stopped during a migration. With the listener the
 * error reaches the caller as the rejection of its next query, and the broken connection is
 * closed on release instead of going back to the pool.
 */
export async function checkout(pool: pg.Pool): Promise<Lease> {
  const client = await pool.connect()
  let broken: Error | undefined
  const onError = (err: Error) => {
    broken ??= err
  }
  client.on('error', onError)
  let released = false
  return {
    client,
    release(err?: unknown) {
      if (released) return
      released = true
      client.removeListener('error', onError)
      const reason = err ?? broken
      client.release(reason === undefined ? undefined : reason instanceof Error ? reason : true)
    },
  }
}

/** host:port/database of a URL, without the user and password. */
function describe(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`
  } catch {
    return '(unparsable URL)'
  }
}
