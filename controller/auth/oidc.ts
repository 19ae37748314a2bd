/**
 * OIDC login (issue 10): the controller is the OpenID Connect client of each configured issuer;
 * the CLI only carries the browser's callback to it (authorization code with PKCE, RFC 7636 and
 * RFC 8252's loopback redirect) or polls it (device authorization, RFC 8628). A login ends as a
 * password login does: a session with an access and a refresh token (sessions.ts).
 *
 * The protocol work (discovery, PKCE, state, nonce, the token request, and the ID token's
 * signature against the issuer's JWKS, iss, aud, exp and iat) is `openid-client` v6's, built on
 * `oauth4webapi`: both by the author of `oidc-provider`, certified OpenID Relying Party
 * libraries, kept up to date, with `jose` as their only dependency. The ID token signature is
 * checked even though the token comes straight from the token endpoint over TLS
 * (enableNonRepudiationChecks): a controller behind a proxy that ends TLS should not have to trust
 * that hop.
 *
 * A login may carry a user invite (`mesh signup INVITE --oidc`): the invite is checked before the
 * provider is asked, its hash rides in the flow's row, and the login's transaction makes the
 * account with it (domain/identities.ts). A login that changes someone's group claim is told to
 * onGroupsChange listeners (the coordinator publishes it as a policy change: policies may name
 * IdP groups).
 *
 * Replicas: a login in progress is a row (oidc_flows, by the hash of the handle the CLI holds), so
 * any replica finishes what another started. Discovery documents are cached per process.
 */
import {randomBytes} from 'node:crypto'
import * as client from 'openid-client'
import {MeshError, isMeshError} from '../../shared/errors.js'
import type {Clock} from '../../shared/clock.js'
import type {LoginResponse, OidcPollResponse} from '../../shared/protocol/control-api.js'
import {hasNoControlCharacters} from '../../shared/text.js'
import {publicUser, type Store} from '../store/store.js'
import type {Writes} from '../domain/writes.js'
import type {RequestMeta} from '../context.js'
import {requireAdmits} from '../domain/user-invites.js'
import {hashSecret, newId, newSecret} from './secrets.js'
import type {Sessions} from './sessions.js'
import {mappedRole, type OidcConfig, type OidcIssuerConfig} from './oidc-config.js'

/** How long a browser login may take from start to callback. */
export const CODE_FLOW_TTL_MS = 10 * 60_000
/** Device flows last what the provider says, but never longer than this. */
export const DEVICE_FLOW_MAX_TTL_MS = 30 * 60_000
/** RFC 8628 §3.5: slow_down adds 5 s to the interval. */
const SLOW_DOWN_S = 5
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
/** The stored form of an OIDC user's password: not a hash, so no password ever verifies. */
export const NO_PASSWORD = '!oidc'
/** Timeout of each request to the provider, seconds. */
const PROVIDER_TIMEOUT_S = 10
const MAX_GROUPS = 200

export type OidcReads = Pick<Store, 'getTenant' | 'identitiesOf' | 'userInviteByCode'>
export type OidcWrites = Pick<
  Writes,
  | 'oidcLogin'
  | 'startOidcFlow'
  | 'checkOidcFlowRoom'
  | 'takeOidcFlow'
  | 'pollOidcFlow'
  | 'slowOidcFlow'
  | 'endOidcFlow'
>

interface CodeData {
  state: string
  nonce: string
  verifier: string
  redirectUri: string
  /** SHA-256 of the user invite code the login carries, if any. */
  inviteHash?: string
}
interface DeviceData {
  deviceCode: string
  interval: number
  inviteHash?: string
}

export interface OidcLog {
  warn(obj: object, msg: string): void
}

export class Oidc {
  private readonly configs = new Map<string, Promise<client.Configuration>>()
  /** Logins in progress one client address may hold (OidcConfig.pendingPerAddress). */
  private get pendingPerAddress(): number | undefined {
    return this.cfg?.pendingPerAddress
  }
  private readonly groupsListeners = new Set<(tenantId: string) => void>()

  constructor(
    private readonly store: OidcReads,
    private readonly writes: OidcWrites,
    private readonly sessions: Sessions,
    private readonly cfg: OidcConfig | undefined,
    private readonly clock: Clock,
    private readonly log: OidcLog = {warn: () => undefined},
  ) {}

