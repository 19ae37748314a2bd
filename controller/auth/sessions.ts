/**
 * Sessions and MFA for people: starting a session at login (an access token and a refresh
 * token), refreshing it (rotation with reuse detection: controller/domain/sessions.ts has the
 * rule), listing and revoking sessions, and turning TOTP MFA on and off. Who is calling is
 * auth.ts's; this part trusts the Principal it is given.
 *
 * Two replicas refreshing the same token at once: the rule retires the token with one
 * conditional UPDATE, so exactly one wins. The loser (and any later presenter) finds it retired;
 * it is told REFRESH_TOKEN_RACED, and nothing is revoked, only when it comes from the client
 * address that exchanged it and within REFRESH_GRACE_MS of the exchange (two processes of one
 * client that read the same stored token; the CLI also serialises its own refreshes with a file
 * lock). Anything else is a replay of a stolen token: the whole family is revoked and audited.
 * The source address is the best "same client" we have without client credentials; a thief on
 * the same address inside the grace window is not caught by this exchange, but the family's next
 * refresh from either side then is.
 */
import {MeshError} from '../../shared/errors.js'
import type {Clock} from '../../shared/clock.js'
import type {Session, TokenPair} from '../../shared/protocol/control-api.js'
import {ROLE_RANK, SUPERUSER_RANK, roleAllows} from '../../shared/protocol/control-api.js'
import type {AuditContext, Store, UserRecord} from '../store/store.js'
import type {Writes} from '../domain/writes.js'
import type {NewSession, SecondFactor} from '../domain/sessions.js'
import {userContext, type RequestMeta} from '../context.js'
import {hashSecret, newId, newSecret} from './secrets.js'
import {
  RECOVERY_CODE_COUNT,
  hashRecoveryCode,
  looksLikeTotp,
  matchTotp,
  newRecoveryCode,
  newTotpSecret,
  totpUri,
} from './totp.js'
import type {Principal} from './auth.js'
import {isSealed, type SecretsKey} from './secrets-key.js'
import type {LoginLimits} from './login-limits.js'

/** Access tokens live this long. */
export const ACCESS_TTL_MS = 15 * 60_000
/** A refresh token lives this long; each refresh issues a new one (the session slides on). */
export const REFRESH_TTL_MS = 30 * 86400 * 1000
/** See the module comment. */
export const REFRESH_GRACE_MS = 10_000
/**
 * A session's access tokens are kept this long past their expiry (then a refresh sweeps them):
 * a client process that still holds one is told TOKEN_EXPIRED and refreshes, not UNAUTHENTICATED.
 */
export const EXPIRED_ACCESS_KEPT_MS = 86_400_000

export interface TokenLifetimes {
  readonly accessTtlMs: number
  readonly refreshTtlMs: number
  readonly refreshGraceMs: number
}

export type SessionReads = Pick<Store, 'getMfa' | 'getSession' | 'listSessions' | 'getUser'>
export type SessionWrites = Pick<
  Writes,
  | 'startSession'
  | 'refreshSession'
  | 'revokeSession'
  | 'useSecondFactor'
  | 'beginMfa'
  | 'confirmMfa'
  | 'disableMfa'
  | 'appendAudit'
>

export class Sessions {
  private readonly clock: Clock
  private readonly ttl: TokenLifetimes
  /** The failed-login limits: wrong codes to confirm or disable MFA draw on them as logins do. */
  private readonly limits: LoginLimits
  /** Seals TOTP secrets at rest; none: MFA cannot be enabled (SECRETS_KEY_MISSING). */
  private readonly secrets: SecretsKey | undefined

  constructor(
    private readonly store: SessionReads,
    private readonly writes: SessionWrites,
    opts: {clock: Clock; limits: LoginLimits; secrets?: SecretsKey | undefined} & Partial<TokenLifetimes>,
  ) {
    this.clock = opts.clock
    this.limits = opts.limits
    this.secrets = opts.secrets
    this.ttl = {
      accessTtlMs: opts.accessTtlMs ?? ACCESS_TTL_MS,
      refreshTtlMs: opts.refreshTtlMs ?? REFRESH_TTL_MS,
      refreshGraceMs: opts.refreshGraceMs ?? REFRESH_GRACE_MS,
    }
  }

  private at(ms: number): string {
    return new Date(this.clock.now() + ms).toISOString()
  }

  /** A login: a new session and its first pair (called by Auth.login once the user is proven). */
  async start(user: UserRecord, ctx: AuditContext): Promise<TokenPair> {
    const {pair, session} = this.prepare()
    await this.writes.startSession({...session, userId: user.id}, ctx)
    return pair
  }

