/**
 * Per-source token buckets for a UDP service that must stay cheap under a flood: one bucket per
 * source key (an IP address), in a table of bounded size. Checked before any parsing or crypto.
 *
 * When the table is full the least recently seen source is evicted; an evicted source comes back
 * with a full bucket, so a spoofed-address flood can make the limit looser for a few sources but
 * can never lock out a real one.
 */

import type {Clock} from '../clock.js'

export interface SourceRateLimitOptions {
  /** Tokens added per second (sustained packets per second per source). */
  readonly perSecond: number
  /** Bucket size (packets a quiet source may send at once). */
  readonly burst: number
  /** Most sources tracked at once. */
  readonly maxSources: number
  /** Only its now() is read. */
  readonly clock: Pick<Clock, 'now'>
}

interface Bucket {
  tokens: number
  at: number
}

export class SourceRateLimiter {
  // Map iteration order is insertion order; take() re-inserts, so the first key is the least
  // recently seen. Owned by this instance; single-threaded.
  private readonly buckets = new Map<string, Bucket>()
  private evictions = 0

  constructor(private readonly opts: SourceRateLimitOptions) {
    if (!(opts.perSecond > 0) || !(opts.burst >= 1) || !(opts.maxSources >= 1)) {
      throw new RangeError('rate limit needs perSecond > 0, burst >= 1 and maxSources >= 1')
    }
  }

  /** Takes one token for `source`; false when its bucket is empty (drop the packet). */
  take(source: string): boolean {
    const now = this.opts.clock.now()
    let b = this.buckets.get(source)
    if (b === undefined) {
      if (this.buckets.size >= this.opts.maxSources) {
        const oldest = this.buckets.keys().next().value
        if (oldest !== undefined) this.buckets.delete(oldest)
        this.evictions++
      }
      b = {tokens: this.opts.burst, at: now}
    } else {
      this.buckets.delete(source)
      // A clock stepping backwards refills nothing rather than going negative.
      const elapsed = Math.max(0, now - b.at)
      b.tokens = Math.min(this.opts.burst, b.tokens + (elapsed * this.opts.perSecond) / 1000)
      b.at = now
    }
    this.buckets.set(source, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  stats(): {sources: number; evictions: number} {
    return {sources: this.buckets.size, evictions: this.evictions}
  }
}
