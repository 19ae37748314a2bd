// The echo service behind `mesh ping`, on real loopback sockets: round trips, same-size replies,
// hostile packets dropped and counted, the per-source limit, and timeouts on an injected clock.
import dgram from 'node:dgram'
import {afterEach, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {waitFor} from '../testing/harness.js'
import {decodeProbe, encodeProbe, PROBE_REPLY, PROBE_REQUEST, Prober} from './probe.js'

const open: {close(): void}[] = []
afterEach(() => open.splice(0).forEach((s) => s.close()))

async function prober(opts: Partial<Parameters<typeof Prober.start>[0]> = {}): Promise<Prober> {
  const p = await Prober.start({address: '127.0.0.1', port: 0, ...opts})
  open.push(p)
  return p
}

/** A plain dgram socket on 127.0.0.1 that records what it receives. */
async function raw(
  address = '127.0.0.1',
): Promise<{sock: dgram.Socket; port: number; got: {data: Buffer; port: number}[]}> {
  const sock = dgram.createSocket('udp4')
  await new Promise<void>((r) => sock.bind(0, address, r))
  open.push(sock)
  const got: {data: Buffer; port: number}[] = []
  sock.on('message', (data, rinfo) => got.push({data, port: rinfo.port}))
  return {sock, port: sock.address().port, got}
}

const nonce = (n: number) => Buffer.from([0, 0, 0, 0, 0, 0, 0, n])

describe('Prober', () => {
  it('measures the round trip to another prober', async () => {
    const a = await prober()
    const b = await prober()
    const rtt = await a.ping('127.0.0.1', {port: b.local.port, timeoutMs: 2000})
    expect(rtt).not.toBeNull()
    expect(rtt!).toBeGreaterThanOrEqual(0)
    expect(rtt!).toBeLessThan(1000)
    expect(b.stats()).toMatchObject({answered: 1})
    expect(a.stats()).toMatchObject({replies: 1})
  })

  it('answers a request with a reply of the same size carrying the same nonce', async () => {
    const p = await prober()
    const c = await raw()
    c.sock.send(encodeProbe(PROBE_REQUEST, nonce(7)), p.local.port, '127.0.0.1')
    await waitFor('the reply', () => c.got.length === 1)
    expect(c.got[0]!.data.length).toBe(16)
    expect(decodeProbe(c.got[0]!.data)).toEqual({type: PROBE_REPLY, nonce: nonce(7)})
  })

  it('drops malformed packets without answering and keeps serving', async () => {
    const p = await prober()
    const c = await raw()
    const good = encodeProbe(PROBE_REQUEST, nonce(1))
    const bad = [
      Buffer.alloc(0),
      Buffer.alloc(15),
      Buffer.concat([good, Buffer.from([0])]), // one byte longer
      Buffer.alloc(1200, 0x41),
      Buffer.from(good).fill(0x58, 0, 1), // wrong magic
      Buffer.from(good).fill(9, 4, 5), // unknown version
      Buffer.from(good).fill(3, 5, 6), // unknown type
      Buffer.from(good).fill(1, 6, 7), // reserved byte set
    ]
    for (const b of bad) c.sock.send(b, p.local.port, '127.0.0.1')
    c.sock.send(good, p.local.port, '127.0.0.1')
    await waitFor('the reply to the good request', () => c.got.length >= 1)
    await waitFor('every packet handled', () => p.stats().received === bad.length + 1)
    expect(c.got).toHaveLength(1)
    expect(decodeProbe(c.got[0]!.data)?.nonce).toEqual(nonce(1))
    expect(p.stats()).toMatchObject({answered: 1, dropped: {malformed: bad.length, 'rate-limited': 0}})
  })

  it('answers at most the burst from one source until its bucket refills', async () => {
    const clock = new FakeClock()
    const p = await prober({clock, rateLimit: {perSecond: 5, burst: 4}})
    const c = await raw()
    for (let i = 0; i < 10; i++) c.sock.send(encodeProbe(PROBE_REQUEST, nonce(i)), p.local.port, '127.0.0.1')
    await waitFor('every request handled', () => p.stats().received === 10)
    expect(p.stats()).toMatchObject({answered: 4, dropped: {'rate-limited': 6}})
    // Another source address (a peer's mesh address is its own) has its own bucket.
    const other = await raw('127.0.0.2')
    other.sock.send(encodeProbe(PROBE_REQUEST, nonce(99)), p.local.port, '127.0.0.1')
    await waitFor('the other source answered', () => other.got.length === 1)
    // 200 ms at 5/s is one more token for the first source.
    clock.advance(200)
    for (let i = 0; i < 3; i++) c.sock.send(encodeProbe(PROBE_REQUEST, nonce(i)), p.local.port, '127.0.0.1')
    await waitFor('the later requests handled', () => p.stats().received === 14)
    await waitFor('five replies to the first source', () => c.got.length === 5)
    expect(p.stats()).toMatchObject({answered: 6, dropped: {'rate-limited': 8}})
  })

  it('resolves null when no reply comes within the timeout', async () => {
    const clock = new FakeClock()
    const p = await prober({clock})
    const silent = await raw()
    const result = p.ping('127.0.0.1', {port: silent.port, timeoutMs: 1500})
    await waitFor('the request sent', () => silent.got.length === 1)
    clock.advance(1499)
    let settled = false
    void result.then(() => (settled = true))
    await Promise.resolve()
    expect(settled).toBe(false)
    clock.advance(1)
    expect(await result).toBeNull()
  })

  it('ignores a reply from another port than the one pinged, and takes the right one', async () => {
    const p = await prober()
    const peer = await raw()
    const imposter = await raw()
    const result = p.ping('127.0.0.1', {port: peer.port, timeoutMs: 5000})
    await waitFor('the request at the peer', () => peer.got.length === 1)
    const req = decodeProbe(peer.got[0]!.data)!
    expect(req.type).toBe(PROBE_REQUEST)
    imposter.sock.send(encodeProbe(PROBE_REPLY, req.nonce), p.local.port, '127.0.0.1')
    await waitFor('the forged reply handled', () => p.stats().dropped['unexpected-reply'] === 1)
    peer.sock.send(encodeProbe(PROBE_REPLY, req.nonce), p.local.port, '127.0.0.1')
    expect(await result).not.toBeNull()
    expect(p.stats()).toMatchObject({replies: 1, dropped: {'unexpected-reply': 1}})
  })

  it('resolves pings in flight with null when closed', async () => {
    const p = await prober()
    const silent = await raw()
    const result = p.ping('127.0.0.1', {port: silent.port, timeoutMs: 60_000})
    p.close()
    expect(await result).toBeNull()
    expect(await p.ping('127.0.0.1', {port: silent.port})).toBeNull()
  })
})
