import {createSocket, type RemoteInfo, type Socket} from 'node:dgram'
import {once} from 'node:events'
import {afterEach, describe, expect, it} from 'vitest'
import type {AddressInfo} from 'node:net'
import {WebSocketServer} from 'ws'
import {connectRelay, startTestRelay, type TestRelay} from '../../controller/relay/testing/harness.js'
import {decodeRelayFrame, RELAY_BATCH_HEADER, RELAY_CLOSE} from '../../shared/relay/frame.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {backoffDelay, PARK, reconnectDelay, RelayClient, type RelayClientOptions} from './client.js'
import {PACE, type ShimClock} from './shim.js'

const CREDS = {
  'cred-a': {nodeId: 'nd_a', networkId: 'n1'},
  'cred-b': {nodeId: 'nd_b', networkId: 'n1'},
  'cred-c': {nodeId: 'nd_c', networkId: 'n1'},
}

/** A plain UDP socket standing in for a WireGuard listen port; queues what it receives. */
interface FakeWireGuard {
  readonly socket: Socket
  readonly port: number
  readonly got: {data: string; from: number}[]
  /** Resolves once `n` datagrams (in total) have arrived. */
  count(n: number): Promise<void>
  sendTo(port: number, data: string): void
}

async function fakeWireGuard(): Promise<FakeWireGuard> {
  const socket = createSocket('udp4')
  sockets.push(socket)
  socket.bind(0, '127.0.0.1')
  await once(socket, 'listening')
  const got: {data: string; from: number}[] = []
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    got.push({data: msg.toString(), from: rinfo.port})
    socket.emit('got')
  })
  return {
    socket,
    port: socket.address().port,
    got,
    count: async (n) => {
      while (got.length < n) await once(socket, 'got')
    },
    sendTo: (port, data) => socket.send(data, port, '127.0.0.1'),
  }
}

/** Timers that run only when the test advances time. */
class ManualClock implements ShimClock {
  private t = 0
  private timers = new Map<number, {at: number; fn: () => void}>()
  private next = 1
  now = () => this.t
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.next++
    this.timers.set(id, {at: this.t + ms, fn})
    return id
  }
  clearTimeout = (id: unknown) => void this.timers.delete(id as number)
  advance(ms: number): void {
    this.t += ms
    for (;;) {
      const due = [...this.timers].filter(([, v]) => v.at <= this.t).sort((x, y) => x[1].at - y[1].at)[0]
      if (!due) return
      this.timers.delete(due[0])
      due[1].fn()
    }
  }
}

let env: TestRelay | undefined
const sockets: Socket[] = []
const relayClients: RelayClient[] = []

afterEach(async () => {
  await Promise.all(relayClients.splice(0).map((c) => c.close()))
  for (const s of sockets.splice(0)) s.close()
  await env?.close()
  env = undefined
})

function client(credential: string, wg: FakeWireGuard, opts: Partial<RelayClientOptions> = {}): RelayClient {
  const c = new RelayClient({controller: env!.base, credential, wireGuardPort: wg.port, ...opts})
  relayClients.push(c)
  return c
}

/** Two nodes of one network, each with its relay client, fake WireGuard port and shim for the other. */
async function pair(opts: Partial<RelayClientOptions> = {}) {
  env ??= await startTestRelay(CREDS)
  const wgA = await fakeWireGuard()
  const wgB = await fakeWireGuard()
  const a = client('cred-a', wgA, opts)
  const b = client('cred-b', wgB, opts)
  await Promise.all([a.whenOpen(), b.whenOpen()])
  const shimAB = await a.shimFor('nd_b') // A's endpoint for peer B
  const shimBA = await b.shimFor('nd_a')
  return {a, b, wgA, wgB, shimAB, shimBA}
}

