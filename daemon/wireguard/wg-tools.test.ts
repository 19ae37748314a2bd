import {describe, expect, it} from 'vitest'
import {diffInterface} from './diff.js'
import type {InterfaceConfig} from './driver.js'
import {parseDump, wgSetArgs} from './wg-tools.js'

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')

describe('parseDump', () => {
  it('reads the interface line and every peer line of `wg show IF dump`', () => {
    const text = [
      `${key(1)}\t${key(2)}\t51820\toff`,
      `${key(3)}\t(none)\t198.51.100.3:41870\t10.99.0.2/32\t1795319700\t1234\t5678\t25`,
      `${key(4)}\t(none)\t(none)\t10.99.0.3/32,10.5.0.0/16\t0\t0\t0\toff`,
      '',
    ].join('\n')
    expect(parseDump(text)).toEqual({
      privateKey: key(1),
      publicKey: key(2),
      listenPort: 51820,
      peers: [
        {
          publicKey: key(3),
          endpoint: '198.51.100.3:41870',
          allowedIps: ['10.99.0.2/32'],
          lastHandshakeMs: 1795319700000,
          rxBytes: 1234,
          txBytes: 5678,
          persistentKeepalive: 25,
        },
        {
          publicKey: key(4),
          allowedIps: ['10.99.0.3/32', '10.5.0.0/16'],
          lastHandshakeMs: 0,
          rxBytes: 0,
          txBytes: 0,
        },
      ],
    })
  })

  it('returns undefined for output that is not a dump', () => {
    expect(parseDump('')).toBeUndefined()
    expect(parseDump('interface: wg0')).toBeUndefined()
  })
})

describe('wgSetArgs', () => {
  const desired: InterfaceConfig = {
    name: 'mesh0',
    privateKey: key(9),
    listenPort: 40000,
    address: '10.0.0.1/24',
    mtu: 1420,
    peers: [
      {publicKey: key(5), allowedIps: ['10.0.0.5/32'], endpoint: '203.0.113.5:1', persistentKeepalive: 25},
    ],
  }

  it('sets key, port and peers of a new interface in one call, the key only as a file path', () => {
    const args = wgSetArgs('mesh0', desired, diffInterface(undefined, desired), '/tmp/k/key')
    expect(args).toEqual([
      'set',
      'mesh0',
      'listen-port',
      '40000',
      'private-key',
      '/tmp/k/key',
      'peer',
      key(5),
      'allowed-ips',
      '10.0.0.5/32',
      'endpoint',
      '203.0.113.5:1',
      'persistent-keepalive',
      '25',
    ])
    expect(args.join(' ')).not.toContain(key(9))
  })

  it('removes peers that are no longer wanted', () => {
    const current = {
      name: 'mesh0',
      publicKey: key(10),
      privateKey: key(9),
      listenPort: 40000,
      addresses: ['10.0.0.1/24'],
      mtu: 1420,
      up: true,
      peers: [{publicKey: key(6), allowedIps: ['10.0.0.6/32'], lastHandshakeMs: 0, rxBytes: 0, txBytes: 0}],
    }
    const args = wgSetArgs('mesh0', desired, diffInterface(current, desired))
    expect(args.slice(0, 5)).toEqual(['set', 'mesh0', 'peer', key(6), 'remove'])
    expect(args).not.toContain('private-key')
  })
})
