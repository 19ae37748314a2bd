import {describe, expect, it} from 'vitest'
import {parseCidr} from '../../shared/net/ipv4.js'
import {directOutOfReach, MAX_CANDIDATES, orderCandidates} from './candidates.js'

const LAN = [parseCidr('10.1.0.0/24')!]

describe('orderCandidates', () => {
  it('puts an address on our own LAN first, then the observed mapping, then public, then other private', () => {
    expect(
      orderCandidates(
        {
          endpoints: ['172.16.5.4:51820', '198.51.100.9:51820', '10.1.0.7:51820'],
          observedEndpoint: '203.0.113.4:40001',
        },
        LAN,
      ),
    ).toEqual(['10.1.0.7:51820', '203.0.113.4:40001', '198.51.100.9:51820', '172.16.5.4:51820'])
  })

  it('drops malformed, unusable and repeated endpoints and caps the list', () => {
    const out = orderCandidates(
      {
        endpoints: [
          '999.1.1.1:1',
          '127.0.0.1:51820',
          '169.254.1.1:51820',
          'host:1',
          '198.51.100.9:51820',
          '198.51.100.9:51820',
          '198.51.100.10:1',
          '198.51.100.11:1',
          '198.51.100.12:1',
        ],
        observedEndpoint: '0.0.0.0:5',
      },
      LAN,
    )
    expect(out).toEqual(['198.51.100.9:51820', '198.51.100.10:1', '198.51.100.11:1', '198.51.100.12:1'])
    expect(out).toHaveLength(MAX_CANDIDATES)
  })

  it('returns nothing for a peer without usable endpoints (WireGuard learns it when the peer calls)', () => {
    expect(orderCandidates({endpoints: [], observedEndpoint: null}, LAN)).toEqual([])
  })
})

describe('directOutOfReach', () => {
  const CONE = {endpoints: ['172.16.2.2:36677'], observedEndpoint: '198.51.100.12:36677'}
  const BLOCKED = {endpoints: ['172.16.1.2:37872'], observedEndpoint: null}
  const mapped = {observedEndpoint: '198.51.100.11:40000'}

  it('is out of reach when the controller observed no mapping for this node (its UDP does not get out)', () => {
    expect(
      directOutOfReach({discovery: true, self: {observedEndpoint: null}, peer: CONE, localSubnets: LAN}),
    ).toBe('udp-blocked-here')
  })

  it('is out of reach when the controller observed no mapping for the peer', () => {
    expect(directOutOfReach({discovery: true, self: mapped, peer: BLOCKED, localSubnets: LAN})).toBe(
      'udp-blocked-at-peer',
    )
    expect(
      directOutOfReach({
        discovery: true,
        self: mapped,
        peer: {endpoints: BLOCKED.endpoints},
        localSubnets: LAN,
      }),
    ).toBe('udp-blocked-at-peer')
  })

  it('keeps a peer without a mapping within reach when it reports a public address', () => {
    const publicHost = {endpoints: ['203.0.113.9:51820', '172.16.1.2:51820']}
    expect(
      directOutOfReach({discovery: true, self: mapped, peer: publicHost, localSubnets: LAN}),
    ).toBeUndefined()
  })

  it('is within reach when both sides have a mapping', () => {
    expect(directOutOfReach({discovery: true, self: mapped, peer: CONE, localSubnets: LAN})).toBeUndefined()
  })

  it('keeps a peer on one of our LANs within reach, mapping or not (no NAT in between)', () => {
    const onLan = {endpoints: ['10.1.0.9:51820'], observedEndpoint: null}
    expect(
      directOutOfReach({discovery: true, self: {observedEndpoint: null}, peer: onLan, localSubnets: LAN}),
    ).toBeUndefined()
  })

  it('judges nothing without discovery or when the controller does not say what it observed for this node', () => {
    expect(
      directOutOfReach({discovery: false, self: {observedEndpoint: null}, peer: BLOCKED, localSubnets: LAN}),
    ).toBeUndefined()
    expect(
      directOutOfReach({discovery: true, self: {observedEndpoint: undefined}, peer: CONE, localSubnets: LAN}),
    ).toBeUndefined()
  })
})
