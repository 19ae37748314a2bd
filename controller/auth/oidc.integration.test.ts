// OIDC login end to end over real HTTP: an in-process controller (temp SQLite) is the OpenID
// client of a real OpenID provider (oidc-provider on 127.0.0.1), and a scripted browser logs the
// test person in. Both flows, identity matching by issuer + subject, group-to-role mapping,
// audit entries, and the hostile cases: wrong state, wrong nonce, another audience, an expired
// ID token, an expired device code.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {client} from '../testing/client.js'
import {
  OTHER_CLIENT_ID,
  TEST_CLIENT_ID,
  browse,
  startTestIdp,
  type TestIdp,
} from '../../test/support/oidc-provider.js'

interface Reply {
  status: number
  json: {error?: {code: string; message: string}} & Record<string, unknown>
}

let idp: TestIdp
let ctl: TestController
let clock: FakeClock

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
const REDIRECT = 'http://127.0.0.1:53682/callback'

/** Starts a code flow; returns its handle and the callback the browser reached as `login`. */
async function codeFlow(
  login: string,
): Promise<{flowId: string; callbackUrl: string; authorizationUrl: string}> {
  const start = await call('POST', '/api/v1/oidc/start', {body: {redirectUri: REDIRECT}})
  expect(start.status, JSON.stringify(start.json)).toBe(200)
  const authorizationUrl = start.json.authorizationUrl as string
  const seen = await browse(authorizationUrl, {login})
  expect(seen.callbackUrl, seen.html?.slice(0, 500)).toBeDefined()
  return {flowId: start.json.flowId as string, callbackUrl: seen.callbackUrl!, authorizationUrl}
}

const finish = (flowId: string, callbackUrl: string) =>
  call('POST', '/api/v1/oidc/finish', {body: {flowId, callbackUrl}})

beforeAll(async () => {
  idp = await startTestIdp()
  idp.groups.set('olga', ['eng', 'mesh-admins'])
  idp.groups.set('dora', ['ops'])
  // The controller's clock starts at the real time (the provider's tokens carry real times);
  // only the device-expiry test moves it.
  clock = new FakeClock(Date.now())
  ctl = await startTestController({
    clock,
    oidc: {
      issuers: [
        {
          name: 'corp',
          issuer: idp.issuer,
          clientId: TEST_CLIENT_ID,
          scopes: ['openid', 'profile', 'email', 'groups'],
          roles: {'mesh-admins': 'admin'},
          allowHttp: true,
        },
      ],
    },
  })
}, 60_000)

afterAll(async () => {
  await ctl?.close()
  await idp?.close()
})

