/**
 * The admin CLI end to end: the BUILT `mesh` binary (node bin/mesh.js, stdin not a terminal,
 * its own config dir) against a real controller on a temp SQLite file, through a whole admin
 * session, checking --json against the shared schemas and the documented exit codes.
 * Needs `bash scripts/build.sh` first (the test fails with that hint otherwise).
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {createInterface} from 'node:readline'
import Database from 'better-sqlite3'
import nacl from 'tweetnacl'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'
import {ControllerClient} from '../cli/lib/controller-client.js'
import {auditLinkHash} from '../controller/domain/audit.js'
import {toStoredAuditRow} from '../controller/store/rows.js'
import {BIN, ROOT, json, mesh, wireCode} from './cli-runner.js'
import {startTestController} from '../controller/testing/test-controller.js'
import {EXIT} from '../shared/errors.js'
import {decodeJoinString} from '../shared/invite.js'
import {
  AuditEntrySchema,
  AuditVerificationSchema,
  type AuditEntry,
  AuthKeySchema,
  CreateAuthKeyResponseSchema,
  CreateInviteResponseSchema,
  InviteSchema,
  NetworkSchema,
  NodeSchema,
  OkSchema,
  RegisterResponseSchema,
  UserSchema,
  WhoamiResponseSchema,
  page,
} from '../shared/protocol/control-api.js'

const publicKey = (): string => Buffer.from(nacl.box.keyPair().publicKey).toString('base64')

/** A node as meshd would register it: POST /api/v1/register with a fresh public key. */
async function register(
  url: string,
  body: Record<string, unknown>,
): Promise<{status: number; json: unknown}> {
  const res = await fetch(`${url}/api/v1/register`, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({publicKey: publicKey(), hostname: 'host.test', os: 'linux', ...body}),
    signal: AbortSignal.timeout(10_000),
  })
  return {status: res.status, json: await res.json()}
}

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = http.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const {port} = s.address() as AddressInfo
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

