// OIDC and the rest of issue 10, end to end over real HTTP: an in-process controller (temp SQLite)
// is the OpenID client of a real OpenID provider (oidc-provider on 127.0.0.1), a scripted browser
// logs the test people in, and nodes hold real netmap WebSockets.
//  - A policy group may name a group of the provider (`oidc:eng`): a login that changes a
//    person's group claim grants or takes away peers in the netmaps of their nodes and of the
//    nodes they may reach, and nobody else hears of it.
//  - An OIDC login may carry a user invite (`mesh signup INVITE --oidc`): the account is made in
//    the invite's tenant with its role, the invite is spent once, and an expired or revoked
//    invite (or an identity that already has an account) makes no user.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {browse, startTestIdp, TEST_CLIENT_ID, type TestIdp} from '../../test/support/oidc-provider.js'
import {
  client,
  createNetwork,
  publicKey,
  type Client,
  type JoinedNode,
  type Reply as ClientReply,
} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'

const REDIRECT = 'http://127.0.0.1:53682/callback'
// Bodies are read loosely, as controller/testing/client.ts reads them; the schemas are under test elsewhere.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Reply = ClientReply<any>

/** Members of the provider's group `eng` may reach the web servers; a test proves it. */
const POLICY = `{
  "groups": {"group:eng": ["oidc:eng"]},
  "acls": [{"src": ["group:eng"], "dst": ["tag:web:*"]}],
  "tests": [{"src": "group:eng", "accept": ["tag:web:443"], "deny": ["tag:other:443"]}],
}`

let idp: TestIdp
let ctl: TestController
let clock: FakeClock
let api: Client
const sockets: WsClient[] = []

beforeAll(async () => {
  idp = await startTestIdp()
  idp.deviceInterval = 1
  // The controller's clock starts at the real time (the provider's tokens carry real times);
  // only the expired-invite test moves it, and it runs last.
  clock = new FakeClock(Date.now())
  ctl = await startTestController({
    clock,
    oidc: {
      issuers: [
        {
          name: 'corp',
          issuer: idp.issuer,
          clientId: TEST_CLIENT_ID,
          scopes: ['openid', 'profile', 'email', 'groups'],
          allowHttp: true,
        },
      ],
    },
  })
  api = client(ctl.url)
}, 60_000)

afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await ctl?.close()
  await idp?.close()
})

/** Starts a code flow (with an invite code, if given) and plays the browser as `login`. */
async function startFlow(login: string, invite?: string): Promise<{flowId: string; callbackUrl: string}> {
  const start = await api.req('POST', '/api/v1/oidc/start', {
    body: {redirectUri: REDIRECT, ...(invite === undefined ? {} : {invite})},
  })
  expect(start.status, start.text).toBe(200)
  const seen = await browse(start.body.authorizationUrl as string, {login})
  expect(seen.callbackUrl, seen.html?.slice(0, 300)).toBeDefined()
  return {flowId: start.body.flowId as string, callbackUrl: seen.callbackUrl!}
}

const finish = (f: {flowId: string; callbackUrl: string}): Promise<Reply> =>
  api.req('POST', '/api/v1/oidc/finish', {body: f})

/** A whole browser login as `login`: the finish reply. */
async function oidcLogin(login: string): Promise<Reply> {
  const r = await finish(await startFlow(login))
  expect(r.status, r.text).toBe(200)
  return r
}

const errorCode = (r: Reply): string | undefined => (r.body as {error?: {code: string}}).error?.code

interface PeerEntry {
  id: string
  name: string
}
type Frame = {type: string; self?: {id: string}; peers?: PeerEntry[]} & Record<string, unknown>

/** The names of the peers a node holds after every frame so far (full maps replace, deltas apply). */
function peerNames(ws: WsClient): string[] {
  let peers = new Map<string, string>()
  for (const raw of ws.frames) {
    const f = raw as Frame
    if (f.type === 'full') {
      peers = new Map((f.peers ?? []).filter((p) => p.id !== f.self?.id).map((p) => [p.id, p.name]))
    } else if (f.type === 'delta') {
      for (const p of [...((f.added ?? []) as PeerEntry[]), ...((f.changed ?? []) as PeerEntry[])])
        peers.set(p.id, p.name)
      for (const id of (f.removed ?? []) as string[]) peers.delete(id)
    }
  }
  return [...peers.values()].sort()
}

/** Waits (at most a second: the bound for a policy change) until the node holds `names`. */
async function expectPeers(ws: WsClient, names: string[]): Promise<void> {
  await ws.until(() => JSON.stringify(peerNames(ws)) === JSON.stringify(names), 1000).catch(() => undefined)
  expect(peerNames(ws)).toEqual(names)
}

async function open(node: JoinedNode): Promise<WsClient> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, node.credential)
  sockets.push(ws)
  await ws.next((f) => f.type === 'full', 2000)
  return ws
}