describe('OIDC authorization code flow with PKCE', () => {
  it('lists the configured issuers', async () => {
    const r = await call('GET', '/api/v1/oidc/issuers')
    expect(r.json).toEqual({items: [{name: 'corp', issuer: idp.issuer}]})
  })

  it('creates the user on first login, maps its groups to a tenant role, and matches it by issuer + subject later', async () => {
    const first = await codeFlow('olga')
    const url = new URL(first.authorizationUrl)
    expect(url.searchParams.get('code_challenge_method')).toBe('S256')
    expect(url.searchParams.get('nonce')).toBeTruthy()
    const r = await finish(first.flowId, first.callbackUrl)
    expect(r.status, JSON.stringify(r.json)).toBe(200)
    const user = r.json.user as {id: string; username: string; role: string}
    expect(user).toMatchObject({username: 'olga', role: 'admin'})
    expect((r.json.tenant as {name: string}).name).toBe('default')
    expect(r.json.refreshToken).toMatch(/^mref_/)

    const who = await call('GET', '/api/v1/whoami', {token: r.json.token as string})
    expect((who.json.user as {id: string}).id).toBe(user.id)
    expect(who.json.identities).toEqual([
      {provider: 'corp', issuer: idp.issuer, groups: ['eng', 'mesh-admins']},
    ])

    // The refresh token works as a password login's does.
    const refreshed = await call('POST', '/api/v1/token/refresh', {body: {refreshToken: r.json.refreshToken}})
    expect(refreshed.status).toBe(200)

    // A later login is the same user; losing the group lowers the role to the default.
    idp.groups.set('olga', ['eng'])
    const again = await codeFlow('olga')
    const r2 = await finish(again.flowId, again.callbackUrl)
    expect(r2.status, JSON.stringify(r2.json)).toBe(200)
    expect(r2.json.user).toMatchObject({id: user.id, username: 'olga', role: 'member'})

    const identities = await ctl.running.store.identitiesOf(user.id)
    expect(identities).toEqual([
      expect.objectContaining({issuer: idp.issuer, subject: 'olga', provider: 'corp', groups: ['eng']}),
    ])

    const audit = await call('GET', `/api/v1/audit?actor=user:${user.id}&limit=50`, {token: ctl.adminToken})
    const actions = (audit.json.items as {action: string; detail: Record<string, unknown>}[]).map(
      (e) => e.action,
    )
    expect(actions).toEqual(
      expect.arrayContaining(['user.create', 'user.oidc_login', 'user.login', 'user.update']),
    )
  })

  it('refuses a password login for a user made by OIDC', async () => {
    const f = await codeFlow('nopass')
    expect((await finish(f.flowId, f.callbackUrl)).status).toBe(200)
    const r = await call('POST', '/api/v1/login', {body: {username: 'nopass', password: '!oidc'}})
    expect([r.status, code(r)]).toEqual([401, 'INVALID_CREDENTIALS'])
  })

  it("refuses another login's callback (wrong state), and the flow is then used up", async () => {
    const a = await codeFlow('mallory')
    const b = await codeFlow('mallory')
    const wrong = await finish(a.flowId, b.callbackUrl)
    expect([wrong.status, code(wrong)]).toEqual([401, 'OIDC_LOGIN_FAILED'])
    expect(wrong.json.error?.message).toMatch(/state/)
    const reuse = await finish(a.flowId, a.callbackUrl)
    expect([reuse.status, code(reuse)]).toEqual([401, 'OIDC_FLOW_EXPIRED'])
  })

  it('refuses a callback URL that is not the redirect URI of the login', async () => {
    const a = await codeFlow('mallory')
    const moved = new URL(a.callbackUrl)
    moved.port = '1'
    const r = await finish(a.flowId, moved.href)
    expect([r.status, code(r)]).toEqual([401, 'OIDC_LOGIN_FAILED'])
  })

  it('refuses a redirect URI that is not a loopback callback', async () => {
    for (const redirectUri of [
      'http://example.test:8080/cb',
      'https://127.0.0.1:9/cb',
      'http://localhost:9/cb',
    ]) {
      const r = await call('POST', '/api/v1/oidc/start', {body: {redirectUri}})
      expect([r.status, code(r)], redirectUri).toEqual([400, 'VALIDATION_FAILED'])
    }
  })

  it.each([
    ['another nonce', (c: Record<string, unknown>) => ({...c, nonce: 'not-the-one-we-sent'}), /nonce/],
    ['another audience', (c: Record<string, unknown>) => ({...c, aud: OTHER_CLIENT_ID}), /aud/],
    [
      'an expiry in the past',
      (c: Record<string, unknown>) => ({...c, exp: Math.floor(Date.now() / 1000) - 3600}),
      /exp/,
    ],
    ['another issuer', (c: Record<string, unknown>) => ({...c, iss: 'https://evil.example'}), /iss/],
  ])('refuses an ID token with %s', async (_what, change, reason) => {
    const a = await codeFlow('mallory-2')
    idp.tamper = change
    try {
      const r = await finish(a.flowId, a.callbackUrl)
      expect([r.status, code(r)], JSON.stringify(r.json)).toEqual([401, 'OIDC_LOGIN_FAILED'])
      expect(r.json.error?.message).toMatch(reason)
    } finally {
      idp.tamper = undefined
    }
    expect(await ctl.running.store.getUserByUsername('mallory-2')).toBeUndefined()
  })

  it('refuses an issuer that is not configured', async () => {
    const r = await call('POST', '/api/v1/oidc/start', {body: {issuer: 'nope', redirectUri: REDIRECT}})
    expect([r.status, code(r)]).toEqual([404, 'OIDC_NOT_CONFIGURED'])
  })
})

