// The controller's HTTP API over real HTTP on a free port with a real SQLite file: every
// bad-input rule answers its stable code, registration and approval work end to end, and the
// operational endpoints (healthz, readyz, metrics, openapi.json) do what they promise.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {decodeJoinString} from '../../shared/invite.js'
import {ROUTES} from '../../shared/protocol/control-api.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {client, createNetwork, publicKey, type Client} from '../testing/client.js'
import {startController} from '../main.js'
import {systemClock} from '../../shared/clock.js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {Writable} from 'node:stream'

let ctl: TestController
let api: Client
let admin: string
/**
 * The controller's clock runs this far ahead of real time (expiry tests move it); its timers are
 * real ones, so everything else behaves as with the system clock.
 */
let skewMs = 0

beforeAll(async () => {
  ctl = await startTestController({clock: {...systemClock, now: () => Date.now() + skewMs}})
  api = client(ctl.url)
  admin = ctl.adminToken
})
afterAll(async () => {
  await ctl?.close()
})

let n = 0
const name = (p: string) => `${p}-${++n}`
let octet = 0
const cidr24 = () => `10.${++octet}.0.0/24`

const network = (body: Record<string, unknown> = {}) =>
  createNetwork(ctl, {name: name('net'), cidr: cidr24(), ...body})
async function authKey(net: string, body: Record<string, unknown> = {}) {
  const r = await api.req('POST', `/api/v1/networks/${net}/authkeys`, {token: admin, body})
  expect(r.status, r.text).toBe(201)
  return r.body as {key: string; authKey: {id: string}}
}
async function invite(net: string, body: Record<string, unknown> = {}) {
  const r = await api.req('POST', `/api/v1/networks/${net}/invites`, {token: admin, body})
  expect(r.status, r.text).toBe(201)
  return r.body as {code: string; joinString: string; invite: {id: string}}
}
const register = (body: Record<string, unknown>, token?: string) =>
  api.req('POST', '/api/v1/register', {token, body: {publicKey: publicKey(), name: name('node'), ...body}})

