// The netmap and admin-event WebSockets against a real controller: full map first, deltas within
// a second of each change, resume by version, revocation, bad frames, presence, ephemeral nodes.
// Time is a FakeClock the tests move: coalescing windows, rate limits, ping rounds and the
// ephemeral reaper act exactly when it passes their deadlines, and no test sleeps for them.
import {connect as tcpConnect} from 'node:net'
import zlib from 'node:zlib'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {LIMITS} from '../../shared/protocol/control-api.js'
import {CLOSE, NetmapDeltaSchema, NetmapFullSchema} from '../../shared/protocol/netmap.js'
import {
  client,
  createNetwork,
  joinWithAuthKey,
  publicKey,
  type Client,
  type JoinedNode,
} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'
import WebSocket from 'ws'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {ephemeralSweepMs} from '../main.js'
import {waitFor} from '../../shared/testing/wait-for.js'

type Frame = {type: string; version: number; [k: string]: unknown}
type Full = {
  type: 'full'
  version: number
  self: {id: string; status: string}
  peers: {id: string; endpoints: string[]}[]
}
type Delta = {
  type: 'delta'
  version: number
  self?: {id: string; name: string; status: string}
  added?: {id: string; name: string}[]
  changed?: {id: string; name: string; endpoints: string[]}[]
  removed?: string[]
}

let ctl: TestController
/**
 * The shared controller's clock. Tests move it by less than a ping interval (30 s) in all: two
 * ping rounds with no real time between them would drop every socket, however well it answers.
 */
let clock: FakeClock
let api: Client
const sockets: WsClient[] = []
let seq = 0
let octet = 0

/** The netmap hub's ping round (its default interval). */
const PING_MS = 30_000
/** The endpoint coalescing window (telemetry.ts default). */
const WINDOW_MS = 2_000

beforeAll(async () => {
  clock = new FakeClock()
  ctl = await startTestController({clock})
  api = client(ctl.url)
})
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await ctl?.close()
})

const network = (joinPolicy: 'open' | 'approval' | 'invite' = 'open') =>
  createNetwork(ctl, {name: `nm-${++seq}`, cidr: `10.${++octet}.0.0/24`, joinPolicy})
async function join(netId: string, name = `node-${++seq}`): Promise<JoinedNode> {
  const r = await api.req('POST', '/api/v1/register', {
    token: ctl.adminToken,
    body: {network: netId, publicKey: publicKey(), name},
  })
  if (r.status === 201) return r.body as JoinedNode
  // approval networks refuse token registration: use a (non pre-approved) auth key.
  return joinWithAuthKey(ctl, netId, name)
}
async function open(credential: string, version?: number) {
  const ws = await connectWs(
    `${ctl.url}/api/v1/netmap${version === undefined ? '' : `?version=${version}`}`,
    credential,
  )
  sockets.push(ws)
  return ws
}
/** Waits (bounded) until `check` holds: for the controller to handle what a test sent. */
const waitUntil = (check: () => boolean | Promise<boolean>, ms = 2000): Promise<true> =>
  waitFor('the controller to handle it', check, ms, 10)
/** mesh_netmap_client_frames_dropped_total of a controller. */
async function droppedFrames(url = ctl.url): Promise<number> {
  const text = (await client(url).req('GET', '/metrics')).text
  return Number(/^mesh_netmap_client_frames_dropped_total (\d+)/m.exec(text)?.[1] ?? 0)
}
/**
 * Renames `marker` (a node of the same network) and waits until every socket has the delta: all
 * frames the controller sent them before are in by then (one socket delivers in order).
 */
async function barrier(marker: {node: {id: string}}, sockets: WsClient[]): Promise<void> {
  const name = `marker-${++seq}`
  const r = await api.req('PATCH', `/api/v1/nodes/${marker.node.id}`, {token: ctl.adminToken, body: {name}})
  expect(r.status, r.text).toBe(200)
  const hasMarker = (f: unknown) => (f as Delta).changed?.some((p) => p.name === name) === true
  for (const ws of sockets) await waitUntil(() => ws.frames.some(hasMarker))
}
/** Waits for the next frame and checks it against the shared schemas. */
async function nextFrame<T extends Frame>(
  ws: WsClient,
  match: (f: T) => boolean = () => true,
  ms = 1000,
): Promise<T> {
  const f = await ws.next<T>(match, ms)
  const schema = f.type === 'full' ? NetmapFullSchema : NetmapDeltaSchema
  expect(schema.safeParse(f).success, JSON.stringify(f)).toBe(true)
  return f
}

