// The controller's NAT traversal services, wired into a real controller (HTTP on 127.0.0.1:0,
// UDP on loopback, a real SQLite file): observed endpoints kept apart from reported ones and
// fanned out to peers; STUN, the relay and the discovery port as full netmaps name them.
// The controller's clock is a FakeClock: endpoint coalescing windows end when the test moves it.
import dgram from 'node:dgram'
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {
  NetmapDeltaSchema,
  NetmapFullSchema,
  type NatServices,
  type Peer,
  type Self,
} from '../shared/protocol/netmap.js'
import {RELAY_CLOSE, RELAY_WS_PATH} from '../shared/relay/frame.js'
import {encodeMessage, findAttribute, METHOD_BINDING, tryDecodeMessage} from '../shared/stun/codec.js'
import {buildInitiation, tai64nFromUnixMs, x25519KeyPairFromPrivate} from './discovery/noise.js'
import {connectRelay, type RelayTestClient} from './relay/testing/harness.js'
import {client, publicKey, type Client} from './testing/client.js'
import {startTestController, type TestController} from './testing/test-controller.js'
import {connectWs, type WsClient} from './testing/ws-client.js'
import {FakeClock} from '../shared/testing/fake-clock.js'

type Full = {type: 'full'; version: number; self: Self; peers: Peer[]; nat?: NatServices}
type Delta = {type: 'delta'; version: number; self?: Self; changed?: Peer[]; removed?: string[]}
type Joined = {node: {id: string; name: string}; credential: string; publicKey: string}

let ctl: TestController
let clock: FakeClock
let api: Client
const sockets: WsClient[] = []
const relays: RelayTestClient[] = []
const udp: dgram.Socket[] = []
let seq = 0

beforeAll(async () => {
  // STUN with an RFC 5780 alternate address and port (127.0.0.2 is loopback on Linux);
  // discovery on its default (the --listen host, a free port since the --listen port is 0).
  clock = new FakeClock()
  ctl = await startTestController({stunAlternate: '127.0.0.2:0', clock})
  api = client(ctl.url)
})
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await Promise.all(relays.map((r) => r.close().catch(() => undefined)))
  for (const s of udp) s.close()
  await ctl?.close()
})

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4')
  udp.push(s)
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject)
    s.bind(0, '127.0.0.1', () => resolve())
  })
  return s
}

/** Sends one datagram and waits (bounded) for the first reply. */
async function exchange(s: dgram.Socket, msg: Buffer, port: number, ms = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no UDP reply')), ms)
    s.once('message', (m) => {
      clearTimeout(t)
      resolve(m)
    })
    s.send(msg, port, '127.0.0.1')
  })
}

