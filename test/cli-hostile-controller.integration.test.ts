// The built CLI against a hostile "controller" on loopback: `mesh join` with a join string from a
// stranger (through a real meshd, in-process with the in-memory WireGuard driver), and admin
// commands logged in to it. It may stream endless replies or put terminal escapes, bidi and
// invisible characters in its errors and data; none of it may reach the terminal.
import fs from 'node:fs'
import path from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {startFakeDaemon, tempDir, type FakeDaemon} from '../daemon/testing/harness.js'
import {encodeJoinString} from '../shared/invite.js'
import {BIN, mesh} from './cli-runner.js'
import {startHostileServer, type HostileServer} from './hostile-server.js'

const built = fs.existsSync(path.resolve(path.dirname(BIN), '../dist/cli/commands/join.js'))

/** What a terminal would obey or hide: ESC, BEL, CR, bidi override/isolate, zero-width, soft hyphen. */
const TERMINAL_ATTACKS = ['\u001B', '\u0007', '\r', '\u202E', '\u2066', '\u200B', '\u00AD']
const HOSTILE_TEXT = '\u001B]0;pwned\u0007\u001B[2J\u202Eevil\u2066 \u200Bte\u00ADxt\r'
const hostileError = JSON.stringify({
  error: {code: 'FORBIDDEN', message: HOSTILE_TEXT, hint: `ask \u001B[8m${HOSTILE_TEXT}`},
})
const expectClean = (out: string) => {
  for (const ch of TERMINAL_ATTACKS) expect(out, JSON.stringify(ch)).not.toContain(ch)
}

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

  it('prints a hostile error message and hint from the controller without escapes, bidi or invisible characters', async () => {
    hostile = await startHostileServer({kind: 'fixed', status: 403, body: hostileError})
    const r = await join(hostile.url)
    expect(r.code).toBe(77)
    expectClean(r.stderr)
    expectClean(r.stdout)
    expect(r.stderr).toContain('evil')
  })
})

describe.skipIf(!built)('admin commands against a hostile controller', () => {
  let hostile: HostileServer | undefined
  const configDir = tempDir('mesh-cli-hostile-admin-')
  const run = (args: string[]) =>
    mesh(args, {configDir, env: {MESH_CONTROLLER: hostile!.url, MESH_TOKEN: 'tok'}})

  afterEach(async () => {
    await hostile?.close()
    hostile = undefined
  })
  afterAll(() => fs.rmSync(configDir, {recursive: true, force: true}))

  it('prints a hostile error without escapes, bidi or invisible characters, and keeps it exact in --json', async () => {
    hostile = await startHostileServer({kind: 'fixed', status: 403, body: hostileError})
    const r = await run(['network', 'list'])
    expect(r.code).toBe(77)
    expectClean(r.stderr)
    expect(r.stderr).toContain('evil')
    const j = await run(['network', 'list', '--json'])
    expect(j.code).toBe(77)
    expectClean(j.stdout)
    expect(JSON.parse(j.stdout)).toMatchObject({error: {code: 'FORBIDDEN', message: HOSTILE_TEXT}})
  })

  it('shows a node whose hostname and OS carry bidi and invisible characters as visible "?"', async () => {
    const node = {
      id: 'n_1',
      networkId: 'net_1',
      name: 'web',
      hostname: 'gnp.\u202Eexe\u200B',
      os: `linux${HOSTILE_TEXT}`,
      publicKey: Buffer.alloc(32, 7).toString('base64'),
      address: '10.20.0.2',
      status: 'active',
      online: true,
      lastSeen: null,
      endpoints: [],
      tags: [],
      ephemeral: false,
      createdAt: '2026-11-22T00:00:00.000Z',
    }
    hostile = await startHostileServer({kind: 'fixed', status: 200, body: JSON.stringify(node)})
    const r = await run(['node', 'show', 'n_1'])
    expect(r.code, r.stderr).toBe(0)
    expectClean(r.stdout)
    expect(r.stdout).toMatch(/hostname:\s+gnp\.\?exe\?/)
    const j = await run(['node', 'show', 'n_1', '--json'])
    expect(j.code).toBe(0)
    expectClean(j.stdout)
    expect(JSON.parse(j.stdout)).toMatchObject({hostname: node.hostname, os: node.os})
  })
})
