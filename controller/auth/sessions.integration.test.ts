// Access and refresh tokens, sessions and TOTP MFA over real HTTP against an in-process
// controller on a temp SQLite file, with time injected (a FakeClock the tests move; no sleeps).
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {hashSecret, newId, newSecret} from './secrets.js'
import {ACCESS_TTL_MS, REFRESH_GRACE_MS} from './sessions.js'
import {totpCode} from './totp.js'
import {auditContext} from '../context.js'
import {storeWrites} from '../domain/writes.js'
import {client} from '../testing/client.js'

const PASSWORD = 'correct horse battery staple'

interface Reply {
  status: number
  json: {error?: {code: string}} & Record<string, unknown>
}

let ctl: TestController
let clock: FakeClock
let seq = 0

/** The shared test client (controller/testing/client.ts), its parsed body as `json`. */
async function call(
  method: string,
  path: string,
  opts: {token?: string; body?: unknown} = {},
): Promise<Reply> {
  const r = await client(ctl.url).req<Reply['json']>(method, path, opts)
  return {status: r.status, json: r.body ?? {}}
}
const code = (r: Reply) => r.json.error?.code

interface Pair {
  token: string
  refreshToken: string
  sessionId: string
  expiresAt: string
}

/** A fresh admin access token (the tests move the clock past any one's expiry). */
async function adminToken(): Promise<string> {
  const r = await call('POST', '/api/v1/login', {body: {username: 'admin', password: ctl.adminPassword}})
  expect(r.status, JSON.stringify(r.json)).toBe(200)
  return r.json.token as string
}

async function newUser(
  role: 'member' | 'moderator' | 'admin' | 'owner' = 'member',
): Promise<{id: string; username: string}> {
  const username = `u${++seq}-${Math.random().toString(36).slice(2, 7)}`
  const r = await call('POST', '/api/v1/users', {
    token: await adminToken(),
    body: {username, password: PASSWORD, role},
  })
  expect(r.status, JSON.stringify(r.json)).toBe(201)
  return {id: r.json.id as string, username}
}
async function login(username: string, otp?: string): Promise<Reply> {
  return call('POST', '/api/v1/login', {body: {username, password: PASSWORD, ...(otp ? {otp} : {})}})
}
async function loginPair(username: string): Promise<Pair> {
  const r = await login(username)
  expect(r.status, JSON.stringify(r.json)).toBe(200)
  return r.json as unknown as Pair
}
const refresh = (refreshToken: string) => call('POST', '/api/v1/token/refresh', {body: {refreshToken}})
const whoami = (token: string) => call('GET', '/api/v1/whoami', {token})

beforeAll(async () => {
  // Starts at the real time so that the CLI-side expiry checks (local clock) would agree.
  clock = new FakeClock(Date.now())
  ctl = await startTestController({clock, loginFailuresPerMinute: 10})
})
afterAll(async () => {
  await ctl?.close()
})

