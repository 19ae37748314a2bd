/**
 * Who is calling: the first-start account, user login (with its failed-login limits and, for
 * accounts that have it on, a TOTP code), access tokens, logout, and node credentials. It
 * decides nothing about what a caller may do (that is access.ts). Sessions (refresh, listing,
 * revocation) and MFA setup are sessions.ts's, reached as `auth.sessions`.
 *
 * Tokens (schema 0014): a login starts a session and returns a short-lived access token
 * (ACCESS_TTL_MS) and a refresh token (REFRESH_TTL_MS, sliding) that POST /token/refresh
 * exchanges for a new pair. Access tokens are rows of `tokens` that name their session; tokens
 * from before 0014 name none and work as they did, until their own 30-day expiry.
 *
 * OIDC logins (oidc.ts, reached as `auth.oidc`) end in the same sessions.
 *
 * Replicas: tokens and credentials are rows, so any replica authenticates any caller. The
 * failed-login limits are a LoginLimits (login-limits.ts): in memory for one controller, in
 * tables for replicas on PostgreSQL, so replicas share one budget.
 */
import type {LoginResponse, Tenant} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import type {Clock} from '../../shared/clock.js'
import {newId, hashSecret} from './secrets.js'
import {DUMMY_HASH_PROMISE, hashPassword, verifyPassword} from './password.js'
import {InProcessLoginLimits, type LoginLimits} from './login-limits.js'
import {publicUser, type Store, type StoredNode, type UserRecord} from '../store/store.js'
import type {Writes} from '../domain/writes.js'
import {auditContext, systemContext, userContext, type RequestMeta} from '../context.js'
import {Sessions, type SessionReads, type SessionWrites, type TokenLifetimes} from './sessions.js'
import {NO_PASSWORD, Oidc, type OidcLog, type OidcWrites} from './oidc.js'
import type {OidcConfig} from './oidc-config.js'
import type {SecretsKey} from './secrets-key.js'

/** Session-less user tokens (before schema 0014) lived this long. */
export const TOKEN_TTL_MS = 30 * 86400 * 1000

/** An authenticated user and its tenant. */
export interface Principal {
  readonly user: UserRecord
  readonly tenant: Tenant
  readonly tokenHash: string
  /** The session of the access token; null for a token from before schema 0014. */
  readonly sessionId: string | null
}

export type AuthReads = Pick<
  Store,
  | 'hasTenants'
  | 'getUserByUsername'
  | 'getToken'
  | 'getUser'
  | 'getTenant'
  | 'getNodeByCredential'
  | 'identitiesOf'
  | 'userInviteByCode'
> &
  SessionReads
export type AuthWrites = Pick<
  Writes,
  'createTenantWithOwner' | 'appendAudit' | 'createToken' | 'deleteToken'
> &
  SessionWrites &
  OidcWrites

export interface AuthOptions extends Partial<TokenLifetimes> {
  readonly clock: Clock
  /**
   * Failed logins allowed per source address per minute; also the burst (and per-minute refill)
   * of a user's bucket for sources it has not logged in from recently. Default 10.
   */
  readonly loginFailuresPerMinute?: number | undefined
  /** Where the limits live; default in this process (built from loginFailuresPerMinute). */
  readonly loginLimits?: LoginLimits | undefined
  /** OpenID Connect issuers people may log in with (issue 10); none by default. */
  readonly oidc?: OidcConfig | undefined
  /** Where OIDC failures at a provider are logged (the reply says less). */
  readonly log?: OidcLog | undefined
  /** Seals TOTP secrets at rest (secrets-key.ts); none: MFA cannot be enabled. */
  readonly secrets?: SecretsKey | undefined
}

export class Auth {
  private readonly clock: Clock
  private readonly limits: LoginLimits
  /** Refresh, list and revoke sessions; MFA setup. */
  readonly sessions: Sessions
  /** OIDC logins (authorization code with PKCE, device authorization). */
  readonly oidc: Oidc

  constructor(
    private readonly store: AuthReads,
    private readonly writes: AuthWrites,
    opts: AuthOptions,
  ) {
    const clock = (this.clock = opts.clock)
    this.limits =
      opts.loginLimits ?? new InProcessLoginLimits({clock, max: opts.loginFailuresPerMinute ?? 10})
    this.sessions = new Sessions(store, writes, {...opts, clock, limits: this.limits})
    this.oidc = new Oidc(store, writes, this.sessions, opts.oidc, clock, opts.log)
  }

