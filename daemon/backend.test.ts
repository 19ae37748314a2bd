import {describe, expect, it} from 'vitest'
import {NAME_RE} from '../shared/protocol/control-api.js'
import {addressInCidr, applyRetryDelay, defaultNodeName, liveEndpoint, usablePeers} from './backend.js'

describe('defaultNodeName', () => {
  it('makes a valid node name from any hostname', () => {
    expect(defaultNodeName('Laptop.example.net')).toBe('laptop')
    expect(defaultNodeName('my_box--01')).toBe('my-box--01')
    expect(defaultNodeName('-weird-')).toBe('weird')
    expect(defaultNodeName('___')).toBe('node')
    const long = defaultNodeName('a'.repeat(80))
    expect(long.length).toBe(63)
    for (const h of ['x', 'ÄÖÜ', 'a-'.repeat(40), '1.2.3.4'])
      expect(NAME_RE.test(defaultNodeName(h))).toBe(true)
  })
})

describe('usablePeers', () => {
  const key = (n: number): string => Buffer.alloc(32, n).toString('base64')
  const peer = (n: number, address: string) => ({
    id: `n${n}`,
    name: `node${n}`,
    publicKey: key(n),
    address,
    endpoints: [],
    hostname: 'h',
    os: 'linux',
    tags: [],
  })
  const self = {address: '10.1.0.1', publicKey: key(1), cidr: '10.1.0.0/24'}

  it('never lets a peer cover an address outside the network CIDR, this node, or another peer', () => {
    const dropped: string[] = []
    const peers = [
      peer(1, '10.1.0.1'), // this node itself: skipped silently
      peer(2, '10.1.0.2'),
      peer(3, '8.8.8.8'), // outside the CIDR
      peer(4, '10.1.0.0/8'), // not a plain address: would become 10.1.0.0/8/32
      peer(5, '10.1.0.1'), // claims this node's address
      peer(6, '10.1.0.2'), // duplicates peer 2
      peer(7, '10.1.0.7'),
      peer(8, '0.0.0.0'),
    ]
    const ok = usablePeers(peers, self, (p) => dropped.push(p.id))
    expect(ok.map((p) => p.id)).toEqual(['n2', 'n7'])
    expect(dropped).toEqual(['n3', 'n4', 'n5', 'n6', 'n8'])
  })

  it('drops a second peer with the public key of an earlier one', () => {
    const dropped: string[] = []
    const twin = {...peer(9, '10.1.0.9'), publicKey: key(2)}
    const ok = usablePeers([peer(2, '10.1.0.2'), twin], self, (p) => dropped.push(p.id))
    expect(ok.map((p) => p.id)).toEqual(['n2'])
    expect(dropped).toEqual(['n9'])
  })

  it('drops every peer when the network CIDR itself is unreadable', () => {
    expect(usablePeers([peer(2, '10.1.0.2')], {...self, cidr: 'garbage'})).toEqual([])
  })
})

describe('addressInCidr', () => {
  it('accepts only dotted-quad addresses inside the CIDR', () => {
    expect(addressInCidr('10.1.0.9', '10.1.0.0/24')).toBe(true)
    expect(addressInCidr('10.1.1.9', '10.1.0.0/24')).toBe(false)
    expect(addressInCidr('010.1.0.9', '10.1.0.0/24')).toBe(false)
    expect(addressInCidr('10.1.0.9/32', '10.1.0.0/24')).toBe(false)
  })
})

describe('applyRetryDelay', () => {
  it('backs off with jitter from about 5 s to at most 5 min, never a fixed 5 s forever', () => {
    const lo = (n: number) => applyRetryDelay(n, () => 0)
    const hi = (n: number) => applyRetryDelay(n, () => 0.999999)
    expect([lo(0), hi(0)]).toEqual([2_500, 5_000])
    expect(lo(3)).toBe(20_000)
    for (let n = 0; n < 60; n++) {
      expect(hi(n)).toBeLessThanOrEqual(300_000)
      expect(lo(n)).toBeLessThanOrEqual(hi(n))
    }
    expect(lo(59)).toBe(150_000)
  })
})

describe('liveEndpoint', () => {
  const shims = new Set(['127.0.0.1:41001'])
  it("drops a loopback endpoint left by an earlier meshd's relay socket, keeps everything else", () => {
    expect(liveEndpoint('127.0.0.1:39999', shims, ['198.51.100.7:51820'])).toBeUndefined()
    expect(liveEndpoint('[::1]:39999', shims, [])).toBeUndefined()
    // This daemon's own relay socket, a candidate that happens to be loopback, and real addresses.
    expect(liveEndpoint('127.0.0.1:41001', shims, [])).toBe('127.0.0.1:41001')
    expect(liveEndpoint('127.0.0.1:51820', shims, ['127.0.0.1:51820'])).toBe('127.0.0.1:51820')
    expect(liveEndpoint('198.51.100.7:51820', shims, [])).toBe('198.51.100.7:51820')
    expect(liveEndpoint(undefined, shims, [])).toBeUndefined()
  })
})
