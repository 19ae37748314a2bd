// The Store contract on a real PostgreSQL (test/support/postgres.ts): one server for the file,
// a fresh database per test, and a second pool on the same database as a second controller
// replica, so the race tests run across two connections pools the way two replicas would.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../../test/support/postgres.js'
import {storeContract, ctx} from '../contract.test-suite.js'
import {storeWrites} from '../../domain/writes.js'
import {openPostgres} from './open.js'
import {MIGRATIONS} from './migrations.js'
import {storeUpgrades} from '../upgrade.test-suite.js'
import {PostgresStore} from './postgres-store.js'
import {PgPresenceTable} from './presence-table.js'

const skip = postgresSkipReason()
let server: PostgresServer | undefined

beforeAll(async () => {
  if (skip === undefined) server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

describe.skipIf(skip !== undefined)(`PostgreSQL store${skip ? ` (skipped: ${skip})` : ''}`, () => {
  storeUpgrades('postgres', async () => ({
    migrations: MIGRATIONS.map((m) => m.name),
    createAt: async (upTo, seed) => {
      const url = await (server as PostgresServer).createDatabase()
      const pool = await openPostgres(url, {migrations: MIGRATIONS.slice(0, upTo + 1)})
      try {
        for (const sql of seed) await pool.query(sql)
      } finally {
        await pool.end()
      }
      return {open: async () => new PostgresStore(await openPostgres(url))}
    },
  }))

  storeContract('postgres', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const store = new PostgresStore(await openPostgres(url))
    const presence = new PgPresenceTable(store.pool)
    return {
      store,
      cleanup: async () => undefined,
      openPeer: async () => new PostgresStore(await openPostgres(url)),
      holdPresence: (nodeId, replica, expiresAt) =>
        presence.hold(nodeId, replica, '2026-01-01T00:00:00.000Z', expiresAt),
    }
  })

  it('answers STORAGE_UNAVAILABLE, not a driver error, when the database goes away, and the pool serves again after', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const store = new PostgresStore(await openPostgres(url, {max: 2}))
    try {
      const writes = storeWrites(store)
      await writes.createTenantWithOwner(
        {id: 't1', name: 'acme'},
        {id: 'u1', username: 'boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      // Every connection of this database is ended by the server, as on a failover.
      const admin = new PostgresStore(await openPostgres(url, {max: 1}))
      try {
        await admin.pool.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
        )
      } finally {
        await admin.close()
      }
      const failed = await store.getTenant('t1').then(
        () => 'ok',
        (err: {code?: string}) => err.code,
      )
      // The first query on a killed connection fails as unavailable (or the pool already
      // replaced it); either way the next ones work.
      expect(['ok', 'STORAGE_UNAVAILABLE']).toContain(failed)
      expect((await store.getTenant('t1'))?.name).toBe('acme')
      await writes.createUser(
        {id: 'u2', tenantId: 't1', username: 'carol', passwordHash: 'x', role: 'member'},
        ctx(),
      )
      expect((await store.getUserByUsername('carol'))?.id).toBe('u2')
    } finally {
      await store.close()
    }
  })
})
