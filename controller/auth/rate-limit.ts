/**
 * Limits for failed logins. In memory: a controller restart forgets them (and which sources are
 * trusted), which is acceptable for slowing down guessing.
 *
 * - FailureLimiter, per source address: a fixed window, strict (10 failures a minute).
 * - TokenBucketLimiter, per user name, charged only by sources the user has not logged in from
 *   recently: caps guessing of one account from many addresses at the refill rate.
 * - TrustedSources: where each user last logged in successfully. A trusted source skips the
 *   per-user bucket (its per-address limit still holds), so failures from elsewhere cannot lock
 *   the user out of the places it already uses; a new source waits for a token, never longer
 *   than one refill interval after the failures stop. See Auth.login (auth.ts).
 */

export class FailureLimiter {
  private readonly windows = new Map<string, {start: number; count: number}>()

  constructor(private readonly opts: {max: number; windowMs: number; now?: () => number}) {}

  private now(): number {
    return (this.opts.now ?? Date.now)()
  }

  /** True when `key` has used up its failures in the current window. */
  blocked(key: string): boolean {
    const w = this.windows.get(key)
    if (!w) return false
    if (this.now() - w.start >= this.opts.windowMs) {
      this.windows.delete(key)
      return false
    }
    return w.count >= this.opts.max
  }

  fail(key: string): void {
    const now = this.now()
    const w = this.windows.get(key)
    if (!w || now - w.start >= this.opts.windowMs) this.windows.set(key, {start: now, count: 1})
    else w.count++
    // Bounded memory: an address-spraying attacker cannot grow the map without limit.
    if (this.windows.size > 100_000) this.sweep(now)
  }

  /** Takes back one failure of `key` (an attempt charged up front that succeeded). */
  forgive(key: string): void {
    const w = this.windows.get(key)
    if (w && w.count > 0) w.count--
  }

  /** Seconds until `key` may try again. */
  retryAfter(key: string): number {
    const w = this.windows.get(key)
    if (!w) return 0
    return Math.max(1, Math.ceil((w.start + this.opts.windowMs - this.now()) / 1000))
  }

  private sweep(now: number): void {
    for (const [k, w] of this.windows) if (now - w.start >= this.opts.windowMs) this.windows.delete(k)
    if (this.windows.size > 100_000) this.windows.clear()
  }
}

/**
 * A token bucket per key: `capacity` attempts at once, then one more every `refillEveryMs`.
 * Unlike a fixed window it never blocks for longer than one refill interval once the attempts
 * stop, and an attacker that keeps draining it gets no more than the refill rate.
 */
export class TokenBucketLimiter {
  private readonly buckets = new Map<string, {tokens: number; at: number}>()

  constructor(private readonly opts: {capacity: number; refillEveryMs: number; now?: () => number}) {}

  private now(): number {
    return (this.opts.now ?? Date.now)()
  }

  /** The bucket of `key` refilled up to now; a key never seen is full. */
  private level(key: string): {tokens: number; at: number} {
    const now = this.now()
    const b = this.buckets.get(key)
    if (!b) return {tokens: this.opts.capacity, at: now}
    const tokens = Math.min(this.opts.capacity, b.tokens + Math.max(0, now - b.at) / this.opts.refillEveryMs)
    return {tokens, at: now}
  }

  /** True when `key` has no whole token left. */
  blocked(key: string): boolean {
    return this.level(key).tokens < 1
  }

  take(key: string): void {
    const b = this.level(key)
    this.buckets.set(key, {tokens: Math.max(0, b.tokens - 1), at: b.at})
    // Bounded memory: full buckets carry no information and go first.
    if (this.buckets.size > 100_000) this.sweep()
  }

  /** Gives back one token (an attempt charged up front that succeeded). */
  refund(key: string): void {
    const b = this.level(key)
    this.buckets.set(key, {tokens: Math.min(this.opts.capacity, b.tokens + 1), at: b.at})
  }

  /** Seconds until `key` has a whole token again. */
  retryAfter(key: string): number {
    const missing = 1 - this.level(key).tokens
    return missing <= 0 ? 0 : Math.max(1, Math.ceil((missing * this.opts.refillEveryMs) / 1000))
  }

  private sweep(): void {
    for (const k of [...this.buckets.keys()])
      if (this.level(k).tokens >= this.opts.capacity) this.buckets.delete(k)
    if (this.buckets.size > 100_000) this.buckets.clear()
  }
}

/**
 * Source addresses each user recently logged in from with the right password, for `ttlMs`;
 * at most `perKey` per user (the oldest goes) and `maxKeys` users (the least recent goes).
 * Only a correct password adds an entry, so nobody can grow it without knowing one.
 */
export class TrustedSources {
  private readonly sources = new Map<string, Map<string, number>>()

  constructor(private readonly opts: {ttlMs: number; perKey: number; maxKeys: number; now?: () => number}) {}

  private now(): number {
    return (this.opts.now ?? Date.now)()
  }

  trust(key: string, source: string): void {
    const mine = this.sources.get(key) ?? new Map<string, number>()
    // Re-inserted, so both maps keep least recent first.
    this.sources.delete(key)
    this.sources.set(key, mine)
    mine.delete(source)
    mine.set(source, this.now() + this.opts.ttlMs)
    while (mine.size > this.opts.perKey) mine.delete(mine.keys().next().value as string)
    while (this.sources.size > this.opts.maxKeys)
      this.sources.delete(this.sources.keys().next().value as string)
  }

  isTrusted(key: string, source: string): boolean {
    const until = this.sources.get(key)?.get(source)
    if (until === undefined) return false
    if (until > this.now()) return true
    this.sources.get(key)?.delete(source)
    return false
  }
}