/** A new open network with nodes a and b, each with a session whose full map has been read. */
async function twoConnected() {
  const net = await network('open')
  const a = await join(net.id)
  const b = await join(net.id)
  const wsA = await open(a.credential)
  const wsB = await open(b.credential)
  await nextFrame<Full>(wsA)
  await nextFrame<Full>(wsB)
  return {net, a, b, wsA, wsB}
}

describe('netmap WebSocket', () => {
  it('sends a full map first: self plus only active peers; a pending node gets no peers', async () => {
    const net = await network('approval')
    const a = await join(net.id)
    await api.req('POST', `/api/v1/nodes/${a.node.id}/approve`, {token: ctl.adminToken})
    const b = await join(net.id)
    const c = await join(net.id)
    await api.req('POST', `/api/v1/nodes/${c.node.id}/approve`, {token: ctl.adminToken})
    const wsA = await open(a.credential)
    const full = await nextFrame<Full>(wsA)
    expect(full.type).toBe('full')
    expect(full.self).toMatchObject({id: a.node.id, status: 'active'})
    expect(full.peers.map((p) => p.id)).toEqual([c.node.id])
    const wsB = await open(b.credential)
    const pending = await nextFrame<Full>(wsB)
    expect(pending.self.status).toBe('pending')
    expect(pending.peers).toEqual([])
  })

  it('sends a full map gzipped to a node that asks, the same peers with its own entry, deltas as text; text while the list is fresh', async () => {
    const net = await network('open')
    const a = await join(net.id)
    const b = await join(net.id)
    const c = await join(net.id)
    /** A node session asking for gzip: every message, with whether it came binary. */
    const session = async (credential: string) => {
      const ws = new WebSocket(`${ctl.url.replace(/^http/, 'ws')}/api/v1/netmap?encoding=gzip`, {
        headers: {authorization: `Bearer ${credential}`},
      })
      const got: {binary: boolean; frame: Record<string, unknown>}[] = []
      const waiters: (() => void)[] = []
      ws.on('message', (data: Buffer, binary) => {
        const text = binary ? zlib.gunzipSync(data) : data
        got.push({binary, frame: JSON.parse(text.toString()) as Record<string, unknown>})
        for (const w of waiters.splice(0)) w()
      })
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
      const nth = (n: number) =>
        got.length > n
          ? Promise.resolve(got[n]!)
          : new Promise<(typeof got)[number]>((r) => waiters.push(() => r(got[n]!)))
      return {ws, nth}
    }
    const plain = await open(b.credential)
    const textFull = await nextFrame<Full>(plain)

    const sa = await session(a.credential)
    const first = await sa.nth(0)
    expect(first.binary).toBe(true)
    const full = NetmapFullSchema.parse(first.frame)
    expect(full.self.id).toBe(a.node.id)
    // Its own entry comes along (the list is the network's, compressed once); the rest is what a
    // text full map lists for the same peers.
    expect(full.peers.map((p) => p.id).sort()).toEqual([a.node.id, b.node.id, c.node.id].sort())
    const byId = new Map(full.peers.map((p) => [p.id, p]))
    for (const p of textFull.peers) expect(byId.get(p.id)).toEqual(p)
    // A change: a delta, as text, to the gzip session too.
    expect(
      (
        await api.req('PATCH', `/api/v1/nodes/${c.node.id}`, {
          token: ctl.adminToken,
          body: {name: 'renamed-c'},
        })
      ).status,
    ).toBe(200)
    const delta = await sa.nth(1)
    expect(delta.binary).toBe(false)
    expect(NetmapDeltaSchema.parse(delta.frame).changed?.map((p) => p.name)).toEqual(['renamed-c'])
    // The peer list changed within GZIP_EVERY_MS of the last compression: a full map goes as text
    // (without the node's own entry) rather than wait or compress on every change of a join storm.
    const sc = await session(c.credential)
    const fresh = await sc.nth(0)
    expect(fresh.binary).toBe(false)
    expect(
      NetmapFullSchema.parse(fresh.frame)
        .peers.map((p) => p.id)
        .sort(),
    ).toEqual([a.node.id, b.node.id].sort())
    sa.ws.close()
    sc.ws.close()
  })

  it('delivers a delta within a second when a node is added, approved, renamed and removed', async () => {
    const net = await network('approval')
    const a = await join(net.id)
    await api.req('POST', `/api/v1/nodes/${a.node.id}/approve`, {token: ctl.adminToken})
    const wsA = await open(a.credential)
    const first = await nextFrame<Full>(wsA)

    // A pending node is not a peer: nothing for A. Approving it adds it.
    const b = await join(net.id)
    const wsB = await open(b.credential)
    await nextFrame<Full>(wsB, (f) => f.type === 'full')
    let t = Date.now()
    await api.req('POST', `/api/v1/nodes/${b.node.id}/approve`, {token: ctl.adminToken})
    const added = await nextFrame<Delta>(wsA, (f) => f.type === 'delta')
    expect(Date.now() - t).toBeLessThan(1000)
    expect(added.added?.map((p) => p.id)).toEqual([b.node.id])
    expect(added.version).toBeGreaterThan(first.version)
    // The approved node itself now gets a full map with A as its peer.
    const bFull = await nextFrame<Full>(wsB, (f) => f.type === 'full')
    expect(bFull.self.status).toBe('active')
    expect(bFull.peers.map((p) => p.id)).toEqual([a.node.id])

    t = Date.now()
    await api.req('PATCH', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken, body: {name: 'renamed'}})
    const changed = await nextFrame<Delta>(wsA)
    expect(Date.now() - t).toBeLessThan(1000)
    expect(changed.changed?.map((p) => [p.id, p.name])).toEqual([[b.node.id, 'renamed']])
    const selfDelta = await nextFrame<Delta>(wsB)
    expect(selfDelta.self?.name).toBe('renamed')

    t = Date.now()
    await api.req('DELETE', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})
    const removed = await nextFrame<Delta>(wsA)
    expect(Date.now() - t).toBeLessThan(1000)
    expect(removed.removed).toEqual([b.node.id])
    // The removed node is told and disconnected; its credential no longer works.
    expect(await wsB.next((f: Frame) => f.type === 'revoked', 1000)).toMatchObject({type: 'revoked'})
    expect((await wsB.closed).code).toBe(CLOSE.REVOKED)
    const again = await connectWs(`${ctl.url}/api/v1/netmap`, b.credential)
    expect((await again.closed).code).toBe(CLOSE.UNAUTHENTICATED)
  })

  it('sends one small delta whose size does not grow with the number of peers', async () => {
    const sizes: number[] = []
    for (const peers of [2, 25]) {
      const net = await network('open')
      const watcher = await join(net.id, 'watcher')
      for (let i = 0; i < peers; i++) await join(net.id, `p${i}`)
      const ws = await open(watcher.credential)
      await nextFrame<Full>(ws)
      const raw = new Promise<number>((resolve) => ws.ws.once('message', (d) => resolve(String(d).length)))
      await join(net.id, 'newcomer')
      sizes.push(await raw)
    }
    expect(Math.abs(sizes[0]! - sizes[1]!)).toBeLessThan(20)
  })

  it('fans out endpoint reports and refuses invalid frames with CLOSE.BAD_FRAME, staying up', async () => {
    const {net, b, wsA, wsB} = await twoConnected()
    wsB.ws.send(JSON.stringify({type: 'report', endpoints: ['198.51.100.20:51820']}))
    const d = await nextFrame<Delta>(wsA)
    expect(d.changed?.[0]).toMatchObject({id: b.node.id, endpoints: ['198.51.100.20:51820']})
    // The same endpoints again change nothing.
    wsB.ws.send(JSON.stringify({type: 'report', endpoints: ['198.51.100.20:51820']}))
    // (A bad endpoint in a good frame is dropped on its own: peer-input.integration.test.ts.)
    wsB.ws.send('{"type":"report","endpoints":"not a list"}')
    expect((await wsB.closed).code).toBe(CLOSE.BAD_FRAME)
    const c = await join(net.id)
    const wsC = await open(c.credential)
    await nextFrame<Full>(wsC)
    wsC.ws.send('this is not json')
    expect((await wsC.closed).code).toBe(CLOSE.BAD_FRAME)
    expect(wsA.pending().filter((f) => (f as Delta).changed?.[0]?.id === b.node.id)).toEqual([])
    expect((await api.req('GET', '/healthz')).status).toBe(200)
  })

  it('keeps what a node reports about its peers only for other active nodes of its own network', async () => {
    const net = await network('open')
    const other = await network('open')
    const a = await join(net.id)
    const b = await join(net.id)
    const stranger = await join(other.id)
    const wsA = await open(a.credential)
    await nextFrame<Full>(wsA)
    const hub = ctl.running.server.netmap
    wsA.ws.send(
      JSON.stringify({
        type: 'report',
        reset: true,
        peers: [
          {id: b.node.id, online: true, endpoint: '198.51.100.7:51820'},
          {id: stranger.node.id, online: true, endpoint: '198.51.100.8:51820'},
          {id: a.node.id, online: true, endpoint: '198.51.100.9:51820'},
          {id: 'made-up', online: true, endpoint: '198.51.100.10:51820'},
        ],
      }),
    )
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).size > 0)
    expect([...hub.peerLinks(net.id, a.node.id)]).toEqual([
      [b.node.id, {online: true, endpoint: '198.51.100.7:51820'}],
    ])
    // An endpoint that does not parse is kept as none; an offline entry ends the link (only live
    // links are held); reset drops what was reported before.
    wsA.ws.send(
      JSON.stringify({type: 'report', peers: [{id: b.node.id, online: true, endpoint: '999.1.1.1:1'}]}),
    )
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).get(b.node.id)?.endpoint === null)
    expect(hub.peerLinks(net.id, a.node.id).get(b.node.id)).toEqual({online: true, endpoint: null})
    wsA.ws.send(
      JSON.stringify({
        type: 'report',
        peers: [{id: b.node.id, online: false, endpoint: '198.51.100.7:51820'}],
      }),
    )
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).size === 0)
    wsA.ws.send(JSON.stringify({type: 'report', peers: [{id: b.node.id, online: true, endpoint: null}]}))
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).size === 1)
    wsA.ws.send(JSON.stringify({type: 'report', reset: true}))
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).size === 0)
    // A peer that is removed disappears from every report.
    wsA.ws.send(JSON.stringify({type: 'report', peers: [{id: b.node.id, online: true, endpoint: null}]}))
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).size === 1)
    expect((await api.req('DELETE', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})).status).toBe(200)
    await waitUntil(() => hub.peerLinks(net.id, a.node.id).size === 0)
    // A report with a peer entry that breaks the schema is a bad frame.
    wsA.ws.send(JSON.stringify({type: 'report', peers: [{id: b.node.id, online: 'yes', endpoint: null}]}))
    expect((await wsA.closed).code).toBe(CLOSE.BAD_FRAME)
  })

  it('coalesces a flood of alternating endpoint reports into two deltas: the first report at once, the last when the window ends', async () => {
    const net = await network('open')
    const flooder = await join(net.id, 'flooder')
    const marker = await join(net.id, 'marker')
    const peers = await Promise.all(Array.from({length: 20}, (_, i) => join(net.id, `watch${i}`)))
    const wsF = await open(flooder.credential)
    await nextFrame<Full>(wsF)
    const wsPeers = await Promise.all(peers.map((p) => open(p.credential)))
    for (const ws of wsPeers) await nextFrame<Full>(ws)
    const droppedBefore = await droppedFrames()
    const X = ['198.51.100.30:51820']
    const Y = ['198.51.100.31:51820', '203.0.113.31:51820']
    const last = ['203.0.113.99:51820']
    for (let i = 0; i < 1000; i++)
      wsF.ws.send(JSON.stringify({type: 'report', endpoints: i % 2 === 0 ? X : Y, peers: []}))
    wsF.ws.send(JSON.stringify({type: 'report', endpoints: last, peers: []}))
    // The clock stands still, so the socket's budget is its burst: 40 frames are handled, the
    // 41st is held, and each later one replaces the held one (counted as dropped).
    await waitUntil(async () => (await droppedFrames()) - droppedBefore === 1001 - 40 - 1, 5000)
    const flooderEndpoints = (ws: WsClient) =>
      (ws.frames as Delta[]).flatMap((f) =>
        f.type === 'delta'
          ? (f.changed ?? []).filter((c) => c.id === flooder.node.id).map((c) => c.endpoints)
          : [],
      )
    // The first report is applied at once; the other 39 handled ones wait for the window.
    for (const ws of wsPeers) await waitUntil(() => flooderEndpoints(ws).length === 1)
    // The held frame (the last report) is handled when a token is back, 50 ms on; it replaces
    // the pending report, still inside the window.
    await clock.advanceAsync(WINDOW_MS - 1)
    await barrier(marker, wsPeers)
    for (const ws of wsPeers) expect(flooderEndpoints(ws)).toEqual([X])
    // The window ends: the last report goes out, to every peer, in one delta.
    await clock.advanceAsync(1)
    for (const ws of wsPeers) await waitUntil(() => flooderEndpoints(ws).length === 2)
    // Nothing more comes, however long the clock runs on (less than a ping round here).
    await clock.advanceAsync(5 * WINDOW_MS)
    await barrier(marker, wsPeers)
    // Before coalescing each peer got one delta per changing report: up to 1,001.
    for (const ws of wsPeers) expect(flooderEndpoints(ws)).toEqual([X, last])
    const shown = await api.req('GET', `/api/v1/nodes/${flooder.node.id}`, {token: ctl.adminToken})
    expect((shown.body as {endpoints: string[]}).endpoints).toEqual(last)
    // Endpoint telemetry is not an administrative change: no audit entries for it.
    const audit = await api.req('GET', `/api/v1/audit?actor=node:${flooder.node.id}&limit=500`, {
      token: ctl.adminToken,
    })
    expect(audit.status, audit.text).toBe(200)
    expect((audit.body as {items: {action: string}[]}).items.map((e) => e.action)).not.toContain(
      'node.endpoints',
    )
    // The flooder itself stays connected: excess frames are dropped by the per-socket rate
    // limit, not punished with a close.
    expect(wsF.ws.readyState).toBe(wsF.ws.OPEN)
  })

  it('handles a frame held by the rate limit exactly when the clock gives a token back, the newest one only', async () => {
    const net = await network('open')
    const a = await join(net.id)
    const b = await join(net.id)
    const wsA = await open(a.credential)
    await nextFrame<Full>(wsA)
    const hub = ctl.running.server.netmap
    const report = (endpoint: string) =>
      wsA.ws.send(JSON.stringify({type: 'report', peers: [{id: b.node.id, online: true, endpoint}]}))
    const seen = () => hub.peerLinks(net.id, a.node.id).get(b.node.id)?.endpoint
    const droppedBefore = await droppedFrames()
    // A burst of 40 is handled; the 41st is held and the 42nd replaces it.
    for (let i = 1; i <= 42; i++) report(`198.51.100.${i}:51820`)
    await waitUntil(async () => (await droppedFrames()) === droppedBefore + 1)
    expect(seen()).toBe('198.51.100.40:51820')
    // One token per 50 ms (20/s): the held frame waits for it, and not a millisecond longer.
    await clock.advanceAsync(49)
    expect(seen()).toBe('198.51.100.40:51820')
    await clock.advanceAsync(1)
    expect(seen()).toBe('198.51.100.42:51820')
    // The budget refills with the clock: 40 tokens after 2 s, a burst again.
    await clock.advanceAsync(2_000)
    for (let i = 43; i <= 82; i++) report(`198.51.100.${i}:51820`)
    await waitUntil(() => seen() === '198.51.100.82:51820')
    expect(await droppedFrames()).toBe(droppedBefore + 1)
  })

  it('answers a plain GET without Upgrade on the WebSocket paths with 426 and the JSON error body', async () => {
    for (const path of ['/api/v1/netmap', '/api/v1/events']) {
      const r = await api.req('GET', path, {token: ctl.adminToken})
      expect(r.status, r.text).toBe(426)
      expect(r.body).toMatchObject({
        error: {code: 'UPGRADE_REQUIRED', message: 'this endpoint needs a WebSocket upgrade'},
      })
    }
  })

  it('resumes with ?version=N by sending only what changed since N', async () => {
    const net = await network('open')
    const a = await join(net.id)
    const b = await join(net.id)
    const d = await join(net.id)
    const wsA = await open(a.credential)
    const full = await nextFrame<Full>(wsA)
    expect(full.peers).toHaveLength(2)
    await wsA.close()

    const c = await join(net.id)
    await api.req('DELETE', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})
    await api.req('PATCH', `/api/v1/nodes/${d.node.id}`, {token: ctl.adminToken, body: {name: 'dee'}})

    const resumed = await open(a.credential, full.version)
    const delta = await nextFrame<Delta>(resumed)
    expect(delta.type).toBe('delta')
    expect(delta.version).toBe(full.version + 3)
    expect(delta.changed?.map((p) => p.id).sort()).toEqual([c.node.id, d.node.id].sort())
    expect(delta.changed?.find((p) => p.id === d.node.id)?.name).toBe('dee')
    expect(delta.removed).toEqual([b.node.id])
    await resumed.close()

    // Already current: an empty delta at the same version.
    const current = await open(a.credential, delta.version)
    expect(await nextFrame<Delta>(current)).toEqual({type: 'delta', version: delta.version})
    await current.close()
    // A version the controller never issued: a full map.
    const future = await open(a.credential, delta.version + 1000)
    expect((await nextFrame<Full>(future)).type).toBe('full')
  })

  it('marks a node online while its socket is open and records last seen', async () => {
    const net = await network('open')
    const a = await join(net.id)
    const ws = await open(a.credential)
    await nextFrame<Full>(ws)
    const on = await api.req('GET', `/api/v1/nodes/${a.node.id}`, {token: ctl.adminToken})
    expect(on.body.online).toBe(true)
    expect(on.body.lastSeen).not.toBeNull()
    clock.advance(1_000)
    await ws.close()
    // Last seen becomes the clock's time at the close.
    const closedAt = new Date(clock.now()).toISOString()
    const shown = async () =>
      (await api.req('GET', `/api/v1/nodes/${a.node.id}`, {token: ctl.adminToken})).body
    await waitUntil(async () => (await shown()).lastSeen === closedAt)
    expect((await shown()).online).toBe(false)
  })

  it('revokes every session of a deleted network without sending peer deltas', async () => {
    const {net, wsA, wsB} = await twoConnected()
    expect((await api.req('DELETE', `/api/v1/networks/${net.id}`, {token: ctl.adminToken})).status).toBe(200)
    expect((await wsA.closed).code).toBe(CLOSE.REVOKED)
    expect((await wsB.closed).code).toBe(CLOSE.REVOKED)
    for (const ws of [wsA, wsB]) expect(ws.pending().map((f) => (f as Frame).type)).toEqual(['revoked'])
  })

  it('shows a renamed network in the next full map', async () => {
    const net = await network('open')
    const a = await join(net.id)
    const ws = await open(a.credential)
    await nextFrame<Full>(ws)
    await api.req('PATCH', `/api/v1/networks/${net.id}`, {
      token: ctl.adminToken,
      body: {name: `renamed-${++seq}`},
    })
    const again = await open(a.credential)
    const full = await nextFrame<Full & {network: {name: string}}>(again)
    expect(full.network.name).toBe(`renamed-${seq}`)
  })

  it('survives frames over the size limit, with or without credentials (close 1009)', async () => {
    const net = await network('open')
    const a = await join(net.id)
    for (const [p, token] of [
      ['/api/v1/netmap', undefined],
      ['/api/v1/netmap', a.credential],
      ['/api/v1/events', 'mtok_forged'],
      ['/api/v1/events', ctl.adminToken],
    ] as const) {
      const ws = await connectWs(`${ctl.url}${p}`, token)
      ws.ws.send('x'.repeat(LIMITS.maxFrameBytes + 1024))
      expect([1009, CLOSE.UNAUTHENTICATED, 1006]).toContain((await ws.closed).code)
    }
    expect((await api.req('GET', '/healthz')).status).toBe(200)
  })

  it('answers a malformed upgrade with the JSON error body', async () => {
    const port = Number(new URL(ctl.url).port)
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = tcpConnect(port, '127.0.0.1', () =>
        sock.write(
          'GET /api/v1/netmap HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
        ),
      )
      let data = ''
      sock.on('data', (d) => (data += String(d)))
      sock.on('end', () => resolve(data))
      sock.on('error', reject)
    })
    expect(raw).toMatch(/^HTTP\/1\.1 400 /)
    const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as {
      error: {code: string; message: string}
    }
    expect(body.error).toMatchObject({
      code: 'VALIDATION_FAILED',
      message: expect.stringContaining('sec-websocket-key'),
    })
  })

  it('closes a connection without a valid credential with CLOSE.UNAUTHENTICATED', async () => {
    for (const token of [undefined, 'mnode_forged', 'mtok_not-a-node']) {
      const ws = await connectWs(`${ctl.url}/api/v1/netmap`, token)
      expect((await ws.closed).code).toBe(CLOSE.UNAUTHENTICATED)
    }
  })
})

