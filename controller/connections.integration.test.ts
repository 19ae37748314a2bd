// Connection reporting end to end: nodes report paths over the netmap WebSocket of a real
// controller on a real SQLite file; the pair's path, latency and log come back over REST and
// the admin event stream, and a restart does not log the pairs again.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {
  ConnectionLogEntrySchema,
  ConnectionSchema,
  page,
  type Connection,
  type ConnectionLogEntry,
} from '../shared/protocol/control-api.js'
import {
  ConnectionChangedEventSchema,
  type ConnectionChangedEvent,
  type PeerReport,
} from '../shared/protocol/netmap.js'
import {recordPairWrites, type RecordedPairWrite} from './testing/store-spy.js'
import {client, createNetwork, joinNode, type Client} from './testing/client.js'
import {startTestController, type TestController} from './testing/test-controller.js'
import {connectWs, type WsClient} from './testing/ws-client.js'

let dataDir: string
let ctl: TestController
let api: Client
const sockets: WsClient[] = []
/** Every pair row the tracker's writes touched. */
let writes: RecordedPairWrite[] = []

async function start(): Promise<void> {
  ctl = await startTestController({dataDir, connectionFlushMs: 50})
  api = client(ctl.url)
  recordPairWrites(ctl.running.store, (w) => writes.push(w))
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-conn-'))
  await start()
})
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await ctl?.close()
  fs.rmSync(dataDir, {recursive: true, force: true})
})

const join = (netId: string, name: string) => joinNode(ctl, netId, name)

async function session(credential: string): Promise<WsClient> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
  sockets.push(ws)
  await ws.next((f: {type: string}) => f.type === 'full')
  return ws
}

const report = (ws: WsClient, peers: PeerReport[], reset = false) =>
  ws.ws.send(JSON.stringify({type: 'report', ...(reset ? {reset: true} : {}), peers}))

async function connections(netId: string, node?: string): Promise<Connection[]> {
  const r = await api.req('GET', `/api/v1/networks/${netId}/connections${node ? `?node=${node}` : ''}`, {
    token: ctl.adminToken,
  })
  expect(r.status, r.text).toBe(200)
  return page(ConnectionSchema).parse(r.body).items
}

async function log(netId: string, query = ''): Promise<ConnectionLogEntry[]> {
  const r = await api.req('GET', `/api/v1/networks/${netId}/connections/log${query}`, {token: ctl.adminToken})
  expect(r.status, r.text).toBe(200)
  return page(ConnectionLogEntrySchema).parse(r.body).items
}

