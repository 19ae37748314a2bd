// Node key expiry and rotation (issue 10) through the real API: a controller on a temp SQLite
// file, real HTTP and WebSockets, and a FakeClock that only the test moves (the expiry sweep runs
// every KEY_SWEEP_EVERY_MS on it).
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {CLOSE} from '../shared/protocol/netmap.js'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {client, createNetwork, joinNode, publicKey, type Client, type JoinedNode} from './testing/client.js'
import {connectWs, type WsClient} from './testing/ws-client.js'
import {startTestController, type TestController} from './testing/test-controller.js'
import {KEY_SWEEP_EVERY_MS} from './key-expiry.js'
import {ROTATIONS_PER_HOUR} from './state.js'

const DAY = 86_400_000
let ctl: TestController
let clock: FakeClock
let api: Client
let netId: string
let seq = 0
const sockets: WsClient[] = []

beforeAll(async () => {
  clock = new FakeClock()
  // Pings far apart: the test moves the clock by minutes, and a real socket's pong is no timer.
  ctl = await startTestController({clock, pingIntervalMs: 30 * DAY})
  api = client(ctl.url)
  netId = (await createNetwork(ctl, {name: 'keys', cidr: '10.88.0.0/24', joinPolicy: 'open'})).id
})
beforeEach(login)
afterAll(async () => {
  for (const s of sockets) await s.close().catch(() => undefined)
  await ctl?.close()
})

const join = (): Promise<JoinedNode> => joinNode({url: ctl.url, adminToken: admin.token}, netId, `k-${++seq}`)
/** A fresh admin token: the test moves the clock past short-lived access tokens. */
async function login(): Promise<void> {
  const r = await api.req('POST', '/api/v1/login', {body: {username: 'admin', password: ctl.adminPassword}})
  expect(r.status, r.text).toBe(200)
  admin.token = r.body.token
}
const admin = {token: ''}

async function netmap(credential: string): Promise<WsClient> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
  sockets.push(ws)
  return ws
}

async function events(): Promise<WsClient> {
  const ws = await connectWs(`${ctl.url}/api/v1/events`, admin.token)
  sockets.push(ws)
  await ws.next((f: {type: string}) => f.type === 'snapshot')
  return ws
}

async function node(id: string): Promise<{keyExpiresAt: string | null; status: string; publicKey: string}> {
  const r = await api.req('GET', `/api/v1/nodes/${id}`, {token: admin.token})
  expect(r.status, r.text).toBe(200)
  return r.body
}

async function extend(id: string, body: Record<string, unknown>) {
  const r = await api.req('POST', `/api/v1/nodes/${id}/extend`, {token: admin.token, body})
  expect(r.status, r.text).toBe(200)
  return r.body as {keyExpiresAt: string | null; status: string}
}

async function auditActions(targetId: string): Promise<string[]> {
  const r = await api.req('GET', '/api/v1/audit?limit=500', {token: admin.token})
  expect(r.status, r.text).toBe(200)
  return (r.body.items as {action: string; targetId: string | null}[])
    .filter((e) => e.targetId === targetId)
    .map((e) => e.action)
}

/** One sweep of the expiry timer (and whatever else falls due), its promises let run. */
const sweep = () => clock.advanceAsync(KEY_SWEEP_EVERY_MS)