  /** The user's identities and the groups of their last logins (whoami). */
  async identitiesOf(userId: string): Promise<{provider: string; issuer: string; groups: string[]}[]> {
    return (await this.store.identitiesOf(userId)).map((i) => ({
      provider: i.provider,
      issuer: i.issuer,
      groups: [...i.groups],
    }))
  }

  /**
   * Subscribes to logins that changed a user's group claim (the user's tenant id); told after
   * the login committed. Returns the unsubscribe function.
   */
  onGroupsChange(fn: (tenantId: string) => void): () => void {
    this.groupsListeners.add(fn)
    return () => this.groupsListeners.delete(fn)
  }

  /**
   * The hash of a user invite code a login carries, once it admits an account now: checked
   * before the provider is asked, so a made-up or spent invite costs one lookup. (It is checked
   * again, and spent, when the login ends.)
   */
  private async inviteHash(invite: string | undefined): Promise<{inviteHash?: string}> {
    if (invite === undefined) return {}
    if (!invite.startsWith('uinv_')) throw new MeshError('INVITE_INVALID')
    const inviteHash = hashSecret(invite)
    requireAdmits(await this.store.userInviteByCode(inviteHash), this.iso(this.now()))
    return {inviteHash}
  }

  /** GET /oidc/issuers */
  issuers(): {name: string; issuer: string}[] {
    return (this.cfg?.issuers ?? []).map((i) => ({name: i.name, issuer: i.issuer}))
  }

  private issuer(name: string | undefined): OidcIssuerConfig {
    const list = this.cfg?.issuers ?? []
    const found = name === undefined ? list[0] : list.find((i) => i.name === name)
    if (!found) {
      throw new MeshError('OIDC_NOT_CONFIGURED', {
        message:
          list.length === 0
            ? 'this controller has no OpenID Connect issuer configured'
            : `no OpenID Connect issuer named ${name}; configured: ${list.map((i) => i.name).join(', ')}`,
      })
    }
    return found
  }

  /** The issuer's client configuration: discovery once per process (retried after a failure). */
  private config(i: OidcIssuerConfig): Promise<client.Configuration> {
    let p = this.configs.get(i.name)
    if (!p) {
      p = client
        .discovery(
          new URL(i.issuer),
          i.clientId,
          i.clientSecret,
          i.clientSecret === undefined ? client.None() : undefined,
          {
            timeout: PROVIDER_TIMEOUT_S,
            ...(i.allowHttp ? {execute: [client.allowInsecureRequests]} : {}),
          },
        )
        .then((c) => {
          client.enableNonRepudiationChecks(c)
          return c
        })
      p.catch(() => this.configs.delete(i.name))
      this.configs.set(i.name, p)
    }
    return p.catch((err: unknown) => {
      throw this.providerError(i, err, 'discovery')
    })
  }

  private now(): number {
    return this.clock.now()
  }

  private iso(ms: number): string {
    return new Date(ms).toISOString()
  }

  /** POST /oidc/start */
  async startCode(
    name: string | undefined,
    redirectUri: string,
    invite?: string,
    meta?: RequestMeta,
  ): Promise<{flowId: string; issuer: string; authorizationUrl: string; expiresAt: string}> {
    const i = this.issuer(name)
    checkLoopbackRedirect(redirectUri)
    const invited = await this.inviteHash(invite)
    const source = meta?.sourceAddress ?? null
    await this.writes.checkOidcFlowRoom(source, this.iso(this.now()), this.pendingPerAddress)
    const conf = await this.config(i)
    const data: CodeData = {
      state: client.randomState(),
      nonce: client.randomNonce(),
      verifier: client.randomPKCECodeVerifier(),
      redirectUri,
      ...invited,
    }
    const url = client.buildAuthorizationUrl(conf, {
      redirect_uri: redirectUri,
      scope: scopes(i),
      state: data.state,
      nonce: data.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(data.verifier),
      code_challenge_method: 'S256',
    })
    const flowId = newSecret('oidcFlow')
    const now = this.now()
    const expiresAt = this.iso(now + CODE_FLOW_TTL_MS)
    await this.writes.startOidcFlow(
      {
        idHash: hashSecret(flowId),
        kind: 'code',
        provider: i.name,
        data: {...data},
        createdAt: this.iso(now),
        expiresAt,
        nextPollAt: null,
        source,
      },
      this.pendingPerAddress,
    )
    return {flowId, issuer: i.name, authorizationUrl: url.href, expiresAt}
  }

