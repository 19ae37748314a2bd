// Path state across controller replicas: two connection trackers, each on its own pool of one
// real PostgreSQL (as two replicas are), one holding a's netmap session and the other b's. The
// merged row and the log they produce together are compared with what one tracker that sees
// both views produces on a database of its own (the single controller the rules were written
// for). Time is a FakeClock; flushes are asked for, not waited for.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import nacl from 'tweetnacl'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../test/support/postgres.js'
import {ConnectionTracker, type ConnectionChange, type PeerView} from './connections.js'
import {storeWrites} from './domain/writes.js'
import {ctx} from './store/contract.test-suite.js'
import {openPostgres} from './store/postgres/open.js'
import {PostgresStore} from './store/postgres/postgres-store.js'
import {PgPresenceTable} from './store/postgres/presence-table.js'
import {SqliteStore} from './store/sqlite/sqlite-store.js'
import type {Store} from './store/store.js'

const skip = postgresSkipReason()

const NET = {id: 'n_paths', tenantId: 't_paths'}
const FAR = '2099-01-01T00:00:00.000Z'

const relay = (latencyMs: number): PeerView => ({
  online: true,
  endpoint: '127.0.0.1:40001',
  path: 'relay',
  latencyMs,
})
const direct = (latencyMs: number, endpoint = '198.51.100.7:51820'): PeerView => ({
  online: true,
  endpoint,
  path: 'direct',
  latencyMs,
})
const offline: PeerView = {online: false, endpoint: null, path: 'none'}

/** The same tenant, network and nodes (same ids) on any store. */
async function seed(store: Store, nodeIds: readonly string[]): Promise<void> {
  const w = storeWrites(store)
  await w.createTenantWithOwner(
    {id: NET.tenantId, name: 'paths'},
    {id: 'u_paths', username: 'paths', passwordHash: 'x', superuser: false},
    ctx(),
  )
  await w.createNetwork(
    {
      id: NET.id,
      tenantId: NET.tenantId,
      name: 'paths',
      cidr: '10.88.0.0/24',
      description: '',
      joinPolicy: 'open',
      maxNodes: null,
    },
    ctx(),
  )
  for (const id of nodeIds) {
    await w.registerNode(
      {kind: 'open', networkId: NET.id},
      {
        id,
        name: id.replace(/_/g, '-'),
        hostname: id,
        os: 'linux',
        publicKey: Buffer.from(nacl.box.keyPair().publicKey).toString('base64'),
        endpoints: [],
        credentialHash: `cred-${id}`,
      },
      ctx(),
    )
  }
}

/** The pair rows and the log of a store, without what differs between two databases (ids, names). */
async function outcome(store: Store) {
  const rows = (await store.listConnections(NET.id, {}, {limit: 500})).items.map((c) => ({
    a: c.a.id,
    b: c.b.id,
    path: c.path,
    latencyMs: c.latencyMs,
    endpoints: c.endpoints,
    since: c.since,
  }))
  const log = (await store.connectionLog(NET.id, {}, {limit: 500})).items
    .map((e) => [e.a.id, e.b.id, e.event, e.from, e.to, e.latencyMs, e.at])
    .reverse()
  return {rows, log}
}