describe('node key expiry', () => {
  it("gives an untagged node the tenant's default lifetime (180 days) and a tagged one none", async () => {
    const n = await join()
    expect(Date.parse((await node(n.node.id)).keyExpiresAt!)).toBe(clock.now() + 180 * DAY)

    const key = await api.req('POST', `/api/v1/networks/${netId}/authkeys`, {
      token: admin.token,
      body: {tags: ['tag:server']},
    })
    expect(key.status, key.text).toBe(201)
    const tagged = await api.req('POST', '/api/v1/register', {
      body: {authKey: key.body.key, publicKey: publicKey(), name: `k-${++seq}`},
    })
    expect(tagged.status, tagged.text).toBe(201)
    expect(tagged.body.node.keyExpiresAt).toBeNull()
  })

  it("applies the tenant's lifetime to keys made after it changes; 0 means never (audited)", async () => {
    const set = await api.req('PUT', '/api/v1/tenant/key-expiry', {token: admin.token, body: {days: 0}})
    expect(set.status, set.text).toBe(200)
    try {
      const n = await join()
      expect((await node(n.node.id)).keyExpiresAt).toBeNull()
    } finally {
      await api.req('PUT', '/api/v1/tenant/key-expiry', {token: admin.token, body: {days: 180}})
    }
    const got = await api.req('GET', '/api/v1/tenant/key-expiry', {token: admin.token})
    expect(got.body).toEqual({days: 180})
  })

  it('announces a key that expires within 14 days once on the admin event stream', async () => {
    const n = await join()
    const stream = await events()
    await extend(n.node.id, {by: 10 * 86_400})
    await sweep()
    const ev = await stream.next(
      (f: {type: string; node?: {id: string}}) => f.type === 'node_key_expiring' && f.node?.id === n.node.id,
    )
    expect(ev).toMatchObject({node: {id: n.node.id}})
    await sweep()
    await sweep()
    expect(
      stream
        .pending()
        .filter((f) => (f as {type: string; node?: {id: string}}).node?.id === n.node.id)
        .map((f) => (f as {type: string}).type),
    ).not.toContain('node_key_expiring')
  })

  it('disables a node whose key expired: peers drop it, its session closes with KEY_EXPIRED, a new one is refused, extend brings it back', async () => {
    const a = await join()
    const b = await join()
    const peerA = await netmap(a.credential)
    await peerA.next((f: {type: string}) => f.type === 'full')
    const selfB = await netmap(b.credential)
    const full = await selfB.next<{type: string; self: {keyExpiresAt: string | null}}>(
      (f) => f.type === 'full',
    )
    expect(full.self.keyExpiresAt).toBe((await node(b.node.id)).keyExpiresAt)
    const stream = await events()

    await extend(b.node.id, {by: 90})
    await sweep()
    await sweep()
    await stream.next(
      (f: {type: string; node?: {id: string; status: string}}) =>
        f.type === 'node_key_expired' && f.node?.id === b.node.id && f.node.status === 'disabled',
    )
    await peerA.next(
      (f: {type: string; removed?: string[]}) => f.type === 'delta' && (f.removed ?? []).includes(b.node.id),
    )
    expect((await selfB.closed).code).toBe(CLOSE.KEY_EXPIRED)
    expect((await node(b.node.id)).status).toBe('disabled')
    const again = await netmap(b.credential)
    expect(await again.closed).toEqual({code: CLOSE.KEY_EXPIRED, reason: 'NODE_KEY_EXPIRED'})
    // The node's own calls are refused too: it cannot rotate its way back in.
    const rotate = await api.req('POST', '/api/v1/node/rotate-key', {
      token: b.credential,
      body: {publicKey: publicKey()},
    })
    expect([rotate.status, rotate.body?.error?.code]).toEqual([403, 'NODE_KEY_EXPIRED'])

    const back = await extend(b.node.id, {by: 30 * 86_400})
    expect(back.status).toBe('active')
    await peerA.next(
      (f: {type: string; changed?: {id: string}[]; added?: {id: string}[]}) =>
        f.type === 'delta' && [...(f.changed ?? []), ...(f.added ?? [])].some((p) => p.id === b.node.id),
    )
    const reconnected = await netmap(b.credential)
    await reconnected.next((f: {type: string}) => f.type === 'full')
    expect(await auditActions(b.node.id)).toEqual(expect.arrayContaining(['node.extend', 'node.key_expired']))
  })

  it('expires a key at once on `node expire` (audited); peers drop the node in the same change', async () => {
    const a = await join()
    const b = await join()
    const peerA = await netmap(a.credential)
    await peerA.next((f: {type: string}) => f.type === 'full')
    const r = await api.req('POST', `/api/v1/nodes/${b.node.id}/expire`, {token: admin.token})
    expect(r.status, r.text).toBe(200)
    expect(r.body.status).toBe('disabled')
    await peerA.next(
      (f: {type: string; removed?: string[]}) => f.type === 'delta' && (f.removed ?? []).includes(b.node.id),
    )
    expect(await auditActions(b.node.id)).toContain('node.expire')
    // --never: back, and no expiry at all.
    const never = await extend(b.node.id, {never: true})
    expect([never.status, never.keyExpiresAt]).toEqual(['active', null])
  })
})