/** A tagged node, through a pre-approved auth key of the admin's. */
async function joinTagged(networkId: string, name: string, tag: string): Promise<JoinedNode> {
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

describe('policy groups that name a group of the OpenID provider', () => {
  it("grants and takes away a peer as a login changes the person's group claim, telling only the nodes it concerns", async () => {
    idp.groups.set('olga', ['eng'])
    const first = await oidcLogin('olga')
    expect(first.body.user).toMatchObject({username: 'olga', role: 'member'})
    expect(first.body.tenant).toMatchObject({name: 'default'})

    const net = await createNetwork(ctl, {name: 'idp-groups', cidr: '10.77.0.0/24', joinPolicy: 'open'})
    const reg = await api.req('POST', '/api/v1/register', {
      token: first.body.token as string,
      body: {network: net.id, publicKey: publicKey(), name: 'olga-laptop'},
    })
    expect(reg.status, reg.text).toBe(201)
    const laptop = await open(reg.body as JoinedNode)
    const web = await open(await joinTagged(net.id, 'web', 'tag:web'))
    const other = await open(await joinTagged(net.id, 'other', 'tag:other'))

    const set = await api.req('PUT', '/api/v1/policy', {token: ctl.adminToken, body: {document: POLICY}})
    expect(set.status, set.text).toBe(200)
    await expectPeers(laptop, ['web'])
    await expectPeers(web, ['olga-laptop'])
    await expectPeers(other, [])
    const otherFrames = other.frames.length

    // The provider no longer puts olga in eng: her next login takes web away, both ways.
    idp.groups.set('olga', ['sales'])
    await oidcLogin('olga')
    await expectPeers(web, [])
    await expectPeers(laptop, [])

    // And back.
    idp.groups.set('olga', ['sales', 'eng'])
    await oidcLogin('olga')
    await expectPeers(web, ['olga-laptop'])
    await expectPeers(laptop, ['web'])

    // The bystander, whose view never changed, heard of none of it.
    expect(other.frames.length).toBe(otherFrames)

    const del = await api.req('DELETE', '/api/v1/policy', {token: ctl.adminToken})
    expect(del.status, del.text).toBe(200)
  })
})

describe('an OIDC login that carries a user invite (mesh signup --oidc)', () => {
  let acme: string

  beforeAll(async () => {
    const t = await api.req('POST', '/api/v1/tenants', {
      token: ctl.adminToken,
      body: {name: 'acme', owner: {username: 'acme-owner', password: 'acme owner password'}},
    })
    expect(t.status, t.text).toBe(201)
    const login = await api.req('POST', '/api/v1/login', {
      body: {username: 'acme-owner', password: 'acme owner password'},
    })
    expect(login.status, login.text).toBe(200)
    acme = login.body.token as string
  })

  async function invite(body: Record<string, unknown>): Promise<{id: string; code: string}> {
    const r = await api.req('POST', '/api/v1/user-invites', {token: acme, body})
    expect(r.status, r.text).toBe(201)
    return {id: r.body.invite.id as string, code: r.body.code as string}
  }

  const usesOf = async (id: string): Promise<number> => {
    const r = await api.req('GET', '/api/v1/user-invites', {token: acme})
    return (r.body.items as {id: string; uses: number}[]).find((i) => i.id === id)!.uses
  }

  it("makes the account in the invite's tenant with the invite's role, and spends a one-use invite once", async () => {
    const inv = await invite({role: 'moderator', maxUses: 1})
    // Two people start with the same invite (both admitted then); the first to finish takes it.
    const a = await startFlow('ivy', inv.code)
    const b = await startFlow('ivan', inv.code)
    const ra = await finish(a)
    expect(ra.status, ra.text).toBe(200)
    expect(ra.body.user).toMatchObject({username: 'ivy', role: 'moderator'})
    expect(ra.body.tenant).toMatchObject({name: 'acme'})
    const rb = await finish(b)
    expect([rb.status, errorCode(rb)], rb.text).toEqual([403, 'INVITE_USED_UP'])
    expect(await ctl.running.store.getUserByUsername('ivan')).toBeUndefined()
    expect(await usesOf(inv.id)).toBe(1)
    // A spent invite is refused before the provider is asked.
    const again = await api.req('POST', '/api/v1/oidc/start', {
      body: {redirectUri: REDIRECT, invite: inv.code},
    })
    expect([again.status, errorCode(again)]).toEqual([403, 'INVITE_USED_UP'])

    // The account logs in by its identity, and only so; later logins find it in acme.
    const who = await api.req('GET', '/api/v1/whoami', {token: ra.body.token as string})
    expect(who.body.identities).toEqual([{provider: 'corp', issuer: idp.issuer, groups: []}])
    const later = await oidcLogin('ivy')
    expect(later.body.user).toMatchObject({id: (ra.body.user as {id: string}).id, role: 'moderator'})
    expect(later.body.tenant).toMatchObject({name: 'acme'})

    const audit = await api.req('GET', '/api/v1/audit?actor=ivy&limit=50', {token: acme})
    expect(audit.status, audit.text).toBe(200)
    const signups = (audit.body.items as {action: string}[]).filter((e) => e.action === 'user.signup')
    expect(signups).toEqual([
      expect.objectContaining({
        action: 'user.signup',
        detail: expect.objectContaining({username: 'ivy', invite: inv.id, via: 'oidc', provider: 'corp'}),
      }),
    ])
  })

  it('refuses an identity that already has an account and leaves the invite unused', async () => {
    await oidcLogin('paul')
    const inv = await invite({role: 'member', maxUses: 1})
    const r = await finish(await startFlow('paul', inv.code))
    expect([r.status, errorCode(r)], r.text).toEqual([409, 'OIDC_IDENTITY_TAKEN'])
    expect(await usesOf(inv.id)).toBe(0)
    const paul = await ctl.running.store.getUserByUsername('paul')
    const tenant = await ctl.running.store.getTenant(paul!.tenantId)
    expect(tenant?.name).toBe('default')
  })

  it('refuses an invite revoked while the person was at the provider, and makes no user', async () => {
    const inv = await invite({role: 'member', maxUses: 5})
    const f = await startFlow('rita', inv.code)
    const del = await api.req('DELETE', `/api/v1/user-invites/${inv.id}`, {token: acme})
    expect(del.status, del.text).toBe(200)
    const r = await finish(f)
    expect([r.status, errorCode(r)], r.text).toEqual([403, 'INVITE_REVOKED'])
    expect(await ctl.running.store.getUserByUsername('rita')).toBeUndefined()
    const again = await api.req('POST', '/api/v1/oidc/device', {body: {invite: inv.code}})
    expect([again.status, errorCode(again)]).toEqual([403, 'INVITE_REVOKED'])
  })

  it('refuses a made-up invite before the provider is asked', async () => {
    for (const invite of ['uinv_nothing', 'not-an-invite']) {
      const r = await api.req('POST', '/api/v1/oidc/start', {body: {redirectUri: REDIRECT, invite}})
      expect([r.status, errorCode(r)], invite).toEqual([403, 'INVITE_INVALID'])
    }
  })

  // Last: it moves the controller's clock.
  it('refuses an invite that expired during a device login, and makes no user', async () => {
    const inv = await invite({role: 'member', maxUses: 1, expiresIn: 60})
    const start = await api.req('POST', '/api/v1/oidc/device', {body: {invite: inv.code}})
    expect(start.status, start.text).toBe(200)
    const {flowId, userCode, verificationUri} = start.body as {
      flowId: string
      userCode: string
      verificationUri: string
    }
    const seen = await browse(verificationUri, {login: 'eve', userCode})
    expect(seen.html ?? '').toMatch(/success/i)
    clock.advance(61_000)
    const r = await api.req('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect([r.status, errorCode(r)], r.text).toEqual([403, 'INVITE_EXPIRED'])
    expect(await ctl.running.store.getUserByUsername('eve')).toBeUndefined()
    expect(await usesOf(inv.id)).toBe(0)
  })
})

describe('OIDC logins in progress per client address', () => {
  it('caps them at 10 per address, before the provider is asked, and makes room as they end', async () => {
    const own = new FakeClock(Date.now())
    const other = await startTestController({
      clock: own,
      oidc: {issuers: [{name: 'corp', issuer: idp.issuer, clientId: TEST_CLIENT_ID, allowHttp: true}]},
    })
    try {
      const otherApi = client(other.url)
      const startCode = () => otherApi.req('POST', '/api/v1/oidc/start', {body: {redirectUri: REDIRECT}})
      const flows: {flowId: string; authorizationUrl: string}[] = []
      for (let i = 0; i < 10; i++) {
        const r = await startCode()
        expect(r.status, r.text).toBe(200)
        flows.push(r.body as {flowId: string; authorizationUrl: string})
      }
      const over = await startCode()
      expect([over.status, errorCode(over)], over.text).toEqual([429, 'RATE_LIMITED'])
      expect(over.headers.get('retry-after')).toBe('60')
      const device = await otherApi.req('POST', '/api/v1/oidc/device', {body: {}})
      expect([device.status, errorCode(device)]).toEqual([429, 'RATE_LIMITED'])

      // A login that ends frees its place.
      const seen = await browse(flows[0]!.authorizationUrl, {login: 'finn'})
      const done = await otherApi.req('POST', '/api/v1/oidc/finish', {
        body: {flowId: flows[0]!.flowId, callbackUrl: seen.callbackUrl},
      })
      expect(done.status, done.text).toBe(200)
      expect((await startCode()).status).toBe(200)
      expect((await startCode()).status).toBe(429)
      // So does expiry (a code flow lives 10 min).
      own.advance(10 * 60_000 + 1000)
      expect((await startCode()).status).toBe(200)
    } finally {
      await other.close()
    }
  })
})