describe('relay client and peer shims', () => {
  it("a datagram WireGuard sends to A's shim for B arrives at B's WireGuard from B's shim for A, and back", async () => {
    const {wgA, wgB, shimAB, shimBA, a, b} = await pair()
    expect(shimAB.endpoint).toBe(`127.0.0.1:${shimAB.port}`)
    wgA.sendTo(shimAB.port, 'handshake initiation')
    await wgB.count(1)
    expect(wgB.got[0]).toEqual({data: 'handshake initiation', from: shimBA.port})
    wgB.sendTo(shimBA.port, 'handshake response')
    await wgA.count(1)
    expect(wgA.got[0]).toEqual({data: 'handshake response', from: shimAB.port})
    // A burst keeps its order.
    for (let i = 0; i < 100; i++) wgA.sendTo(shimAB.port, `data ${i}`)
    await wgB.count(101)
    expect(wgB.got.slice(1).map((g) => g.data)).toEqual(Array.from({length: 100}, (_, i) => `data ${i}`))
    expect(a.stats('nd_b')).toMatchObject({toRelayPackets: 101, toWireGuardPackets: 1})
    expect(b.stats('nd_a')).toMatchObject({toRelayPackets: 1, toWireGuardPackets: 101})
    // shimFor is stable until release.
    expect((await a.shimFor('nd_b')).port).toBe(shimAB.port)
  })

  it('a burst from WireGuard leaves in batches and arrives whole and in order', async () => {
    env = await startTestRelay(CREDS)
    const wgA = await fakeWireGuard()
    const a = client('cred-a', wgA)
    await a.whenOpen()
    const b = await connectRelay(env.url, 'cred-b', {batch: true})
    const shim = await a.shimFor('nd_b')
    // 300 datagrams land in the shim's socket before the loop reads it: read 32 at a time.
    for (let i = 0; i < 300; i++) wgA.sendTo(shim.port, `data ${i}`)
    await b.count(300)
    expect(b.frames.map((f) => f.payload.toString())).toEqual(
      Array.from({length: 300}, (_, i) => `data ${i}`),
    )
    expect(b.frames.every((f) => f.peerId === 'nd_a')).toBe(true)
    expect(b.messageTypes.length).toBeLessThan(300)
    expect(b.messageTypes).toContain(2)
    expect(a.stats('nd_b')).toMatchObject({toRelayPackets: 300})
    // And a batch from the relay reaches WireGuard packet by packet, in order.
    b.sendBatch('nd_a', ['back 1', 'back 2', 'back 3'])
    await wgA.count(3)
    expect(wgA.got.map((g) => [g.data, g.from])).toEqual([
      ['back 1', shim.port],
      ['back 2', shim.port],
      ['back 3', shim.port],
    ])
    await b.close()
  })

  it('to a relay that does not announce batches, the client sends one data frame per packet', async () => {
    const wss = new WebSocketServer({port: 0, host: '127.0.0.1'})
    await once(wss, 'listening')
    const seen: {peerId: string; data: string}[] = []
    const headers: (string | undefined)[] = []
    wss.on('connection', (ws, req) => {
      headers.push(req.headers[RELAY_BATCH_HEADER] as string | undefined)
      ws.on('message', (data) => {
        const f = decodeRelayFrame(data as Buffer)
        seen.push({peerId: f.peerId, data: f.payload.toString()})
        wss.emit('seen')
      })
    })
    try {
      const wg = await fakeWireGuard()
      const {port} = wss.address() as AddressInfo
      const c = new RelayClient({
        controller: `http://127.0.0.1:${port}`,
        credential: 'x',
        wireGuardPort: wg.port,
      })
      relayClients.push(c)
      await c.whenOpen()
      const shim = await c.shimFor('nd_b')
      for (let i = 0; i < 100; i++) wg.sendTo(shim.port, `p ${i}`)
      while (seen.length < 100) await once(wss, 'seen')
      expect(seen).toEqual(Array.from({length: 100}, (_, i) => ({peerId: 'nd_b', data: `p ${i}`})))
      expect(headers).toEqual(['1'])
      await c.close()
    } finally {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
    }
  })

  it("datagrams to a shim from anything but WireGuard's port are dropped", async () => {
    const {a, wgA, wgB, shimAB} = await pair()
    const intruder = await fakeWireGuard()
    const dropped = once(a, 'drop')
    intruder.sendTo(shimAB.port, 'not from wireguard')
    expect(await dropped).toEqual([{peerId: 'nd_b', reason: 'foreign_source'}])
    wgA.sendTo(shimAB.port, 'from wireguard')
    await wgB.count(1)
    expect(wgB.got.map((g) => g.data)).toEqual(['from wireguard'])
    expect(a.stats('nd_b')!.dropped.foreign_source).toBe(1)
  })

  it('hold buffers relayed packets and releases them in order on deliver; drop discards them', async () => {
    const {b, wgA, wgB, shimAB} = await pair()
    b.setMode('nd_a', 'hold')
    const held = new Promise<void>((resolve) => b.on('held', (_p, n) => n === 5 && resolve()))
    for (let i = 0; i < 5; i++) wgA.sendTo(shimAB.port, `held ${i}`)
    await held
    expect(wgB.got).toEqual([])
    expect(b.stats('nd_a')!.held).toBe(5)
    b.setMode('nd_a', 'deliver')
    await wgB.count(5)
    expect(wgB.got.map((g) => g.data)).toEqual(['held 0', 'held 1', 'held 2', 'held 3', 'held 4'])

    b.setMode('nd_a', 'hold')
    const held2 = new Promise<void>((resolve) => b.on('held', (_p, n) => n === 2 && resolve()))
    wgA.sendTo(shimAB.port, 'stale 1')
    wgA.sendTo(shimAB.port, 'stale 2')
    await held2
    b.setMode('nd_a', 'drop')
    expect(b.stats('nd_a')).toMatchObject({held: 0, mode: 'drop'})
    expect(b.stats('nd_a')!.dropped.mode_drop).toBe(2)
    b.setMode('nd_a', 'deliver')
    wgA.sendTo(shimAB.port, 'after')
    await wgB.count(6)
    expect(wgB.got.map((g) => g.data).slice(5)).toEqual(['after'])
  })

  it('a hold keeps at most maxPackets and ends by itself at its time bound', async () => {
    const clock = new ManualClock()
    const {b, wgA, wgB, shimAB} = await pair({clock})
    b.setMode('nd_a', 'hold', {maxPackets: 3, maxMs: 200})
    const overflow = new Promise<void>((resolve) =>
      b.on(
        'drop',
        (d) => d.reason === 'hold_overflow' && b.stats('nd_a')!.dropped.hold_overflow === 2 && resolve(),
      ),
    )
    for (let i = 0; i < 5; i++) wgA.sendTo(shimAB.port, `p ${i}`)
    await overflow
    clock.advance(199)
    expect(b.stats('nd_a')).toMatchObject({mode: 'hold', held: 3})
    clock.advance(1)
    await wgB.count(3)
    expect(wgB.got.map((g) => g.data)).toEqual(['p 0', 'p 1', 'p 2'])
    expect(b.stats('nd_a')!.mode).toBe('deliver')

    b.setMode('nd_a', 'hold', {maxMs: 50, then: 'drop'})
    const held = new Promise<void>((resolve) => b.on('held', () => resolve()))
    wgA.sendTo(shimAB.port, 'dropped at the bound')
    await held
    clock.advance(50)
    expect(b.stats('nd_a')).toMatchObject({mode: 'drop', held: 0})
  })

  // The next three count the time-based pace (wireGuardQueue: false); with a view of WireGuard's
  // socket the pace follows what it holds (shim.test.ts).
  it('packets to WireGuard are paced: a burst beyond PACE.burst waits in order for the next millisecond', async () => {
    const clock = new ManualClock()
    env = await startTestRelay(CREDS)
    const wgA = await fakeWireGuard()
    const a = client('cred-a', wgA, {clock, wireGuardQueue: false})
    await a.whenOpen()
    const b = await connectRelay(env.url, 'cred-b', {batch: true})
    await a.shimFor('nd_b')
    // One batch of 210 packets: the shim takes all of them in one turn of the loop.
    const batch = (from: number, n: number) => Array.from({length: n}, (_, i) => `p ${from + i}`)
    b.sendBatch('nd_a', batch(0, 210))
    await wgA.count(PACE.burst)
    expect(a.stats('nd_b')).toMatchObject({toWireGuardPackets: PACE.burst, paced: 210 - PACE.burst})
    // Each millisecond lets PACE.perMs more go: 64 + 64 + 64 + 18.
    clock.advance(1)
    await wgA.count(PACE.burst + PACE.perMs)
    expect(a.stats('nd_b')!.paced).toBe(210 - PACE.burst - PACE.perMs)
    clock.advance(1)
    await wgA.count(PACE.burst + 2 * PACE.perMs)
    clock.advance(1)
    await wgA.count(210)
    expect(wgA.got.map((g) => g.data)).toEqual(batch(0, 210))
    expect(a.stats('nd_b')).toMatchObject({paced: 0, dropped: {wireguard_backlog: 0}})
    await b.close()
  })

  it('packets waiting for WireGuard are bounded by PACE.maxQueued; the excess is dropped and counted', async () => {
    const clock = new ManualClock()
    env = await startTestRelay(CREDS)
    const wgA = await fakeWireGuard()
    const a = client('cred-a', wgA, {clock, wireGuardQueue: false})
    await a.whenOpen()
    const b = await connectRelay(env.url, 'cred-b', {batch: true})
    await a.shimFor('nd_b')
    const over = 12
    const total = PACE.burst + PACE.maxQueued + over
    let backlogDrops = 0
    const dropped = new Promise<void>((resolve) =>
      a.on('drop', (d) => d.reason === 'wireguard_backlog' && ++backlogDrops === over && resolve()),
    )
    for (let sent = 0; sent < total; sent += 200)
      b.sendBatch(
        'nd_a',
        Array.from({length: Math.min(200, total - sent)}, (_, i) => `p ${sent + i}`),
      )
    await dropped
    expect(a.stats('nd_b')).toMatchObject({paced: PACE.maxQueued, dropped: {wireguard_backlog: over}})
    await b.close()
  })

  it("all shims of a client share one pace budget and one bound (WireGuard's socket is one); each peer keeps its order", async () => {
    const clock = new ManualClock()
    env = await startTestRelay(CREDS)
    const wgA = await fakeWireGuard()
    const a = client('cred-a', wgA, {clock, wireGuardQueue: false})
    await a.whenOpen()
    const b = await connectRelay(env.url, 'cred-b', {batch: true})
    const c = await connectRelay(env.url, 'cred-c', {batch: true})
    const fromB = await a.shimFor('nd_b')
    const fromC = await a.shimFor('nd_c')
    const packets = (tag: string, from: number, n: number) =>
      Array.from({length: n}, (_, i) => `${tag} ${from + i}`)
    // c's 100: the budget's 64 go, 36 wait.
    c.sendBatch('nd_a', packets('c', 0, 100))
    await wgA.count(PACE.burst)
    // b's 1000 find the budget spent: they wait too, up to the bound shared with c's 36.
    const over = 100 - PACE.burst + 1000 - PACE.maxQueued
    let drops = 0
    const dropped = new Promise<void>((resolve) =>
      a.on(
        'drop',
        (d) => d.reason === 'wireguard_backlog' && d.peerId === 'nd_b' && ++drops === over && resolve(),
      ),
    )
    for (let i = 0; i < 1000; i += 250) b.sendBatch('nd_a', packets('b', i, 250))
    await dropped
    expect(a.stats('nd_c')!.paced).toBe(100 - PACE.burst)
    expect(a.stats('nd_b')).toMatchObject({paced: 1000 - over, dropped: {wireguard_backlog: over}})
    // A millisecond at a time (the fake WireGuard's socket buffer is the kernel default too).
    for (let ms = 1; ms <= PACE.maxQueued / PACE.perMs; ms++) {
      clock.advance(1)
      await wgA.count(PACE.burst + ms * PACE.perMs)
    }
    const got = (port: number) => wgA.got.filter((g) => g.from === port).map((g) => g.data)
    expect(got(fromC.port)).toEqual(packets('c', 0, 100))
    expect(got(fromB.port)).toEqual(packets('b', 0, 1000 - over))
    expect([a.stats('nd_b')!.paced, a.stats('nd_c')!.paced]).toEqual([0, 0])
    await Promise.all([b.close(), c.close()])
  })

  it('a frame from the relay for a peer without a shim is dropped and reported', async () => {
    const {a, b} = await pair()
    await b.release('nd_a')
    expect(b.stats('nd_a')).toBeUndefined()
    const unknown = once(b, 'unknownPeer')
    // A's shim for B still exists; its frames reach B's client, which has no shim for A now.
    const wgA2 = await fakeWireGuard()
    a.setWireGuardPort(wgA2.port)
    const shim = await a.shimFor('nd_b')
    wgA2.sendTo(shim.port, 'for a released peer')
    expect(await unknown).toEqual(['nd_a'])
    expect(b.dropped.unknown_peer).toBe(1)
  })

  it('a packet for a peer without a shim is parked and reaches WireGuard once WireGuard first sends to that peer', async () => {
    const {b, wgA, wgB, shimAB} = await pair()
    await b.release('nd_a')
    const unknown = once(b, 'unknownPeer')
    wgA.sendTo(shimAB.port, 'initiation before B knows A')
    await unknown
    // B's WireGuard is given peer A (a shim, then `wg set`): nothing yet, WireGuard would drop it.
    const shimBA = await b.shimFor('nd_a')
    expect(wgB.got).toEqual([])
    // B's WireGuard sends to A (its own initiation): the parked packet follows to B's WireGuard.
    wgB.sendTo(shimBA.port, 'own initiation')
    await wgB.count(1)
    expect(wgB.got[0]).toEqual({data: 'initiation before B knows A', from: shimBA.port})
    await wgA.count(1)
    expect(wgA.got.map((g) => g.data)).toEqual(['own initiation'])
  })

  it('parked packets older than PARK.ms are dropped, not handed to WireGuard', async () => {
    const clock = new ManualClock()
    const {b, wgA, wgB, shimAB} = await pair({clock})
    await b.release('nd_a')
    const unknown = once(b, 'unknownPeer')
    wgA.sendTo(shimAB.port, 'stale')
    await unknown
    clock.advance(PARK.ms)
    const shimBA = await b.shimFor('nd_a')
    wgB.sendTo(shimBA.port, 'own initiation')
    await wgA.count(1)
    wgA.sendTo(shimAB.port, 'fresh')
    await wgB.count(1)
    expect(wgB.got.map((g) => g.data)).toEqual(['fresh'])
  })

  it('the client reconnects after the relay drops it, and traffic flows again', async () => {
    const {a, wgA, wgB, shimAB} = await pair({backoff: {minMs: 5, maxMs: 50}})
    const closed = once(a, 'close')
    env!.relay.disconnect('nd_a', {code: 1011, reason: 'test'})
    const [info] = (await closed) as [{code: number; reconnectInMs: number}]
    expect(info.code).toBe(1011)
    expect(info.reconnectInMs).toBeGreaterThanOrEqual(2)
    expect(info.reconnectInMs).toBeLessThanOrEqual(5)
    await a.whenOpen()
    wgA.sendTo(shimAB.port, 'after reconnect')
    await wgB.count(1)
    expect(wgB.got.map((g) => g.data)).toEqual(['after reconnect'])
  })

  it('packets WireGuard sends while the relay socket reconnects wait in the shim and arrive after it, in order', async () => {
    const clock = new FakeClock()
    const {a, wgA, wgB, shimAB} = await pair({clock, backoff: {minMs: 200}, random: () => 0.5})
    const closed = once(a, 'close')
    env!.relay.disconnect('nd_a', {code: 1011, reason: 'test'})
    const [info] = (await closed) as [{reconnectInMs: number}]
    expect(info.reconnectInMs).toBe(150)
    const queued = new Promise<void>((resolve) => {
      const check = () => (a.stats('nd_b')!.queued === 3 ? resolve() : setImmediate(check))
      check()
    })
    for (const d of ['ping 1', 'ping 2', 'ping 3']) wgA.sendTo(shimAB.port, d)
    await queued
    expect(wgB.got).toEqual([])
    const opened = a.whenOpen()
    clock.advance(150)
    await opened
    await wgB.count(3)
    expect(wgB.got.map((g) => g.data)).toEqual(['ping 1', 'ping 2', 'ping 3'])
    expect(a.stats('nd_b')).toMatchObject({queued: 0, dropped: {relay_down: 0, outage_expired: 0}})
  })

  it('a client replaced by another session of its node stops reconnecting', async () => {
    const {a} = await pair()
    const replaced = once(a, 'replaced')
    const other = await connectRelay(env!.url, 'cred-a')
    await replaced
    expect(a.connected).toBe(false)
    expect(env!.relay.isConnected('n1', 'nd_a')).toBe(true)
    await other.close()
  })

  it('an invalid credential is retried with backoff, never crashing', async () => {
    env = await startTestRelay(CREDS)
    const wg = await fakeWireGuard()
    const c = client('cred-wrong', wg, {backoff: {minMs: 1, maxMs: 4}})
    const codes: number[] = []
    await new Promise<void>((resolve) =>
      c.on('close', ({code}) => {
        codes.push(code)
        if (codes.length === 3) resolve()
      }),
    )
    expect(codes).toEqual([
      RELAY_CLOSE.UNAUTHENTICATED,
      RELAY_CLOSE.UNAUTHENTICATED,
      RELAY_CLOSE.UNAUTHENTICATED,
    ])
  })
})

