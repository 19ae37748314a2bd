// IdP groups in an ACL policy across two controller replicas on one real PostgreSQL (issue 10):
// a person's OIDC login through one replica that changes their group claim changes the maps of
// nodes connected to the other within a second (migration 0018's trigger: NOTIFY mesh_policy).
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../test/support/postgres.js'
import {browse, startTestIdp, TEST_CLIENT_ID, type TestIdp} from '../../test/support/oidc-provider.js'
import {client, createNetwork, publicKey, type JoinedNode} from '../testing/client.js'
import {startReplicas, type TestReplicas} from '../testing/replicas.js'
import type {TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'

const skip = postgresSkipReason()
const REDIRECT = 'http://127.0.0.1:53682/callback'
interface PeerEntry {
  id: string
  name: string
}
type Frame = {
  type: string
  self?: {id: string}
  peers?: PeerEntry[]
  added?: PeerEntry[]
  changed?: PeerEntry[]
  removed?: string[]
}

/** The names of the peers a node holds after every frame it got so far. */
function held(ws: WsClient): string[] {
  let peers = new Map<string, string>()
  for (const raw of ws.frames) {
    const f = raw as Frame
    if (f.type === 'full')
      peers = new Map((f.peers ?? []).filter((p) => p.id !== f.self?.id).map((p) => [p.id, p.name]))
    for (const p of [...(f.added ?? []), ...(f.changed ?? [])]) peers.set(p.id, p.name)
    for (const id of f.removed ?? []) peers.delete(id)
  }
  return [...peers.values()].sort()
}

describe.skipIf(skip !== undefined)(
  `IdP groups in an ACL policy across two controller replicas${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let idp: TestIdp
    let replicas: TestReplicas | undefined
    let r1: TestController
    let r2: TestController
    const sockets: WsClient[] = []

    beforeAll(async () => {
      server = await startPostgres()
      idp = await startTestIdp()
      const oidc = {
        issuers: [
          {
            name: 'corp',
            issuer: idp.issuer,
            clientId: TEST_CLIENT_ID,
            scopes: ['openid', 'profile', 'email', 'groups'],
            allowHttp: true,
          },
        ],
      }
      replicas = await startReplicas(server, () => ({oidc}))
      ;({r1, r2} = replicas)
    }, 60_000)
    afterAll(async () => {
      await Promise.all(sockets.map((s) => s.close()))
      await replicas?.close()
      await idp?.close()
      await server?.stop()
    })

    /** A browser login as `login` through `ctl`: its token. */
    async function login(ctl: TestController, name: string): Promise<string> {
      const api = client(ctl.url)
      const start = await api.req('POST', '/api/v1/oidc/start', {body: {redirectUri: REDIRECT}})
      expect(start.status, start.text).toBe(200)
      const seen = await browse(start.body.authorizationUrl as string, {login: name})
      const done = await api.req('POST', '/api/v1/oidc/finish', {
        body: {flowId: start.body.flowId, callbackUrl: seen.callbackUrl},
      })
      expect(done.status, done.text).toBe(200)
      return done.body.token as string
    }
    async function session(ctl: TestController, node: JoinedNode) {
      const ws = await connectWs(`${ctl.url}/api/v1/netmap`, node.credential)
      sockets.push(ws)
      await ws.next<Frame>((f) => f.type === 'full', 5_000)
      return ws
    }

    it("changes the maps of nodes on the other replica within a second of a login that changed the person's groups", async () => {
      idp.groups.set('olga', ['eng'])
      const token = await login(r1, 'olga')
      const net = await createNetwork(r1, {name: 'idp', cidr: '10.76.0.0/24', joinPolicy: 'open'})
      const api = client(r1.url)
      const reg = await api.req('POST', '/api/v1/register', {
        token,
        body: {network: net.id, publicKey: publicKey(), name: 'olga-laptop'},
      })
      expect(reg.status, reg.text).toBe(201)
      const k = await api.req('POST', `/api/v1/networks/${net.id}/authkeys`, {
        token: r1.adminToken,
        body: {tags: ['tag:web'], preApproved: true},
      })
      const web = await api.req('POST', '/api/v1/register', {
        body: {authKey: k.body.key, publicKey: publicKey(), name: 'web'},
      })
      expect(web.status, web.text).toBe(201)
      const wsLaptop = await session(r1, reg.body as JoinedNode)
      const wsWeb = await session(r2, web.body as JoinedNode)
      const set = await api.req('PUT', '/api/v1/policy', {
        token: r1.adminToken,
        body: {
          document:
            '{"groups": {"group:eng": ["oidc:eng"]}, "acls": [{"src": ["group:eng"], "dst": ["tag:web:*"]}]}',
        },
      })
      expect(set.status, set.text).toBe(200)
      await expect.poll(() => held(wsWeb), {timeout: 1_000, interval: 5}).toEqual(['olga-laptop'])

      // Out of eng, logging in through replica 1: web, on replica 2, loses her laptop.
      idp.groups.set('olga', ['sales'])
      await login(r1, 'olga')
      const started = performance.now()
      await expect.poll(() => held(wsWeb), {timeout: 1_000, interval: 5}).toEqual([])
      expect(performance.now() - started).toBeLessThan(1_000)

      // Back in, logging in through replica 2: her laptop, on replica 1, sees web again.
      idp.groups.set('olga', ['eng'])
      await login(r2, 'olga')
      await expect.poll(() => held(wsLaptop), {timeout: 1_000, interval: 5}).toEqual(['web'])
      await expect.poll(() => held(wsWeb), {timeout: 1_000, interval: 5}).toEqual(['olga-laptop'])
    })
  },
)
