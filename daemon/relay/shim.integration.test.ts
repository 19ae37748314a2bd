/**
 * A peer shim's outage queue: what WireGuard sends a relayed peer while the relay socket is down
 * waits (bounded in packets, bytes and age, oldest dropped first) and leaves in order when the
 * socket is back. Real UDP on 127.0.0.1; the relay socket is a stub that is down or up as the
 * test says; time is a FakeClock.
 */
import {createSocket, type Socket} from 'node:dgram'
import {once} from 'node:events'
import {afterEach, describe, expect, it} from 'vitest'
import {FakeClock, yieldToPromises} from '../../shared/testing/fake-clock.js'
import {OUTAGE, PeerShim, type OutageOptions, type ShimDropReason} from './shim.js'

const sockets: Socket[] = []
const shims: PeerShim[] = []

afterEach(async () => {
  await Promise.all(shims.splice(0).map((s) => s.close()))
  for (const s of sockets.splice(0)) s.close()
})

/** A shim whose relay socket is a stub (`relay.up`), fed by a UDP socket standing in for WireGuard. */
async function shimWithStubRelay(outage?: OutageOptions) {
  const clock = new FakeClock()
  const wg = createSocket('udp4')
  sockets.push(wg)
  wg.bind(0, '127.0.0.1')
  await once(wg, 'listening')
  const relay = {up: false, batches: [] as string[][]}
  const drops: ShimDropReason[] = []
  const shim = await PeerShim.open('nd_b', {
    wireGuardPort: () => wg.address().port,
    sendPackets: (packets) => {
      if (!relay.up) return 'relay_down'
      relay.batches.push(packets.map((p) => p.toString()))
      return undefined
    },
    clock,
    ...(outage && {outage}),
    onDrop: (reason) => drops.push(reason),
  })
  shims.push(shim)
  const sent = () => relay.batches.flat()
  /** Sends datagrams from "WireGuard" and waits (bounded, no timer) until the shim has taken them. */
  const fromWireGuard = async (...data: string[]): Promise<void> => {
    const before = shim.stats()
    const seen = (st = shim.stats()) =>
      st.queued + st.toRelayPackets + Object.values(st.dropped).reduce((a, b) => a + b, 0)
    for (const d of data) wg.send(d, shim.port, '127.0.0.1')
    for (let i = 0; i < 10_000; i++) {
      // Overflow drops replace queued packets one for one, so count both.
      if (seen() - seen(before) >= data.length) return
      await yieldToPromises()
    }
    throw new Error(`the shim did not take ${data.length} datagrams`)
  }
  return {clock, shim, relay, drops, sent, fromWireGuard}
}