describe('reconnect after a healthy session ends abnormally', () => {
  /** A bare WebSocket server whose side of each connection the test can cut (1006 at the client). */
  async function cuttable() {
    const wss = new WebSocketServer({port: 0, host: '127.0.0.1'})
    await once(wss, 'listening')
    const conns: import('ws').WebSocket[] = []
    wss.on('connection', (ws) => {
      conns.push(ws)
      wss.emit('conn')
    })
    const {port} = wss.address() as AddressInfo
    return {
      wss,
      url: `http://127.0.0.1:${port}`,
      conns,
      /** Resolves when `n` connections (in all) have been accepted. */
      accepted: async (n: number) => {
        while (conns.length < n) await once(wss, 'conn')
      },
      stop: () => {
        for (const ws of wss.clients) ws.terminate()
        wss.close()
      },
    }
  }
  const closes = (c: RelayClient) => {
    const seen: {code: number; reconnectInMs: number | undefined}[] = []
    c.on('close', ({code, reconnectInMs}) => seen.push({code, reconnectInMs}))
    return seen
  }

  it('reconnects within quickJitterMs, and goes on with the backoff when that attempt fails', async () => {
    const server = await cuttable()
    try {
      const clock = new FakeClock()
      const wg = await fakeWireGuard()
      const c = new RelayClient({
        controller: server.url,
        credential: 'x',
        wireGuardPort: wg.port,
        clock,
        random: () => 0.5,
      })
      relayClients.push(c)
      const seen = closes(c)
      await c.whenOpen()
      clock.advance(1000) // healthy: open for healthyMs
      let closed = once(c, 'close')
      server.conns[0]!.terminate() // the relay's process is gone: no close frame
      await closed
      expect(seen).toEqual([{code: 1006, reconnectInMs: 50}])
      clock.advance(50)
      await server.accepted(2)
      await c.whenOpen()
      // The second session is cut before it is healthy: the backoff, from its start.
      clock.advance(999)
      closed = once(c, 'close')
      server.conns[1]!.terminate()
      await closed
      expect(seen[1]).toEqual({code: 1006, reconnectInMs: backoffDelay(0, {}, () => 0.5)})
      // A healthy session again, cut; its quick attempt finds nothing listening: the backoff.
      clock.advance(backoffDelay(0, {}, () => 0.5))
      await server.accepted(3)
      await c.whenOpen()
      clock.advance(5000)
      closed = once(c, 'close')
      server.stop()
      await closed
      expect(seen[2]).toEqual({code: 1006, reconnectInMs: 50})
      closed = once(c, 'close')
      clock.advance(50)
      await closed
      expect(seen[3]).toEqual({code: 1006, reconnectInMs: backoffDelay(0, {}, () => 0.5)})
    } finally {
      server.stop()
    }
  })

  it('keeps the backoff for a healthy session the relay closes with a code (a graceful restart: 1001)', async () => {
    const server = await cuttable()
    try {
      const clock = new FakeClock()
      const wg = await fakeWireGuard()
      const c = new RelayClient({
        controller: server.url,
        credential: 'x',
        wireGuardPort: wg.port,
        clock,
        random: () => 0.5,
      })
      relayClients.push(c)
      const seen = closes(c)
      await c.whenOpen()
      // Healthy, and within the keepalive's 15 s (its pongs do not come on a fake clock).
      clock.advance(10_000)
      const closed = once(c, 'close')
      server.conns[0]!.close(RELAY_CLOSE.SHUTTING_DOWN, 'restarting')
      await closed
      expect(seen).toEqual([{code: RELAY_CLOSE.SHUTTING_DOWN, reconnectInMs: backoffDelay(0, {}, () => 0.5)}])
    } finally {
      server.stop()
    }
  })
})

