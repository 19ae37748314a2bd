// PgListener on a real PostgreSQL: committed changes arrive as notifications from the 0006
// triggers (and rolled-back ones never do), and a listener whose connection the server kills
// reconnects on its clock and says so, so its owner can re-read what it missed.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {FakeClock} from '../../../shared/testing/fake-clock.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../../test/support/postgres.js'
import {storeWrites} from '../../domain/writes.js'
import {ctx} from '../contract.test-suite.js'
import {PgListener} from './listener.js'
import {openPostgres} from './open.js'
import {PostgresStore} from './postgres-store.js'

const skip = postgresSkipReason()
let server: PostgresServer | undefined

beforeAll(async () => {
  if (skip === undefined) server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

/** Resolves with the first value `check` accepts among the values pushed to `seen`, within 5 s. */
function waitFor<T>(seen: T[], check: (v: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 5_000
    const poll = () => {
      const hit = seen.find(check)
      if (hit !== undefined) return resolve(hit)
      if (Date.now() > deadline) return reject(new Error(`not seen; got ${JSON.stringify(seen)}`))
      setTimeout(poll, 10)
    }
    poll()
  })
}

describe.skipIf(skip !== undefined)(`PgListener${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('hears each committed netmap change with network, version and node, and nothing of a rolled-back one', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const store = new PostgresStore(await openPostgres(url))
    const heard: string[] = []
    const listener = new PgListener({
      url,
      channels: ['mesh_netmap', 'mesh_network'],
      onNotification: (channel, payload) => heard.push(`${channel} ${payload}`),
      clock: new FakeClock(),
    })
    try {
      await listener.start()
      const w = storeWrites(store)
      await w.createTenantWithOwner(
        {id: 't1', name: 'acme'},
        {id: 'u1', username: 'boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      const net = {id: 'n1', tenantId: 't1', name: 'lab', cidr: '10.0.0.0/24', description: ''}
      await w.createNetwork({...net, joinPolicy: 'open', maxNodes: null}, ctx())
      await expect(
        store.write(async (tx) => {
          await tx.bumpNetmap('n1', 'nd_ghost', 'changed')
          throw new Error('rolled back')
        }),
      ).rejects.toThrow('rolled back')
      const node = {id: 'nd1', name: 'a', hostname: 'a', os: 'linux', endpoints: [], credentialHash: 'c1'}
      await w.registerNode(
        {kind: 'open', networkId: 'n1'},
        {...node, publicKey: Buffer.alloc(32, 7).toString('base64')},
        ctx(),
      )
      await waitFor(heard, (h) => h === 'mesh_netmap n1 1 nd1 added mesh-controller')
      expect(heard).toContain('mesh_network insert n1 mesh-controller')
      expect(heard.filter((h) => h.includes('nd_ghost'))).toEqual([])
      await w.updateNetwork('n1', {description: 'renamed'}, ctx())
      await waitFor(heard, (h) => h === 'mesh_network update n1 mesh-controller')
      await w.deleteNetwork('n1', ctx())
      await waitFor(heard, (h) => h === 'mesh_network deleted n1 mesh-controller')
    } finally {
      await listener.close()
      await store.close()
    }
  })

  it('reconnects after the server drops its connection, tells its owner, and hears later changes', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const store = new PostgresStore(await openPostgres(url))
    const clock = new FakeClock()
    const heard: string[] = []
    const connects: boolean[] = []
    const listener = new PgListener({
      url,
      channels: ['mesh_network'],
      onNotification: (_c, payload) => heard.push(payload),
      onConnected: (reconnect) => connects.push(reconnect),
      clock,
    })
    try {
      await listener.start()
      expect(connects).toEqual([false])
      await store.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mesh-listener' AND datname = current_database()",
      )
      await waitFor([0], () => !listener.connected)
      // Nothing happens until the clock reaches the first retry (100 ms).
      expect(connects).toEqual([false])
      clock.advance(100)
      await waitFor(connects, (c) => c)
      const w = storeWrites(store)
      await w.createTenantWithOwner(
        {id: 't1', name: 'acme'},
        {id: 'u1', username: 'boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      await w.createNetwork(
        {
          id: 'n2',
          tenantId: 't1',
          name: 'lab',
          cidr: '10.0.0.0/24',
          description: '',
          joinPolicy: 'open',
          maxNodes: null,
        },
        ctx(),
      )
      await waitFor(heard, (h) => h === 'insert n2 mesh-controller')
    } finally {
      await listener.close()
      await store.close()
    }
  })
})
