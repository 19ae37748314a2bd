// The CLI's reads from meshd's socket are bounded too: a reply that never ends is cut at
// MAX_DAEMON_REPLY_BYTES instead of growing the CLI's memory.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {MAX_DAEMON_REPLY_BYTES} from '../../shared/limits.js'
import {DaemonClient} from './daemon-client.js'

const CHUNK = Buffer.alloc(64 * 1024, ' ')
let dir: string
let server: http.Server
let written = 0
let closed: Promise<void>

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-dc-'))
  let done!: () => void
  closed = new Promise((resolve) => (done = resolve))
  server = http.createServer((req, res) => {
    req.resume()
    res.writeHead(200, {'content-type': 'application/json'})
    res.on('close', done)
    // Endless (bounded at 1 GiB for safety), with backpressure; counts what was flushed.
    const pump = (): void => {
      while (!res.destroyed && written < 1024 * 1024 * 1024) {
        const ok = res.write(CHUNK, (err) => {
          if (!err) written += CHUNK.length
        })
        if (!ok) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  await new Promise<void>((resolve) => server.listen(path.join(dir, 'meshd.sock'), resolve))
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('DaemonClient', () => {
  it('stops reading an endless reply from meshd at 32 MiB and says so', async () => {
    const err = await new DaemonClient({socketPath: path.join(dir, 'meshd.sock')})
      .status()
      .catch((e: unknown) => e)
    expect(err).toMatchObject({code: 'INTERNAL', message: expect.stringContaining('larger than 32 MiB')})
    await closed
    expect(written).toBeGreaterThan(MAX_DAEMON_REPLY_BYTES)
    expect(written).toBeLessThan(MAX_DAEMON_REPLY_BYTES + 8 * 1024 * 1024)
  })
})