describe('a peer shim while the relay socket is down', () => {
  it('queues what WireGuard sends and sends it first, in order, when the relay is open again', async () => {
    const {shim, relay, sent, fromWireGuard} = await shimWithStubRelay()
    await fromWireGuard('ping 1', 'ping 2')
    await fromWireGuard('handshake')
    expect(shim.stats()).toMatchObject({queued: 3, toRelayPackets: 0, dropped: {relay_down: 0}})
    relay.up = true
    shim.relayOpen()
    expect(sent()).toEqual(['ping 1', 'ping 2', 'handshake'])
    // One batch: the relay pays per batch.
    expect(relay.batches).toHaveLength(1)
    expect(shim.stats()).toMatchObject({queued: 0, toRelayPackets: 3})
    await fromWireGuard('after')
    expect(sent()).toEqual(['ping 1', 'ping 2', 'handshake', 'after'])
  })

  it('keeps the order when new packets come before relayOpen(): the queue goes first', async () => {
    const {shim, relay, sent, fromWireGuard} = await shimWithStubRelay()
    await fromWireGuard('old 1', 'old 2')
    relay.up = true
    await fromWireGuard('new')
    expect(sent()).toEqual(['old 1', 'old 2', 'new'])
    expect(shim.stats().queued).toBe(0)
  })

  it('keeps at most maxPackets, dropping the oldest first, and counts them', async () => {
    const {shim, relay, drops, sent, fromWireGuard} = await shimWithStubRelay({maxPackets: 3})
    await fromWireGuard('p 1', 'p 2', 'p 3', 'p 4', 'p 5')
    expect(shim.stats()).toMatchObject({queued: 3, dropped: {outage_overflow: 2}})
    // Reported as they happen (the datagrams of one read leave as one batch: one report here).
    expect(new Set(drops)).toEqual(new Set(['outage_overflow']))
    relay.up = true
    shim.relayOpen()
    expect(sent()).toEqual(['p 3', 'p 4', 'p 5'])
  })

  it('keeps at most maxBytes, dropping the oldest first', async () => {
    const {shim, relay, sent, fromWireGuard} = await shimWithStubRelay({maxBytes: 25})
    // 10 bytes each: the third pushes the first out (30 > 25).
    await fromWireGuard('aaaaaaaaa1', 'aaaaaaaaa2', 'aaaaaaaaa3')
    expect(shim.stats()).toMatchObject({queued: 2, dropped: {outage_overflow: 1}})
    relay.up = true
    shim.relayOpen()
    expect(sent()).toEqual(['aaaaaaaaa2', 'aaaaaaaaa3'])
  })

  it('drops what waited longer than maxAgeMs and sends the rest', async () => {
    const {clock, shim, relay, sent, fromWireGuard} = await shimWithStubRelay()
    await fromWireGuard('old')
    clock.advance(OUTAGE.maxAgeMs / 2)
    await fromWireGuard('recent')
    clock.advance(OUTAGE.maxAgeMs / 2)
    // 'old' is exactly maxAgeMs old: still sent.
    expect(shim.stats().queued).toBe(2)
    clock.advance(1)
    relay.up = true
    shim.relayOpen()
    expect(sent()).toEqual(['recent'])
    expect(shim.stats()).toMatchObject({queued: 0, dropped: {outage_expired: 1}})
  })

  it('expires old packets as new ones come, so a long outage holds only the last maxAgeMs', async () => {
    const {clock, shim, fromWireGuard} = await shimWithStubRelay()
    for (let i = 0; i < 10; i++) {
      await fromWireGuard(`ping ${i}`)
      clock.advance(OUTAGE.maxAgeMs / 4)
    }
    // Sent at 0, 250, ..., 2250 ms. Each arrival drops what is older than maxAgeMs then: at the
    // last one (2250) the packets of 0..1000 went, those of 1250..2250 wait.
    expect(shim.stats()).toMatchObject({queued: 5, dropped: {outage_expired: 5}})
  })

  it('drops every packet as relay_down when the queue keeps none', async () => {
    const {shim, relay, sent, fromWireGuard} = await shimWithStubRelay({maxPackets: 0})
    await fromWireGuard('p 1', 'p 2')
    expect(shim.stats()).toMatchObject({queued: 0, dropped: {relay_down: 2}})
    relay.up = true
    shim.relayOpen()
    expect(sent()).toEqual([])
  })

  it('sends again, first, what the lost socket carried in its last inflightMs', async () => {
    const {clock, shim, relay, sent, fromWireGuard} = await shimWithStubRelay()
    relay.up = true
    await fromWireGuard('long ago')
    clock.advance(OUTAGE.inflightMs + 50)
    await fromWireGuard('just before')
    clock.advance(20)
    // The socket closed abnormally: 'just before' may have gone nowhere.
    relay.up = false
    shim.relayLost()
    await fromWireGuard('during')
    expect(shim.stats().queued).toBe(2)
    relay.up = true
    shim.relayOpen()
    expect(relay.batches.at(-1)).toEqual(['just before', 'during'])
    expect(sent()).toEqual(['long ago', 'just before', 'just before', 'during'])
  })

  it('after an outage, sends once more what went since, when the peer is first heard from', async () => {
    const {clock, shim, relay, sent, fromWireGuard} = await shimWithStubRelay()
    relay.up = true
    clock.advance(OUTAGE.inflightMs + 1)
    relay.up = false
    shim.relayLost()
    await fromWireGuard('queued')
    clock.advance(100)
    relay.up = true
    shim.relayOpen()
    // The peer's relay socket may not be back yet: these may be dropped at the relay.
    await fromWireGuard('after the reopen')
    clock.advance(OUTAGE.maxAgeMs - 100)
    // Its first packet: the peer is back; what went since the loss goes again, in order, once.
    shim.fromRelay(Buffer.from('reply'))
    expect(sent()).toEqual(['queued', 'after the reopen', 'queued', 'after the reopen'])
    expect(shim.stats()).toMatchObject({resentPackets: 2, toRelayPackets: 2})
    shim.fromRelay(Buffer.from('reply 2'))
    await fromWireGuard('later')
    expect(sent()).toEqual(['queued', 'after the reopen', 'queued', 'after the reopen', 'later'])
  })

  it('does not send again what is older than maxAgeMs when the peer is first heard from', async () => {
    const {clock, shim, relay, sent, fromWireGuard} = await shimWithStubRelay()
    shim.relayLost()
    relay.up = true
    shim.relayOpen()
    await fromWireGuard('old')
    clock.advance(OUTAGE.maxAgeMs / 2)
    await fromWireGuard('recent')
    clock.advance(OUTAGE.maxAgeMs / 2 + 1)
    shim.fromRelay(Buffer.from('reply'))
    expect(sent()).toEqual(['old', 'recent', 'recent'])
  })
})