describe('OIDC device authorization flow', () => {
  it('polls pending until the person enters the code, then logs in once', async () => {
    const start = await call('POST', '/api/v1/oidc/device', {body: {}})
    expect(start.status, JSON.stringify(start.json)).toBe(200)
    const {flowId, userCode, verificationUri, interval} = start.json as {
      flowId: string
      userCode: string
      verificationUri: string
      interval: number
    }
    expect(interval).toBeGreaterThanOrEqual(1)
    const pending = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect(pending.json).toMatchObject({status: 'pending'})
    // A poll before the interval is over does not reach the provider (no slow_down for the CLI).
    const early = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect(early.json).toMatchObject({status: 'pending', interval})

    const seen = await browse(verificationUri, {login: 'dora', userCode})
    expect(seen.html ?? '').toMatch(/success|signed in|Sign-in Success/i)
    clock.advance(interval * 1000)
    const done = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect(done.status, JSON.stringify(done.json)).toBe(200)
    expect(done.json).toMatchObject({status: 'done', user: {username: 'dora', role: 'member'}})
    expect(done.json.token).toMatch(/^mtok_/)

    const again = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect([again.status, code(again)]).toEqual([401, 'OIDC_FLOW_EXPIRED'])
  })

  it('answers OIDC_FLOW_EXPIRED once the device code expired', async () => {
    const start = await call('POST', '/api/v1/oidc/device', {body: {}})
    const {flowId, expiresAt} = start.json as {flowId: string; expiresAt: string}
    clock.advance(Date.parse(expiresAt) - clock.now() + 1000)
    const r = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect([r.status, code(r)]).toEqual([401, 'OIDC_FLOW_EXPIRED'])
  })

  it('refuses an unknown flow handle', async () => {
    const r = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId: 'moidc_nothing'}})
    expect([r.status, code(r)]).toEqual([401, 'OIDC_FLOW_EXPIRED'])
  })
})

describe('the OIDC config file (--oidc-config)', () => {
  it('is read at start, and a bad one stops the start with CONFIG_INVALID', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-oidc-file-'))
    try {
      const file = path.join(dir, 'oidc.yaml')
      fs.writeFileSync(
        file,
        `issuers:\n  - name: lab\n    issuer: ${idp.issuer}\n    clientId: ${TEST_CLIENT_ID}\n    allowHttp: true\n`,
        {mode: 0o600},
      )
      const other = await startTestController({oidcConfigFile: file})
      try {
        const r = await fetch(`${other.url}/api/v1/oidc/issuers`)
        expect(await r.json()).toEqual({items: [{name: 'lab', issuer: idp.issuer}]})
      } finally {
        await other.close()
      }
      fs.writeFileSync(file, `issuers:\n  - name: lab\n    issuer: ${idp.issuer}\n    clientId: x\n`)
      // A data dir of this test's, so that the failed start leaves nothing behind.
      await expect(
        startTestController({dataDir: path.join(dir, 'data'), oidcConfigFile: file}),
      ).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringMatching(/allowHttp/),
      })
    } finally {
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('an OpenID provider out of reach', () => {
  it('answers OIDC_PROVIDER_UNREACHABLE (502), not a login failure', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-oidc-down-'))
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const down = await startTestController({
      dataDir: dir,
      oidc: {issuers: [{name: 'down', issuer: 'http://127.0.0.1:1', clientId: 'x', allowHttp: true}]},
    })
    try {
      const res = await fetch(`${down.url}/api/v1/oidc/device`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: '{}',
      })
      const body = (await res.json()) as {error: {code: string}}
      expect([res.status, body.error.code]).toEqual([502, 'OIDC_PROVIDER_UNREACHABLE'])
    } finally {
      await down.close()
      fs.rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('a person who says no at the provider', () => {
  it('ends a code flow with OIDC_ACCESS_DENIED', async () => {
    const start = await call('POST', '/api/v1/oidc/start', {body: {redirectUri: REDIRECT}})
    const seen = await browse(start.json.authorizationUrl as string, {login: 'nina', abort: true})
    expect(new URL(seen.callbackUrl!).searchParams.get('error')).toBe('access_denied')
    const r = await finish(start.json.flowId as string, seen.callbackUrl!)
    expect([r.status, code(r)]).toEqual([403, 'OIDC_ACCESS_DENIED'])
  })

  it('ends a device flow with OIDC_ACCESS_DENIED at the next poll', async () => {
    const start = await call('POST', '/api/v1/oidc/device', {body: {}})
    const {flowId, userCode, verificationUri, interval} = start.json as {
      flowId: string
      userCode: string
      verificationUri: string
      interval: number
    }
    await browse(verificationUri, {login: 'nina', userCode, abort: true})
    clock.advance(interval * 1000)
    const r = await call('POST', '/api/v1/oidc/device/poll', {body: {flowId}})
    expect([r.status, code(r)], JSON.stringify(r.json)).toEqual([403, 'OIDC_ACCESS_DENIED'])
    expect(await ctl.running.store.getUserByUsername('nina')).toBeUndefined()
  })
})
