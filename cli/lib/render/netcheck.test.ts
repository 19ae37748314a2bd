import {describe, expect, it} from 'vitest'
import {directOutlook} from '../../../shared/nat/net-report.js'
import type {NetcheckResult} from '../../../shared/protocol/local-api.js'
import {netcheckText} from './netcheck.js'

const base: NetcheckResult = {
  network: 'home',
  controller: 'https://ctl.example:8443',
  udp: true,
  publicEndpoint: {address: '203.0.113.7', port: 41641},
  localEndpoint: {address: '0.0.0.0', port: 41641},
  behindNat: true,
  mapping: 'endpoint-independent',
  filtering: 'address-and-port-dependent',
  portPreserved: true,
  latencyMs: 12.34,
  server: {address: '198.51.100.1', port: 3478},
  otherAddress: {address: '198.51.100.2', port: 3479},
  ...directOutlook({
    udp: true,
    behindNat: true,
    mapping: 'endpoint-independent',
    filtering: 'address-and-port-dependent',
  }),
  durationMs: 310,
  relays: [
    {region: 'home', url: 'https://ctl.example:8443/healthz', reachable: true, latencyMs: 14.2, error: null},
  ],
}

describe('netcheckText', () => {
  it('shows UDP, the public address, mapping, filtering, port, relay latency and the verdict', () => {
    expect(netcheckText(base)).toBe(
      [
        'network:         home (controller https://ctl.example:8443)',
        'STUN server:     198.51.100.1:3478, alternate 198.51.100.2:3479 (answered in 12.3 ms)',
        'UDP:             yes',
        'public address:  203.0.113.7:41641 (behind NAT)',
        'mapping:         endpoint-independent',
        'filtering:       address-and-port-dependent',
        'port preserved:  yes',
        'relay:           home: reachable, 14.2 ms (https://ctl.example:8443/healthz)',
        `verdict:         ${base.verdict}`,
      ].join('\n'),
    )
  })

  it('says UDP is blocked, leaves the NAT fields empty and names an unreachable relay', () => {
    const text = netcheckText({
      ...base,
      udp: false,
      publicEndpoint: null,
      behindNat: null,
      mapping: 'unknown',
      filtering: 'unknown',
      portPreserved: null,
      latencyMs: null,
      otherAddress: null,
      ...directOutlook({udp: false, behindNat: null, mapping: 'unknown', filtering: 'unknown'}),
      relays: [
        {
          region: 'home',
          url: 'https://ctl.example/healthz',
          reachable: false,
          latencyMs: null,
          error: 'ECONNREFUSED',
        },
      ],
    })
    expect(text).toContain('UDP:             no (no answer from the STUN server)')
    expect(text).toContain('mapping:         -')
    expect(text).toContain('relay:           home: unreachable (ECONNREFUSED; https://ctl.example/healthz)')
    expect(text).toContain('verdict:         UDP blocked: relay only')
  })

  it('shows every relay with its latency and marks the home relay', () => {
    const text = netcheckText({
      ...base,
      relays: [
        {
          region: 'default',
          url: 'https://ctl.example/healthz',
          reachable: true,
          latencyMs: 40.1,
          error: null,
          home: false,
        },
        {
          region: 'eu',
          url: 'https://relay-eu.example/healthz',
          reachable: true,
          latencyMs: 9.5,
          error: null,
          home: true,
        },
      ],
    })
    expect(text).toContain('relay:           default: reachable, 40.1 ms (https://ctl.example/healthz)')
    expect(text).toContain(
      'relay:           eu (home): reachable, 9.50 ms (https://relay-eu.example/healthz)',
    )
  })

  it('says when the controller offers no relay', () => {
    expect(netcheckText({...base, relays: []})).toContain('relay:           none offered by the controller')
  })
})