describe('access and refresh tokens', () => {
  it('gives a short-lived access token and a refresh token; each refresh hands out a new pair and retires the old refresh token', async () => {
    const user = await newUser()
    const first = await loginPair(user.username)
    expect(first.token).toMatch(/^mtok_/)
    expect(first.refreshToken).toMatch(/^mref_/)
    expect(Date.parse(first.expiresAt) - clock.now()).toBe(ACCESS_TTL_MS)

    const second = await refresh(first.refreshToken)
    expect(second.status, JSON.stringify(second.json)).toBe(200)
    expect(second.json.sessionId).toBe(first.sessionId)
    const third = await refresh(second.json.refreshToken as string)
    expect(third.status).toBe(200)
    expect(third.json.sessionId).toBe(first.sessionId)
    expect(new Set([first.refreshToken, second.json.refreshToken, third.json.refreshToken]).size).toBe(3)
    // Every access token of the family works until it expires.
    for (const t of [first.token, second.json.token, third.json.token])
      expect((await whoami(t as string)).status).toBe(200)
  })

  it('answers TOKEN_EXPIRED for an expired access token, and a refresh brings a working one', async () => {
    const user = await newUser()
    const pair = await loginPair(user.username)
    clock.advance(ACCESS_TTL_MS + 1000)
    const expired = await whoami(pair.token)
    expect(expired.status).toBe(401)
    expect(code(expired)).toBe('TOKEN_EXPIRED')
    const next = await refresh(pair.refreshToken)
    expect(next.status).toBe(200)
    expect((await whoami(next.json.token as string)).status).toBe(200)
  })

  it('keeps answering TOKEN_EXPIRED for an expired token of the session after another process refreshed it', async () => {
    const user = await newUser()
    const pair = await loginPair(user.username)
    clock.advance(ACCESS_TTL_MS + 1000)
    // One process refreshes; another still holds the old access token.
    expect((await refresh(pair.refreshToken)).status).toBe(200)
    expect(code(await whoami(pair.token))).toBe('TOKEN_EXPIRED')
  })

  it('revokes the whole family when a retired refresh token comes back, at once, and audits it', async () => {
    const user = await newUser()
    const first = await loginPair(user.username)
    const second = await refresh(first.refreshToken)
    const third = await refresh(second.json.refreshToken as string)
    expect(third.status).toBe(200)
    clock.advance(REFRESH_GRACE_MS + 1000)
    // The thief replays the first refresh token.
    const replay = await refresh(first.refreshToken)
    expect(replay.status).toBe(401)
    expect(code(replay)).toBe('REFRESH_TOKEN_REUSED')
    // Every access token of the family, the newest included, stops working at once...
    for (const t of [first.token, second.json.token, third.json.token]) {
      const r = await whoami(t as string)
      expect(r.status).toBe(401)
      expect(code(r)).toBe('UNAUTHENTICATED')
    }
    // ...and so does the family's current refresh token.
    expect(code(await refresh(third.json.refreshToken as string))).toBe('REFRESH_TOKEN_INVALID')
    const audit = await call('GET', '/api/v1/audit?limit=500', {token: await adminToken()})
    const items = audit.json.items as {action: string; targetId: string}[]
    expect(items.some((e) => e.action === 'session.reuse_detected' && e.targetId === first.sessionId)).toBe(
      true,
    )
  })

  it("takes the same client's second use of a refresh token within the grace for a race, not a replay", async () => {
    const user = await newUser()
    const pair = await loginPair(user.username)
    const winner = await refresh(pair.refreshToken)
    expect(winner.status).toBe(200)
    const loser = await refresh(pair.refreshToken)
    expect(loser.status).toBe(409)
    expect(code(loser)).toBe('REFRESH_TOKEN_RACED')
    // Nothing was revoked: the winner's pair works.
    expect((await whoami(winner.json.token as string)).status).toBe(200)
    expect((await refresh(winner.json.refreshToken as string)).status).toBe(200)
  })

  it('refuses an unknown or malformed refresh token', async () => {
    expect(code(await refresh(newSecret('refresh')))).toBe('REFRESH_TOKEN_INVALID')
    expect(code(await refresh('mtok_not-a-refresh-token'))).toBe('REFRESH_TOKEN_INVALID')
  })

  it('logs out the whole session: its access and refresh tokens', async () => {
    const user = await newUser()
    const pair = await loginPair(user.username)
    expect((await call('POST', '/api/v1/logout', {token: pair.token})).status).toBe(200)
    expect(code(await whoami(pair.token))).toBe('UNAUTHENTICATED')
    expect(code(await refresh(pair.refreshToken))).toBe('REFRESH_TOKEN_INVALID')
  })

  it('keeps a token from before the upgrade (no session) working until its own expiry', async () => {
    const user = await newUser()
    const token = newSecret('token')
    const at = clock.now()
    await storeWrites(ctl.running.store).createToken(
      {
        id: newId('tok'),
        hash: hashSecret(token),
        userId: user.id,
        expiresAt: new Date(at + 86_400_000).toISOString(),
      },
      auditContext(clock, {actor: 'system', actorName: 'test'}, {sourceAddress: null, requestId: null}),
    )
    expect((await whoami(token)).status).toBe(200)
    clock.advance(ACCESS_TTL_MS * 2)
    expect((await whoami(token)).status).toBe(200)
    clock.advance(86_400_000)
    const after = await whoami(token)
    expect(after.status).toBe(401)
    expect(code(after)).toBe('UNAUTHENTICATED')
  })
})

