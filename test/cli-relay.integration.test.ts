// `mesh relay key create|list|revoke` and `mesh relay start` as real processes (bin/mesh.js,
// the built dist) against an in-process controller on 127.0.0.1, logged in as its superuser.
import {spawn, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {BIN, mesh, ROOT} from './cli-runner.js'

let ctl: TestController
let configDir: string
const procs: ChildProcess[] = []

beforeAll(async () => {
  ctl = await startTestController({relayHeartbeatMs: 200})
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-cli-relay-'))
  const login = await mesh(['login', '--controller', ctl.url, '--user', 'admin', '--password-stdin'], {
    configDir,
    input: `${ctl.adminPassword}\n`,
  })
  expect(login.code, login.stderr).toBe(0)
})
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
  await ctl?.close()
  fs.rmSync(configDir, {recursive: true, force: true})
})

/** Resolves with the first stdout line that matches, within `ms`. */
function lineOf(p: ChildProcess, re: RegExp, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => reject(new Error(`no line matching ${re} within ${ms} ms: ${buf}`)), ms)
    p.stdout!.on('data', (c: Buffer) => {
      buf += c.toString()
      const hit = buf.split('\n').find((l) => re.test(l))
      if (hit !== undefined) {
        clearTimeout(t)
        resolve(hit)
      }
    })
  })
}

describe('mesh relay', () => {
  it('key create prints only the key on stdout; list shows it without the key; revoke marks it', async () => {
    const r = await mesh(['relay', 'key', 'create', '--region', 'eu'], {configDir})
    expect(r.code, r.stderr).toBe(0)
    const key = r.stdout.trim()
    expect(key).toMatch(/^mrelay_[A-Za-z0-9_-]{43}$/)
    expect(r.stderr).toContain('region eu')
    const list = await mesh(['relay', 'key', 'list', '--json'], {configDir})
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).not.toContain(key)
    const items = (
      JSON.parse(list.stdout) as {items: {id: string; region: string; revokedAt: string | null}[]}
    ).items
    expect(items.map((k) => [k.region, k.revokedAt])).toEqual([['eu', null]])
    const table = await mesh(['relay', 'key', 'list'], {configDir})
    expect(table.stdout).toMatch(/ID\s+NAME\s+REGION/)
    const revoked = await mesh(['relay', 'key', 'revoke', items[0]!.id, '--json'], {configDir})
    expect(revoked.code, revoked.stderr).toBe(0)
    expect((JSON.parse(revoked.stdout) as {revokedAt: string | null}).revokedAt).not.toBeNull()
  })

  it('start registers with the controller, is listed while it runs and exits 0 on SIGTERM', async () => {
    const created = await mesh(['relay', 'key', 'create', '--region', 'west'], {configDir})
    const key = created.stdout.trim()
    const p = spawn(
      process.execPath,
      [BIN, 'relay', 'start', '--controller', ctl.url, '--listen', '127.0.0.1:0', '--region', 'west'],
      {cwd: ROOT, env: {...process.env, MESH_RELAY_KEY: key}, stdio: ['ignore', 'pipe', 'pipe']},
    )
    procs.push(p)
    const line = await lineOf(p, /relay registered with the controller/, 20_000)
    const url = (JSON.parse(line) as {url: string}).url
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(ctl.running.nat.relays).toContainEqual({url, region: 'west'})
    expect((await fetch(`${url}/healthz`)).status).toBe(200)
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)))
    p.kill('SIGTERM')
    expect(await exited).toBe(0)
  })

  it('start refuses a key the controller does not know, with its error code', async () => {
    const r = await mesh(
      ['relay', 'start', '--controller', ctl.url, '--listen', '127.0.0.1:0', '--relay-key', 'mrelay_nope'],
      {configDir},
    )
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('UNAUTHENTICATED')
  })
})