  /** POST /oidc/finish: the flow is used up whatever happens (a wrong state burns it). */
  async finishCode(flowId: string, callbackUrl: string, meta: RequestMeta): Promise<LoginResponse> {
    const flow = await this.writes.takeOidcFlow(hashSecret(flowId), this.iso(this.now()))
    if (!flow || flow.kind !== 'code') throw new MeshError('OIDC_FLOW_EXPIRED')
    const i = this.issuer(flow.provider)
    const data = flow.data as unknown as CodeData
    let url: URL
    try {
      url = new URL(callbackUrl)
    } catch {
      throw new MeshError('OIDC_LOGIN_FAILED', {message: 'the callback URL is not a URL'})
    }
    const expected = new URL(data.redirectUri)
    if (url.origin !== expected.origin || url.pathname !== expected.pathname) {
      throw new MeshError('OIDC_LOGIN_FAILED', {
        message: 'the callback URL is not the redirect URI of this login',
      })
    }
    const conf = await this.config(i)
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>
    try {
      tokens = await client.authorizationCodeGrant(conf, url, {
        pkceCodeVerifier: data.verifier,
        expectedState: data.state,
        expectedNonce: data.nonce,
        idTokenExpected: true,
      })
    } catch (err) {
      throw this.providerError(i, err, 'code exchange')
    }
    return this.complete(i, conf, tokens, meta, data.inviteHash)
  }

  /** POST /oidc/device */
  async startDevice(
    name: string | undefined,
    invite?: string,
    meta?: RequestMeta,
  ): Promise<{
    flowId: string
    issuer: string
    verificationUri: string
    verificationUriComplete?: string
    userCode: string
    interval: number
    expiresAt: string
  }> {
    const i = this.issuer(name)
    const invited = await this.inviteHash(invite)
    const source = meta?.sourceAddress ?? null
    // Before the provider is asked: a flood from one address costs it nothing.
    await this.writes.checkOidcFlowRoom(source, this.iso(this.now()), this.pendingPerAddress)
    const conf = await this.config(i)
    if (!conf.serverMetadata().device_authorization_endpoint) {
      throw new MeshError('OIDC_NOT_CONFIGURED', {
        message: `the issuer ${i.name} offers no device authorization (RFC 8628)`,
        hint: 'use `mesh login --oidc` on a machine with a browser',
      })
    }
    let res: client.DeviceAuthorizationResponse
    try {
      res = await client.initiateDeviceAuthorization(conf, {scope: scopes(i)})
    } catch (err) {
      throw this.providerError(i, err, 'device authorization')
    }
    const interval = Math.max(1, Math.min(res.interval ?? 5, 60))
    const now = this.now()
    const ttl = Math.min(Math.max(res.expires_in, 1) * 1000, DEVICE_FLOW_MAX_TTL_MS)
    const expiresAt = this.iso(now + ttl)
    const flowId = newSecret('oidcFlow')
    const data: DeviceData = {deviceCode: res.device_code, interval, ...invited}
    await this.writes.startOidcFlow(
      {
        idHash: hashSecret(flowId),
        kind: 'device',
        provider: i.name,
        data: {...data},
        createdAt: this.iso(now),
        expiresAt,
        nextPollAt: this.iso(now),
        source,
      },
      this.pendingPerAddress,
    )
    return {
      flowId,
      issuer: i.name,
      verificationUri: res.verification_uri,
      ...(res.verification_uri_complete ? {verificationUriComplete: res.verification_uri_complete} : {}),
      userCode: res.user_code,
      interval,
      expiresAt,
    }
  }

