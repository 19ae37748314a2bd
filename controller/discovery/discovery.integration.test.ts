// DiscoveryServer on real UDP sockets on loopback: a flood from one source is limited while a
// node on another source address is still observed, and hostile datagrams of any size never
// stop the server. The clock is frozen, so the flood's budget is exactly its burst.
import dgram from 'node:dgram'
import {generateKeyPairSync} from 'node:crypto'
import {afterEach, describe, expect, it} from 'vitest'
import {buildInitiation, tai64nFromUnixMs, x25519KeyPairFromPrivate} from './noise.js'
import {DiscoveryServer, type DiscoveryObservation} from './server.js'

const privateKey = (): string => {
  const jwk = generateKeyPairSync('x25519').privateKey.export({format: 'jwk'})
  return Buffer.from(jwk.d!, 'base64url').toString('base64')
}

const T0 = 1_800_000_000_000
const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function socketOn(type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type)
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject)
    s.bind(0, address, () => resolve())
  })
  cleanups.push(() => new Promise<void>((r) => s.close(() => r())))
  return s
}

const send = (s: dgram.Socket, msg: Buffer, port: number, address: string): Promise<void> =>
  new Promise((resolve, reject) => s.send(msg, port, address, (err) => (err ? reject(err) : resolve())))

/** The server, plus an event per handled datagram so the test can pace a flood without sleeps. */
class CountingServer extends DiscoveryServer {
  handled = 0
  #waiters: (() => void)[] = []
  override handleDatagram(msg: Buffer, from: {address: string; port: number}): void {
    super.handleDatagram(msg, from)
    this.handled++
    for (const w of this.#waiters.splice(0)) w()
  }
  /** Resolves once `n` datagrams were handled; fails after a bounded wait. */
  handledCount(n: number, timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`handled ${this.handled} of ${n} datagrams`)), timeoutMs)
      const check = (): void => {
        if (this.handled >= n) {
          clearTimeout(t)
          resolve()
        } else this.#waiters.push(check)
      }
      check()
    })
  }
}

async function startServer(host: string, burst: number) {
  const nodePrivate = privateKey()
  const nodePublic = x25519KeyPairFromPrivate(nodePrivate).publicKey.toString('base64')
  const observed: DiscoveryObservation[] = []
  const waiters: (() => void)[] = []
  const server = new CountingServer({
    host,
    port: 0,
    privateKey: privateKey(),
    lookupNode: (k) => (k === nodePublic ? {nodeId: 'node-a'} : undefined),
    onObserved: (o) => {
      observed.push(o)
      for (const w of waiters.splice(0)) w()
    },
    now: () => T0,
    limits: {perSourceBurst: burst, perSourceRate: 1},
  })
  const {port} = await server.listen()
  cleanups.push(() => server.close())
  /** Resolves at the n-th observation; fails after a bounded wait. */
  const observedCount = (n: number, timeoutMs = 5_000): Promise<DiscoveryObservation[]> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`only ${observed.length} observations: ${JSON.stringify(server.stats())}`)),
        timeoutMs,
      )
      const check = (): void => {
        if (observed.length >= n) {
          clearTimeout(t)
          resolve(observed)
        } else waiters.push(check)
      }
      check()
    })
  const initiation = (ms = T0): Buffer =>
    buildInitiation({
      responderPublic: server.publicKey,
      initiatorPrivate: nodePrivate,
      ephemeralPrivate: privateKey(),
      senderIndex: 1,
      timestamp: tai64nFromUnixMs(ms),
    })
  return {server, port, nodePublic, initiation, observedCount}
}

const junk = (): Buffer => {
  const b = Buffer.alloc(148)
  for (let i = 4; i < 148; i++) b[i] = (Math.random() * 256) | 0
  b.writeUInt32LE(1, 0)
  return b
}

describe('DiscoveryServer on real UDP', () => {
  it('limits a flood from one source while a node on another source is observed', async () => {
    const burst = 10
    const t = await startServer('127.0.0.1', burst)
    const flooder = await socketOn('udp4', '127.0.0.1')
    const node = await socketOn('udp4', '127.0.0.2')
    // Batches of 50 keep the flood inside the socket's kernel buffer, so every datagram reaches
    // the server's own checks (what a volumetric flood does to the kernel buffer is not ours).
    let sent = 0
    for (let batch = 0; batch < 12; batch++) {
      for (let i = 0; i < 50; i++, sent++) await send(flooder, junk(), t.port, '127.0.0.1')
      if (batch === 6) {
        await send(node, t.initiation(), t.port, '127.0.0.1')
        sent++
      }
      await t.server.handledCount(sent)
    }
    const [o] = await t.observedCount(1)
    expect(o).toEqual({
      nodeId: 'node-a',
      publicKey: t.nodePublic,
      endpoint: `127.0.0.2:${node.address().port}`,
      at: T0,
    })
    const s = t.server.stats()
    expect(s.received).toBe(601)
    expect(s.dropped.mac1).toBe(burst) // the frozen clock never refills the flooder's bucket
    expect(s.dropped.rate).toBe(600 - burst)
    expect(s.work).toEqual({mac1Checks: burst + 1, dh: 2})
  })

  it('survives datagrams of every size and garbage types, and still observes after them', async () => {
    const t = await startServer('127.0.0.1', 1_000)
    const evil = await socketOn('udp4', '127.0.0.1')
    const sizes = [0, 1, 3, 4, 147, 149, 1_500, 65_507]
    for (const n of sizes) await send(evil, Buffer.alloc(n, 0xff), t.port, '127.0.0.1')
    const wrongType = junk()
    wrongType.writeUInt32LE(4, 0)
    await send(evil, wrongType, t.port, '127.0.0.1')
    await send(evil, t.initiation(), t.port, '127.0.0.1')
    await t.observedCount(1)
    expect(t.server.stats()).toMatchObject({
      received: sizes.length + 2,
      observed: 1,
      dropped: {size: sizes.length, type: 1},
    })
  })

  it('observes over IPv6 with a bracketed endpoint', async () => {
    const t = await startServer('::1', 10)
    const node = await socketOn('udp6', '::1')
    await send(node, t.initiation(), t.port, '::1')
    const [o] = await t.observedCount(1)
    expect(o!.endpoint).toBe(`[::1]:${node.address().port}`)
  })

  it('refuses to listen twice and reports a port in use', async () => {
    const t = await startServer('127.0.0.1', 10)
    await expect(t.server.listen()).rejects.toThrow(/already listening/)
    const other = new DiscoveryServer({
      host: '127.0.0.1',
      port: t.port,
      privateKey: privateKey(),
      lookupNode: () => undefined,
      onObserved: () => undefined,
    })
    await expect(other.listen()).rejects.toMatchObject({code: 'EADDRINUSE'})
    await other.close()
  })
})
