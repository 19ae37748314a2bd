import {once} from 'node:events'
import {connect, type Socket} from 'node:net'
import {afterEach, describe, expect, it} from 'vitest'
import {RELAY_CLOSE, RELAY_MAX_BATCH_BYTES, RELAY_MAX_PAYLOAD} from '../../shared/relay/frame.js'
import type {RelayDrop, RelayDropReason, RelayServer} from './server.js'
import {
  connectRelay,
  metricValue,
  startTestRelay,
  type RelayTestClient,
  type TestRelay,
} from './testing/harness.js'

// Two networks: n1 = {a, b, e, f}, n2 = {c, d}.
const CREDS = {
  'cred-a': {nodeId: 'nd_a', networkId: 'n1'},
  'cred-b': {nodeId: 'nd_b', networkId: 'n1'},
  'cred-e': {nodeId: 'nd_e', networkId: 'n1'},
  'cred-f': {nodeId: 'nd_f', networkId: 'n1'},
  'cred-c': {nodeId: 'nd_c', networkId: 'n2'},
  'cred-d': {nodeId: 'nd_d', networkId: 'n2'},
}

let env: TestRelay | undefined
const clients: RelayTestClient[] = []
const sockets: Socket[] = []

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await env?.close()
  env = undefined
})

async function start(opts: Parameters<typeof startTestRelay>[1] = {}): Promise<TestRelay> {
  env = await startTestRelay(CREDS, opts)
  return env
}

async function join(credential: string | undefined, opts: {batch?: boolean} = {}): Promise<RelayTestClient> {
  const c = await connectRelay(env!.url, credential, opts)
  clients.push(c)
  return c
}

/** Resolves once the relay has counted `n` drops of `reason` (from now on). */
function drops(relay: RelayServer, reason: RelayDropReason, n: number): Promise<RelayDrop[]> {
  const seen: RelayDrop[] = []
  return new Promise((resolve) => {
    const on = (d: RelayDrop) => {
      if (d.reason !== reason) return
      seen.push(d)
      if (seen.length >= n) {
        relay.off('drop', on)
        resolve(seen)
      }
    }
    relay.on('drop', on)
  })
}

const dropped = (network: string, reason: RelayDropReason) =>
  metricValue(env!.relay.metrics.dropped, {network, reason})

/** A raw TCP client that completes the WebSocket handshake and then does what the test says. */
async function rawUpgrade(port: number, credential: string): Promise<Socket> {
  const s = connect(port, '127.0.0.1')
  sockets.push(s)
  await once(s, 'connect')
  s.write(
    'GET /api/v1/relay HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${credential}\r\n\r\n`,
  )
  let head = ''
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(s, 'data')) as [Buffer]
    head += chunk.toString('latin1')
  }
  expect(head.startsWith('HTTP/1.1 101')).toBe(true)
  return s
}

const port = () => Number(new URL(env!.base).port)

