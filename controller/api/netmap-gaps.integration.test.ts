// Version gaps in the netmap hub against a real controller: a change committed without reaching
// this controller's change feed (as a change made through another replica can, when the shared
// feed drops a notification) must not be lost. When the next change arrives one version too far
// ahead, the hub reloads the network from the store and sends every connected node what it
// missed; a change that arrives late (at or below the cached version) is dropped, not re-sent.
// The silent writes go through the same domain rules (storeWrites) but are never published.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {NetmapDeltaSchema, NetmapFullSchema} from '../../shared/protocol/netmap.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {storeWrites, type Writes} from '../domain/writes.js'
import type {AuditContext, NodeChange} from '../store/store.js'
import {client, createNetwork, joinNode, joinWithAuthKey, type Client} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'

type Peer = {id: string; name: string}
type Frame = {
  type: string
  version: number
  self?: {id: string; name: string; status: string}
  peers?: Peer[]
  added?: Peer[]
  changed?: Peer[]
  removed?: string[]
}

let ctl: TestController
let api: Client
/** Writes that commit but are never published on the feed: what another replica's look like. */
let silent: Writes
const sockets: WsClient[] = []
let seq = 0

const CTX: AuditContext = {
  actor: 'system',
  actorName: 'another replica',
  sourceAddress: null,
  requestId: null,
  at: '2030-01-01T00:00:00.000Z',
}

beforeAll(async () => {
  ctl = await startTestController({clock: new FakeClock()})
  api = client(ctl.url)
  silent = storeWrites(ctl.running.store)
})
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await ctl?.close()
})

const network = (joinPolicy: 'open' | 'approval' = 'open') =>
  createNetwork(ctl, {name: `gap-${++seq}`, cidr: `10.77.${seq}.0/24`, joinPolicy})

/** A node of `netId`; `pending`: through an auth key, so in an approval network it waits. */
const join = (netId: string, opts: {pending?: boolean} = {}) =>
  (opts.pending ? joinWithAuthKey : joinNode)(ctl, netId, `n-${++seq}`)

/** A netmap session whose full map has arrived. */
async function session(credential: string): Promise<{ws: WsClient; full: Frame}> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
  sockets.push(ws)
  const full = await ws.next<Frame>((f) => f.type === 'full')
  return {ws, full}
}

/** The next frame, checked against the shared schemas. */
async function next(ws: WsClient): Promise<Frame> {
  const f = await ws.next<Frame>(() => true, 2000)
  if (f.type === 'full' || f.type === 'delta') {
    const schema = f.type === 'full' ? NetmapFullSchema : NetmapDeltaSchema
    expect(schema.safeParse(f).success, JSON.stringify(f)).toBe(true)
  }
  return f
}

const rename = async (id: string, name: string) => {
  const r = await api.req('PATCH', `/api/v1/nodes/${id}`, {token: ctl.adminToken, body: {name}})
  expect(r.status, r.text).toBe(200)
}

const names = (peers: Peer[] | undefined) =>
  Object.fromEntries((peers ?? []).map((p) => [p.id, p.name])) as Record<string, string>

