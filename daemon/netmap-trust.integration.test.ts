// What meshd takes from a controller's registration reply and from a netmap it restores from
// its cache: nothing that routes addresses outside the network's CIDR into the tunnel (with the
// in-memory driver, state in a temp dir, a stand-in controller on real HTTP).
import fs from 'node:fs'
import http from 'node:http'
import {afterAll, describe, expect, it} from 'vitest'
import {WebSocketServer} from 'ws'
import {DaemonClient} from '../cli/lib/daemon-client.js'
import {generateKeyPair} from './keys.js'
import {seedNetwork, startFakeDaemon, tempDir, waitFor} from './testing/harness.js'

/** A netmap peer with only the fields these tests vary. */
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

describe('a restored netmap', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('puts neither a self address nor a peer outside the network CIDR on the interface', async () => {
    const {store, keys: me} = seedNetwork(dir)
    const good = generateKeyPair()
    const bad = generateKeyPair()
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

describe('a registration reply', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('whose node address is outside the network CIDR is refused, and the node is removed again', async () => {
    const seen: string[] = []
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`)
      req.resume()
      const body =
        req.url === '/api/v1/register'
          ? {
              node: {
                id: 'n1',
                networkId: 'net1',
                name: 'alpha',
                hostname: 'h',
                os: 'linux',
                publicKey: generateKeyPair().publicKey,
                address: '203.0.113.9',
                status: 'active',
                online: false,
                lastSeen: null,
                endpoints: [],
                tags: [],
                ephemeral: false,
                createdAt: new Date().toISOString(),
              },
              network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
              credential: 'cred',
            }
          : {ok: true}
      res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify(body))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const port = (server.address() as {port: number}).port
    const d = await startFakeDaemon({dir})
    try {
      const err = await new DaemonClient({socketPath: d.socketPath})
        .join({controller: `http://127.0.0.1:${port}`, invite: 'code', name: 'alpha'})
        .catch((e: unknown) => e)
      expect((err as {code?: string}).code).toBe('CONTROLLER_UNREACHABLE')
      expect((err as Error).message).toContain('203.0.113.9')
      // The interface started while registering is removed again; it never got a config.
      expect(d.fake.calls.map((c) => c.op)).toEqual(['create', 'remove'])
      expect(d.fake.interfaces.size).toBe(0)
      expect((await d.backend.status()).networks).toEqual([])
      expect(seen).toEqual(['POST /api/v1/register', 'POST /api/v1/node/leave'])
    } finally {
      await d.stop()
      server.close()
    }
  })
})

describe('a live netmap', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('applies its peers but not a self address outside the network CIDR', async () => {
    const wss = new WebSocketServer({port: 0, host: '127.0.0.1'})
    await new Promise((r) => wss.once('listening', r))
    const port = (wss.address() as {port: number}).port
    const {keys: me} = seedNetwork(dir, {controller: `http://127.0.0.1:${port}`})
    const good = generateKeyPair()
    const bad = generateKeyPair()
    wss.on('connection', (ws) =>
      ws.send(
        JSON.stringify({
          type: 'full',
          version: 4,
          network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
          self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '203.0.113.9', status: 'active'},
          peers: [peer('n2', good.publicKey, '10.9.0.3'), peer('n3', bad.publicKey, '203.0.113.10')],
        }),
      ),
    )
    const d = await startFakeDaemon({dir})
    try {
      const net = await waitFor('the netmap applied', async () => {
        const n = (await d.backend.status()).networks[0]
        return n?.netmapVersion === 4 ? n : undefined
      })
      expect(net.address).toBe('10.9.0.2')
      expect(net.peers.map((p) => p.id)).toEqual(['n2'])
      const iface = d.fake.interfaces.get('tmesh0')!
      expect(iface.addresses).toEqual(['10.9.0.2/24'])
      expect(iface.peers.map((p) => p.allowedIps)).toEqual([['10.9.0.3/32']])
    } finally {
      await d.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  })
})
