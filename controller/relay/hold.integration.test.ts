// The relay's hold for expected nodes (controller/relay/server.ts, "Held packets"): packets for a
// node of the sender's network that the controller knows but that has no relay socket yet wait
// for it, bounded in count, bytes and time; nothing is ever held for another network's node or a
// forged id. Real WebSockets on 127.0.0.1; time is a FakeClock (expiry never waits for real).
import {afterEach, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import type {RelayDropReason, RelayLimits} from './server.js'
import {
  connectRelay,
  metricValue,
  startTestRelay,
  type RelayTestClient,
  type TestRelay,
} from './testing/harness.js'

// n1 = {a, b, e}, n2 = {c}. 'cred-b-n2' is an id collision: a node called nd_b in network n2.
const CREDS = {
  'cred-a': {nodeId: 'nd_a', networkId: 'n1'},
  'cred-b': {nodeId: 'nd_b', networkId: 'n1'},
  'cred-e': {nodeId: 'nd_e', networkId: 'n1'},
  'cred-c': {nodeId: 'nd_c', networkId: 'n2'},
  'cred-b-n2': {nodeId: 'nd_b', networkId: 'n2'},
}
/** What the controller knows: the active nodes of each network. */
const MEMBERS: Record<string, readonly string[]> = {n1: ['nd_a', 'nd_b', 'nd_e'], n2: ['nd_c', 'nd_b']}

let env: TestRelay | undefined
const clients: RelayTestClient[] = []

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()))
  await env?.close()
  env = undefined
})

async function start(clock: FakeClock, limits: Partial<RelayLimits> = {}): Promise<TestRelay> {
  env = await startTestRelay(CREDS, {
    clock,
    limits,
    expected: (networkId, nodeId) => MEMBERS[networkId]?.includes(nodeId) ?? false,
  })
  return env
}

async function join(credential: string): Promise<RelayTestClient> {
  const c = await connectRelay(env!.url, credential)
  clients.push(c)
  return c
}

/** Frames of one socket are handled in order: once e has a's marker, a's earlier frames were decided. */
async function settled(a: RelayTestClient, e: RelayTestClient): Promise<void> {
  const n = e.frames.length
  a.send('nd_e', 'marker')
  await e.count(n + 1)
}

const dropped = (network: string, reason: RelayDropReason) =>
  metricValue(env!.relay.metrics.dropped, {network, reason})
const payloads = (c: RelayTestClient) => c.frames.map((f) => `${f.peerId}:${f.payload.toString()}`)

