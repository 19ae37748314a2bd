// What meshd takes from a netmap it restores from its cache: nothing that routes addresses
// outside the network's CIDR into the tunnel (with the in-memory driver, state in a temp dir).
import fs from 'node:fs'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {generateKeyPair} from './keys.js'
import {StateStore} from './state-store.js'
import {startFakeDaemon, tempDir} from './testing/harness.js'

describe('a restored netmap', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('puts neither a self address nor a peer outside the network CIDR on the interface', async () => {
    const store = new StateStore(path.join(dir, 'state'))
    store.init()
    const me = generateKeyPair()
    const good = generateKeyPair()
    const bad = generateKeyPair()
    store.createNetwork(
      {
        id: 'net1',
        name: 'lab',
        cidr: '10.9.0.0/24',
        controller: 'http://127.0.0.1:9',
        interface: 'tmesh0',
        nodeId: 'n1',
        nodeName: 'alpha',
        nodeStatus: 'active',
        address: '10.9.0.2',
        publicKey: me.publicKey,
        listenPort: 51999,
        up: true,
        joinedAt: new Date().toISOString(),
      },
      me.privateKey,
      'cred',
    )
    const peer = (id: string, publicKey: string, address: string) => ({
      id,
      name: id,
      publicKey,
      address,
      endpoints: ['198.51.100.7:51820'],
      hostname: id,
      os: 'linux',
      tags: [],
    })
    store.saveNetmap('net1', {
      type: 'full',
      version: 3,
      network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
      self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '203.0.113.9', status: 'active'},
      peers: [peer('n2', good.publicKey, '10.9.0.3'), peer('n3', bad.publicKey, '203.0.113.10')],
    })
    const d = await startFakeDaemon({dir})
    try {
      const iface = d.fake.interfaces.get('tmesh0')!
      expect(iface.addresses).toEqual(['10.9.0.2/24'])
      expect(iface.peers.map((p) => [p.publicKey, p.allowedIps])).toEqual([[good.publicKey, ['10.9.0.3/32']]])
      const st = await d.backend.status()
      expect(st.networks[0]!.address).toBe('10.9.0.2')
      expect(st.networks[0]!.peers.map((p) => p.id)).toEqual(['n2'])
    } finally {
      await d.stop()
    }
  })
})