describe.skipIf(skip !== undefined)(
  `path state across two controller replicas on PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let dir: string
    const closers: (() => Promise<void>)[] = []

    beforeAll(async () => {
      server = await startPostgres()
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-pathshare-'))
    })
    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close().catch(() => undefined)
    })
    afterAll(async () => {
      await server?.stop()
      if (dir) fs.rmSync(dir, {recursive: true, force: true})
    })

    /**
     * Replica 1 and 2: two pools on one fresh database, each with its tracker; presence rows say
     * which replica holds which node (as SharedPresence writes them). The reference: one tracker
     * on a SQLite file of its own that is told every view.
     */
    async function setup(nodes: {r1: string[]; r2: string[]}) {
      const url = await server.createDatabase()
      const clock = new FakeClock(Date.UTC(2026, 10, 22, 10))
      const s1 = new PostgresStore(await openPostgres(url))
      closers.push(() => s1.close())
      const s2 = new PostgresStore(await openPostgres(url))
      closers.push(() => s2.close())
      const ref = await SqliteStore.open(path.join(fs.mkdtempSync(path.join(dir, 'ref-')), 'mesh.db'))
      closers.push(() => ref.close())
      const ids = [...nodes.r1, ...nodes.r2]
      await seed(s1, ids)
      await seed(ref, ids)
      const presence = new PgPresenceTable(s1.pool)
      for (const id of nodes.r1) await presence.hold(id, 'r1', '2026-11-22T10:00:00.000Z', FAR)
      for (const id of nodes.r2) await presence.hold(id, 'r2', '2026-11-22T10:00:00.000Z', FAR)
      const t1 = new ConnectionTracker(s1, {clock, replica: 'r1'})
      const t2 = new ConnectionTracker(s2, {clock, replica: 'r2'})
      const t0 = new ConnectionTracker(ref, {clock})
      closers.push(
        () => t0.close(),
        () => t2.close(),
        () => t1.close(),
      )
      const heard: ConnectionChange[] = []
      t1.onChange((c) => heard.push(c))
      t2.onChange((c) => heard.push(c))
      const on = new Set(nodes.r1)
      /** `reporter` says `view` of `peer`: to the replica holding its session, and to the reference. */
      const say = (reporter: string, peer: string, view: PeerView) => {
        ;(on.has(reporter) ? t1 : t2).report(NET, reporter, peer, view)
        t0.report(NET, reporter, peer, view)
      }
      const forget = (reporter: string) => {
        ;(on.has(reporter) ? t1 : t2).forgetReporter(NET.id, reporter)
        t0.forgetReporter(NET.id, reporter)
      }
      /** One flush window later: every tracker writes what it has. */
      const flush = async () => {
        clock.advance(1_000)
        await t1.flush()
        await t2.flush()
        await t0.flush()
      }
      const sides = (nodeA: string, nodeB: string) =>
        s1.write((tx) => tx.lockConnections(NET.id, [{nodeA, nodeB}], '2026-11-22T11:00:00.000Z'))
      return {s1, ref, t1, t2, say, forget, flush, heard, sides, clock, presence}
    }

    it('merges a relay view on replica 1 and a direct view on replica 2 into one direct row, one upgrade, and no flapping', async () => {
      const [a, b] = ['nd_a', 'nd_b']
      const r = await setup({r1: [a], r2: [b]})
      r.say(a, b, relay(30))
      await r.flush()
      r.say(b, a, direct(5))
      await r.flush()
      // The same paths again and again, flushed on both replicas many times; b's latency only
      // jitters, a's relay latency moves enough each time for replica 1 to write a's side (where
      // a replica merging from its own side alone would write relay over the direct row).
      for (let i = 0; i < 5; i++) {
        r.say(a, b, relay(i % 2 === 0 ? 60 : 30))
        r.say(b, a, direct(5 + (i % 3)))
        await r.flush()
      }
      const got = await outcome(r.s1)
      expect(got.rows).toEqual([
        {
          a,
          b,
          path: 'direct',
          latencyMs: 5,
          endpoints: {a: null, b: '198.51.100.7:51820'},
          since: expect.any(String),
        },
      ])
      expect(got.log.map((e) => [e[2], e[3], e[4]])).toEqual([
        ['connected', 'none', 'relay'],
        ['upgraded_to_direct', 'relay', 'direct'],
      ])
      expect(r.heard.map((c) => c.event)).toEqual(['connected', 'upgraded_to_direct'])
      expect(got).toEqual(await outcome(r.ref))
      const [row] = await r.sides(a, b)
      expect(row).toMatchObject({
        sideA: {path: 'relay', replica: 'r1'},
        sideB: {path: 'direct', replica: 'r2'},
      })
    })

    it('falls back, disconnects and keeps the stored state exactly as one tracker seeing both sides does', async () => {
      const [a, b, c] = ['nd_a', 'nd_b', 'nd_c']
      const r = await setup({r1: [a, c], r2: [b]})
      const steps: (() => void)[] = [
        // Each step is one window in which the nodes of one replica report: views that reach
        // two replicas in the same window are merged in the order the flushes commit, which one
        // process seeing both would not do (it merges them at once).
        () => {
          r.say(a, b, direct(4, '198.51.100.2:51820'))
          r.say(c, b, relay(40))
        },
        () => r.say(b, a, direct(6, '198.51.100.1:51820')),
        // a's WireGuard falls back first; b still sees direct: still direct.
        () => r.say(a, b, relay(33)),
        () => r.say(b, a, relay(35)),
        // b's session closes on replica 2: a's side alone decides, and it says relay.
        () => r.forget(b),
        // c loses its handshake to b: b no longer reports, so c's side alone decides.
        () => r.say(c, b, offline),
        // a goes too: neither side of (a, b) reports, and the stored relay stays (rule 4).
        () => r.forget(a),
        // b comes back on replica 2 and sees a direct again.
        () => r.say(b, a, direct(7, '198.51.100.1:51820')),
      ]
      for (const step of steps) {
        step()
        await r.flush()
        expect(await outcome(r.s1)).toEqual(await outcome(r.ref))
      }
      const got = await outcome(r.s1)
      expect(got.log.map((e) => [e[0], e[1], e[2]])).toEqual([
        [a, b, 'connected'],
        [b, c, 'connected'],
        [a, b, 'fell_back_to_relay'],
        [b, c, 'disconnected'],
        [a, b, 'upgraded_to_direct'],
      ])
      expect(got.rows).toMatchObject([{a, b, path: 'direct', latencyMs: 7}])
    })

    it("is not pinned by the side of a replica that died, and the node's first report through another replica takes its side over", async () => {
      const [a, b, c] = ['nd_a', 'nd_b', 'nd_c']
      const r = await setup({r1: [a, c], r2: [b]})
      // Replica 1's presence rows of a and c expire 30 s from now unless it heartbeats.
      const ttl = new Date(r.clock.now() + 30_000).toISOString()
      await r.presence.hold(a, 'r1', '2026-11-22T10:00:00.000Z', ttl)
      await r.presence.hold(c, 'r1', '2026-11-22T10:00:00.000Z', ttl)
      r.say(a, b, direct(4, '198.51.100.2:51820'))
      r.say(c, b, direct(9, '198.51.100.3:51820'))
      await r.flush()
      // Replica 1 dies: no forgetReporter, no heartbeat. 40 s later b loses its handshake with c,
      // which never came back; c's stale direct side must not keep the pair up.
      r.clock.advance(40_000)
      r.t2.report(NET, b, c, offline)
      await r.t2.flush()
      expect((await outcome(r.s1)).rows.map((x) => [x.a, x.b, x.path])).toEqual([[a, b, 'direct']])
      expect(r.heard.map((x) => [x.a.id, x.b.id, x.event])).toEqual([
        [a, b, 'connected'],
        [b, c, 'connected'],
        [b, c, 'disconnected'],
      ])
      // a reconnects through replica 2: its session starts over (reset) and reports relay.
      await r.presence.hold(a, 'r2', '2026-11-22T10:01:00.000Z', FAR)
      r.t2.resetReporter(NET.id, a)
      r.t2.report(NET, a, b, relay(30))
      await r.t2.flush()
      const [row] = await r.sides(a, b)
      expect(row).toMatchObject({path: 'relay', sideA: {path: 'relay', replica: 'r2'}})
      expect(r.heard.at(-1)).toMatchObject({event: 'fell_back_to_relay', from: 'direct', to: 'relay'})
    })

    it('loses neither side when both replicas flush the two sides of many pairs at the same moment', async () => {
      const left = Array.from({length: 6}, (_, i) => `nd_l${i}`)
      const right = Array.from({length: 6}, (_, i) => `nd_r${i}`)
      const r = await setup({r1: left, r2: right})
      for (let round = 0; round < 3; round++) {
        for (const x of left) for (const y of right) r.say(x, y, relay(30 + round * 10))
        for (const y of right) for (const x of left) r.say(y, x, direct(5 + round * 10))
        // Both replicas' flushes run at once; each takes the pair locks of all 36 pairs.
        await Promise.all([r.t1.flush(), r.t2.flush()])
      }
      const rows = await r.s1.write((tx) =>
        tx.lockConnections(
          NET.id,
          left.flatMap((x) => right.map((y) => (x < y ? {nodeA: x, nodeB: y} : {nodeA: y, nodeB: x}))),
          '2026-11-22T11:00:00.000Z',
        ),
      )
      expect(rows).toHaveLength(36)
      for (const row of rows) {
        const [fromLeft, fromRight] = left.includes(row.nodeA)
          ? [row.sideA, row.sideB]
          : [row.sideB, row.sideA]
        expect(fromLeft).toMatchObject({path: 'relay', latencyMs: 50, replica: 'r1'})
        expect(fromRight).toMatchObject({path: 'direct', latencyMs: 25, replica: 'r2'})
        expect(row).toMatchObject({path: 'direct', latencyMs: 25})
      }
      // Per pair: connected then (if the relay side was merged first) upgraded; never a flap back.
      const log = (await outcome(r.s1)).log
      for (const row of rows) {
        const events = log.filter((e) => e[0] === row.nodeA && e[1] === row.nodeB).map((e) => e[2])
        expect([['connected'], ['connected', 'upgraded_to_direct']]).toContainEqual(events)
      }
    })
  },
)
