import {describe, expect, it} from 'vitest'
import {diffInterface, isEmptyDiff} from './diff.js'
import type {InterfaceConfig, InterfaceState, PeerConfig, PeerState} from './driver.js'

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')

const peer = (n: number, extra: Partial<PeerConfig> = {}): PeerConfig => ({
  publicKey: key(n),
  allowedIps: [`10.0.0.${n}/32`],
  endpoint: `198.51.100.${n}:51820`,
  persistentKeepalive: 25,
  ...extra,
})

const live = (p: PeerConfig, extra: Partial<PeerState> = {}): PeerState => ({
  ...p,
  lastHandshakeMs: 0,
  rxBytes: 0,
  txBytes: 0,
  ...extra,
})

const desired = (peers: PeerConfig[]): InterfaceConfig => ({
  name: 'mesh0',
  privateKey: key(200),
  listenPort: 51820,
  address: '10.0.0.1/24',
  mtu: 1420,
  peers,
})

const current = (peers: PeerState[], extra: Partial<InterfaceState> = {}): InterfaceState => ({
  name: 'mesh0',
  publicKey: key(201),
  privateKey: key(200),
  listenPort: 51820,
  addresses: ['10.0.0.1/24'],
  mtu: 1420,
  up: true,
  peers,
  ...extra,
})

describe('diffInterface', () => {
  it('adds everything when the interface does not exist', () => {
    const d = diffInterface(undefined, desired([peer(2), peer(3)]))
    expect(d.privateKey && d.listenPort && d.mtu && d.up).toBe(true)
    expect(d.addAddresses).toEqual(['10.0.0.1/24'])
    expect(d.add.map((p) => p.publicKey)).toEqual([key(2), key(3)])
    expect(d.update).toEqual([])
    expect(d.remove).toEqual([])
  })

  it('reports no change when the interface already matches', () => {
    const d = diffInterface(current([live(peer(2)), live(peer(3))]), desired([peer(2), peer(3)]))
    expect(isEmptyDiff(d)).toBe(true)
  })

  it('touches only the peer that was added, changed or removed', () => {
    const cur = current([live(peer(2)), live(peer(3)), live(peer(4))])
    const want = desired([peer(2), peer(3, {allowedIps: ['10.0.0.33/32']}), peer(5)])
    const d = diffInterface(cur, want)
    expect(d.add.map((p) => p.publicKey)).toEqual([key(5)])
    expect(d.update).toEqual([{publicKey: key(3), allowedIps: ['10.0.0.33/32']}])
    expect(d.remove).toEqual([key(4)])
    expect(d.privateKey || d.listenPort || d.mtu || d.up).toBe(false)
  })

  it('ignores the order of allowed IPs', () => {
    const p = peer(2, {allowedIps: ['10.0.0.2/32', '10.9.0.0/16']})
    const cur = current([live({...p, allowedIps: ['10.9.0.0/16', '10.0.0.2/32']})])
    expect(isEmptyDiff(diffInterface(cur, desired([p])))).toBe(true)
  })

  it('sets the endpoint when WireGuard has none', () => {
    // (one with a session: a never-handshaken one is re-created, see below)
    const cur = current([live(peer(2), {endpoint: undefined, lastHandshakeMs: 1})])
    const d = diffInterface(cur, desired([peer(2)]))
    expect(d.update).toEqual([{publicKey: key(2), endpoint: '198.51.100.2:51820'}])
  })

  it('applies the endpoint it is told even while the peer handshakes elsewhere (the path decides)', () => {
    const cur = current([live(peer(2), {endpoint: '203.0.113.9:1234', lastHandshakeMs: Date.now()})])
    expect(diffInterface(cur, desired([peer(2)])).update).toEqual([
      {publicKey: key(2), endpoint: '198.51.100.2:51820'},
    ])
  })

  it('leaves the endpoint WireGuard has alone when told none', () => {
    const cur = current([live(peer(2), {endpoint: '203.0.113.9:1234'})])
    expect(diffInterface(cur, desired([peer(2, {endpoint: undefined})])).update).toEqual([])
  })

  it('sees a changed key, port, MTU, address and link state', () => {
    const cur = current([], {
      privateKey: key(99),
      listenPort: 1,
      mtu: 1500,
      up: false,
      addresses: ['10.0.0.9/24'],
    })
    const d = diffInterface(cur, desired([]))
    expect([d.privateKey, d.listenPort, d.mtu, d.up]).toEqual([true, true, true, true])
    expect(d.addAddresses).toEqual(['10.0.0.1/24'])
    expect(d.delAddresses).toEqual(['10.0.0.9/24'])
  })

  it('changes the keepalive when it differs', () => {
    const cur = current([live(peer(2, {persistentKeepalive: undefined}))])
    expect(diffInterface(cur, desired([peer(2)])).update).toEqual([
      {publicKey: key(2), persistentKeepalive: 25},
    ])
  })

  it('re-creates a peer that never handshook when it moves to another endpoint (its one initiation per 5 s is spent)', () => {
    const cur = current([live(peer(2), {endpoint: '172.16.2.2:51820'}), live(peer(3))])
    const d = diffInterface(cur, desired([peer(2, {endpoint: '127.0.0.1:40000'}), peer(3)]))
    expect(d.remove).toEqual([key(2)])
    expect(d.add).toEqual([peer(2, {endpoint: '127.0.0.1:40000'})])
    expect(d.update).toEqual([])
  })

  it('re-creates a peer that never handshook when it gets its first endpoint (its initiation went nowhere)', () => {
    const cur = current([live(peer(2, {endpoint: undefined})), live(peer(3))])
    const d = diffInterface(cur, desired([peer(2, {endpoint: '127.0.0.1:40000'}), peer(3)]))
    expect(d.remove).toEqual([key(2)])
    expect(d.add).toEqual([peer(2, {endpoint: '127.0.0.1:40000'})])
    expect(d.update).toEqual([])
    // With a session, the endpoint is only set.
    const hs = current([live(peer(2, {endpoint: undefined}), {lastHandshakeMs: 1})])
    expect(diffInterface(hs, desired([peer(2, {endpoint: '127.0.0.1:40000'})])).update).toEqual([
      {publicKey: key(2), endpoint: '127.0.0.1:40000'},
    ])
  })

  it('moves a peer with a session in place, and a never-handshaken one without a keepalive too', () => {
    const hs = current([live(peer(2), {endpoint: '172.16.2.2:51820', lastHandshakeMs: 1})])
    const moved = diffInterface(hs, desired([peer(2, {endpoint: '127.0.0.1:40000'})]))
    expect(moved.remove).toEqual([])
    expect(moved.update).toEqual([{publicKey: key(2), endpoint: '127.0.0.1:40000'}])
    const quiet = current([live(peer(2, {persistentKeepalive: undefined}), {endpoint: '172.16.2.2:51820'})])
    const d = diffInterface(
      quiet,
      desired([peer(2, {endpoint: '127.0.0.1:40000', persistentKeepalive: undefined})]),
    )
    expect(d.remove).toEqual([])
    expect(d.update).toEqual([{publicKey: key(2), endpoint: '127.0.0.1:40000'}])
  })
})