describe('mesh admin CLI against a real controller', () => {
  let ctl: Awaited<ReturnType<typeof startTestController>>
  let tmp: string
  let adminDir: string
  const run = (args: string[], input?: string, env?: Record<string, string | undefined>) =>
    mesh(args, {configDir: adminDir, input, env})

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/cli/commands/network/create.js'))) {
      throw new Error('the CLI is not built: run `bash scripts/build.sh` first')
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-cli-admin-'))
    adminDir = path.join(tmp, 'admin-config')
    ctl = await startTestController({dataDir: path.join(tmp, 'controller')})
  })

  afterAll(async () => {
    await ctl?.close()
    if (tmp) await fs.rm(tmp, {recursive: true, force: true})
  })

  it('refuses to log in without a terminal and without --password-stdin (exit 64)', async () => {
    const r = await run(['login', '--controller', ctl.url, '--user', 'admin'])
    expect(r.code).toBe(EXIT.USAGE)
    expect(r.stderr).toContain('TTY_REQUIRED')
    const noUser = await run(['login', '--controller', ctl.url, '--json'])
    expect(noUser.code).toBe(EXIT.USAGE)
    expect(wireCode(noUser)).toBe('TTY_REQUIRED')
    expect(existsSync(path.join(adminDir, 'credentials.json'))).toBe(false)
  })

  it('says not logged in before login (exit 67)', async () => {
    const r = await run(['network', 'list'])
    expect(r.code).toBe(EXIT.NOUSER)
    expect(r.stderr).toContain('NOT_LOGGED_IN')
  })

  it('rejects a wrong password with exit 67 and stores nothing', async () => {
    const r = await run(
      ['login', '--controller', ctl.url, '--user', 'admin', '--password-stdin', '--json'],
      'wrong-password\n',
    )
    expect(r.code).toBe(EXIT.NOUSER)
    expect(wireCode(r)).toBe('INVALID_CREDENTIALS')
    expect(existsSync(path.join(adminDir, 'credentials.json'))).toBe(false)
  })

  it('logs in with --password-stdin and keeps the token in a 0600 file, never on stdout', async () => {
    const r = await run(
      ['login', '--controller', `${ctl.url}/`, '--user', 'admin', '--password-stdin', '--json'],
      `${ctl.adminPassword}\n`,
    )
    const res = json(
      z.object({
        controller: z.string(),
        user: UserSchema,
        tenant: z.object({name: z.string()}),
        expiresAt: z.string(),
      }),
      r,
    )
    expect(res.controller).toBe(ctl.url)
    expect(res.user.username).toBe('admin')
    expect(r.stdout).not.toMatch(/token/i)

    const file = path.join(adminDir, 'credentials.json')
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
    expect((await fs.stat(adminDir)).mode & 0o777).toBe(0o700)
    const stored = JSON.parse(await fs.readFile(file, 'utf8')) as {
      controller: string
      token: string
      user: string
    }
    expect(stored).toMatchObject({controller: ctl.url, user: 'admin'})
    expect(stored.token.length).toBeGreaterThan(10)

    const who = json(WhoamiResponseSchema.extend({controller: z.string()}), await run(['whoami', '--json']))
    expect(who.user.username).toBe('admin')
    expect(who.controller).toBe(ctl.url)
    const human = await run(['whoami'])
    expect(human.stdout).toMatch(/^user:\s+admin$/m)
  })

  it('creates, lists, shows and changes a network', async () => {
    const created = json(
      NetworkSchema,
      await run([
        'network',
        'create',
        'lab',
        '--cidr',
        '10.77.0.0/24',
        '--description',
        'CLI test',
        '--json',
      ]),
    )
    expect(created).toMatchObject({
      name: 'lab',
      cidr: '10.77.0.0/24',
      description: 'CLI test',
      joinPolicy: 'invite',
    })

    const taken = await run(['network', 'create', 'lab', '--cidr', '10.78.0.0/24'])
    expect(taken.code).toBe(EXIT.CANTCREAT)
    expect(taken.stderr).toContain('NETWORK_NAME_TAKEN')

    const list = json(page(NetworkSchema), await run(['network', 'list', '--json']))
    expect(list.items.map((n) => n.name)).toContain('lab')
    expect(list.nextCursor).toBeNull()
    const table = await run(['network', 'list'])
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+CIDR\s+POLICY\s+NODES/)
    expect(table.stdout).toMatch(/^lab\s+10\.77\.0\.0\/24\s+invite\s/m)
    expect(table.stdout).not.toContain('\u001B')

    const shown = await run(['network', 'show', 'lab'])
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(/^cidr:\s+10\.77\.0\.0\/24$/m)

    // Only the flags given change: the description stays.
    const changed = json(
      NetworkSchema,
      await run(['network', 'set', 'lab', '--policy', 'approval', '--max-nodes', '10', '--json']),
    )
    expect(changed).toMatchObject({joinPolicy: 'approval', maxNodes: 10, description: 'CLI test'})
    const cleared = json(
      NetworkSchema,
      await run(['network', 'set', 'lab', '--max-nodes', 'unlimited', '--json']),
    )
    expect(cleared.maxNodes).toBeNull()
  })

  it('exits 66 for a network that does not exist, and 65 for a bad CIDR', async () => {
    const r = await run(['network', 'show', 'no-such-net', '--json'])
    expect(r.code).toBe(EXIT.NOINPUT)
    expect(wireCode(r)).toBe('NOT_FOUND')
    const bad = await run(['network', 'create', 'bad', '--cidr', '10.1.2.3/33'])
    expect(bad.code).toBe(EXIT.DATAERR)
  })

  it('prints an invite as one join string that names this controller, and revokes it', async () => {
    const r = await run(['invite', 'create', '--network', 'lab', '--expires', '1d', '--max-uses', '3'])
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.split('\n').filter(Boolean)
    expect(lines).toHaveLength(1)
    const decoded = decodeJoinString(lines[0]!)
    expect(decoded?.controller.replace(/\/$/, '')).toBe(ctl.url)

    const created = json(
      CreateInviteResponseSchema,
      await run(['invite', 'create', '--network', 'lab', '--unlimited', '--role', 'guest', '--json']),
    )
    expect(created.invite).toMatchObject({maxUses: null, role: 'guest'})

    const list = json(page(InviteSchema), await run(['invite', 'list', '--network', 'lab', '--json']))
    expect(list.items.map((i) => i.id)).toContain(created.invite.id)
    expect(list.items).toHaveLength(2)

    const revoked = json(InviteSchema, await run(['invite', 'revoke', created.invite.id, '--json']))
    expect(revoked.revokedAt).not.toBeNull()
    const refused = await register(ctl.url, {invite: created.code, name: 'late-joiner'})
    expect(refused.status).toBe(403)

    const missing = await run(['invite', 'revoke', 'inv-does-not-exist'])
    expect(missing.code).toBe(EXIT.NOINPUT)
  })

  let pendingId = ''
  it('creates auth keys that print alone, lists and revokes them', async () => {
    const r = await run([
      'authkey',
      'create',
      '--network',
      'lab',
      '--reusable',
      '--pre-approved',
      '--tag',
      'tag:ci',
    ])
    expect(r.code, r.stderr).toBe(0)
    const key = r.stdout.trim()
    expect(r.stdout).toBe(`${key}\n`)
    const joined = await register(ctl.url, {authKey: key, name: 'ci-runner'})
    expect(joined.status).toBe(201)
    expect(RegisterResponseSchema.parse(joined.json).node).toMatchObject({status: 'active', tags: ['tag:ci']})

    const plain = json(
      CreateAuthKeyResponseSchema,
      await run(['authkey', 'create', '--network', 'lab', '--json']),
    )
    expect(plain.authKey).toMatchObject({reusable: false, preApproved: false})
    // The network's policy is approval and this key is not pre-approved: the node waits.
    const pending = await register(ctl.url, {authKey: plain.key, name: 'laptop'})
    expect(pending.status).toBe(201)
    pendingId = RegisterResponseSchema.parse(pending.json).node.id

    const list = json(page(AuthKeySchema), await run(['authkey', 'list', '--network', 'lab', '--json']))
    expect(list.items).toHaveLength(2)
    expect(list.items.map((k) => k.id)).toContain(plain.authKey.id)
    expect(list.items.filter((k) => k.reusable && k.preApproved)).toHaveLength(1)
    const table = await run(['authkey', 'list', '--network', 'lab'])
    expect(table.stdout).toContain('reusable,pre-approved')
    expect(table.stdout).not.toContain(plain.key)

    const revoked = json(AuthKeySchema, await run(['authkey', 'revoke', plain.authKey.id, '--json']))
    expect(revoked.revokedAt).not.toBeNull()
  })

  it('lists, approves, renames and removes nodes', async () => {
    const pending = json(
      page(NodeSchema),
      await run(['node', 'list', '--network', 'lab', '--status', 'pending', '--json']),
    )
    expect(pending.items.map((n) => n.id)).toEqual([pendingId])

    const all = await run(['node', 'list', '--network', 'lab'])
    expect(all.stdout).toMatch(/ci-runner\s+10\.77\.0\.\d+\s+active/)
    expect(all.stdout).toMatch(/laptop\s+10\.77\.0\.\d+\s+pending/)

    const approved = json(NodeSchema, await run(['node', 'approve', pendingId, '--json']))
    expect(approved.status).toBe('active')
    const again = await run(['node', 'approve', pendingId])
    expect(again.code).toBe(EXIT.CANTCREAT)

    const renamed = json(
      NodeSchema,
      await run(['node', 'rename', 'laptop', 'old-laptop', '--network', 'lab', '--json']),
    )
    expect(renamed).toMatchObject({id: pendingId, name: 'old-laptop'})

    const noYes = await run(['node', 'remove', pendingId])
    expect(noYes.code).toBe(EXIT.USAGE)
    expect(noYes.stderr).toContain('TTY_REQUIRED')
    json(OkSchema, await run(['node', 'remove', pendingId, '--yes', '--json']))
    const after = json(page(NodeSchema), await run(['node', 'list', '--network', 'lab', '--json']))
    expect(after.items.map((n) => n.name)).toEqual(['ci-runner'])

    const gone = await run(['node', 'approve', pendingId])
    expect(gone.code).toBe(EXIT.NOINPUT)
  })

  it('shows the session in the audit log, filtered and limited', async () => {
    const log = json(page(AuditEntrySchema), await run(['audit', '--since', '1h', '--json']))
    const actions = log.items.map((a) => a.action)
    for (const action of [
      'network.create',
      'network.update',
      'invite.create',
      'invite.revoke',
      'authkey.create',
      'authkey.revoke',
      'node.approve',
      'node.remove',
    ]) {
      expect(actions, action).toContain(action)
    }
    const limited = json(page(AuditEntrySchema), await run(['audit', '--limit', '2', '--json']))
    expect(limited.items).toHaveLength(2)
    const byNetwork = json(page(AuditEntrySchema), await run(['audit', '--network', 'lab', '--json']))
    expect(byNetwork.items.length).toBeGreaterThan(0)
    expect(byNetwork.items.every((a) => a.networkId === byNetwork.items[0]!.networkId)).toBe(true)
    const future = json(
      page(AuditEntrySchema),
      await run(['audit', '--since', '2999-01-01T00:00:00Z', '--json']),
    )
    expect(future.items).toEqual([])
    const table = await run(['audit', '--actor', 'admin'])
    expect(table.stdout.split('\n')[0]).toMatch(/^TIME\s+ACTOR\s+ACTION/)
    expect(table.stdout).toMatch(/admin\s+network\.create/)
  })

  it('follows the real controller cursors page by page to the same list as one page', async () => {
    const api = new ControllerClient({url: ctl.url, token: ctl.adminToken})
    const whole = await api.listAll('audit', {})
    expect(whole.items.length).toBeGreaterThan(5)
    const paged = await api.listAll('audit', {}, {pageSize: 2})
    expect(paged.items.map((a) => a.id)).toEqual(whole.items.map((a) => a.id))
    expect(paged.nextCursor).toBeNull()
    const firstFive = await api.listAll('audit', {}, {pageSize: 2, limit: 5})
    expect(firstFive.items.map((a) => a.id)).toEqual(whole.items.slice(0, 5).map((a) => a.id))
    expect(firstFive.nextCursor).not.toBeNull()
  })

  it('verifies the audit hash chain, and names the entry someone edited in the SQLite file', async () => {
    const verify = async (expectCode: number) => {
      const r = await run(['audit', 'verify', '--json'])
      expect(r.code, r.stderr).toBe(expectCode)
      return AuditVerificationSchema.parse(JSON.parse(r.stdout))
    }
    const intact = await verify(0)
    expect(intact).toMatchObject({ok: true, unchained: 0})
    expect(intact.checked).toBeGreaterThan(5)
    const human = await run(['audit', 'verify'])
    expect(human.stdout).toContain(`audit log intact: ${intact.checked} entries verified`)
    expect(human.stdout).toContain(
      `head: link ${intact.head?.seq} (entry ${intact.head?.id}) ${intact.head?.hash}`,
    )

    // Someone with the database file drops the append-only trigger and rewrites who made an
    // entry in the middle of the chain.
    const db = new Database(ctl.dbPath)
    db.exec('DROP TRIGGER audit_no_update')
    const linkAt = (seq: number) =>
      db.prepare("SELECT * FROM audit WHERE chain <> '' AND chain_seq = ?").get(seq) as Record<
        string,
        unknown
      >
    const victim = linkAt(3)
    try {
      db.prepare('UPDATE audit SET actor_name = ? WHERE id = ?').run('mallory', victim.id)
      expect(await verify(1)).toMatchObject({
        ok: false,
        checked: 3,
        head: {seq: 2},
        mismatch: {id: victim.id, seq: 3, reason: 'changed'},
      })
      const said = await run(['audit', 'verify'])
      expect(said.code).toBe(1)
      expect(said.stdout).toContain(
        `audit log ALTERED: entry ${victim.id} (link 3) was changed after it was written`,
      )

      // Re-hashing the edited entry only moves the evidence: the next link no longer follows it.
      const edited = toStoredAuditRow(linkAt(3) as never)
      db.prepare('UPDATE audit SET hash = ? WHERE id = ?').run(auditLinkHash(edited), victim.id)
      expect((await verify(1)).mismatch).toMatchObject({seq: 4, reason: 'unlinked'})
    } finally {
      db.prepare('UPDATE audit SET actor_name = ?, hash = ? WHERE id = ?').run(
        victim.actor_name,
        victim.hash,
        victim.id,
      )
      db.exec(`CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
               BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END`)
      db.close()
    }
    expect(await verify(0)).toEqual(intact)
  })

  it('follows the audit log as JSON lines: the last entries, then each new one as it is written', async () => {
    const env: Record<string, string | undefined> = {...process.env, MESH_CONFIG_DIR: adminDir, NO_COLOR: '1'}
    delete env.MESH_CONTROLLER
    delete env.MESH_TOKEN
    delete env.CI
    const child = spawn(process.execPath, [BIN, 'audit', '--follow', '--limit', '3', '--json'], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const entries: AuditEntry[] = []
    let wake: (() => void) | undefined
    createInterface({input: child.stdout!}).on('line', (line) => {
      entries.push(AuditEntrySchema.parse(JSON.parse(line)))
      wake?.()
    })
    /** Resolves once `n` lines came (bounded: fails after 10 s). */
    const lines = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${entries.length} of ${n} lines: ${JSON.stringify(entries)}`)),
          10_000,
        )
        wake = () => {
          if (entries.length < n) return
          clearTimeout(timer)
          resolve()
        }
        wake()
      })
    try {
      const newest = (await new ControllerClient({url: ctl.url, token: ctl.adminToken}).audit({limit: 3}))
        .items
      await lines(3)
      // The backlog: the three newest, oldest first.
      expect(entries.map((e) => e.id)).toEqual(newest.map((e) => e.id).reverse())
      // Then what is written while it follows, in chain order.
      for (const name of ['follow-a', 'follow-b']) {
        const r = await run([
          'network',
          'create',
          name,
          '--cidr',
          name === 'follow-a' ? '10.81.0.0/24' : '10.82.0.0/24',
          '--json',
        ])
        expect(r.code, r.stderr).toBe(0)
      }
      await lines(5)
      expect(entries.slice(3).map((e) => [e.action, e.detail.name])).toEqual([
        ['network.create', 'follow-a'],
        ['network.create', 'follow-b'],
      ])
      expect(entries[4]!.seq).toBe(entries[3]!.seq! + 1)
    } finally {
      child.kill('SIGTERM')
    }
  })

  it('exits 77 when the role does not allow the action', async () => {
    json(
      UserSchema,
      await run(
        ['user', 'create', 'viewer', '--role', 'guest', '--password-stdin', '--json'],
        'viewer-password-1\n',
      ),
    )
    const guestDir = path.join(tmp, 'guest-config')
    const login = await mesh(['login', '--controller', ctl.url, '--user', 'viewer', '--password-stdin'], {
      configDir: guestDir,
      input: 'viewer-password-1',
    })
    expect(login.code, login.stderr).toBe(0)
    const r = await mesh(['network', 'create', 'nope', '--cidr', '10.79.0.0/24', '--json'], {
      configDir: guestDir,
    })
    expect(r.code).toBe(EXIT.NOPERM)
    expect(wireCode(r)).toBe('FORBIDDEN')
    const human = await mesh(['network', 'delete', 'lab', '--yes'], {configDir: guestDir})
    expect(human.code).toBe(EXIT.NOPERM)
    expect(human.stderr).toContain('FORBIDDEN')
  })

  it('exits 69 when the controller cannot be reached, naming its URL', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`
    const r = await run(['network', 'list'], undefined, {MESH_CONTROLLER: url, MESH_TOKEN: 'mtok_unused'})
    expect(r.code).toBe(EXIT.UNAVAILABLE)
    expect(r.stderr).toContain(`cannot reach the controller at ${url}`)
    const login = await mesh(
      ['login', '--controller', url, '--user', 'admin', '--password-stdin', '--json'],
      {
        configDir: path.join(tmp, 'nowhere'),
        input: 'x',
      },
    )
    expect(login.code).toBe(EXIT.UNAVAILABLE)
    expect(wireCode(login)).toBe('CONTROLLER_UNREACHABLE')
  })

  it('lets MESH_CONTROLLER and MESH_TOKEN stand in for the file', async () => {
    const who = await mesh(['whoami', '--json'], {
      configDir: path.join(tmp, 'env-only'),
      env: {MESH_CONTROLLER: ctl.url, MESH_TOKEN: ctl.adminToken},
    })
    expect(json(WhoamiResponseSchema.extend({controller: z.string()}), who).user.username).toBe('admin')
    const badToken = await run(['whoami'], undefined, {MESH_TOKEN: 'not-a-token'})
    expect(badToken.code).toBe(EXIT.NOUSER)
  })

  it('deletes a network only with --yes when there is no terminal', async () => {
    const r = await run(['network', 'delete', 'lab'])
    expect(r.code).toBe(EXIT.USAGE)
    json(OkSchema, await run(['network', 'delete', 'lab', '--yes', '--json']))
    expect((await run(['network', 'show', 'lab'])).code).toBe(EXIT.NOINPUT)
  })

  it('logs out by revoking the token, idempotently', async () => {
    const file = path.join(adminDir, 'credentials.json')
    const {token} = JSON.parse(await fs.readFile(file, 'utf8')) as {token: string}
    const out = await run(['logout', '--json'])
    expect(JSON.parse(out.stdout)).toEqual({revoked: true, removed: true})
    expect(existsSync(file)).toBe(false)
    const twice = await run(['logout'])
    expect(twice.code).toBe(0)
    // The old token no longer works on the controller.
    const reused = await run(['whoami'], undefined, {MESH_CONTROLLER: ctl.url, MESH_TOKEN: token})
    expect(reused.code).toBe(EXIT.NOUSER)
  })
})

