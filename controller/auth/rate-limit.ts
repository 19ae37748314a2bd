/**
 * A small fixed-window limiter for failed logins, keyed by source address and by user name.
 * In memory: a controller restart forgets it, which is acceptable for slowing down guessing.
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
