// `mesh policy get|set|check|test|delete` as real processes (bin/mesh.js, the built dist) against
// an in-process controller on 127.0.0.1: a policy round-trips as written, a bad one is refused
// with its line and rule and nothing changes, a concurrent edit is refused by --if-version, and
// every change is audited with a diff.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {EXIT} from '../shared/errors.js'
import {AuditEntrySchema, page, PolicyInfoSchema} from '../shared/protocol/control-api.js'
import {json, mesh, wireCode} from './cli-runner.js'

let ctl: TestController
let dir: string
let configDir: string
const run = (args: string[], input?: string) => mesh(args, {configDir, input})
const file = (name: string, text: string): string => {
  const p = path.join(dir, name)
  fs.writeFileSync(p, text)
  return p
}

const GOOD = `// Who may reach whom in acme.
{
  "groups": {"group:eng": ["admin"]},
  "hosts": {"db-net": "10.30.0.0/24"},
  "acls": [
    // engineers: the databases' postgres port
    {"src": ["group:eng"], "dst": ["tag:db:5432"], "proto": "tcp"},
    {"src": ["tag:ci"], "dst": ["tag:web:80,443"], "proto": "tcp"},
  ],
  "tests": [
    {"src": "admin", "accept": ["tag:db:5432"], "deny": ["tag:db:22"], "proto": "tcp"},
    {"src": "tag:ci", "deny": ["tag:db:5432"], "proto": "tcp"},
  ],
}
`

beforeAll(async () => {
  ctl = await startTestController()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-cli-policy-'))
  configDir = path.join(dir, 'config')
  const login = await run(
    ['login', '--controller', ctl.url, '--user', 'admin', '--password-stdin'],
    `${ctl.adminPassword}\n`,
  )
  expect(login.code, login.stderr).toBe(0)
})
afterAll(async () => {
  await ctl?.close()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

describe('mesh policy', () => {
  it('says there is no policy until one is set', async () => {
    const human = await run(['policy', 'get'])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toBe('')
    expect(human.stderr).toContain('no policy: every node of a network may reach every other')
    expect(json(PolicyInfoSchema, await run(['policy', 'get', '--json']))).toEqual({
      document: null,
      version: 0,
      updatedAt: null,
      updatedBy: null,
    })
  })

  it('checks a file offline: ok with its counts, or every problem with its line and rule (exit 65)', async () => {
    const ok = await run(['policy', 'check', file('good.hujson', GOOD)])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toContain('ok: 2 rules; 2 tests pass')
    const bad = await run([
      'policy',
      'check',
      file(
        'bad.hujson',
        `{
  "acls": [
    {"src": ["group:nobody"], "dst": ["tag:db:5432"]},
    {"src": ["*"], "dst": ["tag:db:99999"], "proto": "tcp"},
  ],
}
`,
      ),
    ])
    expect(bad.code).toBe(EXIT.DATAERR)
    expect(bad.stderr).toMatch(/line 3/)
    expect(bad.stderr).toMatch(/acls\[0\]\.src\[0\]/)
    expect(bad.stderr).toMatch(/line 4/)
    expect(bad.stderr).toMatch(/acls\[1\]\.dst\[0\]/)
    const viaJson = await run(['policy', 'check', path.join(dir, 'bad.hujson'), '--json'])
    expect(wireCode(viaJson)).toBe('POLICY_INVALID')
  })

  it('stores a policy that passes and gives it back exactly as written, comments included', async () => {
    const set = await run(['policy', 'set', path.join(dir, 'good.hujson'), '--json'])
    const info = json(PolicyInfoSchema, set)
    expect(info).toMatchObject({document: GOOD, version: 1})
    const got = await run(['policy', 'get'])
    expect(got.stdout).toBe(GOOD)
    expect(got.stderr).toContain('version 1')
    // The same text again is no change: the version stays.
    expect(
      json(PolicyInfoSchema, await run(['policy', 'set', path.join(dir, 'good.hujson'), '--json'])).version,
    ).toBe(1)
  })

  it('refuses a policy whose own tests fail, and stores nothing', async () => {
    const failing = GOOD.replace('"deny": ["tag:db:22"]', '"deny": ["tag:db:5432"]')
    const r = await run(['policy', 'set', file('failing.hujson', failing)])
    expect(r.code).toBe(EXIT.DATAERR)
    expect(r.stderr).toMatch(/test/)
    const t = await run(['policy', 'test', path.join(dir, 'failing.hujson'), '--json'])
    expect(wireCode(t)).toBe('POLICY_TESTS_FAILED')
    expect(json(PolicyInfoSchema, await run(['policy', 'get', '--json'])).document).toBe(GOOD)
    // The stored one passes on the controller.
    const stored = await run(['policy', 'test'])
    expect(stored.code, stored.stderr).toBe(0)
    expect(stored.stdout).toContain('2 tests pass')
  })

  it('refuses a change made from an older version (--if-version), and audits each change with a diff', async () => {
    const edited = GOOD.replace('"tag:web:80,443"', '"tag:web:443"')
    const stale = await run(['policy', 'set', file('edited.hujson', edited), '--if-version', '0', '--json'])
    expect(stale.code).toBe(EXIT.CANTCREAT)
    expect(wireCode(stale)).toBe('POLICY_VERSION_CONFLICT')
    const fresh = json(
      PolicyInfoSchema,
      await run(['policy', 'set', path.join(dir, 'edited.hujson'), '--if-version', '1', '--json']),
    )
    expect(fresh.version).toBe(2)
    const audit = json(page(AuditEntrySchema), await run(['audit', '--limit', '5', '--json']))
    const entry = audit.items.find((e) => e.action === 'policy.set' && e.detail.version === 2)
    expect(entry?.detail.diff).toMatch(/-.*tag:web:80,443/)
    expect(entry?.detail.diff).toMatch(/\+.*tag:web:443/)
  })

  it('removes the policy with --yes', async () => {
    const r = await run(['policy', 'delete', '--yes'])
    expect(r.code, r.stderr).toBe(0)
    expect(json(PolicyInfoSchema, await run(['policy', 'get', '--json'])).version).toBe(0)
    const audit = json(page(AuditEntrySchema), await run(['audit', '--limit', '1', '--json']))
    expect(audit.items[0]?.action).toBe('policy.delete')
  })
})