describe('connection reports', () => {
  let net: {id: string; name: string}
  let a: Awaited<ReturnType<typeof join>>
  let b: Awaited<ReturnType<typeof join>>
  let c: Awaited<ReturnType<typeof join>>
  let events: WsClient
  /** The pair (a, b) in canonical order. */
  let lo: string
  let hi: string

  const changed = (match: (e: ConnectionChangedEvent) => boolean) =>
    events
      .next<{type: string}>((f) => f.type === 'connection_changed' && match(f as ConnectionChangedEvent))
      .then((f) => ConnectionChangedEventSchema.parse(f))

  beforeAll(async () => {
    net = await createNetwork(ctl, {name: 'conn', cidr: '10.99.0.0/24', joinPolicy: 'open'})
    a = await join(net.id, 'alpha')
    b = await join(net.id, 'beta')
    c = await join(net.id, 'gamma')
    ;[lo, hi] = [a.node.id, b.node.id].sort() as [string, string]
    events = await connectWs(`${ctl.url}/api/v1/events`, ctl.adminToken)
    sockets.push(events)
    await events.next((f: {type: string}) => f.type === 'snapshot')
  })

  it('reports a pair as connected through the relay, then upgraded to direct, with latency and endpoint', async () => {
    const wsA = await session(a.credential)
    const wsB = await session(b.credential)
    report(
      wsA,
      [{id: b.node.id, online: true, endpoint: '127.0.0.1:40001', path: 'relay', latencyMs: 31}],
      true,
    )
    report(
      wsB,
      [{id: a.node.id, online: true, endpoint: '127.0.0.1:40002', path: 'relay', latencyMs: 29.5}],
      true,
    )
    const connected = await changed((e) => e.a.id === lo && e.to === 'relay')
    expect(connected).toMatchObject({
      networkId: net.id,
      a: {id: lo, name: lo === a.node.id ? 'alpha' : 'beta'},
      b: {id: hi},
      from: 'none',
      to: 'relay',
    })
    await ctl.running.state.connections.flush()
    const [relayed] = await connections(net.id)
    expect(relayed).toMatchObject({path: 'relay', latencyMs: 29.5, endpoints: {a: null, b: null}})

    // a's WireGuard goes direct first (b still says relay): the pair is direct.
    report(wsA, [
      {id: b.node.id, online: true, endpoint: '198.51.100.20:51820', path: 'direct', latencyMs: 4},
    ])
    const upgraded = await changed((e) => e.a.id === lo && e.to === 'direct')
    expect(upgraded).toMatchObject({from: 'relay', to: 'direct', latencyMs: 4})
    const [direct] = await connections(net.id, b.node.id)
    expect(direct).toMatchObject({path: 'direct', latencyMs: 4, since: upgraded.at})
    expect(lo === a.node.id ? direct!.endpoints.a : direct!.endpoints.b).toBe('198.51.100.20:51820')

    expect((await log(net.id)).map((e) => e.event)).toEqual(['upgraded_to_direct', 'connected'])
  })

  it('writes nothing for reports that repeat the path with jittering latency', async () => {
    const wsA = sockets.find((s) => s !== events)!
    writes = []
    for (const ms of [4.5, 6, 3.2, 7.9, 5, 4, 8.1, 3.9]) {
      report(wsA, [
        {id: b.node.id, online: true, endpoint: '198.51.100.20:51820', path: 'direct', latencyMs: ms},
      ])
    }
    // A change of another pair after them: once it is written, the reports before it were merged.
    report(wsA, [
      {id: c.node.id, online: true, endpoint: '198.51.100.30:51820', path: 'direct', latencyMs: 12},
    ])
    await changed((e) => [e.a.id, e.b.id].includes(c.node.id) && e.to === 'direct')
    const touchedAB = writes.filter((w) => w.nodeA === lo && w.nodeB === hi)
    expect(touchedAB).toEqual([])
    expect((await log(net.id, `?node=${b.node.id}`)).map((e) => e.event)).toEqual([
      'upgraded_to_direct',
      'connected',
    ])
    // A latency change that matters is written, without a log entry or an event.
    report(wsA, [
      {id: b.node.id, online: true, endpoint: '198.51.100.20:51820', path: 'direct', latencyMs: 40},
    ])
    await ctl.running.state.connections.flush()
    await expect.poll(async () => (await connections(net.id, b.node.id))[0]?.latencyMs).toBe(40)
    expect((await log(net.id, `?node=${b.node.id}`)).length).toBe(2)
  })

  it('logs a fall-back to the relay and a disconnect, newest first, and lists only connected pairs', async () => {
    const [wsA, wsB] = sockets.filter((s) => s !== events)
    report(wsA!, [{id: b.node.id, online: true, endpoint: '127.0.0.1:40001', path: 'relay', latencyMs: 33}])
    report(wsB!, [{id: a.node.id, online: true, endpoint: '127.0.0.1:40002', path: 'relay', latencyMs: 35}])
    expect(await changed((e) => e.a.id === lo && e.to === 'relay')).toMatchObject({
      from: 'direct',
      latencyMs: 33,
    })
    // b's session closes: a's view alone decides, and a still sees the relay working.
    await wsB!.close()
    const tracker = ctl.running.state.connections
    await tracker.flush()
    const held = tracker.pairsHeld(net.id)
    report(wsA!, [{id: b.node.id, online: false, endpoint: null, path: 'none'}])
    expect(await changed((e) => e.a.id === lo && e.to === 'none')).toMatchObject({
      from: 'relay',
      latencyMs: null,
    })
    // Down on both sides with no row left: the flush that wrote it let the pair go from memory.
    expect(tracker.pairsHeld(net.id)).toBe(held - 1)
    expect((await connections(net.id)).map((p) => [p.a.id, p.b.id].sort())).toEqual([
      [a.node.id, c.node.id].sort(),
    ])
    const entries = await log(net.id, `?node=${b.node.id}&limit=3`)
    expect(entries.map((e) => e.event)).toEqual(['disconnected', 'fell_back_to_relay', 'upgraded_to_direct'])
    expect(entries[0]!.id).toBeGreaterThan(entries[1]!.id)
  })

  it('starts from the stored pairs after a restart: the same report logs nothing new', async () => {
    const before = await log(net.id)
    await Promise.all(sockets.splice(0).map((s) => s.close()))
    await ctl.close()
    await start()
    const wsA = await session(a.credential)
    writes = []
    report(
      wsA,
      [{id: c.node.id, online: true, endpoint: '198.51.100.30:51820', path: 'direct', latencyMs: 12}],
      true,
    )
    const hub = ctl.running.server.netmap
    await expect.poll(() => hub.peerLinks(net.id, a.node.id).get(c.node.id)?.path).toBe('direct')
    await ctl.running.state.connections.flush()
    expect(writes).toEqual([])
    expect(await log(net.id)).toEqual(before)
    expect(await connections(net.id, c.node.id)).toHaveLength(1)
  })
})
