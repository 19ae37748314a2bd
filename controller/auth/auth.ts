/**
 * Who is calling: the first-start account, user login (with its failed-login limits), bearer
 * tokens, logout, and node credentials. It decides nothing about what a caller may do (that is
 * access.ts).
 *
 * Replicas: tokens and credentials are rows, so any replica authenticates any caller. The
 * failed-login limits are a LoginLimits (login-limits.ts): in memory for one controller, in
 * tables for replicas on PostgreSQL, so replicas share one budget.
 */
import type {LoginResponse, Tenant} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import type {Clock} from '../../shared/clock.js'
import {newId, newSecret, hashSecret} from './secrets.js'
import {DUMMY_HASH_PROMISE, hashPassword, verifyPassword} from './password.js'
import {InProcessLoginLimits, type LoginLimits} from './login-limits.js'
import {publicUser, type Store, type StoredNode, type UserRecord} from '../store/store.js'
import type {Writes} from '../domain/writes.js'
import {auditContext, systemContext, userContext, type RequestMeta} from '../context.js'

/** User tokens live this long. */
export const TOKEN_TTL_MS = 30 * 86400 * 1000

/** An authenticated user and its tenant. */
export interface Principal {
  readonly user: UserRecord
  readonly tenant: Tenant
  readonly tokenHash: string
}

export type AuthReads = Pick<
  Store,
  'hasTenants' | 'getUserByUsername' | 'getToken' | 'getUser' | 'getTenant' | 'getNodeByCredential'
>
export type AuthWrites = Pick<Writes, 'createTenantWithOwner' | 'appendAudit' | 'createToken' | 'deleteToken'>

export interface AuthOptions {
  readonly clock: Clock
  /**
   * Failed logins allowed per source address per minute; also the burst (and per-minute refill)
   * of a user's bucket for sources it has not logged in from recently. Default 10.
   */
  readonly loginFailuresPerMinute?: number | undefined
  /** Where the limits live; default in this process (built from loginFailuresPerMinute). */
  readonly loginLimits?: LoginLimits | undefined
}

export class Auth {
  private readonly clock: Clock
  private readonly limits: LoginLimits

  constructor(
    private readonly store: AuthReads,
    private readonly writes: AuthWrites,
    opts: AuthOptions,
  ) {
    const clock = (this.clock = opts.clock)
    this.limits =
      opts.loginLimits ?? new InProcessLoginLimits({clock, max: opts.loginFailuresPerMinute ?? 10})
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
  async login(username: string, password: string, meta: RequestMeta): Promise<LoginResponse> {
    // Charged before the slow password check and given back on success: charged only after it,
    // guesses sent at once would all pass the check before the first of them had failed.
    const charged = await this.limits.charge(username, meta.sourceAddress)
    const user = await this.store.getUserByUsername(username)
    // Unknown users cost a scrypt too, so response time does not reveal which names exist.
    const ok = await verifyPassword(password, user?.passwordHash ?? (await DUMMY_HASH_PROMISE()))
    if (!user || !ok) {
      if (user) {
        await this.writes.appendAudit(
          {
            tenantId: user.tenantId,
            action: 'user.login_failed',
            targetType: 'user',
            targetId: user.id,
            networkId: null,
            detail: {},
          },
          userContext(this.clock, user, meta),
        )
      }
      throw new MeshError('INVALID_CREDENTIALS')
    }
    await this.limits.succeeded(username, meta.sourceAddress, charged)
    const token = newSecret('token')
    const expiresAt = new Date(this.clock.now() + TOKEN_TTL_MS).toISOString()
    await this.writes.createToken(
      {id: newId('tok'), hash: hashSecret(token), userId: user.id, expiresAt},
      auditContext(this.clock, {actor: `user:${user.id}`, actorName: user.username}, meta),
    )
    const tenant = await this.store.getTenant(user.tenantId)
    if (!tenant) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
    return {token, expiresAt, user: publicUser(user), tenant}
  }

  /** The user behind a bearer token, or undefined (unknown, expired, or its user deleted). */
  async authenticateUser(token: string): Promise<Principal | undefined> {
    if (!token.startsWith('mtok_') || token.length > 200) return undefined
    const tokenHash = hashSecret(token)
    const rec = await this.store.getToken(tokenHash)
    if (!rec || rec.expiresAt <= new Date(this.clock.now()).toISOString()) return undefined
    const user = await this.store.getUser(rec.userId)
    if (!user) return undefined
    const tenant = await this.store.getTenant(user.tenantId)
    return tenant && {user, tenant, tokenHash}
  }

  async logout(p: Principal, meta: RequestMeta): Promise<void> {
    await this.writes.deleteToken(p.tokenHash, userContext(this.clock, p.user, meta))
  }

  /** The node behind a node credential, or undefined. */
  async authenticateNode(credential: string): Promise<StoredNode | undefined> {
    if (!credential.startsWith('mnode_') || credential.length > 200) return undefined
    return this.store.getNodeByCredential(hashSecret(credential))
  }
}
