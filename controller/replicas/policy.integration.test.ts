// An ACL policy across two controller replicas on one real PostgreSQL (issue 10): a policy set
// or removed through replica 2 changes the maps of nodes connected to replica 1 within a second
// (the 0013 trigger's NOTIFY mesh_policy, heard by replicas/pg-change-feed.ts).
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../test/support/postgres.js'
import {client, createNetwork, joinNode, publicKey, type JoinedNode} from '../testing/client.js'
import {startReplicas, type TestReplicas} from '../testing/replicas.js'
import type {TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'

const skip = postgresSkipReason()
interface PeerEntry {
  id: string
  inbound?: unknown
}
type Frame = {
  type: string
  self?: {id: string}
  peers?: PeerEntry[]
  added?: PeerEntry[]
  changed?: PeerEntry[]
  removed?: string[]
}

/** The peers a node holds after every frame it got so far: peer id -> its inbound ('all' when none). */
function held(ws: WsClient): Record<string, unknown> {
  let peers = new Map<string, PeerEntry>()
  for (const raw of ws.frames) {
    const f = raw as Frame
    if (f.type === 'full')
      peers = new Map((f.peers ?? []).filter((p) => p.id !== f.self?.id).map((p) => [p.id, p]))
    for (const p of [...(f.added ?? []), ...(f.changed ?? [])]) peers.set(p.id, p)
    for (const id of f.removed ?? []) peers.delete(id)
  }
  return Object.fromEntries([...peers.values()].map((p) => [p.id, p.inbound ?? 'all']))
}

describe.skipIf(skip !== undefined)(
  `an ACL policy across two controller replicas on PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let replicas: TestReplicas | undefined
    let r1: TestController
    let r2: TestController
    const sockets: WsClient[] = []

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

    async function tagged(ctl: TestController, networkId: string, name: string, tag: string) {
      const api = client(ctl.url)
      const k = await api.req('POST', `/api/v1/networks/${networkId}/authkeys`, {
        token: ctl.adminToken,
        body: {tags: [tag], preApproved: true},
      })
      expect(k.status, k.text).toBe(201)
      const r = await api.req('POST', '/api/v1/register', {
        body: {authKey: k.body.key, publicKey: publicKey(), name},
      })
      expect(r.status, r.text).toBe(201)
      return r.body as JoinedNode
    }
    async function session(ctl: TestController, node: JoinedNode) {
      const ws = await connectWs(`${ctl.url}/api/v1/netmap`, node.credential)
      sockets.push(ws)
      await ws.next<Frame>((f) => f.type === 'full', 5_000)
      return ws
    }

    it('changes the maps of nodes on replica 1 within a second of a policy set through replica 2', async () => {
      const net = await createNetwork(r1, {name: 'acl', cidr: '10.75.0.0/24', joinPolicy: 'open'})
      const ci = await tagged(r1, net.id, 'ci', 'tag:ci')
      const web = await tagged(r1, net.id, 'web', 'tag:web')
      const ops = await joinNode(r2, net.id, 'ops')
      const wsCi = await session(r1, ci)
      const wsWeb = await session(r1, web)
      const wsOps = await session(r2, ops)
      expect(held(wsCi)).toEqual({[web.node.id]: 'all', [ops.node.id]: 'all'})

      const started = performance.now()
      const set = await client(r2.url).req('PUT', '/api/v1/policy', {
        token: r2.adminToken,
        body: {document: '{"acls": [{"src": ["tag:ci"], "dst": ["tag:web:443"], "proto": "tcp"}]}'},
      })
      expect(set.status, set.text).toBe(200)
      const tcp443 = [{proto: 'tcp', ports: [[443, 443]]}]
      await expect.poll(() => held(wsCi), {timeout: 1_000, interval: 5}).toEqual({[web.node.id]: []})
      await expect.poll(() => held(wsWeb), {timeout: 1_000, interval: 5}).toEqual({[ci.node.id]: tcp443})
      await expect.poll(() => held(wsOps), {timeout: 1_000, interval: 5}).toEqual({})
      expect(performance.now() - started).toBeLessThan(1_000)
      // Deltas, not full maps.
      for (const ws of [wsCi, wsWeb, wsOps])
        expect(ws.frames.filter((f) => (f as Frame).type === 'full')).toHaveLength(1)

      // Removed through replica 2: everyone sees everyone again.
      const del = await client(r2.url).req('DELETE', '/api/v1/policy', {token: r2.adminToken})
      expect(del.status, del.text).toBe(200)
      await expect
        .poll(() => held(wsCi), {timeout: 1_000, interval: 5})
        .toEqual({[web.node.id]: 'all', [ops.node.id]: 'all'})
      await expect
        .poll(() => held(wsOps), {timeout: 1_000, interval: 5})
        .toEqual({[web.node.id]: 'all', [ci.node.id]: 'all'})
    })
  },
)
