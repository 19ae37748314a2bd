/**
 * The failed-login limits as one port, so that controller replicas can share them:
 *  - per source address, a fixed window, strict (`max` failures a minute);
 *  - per user name, a token bucket (`max` at once, one more every minute / max) that only
 *    sources the user has not logged in from within TRUSTED_TTL_MS draw on;
 *  - trusted sources: where each user last logged in with the right password (16 per user).
 * See Auth.login for why the limits are shaped so. One controller keeps them in memory
 * (InProcessLoginLimits); replicas on PostgreSQL keep them in tables
 * (store/postgres/login-limits.ts), so N replicas do not give an attacker N budgets.
 */
import {MeshError} from '../../shared/errors.js'
import type {Clock} from '../../shared/clock.js'
import {FailureLimiter, TokenBucketLimiter, TrustedSources} from './rate-limit.js'

/** A source stays trusted this long after a successful login from it (the token lifetime). */
export const TRUSTED_TTL_MS = 30 * 86400 * 1000
/** Trusted sources kept per user (the least recent goes). */
export const TRUSTED_PER_USER = 16
export const LOGIN_WINDOW_MS = 60_000

export interface LoginLimits {
  /**
   * Before the password check: RATE_LIMITED when the source, or (from a source the user has
   * not logged in from recently) the user, is out of attempts; otherwise one attempt is charged,
   * up front (charged after the slow check, guesses sent at once would all pass).
   */
  charge(username: string, source: string | null): Promise<{trusted: boolean}>
  /** The password was right: the charged attempt is given back and the source trusted. */
  succeeded(username: string, source: string | null, charged: {trusted: boolean}): Promise<void>
}

export const rateLimited = (retryAfterS: number) =>
  new MeshError('RATE_LIMITED', {
    message: 'too many failed logins',
    hint: `wait ${retryAfterS} s and try again`,
  })

/** The limits in this process's memory (one controller; forgotten on restart). */
export class InProcessLoginLimits implements LoginLimits {
  private readonly byAddress: FailureLimiter
  private readonly byUser: TokenBucketLimiter
  private readonly trusted: TrustedSources

  constructor(opts: {clock: Clock; max: number}) {
    const now = () => opts.clock.now()
    this.byAddress = new FailureLimiter({max: opts.max, windowMs: LOGIN_WINDOW_MS, now})
    this.byUser = new TokenBucketLimiter({capacity: opts.max, refillEveryMs: LOGIN_WINDOW_MS / opts.max, now})
    this.trusted = new TrustedSources({
      ttlMs: TRUSTED_TTL_MS,
      perKey: TRUSTED_PER_USER,
      maxKeys: 100_000,
      now,
    })
  }

  async charge(username: string, source: string | null): Promise<{trusted: boolean}> {
    const addr = source ?? 'unknown'
    const trusted = source !== null && this.trusted.isTrusted(username, addr)
    if (this.byAddress.blocked(addr) || (!trusted && this.byUser.blocked(username))) {
      throw rateLimited(
        Math.max(this.byAddress.retryAfter(addr), trusted ? 0 : this.byUser.retryAfter(username)),
      )
    }
    this.byAddress.fail(addr)
    if (!trusted) this.byUser.take(username)
    return {trusted}
  }

  async succeeded(username: string, source: string | null, charged: {trusted: boolean}): Promise<void> {
    this.byAddress.forgive(source ?? 'unknown')
    if (!charged.trusted) this.byUser.refund(username)
    if (source !== null) this.trusted.trust(username, source)
  }
}
