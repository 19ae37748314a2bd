// The STUN server on real loopback UDP sockets: Binding answers, the RFC 5780 alternates
// (127.0.0.2 as the second address: any 127/8 address is local on Linux), and hostile input.
import {randomBytes} from 'node:crypto'
import {afterEach, beforeAll, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {nodeUdpBind, type UdpEndpoint, type UdpSocket} from '../../shared/net/udp.js'
import {
  bindingRequest,
  decodeMessage,
  encodeMessage,
  findAttribute,
  METHOD_BINDING,
  type StunMessage,
} from '../../shared/stun/codec.js'
import {StunServer, type StunPacketOutcome, type StunServerOptions} from './server.js'

const servers: StunServer[] = []
const sockets: UdpSocket[] = []
afterEach(() => {
  for (const s of servers.splice(0)) s.close()
  for (const s of sockets.splice(0)) s.close()
})

/** Starts a server and records each packet outcome, so tests wait on events, not time. */
async function startServer(opts: Omit<StunServerOptions, 'onPacket'>) {
  const outcomes: StunPacketOutcome[] = []
  const waiters: {n: number; resolve: () => void}[] = []
  const server = new StunServer({
    ...opts,
    onPacket: (o) => {
      outcomes.push(o)
      for (const w of waiters.filter((w) => outcomes.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
    },
  })
  servers.push(server)
  const addresses = await server.start()
  const processed = (n: number) =>
    outcomes.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({n, resolve}))
  return {server, addresses, outcomes, processed}
}

/** A client socket that collects every reply it gets. */
async function client(address = '127.0.0.1') {
  const sock = await nodeUdpBind({address, port: 0})
  sockets.push(sock)
  const replies: {msg: StunMessage; from: UdpEndpoint}[] = []
  const waiters = new Map<string, (r: {msg: StunMessage; from: UdpEndpoint}) => void>()
  sock.onMessage((data, from) => {
    const msg = decodeMessage(data)
    const r = {msg, from}
    replies.push(r)
    waiters.get(msg.transactionId.toString('hex'))?.(r)
  })
  /** Sends a request and resolves with its reply (the test's own timeout bounds the wait). */
  const ask = (to: UdpEndpoint, change?: {changeIp: boolean; changePort: boolean}) => {
    const req = bindingRequest(randomBytes(12), change)
    const p = new Promise<{msg: StunMessage; from: UdpEndpoint}>((resolve) =>
      waiters.set(req.transactionId.toString('hex'), resolve),
    )
    sock.send(encodeMessage(req), to)
    return p
  }
  return {sock, ask, replies}
}

let loopback2 = false
beforeAll(async () => {
  try {
    const s = await nodeUdpBind({address: '127.0.0.2', port: 0})
    s.close()
    loopback2 = true
  } catch {
    console.warn('127.0.0.2 cannot be bound here: the alternate-address tests are skipped')
  }
})

describe('StunServer on loopback', () => {
  it('answers a Binding request with the client’s address in XOR-MAPPED-ADDRESS and RESPONSE-ORIGIN', async () => {
    const {addresses, server} = await startServer({
      primary: {address: '127.0.0.1', port: 0},
      software: 'mesh',
    })
    const c = await client()
    const {msg, from} = await c.ask(addresses.primary)
    expect(msg.cls).toBe('success')
    expect(msg.fingerprint).toBe(true)
    expect(findAttribute(msg, 'xor-mapped-address')?.address).toEqual({family: 4, ...c.sock.local})
    expect(findAttribute(msg, 'response-origin')?.address).toEqual({family: 4, ...addresses.primary})
    expect(findAttribute(msg, 'other-address')).toBeUndefined()
    expect(findAttribute(msg, 'software')?.text).toBe('mesh')
    expect(from).toEqual(addresses.primary)
    expect(server.stats()).toMatchObject({received: 1, answered: 1})
  })

  it('answers over IPv6 (::1) with an IPv6 XOR-MAPPED-ADDRESS', async () => {
    const {addresses} = await startServer({primary: {address: '::1', port: 0}})
    const c = await client('::1')
    const {msg} = await c.ask(addresses.primary)
    expect(findAttribute(msg, 'xor-mapped-address')?.address).toEqual({
      family: 6,
      address: '::1',
      port: c.sock.local.port,
    })
  })

  it('with an alternate port only: OTHER-ADDRESS is the second port, change-port is honoured, change-IP gets 420', async () => {
    const {addresses, server} = await startServer({
      primary: {address: '127.0.0.1', port: 0},
      alternate: {port: 0},
    })
    expect(addresses.other?.address).toBe('127.0.0.1')
    expect(addresses.other?.port).not.toBe(addresses.primary.port)
    const c = await client()
    const plain = await c.ask(addresses.primary)
    expect(findAttribute(plain.msg, 'other-address')?.address).toEqual({family: 4, ...addresses.other})
    const port = await c.ask(addresses.primary, {changeIp: false, changePort: true})
    expect(port.from).toEqual(addresses.other)
    expect(findAttribute(port.msg, 'response-origin')?.address).toEqual({family: 4, ...addresses.other})
    const ip = await c.ask(addresses.primary, {changeIp: true, changePort: false})
    expect(ip.msg.cls).toBe('error')
    expect(findAttribute(ip.msg, 'error-code')?.code).toBe(420)
    expect(findAttribute(ip.msg, 'unknown-attributes')?.types).toEqual([0x0003])
    expect(ip.from).toEqual(addresses.primary)
    expect(server.stats()).toMatchObject({received: 3, answered: 2, errorResponses: 1})
  })

  it('with an alternate address and port (127.0.0.2): each CHANGE-REQUEST is answered from the socket it names', async (ctx) => {
    if (!loopback2) return ctx.skip()
    const {addresses} = await startServer({
      primary: {address: '127.0.0.1', port: 0},
      alternate: {address: '127.0.0.2', port: 0},
    })
    const P1 = addresses.primary.port
    const P2 = addresses.other!.port
    expect(addresses.other).toEqual({address: '127.0.0.2', port: P2})
    expect(addresses.all).toHaveLength(4)
    const c = await client()
    const cases = [
      [
        {changeIp: false, changePort: false},
        {address: '127.0.0.1', port: P1},
      ],
      [
        {changeIp: false, changePort: true},
        {address: '127.0.0.1', port: P2},
      ],
      [
        {changeIp: true, changePort: false},
        {address: '127.0.0.2', port: P1},
      ],
      [
        {changeIp: true, changePort: true},
        {address: '127.0.0.2', port: P2},
      ],
    ] as const
    for (const [change, origin] of cases) {
      const {msg, from} = await c.ask(addresses.primary, change)
      expect(from, JSON.stringify(change)).toEqual(origin)
      expect(findAttribute(msg, 'response-origin')?.address).toEqual({family: 4, ...origin})
      expect(findAttribute(msg, 'xor-mapped-address')?.address).toEqual({family: 4, ...c.sock.local})
    }
    // A request that arrives on the alternate address names the primary as its OTHER-ADDRESS.
    const viaOther = await c.ask(addresses.other!)
    expect(findAttribute(viaOther.msg, 'other-address')?.address).toEqual({family: 4, ...addresses.primary})
  })

  it('drops garbage, responses, indications and other methods silently, counts each, and keeps serving', async () => {
    const {addresses, server, processed} = await startServer({primary: {address: '127.0.0.1', port: 0}})
    const attacker = await client()
    const tid = randomBytes(12)
    const hostile = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      randomBytes(548),
      randomBytes(1400),
      Buffer.alloc(0),
      encodeMessage({cls: 'success', method: METHOD_BINDING, transactionId: tid, attributes: []}),
      encodeMessage({cls: 'indication', method: METHOD_BINDING, transactionId: tid, attributes: []}),
      encodeMessage({cls: 'request', method: 0x003, transactionId: tid, attributes: []}),
    ]
    for (const h of hostile) attacker.sock.send(h, addresses.primary)
    await processed(hostile.length)
    const good = await client()
    const {msg} = await good.ask(addresses.primary)
    expect(msg.cls).toBe('success')
    expect(attacker.replies).toHaveLength(0)
    expect(server.stats()).toEqual({
      received: 8,
      answered: 1,
      errorResponses: 0,
      sendFailed: 0,
      dropped: {'rate-limited': 0, malformed: 4, 'not-binding-request': 3},
    })
  })

  it('answers an unknown comprehension-required attribute with 420 UNKNOWN-ATTRIBUTES', async () => {
    const {addresses} = await startServer({primary: {address: '127.0.0.1', port: 0}})
    const c = await client()
    const tid = randomBytes(12)
    const reply = new Promise<StunMessage>((resolve) => c.sock.onMessage((d) => resolve(decodeMessage(d))))
    const req: StunMessage = {
      ...bindingRequest(tid),
      attributes: [{kind: 'opaque', type: 0x0027, value: Buffer.from([0x12, 0x34, 0, 0])}], // RESPONSE-PORT
    }
    c.sock.send(encodeMessage(req), addresses.primary)
    const msg = await reply
    expect(msg.transactionId).toEqual(tid)
    expect(findAttribute(msg, 'error-code')?.code).toBe(420)
    expect(findAttribute(msg, 'unknown-attributes')?.types).toEqual([0x0027])
  })

  it('rate-limits per source address before decoding, without starving other sources', async () => {
    // A frozen clock: no refill during the test, so the count is exact.
    const {addresses, server, processed} = await startServer({
      primary: {address: '127.0.0.1', port: 0},
      rateLimit: {perSecond: 1, burst: 5},
      clock: new FakeClock(),
    })
    const flooder = await client('127.0.0.1')
    const req = encodeMessage(bindingRequest(randomBytes(12)))
    for (let i = 0; i < 50; i++) flooder.sock.send(i % 2 ? req : randomBytes(30), addresses.primary)
    await processed(50)
    expect(server.stats().dropped['rate-limited']).toBe(45)
    // Another source address (127.0.0.2 when it exists) is still served.
    const other = await client(loopback2 ? '127.0.0.2' : '127.0.0.1')
    if (loopback2) expect((await other.ask(addresses.primary)).msg.cls).toBe('success')
    else expect(server.stats().received).toBe(50)
  })

  it('fails with LISTEN_FAILED when a port is taken, leaving none of its sockets open', async () => {
    const {addresses} = await startServer({primary: {address: '127.0.0.1', port: 0}})
    const opened: {sock: UdpSocket; closed: boolean}[] = []
    const second = new StunServer({
      primary: {address: '127.0.0.1', port: 0},
      alternate: {port: addresses.primary.port},
      bind: async (at) => {
        const sock = await nodeUdpBind(at)
        const rec = {sock, closed: false}
        opened.push(rec)
        return {...sock, local: sock.local, close: () => ((rec.closed = true), sock.close())}
      },
    })
    await expect(second.start()).rejects.toMatchObject({code: 'LISTEN_FAILED'})
    // The primary was bound (on a free port) before the alternate failed, and was closed again.
    expect(opened).toHaveLength(1)
    expect(opened[0]!.closed).toBe(true)
  })

  it('refuses an alternate without a specific primary, or of another family, with CONFIG_INVALID', async () => {
    for (const opts of [
      {primary: {address: '0.0.0.0', port: 0}, alternate: {port: 0}},
      {primary: {address: '127.0.0.1', port: 0}, alternate: {address: '::1'}},
      {primary: {address: '127.0.0.1', port: 0}, alternate: {address: '127.0.0.1'}},
      {primary: {address: 'localhost', port: 0}},
    ]) {
      await expect(new StunServer(opts).start()).rejects.toMatchObject({code: 'CONFIG_INVALID'})
    }
  })
})