  /**
   * Creates tenant `default` with superuser owner `admin` when the database has no tenant.
   * True when it created the account, false otherwise.
   */
  async bootstrap(password: string): Promise<boolean> {
    if (await this.store.hasTenants()) return false
    await this.writes.createTenantWithOwner(
      {id: newId('t'), name: 'default'},
      {id: newId('u'), username: 'admin', passwordHash: await hashPassword(password), superuser: true},
      systemContext(this.clock),
    )
    return true
  }

  /**
   * Failed logins are limited twice. Per source address strictly (a fixed window). Per user by a
   * token bucket that only sources the user has not logged in from recently draw on: a per-user
   * block that every address shares would let anyone who knows a user name lock that user out
   * from everywhere, for free and for as long as it likes. So a source where this user logged in
   * with the right password within the token lifetime skips the user's bucket (its own address
   * limit still holds), and a new source is throttled, not blocked: once the failures stop it
   * waits at most one refill interval. Guessing one account from many addresses stays capped at
   * the bucket's refill rate, as before.
   */
  async login(
    username: string,
    password: string,
    meta: RequestMeta,
    otp?: string | undefined,
  ): Promise<LoginResponse> {
    // Charged before the slow password check and given back on success: charged only after it,
    // guesses sent at once would all pass the check before the first of them had failed.
    const charged = await this.limits.charge(username, meta.sourceAddress)
    const user = await this.store.getUserByUsername(username)
    // Unknown users (and OIDC users, who have no password) cost a scrypt too, so response time
    // does not reveal which names exist or how they log in.
    const stored = user && user.passwordHash !== NO_PASSWORD ? user.passwordHash : undefined
    const ok =
      (await verifyPassword(password, stored ?? (await DUMMY_HASH_PROMISE()))) && stored !== undefined
    if (!user || !ok) {
      if (user) await this.auditFailure(user, 'user.login_failed', meta)
      throw new MeshError('INVALID_CREDENTIALS')
    }
    // MFA: a missing or wrong code keeps the attempt charged, so codes are guessed no faster
    // than passwords (the same per-source and per-user limits).
    const mfa = await this.store.getMfa(user.id)
    if (mfa?.enabledAt) {
      if (otp === undefined) throw new MeshError('MFA_REQUIRED')
      if (!(await this.sessions.useSecondFactor(user, mfa.secret, otp, meta))) {
        await this.auditFailure(user, 'user.mfa_failed', meta)
        throw new MeshError('MFA_CODE_INVALID')
      }
    }
    await this.limits.succeeded(username, meta.sourceAddress, charged)
    const pair = await this.sessions.start(
      user,
      auditContext(this.clock, {actor: `user:${user.id}`, actorName: user.username}, meta),
    )
    const tenant = await this.store.getTenant(user.tenantId)
    if (!tenant) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
    return {...pair, user: publicUser(user), tenant}
  }

  private async auditFailure(user: UserRecord, action: string, meta: RequestMeta): Promise<void> {
    await this.writes.appendAudit(
      {tenantId: user.tenantId, action, targetType: 'user', targetId: user.id, networkId: null, detail: {}},
      userContext(this.clock, user, meta),
    )
  }

  /**
   * The user behind a bearer token, or undefined (unknown, revoked, or its user deleted). An
   * expired access token of a session is TOKEN_EXPIRED (thrown), so clients know to refresh
   * rather than log in again; an expired token from before schema 0014 is simply unknown.
   */
  async authenticateUser(token: string): Promise<Principal | undefined> {
    if (!token.startsWith('mtok_') || token.length > 200) return undefined
    const tokenHash = hashSecret(token)
    const rec = await this.store.getToken(tokenHash)
    if (!rec) return undefined
    if (rec.expiresAt <= new Date(this.clock.now()).toISOString()) {
      if (rec.sessionId === null) return undefined
      throw new MeshError('TOKEN_EXPIRED')
    }
    const user = await this.store.getUser(rec.userId)
    if (!user) return undefined
    const tenant = await this.store.getTenant(user.tenantId)
    return tenant && {user, tenant, tokenHash, sessionId: rec.sessionId}
  }

  /** Logout: the whole session (access and refresh tokens); a session-less token alone. */
  async logout(p: Principal, meta: RequestMeta): Promise<void> {
    const ctx = userContext(this.clock, p.user, meta)
    if (p.sessionId === null) await this.writes.deleteToken(p.tokenHash, ctx)
    else await this.writes.revokeSession(p.sessionId, 'logout', ctx)
  }

  /** The node behind a node credential, or undefined. */
  async authenticateNode(credential: string): Promise<StoredNode | undefined> {
    if (!credential.startsWith('mnode_') || credential.length > 200) return undefined
    return this.store.getNodeByCredential(hashSecret(credential))
  }
}
