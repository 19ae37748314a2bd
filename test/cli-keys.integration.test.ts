// `mesh node expire|extend|list|show` and `mesh tenant key-expiry` as real processes (bin/mesh.js,
// the built dist) against an in-process controller on 127.0.0.1 (issue 10): the expiry shows in
// the KEY EXPIRY column and `node show`, expire disables at once, extend --by/--never brings the
// node back, the tenant's lifetime round-trips, and every change is audited.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createNetwork, joinNode} from '../controller/testing/client.js'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {EXIT} from '../shared/errors.js'
import {AuditEntrySchema, KeyExpirySettingSchema, NodeSchema, page} from '../shared/protocol/control-api.js'
import {json, mesh} from './cli-runner.js'

let ctl: TestController
let dir: string
let configDir: string
let nodeId: string
const run = (args: string[], input?: string) => mesh(args, {configDir, input})

beforeAll(async () => {
  ctl = await startTestController()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-cli-keys-'))
  configDir = path.join(dir, 'config')
  const login = await run(
    ['login', '--controller', ctl.url, '--user', 'admin', '--password-stdin'],
    `${ctl.adminPassword}\n`,
  )
  expect(login.code, login.stderr).toBe(0)
  const net = await createNetwork(ctl, {name: 'keys', cidr: '10.31.0.0/24', joinPolicy: 'open'})
  nodeId = (await joinNode(ctl, net.id, 'laptop')).node.id
})
afterAll(async () => {
  await ctl?.close()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

describe('mesh node key expiry commands', () => {
  it('shows the key expiry in node list and node show', async () => {
    const list = await run(['node', 'list', '--network', 'keys'])
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout).toMatch(/KEY EXPIRY/)
    expect(list.stdout).toMatch(/\(in 179d\)|\(in 180d\)/)
    const shown = await run(['node', 'show', 'laptop', '--network', 'keys'])
    expect(shown.stdout).toMatch(/key expires:\s+\d{4}-\d{2}-\d{2} .*\(in 1\d\dd\)/)
  })

  it('expires a node at once and extends it by a duration or for ever', async () => {
    const expired = json(NodeSchema, await run(['node', 'expire', 'laptop', '--network', 'keys', '--json']))
    expect(expired.status).toBe('disabled')
    const list = await run(['node', 'list', '--network', 'keys'])
    expect(list.stdout).toMatch(/expired/)
    const by = json(NodeSchema, await run(['node', 'extend', nodeId, '--by', '90d', '--json']))
    expect(by.status).toBe('active')
    expect(Date.parse(by.keyExpiresAt!) - Date.now()).toBeGreaterThan(89 * 86_400_000)
    const never = json(NodeSchema, await run(['node', 'extend', nodeId, '--never', '--json']))
    expect(never.keyExpiresAt).toBeNull()
    const bad = await run(['node', 'extend', nodeId, '--by', 'soon'])
    expect(bad.code).toBe(EXIT.USAGE)
    const audit = json(page(AuditEntrySchema), await run(['audit', '--json', '--limit', '100']))
    expect(audit.items.filter((e) => e.targetId === nodeId).map((e) => e.action)).toEqual(
      expect.arrayContaining(['node.expire', 'node.extend']),
    )
  })

  it("reads and sets the tenant's key lifetime", async () => {
    expect(json(KeyExpirySettingSchema, await run(['tenant', 'key-expiry', '--json']))).toEqual({days: 180})
    expect(json(KeyExpirySettingSchema, await run(['tenant', 'key-expiry', '30', '--json']))).toEqual({
      days: 30,
    })
    const shown = await run(['tenant', 'key-expiry'])
    expect(shown.stdout).toContain('Node keys expire 30 days after they are made.')
    const bad = await run(['tenant', 'key-expiry', 'forever'])
    expect(bad.code).not.toBe(0)
  })
})