describe('bad input', () => {
  it('names the field in a 400 VALIDATION_FAILED', async () => {
    const r = await api.req('POST', '/api/v1/networks', {token: admin, body: {name: 'x', cidr: 5}})
    expect(r.status).toBe(400)
    expect(r.body.error.code).toBe('VALIDATION_FAILED')
    expect(r.body.error.message).toMatch(/^cidr: expected string/)
    const nested = await api.req('POST', '/api/v1/tenants', {
      token: admin,
      body: {name: 'ok', owner: {username: 'fine', password: 1}},
    })
    expect(nested.status).toBe(400)
    expect(nested.body.error.message).toContain('owner.password')
    const query = await api.req('GET', '/api/v1/networks?limit=zero', {token: admin})
    expect(query.status).toBe(400)
    expect(query.body.error.message).toMatch(/^limit:/)
  })

  it('answers malformed JSON with 400 INVALID_JSON and echoes the request id', async () => {
    const r = await api.req('POST', '/api/v1/networks', {token: admin, raw: '{"name": '})
    expect(r.status).toBe(400)
    expect(r.body.error.code).toBe('INVALID_JSON')
    expect(r.headers.get('x-request-id')).toBe(r.body.error.requestId)
  })

  it('refuses a body over 1 MiB with 413', async () => {
    const r = await api.req('POST', '/api/v1/networks', {
      token: admin,
      raw: JSON.stringify({name: 'big', cidr: '10.0.0.0/8', description: 'x'.repeat(1024 * 1024)}),
    })
    expect(r.status).toBe(413)
    expect(r.body.error.code).toBe('PAYLOAD_TOO_LARGE')
  })

  it('refuses a non-JSON content type with 415', async () => {
    const r = await api.req('POST', '/api/v1/login', {
      raw: 'username=admin',
      contentType: 'application/x-www-form-urlencoded',
    })
    expect(r.status).toBe(415)
    expect(r.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE')
  })

  it('answers unknown routes and unknown ids with 404 NOT_FOUND', async () => {
    for (const [method, p] of [
      ['GET', '/api/v1/nothing-here'],
      ['DELETE', '/api/v1/networks'],
      ['GET', '/api/v1/networks/no-such-net'],
      ['GET', '/api/v1/nodes/nd_nope'],
      ['DELETE', '/api/v1/invites/iv_nope'],
      ['DELETE', '/api/v1/authkeys/ak_nope'],
      ['GET', '/%E0%A4%A'],
    ] as const) {
      const r = await api.req(method, p, {token: admin})
      expect(r.status, `${method} ${p}`).toBe(404)
      expect(r.body.error.code).toBe('NOT_FOUND')
    }
  })

  it('refuses CIDRs that are not /8../30 network prefixes with 400 INVALID_CIDR', async () => {
    for (const bad of [
      '10.0.0.1/24',
      '10.0.0.0/31',
      '10.0.0.0/7',
      '10.0.0.0',
      'banana',
      '300.1.0.0/16',
      '010.0.0.0/8',
    ]) {
      const r = await api.req('POST', '/api/v1/networks', {
        token: admin,
        body: {name: name('bad'), cidr: bad},
      })
      expect(r.status, bad).toBe(400)
      expect(r.body.error.code, bad).toBe('INVALID_CIDR')
    }
  })

  it('refuses a CIDR overlapping another network of the tenant with 400 CIDR_OVERLAP', async () => {
    await network({cidr: '172.16.0.0/16'})
    const r = await api.req('POST', '/api/v1/networks', {
      token: admin,
      body: {name: name('o'), cidr: '172.16.5.0/24'},
    })
    expect(r.status).toBe(400)
    expect(r.body.error.code).toBe('CIDR_OVERLAP')
    expect(r.body.error.message).toContain('172.16.0.0/16')
  })

  it('answers duplicate names with 409', async () => {
    const net = await network()
    const dup = await api.req('POST', '/api/v1/networks', {
      token: admin,
      body: {name: net.name, cidr: cidr24()},
    })
    expect([dup.status, dup.body.error.code]).toEqual([409, 'NETWORK_NAME_TAKEN'])
    const u = {username: name('user'), password: 'long enough', role: 'member'}
    expect((await api.req('POST', '/api/v1/users', {token: admin, body: u})).status).toBe(201)
    const again = await api.req('POST', '/api/v1/users', {token: admin, body: u})
    expect([again.status, again.body.error.code]).toEqual([409, 'USERNAME_TAKEN'])
    const {key} = await authKey(net.id, {reusable: true})
    const a = await register({authKey: key, name: 'alpha'})
    const b = await register({authKey: key, name: 'beta'})
    const rename = await api.req('PATCH', `/api/v1/nodes/${b.body.node.id}`, {
      token: admin,
      body: {name: 'alpha'},
    })
    expect([rename.status, rename.body.error.code]).toEqual([409, 'NODE_NAME_TAKEN'])
    const sameKey = await register({authKey: key, publicKey: a.body.node.publicKey})
    expect([sameKey.status, sameKey.body.error.code]).toEqual([409, 'PUBLIC_KEY_TAKEN'])
  })

  it('answers 404, never 403, for another tenant objects', async () => {
    const other = await api.req('POST', '/api/v1/tenants', {
      token: admin,
      body: {name: name('other'), owner: {username: name('other-owner'), password: 'long enough'}},
    })
    expect(other.status).toBe(201)
    const login = await api.req('POST', '/api/v1/login', {
      body: {username: other.body.owner.username, password: 'long enough'},
    })
    const net = await network()
    for (const [method, p] of [
      ['GET', `/api/v1/networks/${net.id}`],
      ['DELETE', `/api/v1/networks/${net.id}`],
      ['GET', `/api/v1/networks/${net.name}/nodes`],
    ] as const) {
      const r = await api.req(method, p, {token: login.body.token})
      expect(r.status, `${method} ${p}`).toBe(404)
    }
  })

  it('answers 401 without a token, 403 FORBIDDEN for a role without the permission', async () => {
    expect((await api.req('GET', '/api/v1/networks')).status).toBe(401)
    const guest = {username: name('guest'), password: 'long enough', role: 'guest'}
    await api.req('POST', '/api/v1/users', {token: admin, body: guest})
    const {body} = await api.req('POST', '/api/v1/login', {body: guest})
    const r = await api.req('POST', '/api/v1/networks', {
      token: body.token,
      body: {name: name('g'), cidr: cidr24()},
    })
    expect([r.status, r.body.error.code]).toEqual([403, 'FORBIDDEN'])
  })
})

describe('invites and auth keys', () => {
  it('returns a join string that carries the controller URL and the code', async () => {
    const net = await network()
    const inv = await invite(net.id)
    expect(inv.code).toMatch(/^inv_[A-Za-z0-9_-]{43}$/)
    expect(decodeJoinString(inv.joinString)).toEqual({controller: ctl.url, code: inv.code})
  })

  it('answers unknown, used-up, revoked and expired invites with their 403 codes', async () => {
    const net = await network()
    const bogus = await register({invite: 'inv_not-a-real-code-at-all'})
    expect([bogus.status, bogus.body.error.code]).toEqual([403, 'INVITE_INVALID'])
    const once = await invite(net.id, {maxUses: 1})
    expect((await register({invite: once.code})).status).toBe(201)
    const used = await register({invite: once.code})
    expect([used.status, used.body.error.code]).toEqual([403, 'INVITE_USED_UP'])
    const revoked = await invite(net.id)
    expect(
      (await api.req('DELETE', `/api/v1/invites/${revoked.invite.id}`, {token: admin})).body.revokedAt,
    ).not.toBeNull()
    const r = await register({invite: revoked.code})
    expect([r.status, r.body.error.code]).toEqual([403, 'INVITE_REVOKED'])
    const soon = await invite(net.id, {expiresIn: 60})
    skewMs = 61_000
    try {
      const e = await register({invite: soon.code})
      expect([e.status, e.body.error.code]).toEqual([403, 'INVITE_EXPIRED'])
    } finally {
      skewMs = 0
    }
  })

  it('answers unknown, used, revoked and expired auth keys with their 403 codes', async () => {
    const net = await network()
    const bogus = await register({authKey: 'mkey_nothing'})
    expect([bogus.status, bogus.body.error.code]).toEqual([403, 'AUTHKEY_INVALID'])
    const single = await authKey(net.id)
    expect(single.key).toMatch(/^mkey_[A-Za-z0-9_-]{43}$/)
    expect((await register({authKey: single.key})).status).toBe(201)
    const used = await register({authKey: single.key})
    expect([used.status, used.body.error.code]).toEqual([403, 'AUTHKEY_USED'])
    const rev = await authKey(net.id, {reusable: true})
    await api.req('DELETE', `/api/v1/authkeys/${rev.authKey.id}`, {token: admin})
    const r = await register({authKey: rev.key})
    expect([r.status, r.body.error.code]).toEqual([403, 'AUTHKEY_REVOKED'])
    const short = await authKey(net.id, {reusable: true, expiresIn: 60})
    skewMs = 120_000
    try {
      const e = await register({authKey: short.key})
      expect([e.status, e.body.error.code]).toEqual([403, 'AUTHKEY_EXPIRED'])
    } finally {
      skewMs = 0
    }
  })

  it('lists invites and keys without their secrets', async () => {
    const net = await network()
    const inv = await invite(net.id)
    const key = await authKey(net.id)
    const invites = await api.req('GET', `/api/v1/networks/${net.id}/invites`, {token: admin})
    const keys = await api.req('GET', `/api/v1/networks/${net.id}/authkeys`, {token: admin})
    expect(invites.text).not.toContain(inv.code)
    expect(keys.text).not.toContain(key.key)
    expect(keys.body.items[0].prefix).toBe(key.key.slice(0, 12))
  })
})

describe('registration', () => {
  it('makes a node pending under the approval policy until it is approved', async () => {
    const net = await network({joinPolicy: 'approval'})
    const inv = await invite(net.id)
    const r = await register({invite: inv.code, name: 'laptop'})
    expect(r.status, r.text).toBe(201)
    expect(r.body.node).toMatchObject({status: 'pending', name: 'laptop', online: false})
    expect(r.body.credential).toMatch(/^mnode_[A-Za-z0-9_-]{43}$/)
    const pending = await api.req('GET', `/api/v1/networks/${net.id}/nodes?status=pending`, {token: admin})
    expect(pending.body.items.map((x: {id: string}) => x.id)).toEqual([r.body.node.id])
    const ok = await api.req('POST', `/api/v1/nodes/${r.body.node.id}/approve`, {token: admin})
    expect([ok.status, ok.body.status]).toEqual([200, 'active'])
    const twice = await api.req('POST', `/api/v1/nodes/${r.body.node.id}/approve`, {token: admin})
    expect([twice.status, twice.body.error.code]).toEqual([409, 'NODE_NOT_PENDING'])
  })

  it('lets a pre-approved auth key skip approval', async () => {
    const net = await network({joinPolicy: 'approval'})
    const {key} = await authKey(net.id, {preApproved: true, tags: ['tag:ci']})
    const r = await register({authKey: key})
    expect(r.body.node).toMatchObject({status: 'active', tags: ['tag:ci']})
  })

  it('registers with a user token only on open networks', async () => {
    const open = await network({joinPolicy: 'open'})
    const r = await register({network: open.name}, admin)
    expect([r.status, r.body.node?.status]).toEqual([201, 'active'])
    const closed = await network({joinPolicy: 'invite'})
    const refused = await register({network: closed.id}, admin)
    expect([refused.status, refused.body.error.code]).toEqual([403, 'FORBIDDEN'])
    const anonymous = await register({network: open.id})
    expect(anonymous.status).toBe(401)
  })

  it('suffixes a taken node name and gives distinct addresses from the CIDR', async () => {
    const net = await network({cidr: '10.200.0.0/24'})
    const {key} = await authKey(net.id, {reusable: true})
    const nodes = []
    for (let i = 0; i < 3; i++) nodes.push((await register({authKey: key, name: 'web'})).body.node)
    expect(nodes.map((x) => x.name)).toEqual(['web', 'web-2', 'web-3'])
    expect(nodes.map((x) => x.address)).toEqual(['10.200.0.1', '10.200.0.2', '10.200.0.3'])
  })

  it('answers a full network with 409 NETWORK_MAX_NODES and a full CIDR with 409 ADDRESS_POOL_EXHAUSTED', async () => {
    const capped = await network({maxNodes: 1})
    const k1 = await authKey(capped.id, {reusable: true})
    expect((await register({authKey: k1.key})).status).toBe(201)
    const over = await register({authKey: k1.key})
    expect([over.status, over.body.error.code]).toEqual([409, 'NETWORK_MAX_NODES'])
    const tiny = await network({cidr: '10.250.0.0/30'})
    const k2 = await authKey(tiny.id, {reusable: true})
    expect((await register({authKey: k2.key})).status).toBe(201)
    expect((await register({authKey: k2.key})).status).toBe(201)
    const full = await register({authKey: k2.key})
    expect([full.status, full.body.error.code]).toEqual([409, 'ADDRESS_POOL_EXHAUSTED'])
  })

  it('audits who did what, from where, in which request', async () => {
    const r = await api.req('POST', '/api/v1/networks', {
      token: admin,
      body: {name: name('aud'), cidr: cidr24()},
    })
    const audit = await api.req('GET', `/api/v1/audit?network=${r.body.id}`, {token: admin})
    expect(audit.body.items[0]).toMatchObject({
      action: 'network.create',
      actorName: 'admin',
      targetId: r.body.id,
      requestId: r.headers.get('x-request-id'),
      sourceAddress: '127.0.0.1',
    })
  })

  it('paginates lists with limit and an opaque cursor', async () => {
    const net = await network({joinPolicy: 'open'})
    for (let i = 0; i < 5; i++) await register({network: net.id}, admin)
    const ids: string[] = []
    let cursor: string | null = null
    for (let i = 0; i < 10; i++) {
      const q: string = cursor ? `&cursor=${cursor}` : ''
      const page = await api.req('GET', `/api/v1/networks/${net.id}/nodes?limit=2${q}`, {token: admin})
      ids.push(...page.body.items.map((x: {id: string}) => x.id))
      cursor = page.body.nextCursor
      if (!cursor) break
    }
    expect(new Set(ids).size).toBe(5)
    const bad = await api.req('GET', `/api/v1/networks/${net.id}/nodes?cursor=garbage`, {token: admin})
    expect(bad.status).toBe(400)
  })
})

describe('users', () => {
  it('refuses changing your own role or deleting yourself with 403', async () => {
    const who = await api.req('GET', '/api/v1/whoami', {token: admin})
    const demote = await api.req('PATCH', `/api/v1/users/${who.body.user.id}`, {
      token: admin,
      body: {role: 'guest'},
    })
    expect([demote.status, demote.body.error.code]).toEqual([403, 'FORBIDDEN'])
    const del = await api.req('DELETE', `/api/v1/users/${who.body.user.id}`, {token: admin})
    expect([del.status, del.body.error.code]).toEqual([403, 'FORBIDDEN'])
  })
})

describe('tokens', () => {
  it('expires user tokens after 30 days and revokes them on logout', async () => {
    const u = {username: name('tok'), password: 'long enough', role: 'member'}
    await api.req('POST', '/api/v1/users', {token: admin, body: u})
    const {body} = await api.req('POST', '/api/v1/login', {body: u})
    expect(body.token).toMatch(/^mtok_/)
    expect((await api.req('GET', '/api/v1/whoami', {token: body.token})).status).toBe(200)
    skewMs = 31 * 86400 * 1000
    try {
      expect((await api.req('GET', '/api/v1/whoami', {token: body.token})).status).toBe(401)
    } finally {
      skewMs = 0
    }
    expect((await api.req('POST', '/api/v1/logout', {token: body.token})).status).toBe(200)
    expect((await api.req('GET', '/api/v1/whoami', {token: body.token})).status).toBe(401)
  })
})

describe('operational endpoints', () => {
  it('serves /healthz and /readyz', async () => {
    expect((await api.req('GET', '/healthz')).body).toEqual({status: 'ok'})
    expect((await api.req('GET', '/readyz')).body).toEqual({status: 'ok'})
  })

  it('serves Prometheus metrics with request counts, latency, connected nodes and registrations', async () => {
    const text = (await api.req('GET', '/metrics')).text
    expect(text).toMatch(
      /mesh_http_requests_total\{route="\/api\/v1\/networks",method="POST",status="201"\} \d+/,
    )
    expect(text).toContain('mesh_http_request_duration_seconds_bucket')
    expect(text).toContain('mesh_connected_nodes')
    expect(text).toMatch(/mesh_node_registrations_total \d+/)
  })

  it('documents every ROUTES entry in openapi.json from the same schemas', async () => {
    const doc = (await api.req('GET', '/api/v1/openapi.json')).body
    expect(doc.openapi).toBe('3.1.0')
    for (const [id, r] of Object.entries(ROUTES)) {
      const op = doc.paths[r.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[r.method.toLowerCase()]
      expect(op, id).toBeDefined()
      expect(op.operationId).toBe(id)
      expect(op.responses[String(r.status)].content['application/json'].schema, id).toBeTypeOf('object')
      if ('body' in r) expect(op.requestBody.content['application/json'].schema.type, id).toBe('object')
      const pathParams = [...r.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1])
      expect(
        op.parameters.filter((p: {in: string}) => p.in === 'path').map((p: {name: string}) => p.name),
      ).toEqual(pathParams)
    }
    const create = doc.paths['/api/v1/networks'].post.requestBody.content['application/json'].schema
    expect(create.required).toEqual(['name', 'cidr'])
  })
})

describe('separate controllers', () => {
  it('rate-limits failed logins per address with 429 RATE_LIMITED, even for the right password', async () => {
    const own = await startTestController()
    try {
      const c = client(own.url)
      for (let i = 0; i < 10; i++) {
        const r = await c.req('POST', '/api/v1/login', {body: {username: 'admin', password: `wrong-${i}`}})
        expect(r.status).toBe(401)
      }
      const r = await c.req('POST', '/api/v1/login', {body: {username: 'admin', password: own.adminPassword}})
      expect([r.status, r.body.error.code]).toEqual([429, 'RATE_LIMITED'])
    } finally {
      await own.close()
    }
  })

  it('fails with LISTEN_FAILED when the port is taken, leaving nothing open', async () => {
    const port = new URL(ctl.url).port
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-busy-'))
    const sink = new Writable({write: (_c, _e, cb) => cb()})
    try {
      await expect(
        startController({
          dataDir: dir,
          listen: `127.0.0.1:${port}`,
          adminPassword: 'long enough',
          logDestination: sink,
        }),
      ).rejects.toMatchObject({code: 'LISTEN_FAILED'})
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })

  it('answers /readyz with 503 when the database is gone', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-ready-'))
    const sink = new Writable({write: (_c, _e, cb) => cb()})
    const own = await startController({
      dataDir: dir,
      listen: '127.0.0.1:0',
      adminPassword: 'long enough',
      logDestination: sink,
    })
    try {
      await own.store.close()
      const r = await client(own.url).req('GET', '/readyz')
      expect([r.status, r.body.status, r.body.error.code]).toEqual([503, 'unavailable', 'NOT_READY'])
    } finally {
      await own.server.close()
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