  /**
   * A new session's first pair and what startSession stores of it (hashes only), for a login
   * rule that finds its user inside its own transaction (OIDC: domain/identities.ts).
   */
  prepare(): {pair: TokenPair; session: Omit<NewSession, 'userId'>} {
    const access = newSecret('token')
    const refresh = newSecret('refresh')
    const sessionId = newId('ses')
    const pair: TokenPair = {
      token: access,
      expiresAt: this.at(this.ttl.accessTtlMs),
      refreshToken: refresh,
      refreshExpiresAt: this.at(this.ttl.refreshTtlMs),
      sessionId,
    }
    return {
      pair,
      session: {
        sessionId,
        access: {id: newId('tok'), hash: hashSecret(access), expiresAt: pair.expiresAt},
        refresh: {hash: hashSecret(refresh), expiresAt: pair.refreshExpiresAt},
      },
    }
  }

  /** POST /token/refresh: a new pair, or REFRESH_TOKEN_INVALID / _RACED / _REUSED. */
  async refresh(refreshToken: string, meta: RequestMeta): Promise<TokenPair> {
    if (!refreshToken.startsWith('mref_') || refreshToken.length > 200) {
      throw new MeshError('REFRESH_TOKEN_INVALID')
    }
    const access = newSecret('token')
    const refresh = newSecret('refresh')
    const expiresAt = this.at(this.ttl.accessTtlMs)
    const refreshExpiresAt = this.at(this.ttl.refreshTtlMs)
    const ctx: AuditContext = {
      actor: 'system',
      actorName: 'refresh',
      sourceAddress: meta.sourceAddress,
      requestId: meta.requestId,
      at: new Date(this.clock.now()).toISOString(),
    }
    const out = await this.writes.refreshSession(
      {
        presented: hashSecret(refreshToken),
        access: {id: newId('tok'), hash: hashSecret(access), expiresAt},
        refresh: {hash: hashSecret(refresh), expiresAt: refreshExpiresAt},
        graceMs: this.ttl.refreshGraceMs,
        sweepBefore: this.at(-EXPIRED_ACCESS_KEPT_MS),
      },
      ctx,
    )
    if (out.kind === 'reused') {
      throw new MeshError('REFRESH_TOKEN_REUSED', {detail: {sessionId: out.sessionId}})
    }
    return {token: access, expiresAt, refreshToken: refresh, refreshExpiresAt, sessionId: out.session.id}
  }

  /** The user whose sessions `p` asks about: itself, or (tenant.manage) a user of its tenant. */
  private async subject(p: Principal, userId: string | undefined): Promise<UserRecord> {
    if (userId === undefined || userId === p.user.id) return p.user
    if (!roleAllows(p.user.role, 'tenant.manage')) {
      throw new MeshError('FORBIDDEN', {
        message: `your role ${p.user.role} does not allow listing other users' sessions`,
      })
    }
    const user = await this.store.getUser(userId)
    if (!user || user.tenantId !== p.tenant.id) throw new MeshError('NOT_FOUND', {message: 'user not found'})
    this.requireNotOutranked(p, user)
    return user
  }

  /**
   * Admins hold tenant.manage too (since the moderator role): another user's sessions are theirs
   * to revoke only when that user does not outrank them (an admin cannot log the owner out).
   */
  private requireNotOutranked(p: Principal, target: UserRecord): void {
    const rank = (u: UserRecord) => (u.superuser ? SUPERUSER_RANK : ROLE_RANK[u.role])
    if (rank(target) > rank(p.user)) {
      throw new MeshError('OUTRANKED', {
        message: `${target.username} is ${target.superuser ? 'superuser' : target.role}, above your role ${p.user.role}`,
      })
    }
  }

  /** GET /sessions: live sessions (neither revoked nor expired), oldest first. */
  async list(p: Principal, userId?: string): Promise<{items: Session[]}> {
    const user = await this.subject(p, userId)
    const rows = await this.store.listSessions(user.id, new Date(this.clock.now()).toISOString())
    return {
      items: rows.map((s) => ({
        id: s.id,
        userId: s.userId,
        createdAt: s.createdAt,
        lastUsedAt: s.lastUsedAt,
        expiresAt: s.expiresAt,
        sourceAddress: s.sourceAddress,
        current: s.id === p.sessionId,
      })),
    }
  }