describe('mesh admin CLI against the built controller binary', () => {
  let tmp: string
  let child: ChildProcess | undefined
  const output: string[] = []

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child!.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    if (tmp) await fs.rm(tmp, {recursive: true, force: true})
  })

  it('logs in with the generated first-start password and creates an invite for that URL', async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-cli-bin-'))
    const dataDir = path.join(tmp, 'data')
    const env: Record<string, string | undefined> = {...process.env}
    delete env.MESH_ADMIN_PASSWORD
    child = spawn(
      process.execPath,
      [BIN, 'controller', 'start', '--listen', '127.0.0.1:0', '--data-dir', dataDir],
      {
        cwd: ROOT,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    child.stderr!.on('data', (c: Buffer) => output.push(c.toString()))
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "listening" line in 20 s:\n${output.join('')}`)),
        20_000,
      )
      child!.once('exit', (code) => reject(new Error(`controller exited ${code}:\n${output.join('')}`)))
      createInterface({input: child!.stdout!}).on('line', (line) => {
        output.push(line)
        try {
          const rec = JSON.parse(line) as {msg?: string; url?: string}
          if (rec.msg === 'listening' && rec.url) {
            clearTimeout(timer)
            resolve(rec.url)
          }
        } catch {
          // not a JSON log line
        }
      })
    })
    const password = (await fs.readFile(path.join(dataDir, 'initial-admin-password'), 'utf8')).trim()
    const configDir = path.join(tmp, 'config')
    const login = await mesh(['login', '--controller', url, '--user', 'admin', '--password-stdin'], {
      configDir,
      input: password,
    })
    expect(login.code, login.stderr).toBe(0)
    expect(login.stdout).toContain(`Logged in to ${url.replace(/\/$/, '')} as admin`)
    const net = await mesh(['network', 'create', 'bin-net', '--cidr', '10.88.0.0/24', '--json'], {configDir})
    expect(json(NetworkSchema, net).name).toBe('bin-net')
    const inv = await mesh(['invite', 'create', '--network', 'bin-net'], {configDir})
    expect(inv.code, inv.stderr).toBe(0)
    expect(decodeJoinString(inv.stdout)?.controller.replace(/\/$/, '')).toBe(url.replace(/\/$/, ''))
  })
})
