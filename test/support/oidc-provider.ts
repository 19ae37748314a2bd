/**
 * A real OpenID provider for tests: `oidc-provider` (the certified OP by the author of
 * openid-client) on 127.0.0.1 and a free port, with its development interactions (a login form
 * that takes any user name, a consent form) and the device flow on. A person at a browser is
 * played by `browse()`: it follows redirects and submits each page's form with a cookie jar, so
 * no real browser is needed. Nothing is mocked: the controller talks to it over real HTTP.
 *
 * Hostile cases: `tamper` rewrites the ID token of the next token responses (re-signed with the
 * provider's own key, so only the changed claim is wrong: another audience, another nonce, an
 * expiry in the past), and `groups` sets what the group claim says per user.
 */
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import {SignJWT, decodeJwt, importJWK, type JWK, type JWTPayload} from 'jose'
import Provider from 'oidc-provider'

export const TEST_CLIENT_ID = 'mesh-cli'
/** A second client registered at the same provider: ID tokens for it are for another audience. */
export const OTHER_CLIENT_ID = 'someone-else'

export interface TestIdp {
  /** The issuer URL (http://127.0.0.1:PORT). */
  readonly issuer: string
  /** Groups per account id (the login name); default none. */
  readonly groups: Map<string, string[]>
  /** Rewrites ID tokens in token responses while set. */
  tamper: ((claims: JWTPayload) => JWTPayload) | undefined
  /**
   * The poll interval device authorization responses announce (oidc-provider announces none,
   * so clients take RFC 8628's 5 s); set to keep CLI tests short.
   */
  deviceInterval: number | undefined
  /** Signs a token as the provider would (tests that forge one). */
  sign(claims: JWTPayload): Promise<string>
  close(): Promise<void>
}

export async function startTestIdp(): Promise<TestIdp> {
  const {privateKey} = generateKeyPairSync('rsa', {modulusLength: 2048})
  const jwk = {...(privateKey.export({format: 'jwk'}) as JWK), kid: 'test-key', alg: 'RS256', use: 'sig'}
  const signingKey = await importJWK(jwk, 'RS256')
  const groups = new Map<string, string[]>()

  const server = http.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: TEST_CLIENT_ID,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
      },
      {
        client_id: OTHER_CLIENT_ID,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: ['http://127.0.0.1/callback'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    jwks: {keys: [jwk]},
    cookies: {keys: [randomBytes(16).toString('hex')]},
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    scopes: ['openid', 'profile', 'email', 'groups'],
    // Claims of the scopes in the ID token itself (as Keycloak, Entra ID and Dex do).
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) => ({
      accountId: sub,
      claims: () => ({
        sub,
        preferred_username: sub,
        name: sub,
        email: `${sub}@example.test`,
        email_verified: true,
        groups: groups.get(sub) ?? [],
      }),
    }),
    features: {devInteractions: {enabled: true}, deviceFlow: {enabled: true}},
    pkce: {required: () => true},
    // Stated, so that oidc-provider does not print a notice for each default it falls back to.
    ttl: {Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600, DeviceCode: 600},
  })
  // oidc-provider logs "development interactions in use" warnings through its own emitter.
  provider.on('server_error', () => undefined)
  const app = provider.callback()

  const idp: TestIdp = {
    issuer,
    groups,
    tamper: undefined,
    deviceInterval: undefined,
    sign: (claims) =>
      new SignJWT(claims).setProtectedHeader({alg: 'RS256', kid: 'test-key'}).sign(signingKey),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }

  server.on('request', (req, res) => {
    const tamper = idp.tamper
    const interval = idp.deviceInterval
    const outside = req.method !== 'POST' || req.headers['x-untampered'] !== undefined
    const rewrite = outside
      ? undefined
      : req.url === '/token' && tamper
        ? async (body: Record<string, unknown>) => {
            if (typeof body.id_token === 'string')
              body.id_token = await idp.sign(tamper(decodeJwt(body.id_token)))
          }
        : req.url === '/device/auth' && interval !== undefined
          ? async (body: Record<string, unknown>) => {
              if (body.device_code) body.interval = interval
            }
          : undefined
    if (!rewrite) {
      app(req, res)
      return
    }
    // Ask the provider itself, then hand back its answer with the ID token changed and re-signed.
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        const reply = await fetch(`${issuer}${req.url}`, {
          method: 'POST',
          headers: {'content-type': String(req.headers['content-type']), 'x-untampered': '1'},
          body: Buffer.concat(chunks),
        })
        const body = (await reply.json()) as Record<string, unknown>
        await rewrite(body)
        res.writeHead(reply.status, {'content-type': 'application/json', 'cache-control': 'no-store'})
        res.end(JSON.stringify(body))
      })().catch((err: unknown) => {
        res.writeHead(500)
        res.end(String(err))
      })
    })
  })
  return idp
}