describe('sessions', () => {
  it('lists the caller’s live sessions with the current one marked, and revoking one stops its tokens at once', async () => {
    const user = await newUser()
    const a = await loginPair(user.username)
    const b = await loginPair(user.username)
    const list = await call('GET', '/api/v1/sessions', {token: a.token})
    expect(list.status).toBe(200)
    const items = list.json.items as {id: string; current: boolean; userId: string}[]
    expect(items.map((s) => s.id)).toEqual([a.sessionId, b.sessionId])
    expect(items.find((s) => s.current)?.id).toBe(a.sessionId)
    const revoked = await call('DELETE', `/api/v1/sessions/${b.sessionId}`, {token: a.token})
    expect(revoked.status).toBe(200)
    expect(code(await whoami(b.token))).toBe('UNAUTHENTICATED')
    expect(code(await refresh(b.refreshToken))).toBe('REFRESH_TOKEN_INVALID')
    expect((await whoami(a.token)).status).toBe(200)
    const after = (await call('GET', '/api/v1/sessions', {token: a.token})).json.items as {id: string}[]
    expect(after.map((s) => s.id)).toEqual([a.sessionId])
  })

  it("lets a user manager (tenant.manage: owners and admins) list and revoke a user's sessions, a member neither, an admin not an owner's", async () => {
    const owner = await newUser('owner')
    const adminPair = await loginPair((await newUser('admin')).username)
    const moderatorPair = await loginPair((await newUser('moderator')).username)
    const other0 = await newUser()
    expect(
      (await call('GET', `/api/v1/sessions?user=${other0.id}`, {token: moderatorPair.token})).status,
    ).toBe(403)
    const member = await newUser()
    const other = await newUser()
    const ownerPair = await loginPair(owner.username)
    const memberPair = await loginPair(member.username)
    const otherPair = await loginPair(other.username)
    const asMember = await call('GET', `/api/v1/sessions?user=${other.id}`, {token: memberPair.token})
    expect(asMember.status).toBe(403)
    const revokeAsMember = await call('DELETE', `/api/v1/sessions/${otherPair.sessionId}`, {
      token: memberPair.token,
    })
    expect(revokeAsMember.status).toBe(404)
    const asOwner = await call('GET', `/api/v1/sessions?user=${other.id}`, {token: ownerPair.token})
    expect((asOwner.json.items as {id: string}[]).map((s) => s.id)).toEqual([otherPair.sessionId])
    // An admin may list and revoke a member's sessions, not the owner's (OUTRANKED), as for roles.
    expect(code(await call('GET', `/api/v1/sessions?user=${owner.id}`, {token: adminPair.token}))).toBe(
      'OUTRANKED',
    )
    const ownerByAdmin = await call('DELETE', `/api/v1/sessions/${ownerPair.sessionId}`, {
      token: adminPair.token,
    })
    expect(code(ownerByAdmin)).toBe('OUTRANKED')
    expect(
      (await call('DELETE', `/api/v1/sessions/${otherPair.sessionId}`, {token: adminPair.token})).status,
    ).toBe(200)
    expect(code(await whoami(otherPair.token))).toBe('UNAUTHENTICATED')
    expect((await whoami(ownerPair.token)).status).toBe(200)
  })
})

