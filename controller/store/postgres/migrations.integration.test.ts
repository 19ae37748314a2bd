// The PostgreSQL schema on a real PostgreSQL (test/support/postgres.ts): one server for the
// file, a fresh database per test. Migrating, refusing a newer database, two replicas starting
// at once, the constraints the domain layer relies on, and parity with the SQLite schema.
import net from 'node:net'
import Database from 'better-sqlite3'
import pg from 'pg'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {migrate as migrateSqlite} from '../sqlite/migrations.js'
import {MIGRATIONS as SQLITE_MIGRATIONS} from '../sqlite/migrations.js'
import {startPostgres, postgresSkipReason, type PostgresServer} from '../../../test/support/postgres.js'
import {MIGRATION_LOCK, MIGRATIONS} from './migrations.js'
import {openPostgres} from './open.js'

const skip = postgresSkipReason()
const LATEST = MIGRATIONS.map((m) => m.name)

describe.skipIf(skip !== undefined)(`PostgreSQL migrations${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let server: PostgresServer
  const pools: pg.Pool[] = []
  // Every pool a test opens is closed after it, passed or failed.
  const open = async (url: string, opts?: Parameters<typeof openPostgres>[1]) => {
    const pool = await openPostgres(url, opts)
    pools.push(pool)
    return pool
  }

  beforeAll(async () => {
    server = await startPostgres()
  })
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.end()))
  })
  afterAll(async () => {
    await server?.stop()
    if (server) console.info(`postgres harness timings (ms): ${JSON.stringify(server.timings)}`)
  })

  const migrationNames = async (pool: pg.Pool) =>
    (await pool.query<{name: string}>('SELECT name FROM migrations ORDER BY name')).rows.map((r) => r.name)

  /** A tenant, a network in it and one node: the rows the constraint tests build on. */
  async function seed(pool: pg.Pool) {
    const at = '2026-12-03T09:00:00.000Z'
    await pool.query(`INSERT INTO tenants (id, name, created_at) VALUES ('t_1', 'acme', $1)`, [at])
    await pool.query(
      `INSERT INTO networks (id, tenant_id, name, cidr, join_policy, created_at)
       VALUES ('n_1', 't_1', 'lab', '10.20.0.0/24', 'open', $1)`,
      [at],
    )
    const node = (id: string, name: string, address: number) =>
      pool.query(
        `INSERT INTO nodes (id, network_id, name, public_key, address, credential_hash, status, created_at)
         VALUES ($1, 'n_1', $2, $3, $4, $5, 'active', $6)`,
        [id, name, `pk-${id}`, address, `cred-${id}`, at],
      )
    await node('nd_a', 'alpha', 0x0a140001)
    return {at, node}
  }

  it('migrates a fresh database to the latest version', async () => {
    const pool = await open(await server.createDatabase())
    expect(await migrationNames(pool)).toEqual(LATEST)
    const {rows} = await pool.query<{applied_at: string}>('SELECT applied_at FROM migrations')
    for (const r of rows) expect(r.applied_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })

  it('does nothing when the database is already at the latest version', async () => {
    const url = await server.createDatabase()
    const first = await open(url)
    const before = (await first.query('SELECT name, applied_at FROM migrations ORDER BY name')).rows
    await first.end()
    pools.splice(pools.indexOf(first), 1)

    const again = await open(url)
    expect((await again.query('SELECT name, applied_at FROM migrations ORDER BY name')).rows).toEqual(before)
  })

  it('brings a database of an older binary up to date with the migrations it lacks', async () => {
    const url = await server.createDatabase()
    const old = await open(url, {migrations: MIGRATIONS.slice(0, 3)})
    expect(await migrationNames(old)).toEqual(LATEST.slice(0, 3))
    await old.end()
    pools.splice(pools.indexOf(old), 1)

    const current = await open(url)
    expect(await migrationNames(current)).toEqual(LATEST)
    const cols = await current.query(
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'nodes' AND column_name = 'observed_endpoint'`,
    )
    expect(cols.rowCount).toBe(1)
  })

  it('lets two controllers start at once on an empty database: one migrates, both open', async () => {
    const url = await server.createDatabase()
    // Without the advisory lock the second CREATE TABLE fails ("relation already exists") or
    // both record the same migration; with it the second waits and finds nothing to do.
    const [a, b] = await Promise.all([open(url), open(url)])
    expect(await migrationNames(a)).toEqual(LATEST)
    expect(await migrationNames(b)).toEqual(LATEST)
    const tables = await a.query(`SELECT count(*) AS n FROM pg_tables WHERE tablename = 'tenants'`)
    expect(tables.rows[0].n).toBe(1)
    // The lock is free again: a third start does not wait for anything.
    await expect(open(url)).resolves.toBeDefined()
  })

  it('refuses a database that lists a migration this binary does not know (DATABASE_NEWER_THAN_BINARY)', async () => {
    const url = await server.createDatabase()
    const newer = await open(url, {
      migrations: [...MIGRATIONS, {name: '9999-from-the-future', sql: 'CREATE TABLE future (x INTEGER)'}],
    })
    await newer.end()
    pools.splice(pools.indexOf(newer), 1)

    await expect(open(url)).rejects.toMatchObject({
      code: 'DATABASE_NEWER_THAN_BINARY',
      detail: {unknown: ['9999-from-the-future']},
    })
    // The refusal released the migration lock with its connection: the newer binary still starts.
    await expect(
      open(url, {
        migrations: [...MIGRATIONS, {name: '9999-from-the-future', sql: 'CREATE TABLE future (x INTEGER)'}],
      }),
    ).resolves.toBeDefined()
  })

  it('leaves no trace of a migration that fails half-way (it and its row roll back together)', async () => {
    const url = await server.createDatabase()
    const broken = [
      ...MIGRATIONS,
      {name: '0006-broken', sql: 'CREATE TABLE half (x INTEGER); SELECT no_such_function();'},
    ]
    await expect(open(url, {migrations: broken})).rejects.toThrow(/no_such_function/)
    const pool = await open(url)
    expect(await migrationNames(pool)).toEqual(LATEST)
    expect((await pool.query(`SELECT 1 FROM pg_tables WHERE tablename = 'half'`)).rowCount).toBe(0)
  })

  it('fails start-up with STORAGE_UNAVAILABLE, and does not crash, when the connection is reset mid-migration', async () => {
    const url = await server.createDatabase()
    // A loopback TCP relay between us and the server, so that one connection can be reset (RST)
    // the way a failing network or a killed server does, without stopping the shared server.
    const links: net.Socket[] = []
    const relay = net.createServer((down) => {
      const up = net.connect(server.port, '127.0.0.1')
      down.on('error', () => undefined)
      up.on('error', () => undefined)
      down.pipe(up).pipe(down)
      links.push(down, up)
    })
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
    const relayUrl = url.replace(`:${server.port}/`, `:${(relay.address() as net.AddressInfo).port}/`)
    // Another "replica" holds the migration lock, so ours waits on it until the reset.
    const holder = new pg.Client({connectionString: url})
    holder.on('error', () => undefined)
    await holder.connect()
    try {
      await holder.query('SELECT pg_advisory_lock($1, $2)', [...MIGRATION_LOCK])
      const opening = openPostgres(relayUrl).then(
        () => new Error('opened'),
        (err: unknown) => err,
      )
      // Bounded wait for our session to queue on the lock (each round is one query, no sleep).
      let waiting = false
      for (const deadline = performance.now() + 10_000; !waiting && performance.now() < deadline;) {
        const r = await holder.query(
          `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1 AND objid = $2`,
          [...MIGRATION_LOCK],
        )
        waiting = r.rowCount === 1
      }
      expect(waiting).toBe(true)
      for (const s of links) s.resetAndDestroy()
      // pg's pool does not listen for 'error' on a checked-out client: before checkout() did,
      // this reset was an uncaught ECONNRESET that killed the test worker.
      expect(await opening).toMatchObject({code: 'STORAGE_UNAVAILABLE'})
    } finally {
      await holder.end()
      relay.close()
    }
    // Nothing was half applied: a later start migrates from scratch.
    expect(await migrationNames(await open(url))).toEqual(LATEST)
  })

  it('refuses a database it cannot log in to with STORAGE_UNAVAILABLE, without the password in the message', async () => {
    const url = `postgres://postgres:sekrit@127.0.0.1:${server.port}/no_such_database`
    const err = await openPostgres(url).catch((e: unknown) => e)
    expect(err).toMatchObject({code: 'STORAGE_UNAVAILABLE'})
    expect((err as Error).message).toContain(`127.0.0.1:${server.port}/no_such_database`)
    expect((err as Error).message).not.toContain('sekrit')
  })

  describe('constraints', () => {
    it('refuses a second network with the same name in one tenant', async () => {
      const pool = await open(await server.createDatabase())
      const {at} = await seed(pool)
      await expect(
        pool.query(
          `INSERT INTO networks (id, tenant_id, name, cidr, join_policy, created_at)
           VALUES ('n_2', 't_1', 'lab', '10.30.0.0/24', 'open', $1)`,
          [at],
        ),
      ).rejects.toMatchObject({code: '23505', table: 'networks', constraint: 'networks_tenant_id_name_key'})
    })

    it('refuses a role outside owner, admin, moderator, member, guest', async () => {
      const pool = await open(await server.createDatabase())
      const {at} = await seed(pool)
      await expect(
        pool.query(
          `INSERT INTO users (id, tenant_id, username, password_hash, role, created_at)
           VALUES ('u_1', 't_1', 'eve', 'x', 'root', $1)`,
          [at],
        ),
      ).rejects.toMatchObject({code: '23514', constraint: 'users_role_check'})
    })

    it('refuses a second node with the same address in one network', async () => {
      const pool = await open(await server.createDatabase())
      const {node} = await seed(pool)
      await expect(node('nd_b', 'beta', 0x0a140001)).rejects.toMatchObject({
        code: '23505',
        constraint: 'nodes_network_id_address_key',
      })
    })

    it('stores uint32 addresses and reads BIGINTs back as numbers', async () => {
      const pool = await open(await server.createDatabase())
      const {node} = await seed(pool)
      await node('nd_b', 'beta', 0xffffffff)
      await expect(node('nd_c', 'gamma', 0x100000000)).rejects.toMatchObject({code: '23514'})
      const {rows} = await pool.query(`SELECT address, seq FROM nodes WHERE id = 'nd_b'`)
      expect(rows[0]).toEqual({address: 0xffffffff, seq: 2})
      // Past 2^53 the query fails rather than returning a rounded number (or a string).
      await expect(pool.query('SELECT 9007199254740993::bigint AS n')).rejects.toThrow(/does not fit/)
      expect((await pool.query('SELECT 1')).rowCount).toBe(1)
    })

    it('keeps networks.node_count equal to the number of nodes', async () => {
      const pool = await open(await server.createDatabase())
      const {node} = await seed(pool)
      await node('nd_b', 'beta', 0x0a140002)
      await node('nd_c', 'gamma', 0x0a140003)
      await pool.query(`DELETE FROM nodes WHERE id = 'nd_b'`)
      const {rows} = await pool.query(`SELECT node_count FROM networks WHERE id = 'n_1'`)
      expect(rows[0].node_count).toBe(2)
    })

    it('removes a tenant with its networks, nodes and connections (ON DELETE CASCADE)', async () => {
      const pool = await open(await server.createDatabase())
      const {at, node} = await seed(pool)
      await node('nd_b', 'beta', 0x0a140002)
      await pool.query(
        `INSERT INTO connections (network_id, node_a, node_b, path, since, updated_at)
         VALUES ('n_1', 'nd_a', 'nd_b', 'direct', $1, $1)`,
        [at],
      )
      await pool.query(`DELETE FROM tenants WHERE id = 't_1'`)
      for (const table of ['networks', 'nodes', 'connections'])
        expect((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n).toBe(0)
    })

    it('orders connection pairs by bytes, as JavaScript compares ids, whatever the database collation', async () => {
      const pool = await open(await server.createDatabase())
      const {at, node} = await seed(pool)
      // base64url ids: 'nd_B' < 'nd_a' in JavaScript and in bytes, but not in en-US collation
      // (which the harness's databases use on purpose).
      await node('nd_B', 'upper', 0x0a140002)
      expect('nd_B' < 'nd_a').toBe(true)
      const collated = await pool.query(`SELECT 'nd_B' < 'nd_a' AS lt`)
      expect(collated.rows[0].lt).toBe(false)
      const insert = (a: string, b: string) =>
        pool.query(
          `INSERT INTO connections (network_id, node_a, node_b, path, since, updated_at)
           VALUES ('n_1', $1, $2, 'relay', $3, $3)`,
          [a, b, at],
        )
      await insert('nd_B', 'nd_a')
      await expect(insert('nd_a', 'nd_B')).rejects.toMatchObject({code: '23514'})
    })

    it('refuses to change, delete or truncate audit entries', async () => {
      const pool = await open(await server.createDatabase())
      await pool.query(
        `INSERT INTO audit (at, actor, actor_name, action, target_type)
         VALUES ('2026-12-03T09:00:00.000Z', 'system', 'system', 'tenant.create', 'tenant')`,
      )
      for (const sql of [
        'UPDATE audit SET action = $1',
        'DELETE FROM audit WHERE action <> $1',
        'TRUNCATE audit',
      ])
        await expect(pool.query(sql, sql.includes('$1') ? ['x'] : [])).rejects.toThrow(/append-only/)
      expect((await pool.query('SELECT count(*) AS n FROM audit')).rows[0].n).toBe(1)
    })

    it('refuses a second readiness-probe row', async () => {
      const pool = await open(await server.createDatabase())
      await expect(
        pool.query(`INSERT INTO readiness_probe (id, probed_at) VALUES (2, '2026-12-03T09:00:00.000Z')`),
      ).rejects.toMatchObject({code: '23514'})
    })
  })

  it('has the same tables, columns, nullability and indexes as the SQLite schema', async () => {
    const pool = await open(await server.createDatabase())
    const lite = new Database(':memory:')
    try {
      await migrateSqlite(lite, SQLITE_MIGRATIONS)
      const liteTables = (
        lite
          .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
          .all() as {name: string}[]
      ).map((t) => t.name)
      const liteSchema = Object.fromEntries(
        liteTables.map((t) => [
          t,
          (lite.pragma(`table_info(${t})`) as {name: string; notnull: number; pk: number}[])
            .map((c) => `${c.name}${c.notnull || c.pk ? ' NOT NULL' : ''}`)
            .sort(),
        ]),
      )
      const {rows} = await pool.query<{table_name: string; column_name: string; is_nullable: string}>(
        `SELECT table_name, column_name, is_nullable FROM information_schema.columns
         WHERE table_schema = current_schema()`,
      )
      const pgSchema: Record<string, string[]> = {}
      for (const r of rows)
        (pgSchema[r.table_name] ??= []).push(`${r.column_name}${r.is_nullable === 'NO' ? ' NOT NULL' : ''}`)
      for (const cols of Object.values(pgSchema)) cols.sort()
      expect(pgSchema).toEqual(liteSchema)

      // Named indexes (those a migration creates; constraints' own indexes differ in name).
      const liteIndexes = (
        lite.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`).all() as {
          name: string
        }[]
      )
        .map((i) => i.name)
        .sort()
      const pgIndexes = (
        await pool.query<{indexname: string}>(
          `SELECT indexname FROM pg_indexes i WHERE schemaname = current_schema()
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
        )
      ).rows
        .map((i) => i.indexname)
        .sort()
      expect(pgIndexes).toEqual(liteIndexes)
    } finally {
      lite.close()
    }
  })
})