  /**
   * POST /oidc/device/poll: asks the provider at most once per interval, whoever polls how
   * often; pending, slow_down (the interval grows by 5 s), or the login.
   */
  async pollDevice(flowId: string, meta: RequestMeta): Promise<OidcPollResponse> {
    const idHash = hashSecret(flowId)
    const now = this.now()
    const seen = await this.writes.pollOidcFlow(idHash, this.iso(now), this.iso(now + 1000))
    if (!seen) throw new MeshError('OIDC_FLOW_EXPIRED')
    const data = seen.flow.data as unknown as DeviceData
    // The next poll time, claimed above for a moment, now set from the interval.
    const later = async (interval: number) =>
      this.writes.slowOidcFlow(idHash, this.iso(now + interval * 1000), {...data, interval})
    if (!seen.ask) return {status: 'pending', interval: data.interval}
    const i = this.issuer(seen.flow.provider)
    const conf = await this.config(i)
    let tokens: Awaited<ReturnType<typeof client.genericGrantRequest>>
    try {
      tokens = await client.genericGrantRequest(conf, DEVICE_GRANT, {device_code: data.deviceCode})
    } catch (err) {
      const code = err instanceof client.ResponseBodyError ? err.error : undefined
      if (code === 'authorization_pending') {
        await later(data.interval)
        return {status: 'pending', interval: data.interval}
      }
      if (code === 'slow_down') {
        const interval = Math.min(data.interval + SLOW_DOWN_S, 120)
        await later(interval)
        return {status: 'pending', interval}
      }
      const failure =
        code === 'expired_token'
          ? new MeshError('OIDC_FLOW_EXPIRED')
          : this.providerError(i, err, 'device poll')
      // The provider out of reach is passing: the flow stays, and the next poll may still finish it.
      if (failure.code === 'OIDC_PROVIDER_UNREACHABLE') await later(data.interval)
      else await this.writes.endOidcFlow(idHash)
      throw failure
    }
    // Done: only the poll that ends the flow logs in (two polls at once get one session).
    if (!(await this.writes.endOidcFlow(idHash))) throw new MeshError('OIDC_FLOW_EXPIRED')
    return {status: 'done', ...(await this.complete(i, conf, tokens, meta, data.inviteHash))}
  }

  /** A checked token response: the identity, its claims, and the login. */
  private async complete(
    i: OidcIssuerConfig,
    conf: client.Configuration,
    tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers,
    meta: RequestMeta,
    inviteHash: string | undefined,
  ): Promise<LoginResponse> {
    const idClaims = tokens.claims()
    if (!idClaims) throw new MeshError('OIDC_LOGIN_FAILED', {message: 'the provider sent no ID token'})
    let claims: Record<string, unknown> = {...idClaims}
    // Groups (and names) may live only at the UserInfo endpoint; its `sub` must match.
    if (claims[i.groupsClaim] === undefined && conf.serverMetadata().userinfo_endpoint) {
      try {
        const info = await client.fetchUserInfo(conf, tokens.access_token, idClaims.sub)
        claims = {...info, ...claims}
      } catch (err) {
        this.log.warn(
          {issuer: i.name, err: String(err)},
          'OIDC UserInfo failed; logging in without its claims',
        )
      }
    }
    const groups = groupsOf(claims[i.groupsClaim])
    const {pair, session} = this.sessions.prepare()
    const now = this.iso(this.now())
    const {user, groupsChanged} = await this.writes.oidcLogin(
      {
        provider: i.name,
        issuer: idClaims.iss,
        subject: idClaims.sub,
        email: typeof claims.email === 'string' ? claims.email.slice(0, 320) : null,
        groups,
        usernames: usernameCandidates(claims[i.usernameClaim], claims.email, idClaims.sub),
        tenant: i.tenant,
        mappedRole: mappedRole(i, groups),
        defaultRole: i.defaultRole,
        newUserId: newId('u'),
        passwordHash: NO_PASSWORD,
        inviteHash,
      },
      session,
      {sourceAddress: meta.sourceAddress, requestId: meta.requestId, at: now},
    )
    if (groupsChanged) {
      for (const fn of this.groupsListeners) {
        try {
          fn(user.tenantId)
        } catch (err) {
          this.log.warn({err: String(err)}, 'OIDC groups listener failed')
        }
      }
    }
    const tenant = await this.store.getTenant(user.tenantId)
    if (!tenant) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
    return {...pair, user: publicUser(user), tenant}
  }

