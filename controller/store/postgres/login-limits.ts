/**
 * The failed-login limits (controller/auth/login-limits.ts) in PostgreSQL, shared by every
 * controller replica: one budget per source address and per user, whichever replica a guess
 * reaches. Each charge is one transaction that locks the source's window row and the user's
 * bucket row, so concurrent guesses through several replicas are counted one by one.
 *
 * Bounded: the tables only grow with sources and user names actually tried; every
 * SWEEP_EVERY charges a replica deletes windows that ended, buckets that refilled and trust
 * that expired (rows that carry no information).
 */
import type pg from 'pg'
import type {Clock} from '../../../shared/clock.js'
import {
  LOGIN_WINDOW_MS,
  TRUSTED_PER_USER,
  TRUSTED_TTL_MS,
  rateLimited,
  type LoginLimits,
} from '../../auth/login-limits.js'
import {checkout} from './open.js'

const SWEEP_EVERY = 1_000

export class PgLoginLimits implements LoginLimits {
  private readonly refillMs: number
  private charges = 0

  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: {clock: Clock; max: number},
  ) {
    this.refillMs = LOGIN_WINDOW_MS / opts.max
  }

  async charge(username: string, source: string | null): Promise<{trusted: boolean}> {
    const now = this.opts.clock.now()
    const addr = source ?? 'unknown'
    const {max} = this.opts
    if (++this.charges % SWEEP_EVERY === 0) await this.sweep(now)
    const lease = await checkout(this.pool)
    const c = lease.client
    let failure: unknown
    try {
      await c.query('BEGIN')
      const trusted =
        source !== null &&
        (
          await c.query('SELECT 1 FROM login_trusted WHERE username = $1 AND source = $2 AND until_ms > $3', [
            username,
            source,
            now,
          ])
        ).rows.length > 0
      await c.query('INSERT INTO login_windows VALUES ($1, $2, 0) ON CONFLICT DO NOTHING', [addr, now])
      const w = (
        await c.query<{started_ms: number; failures: number}>(
          'SELECT started_ms, failures FROM login_windows WHERE source = $1 FOR UPDATE',
          [addr],
        )
      ).rows[0]!
      const fresh = now - Number(w.started_ms) >= LOGIN_WINDOW_MS
      const started = fresh ? now : Number(w.started_ms)
      const failures = fresh ? 0 : w.failures
      let level = max
      if (!trusted) {
        await c.query('INSERT INTO login_buckets VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
          username,
          max,
          now,
        ])
        const b = (
          await c.query<{tokens: number; at_ms: number}>(
            'SELECT tokens, at_ms FROM login_buckets WHERE username = $1 FOR UPDATE',
            [username],
          )
        ).rows[0]!
        level = Math.min(max, b.tokens + Math.max(0, now - Number(b.at_ms)) / this.refillMs)
      }
      if (failures >= max || level < 1) {
        await c.query('ROLLBACK')
        const addrWait = failures >= max ? Math.ceil((started + LOGIN_WINDOW_MS - now) / 1000) : 0
        const userWait = level < 1 ? Math.ceil(((1 - level) * this.refillMs) / 1000) : 0
        throw rateLimited(Math.max(1, addrWait, userWait))
      }
      await c.query('UPDATE login_windows SET started_ms = $2, failures = $3 WHERE source = $1', [
        addr,
        started,
        failures + 1,
      ])
      if (!trusted)
        await c.query('UPDATE login_buckets SET tokens = $2, at_ms = $3 WHERE username = $1', [
          username,
          Math.max(0, level - 1),
          now,
        ])
      await c.query('COMMIT')
      return {trusted}
    } catch (err) {
      if (!(err instanceof Error && 'code' in err && (err as {code: unknown}).code === 'RATE_LIMITED'))
        await c.query('ROLLBACK').catch((gone: unknown) => (failure = gone))
      throw err
    } finally {
      lease.release(failure)
    }
  }

  async succeeded(username: string, source: string | null, charged: {trusted: boolean}): Promise<void> {
    const now = this.opts.clock.now()
    const addr = source ?? 'unknown'
    await this.pool.query('UPDATE login_windows SET failures = greatest(0, failures - 1) WHERE source = $1', [
      addr,
    ])
    if (!charged.trusted)
      await this.pool.query(
        `UPDATE login_buckets SET tokens = least($2::float8, tokens + greatest(0, $3 - at_ms) / $4::float8 + 1), at_ms = $3
           WHERE username = $1`,
        [username, this.opts.max, now, this.refillMs],
      )
    if (source === null) return
    await this.pool.query(
      `INSERT INTO login_trusted VALUES ($1, $2, $3) ON CONFLICT (username, source) DO UPDATE SET until_ms = excluded.until_ms`,
      [username, source, now + TRUSTED_TTL_MS],
    )
    await this.pool.query(
      `DELETE FROM login_trusted WHERE username = $1 AND source NOT IN (
         SELECT source FROM login_trusted WHERE username = $1 ORDER BY until_ms DESC LIMIT $2)`,
      [username, TRUSTED_PER_USER],
    )
  }

  private async sweep(now: number): Promise<void> {
    await this.pool.query('DELETE FROM login_windows WHERE started_ms <= $1', [now - LOGIN_WINDOW_MS])
    await this.pool.query('DELETE FROM login_buckets WHERE tokens + ($1 - at_ms) / $2::float8 >= $3', [
      now,
      this.refillMs,
      this.opts.max,
    ])
    await this.pool.query('DELETE FROM login_trusted WHERE until_ms <= $1', [now])
  }
}