describe('admin event stream', () => {
  it('sends a snapshot, then added/online/changed/offline/removed events of the own tenant only', async () => {
    const net = await network('open')
    const existing = await join(net.id)
    const events = await connectWs(`${ctl.url}/api/v1/events`, ctl.adminToken)
    sockets.push(events)
    const snap = await events.next<{type: string; nodes: {id: string}[]}>()
    expect(snap.type).toBe('snapshot')
    expect(snap.nodes.map((x) => x.id)).toContain(existing.node.id)

    // Another tenant's changes never show up.
    const other = await api.req('POST', '/api/v1/tenants', {
      token: ctl.adminToken,
      body: {name: `ev-other-${++seq}`, owner: {username: `ev-owner-${seq}`, password: 'long enough'}},
    })
    const otherLogin = await api.req('POST', '/api/v1/login', {
      body: {username: other.body.owner.username, password: 'long enough'},
    })
    const otherNet = await api.req('POST', '/api/v1/networks', {
      token: otherLogin.body.token,
      body: {name: 'theirs', cidr: '10.0.0.0/24', joinPolicy: 'open'},
    })
    await api.req('POST', '/api/v1/register', {
      token: otherLogin.body.token,
      body: {network: otherNet.body.id, publicKey: publicKey(), name: 'foreign'},
    })

    type Ev = {type: string; node: {id: string; name: string; online: boolean}}
    const n = await join(net.id, 'watched')
    expect(await events.next<Ev>()).toMatchObject({type: 'node_added', node: {id: n.node.id}})
    const ws = await open(n.credential)
    expect(await events.next<Ev>()).toMatchObject({type: 'node_online', node: {id: n.node.id, online: true}})
    await api.req('PATCH', `/api/v1/nodes/${n.node.id}`, {token: ctl.adminToken, body: {name: 'watched-2'}})
    expect(await events.next<Ev>()).toMatchObject({type: 'node_changed', node: {name: 'watched-2'}})
    await ws.close()
    expect(await events.next<Ev>()).toMatchObject({
      type: 'node_offline',
      node: {id: n.node.id, online: false},
    })
    await api.req('DELETE', `/api/v1/nodes/${n.node.id}`, {token: ctl.adminToken})
    expect(await events.next<Ev>()).toMatchObject({type: 'node_removed', node: {id: n.node.id}})
    expect(events.frames.some((f) => (f as Ev).node?.name === 'foreign')).toBe(false)
  })

  it('closes an event stream with CLOSE.UNAUTHENTICATED at the first check round after its token is logged out', async () => {
    const own = await startTestController({clock: new FakeClock()})
    const ownClock = own.running.state.clock as FakeClock
    try {
      const c = client(own.url)
      const login = await c.req('POST', '/api/v1/login', {
        body: {username: 'admin', password: own.adminPassword},
      })
      const events = await connectWs(`${own.url}/api/v1/events`, login.body.token)
      expect((await events.next<{type: string}>()).type).toBe('snapshot')
      expect((await c.req('POST', '/api/v1/logout', {token: login.body.token})).status).toBe(200)
      // The token was checked at the upgrade; the next check round (one ping interval on) ends it.
      await ownClock.advanceAsync(PING_MS)
      const closed = await Promise.race([
        events.closed,
        new Promise((r) => setTimeout(() => r('still open'), 3000)),
      ])
      expect(closed).toMatchObject({code: CLOSE.UNAUTHENTICATED})
    } finally {
      await own.close()
    }
  })

  it('pings an event stream every interval and drops it at the round after one it left unanswered', async () => {
    const own = await startTestController({clock: new FakeClock()})
    const ownClock = own.running.state.clock as FakeClock
    try {
      const silent = new WebSocket(`${own.url.replace(/^http/, 'ws')}/api/v1/events`, {
        headers: {authorization: `Bearer ${own.adminToken}`},
        autoPong: false,
      })
      const closed = new Promise((r) => silent.on('close', (code) => r(code)))
      await new Promise((r) => silent.once('message', r))
      const pinged = new Promise((r) => silent.once('ping', r))
      await ownClock.advanceAsync(PING_MS)
      await pinged
      expect(silent.readyState).toBe(WebSocket.OPEN)
      await ownClock.advanceAsync(PING_MS)
      const timeout = new Promise((r) => setTimeout(() => r('still open'), 3000))
      expect(await Promise.race([closed, timeout])).toBe(1006)
    } finally {
      await own.close()
    }
  })

  it('closes an event stream without a valid user token with CLOSE.UNAUTHENTICATED', async () => {
    const ws = await connectWs(`${ctl.url}/api/v1/events`, 'mtok_nope')
    expect((await ws.closed).code).toBe(CLOSE.UNAUTHENTICATED)
  })
})

