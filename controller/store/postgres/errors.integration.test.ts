// PostgreSQL's real errors, provoked on a real server (test/support/postgres.ts), map to the
// codes the SQLite adapter's errors map to: a taken name to its rule's code, a lost or read-only
// server to STORAGE_UNAVAILABLE, serialization failures to "retry".
import net from 'node:net'
import pg from 'pg'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {startPostgres, postgresSkipReason, type PostgresServer} from '../../../test/support/postgres.js'
import {uniqueViolation} from '../errors.js'
import {
  isPostgresRetryable,
  postgresStorageError,
  postgresUniqueViolation,
  UNIQUE_CONSTRAINTS,
} from './errors.js'
import {openPostgres} from './open.js'

const skip = postgresSkipReason()

describe.skipIf(skip !== undefined)(`PostgreSQL errors${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let server: PostgresServer
  let pool: pg.Pool | undefined
  const fail = (p: Promise<unknown>) =>
    p.then(
      () => new Error('did not fail'),
      (err: unknown) => err,
    )

  beforeAll(async () => {
    server = await startPostgres()
  })
  afterEach(async () => {
    await pool?.end()
    pool = undefined
  })
  afterAll(() => server?.stop())

  const fresh = async () => (pool = await openPostgres(await server.createDatabase()))

  it('names every UNIQUE constraint and primary key of the schema in UNIQUE_CONSTRAINTS', async () => {
    const db = await fresh()
    const {rows} = await db.query<{name: string; table: string; columns: string[]}>(
      `SELECT c.conname AS name, t.relname AS table,
              array_agg(a.attname::text ORDER BY k.ord) AS columns
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
         CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        WHERE c.contype IN ('u', 'p')
        GROUP BY c.conname, t.relname`,
    )
    const catalog = Object.fromEntries(rows.map((r) => [r.name, {table: r.table, columns: r.columns}]))
    expect(catalog).toEqual(UNIQUE_CONSTRAINTS)
  })

  it("maps a taken network name to the rule's code, as on SQLite (NETWORK_NAME_TAKEN)", async () => {
    const db = await fresh()
    const at = '2026-12-03T09:00:00.000Z'
    await db.query(`INSERT INTO tenants (id, name, created_at) VALUES ('t_1', 'acme', $1)`, [at])
    const network = (id: string) =>
      db.query(
        `INSERT INTO networks (id, tenant_id, name, cidr, join_policy, created_at)
         VALUES ($1, 't_1', 'lab', '10.20.0.0/24', 'open', $2)`,
        [id, at],
      )
    await network('n_1')
    const err = await fail(network('n_2'))
    expect(postgresUniqueViolation(err)).toEqual({table: 'networks', columns: ['tenant_id', 'name']})
    const unique = postgresUniqueViolation(err)!
    expect(uniqueViolation(unique.table, unique.columns, err).code).toBe('NETWORK_NAME_TAKEN')
    expect(postgresStorageError(err)).toBeUndefined()
  })

  it('maps a write in a read-only transaction (a standby after failover) to STORAGE_UNAVAILABLE', async () => {
    const db = await fresh()
    const client = await db.connect()
    try {
      await client.query('BEGIN READ ONLY')
      const err = await fail(
        client.query(`INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 'x')`),
      )
      await client.query('ROLLBACK')
      expect(err).toMatchObject({code: '25006'})
      expect(postgresStorageError(err)?.code).toBe('STORAGE_UNAVAILABLE')
    } finally {
      client.release()
    }
  })

  it('maps a session the server terminates to STORAGE_UNAVAILABLE', async () => {
    const db = await fresh()
    const victim = new pg.Client({connectionString: await server.createDatabase()})
    victim.on('error', () => undefined)
    await victim.connect()
    const pid = (await victim.query<{pid: number}>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    await db.query('SELECT pg_terminate_backend($1)', [pid])
    const err = await fail(victim.query('SELECT 1'))
    await victim.end().catch(() => undefined)
    expect(postgresStorageError(err)?.code).toBe('STORAGE_UNAVAILABLE')
  })

  it('maps a refused connection to STORAGE_UNAVAILABLE', async () => {
    // A port that was free a moment ago: nothing listens on it.
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const client = new pg.Client({connectionString: `postgres://x@127.0.0.1:${port}/x`})
    client.on('error', () => undefined)
    const err = await fail(client.connect())
    expect(err).toMatchObject({code: 'ECONNREFUSED'})
    expect(postgresStorageError(err)?.code).toBe('STORAGE_UNAVAILABLE')
  })

  it('tells a serialization failure between two SERIALIZABLE transactions as retryable', async () => {
    const db = await fresh()
    await db.query(`INSERT INTO tenants (id, name, created_at) VALUES ('t_1', 'acme', 'x')`)
    const [a, b] = [await db.connect(), await db.connect()]
    try {
      // Write skew: each reads what the other writes.
      for (const c of [a, b]) await c.query('BEGIN ISOLATION LEVEL SERIALIZABLE')
      for (const c of [a, b]) await c.query('SELECT count(*) FROM tenants')
      await a.query(`INSERT INTO tenants (id, name, created_at) VALUES ('t_a', 'a', 'x')`)
      await b.query(`INSERT INTO tenants (id, name, created_at) VALUES ('t_b', 'b', 'x')`)
      await a.query('COMMIT')
      const err = await fail(b.query('COMMIT'))
      expect(err).toMatchObject({code: '40001'})
      expect(isPostgresRetryable(err)).toBe(true)
      expect(postgresStorageError(err)).toBeUndefined()
    } finally {
      await b.query('ROLLBACK').catch(() => undefined)
      a.release()
      b.release()
    }
  })
})