describe('reconnectDelay', () => {
  const half = () => 0.5
  it.each([
    ['healthy_then_reset', {code: 1006, openForMs: 1000, attempt: 0}, {delayMs: 50, quick: true}],
    ['long_lived_then_reset', {code: 1006, openForMs: 3_600_000, attempt: 0}, {delayMs: 50, quick: true}],
    ['reset_before_healthy', {code: 1006, openForMs: 999, attempt: 0}, {delayMs: 188, quick: false}],
    ['never_opened', {code: 1006, openForMs: undefined, attempt: 2}, {delayMs: 750, quick: false}],
    ['graceful_shutdown', {code: 1001, openForMs: 60_000, attempt: 0}, {delayMs: 188, quick: false}],
    ['server_error', {code: 1011, openForMs: 60_000, attempt: 0}, {delayMs: 188, quick: false}],
  ])('%s', (_name, close, want) => {
    expect(reconnectDelay(close, {}, half)).toEqual(want)
  })

  it('spreads quick attempts uniformly over [0, quickJitterMs)', () => {
    const close = {code: 1006, openForMs: 5000, attempt: 0}
    expect(reconnectDelay(close, {}, () => 0).delayMs).toBe(0)
    expect(reconnectDelay(close, {}, () => 0.999).delayMs).toBe(99)
    expect(reconnectDelay(close, {quickJitterMs: 20, healthyMs: 10}, () => 0.5).delayMs).toBe(10)
  })
})

describe('backoffDelay', () => {
  it('doubles from minMs up to maxMs and takes a random half away', () => {
    const opts = {minMs: 100, maxMs: 1000}
    expect([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, opts, () => 1))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ])
    expect([0, 1, 4].map((n) => backoffDelay(n, opts, () => 0))).toEqual([50, 100, 500])
    expect(backoffDelay(1e6, opts, () => 0.5)).toBe(750)
  })

  it('settles a first attempt that cannot open (nothing listens) as false, and an open one as true', async () => {
    const wg = await fakeWireGuard()
    // A port that was free a moment ago: the connection is refused.
    const probe = createSocket('udp4')
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()))
    const port = (probe.address() as AddressInfo).port
    probe.close()
    const down = new RelayClient({
      controller: `http://127.0.0.1:${port}`,
      credential: 'x',
      wireGuardPort: wg.port,
    })
    relayClients.push(down)
    expect(await down.whenAttemptSettles()).toBe(false)
    const {a} = await pair()
    expect(await a.whenAttemptSettles()).toBe(true)
  })
})
