// The admin event stream after the access token expired: `mesh topology` reconnects with a
// refreshed token, not the one it started with. A real controller on a FakeClock (moved past
// the 15-minute access-token lifetime; no sleeps) and the CLI's own session code with a real
// credentials file.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../../controller/testing/test-controller.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {followAdminEvents, watchAdminEvents} from './controller-events.js'
import {readCredentials} from './credentials.js'
import {login, openSession} from './session.js'

let ctl: TestController
let clock: FakeClock
let dir: string
const savedDir = process.env.MESH_CONFIG_DIR

beforeAll(async () => {
  clock = new FakeClock(Date.now())
  ctl = await startTestController({clock})
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-events-'))
  process.env.MESH_CONFIG_DIR = dir
})

afterAll(async () => {
  if (savedDir === undefined) delete process.env.MESH_CONFIG_DIR
  else process.env.MESH_CONFIG_DIR = savedDir
  await ctl?.close()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

const snapshotOf = (
  w: (h: Parameters<typeof watchAdminEvents>[1]) => {ended: Promise<void>; close(): void},
) =>
  new Promise<number>((resolve, reject) => {
    const s = w({onSnapshot: (nodes) => (s.close(), resolve(nodes.length)), onEvent: () => undefined})
    s.ended.catch(reject)
  })

describe('admin event stream reconnects', () => {
  it('with a refreshed access token once the first one expired', async () => {
    await login({controller: ctl.url, username: 'admin', password: ctl.adminPassword})
    const {api, session} = await openSession()
    const first = session.token
    expect(await snapshotOf((h) => followAdminEvents(api, h))).toBe(0)

    clock.advance(16 * 60_000)
    // The token it started with is refused now...
    await expect(
      snapshotOf((h) => watchAdminEvents({controller: ctl.url, token: first}, h)),
    ).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    })
    // ...and a reconnect through the session refreshes it and is let in.
    expect(await snapshotOf((h) => followAdminEvents(api, h))).toBe(0)
    expect(api.token).not.toBe(first)
    expect((await readCredentials())?.token).toBe(api.token)
  })
})
