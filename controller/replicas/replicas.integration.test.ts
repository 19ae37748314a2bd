// Two controller replicas on one real PostgreSQL (in-process, each with its own pool, listener
// and presence): a change made through one reaches nodes and admins connected to the other
// within a second, presence is the same on both, and a replica whose notification connection is
// cut catches up from the store.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../test/support/postgres.js'
import {client, createNetwork, joinNode} from '../testing/client.js'
import {startReplicas, type TestReplicas} from '../testing/replicas.js'
import type {TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'

const skip = postgresSkipReason()
type Frame = {
  type: string
  version?: number
  added?: {id: string}[]
  removed?: string[]
  peers?: {id: string}[]
}

describe.skipIf(skip !== undefined)(
  `two controller replicas on PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let replicas: TestReplicas | undefined
    let r1: TestController
    let r2: TestController
    const sockets: WsClient[] = []
    const ws = async (url: string, token: string) => {
      const s = await connectWs(url, token)
      sockets.push(s)
      return s
    }

    beforeAll(async () => {
      server = await startPostgres()
      replicas = await startReplicas(server)
      ;({r1, r2} = replicas)
    })
    afterAll(async () => {
      await Promise.all(sockets.map((s) => s.close()))
      await replicas?.close()
      await server?.stop()
    })

    /** The nodes of a network (up to 500) as replica `ctl` lists them. */
    async function listNodes(ctl: TestController, networkId: string) {
      const list = await client(ctl.url).req('GET', `/api/v1/networks/${networkId}/nodes?limit=500`, {
        token: ctl.adminToken,
      })
      expect(list.status, list.text).toBe(200)
      return list.body.items as {id: string; online: boolean; lastSeen: string | null}[]
    }

    it('tells a node on replica 1 of a node added through replica 2 within a second', async () => {
      const net = await createNetwork(r2, {name: 'fanout', cidr: '10.71.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r1, net.id, 'a')
      const wsA = await ws(`${r1.url}/api/v1/netmap`, a.credential)
      const full = await wsA.next<Frame>((f) => f.type === 'full', 5_000)
      expect(full.peers).toEqual([])
      const started = performance.now()
      const b = await joinNode(r2, net.id, 'b')
      const delta = await wsA.next<Frame>(
        (f) => f.type === 'delta' && (f.added ?? []).some((p) => p.id === b.node.id),
        1_000,
      )
      expect(performance.now() - started).toBeLessThan(1_000)
      expect(delta.version).toBe(2)
      // And a removal through replica 2 the same way.
      const del = await client(r2.url).req('DELETE', `/api/v1/nodes/${b.node.id}`, {token: r2.adminToken})
      expect(del.status, del.text).toBe(200)
      await wsA.next<Frame>((f) => f.type === 'delta' && (f.removed ?? []).includes(b.node.id), 1_000)
    })

    it('shows a node online on both replicas while its session is on one, and offline on both after', async () => {
      const net = await createNetwork(r1, {name: 'presence', cidr: '10.72.0.0/24', joinPolicy: 'open'})
      const n = await joinNode(r1, net.id, 'n')
      const events = await ws(`${r1.url}/api/v1/events`, r1.adminToken)
      await events.next<Frame>((f) => f.type === 'snapshot', 5_000)
      const session = await ws(`${r2.url}/api/v1/netmap`, n.credential)
      await session.next<Frame>((f) => f.type === 'full', 5_000)
      await events.next<{type: string; node: {id: string; online: boolean}}>(
        (f) => f.type === 'node_online' && f.node.id === n.node.id,
        2_000,
      )
      for (const ctl of [r1, r2])
        expect((await listNodes(ctl, net.id)).find((x) => x.id === n.node.id)?.online).toBe(true)
      await session.close()
      await events.next<{type: string; node: {id: string}}>(
        (f) => f.type === 'node_offline' && f.node.id === n.node.id,
        2_000,
      )
      for (const ctl of [r1, r2])
        expect((await listNodes(ctl, net.id)).find((x) => x.id === n.node.id)?.online).toBe(false)
    })

    it('keeps presence right through a burst of sessions opening and closing at once (grouped row writes)', async () => {
      const net = await createNetwork(r1, {name: 'burst', cidr: '10.79.0.0/24', joinPolicy: 'open'})
      const nodes = await Promise.all(Array.from({length: 150}, (_, i) => joinNode(r1, net.id, `b${i}`)))
      const online = async (ctl: TestController) => (await listNodes(ctl, net.id)).filter((x) => x.online)
      const sessions = await Promise.all(nodes.map((n) => ws(`${r2.url}/api/v1/netmap`, n.credential)))
      await Promise.all(sessions.map((s) => s.next<Frame>((f) => f.type === 'full', 10_000)))
      // Every row and last-seen time written (connected() resolves after its group's write).
      await expect.poll(async () => (await online(r1)).length, {timeout: 5_000}).toBe(150)
      expect((await online(r2)).every((n) => n.lastSeen !== null)).toBe(true)
      await Promise.all(sessions.map((s) => s.close()))
      await expect.poll(async () => (await online(r1)).length, {timeout: 5_000}).toBe(0)
      expect((await online(r2)).length).toBe(0)
    })

    it('tells admins on replica 1 of a node added through replica 2', async () => {
      const net = await createNetwork(r1, {name: 'admins', cidr: '10.73.0.0/24', joinPolicy: 'open'})
      const events = await ws(`${r1.url}/api/v1/events`, r1.adminToken)
      await events.next<Frame>((f) => f.type === 'snapshot', 5_000)
      const c = await joinNode(r2, net.id, 'c')
      await events.next<{type: string; node: {id: string}}>(
        (f) => f.type === 'node_added' && f.node.id === c.node.id,
        1_000,
      )
    })

    it('catches a replica up after its notification connection was cut: the next change shows the gap and it reloads', async () => {
      const net = await createNetwork(r2, {name: 'gap', cidr: '10.74.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r1, net.id, 'a')
      const wsA = await ws(`${r1.url}/api/v1/netmap`, a.credential)
      await wsA.next<Frame>((f) => f.type === 'full', 5_000)
      // Cut replica 1's listening connections: what replica 2 writes meanwhile is not heard.
      const admin = client(r2.url)
      const dbUrl = r1.running.dbPath // redacted; cut through replica 2's own pool instead
      expect(dbUrl).toContain('***')
      const pool = (r2.running.store as unknown as {pool: {query(sql: string): Promise<unknown>}}).pool
      await pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mesh-listener' AND datname = current_database()",
      )
      const b = await joinNode(r2, net.id, 'b')
      // Replica 1 hears of b either through the reconnect replay or the gap reload: within seconds.
      await wsA.next<Frame>((f) => f.type === 'delta' && JSON.stringify(f).includes(b.node.id), 8_000)
      void admin
    })
  },
)
