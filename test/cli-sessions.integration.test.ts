/**
 * Sessions, token refresh and MFA through the BUILT `mesh` binary (stdin not a terminal, its own
 * config dir) against a real controller on a temp SQLite file whose clock the test moves: login
 * (with --otp once MFA is on), the CLI refreshing an expired access token by itself (also from
 * several processes at once), session list/revoke and logout. Needs `bash scripts/build.sh`.
 */
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'
import {ROOT, json, mesh, wireCode} from './cli-runner.js'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {ACCESS_TTL_MS} from '../controller/auth/sessions.js'
import {totpCode} from '../controller/auth/totp.js'
import {EXIT} from '../shared/errors.js'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {
  MfaConfirmResponseSchema,
  OkSchema,
  SessionListSchema,
  WhoamiResponseSchema,
} from '../shared/protocol/control-api.js'

const PASSWORD = 'correct horse battery staple'
const CredentialsOnDisk = z.object({token: z.string(), refreshToken: z.string(), sessionId: z.string()})

describe('mesh sessions, refresh and MFA against a real controller', () => {
  let ctl: TestController
  let clock: FakeClock
  let tmp: string
  let dir: string
  const run = (args: string[], input?: string) => mesh(args, {configDir: dir, input})
  const creds = async () =>
    CredentialsOnDisk.parse(JSON.parse(await fs.readFile(path.join(dir, 'credentials.json'), 'utf8')))
  const api = async (method: string, p: string, body?: unknown, token?: string) => {
    const res = await fetch(`${ctl.url}${p}`, {
      method,
      headers: {
        ...(body === undefined ? {} : {'content-type': 'application/json'}),
        ...(token ? {authorization: `Bearer ${token}`} : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    return {
      status: res.status,
      json: (await res.json()) as Record<string, unknown> & {error?: {code: string}},
    }
  }
  const login = (extra: string[] = []) =>
    run(
      ['login', '--controller', ctl.url, '--user', 'carol', '--password-stdin', '--json', ...extra],
      PASSWORD,
    )

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/cli/commands/session/list.js'))) {
      throw new Error('the CLI is not built: run `bash scripts/build.sh` first')
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-cli-sessions-'))
    dir = path.join(tmp, 'config')
    // The CLI's own clock is the real one: the controller's starts there, and only it moves.
    clock = new FakeClock(Date.now())
    ctl = await startTestController({clock})
    const created = await api(
      'POST',
      '/api/v1/users',
      {username: 'carol', password: PASSWORD, role: 'member'},
      ctl.adminToken,
    )
    expect(created.status).toBe(201)
  })
  afterAll(async () => {
    await ctl?.close()
    if (tmp) await fs.rm(tmp, {recursive: true, force: true})
  })

  it('logs in with a refresh token on disk (0600) and lists the session as the current one', async () => {
    const r = await login()
    expect(r.code, r.stderr).toBe(0)
    const c = await creds()
    expect(c.refreshToken).toMatch(/^mref_/)
    expect((await fs.stat(path.join(dir, 'credentials.json'))).mode & 0o777).toBe(0o600)
    const list = json(SessionListSchema, await run(['session', 'list', '--json']))
    expect(list.items).toHaveLength(1)
    expect(list.items[0]).toMatchObject({id: c.sessionId, current: true})
  })

  it('refreshes an expired access token by itself, retries, and stores the new pair', async () => {
    const before = await creds()
    clock.advance(ACCESS_TTL_MS + 60_000)
    const who = json(WhoamiResponseSchema, await run(['whoami', '--json']))
    expect(who.user.username).toBe('carol')
    const after = await creds()
    expect(after.sessionId).toBe(before.sessionId)
    expect(after.token).not.toBe(before.token)
    expect(after.refreshToken).not.toBe(before.refreshToken)
    expect((await fs.stat(path.join(dir, 'credentials.json'))).mode & 0o777).toBe(0o600)
    expect(existsSync(path.join(dir, 'credentials.json.lock'))).toBe(false)
  })

  it('refreshes before the first request when the stored token is past its expiry by the local clock', async () => {
    const file = path.join(dir, 'credentials.json')
    const stored = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>
    await fs.writeFile(
      file,
      JSON.stringify({...stored, expiresAt: new Date(Date.now() - 1000).toISOString()}),
      {
        mode: 0o600,
      },
    )
    json(WhoamiResponseSchema, await run(['whoami', '--json']))
    const after = await creds()
    expect(after.token).not.toBe(stored.token)
    expect(after.sessionId).toBe(stored.sessionId)
  })

  it('lets several CLI processes find the token expired at once without tripping reuse detection', async () => {
    const before = await creds()
    clock.advance(ACCESS_TTL_MS + 60_000)
    const runs = await Promise.all([0, 1, 2, 3].map(() => run(['whoami', '--json'])))
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    const after = await creds()
    expect(after.sessionId).toBe(before.sessionId)
    // The session is alive: the stored pair works and the session is still listed.
    const list = json(SessionListSchema, await run(['session', 'list', '--json']))
    expect(list.items.map((s) => s.id)).toEqual([before.sessionId])
    expect((await api('GET', '/api/v1/whoami', undefined, after.token)).status).toBe(200)
  })

  it('revokes another session by id: its tokens stop working at once', async () => {
    const other = await api('POST', '/api/v1/login', {username: 'carol', password: PASSWORD})
    const otherSession = other.json.sessionId as string
    const listed = json(SessionListSchema, await run(['session', 'list', '--json']))
    expect(listed.items.map((s) => s.id)).toContain(otherSession)
    json(OkSchema, await run(['session', 'revoke', otherSession, '--json']))
    expect((await api('GET', '/api/v1/whoami', undefined, other.json.token as string)).json.error?.code).toBe(
      'UNAUTHENTICATED',
    )
    const notFound = await run(['session', 'revoke', otherSession.replace(/.$/, '0') + 'x', '--json'])
    expect(notFound.code).toBe(EXIT.NOINPUT)
  })

  it('turns MFA on, then login needs --otp (MFA_REQUIRED, exit 67, without a terminal) and a recovery code works once', async () => {
    // For people: the URI and a QR code; without a terminal it stops before confirming.
    const human = await run(['user', 'mfa', 'enable'])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toMatch(/otpauth:\/\/totp\/mesh:carol\?/)
    expect(human.stdout).toMatch(/[▀▄█]{10}/)
    expect(human.stdout).toContain('mesh user mfa confirm CODE')
    // A second enable replaces the pending secret.
    const setup = await run(['user', 'mfa', 'enable', '--json'])
    const {secret, uri, enabled} = json(
      z.object({secret: z.string(), uri: z.string(), enabled: z.boolean()}),
      setup,
    )
    expect(enabled).toBe(false)
    expect(uri).toMatch(/^otpauth:\/\/totp\//)
    const confirmed = json(
      MfaConfirmResponseSchema,
      await run(['user', 'mfa', 'confirm', totpCode(secret, clock.now()), '--json']),
    )
    expect(confirmed.recoveryCodes).toHaveLength(10)

    const without = await login()
    expect(without.code).toBe(EXIT.NOUSER)
    expect(wireCode(without)).toBe('MFA_REQUIRED')
    clock.advance(30_000)
    const withCode = await login(['--otp', totpCode(secret, clock.now())])
    expect(withCode.code, withCode.stderr).toBe(0)
    const replayed = await login(['--otp', totpCode(secret, clock.now())])
    expect(wireCode(replayed)).toBe('MFA_CODE_INVALID')
    const rc = confirmed.recoveryCodes[0]!
    expect((await login(['--otp', rc])).code).toBe(0)
    expect(wireCode(await login(['--otp', rc]))).toBe('MFA_CODE_INVALID')

    json(OkSchema, await run(['user', 'mfa', 'disable', '--code', confirmed.recoveryCodes[1]!, '--json']))
    expect((await login()).code).toBe(0)
  })

  it('logs out by revoking the session: both its tokens stop working', async () => {
    const c = await creds()
    const out = await run(['logout', '--json'])
    expect(out.code, out.stderr).toBe(0)
    expect(JSON.parse(out.stdout)).toMatchObject({revoked: true, removed: true})
    expect((await api('GET', '/api/v1/whoami', undefined, c.token)).json.error?.code).toBe('UNAUTHENTICATED')
    expect(
      (await api('POST', '/api/v1/token/refresh', {refreshToken: c.refreshToken})).json.error?.code,
    ).toBe('REFRESH_TOKEN_INVALID')
  })
})
