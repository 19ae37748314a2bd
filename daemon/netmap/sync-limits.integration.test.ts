// How large a netmap frame meshd takes: the full map of a 10,000-node network with every peer
// field at its schema maximum fits, and a hostile controller announcing more is cut off at the
// frame header instead of being buffered.
import {describe, expect, it} from 'vitest'
import {MAX_NETMAP_FRAME_BYTES} from '../../shared/limits.js'
import {NetmapFullSchema, PeerSchema, type NetmapFull, type Peer} from '../../shared/protocol/netmap.js'
import {startHostileServer} from '../../test/hostile-server.js'
import {generateKeyPair} from '../keys.js'
import {NetmapSync} from './sync.js'

const quiet = {info: () => {}, warn: () => {}, debug: () => {}}

/** A peer with every field as large as the schemas and the controller allow. */
function largestPeer(i: number, publicKey: string): Peer {
  return {
    id: `n_${String(i).padStart(16, '0')}`, // controller ids: n_ + 16 base64url characters
    name: `n${i}`.padEnd(63, 'a'),
    publicKey,
    address: '10.255.255.254',
    endpoints: Array.from({length: 16}, () => '[2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535'),
    // Three bytes each in UTF-8, the most a character the schema counts as one can take.
    hostname: '漢'.repeat(253),
    os: '漢'.repeat(64),
    tags: Array.from({length: 32}, (_, t) => `tag:${String(t).padEnd(62, 't')}`),
  }
}

describe('netmap frame limit', () => {
  it('fits the full map of a 10,000-node network whose peers have every field at its maximum', () => {
    const {publicKey} = generateKeyPair()
    const peer = largestPeer(9_999, publicKey)
    expect(PeerSchema.safeParse(peer).success).toBe(true)
    const empty: NetmapFull = {
      type: 'full',
      version: 2 ** 40,
      network: {id: 'n_network00000000', name: 'n'.repeat(63), cidr: '10.0.0.0/8'},
      self: {
        id: 'n_self000000000000',
        name: 's'.repeat(63),
        publicKey,
        address: '10.0.0.1',
        status: 'active',
      },
      peers: [],
    }
    expect(NetmapFullSchema.safeParse({...empty, peers: [peer]}).success).toBe(true)
    // Every peer has the same length (fixed-width ids and names), so the map's JSON is the empty
    // map, 10,000 peers and 9,999 commas between them.
    const peerBytes = Buffer.byteLength(JSON.stringify(peer))
    expect(Buffer.byteLength(JSON.stringify(largestPeer(0, publicKey)))).toBe(peerBytes)
    const bytes = Buffer.byteLength(JSON.stringify(empty)) + 10_000 * peerBytes + 9_999
    expect(bytes).toBeGreaterThan(39 * 1024 * 1024)
    expect(bytes).toBeLessThan(MAX_NETMAP_FRAME_BYTES)
  })

  it('cuts off a frame announced larger than the cap at its header; the controller writes < 8 MiB', async () => {
    const frameBytes = MAX_NETMAP_FRAME_BYTES + 8 * 1024 * 1024
    const hostile = await startHostileServer({kind: 'endless'}, {wsFrameBytes: frameBytes})
    let failed!: (error: string) => void
    const failure = new Promise<string>((resolve) => (failed = resolve))
    const sync = new NetmapSync({
      controller: hostile.url,
      credential: 'cred',
      version: () => undefined,
      onFrame: async () => {},
      onState: (s) => {
        if (s.error) failed(s.error)
      },
      onRevoked: () => {},
      log: quiet,
      baseDelayMs: 60_000, // one attempt is enough here
    })
    try {
      sync.start()
      expect(await failure).toMatch(/max payload size exceeded/i)
      await hostile.drained()
      expect(hostile.bytesWritten).toBeLessThan(8 * 1024 * 1024)
    } finally {
      await sync.stop()
      await hostile.close()
    }
  })
})
