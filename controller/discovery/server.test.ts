// DiscoveryServer's datagram path, driven through handleDatagram with an injected clock (no
// socket; discovery.integration.test.ts covers real UDP).
import {generateKeyPairSync} from 'node:crypto'
import {describe, expect, it, vi} from 'vitest'
import {buildInitiation, tai64nFromUnixMs, x25519KeyPairFromPrivate} from './noise.js'
import {
  DiscoveryServer,
  formatEndpoint,
  rateKey,
  type DiscoveryLimits,
  type DiscoveryObservation,
} from './server.js'

const privateKey = (): string => {
  const jwk = generateKeyPairSync('x25519').privateKey.export({format: 'jwk'})
  return Buffer.from(jwk.d!, 'base64url').toString('base64')
}
const T0 = 1_800_000_000_000

function setup(opts: {limits?: Partial<DiscoveryLimits>; known?: boolean} = {}) {
  let now = T0
  const observed: DiscoveryObservation[] = []
  const nodePrivate = privateKey()
  const known = new Map<string, {nodeId: string}>()
  const lookupNode = vi.fn((k: string) => known.get(k))
  const server = new DiscoveryServer({
    host: '127.0.0.1',
    port: 0,
    privateKey: privateKey(),
    lookupNode,
    onObserved: (o) => observed.push(o),
    now: () => now,
    ...(opts.limits && {limits: opts.limits}),
  })
  const initiation = (
    o: {timestampMs?: number; initiatorPrivate?: string; responderPublic?: string} = {},
  ): Buffer =>
    buildInitiation({
      responderPublic: o.responderPublic ?? server.publicKey,
      initiatorPrivate: o.initiatorPrivate ?? nodePrivate,
      ephemeralPrivate: privateKey(),
      senderIndex: 7,
      timestamp: tai64nFromUnixMs(o.timestampMs ?? now),
    })
  const nodePublic = x25519KeyPairFromPrivate(nodePrivate).publicKey.toString('base64')
  if (opts.known !== false) known.set(nodePublic, {nodeId: 'node-1'})
  return {
    server,
    observed,
    lookupNode,
    initiation,
    nodePublic,
    advance: (ms: number) => (now += ms),
  }
}

const junk = (): Buffer => {
  const b = Buffer.alloc(148, 0xab)
  b.writeUInt32LE(1, 0)
  return b
}
const SRC = {address: '203.0.113.9', port: 41641}