describe('netmap hub version gaps', () => {
  it('reloads the network when a change arrives past a gap and sends each node what it missed', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const c = await join(net.id)
    const sa = await session(a.credential)
    const sb = await session(b.credential)
    const v0 = sa.full.version

    // v0+1 commits but never reaches the hub; v0+2 does, one version too far ahead.
    await silent.renameNode(c.node.id, 'renamed-elsewhere', CTX)
    await rename(b.node.id, 'renamed-here')

    const toA = await next(sa.ws)
    expect(toA).toMatchObject({type: 'delta', version: v0 + 2})
    expect(names(toA.changed)).toEqual({[b.node.id]: 'renamed-here', [c.node.id]: 'renamed-elsewhere'})
    expect(toA.self).toBeUndefined()
    const toB = await next(sb.ws)
    expect(toB).toMatchObject({type: 'delta', version: v0 + 2, self: {id: b.node.id, name: 'renamed-here'}})
    expect(names(toB.changed)).toEqual({[c.node.id]: 'renamed-elsewhere'})

    // The cache is whole again: the next change is a plain one-peer delta.
    await rename(c.node.id, 'back-here')
    const after = await next(sa.ws)
    expect(after).toMatchObject({type: 'delta', version: v0 + 3})
    expect(names(after.changed)).toEqual({[c.node.id]: 'back-here'})
  })

  it('drops a change that arrives late instead of sending peers an old state again', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const sa = await session(a.credential)
    const heard: NodeChange[] = []
    const off = ctl.running.state.feed.onNodeChange((ch) => {
      if (ch.nodeId === b.node.id) heard.push(ch)
    })
    try {
      await rename(b.node.id, 'first')
      expect(names((await next(sa.ws)).changed)).toEqual({[b.node.id]: 'first'})
      await rename(b.node.id, 'second')
      expect(names((await next(sa.ws)).changed)).toEqual({[b.node.id]: 'second'})
      // The first change again, late (a replica's feed delivering out of order).
      expect(heard.map((h) => h.node?.name)).toEqual(['first', 'second'])
      ctl.running.state.feed.publish(heard[0]!)
      await rename(b.node.id, 'third')
      // Nothing for the late one: the next frame is the new change.
      const f = await next(sa.ws)
      expect(names(f.changed)).toEqual({[b.node.id]: 'third'})
    } finally {
      off()
    }
  })

  it('tells peers of a removal it missed and revokes the removed node own session', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const c = await join(net.id)
    const sa = await session(a.credential)
    const sc = await session(c.credential)

    await silent.removeNode(c.node.id, CTX)
    await rename(b.node.id, 'after-removal')

    const toA = await next(sa.ws)
    expect(toA.type).toBe('delta')
    expect(toA.removed).toEqual([c.node.id])
    expect(names(toA.changed)).toEqual({[b.node.id]: 'after-removal'})
    expect(await next(sc.ws)).toMatchObject({type: 'revoked'})
  })

  it('sends a full map to a node whose own status changed in the gap', async () => {
    const net = await network('approval')
    const a = await join(net.id, {pending: true})
    await api.req('POST', `/api/v1/nodes/${a.node.id}/approve`, {token: ctl.adminToken})
    const p = await join(net.id, {pending: true})
    const sp = await session(p.credential)
    expect(sp.full.self?.status).toBe('pending')
    expect(sp.full.peers).toEqual([])
    const sa = await session(a.credential)

    // Approved through "another replica": the pending node's cache never hears of it.
    await silent.approveNode(p.node.id, CTX)
    await rename(a.node.id, 'a-renamed')

    const toP = await next(sp.ws)
    expect(toP).toMatchObject({type: 'full', self: {id: p.node.id, status: 'active'}})
    expect(names(toP.peers)).toEqual({[a.node.id]: 'a-renamed'})
    const toA = await next(sa.ws)
    expect(toA).toMatchObject({type: 'delta', self: {name: 'a-renamed'}})
    expect(toA.changed?.map((x) => x.id)).toEqual([p.node.id])
  })

  it('drops the network sessions when the reload fails, and a reconnect gets the current map', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const sa = await session(a.credential)
    const store = ctl.running.store
    const real = store.netmapVersion.bind(store)
    store.netmapVersion = () => Promise.reject(new Error('database unreachable (test)'))
    try {
      await silent.renameNode(b.node.id, 'missed', CTX)
      await rename(a.node.id, 'a-after')
      expect((await sa.ws.closed).code).toBe(1006)
    } finally {
      store.netmapVersion = real
    }
    const again = await session(a.credential)
    expect(again.full.self?.name).toBe('a-after')
    expect(names(again.full.peers)).toEqual({[b.node.id]: 'missed'})
  })
})
