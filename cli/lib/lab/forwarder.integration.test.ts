// The lab's socket-to-TCP forwarder on a real unix socket: no other user can connect to the
// controller API through it, not even in the instant between bind and chmod.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {forward} from './forwarder.js'

describe('forward', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-fwd-'))
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('creates its socket 0600 from the first instant, whatever the umask', async () => {
    const sock = path.join(dir, 'api.sock')
    const old = process.umask(0)
    let server
    try {
      server = forward(sock, '127.0.0.1', 9)
    } finally {
      process.umask(old)
    }
    try {
      // Checked before the listen callback (and its chmod) had a chance to run.
      expect(fs.statSync(sock).mode & 0o777).toBe(0o600)
      expect(process.umask()).toBe(old)
    } finally {
      await new Promise((r) => server.close(r))
    }
  })
})
