/**
 * `mesh network member` and `mesh tenant create` end to end: the BUILT `mesh` binary (stdin a
 * pipe, its own config dir per user) against a real controller on a temp SQLite file, proving
 * that a network role really changes what a user may do there and nowhere else, and that a new
 * tenant is walled off from the default one. Needs `bash scripts/build.sh` first.
 */
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'
import {ControllerClient} from '../cli/lib/controller-client.js'
import {ROOT, json, mesh as runMesh, wireCode} from './cli-runner.js'
import {startTestController} from '../controller/testing/test-controller.js'
import {EXIT} from '../shared/errors.js'
import {
  CreateTenantResponseSchema,
  NetworkMemberSchema,
  NetworkSchema,
  OkSchema,
  WhoamiResponseSchema,
  page,
} from '../shared/protocol/control-api.js'

/** Runs the built CLI as one user: each user has its own config dir. */
const mesh = (configDir: string, args: string[], input = '') => runMesh(args, {configDir, input})

describe('network roles and tenants through the CLI', () => {
  let ctl: Awaited<ReturnType<typeof startTestController>>
  let tmp: string
  let guestId: string
  const guestPassword = 'guest-password-1'
  const ownerPassword = 'owner-password-1'
  const as = (who: 'admin' | 'gina' | 'olga', args: string[], input?: string) =>
    mesh(path.join(tmp, `${who}-config`), args, input)
  const login = (who: 'admin' | 'gina' | 'olga', password: string) =>
    as(who, ['login', '--controller', ctl.url, '--user', who, '--password-stdin', '--json'], password)

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/cli/commands/network/member/set.js'))) {
      throw new Error('the CLI is not built: run `bash scripts/build.sh` first')
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-cli-members-'))
    ctl = await startTestController({dataDir: path.join(tmp, 'controller')})
    // Setup goes straight to the API; only the commands under test run through the CLI.
    const api = new ControllerClient({url: ctl.url, token: ctl.adminToken})
    await api.createNetwork({name: 'alpha', cidr: '10.81.0.0/24'})
    await api.createNetwork({name: 'beta', cidr: '10.82.0.0/24'})
    guestId = (await api.createUser({username: 'gina', password: guestPassword, role: 'guest'})).id
    expect((await login('admin', ctl.adminPassword)).code).toBe(0)
    expect((await login('gina', guestPassword)).code).toBe(0)
  })

  afterAll(async () => {
    await ctl?.close()
    if (tmp) await fs.rm(tmp, {recursive: true, force: true})
  })

  it('lists no network roles on a fresh network, and says how to give one', async () => {
    expect(
      json(
        z.object({items: z.array(NetworkMemberSchema)}),
        await as('admin', ['network', 'member', 'list', 'alpha', '--json']),
      ).items,
    ).toEqual([])
    const human = await as('admin', ['network', 'member', 'list', 'alpha'])
    expect(human.code).toBe(0)
    expect(human.stdout).toContain('mesh network member set alpha USER --role admin')
  })

  it('lets a tenant guest made admin of one network create invites there and only there', async () => {
    const before = await as('gina', ['invite', 'create', '--network', 'alpha', '--json'])
    expect(before.code).toBe(EXIT.NOPERM)
    expect(wireCode(before)).toBe('FORBIDDEN')

    const set = json(
      NetworkMemberSchema,
      await as('admin', ['network', 'member', 'set', 'alpha', 'gina', '--role', 'admin', '--json']),
    )
    expect(set).toEqual({userId: guestId, username: 'gina', role: 'admin'})

    const list = json(
      z.object({items: z.array(NetworkMemberSchema)}),
      await as('admin', ['network', 'member', 'list', 'alpha', '--json']),
    )
    expect(list.items).toEqual([{userId: guestId, username: 'gina', role: 'admin'}])
    const table = await as('admin', ['network', 'member', 'list', 'alpha'])
    expect(table.stdout.split('\n')[0]).toMatch(/^USER\s+ROLE\s+ID$/)
    expect(table.stdout).toMatch(new RegExp(`^gina\\s+admin\\s+${guestId}$`, 'm'))

    const there = await as('gina', ['invite', 'create', '--network', 'alpha'])
    expect(there.code, there.stderr).toBe(0)
    expect(there.stdout.trim().split('\n')).toHaveLength(1)
    const elsewhere = await as('gina', ['invite', 'create', '--network', 'beta', '--json'])
    expect(elsewhere.code).toBe(EXIT.NOPERM)
    expect(wireCode(elsewhere)).toBe('FORBIDDEN')
  })

  it('takes a user id as well as a name, and changes an existing role in place', async () => {
    const r = await as('admin', ['network', 'member', 'set', 'alpha', guestId, '--role', 'member'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('gina is now member on alpha.')
    const list = json(
      z.object({items: z.array(NetworkMemberSchema)}),
      await as('admin', ['network', 'member', 'list', 'alpha', '--json']),
    )
    expect(list.items).toEqual([{userId: guestId, username: 'gina', role: 'member'}])
  })

  it('refuses a network role change from a user whose role there does not allow it (exit 77)', async () => {
    // gina is a member of alpha now: members may invite but not configure.
    const r = await as('gina', ['network', 'member', 'set', 'alpha', 'gina', '--role', 'owner', '--json'])
    expect(r.code).toBe(EXIT.NOPERM)
    expect(wireCode(r)).toBe('FORBIDDEN')
  })

  it('exits 66 for a user name nobody has', async () => {
    const r = await as('admin', ['network', 'member', 'set', 'alpha', 'nobody', '--role', 'admin', '--json'])
    expect(r.code).toBe(EXIT.NOINPUT)
    expect(wireCode(r)).toBe('NOT_FOUND')
  })

  it('removes the network role so the tenant role applies again', async () => {
    json(OkSchema, await as('admin', ['network', 'member', 'remove', 'alpha', 'gina', '--json']))
    const list = json(
      z.object({items: z.array(NetworkMemberSchema)}),
      await as('admin', ['network', 'member', 'list', 'alpha', '--json']),
    )
    expect(list.items).toEqual([])
    const after = await as('gina', ['invite', 'create', '--network', 'alpha', '--json'])
    expect(after.code).toBe(EXIT.NOPERM)
    expect(wireCode(after)).toBe('FORBIDDEN')
  })

  it('refuses to create a tenant without a terminal and without --owner-password-stdin (exit 64)', async () => {
    const r = await as('admin', ['tenant', 'create', 'acme', '--owner', 'olga', '--json'])
    expect(r.code).toBe(EXIT.USAGE)
    expect(wireCode(r)).toBe('TTY_REQUIRED')
  })

  it('refuses tenant creation by a user who is not a superuser (exit 77)', async () => {
    const r = await as(
      'gina',
      ['tenant', 'create', 'rogue', '--owner', 'rita', '--owner-password-stdin', '--json'],
      'rita-password-1\n',
    )
    expect(r.code).toBe(EXIT.NOPERM)
    expect(wireCode(r)).toBe('FORBIDDEN')
  })

  it('creates a tenant whose owner can log in and sees none of the default tenant', async () => {
    const created = json(
      CreateTenantResponseSchema,
      await as(
        'admin',
        ['tenant', 'create', 'acme', '--owner', 'olga', '--owner-password-stdin', '--json'],
        `${ownerPassword}\n`,
      ),
    )
    expect(created.tenant.name).toBe('acme')
    expect(created.owner).toMatchObject({username: 'olga', role: 'owner', superuser: false})

    const who = json(
      WhoamiResponseSchema.extend({controller: z.string()}),
      await login('olga', ownerPassword),
    )
    expect(who.tenant.name).toBe('acme')
    const nets = json(page(NetworkSchema), await as('olga', ['network', 'list', '--json']))
    expect(nets.items).toEqual([])
    const foreign = await as('olga', ['network', 'member', 'list', 'alpha', '--json'])
    expect(foreign.code).toBe(EXIT.NOINPUT)
    expect(wireCode(foreign)).toBe('NOT_FOUND')

    // A second tenant of the same name is refused; the human form names the new owner.
    const again = await as(
      'admin',
      ['tenant', 'create', 'acme', '--owner', 'olga2', '--owner-password-stdin'],
      `${ownerPassword}\n`,
    )
    expect(again.code).toBe(EXIT.CANTCREAT)
    expect(again.stderr).toContain('TENANT_NAME_TAKEN')
    const other = await as(
      'admin',
      ['tenant', 'create', 'beta-corp', '--owner', 'bert', '--owner-password-stdin'],
      `${ownerPassword}\n`,
    )
    expect(other.code, other.stderr).toBe(0)
    expect(other.stdout).toMatch(/^tenant:\s+beta-corp$/m)
    expect(other.stdout).toMatch(/^owner:\s+bert$/m)
  })
})
