// The controller's NAT traversal services, wired into a real controller (HTTP on 127.0.0.1:0,
// UDP on loopback, a real SQLite file): observed endpoints kept apart from reported ones and
// fanned out to peers.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {NetmapDeltaSchema, NetmapFullSchema, type Peer} from '../shared/protocol/netmap.js'
import {client, publicKey, type Client} from './testing/client.js'
import {startTestController, type TestController} from './testing/test-controller.js'
import {connectWs, type WsClient} from './testing/ws-client.js'

type Full = {type: 'full'; version: number; peers: Peer[]; nat?: Record<string, unknown>}
type Delta = {type: 'delta'; version: number; changed?: Peer[]; removed?: string[]}
type Joined = {node: {id: string; name: string}; credential: string; publicKey: string}

let ctl: TestController
let api: Client
const sockets: WsClient[] = []
let seq = 0

beforeAll(async () => {
  ctl = await startTestController()
  api = client(ctl.url)
})
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await ctl?.close()
})

async function network(): Promise<{id: string}> {
  const r = await api.req('POST', '/api/v1/networks', {
    token: ctl.adminToken,
    body: {name: `nat-${++seq}`, cidr: `10.${100 + seq}.0.0/24`, joinPolicy: 'open'},
  })
  expect(r.status, r.text).toBe(201)
  return r.body as {id: string}
}

async function join(netId: string, key = publicKey()): Promise<Joined> {
  const r = await api.req('POST', '/api/v1/register', {
    token: ctl.adminToken,
    body: {network: netId, publicKey: key, name: `node-${++seq}`},
  })
  expect(r.status, r.text).toBe(201)
  return {...(r.body as Omit<Joined, 'publicKey'>), publicKey: key}
}

async function open(credential: string): Promise<{ws: WsClient; full: Full}> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
  sockets.push(ws)
  const full = await ws.next<Full>(() => true, 2000)
  expect(NetmapFullSchema.safeParse(full).success, JSON.stringify(full)).toBe(true)
  return {ws, full}
}

/** The next delta that changes `id` so that `match` holds, within `ms`. */
async function deltaFor(ws: WsClient, id: string, match: (p: Peer) => boolean, ms = 1000): Promise<Peer> {
  const d = await ws.next<Delta>(
    (f) => f.type === 'delta' && (f.changed ?? []).some((p) => p.id === id && match(p)),
    ms,
  )
  expect(NetmapDeltaSchema.safeParse(d).success, JSON.stringify(d)).toBe(true)
  return d.changed!.find((p) => p.id === id)!
}

describe('observed endpoints', () => {
  it('reach peers as a delta within a second of being observed', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const {ws: wsA} = await open(a.credential)
    await open(b.credential)
    await ctl.running.state.reportObservedEndpoint({id: b.node.id}, '203.0.113.40:41641')
    const peer = await deltaFor(wsA, b.node.id, (p) => p.observedEndpoint === '203.0.113.40:41641', 1000)
    expect(peer.endpoints).toEqual([])
    // A reconnecting node sees it in its full map too.
    const again = await open(a.credential)
    expect(again.full.peers.find((p) => p.id === b.node.id)?.observedEndpoint).toBe('203.0.113.40:41641')
  })

  it('are not erased by the endpoints a node reports', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const {ws: wsA} = await open(a.credential)
    const {ws: wsB} = await open(b.credential)
    await ctl.running.state.reportObservedEndpoint({id: b.node.id}, '203.0.113.41:50000')
    await deltaFor(wsA, b.node.id, (p) => p.observedEndpoint === '203.0.113.41:50000')
    wsB.ws.send(JSON.stringify({type: 'report', endpoints: ['198.51.100.20:51820']}))
    const peer = await deltaFor(wsA, b.node.id, (p) => p.endpoints.includes('198.51.100.20:51820'), 3000)
    expect(peer.observedEndpoint).toBe('203.0.113.41:50000')
    wsB.ws.send(JSON.stringify({type: 'report', endpoints: []}))
    const cleared = await deltaFor(wsA, b.node.id, (p) => p.endpoints.length === 0, 3000)
    expect(cleared.observedEndpoint).toBe('203.0.113.41:50000')
    expect((await ctl.running.store.getNode(b.node.id))?.observedEndpoint).toBe('203.0.113.41:50000')
  })

  it('are stored as seen but reach peers only when another node could use them', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const {ws: wsA} = await open(a.credential)
    await ctl.running.state.reportObservedEndpoint({id: b.node.id}, '127.0.0.1:40000')
    const peer = await deltaFor(wsA, b.node.id, () => true)
    expect(peer.observedEndpoint).toBeUndefined()
    const shown = await api.req('GET', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})
    expect((shown.body as {observedEndpoint?: string}).observedEndpoint).toBe('127.0.0.1:40000')
  })
})
