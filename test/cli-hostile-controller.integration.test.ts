// `mesh join` with a join string from a stranger, naming a hostile "controller" on loopback: the
// built CLI, a real meshd (in-process, in-memory WireGuard driver) and the hostile server.
import fs from 'node:fs'
import path from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {startFakeDaemon, tempDir, type FakeDaemon} from '../daemon/testing/harness.js'
import {encodeJoinString} from '../shared/invite.js'
import {BIN, mesh} from './cli-runner.js'
import {startHostileServer, type HostileServer} from './hostile-server.js'

const built = fs.existsSync(path.resolve(path.dirname(BIN), '../dist/cli/commands/join.js'))

describe.skipIf(!built)('mesh join against a hostile controller', () => {
  let d: FakeDaemon
  let hostile: HostileServer | undefined
  const configDir = tempDir('mesh-cli-hostile-')
  const join = (url: string, extra: string[] = []) =>
    mesh(['join', encodeJoinString(url, 'c'.repeat(24)), '--name', 'victim', ...extra], {
      configDir,
      env: {MESH_SOCKET: d.socketPath},
    })

  beforeAll(async () => {
    d = await startFakeDaemon()
  })
  afterEach(async () => {
    await hostile?.close()
    hostile = undefined
  })
  afterAll(async () => {
    await d?.stop()
    if (d) fs.rmSync(d.dir, {recursive: true, force: true})
    fs.rmSync(configDir, {recursive: true, force: true})
  })

  it('exits 76 with CONTROLLER_BAD_REPLY when the controller streams an endless reply; meshd read < 8 MiB', async () => {
    hostile = await startHostileServer({kind: 'endless'})
    const r = await join(hostile.url)
    expect(r.code, r.stderr).toBe(76)
    expect(r.stderr).toContain('CONTROLLER_BAD_REPLY')
    expect(r.stderr.replace(/\s+›\s+/g, ' ')).toContain('sent a reply larger than 1 MiB')
    await hostile.drained()
    expect(hostile.bytesWritten).toBeLessThan(8 * 1024 * 1024)
    // meshd is still there and joined nothing.
    const st = await mesh(['status', '--json'], {configDir, env: {MESH_SOCKET: d.socketPath}})
    expect(st.code).toBe(0)
    expect(JSON.parse(st.stdout)).toMatchObject({networks: []})
  })

  it('prints the same error as JSON with --json, exit 76', async () => {
    hostile = await startHostileServer({kind: 'fixed', status: 200, body: 'not json at all'})
    const r = await join(hostile.url, ['--json'])
    expect(r.code).toBe(76)
    expect(JSON.parse(r.stdout)).toMatchObject({error: {code: 'CONTROLLER_BAD_REPLY'}})
  })
})
