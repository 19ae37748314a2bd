/**
 * People join tenants by invite, the moderator role, and deleting a user with its nodes, end to
 * end: the BUILT `mesh` binary (stdin a pipe, its own config dir per person) against a real
 * controller on a temp SQLite file, and a peer's real netmap WebSocket to see a deleted user's
 * nodes leave. Needs `bash scripts/build.sh` first.
 */
import {randomBytes} from 'node:crypto'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'
import {ControllerClient} from '../cli/lib/controller-client.js'
import {ROOT, json, mesh as runMesh, wireCode} from './cli-runner.js'
import {startTestController} from '../controller/testing/test-controller.js'
import {connectWs} from '../controller/testing/ws-client.js'
import {EXIT} from '../shared/errors.js'
import {
  CreateUserInviteResponseSchema,
  DeleteUserResponseSchema,
  NodeSchema,
  UserInviteSchema,
  UserSchema,
  WhoamiResponseSchema,
  page,
} from '../shared/protocol/control-api.js'

const LoginResultSchema = z.object({
  controller: z.string(),
  user: UserSchema,
  tenant: z.object({name: z.string()}),
})
const key = () => randomBytes(32).toString('base64')

describe('people join by invite, moderators, and deleting a user with nodes, through the CLI', () => {
  let ctl: Awaited<ReturnType<typeof startTestController>>
  let tmp: string
  let admin: ControllerClient
  const as = (who: string, args: string[], input?: string) =>
    runMesh(args, {configDir: path.join(tmp, `${who}-config`), input})
  const invite = async (who: string, args: string[]) =>
    json(CreateUserInviteResponseSchema, await as(who, ['user', 'invite', ...args, '--json']))
  const signup = (who: string, inv: string, password = `${who}-password-1`) =>
    as(who, ['signup', inv, '--username', who, '--password-stdin', '--json'], password)

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/cli/commands/user/invite/list.js'))) {
      throw new Error('the CLI is not built: run `bash scripts/build.sh` first')
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-cli-people-'))
    ctl = await startTestController({dataDir: path.join(tmp, 'controller')})
    admin = new ControllerClient({url: ctl.url, token: ctl.adminToken})
    const r = await as(
      'admin',
      ['login', '--controller', ctl.url, '--user', 'admin', '--password-stdin'],
      ctl.adminPassword,
    )
    expect(r.code, r.stderr).toBe(0)
  })

  afterAll(async () => {
    await ctl?.close()
    if (tmp) await fs.rm(tmp, {recursive: true, force: true})
  })

  it('makes an account with a user invite, with the invite role, logged in at once; a used-up invite makes no second one', async () => {
    const made = await invite('admin', ['--role', 'moderator'])
    expect(made.inviteString).toMatch(/^meshuser1_/)
    expect(made.invite).toMatchObject({role: 'moderator', maxUses: 1, uses: 0, revokedAt: null})
    const human = await as('admin', ['user', 'invite', '--role', 'member'])
    expect(human.code, human.stderr).toBe(0)
    // Only the string on stdout, so INV=$(mesh user invite) works.
    expect(human.stdout.trim()).toMatch(/^meshuser1_[A-Za-z0-9_-]+$/)

    const mo = json(LoginResultSchema, await signup('mo', made.inviteString))
    expect(mo.user).toMatchObject({username: 'mo', role: 'moderator'})
    expect(mo.controller).toBe(ctl.url)
    const me = json(WhoamiResponseSchema, await as('mo', ['whoami', '--json']))
    expect(me.user.username).toBe('mo')

    // A made-up code is refused before any password is hashed.
    await expect(
      new ControllerClient({url: ctl.url}).signup({
        invite: `uinv_${'x'.repeat(43)}`,
        username: 'nobody',
        password: 'nobody-password-1',
      }),
    ).rejects.toMatchObject({code: 'INVITE_INVALID'})
    const again = await signup('mo2', made.inviteString)
    expect(again.code).toBe(EXIT.NOPERM)
    expect(wireCode(again)).toBe('INVITE_USED_UP')
    const listed = json(page(UserInviteSchema), await as('admin', ['user', 'invite', 'list', '--json']))
    expect(listed.items.find((i) => i.id === made.invite.id)?.uses).toBe(1)
    const audit = await admin.audit({limit: 50})
    expect(audit.items.find((e) => e.action === 'user.signup')).toMatchObject({
      actorName: 'mo',
      detail: {role: 'moderator', invite: made.invite.id},
    })
  })

  it('lets a moderator invite people and approve nodes, up to its own role, and not configure networks or users', async () => {
    const tooHigh = await as('mo', ['user', 'invite', '--role', 'admin', '--json'])
    expect(tooHigh.code).toBe(EXIT.NOPERM)
    expect(wireCode(tooHigh)).toBe('ROLE_TOO_HIGH')
    const mine = await invite('mo', ['--role', 'member', '--unlimited', '--expires', '1d'])
    expect(mine.invite).toMatchObject({role: 'member', maxUses: null})

    const revoked = json(
      UserInviteSchema,
      await as('mo', ['user', 'invite', 'revoke', mine.invite.id, '--json']),
    )
    expect(revoked.revokedAt).not.toBeNull()
    const late = await signup('late', mine.inviteString)
    expect(wireCode(late)).toBe('INVITE_REVOKED')

    const net = await admin.createNetwork({name: 'gated', cidr: '10.91.0.0/24', joinPolicy: 'approval'})
    const {key: authKey} = await admin.createAuthKey({network: net.id}, {reusable: true})
    const {node} = await admin.register({authKey, publicKey: key(), name: 'waiting'})
    expect(node.status).toBe('pending')
    const approved = json(NodeSchema, await as('mo', ['node', 'approve', node.id, '--json']))
    expect(approved.status).toBe('active')

    for (const args of [
      ['network', 'create', 'nope', '--cidr', '10.92.0.0/24', '--json'],
      ['network', 'set', 'gated', '--description', 'no', '--json'],
      ['user', 'list', '--json'],
      ['policy', 'get', '--json'],
    ]) {
      const r = await as('mo', args)
      expect(r.code, args.join(' ')).toBe(EXIT.NOPERM)
      expect(wireCode(r), args.join(' ')).toBe('FORBIDDEN')
    }
  })

  it('refuses a device join string, and asks for the user name only on a terminal', async () => {
    const {items} = await admin.listNetworks()
    const {joinString} = await admin.createInvite({network: items[0]!.id}, {})
    const wrong = await signup('dev', joinString)
    expect(wrong.code).toBe(EXIT.USAGE)
    expect(wireCode(wrong)).toBe('INVALID_ARGUMENT')
    expect(wrong.stdout).toContain('device invite')
    const {inviteString} = await invite('admin', [])
    const noName = await as('pat', ['signup', inviteString, '--password-stdin', '--json'], 'pat-password-1')
    expect(noName.code).toBe(EXIT.USAGE)
    expect(noName.stdout).toContain('--username')
  })

  it('refuses to delete a user who owns nodes unless told; removing them sends every peer a delta without them; reassigning keeps them', async () => {
    const net = await admin.createNetwork({name: 'open', cidr: '10.93.0.0/24', joinPolicy: 'open'})
    const {joinString: _unused, ...peerInvite} = await admin.createInvite({network: net.id}, {})
    const peer = await admin.register({invite: peerInvite.code, publicKey: key(), name: 'peer'})
    // ned and nia sign up by invite and register nodes of their own (open network, user token).
    const people: Record<string, {token: string; id: string}> = {}
    for (const who of ['ned', 'nia']) {
      const {code} = await admin.createUserInvite({role: 'member'})
      const res = await new ControllerClient({url: ctl.url}).signup({
        invite: code,
        username: who,
        password: `${who}-password-1`,
      })
      people[who] = {token: res.token, id: res.user.id}
    }
    // The client sends no token on `register` (auth none), so the open-network path goes by hand.
    const own = async (who: string, name: string) => {
      const res = await fetch(`${ctl.url}/api/v1/register`, {
        method: 'POST',
        headers: {'content-type': 'application/json', authorization: `Bearer ${people[who]!.token}`},
        body: JSON.stringify({network: 'open', publicKey: key(), name}),
      })
      expect(res.status).toBe(201)
      return NodeSchema.parse(((await res.json()) as {node: unknown}).node)
    }
    const nedLaptop = await own('ned', 'ned-laptop')
    const nedPhone = await own('ned', 'ned-phone')
    const niaBox = await own('nia', 'nia-box')
    expect(nedLaptop.ownerId).toBe(people.ned!.id)

    const ws = await connectWs(`${ctl.url}/api/v1/netmap`, peer.credential)
    try {
      const full = await ws.next<{type: string; peers: {id: string}[]}>((f) => f.type === 'full')
      expect(full.peers.map((p) => p.id).sort()).toEqual([nedLaptop.id, nedPhone.id, niaBox.id].sort())

      const refused = await as('admin', ['user', 'delete', 'ned', '--yes', '--json'])
      expect(refused.code).toBe(EXIT.CANTCREAT)
      expect(wireCode(refused)).toBe('USER_HAS_NODES')
      expect(refused.stdout).toContain('ned-laptop')

      const moved = json(
        DeleteUserResponseSchema,
        await as('admin', [
          'user',
          'delete',
          'ned',
          '--nodes',
          'reassign',
          '--to',
          'admin',
          '--yes',
          '--json',
        ]),
      )
      expect(moved.reassignedNodes.sort()).toEqual([nedLaptop.id, nedPhone.id].sort())
      expect((await admin.showNode({id: nedLaptop.id})).ownerId).toBe((await admin.whoami()).user.id)

      const gone = await as('admin', ['user', 'delete', 'nia', '--nodes', 'remove', '--yes'])
      expect(gone.code, gone.stderr).toBe(0)
      expect(gone.stdout).toContain('Removed 1 node(s).')
      await ws.next<{type: string; removed?: string[]}>(
        (f) => f.type === 'delta' && (f.removed ?? []).includes(niaBox.id),
      )
      await expect(admin.showNode({id: niaBox.id})).rejects.toMatchObject({code: 'NOT_FOUND'})
      await expect(admin.showNode({id: nedPhone.id})).resolves.toMatchObject({status: 'active'})
      const actions = (await admin.audit({limit: 20})).items.map((e) => e.action)
      expect(actions.slice(0, 2)).toEqual(['user.delete', 'node.remove'])
    } finally {
      await ws.close()
    }
  })

  it('renames a user, who logs in with the new name, and refuses while the ACL policy names it', async () => {
    const {code} = await admin.createUserInvite({role: 'member'})
    await new ControllerClient({url: ctl.url}).signup({
      invite: code,
      username: 'rita',
      password: 'rita-password-1',
    })
    const renamed = json(UserSchema, await as('admin', ['user', 'rename', 'rita', 'rita.new', '--json']))
    expect(renamed).toMatchObject({username: 'rita.new', role: 'member'})
    const relogin = await as(
      'rita',
      ['login', '--controller', ctl.url, '--user', 'rita.new', '--password-stdin', '--json'],
      'rita-password-1',
    )
    expect(relogin.code, relogin.stdout).toBe(0)
    const taken = await as('admin', ['user', 'rename', 'rita.new', 'admin', '--json'])
    expect(wireCode(taken)).toBe('USERNAME_TAKEN')

    await admin.setPolicy({
      document: '{"acls": [{"src": ["rita.new"], "dst": ["*:*"]}]}',
    })
    try {
      const named = await as('admin', ['user', 'rename', 'rita.new', 'rita', '--json'])
      expect(named.code).toBe(EXIT.CANTCREAT)
      expect(wireCode(named)).toBe('USER_NAMED_IN_POLICY')
      expect((await admin.listUsers()).items.some((u) => u.username === 'rita.new')).toBe(true)
    } finally {
      await admin.deletePolicy()
    }
    const audit = await admin.audit({limit: 20})
    expect(audit.items.find((e) => e.action === 'user.rename')?.detail).toEqual({
      username: 'rita.new',
      previousUsername: 'rita',
    })
  })

  it('says which of --nodes and --to is missing before it calls the controller', async () => {
    const r = await as('admin', ['user', 'delete', 'mo', '--nodes', 'reassign', '--yes', '--json'])
    expect(r.code).toBe(EXIT.USAGE)
    expect(r.stdout).toContain('--to USER')
  })
})