describe('lifecycle', () => {
  it('drops a netmap session that leaves a ping unanswered for a round, keeping one that answers', async () => {
    const own = await startTestController({clock: new FakeClock()})
    const ownClock = own.running.state.clock as FakeClock
    try {
      const c = client(own.url)
      const net = await c.req('POST', '/api/v1/networks', {
        token: own.adminToken,
        body: {name: 'pings', cidr: '10.9.1.0/24', joinPolicy: 'open'},
      })
      const register = (name: string) =>
        c.req('POST', '/api/v1/register', {
          token: own.adminToken,
          body: {network: net.body.id, publicKey: publicKey(), name},
        })
      const talker = (await register('talker')).body
      const quiet = (await register('quiet')).body
      const answering = await connectWs(`${own.url}/api/v1/netmap`, talker.credential)
      await answering.next()
      const silent = new WebSocket(`${own.url.replace(/^http/, 'ws')}/api/v1/netmap`, {
        headers: {authorization: `Bearer ${quiet.credential}`},
        autoPong: false,
      })
      const silentClosed = new Promise((r) => silent.on('close', (code) => r(code)))
      await new Promise((r) => silent.once('message', r))
      const state = own.running.state
      expect([state.presence.isOnline(talker.node.id), state.presence.isOnline(quiet.node.id)]).toEqual([
        true,
        true,
      ])

      // Round 1: both are pinged, both stay.
      const pinged = [answering.ws, silent].map((ws) => new Promise((r) => ws.once('ping', r)))
      await ownClock.advanceAsync(PING_MS)
      await Promise.all(pinged)
      // The answering client's pong went out before its 'ping' event; a report sent after it
      // reaches the hub after the pong, so once the report is in, so is the pong.
      answering.ws.send(
        JSON.stringify({type: 'report', peers: [{id: quiet.node.id, online: true, endpoint: null}]}),
      )
      await waitUntil(() => own.running.server.netmap.peerLinks(net.body.id, talker.node.id).size === 1)
      expect(silent.readyState).toBe(WebSocket.OPEN)

      // Round 2: the silent one never answered round 1 and is dropped; the other is pinged again.
      await ownClock.advanceAsync(PING_MS)
      // Closed at this round (the test's own timeout catches a socket left open).
      expect(await silentClosed).toBe(1006)
      await waitUntil(() => !state.presence.isOnline(quiet.node.id))
      expect(answering.ws.readyState).toBe(WebSocket.OPEN)
      expect(state.presence.isOnline(talker.node.id)).toBe(true)
      await answering.close()
    } finally {
      await own.close()
    }
  })

  it('removes an offline ephemeral node at the first sweep once the clock passes its timeout, never an online one', async () => {
    const timeoutSec = 120
    // Ping rounds every hour: this test moves the clock by minutes at once, faster than any
    // client could answer a ping.
    const own = await startTestController({
      clock: new FakeClock(),
      ephemeralTimeoutSec: timeoutSec,
      pingIntervalMs: 3_600_000,
    })
    const ownClock = own.running.state.clock as FakeClock
    try {
      const c = client(own.url)
      const net = await c.req('POST', '/api/v1/networks', {
        token: own.adminToken,
        body: {name: 'eph', cidr: '10.9.0.0/24'},
      })
      const key = await c.req('POST', `/api/v1/networks/${net.body.id}/authkeys`, {
        token: own.adminToken,
        body: {ephemeral: true, reusable: true},
      })
      const reg = await c.req('POST', '/api/v1/register', {
        body: {authKey: key.body.key, publicKey: publicKey(), name: 'ci'},
      })
      expect(reg.body.node.ephemeral).toBe(true)
      const status = async () =>
        (await c.req('GET', `/api/v1/nodes/${reg.body.node.id}`, {token: own.adminToken})).status
      const ws = await connectWs(`${own.url}/api/v1/netmap`, reg.body.credential)
      await ws.next()
      // Online: kept, however long (sweeps every 10 s for 10 min).
      const sweepMs = ephemeralSweepMs(timeoutSec * 1000)
      expect(sweepMs).toBe(10_000)
      await ownClock.advanceAsync(60 * sweepMs)
      expect(await status()).toBe(200)
      // Offline from now (a sweep instant): last seen is now, and the timeout counts from it.
      await ws.close()
      await waitUntil(async () => {
        const shown = await c.req('GET', `/api/v1/nodes/${reg.body.node.id}`, {token: own.adminToken})
        return shown.body.online === false && shown.body.lastSeen === new Date(ownClock.now()).toISOString()
      })
      await ownClock.advanceAsync(timeoutSec * 1000 - 1)
      expect(await status()).toBe(200)
      await ownClock.advanceAsync(1)
      await waitUntil(async () => (await status()) === 404)
    } finally {
      await own.close()
    }
  })

  it('closes open WebSockets with 1001 when the controller shuts down', async () => {
    const own = await startTestController()
    const c = client(own.url)
    const net = await c.req('POST', '/api/v1/networks', {
      token: own.adminToken,
      body: {name: 'bye', cidr: '10.8.0.0/24', joinPolicy: 'open'},
    })
    const reg = await c.req('POST', '/api/v1/register', {
      token: own.adminToken,
      body: {network: net.body.id, publicKey: publicKey(), name: 'n'},
    })
    const ws = await connectWs(`${own.url}/api/v1/netmap`, reg.body.credential)
    const ev = await connectWs(`${own.url}/api/v1/events`, own.adminToken)
    await ws.next()
    await own.close()
    expect((await ws.closed).code).toBe(CLOSE.SHUTTING_DOWN)
    expect((await ev.closed).code).toBe(CLOSE.SHUTTING_DOWN)
  })
})
