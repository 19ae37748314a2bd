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

/** What a listener told, with waits that resolve when a matching value arrives (bounded, 5 s). */
class Heard<T> {
  readonly seen: T[] = []
  private readonly waiters = new Set<() => void>()

  readonly push = (v: T): void => {
    this.seen.push(v)
    for (const w of [...this.waiters]) w()
  }

  waitFor(check: (v: T) => boolean): Promise<T> {
    return new Promise((resolve, reject) => {
      const look = () => {
        const hit = this.seen.find(check)
        if (hit === undefined) return
        clearTimeout(timer)
        this.waiters.delete(look)
        resolve(hit)
      }
      const timer = setTimeout(() => {
        this.waiters.delete(look)
        reject(new Error(`not told; got ${JSON.stringify(this.seen)}`))
      }, 5_000)
      this.waiters.add(look)
      look()
    })
  }
}

describe.skipIf(skip !== undefined)(`PgListener${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('hears each committed netmap change with network, version and node, and nothing of a rolled-back one', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const store = new PostgresStore(await openPostgres(url))
    const heard = new Heard<string>()
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
      await heard.waitFor((h) => h === 'mesh_netmap n1 1 nd1 added mesh-controller')
      expect(heard.seen).toContain('mesh_network insert n1 mesh-controller')
      expect(heard.seen.filter((h) => h.includes('nd_ghost'))).toEqual([])
      await w.updateNetwork('n1', {description: 'renamed'}, ctx())
      await heard.waitFor((h) => h === 'mesh_network update n1 mesh-controller')
      await w.deleteNetwork('n1', ctx())
      await heard.waitFor((h) => h === 'mesh_network deleted n1 mesh-controller')
    } finally {
      await listener.close()
      await store.close()
    }
  })

  it('reconnects after the server drops its connection, tells its owner, and hears later changes', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const store = new PostgresStore(await openPostgres(url))
    const clock = new FakeClock()
    const heard = new Heard<string>()
    const connects = new Heard<boolean>()
    const lost = new Heard<string>()
    const listener = new PgListener({
      url,
      channels: ['mesh_network'],
      onNotification: (_c, payload) => heard.push(payload),
      onConnected: (reconnect) => connects.push(reconnect),
      // The listener's only word of a lost connection is its warning.
      log: {warn: (_obj, msg) => lost.push(msg)},
      clock,
    })
    try {
      await listener.start()
      expect(connects.seen).toEqual([false])
      await store.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mesh-listener' AND datname = current_database()",
      )
      await lost.waitFor((m) => m.includes('lost'))
      expect(listener.connected).toBe(false)
      // Nothing happens until the clock reaches the first retry (100 ms).
      expect(connects.seen).toEqual([false])
      clock.advance(100)
      await connects.waitFor((c) => c)
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
      await heard.waitFor((h) => h === 'insert n2 mesh-controller')
    } finally {
      await listener.close()
      await store.close()
    }
  })
})
