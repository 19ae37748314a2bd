// meshd takes a netmap peer by peer: one node with a bad entry (a low-order or malformed key, a
// bogus endpoint) never costs this node its other peers, live or restored from the cache (the
// in-memory driver, state in a temp dir, a stand-in controller on a real WebSocket).
import fs from 'node:fs'
import zlib from 'node:zlib'
import {afterAll, describe, expect, it} from 'vitest'
import type {WebSocket} from 'ws'
import type {NetmapFull} from '../shared/protocol/netmap.js'
import {MAX_NETMAP_FRAME_BYTES} from '../shared/limits.js'
import {
  netmapPeer,
  seedNetwork,
  standInController,
  startFakeDaemon,
  tempDir,
  waitFor,
} from './testing/harness.js'

const ZERO_KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
const peer = netmapPeer

describe('a live netmap with bad peers', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('applies every valid peer, drops the invalid ones, strips bad endpoints, and keeps applying deltas', async () => {
    const {wss, port} = await standInController()
    const {keys: me} = seedNetwork(dir, {controller: `http://127.0.0.1:${port}`})
    const good = peer('good')
    const zeroKey = peer('zero-key', {publicKey: ZERO_KEY})
    const junkKey = peer('junk-key', {publicKey: 'not a key'})
    const badEndpoints = peer('bad-endpoints', {
      endpoints: ['999.999.999.999:1', '[:::::]:1', '1.2.3.4:65536', '198.51.100.5:51820'],
    })
    const onlyBad = peer('only-bad', {endpoints: ['999.999.999.999:1']})
    let client: WebSocket | undefined
    wss.on('connection', (ws) => {
      client = ws
      ws.send(
        JSON.stringify({
          type: 'full',
          version: 1,
          network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
          self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'},
          peers: [good, zeroKey, junkKey, {id: 'bare'}, badEndpoints, onlyBad],
        }),
      )
    })
    const d = await startFakeDaemon({dir})
    const wgPeers = () =>
      Object.fromEntries(
        (d.fake.interfaces.get('tmesh0')?.peers ?? []).map((p) => [p.publicKey, p.endpoint ?? null]),
      )
    try {
      await waitFor(
        'the full map applied',
        async () => (await d.backend.status()).networks[0]?.netmapVersion === 1,
      )
      expect(wgPeers()).toEqual({
        [good.publicKey]: '198.51.100.7:51820',
        [badEndpoints.publicKey]: '198.51.100.5:51820',
        [onlyBad.publicKey]: null,
      })
      expect((await d.backend.status()).networks[0]!.peers.map((p) => p.id).sort()).toEqual([
        'bad-endpoints',
        'good',
        'only-bad',
      ])
      // A delta: one peer turns into a low-order key (it goes), one is added, one removed.
      const late = peer('late')
      client!.send(
        JSON.stringify({
          type: 'delta',
          version: 2,
          added: [late],
          changed: [{...good, publicKey: ZERO_KEY}],
          removed: ['only-bad', 42],
        }),
      )
      await waitFor(
        'the delta applied',
        async () => (await d.backend.status()).networks[0]?.netmapVersion === 2,
      )
      expect(wgPeers()).toEqual({
        [badEndpoints.publicKey]: '198.51.100.5:51820',
        [late.publicKey]: '198.51.100.7:51820',
      })
    } finally {
      await d.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  })
})

describe('a compressed netmap', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('applies a gzipped full map without its own entry, in order with the text after it, and ignores compressed frames that do not inflate or inflate past the frame limit', async () => {
    const {wss, port} = await standInController()
    const {keys: me} = seedNetwork(dir, {controller: `http://127.0.0.1:${port}`})
    const a = peer('a')
    const b = peer('b')
    const self = {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'}
    const full = (version: number, peers: unknown[]) =>
      JSON.stringify({
        type: 'full',
        version,
        network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
        self,
        peers,
      })
    let client: WebSocket | undefined
    let url = ''
    wss.on('connection', (ws, req) => {
      client = ws
      url = req.url ?? ''
      // The node's own entry is in the list, as the controller sends it to everyone; a text delta
      // right behind the compressed map must not overtake it while it inflates.
      ws.send(zlib.gzipSync(full(1, [a, {...self, endpoints: [], hostname: 'alpha', os: 'linux', tags: []}])))
      ws.send(JSON.stringify({type: 'delta', version: 2, added: [b]}))
    })
    const d = await startFakeDaemon({dir})
    const wgKeys = () => (d.fake.interfaces.get('tmesh0')?.peers ?? []).map((p) => p.publicKey).sort()
    try {
      await waitFor(
        'the delta applied',
        async () => (await d.backend.status()).networks[0]?.netmapVersion === 2,
      )
      expect(url).toContain('encoding=gzip')
      expect(wgKeys()).toEqual([a.publicKey, b.publicKey].sort())
      // Not gzip, and a bomb past MAX_NETMAP_FRAME_BYTES once inflated: both ignored, the session
      // goes on (the next text delta applies).
      client!.send(Buffer.from('not gzip at all'))
      client!.send(zlib.gzipSync(Buffer.alloc(MAX_NETMAP_FRAME_BYTES + 1024, 0x20)))
      client!.send(JSON.stringify({type: 'delta', version: 3, removed: ['a']}))
      await waitFor(
        'the last delta applied',
        async () => (await d.backend.status()).networks[0]?.netmapVersion === 3,
      )
      expect(wgKeys()).toEqual([b.publicKey])
      expect(wss.clients.size).toBe(1)
    } finally {
      await d.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  })
})

describe('a cached netmap with bad peers', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('restores the valid peers instead of throwing the whole cache away', async () => {
    const {store, keys: me} = seedNetwork(dir)
    const good = peer('good')
    const zeroKey = peer('zero-key', {publicKey: ZERO_KEY})
    const bogus = peer('bogus-endpoint', {endpoints: ['999.999.999.999:1']})
    // What a daemon before the per-peer checks may have cached.
    store.saveNetmap('net1', {
      type: 'full',
      version: 3,
      network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
      self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'},
      peers: [good, zeroKey, bogus],
    } as NetmapFull)
    const d = await startFakeDaemon({dir})
    try {
      const iface = d.fake.interfaces.get('tmesh0')!
      expect(iface.peers.map((p) => [p.publicKey, p.endpoint ?? null])).toEqual([
        [good.publicKey, '198.51.100.7:51820'],
        [bogus.publicKey, null],
      ])
    } finally {
      await d.stop()
    }
  })
})
