/**
 * How many netmap sessions one node credential may open and hold. Every new session costs the
 * controller a full map (hundreds of KB in a large network), so one leaked or copied credential
 * must not be able to ask for thousands of them.
 *
 *  - MAX_SESSIONS_PER_NODE open at once. One meshd holds one per network; a reconnect before the
 *    old socket is known dead (a NAT rebinding, a laptop waking up) briefly holds two. A new
 *    session beyond the cap closes the node's OLDEST one with CLOSE.REPLACED (4409, "replaced
 *    by a newer session"): the newest is the one most likely alive.
 *  - New sessions per node: a token bucket of SESSION_BURST, refilled at SESSION_RATE_PER_SEC.
 *    Over it, the upgrade is refused with HTTP 429 RATE_LIMITED (and Retry-After) before any
 *    WebSocket exists, so no full map is built or sent.
 *
 * meshd and REPLACED: it treats it like any other close — it reconnects with its jittered
 * backoff (daemon/netmap/sync.ts). It gets 4409 only when five or more sessions share its
 * credential (a copied state directory); the copies then take turns, at most one new session
 * per second per credential (the bucket), and sessions refused with 429 do not reset their
 * backoff, which grows to its 10 s cap. Bounded, so no special case in the daemon.
 */
export const MAX_SESSIONS_PER_NODE = 4
export const SESSION_BURST = 10
export const SESSION_RATE_PER_SEC = 1

export class SessionRateLimiter {
  private readonly buckets = new Map<string, {tokens: number; at: number}>()

  constructor(
    private readonly burst = SESSION_BURST,
    private readonly ratePerSec = SESSION_RATE_PER_SEC,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes a token for `key`: 0 when granted, else the seconds until one is back. */
  take(key: string): number {
    const t = this.now()
    const b = this.buckets.get(key) ?? {tokens: this.burst, at: t}
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.ratePerSec) / 1000)
    b.at = t
    this.buckets.set(key, b)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.ratePerSec))
  }

  /** Forgets buckets that have refilled completely (they equal a fresh one): memory stays bounded. */
  prune(): void {
    const t = this.now()
    const fullAfterMs = (this.burst / this.ratePerSec) * 1000
    for (const [key, b] of this.buckets) if (t - b.at >= fullAfterMs) this.buckets.delete(key)
  }

  get size(): number {
    return this.buckets.size
  }
}
