// How meshd rebuilds an interface that vanished behind its back (wireguard-go died), with the
// in-memory driver and a network seeded on disk: at once the first time, with backoff when it
// keeps dying, never in a tight loop.
import fs from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, describe, expect, it} from 'vitest'
import {seedNetwork, startFakeDaemon, tempDir, waitFor} from './testing/harness.js'

describe('a lost interface', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('is rebuilt at once, but one that keeps dying is rebuilt after a backoff, not in a tight loop', async () => {
    seedNetwork(dir)
    const d = await startFakeDaemon({dir})
    const creates = (): number => d.fake.calls.filter((c) => c.op === 'create').length
    try {
      expect(creates()).toBe(1)
      d.fake.crash('tmesh0')
      await waitFor('the first rebuild', () => creates() === 2, 1000)
      // It dies again and again, as a wireguard-go that crashes right after start does.
      for (let i = 0; i < 3; i++) {
        d.fake.crash('tmesh0')
        await sleep(40)
      }
      expect(creates()).toBeLessThanOrEqual(3)
      // It is still rebuilt in the end (the third loss in a row waits 1-2 s).
      await waitFor('the rebuild after the backoff', () => d.fake.interfaces.has('tmesh0'), 10_000)
    } finally {
      await d.stop()
    }
  })
})