describe('relay server', () => {
  it('two nodes of one network exchange packets; each sees the other as the source', async () => {
    await start()
    const a = await join('cred-a')
    const b = await join('cred-b')
    a.send('nd_b', 'ping from a')
    const fb = await b.next()
    expect(fb.peerId).toBe('nd_a')
    expect(fb.payload.toString()).toBe('ping from a')
    b.send('nd_a', Buffer.alloc(RELAY_MAX_PAYLOAD, 9))
    const fa = await a.next()
    expect(fa.peerId).toBe('nd_b')
    expect(fa.payload.equals(Buffer.alloc(RELAY_MAX_PAYLOAD, 9))).toBe(true)
    expect(await metricValue(env!.relay.metrics.packets, {network: 'n1'})).toBe(2)
    expect(await metricValue(env!.relay.metrics.bytes, {network: 'n1'})).toBe(11 + RELAY_MAX_PAYLOAD)
    expect(await metricValue(env!.relay.metrics.connected, {network: 'n1'})).toBe(2)
  })

  it('a node of another network, a forged id or the sender itself gets nothing delivered; each drop is counted', async () => {
    await start()
    const a = await join('cred-a')
    const b = await join('cred-b')
    const c = await join('cred-c')
    const d = await join('cred-d')
    a.send('nd_c', 'to another network')
    a.send('nd_forged', 'to nobody')
    a.send('nd_a', 'to itself')
    c.send('nd_b', 'from another network')
    // Frames of one socket are handled in order: once b has a's marker, all of a's frames
    // before it were decided. Then d -> c and c's first frame must be d's.
    a.send('nd_b', 'marker')
    expect((await b.next()).payload.toString()).toBe('marker')
    d.send('nd_c', 'from d')
    const first = await c.next()
    expect([first.peerId, first.payload.toString()]).toEqual(['nd_d', 'from d'])
    d.send('nd_a', 'n2 to n1')
    c.send('nd_d', 'marker')
    expect((await d.next()).payload.toString()).toBe('marker')
    a.send('nd_b', 'marker 2')
    expect((await b.next()).payload.toString()).toBe('marker 2')
    expect(a.frames).toEqual([])
    expect(b.frames.map((f) => f.payload.toString())).toEqual(['marker', 'marker 2'])
    expect(await dropped('n1', 'foreign')).toBe(1)
    expect(await dropped('n1', 'unknown')).toBe(2)
    expect(await dropped('n2', 'foreign')).toBe(2)
  })

  it('an upgrade without a valid credential is closed with 4401 and the relay keeps serving', async () => {
    let calls = 0
    await start({
      authenticate: async (c) => {
        calls++
        if (c === 'boom') throw new Error('store down')
        return (CREDS as Record<string, {nodeId: string; networkId: string}>)[c]
      },
    })
    for (const cred of [undefined, 'nope', 'boom']) {
      const x = await join(cred)
      expect((await x.closed).code).toBe(RELAY_CLOSE.UNAUTHENTICATED)
    }
    expect(calls).toBe(2) // no credential: authenticate is not called
    expect(env!.relay.connections).toBe(0)
    const a = await join('cred-a')
    const b = await join('cred-b')
    a.send('nd_b', 'still works')
    expect((await b.next()).payload.toString()).toBe('still works')
  })

  it('a new session of a node replaces the old one with 4409 and gets its frames from then on', async () => {
    await start()
    const a = await join('cred-a')
    const b1 = await join('cred-b')
    const b2 = await join('cred-b')
    expect((await b1.closed).code).toBe(RELAY_CLOSE.REPLACED)
    expect(env!.relay.connections).toBe(2)
    a.send('nd_b', 'to the new session')
    expect((await b2.next()).payload.toString()).toBe('to the new session')
    expect(b1.frames).toEqual([])
    expect(await metricValue(env!.relay.metrics.connected, {network: 'n1'})).toBe(2)
  })

  it('a flood from one node is cut to its packet budget while another pair keeps working', async () => {
    let now = 1_000_000
    const {relay} = await start({
      now: () => now,
      limits: {packetsPerSecond: 100, packetBurst: 50},
    })
    const a = await join('cred-a')
    const b = await join('cred-b')
    const e = await join('cred-e')
    const f = await join('cred-f')
    const limited = drops(relay, 'rate', 450)
    for (let i = 0; i < 500; i++) a.send('nd_b', `flood ${i}`)
    // The other pair (same network) is untouched by a's flood.
    for (let i = 0; i < 20; i++) e.send('nd_f', `e ${i}`)
    for (let i = 0; i < 20; i++) f.send('nd_e', `f ${i}`)
    await f.count(20)
    await e.count(20)
    expect(f.frames.map((x) => x.payload.toString())).toEqual(Array.from({length: 20}, (_, i) => `e ${i}`))
    expect((await limited).every((d) => d.nodeId === 'nd_a')).toBe(true)
    e.send('nd_b', 'marker')
    await b.count(51)
    expect(b.frames.slice(0, 50).map((x) => x.payload.toString())).toEqual(
      Array.from({length: 50}, (_, i) => `flood ${i}`),
    )
    expect(b.frames[50]!.peerId).toBe('nd_e')
    expect(await dropped('n1', 'rate')).toBe(450)
    // The budget refills with time: 100 ms buys 10 packets.
    now += 100
    const more = drops(relay, 'rate', 10)
    for (let i = 0; i < 20; i++) a.send('nd_b', `later ${i}`)
    await more
    e.send('nd_b', 'marker 2')
    await b.count(62)
    expect(b.frames.slice(51).map((x) => x.payload.toString())).toEqual([
      ...Array.from({length: 10}, (_, i) => `later ${i}`),
      'marker 2',
    ])
  })

  it('the byte budget limits big packets on its own', async () => {
    const {relay} = await start({now: () => 0, limits: {bytesPerSecond: 1000, byteBurst: 10_000}})
    const a = await join('cred-a')
    const b = await join('cred-b')
    const limited = drops(relay, 'rate', 11)
    // Each frame is 2 + 4 (id) + 1000 bytes: 9 fit in 10,000.
    for (let i = 0; i < 20; i++) a.send('nd_b', Buffer.alloc(1000, i))
    await limited
    a.send('nd_b', 'x') // 7 bytes still fit
    await b.count(10)
    expect(b.frames.map((x) => x.payload.length)).toEqual([...Array(9).fill(1000), 1])
  })

  it('a receiver that does not read gets no backlog beyond the cap; drops are counted and others keep working', async () => {
    const {relay} = await start({limits: {maxBacklogBytes: 64 * 1024}})
    const a = await join('cred-a')
    const e = await join('cred-e')
    const f = await join('cred-f')
    // b completes the handshake and never reads again.
    const b = await rawUpgrade(port(), 'cred-b')
    b.pause()
    const backlog = drops(relay, 'backlog', 1)
    let sent = 0
    let full = false
    void backlog.then(() => (full = true))
    // Bounded: loopback buffers take a few MB; 40 MB is far more than enough.
    while (!full && sent < 20_000) {
      for (let i = 0; i < 200; i++) a.send('nd_b', Buffer.alloc(RELAY_MAX_PAYLOAD, 1))
      sent += 200
      await new Promise((r) => setImmediate(r))
      // a's own client backlog drains into the relay before the next batch.
      while (a.ws.bufferedAmount > 1024 * 1024) await new Promise((r) => setImmediate(r))
    }
    await backlog
    expect(await dropped('n1', 'backlog')).toBeGreaterThan(0)
    e.send('nd_f', 'unaffected')
    expect((await f.next()).payload.toString()).toBe('unaffected')
  })

  it('malformed frames are dropped and counted without a close; the sender stays usable', async () => {
    const {relay} = await start()
    const a = await join('cred-a')
    const b = await join('cred-b')
    const bad = drops(relay, 'malformed', 7)
    a.sendRaw(Buffer.from([]))
    a.sendRaw(Buffer.from([2, 4, 0x6e, 0x64, 0x5f, 0x62, 0]))
    a.sendRaw(Buffer.from([1, 0, 0]))
    a.sendRaw(Buffer.from([1, 200, 0x61, 0]))
    a.sendRaw(Buffer.from([1, 4, 0x6e, 0x64, 0x5f, 0x62])) // no payload
    a.sendRaw(Buffer.from([1, 4, 0x6e, 0x00, 0x5f, 0x62, 1])) // control byte in the id
    a.sendRaw('{"text": "frame"}', false)
    await bad
    a.send('nd_b', 'after the garbage')
    expect((await b.next()).payload.toString()).toBe('after the garbage')
    expect(b.frames).toHaveLength(1)
    expect(await dropped('n1', 'malformed')).toBe(7)
  })

  it('an oversize message or broken WebSocket framing closes only that socket', async () => {
    await start()
    const a = await join('cred-a')
    const b = await join('cred-b')
    const e = await join('cred-e')
    // Over the largest message of the protocol (a full batch); a data frame over maxPayload but
    // within that is only dropped as malformed.
    e.sendRaw(Buffer.concat([Buffer.from([2, 4]), Buffer.from('nd_b'), Buffer.alloc(RELAY_MAX_BATCH_BYTES)]))
    expect((await e.closed).code).toBe(1009)
    // Raw garbage in place of WebSocket framing (an unmasked client frame, then junk).
    const raw = await rawUpgrade(port(), 'cred-f')
    const rawClosed = once(raw, 'close')
    raw.write(Buffer.from([0x82, 0x05, 1, 2, 3, 4, 5, 0xff, 0xff, 0xff]))
    await rawClosed
    // A bad upgrade (no Sec-WebSocket-Key) is refused, not crashed on.
    const s = connect(port(), '127.0.0.1')
    sockets.push(s)
    await once(s, 'connect')
    s.write(
      'GET /api/v1/relay HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer cred-c\r\n\r\n',
    )
    const [reply] = (await once(s, 'data')) as [Buffer]
    expect(reply.toString('latin1')).toMatch(/^HTTP\/1\.1 400/)
    a.send('nd_b', 'still here')
    expect((await b.next()).payload.toString()).toBe('still here')
    expect(env!.relay.connections).toBe(2)
  })

  it('a batch reaches a node that takes batches as one batch, and any other as one frame per packet, in order', async () => {
    await start()
    const a = await join('cred-a', {batch: true})
    const b = await join('cred-b', {batch: true})
    const e = await join('cred-e')
    expect([a.batchAccepted, b.batchAccepted, e.batchAccepted]).toEqual([true, true, false])
    a.sendBatch('nd_b', ['one', 'two', 'three'])
    a.sendBatch('nd_e', ['four', 'five'])
    a.send('nd_b', 'six')
    await b.count(4)
    await e.count(2)
    expect(b.frames.map((f) => [f.peerId, f.payload.toString()])).toEqual([
      ['nd_a', 'one'],
      ['nd_a', 'two'],
      ['nd_a', 'three'],
      ['nd_a', 'six'],
    ])
    // The batch arrives as a batch ('six' may join it when the relay read both together).
    expect(b.messageTypes[0]).toBe(2)
    expect(b.messageTypes.length).toBeLessThanOrEqual(2)
    expect(e.frames.map((f) => [f.peerId, f.payload.toString()])).toEqual([
      ['nd_a', 'four'],
      ['nd_a', 'five'],
    ])
    expect(e.messageTypes).toEqual([1, 1])
    expect(await metricValue(env!.relay.metrics.packets, {network: 'n1'})).toBe(6)
    expect(await metricValue(env!.relay.metrics.bytes, {network: 'n1'})).toBe(3 + 3 + 5 + 4 + 4 + 3)
  })

  it('packets read together leave together: data frames from a plain node reach a node that takes batches in fewer messages, in order', async () => {
    await start()
    const a = await join('cred-a')
    const b = await join('cred-b', {batch: true})
    const e = await join('cred-e')
    for (let i = 0; i < 50; i++) a.send('nd_b', `p ${i}`)
    for (let i = 0; i < 50; i++) a.send('nd_e', `q ${i}`)
    await b.count(50)
    await e.count(50)
    expect(b.frames.map((f) => [f.peerId, f.payload.toString()])).toEqual(
      Array.from({length: 50}, (_, i) => ['nd_a', `p ${i}`]),
    )
    expect(b.messageTypes.length).toBeLessThan(50)
    // A node that did not announce batches still gets one data frame per packet.
    expect(e.frames.map((f) => f.payload.toString())).toEqual(Array.from({length: 50}, (_, i) => `q ${i}`))
    expect(e.messageTypes).toEqual(Array(50).fill(1))
    expect(await metricValue(env!.relay.metrics.packets, {network: 'n1'})).toBe(100)
  })

  it('a batch to another network, a forged id or itself is dropped whole; every packet is counted', async () => {
    await start()
    const a = await join('cred-a', {batch: true})
    const b = await join('cred-b', {batch: true})
    const c = await join('cred-c', {batch: true})
    a.sendBatch('nd_c', ['x', 'y', 'z'])
    a.sendBatch('nd_forged', ['x', 'y'])
    a.sendBatch('nd_a', ['x'])
    c.sendBatch('nd_b', ['from another network', 'again'])
    a.send('nd_b', 'marker')
    expect((await b.next()).payload.toString()).toBe('marker')
    c.sendBatch('nd_c', ['to itself'])
    c.send('nd_a', 'n2 to n1')
    // c's messages are decided in order: once d has c's marker, all of c's earlier ones were.
    const d = await join('cred-d', {batch: true})
    c.sendBatch('nd_d', ['marker 2'])
    expect((await d.next()).payload.toString()).toBe('marker 2')
    b.sendBatch('nd_a', ['from b'])
    expect((await a.next()).payload.toString()).toBe('from b')
    expect(a.frames).toHaveLength(1)
    expect(b.frames).toHaveLength(1)
    expect(c.frames).toHaveLength(0)
    expect(await dropped('n1', 'foreign')).toBe(3)
    expect(await dropped('n1', 'unknown')).toBe(3)
    expect(await dropped('n2', 'foreign')).toBe(3)
    expect(await dropped('n2', 'unknown')).toBe(1)
  })

  it('the packet budget counts every packet of a batch: the first ones go on, the rest are dropped', async () => {
    const {relay} = await start({now: () => 0, limits: {packetsPerSecond: 1, packetBurst: 5}})
    const a = await join('cred-a', {batch: true})
    const b = await join('cred-b', {batch: true})
    const limited = drops(relay, 'rate', 1)
    a.sendBatch(
      'nd_b',
      Array.from({length: 8}, (_, i) => `p${i}`),
    )
    await b.count(5)
    await limited
    expect(b.frames.map((f) => f.payload.toString())).toEqual(['p0', 'p1', 'p2', 'p3', 'p4'])
    expect(b.messageTypes).toEqual([2])
    expect(await dropped('n1', 'rate')).toBe(3)
    // The budget is spent: the next batch pays its first packet before decoding and is dropped.
    a.sendBatch('nd_b', ['late'])
    await drops(relay, 'rate', 1)
    expect(await dropped('n1', 'rate')).toBe(4)
  })

  it('a batch with one bad entry is dropped whole as malformed', async () => {
    const {relay} = await start()
    const a = await join('cred-a', {batch: true})
    const b = await join('cred-b', {batch: true})
    const bad = drops(relay, 'malformed', 1)
    // Two good entries, then one whose length runs past the end.
    a.sendRaw(Buffer.from([2, 4, 0x6e, 0x64, 0x5f, 0x62, 0, 1, 0x61, 0, 1, 0x62, 0, 9, 0x63]))
    await bad
    a.sendBatch('nd_b', ['after'])
    expect((await b.next()).payload.toString()).toBe('after')
    expect(b.frames).toHaveLength(1)
  })

  it('disconnect() closes a removed node with 4403; close() closes everyone with 1001', async () => {
    await start()
    const a = await join('cred-a')
    const b = await join('cred-b')
    const c = await join('cred-c')
    env!.relay.disconnect('nd_a')
    expect((await a.closed).code).toBe(RELAY_CLOSE.REVOKED)
    b.send('nd_a', 'to a removed node')
    await drops(env!.relay, 'unknown', 1)
    await env!.relay.close()
    expect((await b.closed).code).toBe(RELAY_CLOSE.SHUTTING_DOWN)
    expect((await c.closed).code).toBe(RELAY_CLOSE.SHUTTING_DOWN)
    // After close() the WebSocket server refuses upgrades outright.
    await expect(connectRelay(env!.url, 'cred-d')).rejects.toThrow(/503/)
  })
})