describe('node key rotation', () => {
  it('swaps the public key, keeps the address, restarts the expiry, tells peers as a delta and is audited', async () => {
    const a = await join()
    const b = await join()
    const before = await api.req('GET', `/api/v1/nodes/${b.node.id}`, {token: admin.token})
    const peerA = await netmap(a.credential)
    await peerA.next((f: {type: string}) => f.type === 'full')
    // The discovery port's key index, built before the rotation: the change must update it.
    const telemetry = ctl.running.state.telemetry
    await telemetry.indexNodeKeys()
    expect(telemetry.activeNodeByPublicKey(before.body.publicKey)).toBe(b.node.id)
    await clock.advanceAsync(5 * 60_000)
    const fresh = publicKey()
    const r = await api.req('POST', '/api/v1/node/rotate-key', {
      token: b.credential,
      body: {publicKey: fresh},
    })
    expect(r.status, r.text).toBe(200)
    expect(r.body).toMatchObject({publicKey: fresh, address: before.body.address, name: before.body.name})
    expect(Date.parse(r.body.keyExpiresAt)).toBe(clock.now() + 180 * DAY)
    const delta = await peerA.next<{
      type: string
      changed?: {id: string; publicKey: string; address: string}[]
    }>((f) => f.type === 'delta' && (f.changed ?? []).some((p) => p.id === b.node.id))
    expect(delta.changed!.find((p) => p.id === b.node.id)).toMatchObject({
      publicKey: fresh,
      address: before.body.address,
    })
    // The old key is out of the discovery port's index at once; the new one is in.
    expect(telemetry.activeNodeByPublicKey(before.body.publicKey)).toBeUndefined()
    expect(telemetry.activeNodeByPublicKey(fresh)).toBe(b.node.id)
    const audit = await api.req('GET', '/api/v1/audit?limit=500', {token: admin.token})
    const entry = (
      audit.body.items as {action: string; targetId: string; actor: string; detail: Record<string, unknown>}[]
    ).find((e) => e.action === 'node.rotate_key' && e.targetId === b.node.id)
    expect(entry).toMatchObject({
      actor: `node:${b.node.id}`,
      detail: {previousPublicKey: before.body.publicKey, publicKey: fresh},
    })
  })

  it('refuses more than ROTATIONS_PER_HOUR rotations of one node in an hour (RATE_LIMITED)', async () => {
    const n = await join()
    for (let i = 0; i < ROTATIONS_PER_HOUR; i++) {
      const r = await api.req('POST', '/api/v1/node/rotate-key', {
        token: n.credential,
        body: {publicKey: publicKey()},
      })
      expect(r.status, r.text).toBe(200)
    }
    const over = await api.req('POST', '/api/v1/node/rotate-key', {
      token: n.credential,
      body: {publicKey: publicKey()},
    })
    expect([over.status, over.body?.error?.code]).toEqual([429, 'RATE_LIMITED'])
  })

  it("refuses the node's current key and another node's key (PUBLIC_KEY_TAKEN), and a user token", async () => {
    const a = await join()
    const b = await join()
    const same = await api.req('POST', '/api/v1/node/rotate-key', {
      token: b.credential,
      body: {publicKey: (await node(b.node.id)).publicKey},
    })
    expect([same.status, same.body?.error?.code]).toEqual([409, 'PUBLIC_KEY_TAKEN'])
    const taken = await api.req('POST', '/api/v1/node/rotate-key', {
      token: b.credential,
      body: {publicKey: (await node(a.node.id)).publicKey},
    })
    expect([taken.status, taken.body?.error?.code]).toEqual([409, 'PUBLIC_KEY_TAKEN'])
    const user = await api.req('POST', '/api/v1/node/rotate-key', {
      token: admin.token,
      body: {publicKey: publicKey()},
    })
    expect(user.status).toBe(401)
  })
})