describe('relay hold for expected nodes', () => {
  it('holds packets for a node of the same network until it connects, then delivers them in order', async () => {
    const clock = new FakeClock()
    const {relay} = await start(clock)
    const a = await join('cred-a')
    const e = await join('cred-e')
    a.send('nd_b', 'initiation 1')
    a.sendBatch('nd_b', ['initiation 2', 'data'])
    await settled(a, e)
    expect(relay.holding).toEqual({destinations: 1, packets: 3, bytes: 28})
    clock.advance(900) // within holdMs
    const b = await join('cred-b')
    await b.count(3)
    expect(payloads(b)).toEqual(['nd_a:initiation 1', 'nd_a:initiation 2', 'nd_a:data'])
    expect(relay.holding.packets).toBe(0)
    expect(await metricValue(relay.metrics.held, {network: 'n1'})).toBe(3)
    expect(await metricValue(relay.metrics.packets, {network: 'n1'})).toBe(4) // + the marker
    expect(await dropped('n1', 'unknown')).toBe(0)
    // From then on b is an ordinary connected node.
    a.send('nd_b', 'live')
    await b.count(4)
    expect(payloads(b)[3]).toBe('nd_a:live')
  })

  it('drops and counts held packets that waited longer than holdMs; a late node gets none of them', async () => {
    const clock = new FakeClock()
    const {relay} = await start(clock, {holdMs: 1000})
    const a = await join('cred-a')
    const e = await join('cred-e')
    a.send('nd_b', 'old')
    await settled(a, e)
    clock.advance(600)
    a.send('nd_b', 'newer')
    await settled(a, e)
    clock.advance(400) // 'old' is 1000 ms old, 'newer' 400 ms
    expect(relay.holding.packets).toBe(1)
    expect(await dropped('n1', 'expired')).toBe(1)
    clock.advance(600)
    expect(relay.holding).toEqual({destinations: 0, packets: 0, bytes: 0})
    expect(await dropped('n1', 'expired')).toBe(2)
    expect(clock.pending()).toBe(0) // no timer left behind
    const b = await join('cred-b')
    a.send('nd_b', 'after')
    await b.count(1)
    expect(payloads(b)).toEqual(['nd_a:after'])
  })

  it('bounds what it holds per destination (oldest go first) and over all destinations', async () => {
    const clock = new FakeClock()
    const {relay} = await start(clock, {
      holdPackets: 4,
      holdBytes: 100,
      holdTotalPackets: 6,
      holdTotalBytes: 1000,
    })
    const a = await join('cred-a')
    const e = await join('cred-e')
    // Packet cap: 10 packets, the last 4 stay.
    for (let i = 0; i < 10; i++) a.send('nd_b', `p${i}`)
    await settled(a, e)
    expect(relay.holding).toEqual({destinations: 1, packets: 4, bytes: 8})
    expect(await dropped('n1', 'hold_full')).toBe(6)
    // Byte cap: 40-byte packets push out the oldest until what is held fits in 100 bytes.
    for (let i = 0; i < 3; i++) a.send('nd_b', Buffer.alloc(40, 65 + i))
    await settled(a, e)
    expect(relay.holding).toEqual({destinations: 1, packets: 2, bytes: 80})
    expect(await dropped('n1', 'hold_full')).toBe(6 + 5) // p6..p9 and the first 40-byte one
    // The relay-wide cap (6 packets): another destination gets only what is left of it.
    a.send('nd_c', 'other network: never held') // n2's node: not expected in n1
    MEMBERS.n1 = [...MEMBERS.n1!, 'nd_x']
    try {
      for (let i = 0; i < 5; i++) a.send('nd_x', `x${i}`)
      await settled(a, e)
    } finally {
      MEMBERS.n1 = MEMBERS.n1!.filter((id) => id !== 'nd_x')
    }
    expect(relay.holding).toEqual({destinations: 2, packets: 6, bytes: 80 + 4 * 2})
    expect(await dropped('n1', 'hold_full')).toBe(6 + 5 + 1)
    expect(await dropped('n1', 'unknown')).toBe(1)
    const b = await join('cred-b')
    await b.count(2)
    expect(payloads(b)).toEqual([`nd_a:${'B'.repeat(40)}`, `nd_a:${'C'.repeat(40)}`])
  })

  it('never holds for another network, a forged id or the sender itself, and never hands held packets to a namesake in another network', async () => {
    const clock = new FakeClock()
    const {relay} = await start(clock)
    const a = await join('cred-a')
    const e = await join('cred-e')
    a.send('nd_c', 'to another network')
    a.send('nd_forged', 'to nobody')
    a.send('nd_a', 'to itself')
    await settled(a, e)
    expect(relay.holding.packets).toBe(0)
    expect(await dropped('n1', 'unknown')).toBe(3)
    // c connects later: it gets nothing a sent.
    const c = await join('cred-c')
    // nd_b of n1 has packets held; a node called nd_b in n2 connects: they stay held for n1's.
    a.send('nd_b', 'for n1 nd_b only')
    await settled(a, e)
    expect(relay.holding.packets).toBe(1)
    const b2 = await join('cred-b-n2')
    c.send('nd_b', 'n2 marker')
    await b2.count(1)
    expect(payloads(b2)).toEqual(['nd_c:n2 marker'])
    expect(c.frames).toEqual([])
    expect(relay.holding.packets).toBe(1)
    const b = await join('cred-b')
    await b.count(1)
    expect(payloads(b)).toEqual(['nd_a:for n1 nd_b only'])
  })

  it('drops what it holds for a node that is removed, and on shutdown', async () => {
    const clock = new FakeClock()
    let removed: ((r: {nodeId: string; networkId: string}) => void) | undefined
    env = await startTestRelay(CREDS, {
      clock,
      expected: (networkId, nodeId) => MEMBERS[networkId]?.includes(nodeId) ?? false,
      removals: (fn) => {
        removed = fn
        return () => (removed = undefined)
      },
    })
    const relay = env.relay
    const a = await join('cred-a')
    const e = await join('cred-e')
    a.send('nd_b', 'one')
    a.send('nd_b', 'two')
    await settled(a, e)
    removed!({nodeId: 'nd_b', networkId: 'n1'})
    expect(relay.holding.packets).toBe(0)
    expect(await dropped('n1', 'unknown')).toBe(2)
    a.send('nd_b', 'three')
    await settled(a, e)
    expect(relay.holding.packets).toBe(1)
    await Promise.all(clients.splice(0).map((c) => c.close()))
    await env.close()
    env = undefined
    expect(relay.holding.packets).toBe(0)
    expect(clock.pending()).toBe(0)
  })
})