describe('DiscoveryServer', () => {
  it("reports a known node's key, id, source endpoint and the injected time", () => {
    const t = setup()
    t.server.handleDatagram(t.initiation(), SRC)
    expect(t.observed).toEqual([
      {nodeId: 'node-1', publicKey: t.nodePublic, endpoint: '203.0.113.9:41641', at: T0},
    ])
    expect(t.server.stats()).toMatchObject({received: 1, observed: 1, work: {mac1Checks: 1, dh: 2}})
  })

  it('brackets IPv6 endpoints and unwraps IPv4-mapped ones from a dual-stack socket', () => {
    const t = setup()
    t.server.handleDatagram(t.initiation(), {address: '2001:db8::7', port: 51820})
    t.advance(5_000)
    t.server.handleDatagram(t.initiation(), {address: '::ffff:198.51.100.20', port: 4500})
    expect(t.observed.map((o) => o.endpoint)).toEqual(['[2001:db8::7]:51820', '198.51.100.20:4500'])
  })

  it('drops datagrams of the wrong size or type, counted, before any crypto', () => {
    const t = setup()
    const msg = t.initiation()
    t.server.handleDatagram(msg.subarray(0, 147), SRC)
    t.server.handleDatagram(Buffer.alloc(1500), SRC)
    const typed = Buffer.from(msg)
    typed[0] = 2
    t.server.handleDatagram(typed, SRC)
    const reserved = Buffer.from(msg)
    reserved[2] = 1
    t.server.handleDatagram(reserved, SRC)
    const s = t.server.stats()
    expect(s).toMatchObject({received: 4, observed: 0, work: {mac1Checks: 0, dh: 0}})
    expect(s.dropped).toMatchObject({size: 2, type: 2})
  })

  it('drops initiations for another key at mac1 without any DH', () => {
    const t = setup()
    t.server.handleDatagram(t.initiation({responderPublic: setup().server.publicKey}), SRC)
    expect(t.server.stats()).toMatchObject({dropped: {mac1: 1}, work: {dh: 0}})
  })

  it('rate-limits each source before mac1, refills with time, and leaves other sources alone', () => {
    const t = setup({limits: {perSourceRate: 10, perSourceBurst: 5}})
    for (let i = 0; i < 50; i++) t.server.handleDatagram(junk(), SRC)
    expect(t.server.stats()).toMatchObject({dropped: {mac1: 5, rate: 45}, work: {mac1Checks: 5}})
    // Another source is served at once.
    t.server.handleDatagram(t.initiation(), {address: '198.51.100.30', port: 9})
    expect(t.observed).toHaveLength(1)
    // 10/s: after 300 ms the flooding source has 3 more.
    t.advance(300)
    for (let i = 0; i < 10; i++) t.server.handleDatagram(junk(), SRC)
    expect(t.server.stats()).toMatchObject({dropped: {mac1: 8, rate: 52}})
  })

  it('shares one bucket per IPv6 /64 and keeps its source table bounded', () => {
    const t = setup({limits: {perSourceRate: 1, perSourceBurst: 2, maxSources: 3}})
    for (let i = 1; i <= 6; i++) t.server.handleDatagram(junk(), {address: `2001:db8:1:2::${i}`, port: 1})
    expect(t.server.stats().dropped).toMatchObject({mac1: 2, rate: 4})
    for (let i = 1; i <= 20; i++) t.server.handleDatagram(junk(), {address: `198.51.100.${i}`, port: 1})
    expect(t.server.stats().tables.sources).toBe(3)
    expect(rateKey('2001:db8:1:2:aaaa::1')).toBe(rateKey('2001:0db8:0001:0002::ffff'))
    expect(rateKey('2001:db8:1:3::1')).not.toBe(rateKey('2001:db8:1:2::1'))
    expect(rateKey('::ffff:1.2.3.4')).toBe('0:0:0:0::/64')
    expect(formatEndpoint('fe80::1%eth0', 5)).toBe('[fe80::1%eth0]:5')
  })

  it('drops a replayed initiation, from any source, before any DH', () => {
    const t = setup()
    const msg = t.initiation()
    t.server.handleDatagram(msg, SRC)
    const dh = t.server.stats().work.dh
    t.advance(1_000)
    t.server.handleDatagram(Buffer.from(msg), {address: '198.51.100.66', port: 666})
    t.server.handleDatagram(Buffer.from(msg), SRC)
    expect(t.observed.map((o) => o.endpoint)).toEqual(['203.0.113.9:41641'])
    expect(t.server.stats()).toMatchObject({dropped: {replay: 2}, work: {dh}})
  })

  it("drops an authentic initiation whose timestamp does not rise above the key's last one", () => {
    const t = setup()
    t.server.handleDatagram(t.initiation({timestampMs: T0}), SRC)
    t.server.handleDatagram(t.initiation({timestampMs: T0}), {address: '198.51.100.66', port: 1})
    t.server.handleDatagram(t.initiation({timestampMs: T0 - 5_000}), {address: '198.51.100.66', port: 2})
    t.server.handleDatagram(t.initiation({timestampMs: T0 + 5_000}), {address: '198.51.100.67', port: 3})
    expect(t.server.stats().dropped['stale-timestamp']).toBe(2)
    expect(t.observed.map((o) => o.endpoint)).toEqual(['203.0.113.9:41641', '198.51.100.67:3'])
  })

  it('drops an unknown key after one DH: the lookup is asked once and the second DH never runs', () => {
    const t = setup({known: false})
    t.server.handleDatagram(t.initiation(), SRC)
    expect(t.lookupNode).toHaveBeenCalledTimes(1)
    expect(t.lookupNode).toHaveBeenCalledWith(t.nodePublic)
    expect(t.server.stats()).toMatchObject({observed: 0, dropped: {'unknown-key': 1}, work: {dh: 1}})
    expect(t.observed).toEqual([])
  })

  it('caps decodes per second over all sources, counted as busy', () => {
    const t = setup({limits: {globalDecodeRate: 2}})
    for (let i = 0; i < 4; i++)
      t.server.handleDatagram(t.initiation(), {address: `198.51.100.${i + 1}`, port: 1})
    expect(t.server.stats()).toMatchObject({observed: 1, dropped: {'stale-timestamp': 1, busy: 2}})
    t.advance(1_000)
    t.server.handleDatagram(t.initiation(), SRC)
    expect(t.observed).toHaveLength(2)
  })

  it('keeps the ephemeral and timestamp tables bounded', () => {
    const t = setup({limits: {maxEphemerals: 2}})
    for (let i = 0; i < 5; i++) {
      t.advance(1_000)
      t.server.handleDatagram(t.initiation(), SRC)
    }
    expect(t.observed).toHaveLength(5)
    expect(t.server.stats().tables).toMatchObject({ephemerals: 2, keys: 1})
  })

  it('counts an observer that throws and goes on serving', () => {
    let calls = 0
    const t = setup()
    const server = new DiscoveryServer({
      host: '127.0.0.1',
      port: 0,
      privateKey: privateKey(),
      lookupNode: () => ({nodeId: 'n'}),
      onObserved: () => {
        calls++
        throw new Error('store down')
      },
    })
    const msg = (ms: number) => t.initiation({responderPublic: server.publicKey, timestampMs: ms})
    server.handleDatagram(msg(T0), SRC)
    server.handleDatagram(msg(T0 + 5_000), SRC)
    expect(calls).toBe(2)
    expect(server.stats()).toMatchObject({observed: 2, observerErrors: 2})
  })
})
