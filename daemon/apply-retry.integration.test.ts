// When WireGuard refuses one peer, meshd applies all the others, logs the refused one by its key,
// and tries it again with backoff (an injected delay, so no waiting) until it
// goes through (the in-memory driver, state in a temp dir, no controller).
import fs from 'node:fs'
import {afterAll, describe, expect, it} from 'vitest'
import {pino} from 'pino'
import {generateKeyPair} from './keys.js'
import {seedNetwork, startFakeDaemon, tempDir, waitFor} from './testing/harness.js'
import {FakeDriver} from './testing/fake-driver.js'

const peer = (id: string, n: number) => ({
  id,
  name: id,
  publicKey: generateKeyPair().publicKey,
  address: `10.9.0.${n}`,
  endpoints: [`198.51.100.${n}:51820`],
  hostname: id,
  os: 'linux',
  tags: [],
})

describe('a peer WireGuard refuses', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('does not hold back the others, is logged by key, and is retried with growing delays until it applies', async () => {
    const {store, keys: me} = seedNetwork(dir)
    const good = peer('good', 3)
    const bad = peer('bad', 4)
    store.saveNetmap('net1', {
      type: 'full',
      version: 1,
      network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
      self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'},
      peers: [good, bad],
    })
    const fake = new FakeDriver()
    fake.refuse.add(bad.publicKey)
    const lines: Record<string, unknown>[] = []
    const logger = pino({level: 'info'}, {write: (l: string) => void lines.push(JSON.parse(l))})
    const attempts: number[] = []
    const d = await startFakeDaemon({
      dir,
      driver: fake,
      logger,
      retryDelayMs: (attempt) => {
        attempts.push(attempt)
        // After three refusals the "WireGuard" takes the peer; the daemon must not need a new netmap.
        if (attempt === 2) fake.refuse.clear()
        return 1
      },
    })
    try {
      // Start-up applied the good peer although the bad one was refused.
      expect(fake.calls.find((c) => c.op === 'apply')?.added).toEqual([good.publicKey])
      await waitFor('the refused peer applied on a retry', () =>
        fake.interfaces.get('tmesh0')!.peers.some((p) => p.publicKey === bad.publicKey),
      )
      expect(attempts).toEqual([0, 1, 2])
      expect((await d.backend.status()).networks[0]!.lastError).toBeNull()
      const refusals = lines.filter((l) => l.msg === 'WireGuard refused a peer; the others are applied')
      expect(refusals.map((l) => l.peer)).toEqual([bad.publicKey, bad.publicKey, bad.publicKey])
      expect(
        fake.interfaces
          .get('tmesh0')!
          .peers.map((p) => p.publicKey)
          .sort(),
      ).toEqual([good.publicKey, bad.publicKey].sort())
    } finally {
      await d.stop()
    }
  })
})