/** `p`, or a failure after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(t))
}

function x25519Private(): string {
  const jwk = generateKeyPairSync('x25519').privateKey.export({format: 'jwk'})
  return Buffer.from(jwk.d!, 'base64url').toString('base64')
}

async function metric(line: RegExp): Promise<number> {
  const text = (await api.req('GET', '/metrics')).text
  const m = text.split('\n').find((l) => line.test(l))
  return m === undefined ? 0 : Number(m.split(' ').at(-1))
}

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
    await ctl.running.state.telemetry.reportObservedEndpoint({id: b.node.id}, '203.0.113.40:41641')
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
    await ctl.running.state.telemetry.reportObservedEndpoint({id: b.node.id}, '203.0.113.41:50000')
    await deltaFor(wsA, b.node.id, (p) => p.observedEndpoint === '203.0.113.41:50000')
    wsB.ws.send(JSON.stringify({type: 'report', endpoints: ['198.51.100.20:51820']}))
    const peer = await deltaFor(wsA, b.node.id, (p) => p.endpoints.includes('198.51.100.20:51820'))
    expect(peer.observedEndpoint).toBe('203.0.113.41:50000')
    // Inside the endpoint window (2 s) the next report waits for its end; the clock ends it.
    wsB.ws.send(JSON.stringify({type: 'report', endpoints: []}))
    await clock.advanceAsync(2_000)
    const cleared = await deltaFor(wsA, b.node.id, (p) => p.endpoints.length === 0)
    expect(cleared.observedEndpoint).toBe('203.0.113.41:50000')
    expect((await ctl.running.store.getNode(b.node.id))?.observedEndpoint).toBe('203.0.113.41:50000')
  })

  it('tell the node its own mapping: null until one is observed, then the mapping; nothing for one peers could not use', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const {ws: wsA, full} = await open(a.credential)
    const {ws: wsB} = await open(b.credential)
    // null: the controller observed nothing for A's WireGuard port (with discovery offered, A's
    // UDP does not get out).
    expect(full.self.observedEndpoint).toBeNull()
    await ctl.running.state.telemetry.reportObservedEndpoint({id: a.node.id}, '203.0.113.42:41000')
    const own = await wsA.next<Delta>((f) => f.type === 'delta' && f.self !== undefined, 1000)
    expect(NetmapDeltaSchema.safeParse(own).success, JSON.stringify(own)).toBe(true)
    expect(own.self?.observedEndpoint).toBe('203.0.113.42:41000')
    // Loopback (a node beside the controller) says nothing about its UDP: absent, not null.
    await ctl.running.state.telemetry.reportObservedEndpoint({id: b.node.id}, '127.0.0.1:40001')
    const selfB = await wsB.next<Delta>((f) => f.type === 'delta' && f.self !== undefined, 1000)
    expect(selfB.self).toBeDefined()
    expect(selfB.self).not.toHaveProperty('observedEndpoint')
  })

  it('are stored as seen but reach peers only when another node could use them', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const {ws: wsA} = await open(a.credential)
    await ctl.running.state.telemetry.reportObservedEndpoint({id: b.node.id}, '127.0.0.1:40000')
    const peer = await deltaFor(wsA, b.node.id, () => true)
    expect(peer.observedEndpoint).toBeUndefined()
    const shown = await api.req('GET', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})
    expect((shown.body as {observedEndpoint?: string}).observedEndpoint).toBe('127.0.0.1:40000')
  })
})

describe('NAT behaviour', () => {
  // Stored with the node (migration 0009): controller/nat-replicas.integration.test.ts has replicas and restarts.
  const SYM = {mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent'} as const
  const CONE = {mapping: 'endpoint-independent', filtering: 'endpoint-independent'} as const

  it('reaches peers in their peer entry, as a delta when a node reports a new one and not again for the same', async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const {ws: wsA, full} = await open(a.credential)
    expect(full.peers.find((p) => p.id === b.node.id)).not.toHaveProperty('nat')
    const {ws: wsB} = await open(b.credential)
    wsB.ws.send(JSON.stringify({type: 'report', reset: true, nat: SYM}))
    expect((await deltaFor(wsA, b.node.id, (p) => p.nat !== undefined)).nat).toEqual(SYM)
    // The same again (a new session's report) costs peers nothing; a change inside the endpoint
    // window (2 s) waits for its end (a flapping netcheck costs one write per window), then is a delta.
    wsB.ws.send(JSON.stringify({type: 'report', nat: SYM}))
    wsB.ws.send(JSON.stringify({type: 'report', nat: CONE}))
    await clock.advanceAsync(2_000)
    const next = await wsA.next<Delta>(
      (f) => f.type === 'delta' && (f.changed ?? []).some((p) => p.id === b.node.id),
      1000,
    )
    expect(next.changed!.find((p) => p.id === b.node.id)!.nat).toEqual(CONE)
    // A node connecting later has it in its full map.
    const again = await open(a.credential)
    expect(again.full.peers.find((p) => p.id === b.node.id)?.nat).toEqual(CONE)
  })

  it('refuses a report whose NAT behaviour is not one of the RFC 4787 names, and holds nothing for it', async () => {
    const net = await network()
    const a = await join(net.id)
    const {ws: wsA} = await open(a.credential)
    for (const nat of [
      {mapping: 'full-cone', filtering: 'unknown'},
      {...CONE, extra: 'x'.repeat(100)},
      'cone',
    ]) {
      const b = await join(net.id)
      const {ws: wsB} = await open(b.credential)
      wsB.ws.send(JSON.stringify({type: 'report', nat}))
      expect((await within(wsB.closed, 1000, 'the close')).code).toBe(4400)
      expect((await ctl.running.store.getNode(b.node.id))?.nat).toBeUndefined()
    }
    // The others are served as before.
    const c = await join(net.id)
    const {ws: wsC} = await open(c.credential)
    wsC.ws.send(JSON.stringify({type: 'report', nat: SYM}))
    expect((await deltaFor(wsA, c.node.id, (p) => p.nat !== undefined)).nat).toEqual(SYM)
  })
})

describe('NAT services of the controller', () => {
  it('names STUN with its RFC 5780 alternate, the discovery key and port, and the relay in full netmaps', async () => {
    const net = await network()
    const a = await join(net.id)
    const {full} = await open(a.credential)
    const stun = ctl.running.stun!.addresses()
    const discovery = ctl.running.discovery!
    expect(full.nat).toEqual({
      stun: {
        primary: {host: '127.0.0.1', port: stun.primary.port},
        alternate: {host: '127.0.0.2', port: stun.other!.port},
      },
      discovery: {
        publicKey: discovery.publicKey,
        service: {host: '127.0.0.1', port: discovery.address().port},
      },
      relays: [{region: 'default'}],
    })
    expect(stun.other!.port).not.toBe(stun.primary.port)
    expect(stun.all).toHaveLength(4)
  })

  it('answers a STUN Binding request with the mapped address, and counts it in /metrics', async () => {
    const before = await metric(/^mesh_stun_packets_total\{outcome="answered"/)
    const s = await udpSocket()
    const transactionId = randomBytes(12)
    const port = ctl.running.stun!.addresses().primary.port
    const reply = await exchange(
      s,
      encodeMessage({cls: 'request', method: METHOD_BINDING, transactionId, attributes: []}),
      port,
    )
    const decoded = tryDecodeMessage(reply)
    expect(decoded.ok).toBe(true)
    if (!decoded.ok) return
    expect(decoded.message.transactionId.equals(transactionId)).toBe(true)
    expect(findAttribute(decoded.message, 'xor-mapped-address')?.address).toMatchObject({
      address: '127.0.0.1',
      port: s.address().port,
    })
    // Garbage is dropped and counted, and the server keeps answering.
    s.send(Buffer.from('not stun at all'), port, '127.0.0.1')
    await exchange(
      s,
      encodeMessage({cls: 'request', method: METHOD_BINDING, transactionId: randomBytes(12), attributes: []}),
      port,
    )
    expect(await metric(/^mesh_stun_packets_total\{outcome="answered"/)).toBe(before + 2)
    expect(
      await metric(/^mesh_stun_packets_total\{outcome="dropped",reason="malformed"/),
    ).toBeGreaterThanOrEqual(1)
  })

  it("relays a frame between two nodes on /api/v1/relay and closes a removed node's relay socket", async () => {
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const url = `${ctl.url.replace(/^http/, 'ws')}${RELAY_WS_PATH}`
    const ra = await connectRelay(url, a.credential)
    const rb = await connectRelay(url, b.credential)
    relays.push(ra, rb)
    const wait = (r: RelayTestClient) =>
      (async () => {
        for (
          let i = 0;
          i < 200 && !ctl.running.relay.isConnected(net.id, r === ra ? a.node.id : b.node.id);
          i++
        )
          await new Promise((res) => setImmediate(res))
      })()
    await Promise.all([wait(ra), wait(rb)])
    const packet = randomBytes(148)
    ra.send(b.node.id, packet)
    const got = await rb.next(2000)
    expect(got.peerId).toBe(a.node.id)
    expect(Buffer.from(got.payload).equals(packet)).toBe(true)
    expect(await metric(/^mesh_relay_packets_total\{network="/)).toBeGreaterThanOrEqual(1)

    const del = await api.req('DELETE', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})
    expect(del.status, del.text).toBeLessThan(300)
    expect((await within(rb.closed, 2000, 'the relay socket to close')).code).toBe(RELAY_CLOSE.REVOKED)
    // Its credential no longer opens a relay session.
    const again = await connectRelay(url, b.credential)
    relays.push(again)
    expect((await within(again.closed, 2000, 'the refused relay socket to close')).code).toBe(
      RELAY_CLOSE.UNAUTHENTICATED,
    )
  })

  it('answers a plain GET on the relay path with 426 UPGRADE_REQUIRED', async () => {
    const r = await api.req('GET', RELAY_WS_PATH)
    expect(r.status).toBe(426)
    expect((r.body as {error: {code: string}}).error.code).toBe('UPGRADE_REQUIRED')
  })

  it("records the endpoint a registered node's WireGuard initiation came from on the discovery port", async () => {
    const net = await network()
    const nodePrivate = x25519Private()
    const nodePublic = x25519KeyPairFromPrivate(nodePrivate).publicKey.toString('base64')
    const a = await join(net.id)
    const b = await join(net.id, nodePublic)
    const {ws: wsA} = await open(a.credential)
    const before = await metric(/^mesh_discovery_packets_total\{outcome="observed"/)
    const s = await udpSocket()
    const discovery = ctl.running.discovery!
    const initiation = buildInitiation({
      responderPublic: discovery.publicKey,
      initiatorPrivate: nodePrivate,
      ephemeralPrivate: x25519Private(),
      senderIndex: 7,
      timestamp: tai64nFromUnixMs(Date.now()),
    })
    s.send(initiation, discovery.address().port, '127.0.0.1')
    const seen = `127.0.0.1:${s.address().port}`
    // Peers hear of the change within a second (a loopback mapping is no use to them, so the
    // delta carries none: see 'are stored as seen but ...').
    await deltaFor(wsA, b.node.id, () => true, 1000)
    expect((await ctl.running.store.getNode(b.node.id))?.observedEndpoint).toBe(seen)
    const shown = await api.req('GET', `/api/v1/nodes/${b.node.id}`, {token: ctl.adminToken})
    expect((shown.body as {observedEndpoint?: string}).observedEndpoint).toBe(seen)
    expect(await metric(/^mesh_discovery_packets_total\{outcome="observed"/)).toBe(before + 1)
  })
})
