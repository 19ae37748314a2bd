// The userspace driver's supervision with a real child process: a wireguard-go that dies while
// starting fails the apply and is not reported lost (which would re-apply at once, forever).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {UserspaceDriver} from './userspace.js'

describe('UserspaceDriver', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-us-'))
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('fails the apply of a wireguard-go that exits while starting, without reporting the interface lost', async () => {
    // A stand-in binary that exits at once, as wireguard-go does on a bad interface name.
    const binary = path.join(dir, 'fake-wireguard-go')
    fs.writeFileSync(binary, '#!/bin/sh\necho "fake: cannot create tun" >&2\nexit 1\n', {mode: 0o755})
    // The driver logs every exit of wireguard-go in the handler that reports an interface lost,
    // before it would: once the line is logged (and this continuation runs), the verdict is in.
    let exitHandled!: () => void
    const exited = new Promise<void>((resolve) => (exitHandled = resolve))
    const driver = new UserspaceDriver({
      logDir: path.join(dir, 'log'),
      binary,
      pollMs: 60_000,
      log: (_level, msg) => {
        if (msg.startsWith('wireguard-go exited')) exitHandled()
      },
    })
    const lost: string[] = []
    driver.onLost = (name) => lost.push(name)
    const name = `mtus${process.pid % 100_000}`
    try {
      const err = await driver
        .apply({
          name,
          privateKey: Buffer.alloc(32, 1).toString('base64'),
          listenPort: 51820,
          address: '10.1.0.1/24',
          mtu: 1420,
          peers: [],
        })
        .catch((e: unknown) => e)
      expect((err as {code?: string}).code).toBe('WIREGUARD_FAILED')
      expect(String((err as Error).message)).toContain('fake: cannot create tun')
      await exited
      expect(lost).toEqual([])
    } finally {
      await driver.close()
    }
  })
})
