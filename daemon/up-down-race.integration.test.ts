// `up` and `down` of one network at once, with an in-memory driver whose apply takes a while
// and a stand-in controller that counts open netmap sessions: the later `down` wins, and no
// netmap session is left running for a network that is down.
import fs from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, describe, expect, it} from 'vitest'
import {WebSocketServer} from 'ws'
import type {InterfaceConfig} from './wireguard/driver.js'
import {FakeDriver} from './testing/fake-driver.js'
import {seedNetwork, startFakeDaemon, tempDir} from './testing/harness.js'

class SlowDriver extends FakeDriver {
  override async apply(desired: InterfaceConfig): ReturnType<FakeDriver['apply']> {
    await sleep(200)
    return super.apply(desired)
  }
}

describe('up and down at once', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('leaves a network that went down meanwhile without a netmap session', async () => {
    const wss = new WebSocketServer({port: 0, host: '127.0.0.1'})
    await new Promise((r) => wss.once('listening', r))
    // Sessions open now: up opens its netmap session while WireGuard starts, and down closes it.
    let open = 0
    wss.on('connection', (ws) => {
      open++
      ws.on('close', () => open--)
    })
    const port = (wss.address() as {port: number}).port
    seedNetwork(dir, {controller: `http://127.0.0.1:${port}`, up: false})
    const d = await startFakeDaemon({dir, driver: new SlowDriver()})
    try {
      const up = d.backend.up('lab')
      await sleep(20) // up is applying
      const down = d.backend.down('lab')
      expect(await up).toEqual({changed: ['lab']})
      expect(await down).toEqual({changed: ['lab']})
      await sleep(500) // time for a stray session to connect
      expect(open).toBe(0)
      expect(d.fake.interfaces.has('tmesh0')).toBe(false)
      expect((await d.backend.status()).networks[0]).toMatchObject({up: false, connected: false})
    } finally {
      await d.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  })
})