  /**
   * DELETE /sessions/:id: the caller's own session, or (tenant.manage) one of a user of its
   * tenant. Another tenant's session, or another user's without the permission, is NOT_FOUND:
   * session ids do not tell whether they exist.
   */
  async revoke(p: Principal, id: string, meta: RequestMeta): Promise<void> {
    const s = await this.store.getSession(id)
    const mine = s?.userId === p.user.id
    if (!s || s.tenantId !== p.tenant.id || (!mine && !roleAllows(p.user.role, 'tenant.manage'))) {
      throw new MeshError('NOT_FOUND', {message: 'session not found'})
    }
    const owner = mine ? undefined : await this.store.getUser(s.userId)
    if (owner) this.requireNotOutranked(p, owner)
    await this.writes.revokeSession(id, 'revoked', userContext(this.clock, p.user, meta))
  }

  // ---- MFA
  //
  // The store holds each TOTP secret sealed (secrets-key.ts); it is opened only to check a code,
  // and a SecondFactor carries the sealed form, which the domain compares with the row's (a new
  // seal has a new nonce, so a changed secret never compares equal). Recovery codes need no key:
  // they are hashes, so a user whose secret cannot be opened still logs in with one.

  /** The TOTP secret of a stored one: opened, or as it is when plain (a row an older replica wrote). */
  private openSecret(userId: string, stored: string): string {
    if (!isSealed(stored)) return stored
    if (!this.secrets) throw new MeshError('SECRETS_KEY_MISSING')
    return this.secrets.open(userId, stored)
  }

  /** A code as a SecondFactor (its time step, or a recovery code's hash); undefined: no match. */
  private factor(user: UserRecord, stored: string, code: string): SecondFactor | undefined {
    if (!looksLikeTotp(code)) return {kind: 'recovery', hash: hashRecoveryCode(user.id, code)}
    const step = matchTotp(this.openSecret(user.id, stored), code, this.clock.now())
    return step === undefined ? undefined : {kind: 'totp', secret: stored, step}
  }

  /**
   * Uses up a TOTP code or a recovery code of the user (`stored`: the row's secret, sealed); false
   * when it is wrong or used.
   */
  async useSecondFactor(user: UserRecord, stored: string, code: string, meta: RequestMeta): Promise<boolean> {
    const f = this.factor(user, stored, code)
    return f !== undefined && this.writes.useSecondFactor(user.id, f, userContext(this.clock, user, meta))
  }

  /** POST /user/mfa: a new pending secret and its otpauth:// URI. */
  async beginMfa(p: Principal, meta: RequestMeta): Promise<{secret: string; uri: string}> {
    if (!this.secrets) throw new MeshError('SECRETS_KEY_MISSING')
    const secret = newTotpSecret()
    await this.writes.beginMfa(
      p.user.id,
      this.secrets.seal(p.user.id, secret),
      userContext(this.clock, p.user, meta),
    )
    return {secret, uri: totpUri(secret, p.user.username)}
  }

  /** POST /user/mfa/confirm: MFA on, and the recovery codes, shown this once. */
  async confirmMfa(p: Principal, code: string, meta: RequestMeta): Promise<{recoveryCodes: string[]}> {
    const mfa = await this.store.getMfa(p.user.id)
    if (!mfa) throw new MeshError('MFA_NOT_ENABLED', {message: 'no MFA setup is pending for this account'})
    if (mfa.enabledAt) throw new MeshError('MFA_ALREADY_ENABLED')
    const charged = await this.limits.charge(p.user.username, meta.sourceAddress)
    const step = matchTotp(this.openSecret(p.user.id, mfa.secret), code, this.clock.now())
    if (step === undefined) throw new MeshError('MFA_CODE_INVALID')
    const recoveryCodes = Array.from({length: RECOVERY_CODE_COUNT}, newRecoveryCode)
    await this.writes.confirmMfa(
      p.user.id,
      {secret: mfa.secret, step},
      recoveryCodes.map((c) => hashRecoveryCode(p.user.id, c)),
      userContext(this.clock, p.user, meta),
    )
    await this.limits.succeeded(p.user.username, meta.sourceAddress, charged)
    return {recoveryCodes}
  }

  /** POST /user/mfa/disable: needs a current code or a recovery code (used up). */
  async disableMfa(p: Principal, code: string, meta: RequestMeta): Promise<void> {
    const mfa = await this.store.getMfa(p.user.id)
    if (!mfa?.enabledAt) throw new MeshError('MFA_NOT_ENABLED')
    const charged = await this.limits.charge(p.user.username, meta.sourceAddress)
    const f = this.factor(p.user, mfa.secret, code)
    if (!f) throw new MeshError('MFA_CODE_INVALID')
    await this.writes.disableMfa(p.user.id, f, userContext(this.clock, p.user, meta))
    await this.limits.succeeded(p.user.username, meta.sourceAddress, charged)
  }
}
