import {describe, expect, it} from 'vitest'
import {FakeClock, yieldToPromises} from '../../../shared/testing/fake-clock.js'
import type {UdpEndpoint, UdpSocket} from '../../../shared/net/udp.js'
import {NAT_KINDS, NatLab, type NatConfig} from './natlab.js'

/** A client behind a NAT of `config` and two public servers (two addresses, two ports each). */
async function setup(config: NatConfig) {
  const clock = new FakeClock()
  const lab = new NatLab({clock})
  const pub = lab.publicHost('203.0.113.1', '203.0.113.2')
  const servers = new Map<string, {sock: UdpSocket; seen: UdpEndpoint[]}>()
  for (const address of ['203.0.113.1', '203.0.113.2']) {
    for (const port of [3478, 3479]) {
      const sock = await pub.bind({address, port})
      const seen: UdpEndpoint[] = []
      sock.onMessage((_d, from) => seen.push(from))
      servers.set(`${address}:${port}`, {sock, seen})
    }
  }
  const nat = lab.nat('198.51.100.10', config)
  const client = await nat.host('10.0.0.2').bind({address: '10.0.0.2', port: 5000})
  const got: UdpEndpoint[] = []
  client.onMessage((_d, from) => got.push(from))
  const srv = (k: string) => servers.get(k)!
  /** Client sends to `to`; returns the source the server saw. */
  const out = async (to: string) => {
    const [address, port] = to.split(':')
    client.send(Buffer.from('x'), {address: address!, port: Number(port)})
    await yieldToPromises()
    return srv(to).seen.at(-1)
  }
  /** Server `from` sends to `to`; returns whether the client got it. */
  const back = async (from: string, to: UdpEndpoint) => {
    const before = got.length
    srv(from).sock.send(Buffer.from('y'), to)
    await yieldToPromises()
    return got.length > before
  }
  return {clock, lab, nat, out, back}
}

describe('NatLab', () => {
  it('cone: one mapping for every destination, the local port kept, anyone may answer', async () => {
    const t = await setup(NAT_KINDS.cone)
    const m1 = await t.out('203.0.113.1:3478')
    expect(m1).toEqual({address: '198.51.100.10', port: 5000})
    expect(await t.out('203.0.113.2:3479')).toEqual(m1)
    expect(await t.back('203.0.113.2:3478', m1!)).toBe(true)
  })

  it('address-restricted: answers only from addresses sent to, from any of their ports', async () => {
    const t = await setup(NAT_KINDS['address-restricted'])
    const m1 = (await t.out('203.0.113.1:3478'))!
    expect(await t.back('203.0.113.1:3479', m1)).toBe(true)
    expect(await t.back('203.0.113.2:3478', m1)).toBe(false)
    expect(t.lab.stats.dropped.filtered).toBe(1)
  })

  it('port-restricted: answers only from the exact address and port sent to', async () => {
    const t = await setup(NAT_KINDS['port-restricted'])
    const m1 = (await t.out('203.0.113.1:3478'))!
    expect(await t.back('203.0.113.1:3478', m1)).toBe(true)
    expect(await t.back('203.0.113.1:3479', m1)).toBe(false)
  })

  it('symmetric: a new external port per destination, never the local one', async () => {
    const t = await setup(NAT_KINDS.symmetric)
    const ports = new Set<number>()
    for (const to of ['203.0.113.1:3478', '203.0.113.1:3479', '203.0.113.2:3478'])
      ports.add((await t.out(to))!.port)
    expect(ports.size).toBe(3)
    expect(ports.has(5000)).toBe(false)
    expect(await t.out('203.0.113.1:3478')).toEqual({address: '198.51.100.10', port: [...ports][0]})
  })

  it('udp-blocked: nothing gets out', async () => {
    const t = await setup(NAT_KINDS['udp-blocked'])
    expect(await t.out('203.0.113.1:3478')).toBeUndefined()
    expect(t.lab.stats.dropped['udp-blocked']).toBe(1)
  })

  it('forgets an unused mapping after its timeout, and with it the permission to answer', async () => {
    const t = await setup({...NAT_KINDS.cone, mappingTimeoutMs: 30_000})
    const m1 = (await t.out('203.0.113.1:3478'))!
    t.clock.advance(30_001)
    expect(t.nat.mappings()).toBe(0)
    expect(await t.back('203.0.113.1:3478', m1)).toBe(false)
  })

  it('does not route private addresses across the internet', async () => {
    const t = await setup(NAT_KINDS.cone)
    expect(await t.back('203.0.113.1:3478', {address: '10.0.0.2', port: 5000})).toBe(false)
    expect(t.lab.stats.dropped['no-route']).toBe(1)
  })
})