/** What `browse` did: the loopback callback URL it stopped at, or the last page. */
export interface BrowseResult {
  readonly callbackUrl?: string
  readonly lastUrl: string
  readonly html?: string
}

/**
 * A person at a browser: opens `url`, follows redirects, and fills and submits each form it is
 * shown (login: `login` as the user name; device: `userCode`; consent: as it is), until a
 * redirect to a 127.0.0.1 callback other than the provider (returned, not opened) or a page
 * without a form. At most 30 steps.
 */
export async function browse(
  url: string,
  opts: {login: string; userCode?: string; abort?: boolean},
): Promise<BrowseResult> {
  const jar = new Map<string, string>()
  let next: {url: URL; method: 'GET' | 'POST'; body?: URLSearchParams} = {url: new URL(url), method: 'GET'}
  const origin = next.url.origin
  let aborted = false
  for (let step = 0; step < 30; step++) {
    if (next.url.origin !== origin) return {callbackUrl: next.url.href, lastUrl: next.url.href}
    const res = await fetch(next.url, {
      method: next.method,
      redirect: 'manual',
      headers: {
        cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(next.body ? {'content-type': 'application/x-www-form-urlencoded'} : {}),
      },
      ...(next.body ? {body: next.body.toString()} : {}),
    })
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const eq = pair!.indexOf('=')
      const value = pair!.slice(eq + 1)
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(pair!.slice(0, eq))
      else jar.set(pair!.slice(0, eq), value)
    }
    const location = res.headers.get('location')
    if (res.status >= 300 && res.status < 400 && location) {
      await res.arrayBuffer()
      next = {url: new URL(location, next.url), method: 'GET'}
      continue
    }
    const html = await res.text()
    // A person who says no: the login page's [ Cancel ] link.
    const cancel = opts.abort ? /<a href="([^"]*\/abort)"/i.exec(html) : null
    if (cancel) {
      next = {url: new URL(decodeHtml(cancel[1]!), next.url), method: 'GET'}
      continue
    }
    const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html)
    // After an abort the provider shows its code input page again: the person stops there.
    if (!form || aborted) return {lastUrl: next.url.href, html}
    const action = /action="([^"]*)"/i.exec(form[1]!)?.[1] ?? next.url.pathname
    const body = new URLSearchParams()
    for (const input of form[2]!.matchAll(/<input\b([^>]*)>/gi)) {
      const name = /name="([^"]*)"/i.exec(input[1]!)?.[1]
      if (!name) continue
      const value = /value="([^"]*)"/i.exec(input[1]!)?.[1] ?? ''
      body.set(
        name,
        name === 'login'
          ? opts.login
          : name === 'password'
            ? 'any'
            : name === 'user_code' && opts.userCode
              ? opts.userCode
              : decodeHtml(value),
      )
    }
    // ... or the device confirmation page's [ Abort ] button.
    if (opts.abort && html.includes('op.deviceConfirmForm')) {
      body.delete('confirm')
      body.set('abort', 'yes')
      aborted = true
    }
    next = {url: new URL(decodeHtml(action), next.url), method: 'POST', body}
  }
  throw new Error(`browse: no end after 30 steps (at ${next.url.href})`)
}

const decodeHtml = (s: string): string =>
  s
    .replace(/&amp;/g, '&')
    .replace(/&quot;/g, '"')
    .replace(/&#x2F;/g, '/')
    .replace(/&#39;/g, "'")
