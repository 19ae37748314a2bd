// Start-up reconciliation: a daemon restarted after a crash removes the interfaces it made and no
// longer wants, and leaves every other interface alone.
import fs from 'node:fs'
import path from 'node:path'
import {describe, expect, it} from 'vitest'
import {StateStore} from './state-store.js'
import {FakeDriver} from './testing/fake-driver.js'
import {startFakeDaemon, tempDir} from './testing/harness.js'

describe('start-up reconciliation', () => {
  it('removes its own leftover interfaces and keeps interfaces it never made', async () => {
    const dir = tempDir()
    try {
      const store = new StateStore(path.join(dir, 'state'))
      store.init()
      store.setOwnedInterfaces(['tmesh5'])
      const driver = new FakeDriver()
      const stale = {
        name: '',
        publicKey: Buffer.alloc(32, 1).toString('base64'),
        privateKey: Buffer.alloc(32, 2).toString('base64'),
        listenPort: 40000,
        addresses: ['10.1.0.1/24'],
        mtu: 1420,
        up: true,
        peers: [],
      }
      driver.interfaces.set('tmesh5', {...stale, name: 'tmesh5'})
      driver.interfaces.set('tmesh6', {...stale, name: 'tmesh6'})
      const d = await startFakeDaemon({dir, driver})
      try {
        expect(driver.interfaces.has('tmesh5')).toBe(false)
        expect(driver.interfaces.has('tmesh6')).toBe(true)
        expect(store.ownedInterfaces()).toEqual([])
        expect(fs.statSync(path.join(dir, 'state')).mode & 0o777).toBe(0o700)
      } finally {
        await d.stop()
      }
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})