describe('TOTP MFA', () => {
  /** A user with MFA on: its secret and recovery codes. */
  async function withMfa(): Promise<{
    username: string
    secret: string
    recoveryCodes: string[]
    token: string
  }> {
    const user = await newUser()
    const {token} = await loginPair(user.username)
    const enable = await call('POST', '/api/v1/user/mfa', {token})
    expect(enable.status).toBe(200)
    const secret = enable.json.secret as string
    expect(enable.json.uri).toMatch(/^otpauth:\/\/totp\/mesh:.*secret=.*&period=30/)
    const confirm = await call('POST', '/api/v1/user/mfa/confirm', {
      token,
      body: {code: totpCode(secret, clock.now())},
    })
    expect(confirm.status, JSON.stringify(confirm.json)).toBe(200)
    // The code that confirmed is used: logins wait for the next step. A minute also lets the
    // failed-login window of 127.0.0.1 (every test's address) start afresh.
    clock.advance(61_000)
    return {username: user.username, secret, recoveryCodes: confirm.json.recoveryCodes as string[], token}
  }

  it('is off until confirmed with a code; a wrong code does not confirm it', async () => {
    const user = await newUser()
    const {token} = await loginPair(user.username)
    const enable = await call('POST', '/api/v1/user/mfa', {token})
    const secret = enable.json.secret as string
    // Pending: login does not ask yet.
    expect((await login(user.username)).status).toBe(200)
    const wrong = totpCode(secret, clock.now() + 5 * 60_000)
    expect(code(await call('POST', '/api/v1/user/mfa/confirm', {token, body: {code: wrong}}))).toBe(
      'MFA_CODE_INVALID',
    )
    expect((await login(user.username)).status).toBe(200)
    const ok = await call('POST', '/api/v1/user/mfa/confirm', {
      token,
      body: {code: totpCode(secret, clock.now())},
    })
    expect(ok.status).toBe(200)
    expect(ok.json.recoveryCodes).toHaveLength(10)
    expect(code(await call('POST', '/api/v1/user/mfa', {token}))).toBe('MFA_ALREADY_ENABLED')
  })

  it('asks for the code at login, takes it once, and refuses it again in its window', async () => {
    const u = await withMfa()
    const without = await login(u.username)
    expect(without.status).toBe(401)
    expect(code(without)).toBe('MFA_REQUIRED')
    const otp = totpCode(u.secret, clock.now())
    expect((await login(u.username, otp)).status).toBe(200)
    const replay = await login(u.username, otp)
    expect(code(replay)).toBe('MFA_CODE_INVALID')
    // A code of the step before (within the ±1 window) is older than the one used: refused too.
    expect(code(await login(u.username, totpCode(u.secret, clock.now() - 30_000)))).toBe('MFA_CODE_INVALID')
    clock.advance(30_000)
    expect((await login(u.username, totpCode(u.secret, clock.now()))).status).toBe(200)
  })

  it('accepts a recovery code once, in any case and with or without dashes', async () => {
    const u = await withMfa()
    const rc = u.recoveryCodes[3]!
    expect((await login(u.username, rc.toUpperCase().replace(/-/g, ''))).status).toBe(200)
    expect(code(await login(u.username, rc))).toBe('MFA_CODE_INVALID')
    expect((await login(u.username, u.recoveryCodes[4]!)).status).toBe(200)
  })

  it('counts wrong codes against the login limits', async () => {
    const u = await withMfa()
    const codes: (string | undefined)[] = []
    for (let i = 0; i < 12; i++) codes.push(code(await login(u.username, '000000')))
    expect(codes.filter((c) => c === 'MFA_CODE_INVALID').length).toBeLessThanOrEqual(10)
    expect(codes.at(-1)).toBe('RATE_LIMITED')
    clock.advance(120_000)
  })

  it('turns off with a current code (or a recovery code), and login stops asking', async () => {
    const u = await withMfa()
    expect(
      code(
        await call('POST', '/api/v1/user/mfa/disable', {token: u.token, body: {code: 'zzzz-zzzz-zzzz-zzzz'}}),
      ),
    ).toBe('MFA_CODE_INVALID')
    const off = await call('POST', '/api/v1/user/mfa/disable', {
      token: u.token,
      body: {code: totpCode(u.secret, clock.now())},
    })
    expect(off.status, JSON.stringify(off.json)).toBe(200)
    expect((await login(u.username)).status).toBe(200)
    expect(
      code(await call('POST', '/api/v1/user/mfa/disable', {token: u.token, body: {code: '123456'}})),
    ).toBe('MFA_NOT_ENABLED')
  })
})