  /** What went wrong at or with the provider, as a MeshError (details in the log, not the reply). */
  private providerError(i: OidcIssuerConfig, err: unknown, step: string): MeshError {
    if (isMeshError(err)) return err
    const e = err as {
      code?: string
      error?: string
      error_description?: string
      message?: string
      cause?: unknown
    }
    const oauthError =
      err instanceof client.ResponseBodyError || err instanceof client.AuthorizationResponseError
    if (oauthError && e.error === 'access_denied') return new MeshError('OIDC_ACCESS_DENIED')
    const netCode = (e.cause as {code?: string} | undefined)?.code
    const unreachable =
      !oauthError &&
      (e.code === 'OAUTH_TIMEOUT' ||
        e.message === 'fetch failed' ||
        (netCode !== undefined && /^(ECONN|ENOTFOUND|EHOST|ENET|EAI_|UND_ERR)/.test(netCode)))
    this.log.warn(
      {
        issuer: i.name,
        step,
        code: e.code,
        error: e.error,
        description: e.error_description,
        message: e.message,
      },
      `OIDC ${step} failed`,
    )
    if (unreachable) {
      return new MeshError('OIDC_PROVIDER_UNREACHABLE', {
        message: `the controller cannot reach the OpenID provider ${i.name}`,
      })
    }
    // The library's reason (unexpected state, nonce, aud, signature, ...) is safe to show: it
    // names the check, not a secret.
    const reason = oauthError ? (e.error ?? 'error') : failedCheck(err)
    return new MeshError('OIDC_LOGIN_FAILED', {
      message: `the OpenID Connect login failed at ${step}: ${reason.slice(0, 200)}`,
    })
  }
}

/**
 * The check that failed, from the library's error and its causes: the claim (nonce, aud, iss,
 * exp) or response parameter (state) it names, else the innermost message.
 */
function failedCheck(err: unknown): string {
  let e = err as {message?: string; cause?: unknown} | undefined
  let message = e?.message ?? 'invalid response'
  for (let depth = 0; e && depth < 4; depth++) {
    const c = e as {claim?: unknown; parameter?: unknown; message?: unknown}
    if (typeof c.claim === 'string') return `${message} (claim ${c.claim})`
    if (typeof c.parameter === 'string') return `${message} (parameter ${c.parameter})`
    if (typeof c.message === 'string') message = c.message
    e = e.cause as typeof e
  }
  return message
}

const scopes = (i: OidcIssuerConfig): string => [...new Set(['openid', ...i.scopes])].join(' ')

/**
 * RFC 8252 §7.3: a loopback IP literal with a port, over http; `localhost` is not accepted
 * (§8.3: it may resolve elsewhere). Anything else would let a flow send the code to a stranger.
 */
function checkLoopbackRedirect(uri: string): void {
  let u: URL
  try {
    u = new URL(uri)
  } catch {
    throw new MeshError('VALIDATION_FAILED', {message: 'redirectUri is not a URL'})
  }
  if (
    u.protocol !== 'http:' ||
    !['127.0.0.1', '[::1]'].includes(u.hostname) ||
    u.port === '' ||
    u.username !== '' ||
    u.password !== '' ||
    u.search !== '' ||
    u.hash !== ''
  ) {
    throw new MeshError('VALIDATION_FAILED', {
      message:
        'redirectUri must be http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (a loopback callback)',
    })
  }
}

/** The group claim as a list of short printable strings (a string alone is one group). */
export function groupsOf(v: unknown): string[] {
  const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : []
  const out = new Set<string>()
  for (const g of list) {
    if (typeof g !== 'string' || g.length === 0 || g.length > 200 || !hasNoControlCharacters(g)) continue
    out.add(g)
    if (out.size >= MAX_GROUPS) break
  }
  return [...out]
}

/** A claim's text in the user-name alphabet (lowercase, digits, . _ -; 1-63, first alphanumeric). */
function asUsername(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined
  const s = v
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 55)
    .replace(/[._-]+$/, '')
  return s.length > 0 ? s : undefined
}

/** Names for a new user: the configured claim, the email's local part, then one from `sub`. */
export function usernameCandidates(preferred: unknown, email: unknown, sub: string): string[] {
  const local = typeof email === 'string' ? email.split('@')[0] : undefined
  const names = [asUsername(preferred), asUsername(local)].filter((n): n is string => n !== undefined)
  names.push(`oidc-${hashSecret(sub).slice(0, 10)}`)
  names.push(`oidc-${randomBytes(6).toString('hex')}`)
  return [...new Set(names)]
}
