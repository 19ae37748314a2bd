// connection_changed on the admin event stream of every replica: the replica that holds a pair's
// sessions writes the path change, and an admin watching through another replica (the load
// balancer put their socket there) hears it too, once, through migration 0010's NOTIFY. Garbage
// on that channel is ignored.
import pg from 'pg'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ConnectionChangedEventSchema, type PeerReport} from '../../shared/protocol/netmap.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../test/support/postgres.js'
import {createNetwork, joinNode} from '../testing/client.js'
import {startReplicas, type TestReplicas} from '../testing/replicas.js'
import type {TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'

const skip = postgresSkipReason()

describe.skipIf(skip !== undefined)(
  `connection changes across controller replicas${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let replicas: TestReplicas
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
      replicas = await startReplicas(server, () => ({connectionFlushMs: 50}))
      ;({r1, r2} = replicas)
    })
    afterAll(async () => {
      await Promise.all(sockets.map((s) => s.close()))
      await replicas?.close()
      await server?.stop()
    })

    const report = (s: WsClient, peers: PeerReport[]) =>
      s.ws.send(JSON.stringify({type: 'report', reset: true, peers}))

    it('tells an admin on replica 2 of a path change written by replica 1, once, with names', async () => {
      const net = await createNetwork(r1, {name: 'paths', cidr: '10.73.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r1, net.id, 'alpha')
      const b = await joinNode(r1, net.id, 'beta')
      const [lo, hi] = a.node.id < b.node.id ? [a.node, b.node] : [b.node, a.node]
      const on1 = await ws(`${r1.url}/api/v1/events`, r1.adminToken)
      const on2 = await ws(`${r2.url}/api/v1/events`, r2.adminToken)
      await on1.next((f: {type: string}) => f.type === 'snapshot', 5_000)
      await on2.next((f: {type: string}) => f.type === 'snapshot', 5_000)

      // Garbage on the channel first (only our trigger should write it): ignored, nothing breaks.
      const admin = new pg.Client({connectionString: replicas.database})
      admin.on('error', () => undefined)
      await admin.connect()
      try {
        for (const junk of ['not json', '{"networkId":1}', JSON.stringify({replica: 'x'.repeat(7000)})])
          await admin.query('SELECT pg_notify($1, $2)', ['mesh_connections', junk])
      } finally {
        await admin.end()
      }

      // Both sessions on replica 1, which therefore writes the pair.
      const sa = await ws(`${r1.url}/api/v1/netmap`, a.credential)
      const sb = await ws(`${r1.url}/api/v1/netmap`, b.credential)
      await sa.next((f: {type: string}) => f.type === 'full', 5_000)
      await sb.next((f: {type: string}) => f.type === 'full', 5_000)
      report(sa, [
        {id: b.node.id, online: true, endpoint: '198.51.100.7:51820', path: 'direct', latencyMs: 3},
      ])
      report(sb, [
        {id: a.node.id, online: true, endpoint: '198.51.100.8:51820', path: 'direct', latencyMs: 4},
      ])

      const isPair = (f: {type: string; a?: {id: string}}) =>
        f.type === 'connection_changed' && f.a?.id === lo.id
      const local = ConnectionChangedEventSchema.parse(await on1.next(isPair, 5_000))
      const remote = ConnectionChangedEventSchema.parse(await on2.next(isPair, 5_000))
      expect(remote).toEqual(local)
      expect(remote).toMatchObject({
        networkId: net.id,
        a: {id: lo.id, name: lo.name},
        b: {id: hi.id, name: hi.name},
        from: 'none',
        to: 'direct',
      })

      // The fall back to the relay comes across the same way; replica 2 heard the first event
      // once (the next one it hears for the pair is this one).
      report(sa, [{id: b.node.id, online: true, endpoint: '127.0.0.1:40001', path: 'relay', latencyMs: 30}])
      report(sb, [{id: a.node.id, online: true, endpoint: '127.0.0.1:40002', path: 'relay', latencyMs: 31}])
      const next = ConnectionChangedEventSchema.parse(await on2.next(isPair, 5_000))
      expect(next).toMatchObject({from: 'direct', to: 'relay'})
    })
  },
)
