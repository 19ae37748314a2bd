/**
 * The path to one peer: which endpoint its WireGuard peer should point at, and why.
 *
 * Endpoint choice used to live in the WireGuard diff, which kept any endpoint that handshook in
 * the last 3 minutes. A relayed peer keeps handshaking, so a switch to direct (and back) would
 * have been refused for minutes. Here one small state machine per peer decides, from what
 * WireGuard shows (endpoint, last handshake) and the peer's candidates; the diff applies what it
 * is told. It holds no timers and reads no clock: the caller passes `now` on every update, so
 * tests drive it through any timeline without waiting.
 *
 * States:
 * - `probing` (no relay at hand): WireGuard is pointed at one direct candidate after the other,
 *   best first, each for `attemptMs`; a handshake that happens after the attempt began proves it.
 * - `direct`: a direct endpoint handshook within `aliveMs`. Where WireGuard roamed to (an
 *   authenticated packet from a new address) is adopted, never fought.
 * - `relay`: the peer goes through the relay endpoint at once, and direct candidates are tried in
 *   the background without moving it (`tryDirect`: the caller opens its NAT toward them and
 *   reports an answer with proven()). A round that proves nothing within `attemptMs` per candidate
 *   is repeated after a backoff (`retryBaseMs` doubling up to `retryMaxMs`, reset when the
 *   candidates change), so a pair that can never go direct costs little.
 * - `waiting`: no candidate answered and there is no relay: the first candidate stays set (the
 *   peer may still reach us there) until the next round.
 * - `idle`: nothing to point at; WireGuard learns the endpoint when the peer reaches us.
 */

import type {PathState} from '../../shared/protocol/local-api.js'

export type {PathState}

export interface PathTuning {
  /** How long one direct candidate gets to handshake (WireGuard retries every 5 s). */
  readonly attemptMs: number
  /** A path with a handshake within this long is alive (WireGuard rekeys every 2 min). */
  readonly aliveMs: number
  /** First background retry of direct candidates after a round failed. */
  readonly retryBaseMs: number
  /** Cap of the retry backoff. */
  readonly retryMaxMs: number
}

export const DEFAULT_TUNING: PathTuning = {
  attemptMs: 6_000,
  aliveMs: 180_000,
  retryBaseMs: 10_000,
  retryMaxMs: 120_000,
}

/** What WireGuard shows for the peer now. */
export interface WireGuardView {
  /** The endpoint in use; undefined when WireGuard has none. */
  readonly endpoint: string | undefined
  /** Milliseconds since the epoch; 0 = never. */
  readonly lastHandshakeMs: number
}

export interface PathInput {
  /** Direct candidates, best first. */
  readonly candidates: readonly string[]
  /** The local endpoint that carries this peer over the relay; undefined without a relay. */
  readonly relay: string | undefined
  /** undefined before the peer is on the interface. */
  readonly wg: WireGuardView | undefined
  readonly now: number
}

export interface PathDecision {
  readonly state: PathState
  /** The endpoint WireGuard should have; undefined leaves WireGuard's own choice alone. */
  readonly endpoint: string | undefined
  /**
   * Set while relayed when a background round of direct attempts is due: the candidates to try
   * without moving the peer off the relay (the caller opens its NAT toward them and probes), and
   * to report back with proven().
   */
  readonly tryDirect: readonly string[] | undefined
}

export class PeerPath {
  private state: PathState = 'idle'
  private endpoint: string | undefined
  /** Probing: the round's candidates, the one being tried and since when. */
  private round: readonly string[] = []
  private attempt = 0
  private attemptAt = 0
  /** Relayed: the background round running since (0 = none). */
  private backgroundAt = 0
  /** Failed rounds in a row, for the backoff, and when the next round is due. */
  private failures = 0
  private retryAt = 0
  private candidatesKey: string | undefined

  constructor(private readonly tuning: PathTuning = DEFAULT_TUNING) {}

  get current(): PathDecision {
    return {state: this.state, endpoint: this.endpoint, tryDirect: undefined}
  }

  /**
   * A background attempt proved a direct endpoint (the caller saw an answer from it): the peer
   * moves there now.
   */
  proven(endpoint: string): PathDecision {
    this.failures = 0
    this.backgroundAt = 0
    return this.set('direct', endpoint)
  }

  /** Takes what is known now and returns where WireGuard should point. */
  update(input: PathInput): PathDecision {
    const {candidates, relay, wg, now} = input
    const key = candidates.join(',')
    const candidatesChanged = this.candidatesKey !== undefined && key !== this.candidatesKey
    this.candidatesKey = key
    if (candidatesChanged) {
      this.failures = 0
      this.retryAt = now
    }

    // A live direct path wins, wherever WireGuard found it: it roams to the source of every
    // authenticated packet. While probing, only a handshake after the attempt began counts.
    const live =
      wg !== undefined &&
      wg.endpoint !== undefined &&
      wg.endpoint !== relay &&
      wg.lastHandshakeMs > 0 &&
      now - wg.lastHandshakeMs < this.tuning.aliveMs &&
      (this.state !== 'probing' || wg.lastHandshakeMs >= this.attemptAt)
    if (live) {
      this.failures = 0
      this.backgroundAt = 0
      return this.set('direct', wg.endpoint)
    }

    switch (this.state) {
      case 'idle':
        return this.startRound(candidates, relay, now)
      case 'direct':
        // The direct path went quiet: start over from the best candidate (or the relay).
        return this.startRound(candidates, relay, now)
      case 'probing':
        if (candidatesChanged) return this.startRound(candidates, relay, now)
        if (now - this.attemptAt < this.tuning.attemptMs) return this.current
        if (this.attempt + 1 < this.round.length) {
          this.attempt++
          this.attemptAt = now
          return this.set('probing', this.round[this.attempt])
        }
        return this.giveUp(candidates, relay, now)
      case 'waiting':
        if (relay !== undefined) return this.set('relay', relay)
        if (now >= this.retryAt) return this.startRound(candidates, relay, now)
        return this.current
      case 'relay': {
        if (relay === undefined) return this.set('waiting', candidates[0])
        this.set('relay', relay)
        if (this.backgroundAt > 0) {
          // A round in the background: it failed when proven() did not come in time.
          if (now - this.backgroundAt < this.tuning.attemptMs * Math.max(1, this.round.length))
            return this.current
          this.backgroundAt = 0
          this.scheduleRetry(now)
          return this.current
        }
        if (now < this.retryAt || candidates.length === 0) return this.current
        this.round = [...candidates]
        this.backgroundAt = now
        return {...this.current, tryDirect: this.round}
      }
    }
  }

  private startRound(candidates: readonly string[], relay: string | undefined, now: number): PathDecision {
    this.round = [...candidates]
    this.attempt = 0
    this.attemptAt = now
    this.backgroundAt = 0
    if (this.round.length > 0) {
      // With a relay at hand, direct attempts run in the background and traffic keeps flowing.
      if (relay !== undefined) {
        this.set('relay', relay)
        this.backgroundAt = now
        return {...this.current, tryDirect: this.round}
      }
      return this.set('probing', this.round[0])
    }
    if (relay !== undefined) return this.set('relay', relay)
    return this.set('idle', undefined)
  }

  private giveUp(candidates: readonly string[], relay: string | undefined, now: number): PathDecision {
    this.scheduleRetry(now)
    if (relay !== undefined) return this.set('relay', relay)
    return this.set('waiting', candidates[0])
  }

  private scheduleRetry(now: number): void {
    const delay = Math.min(this.tuning.retryMaxMs, this.tuning.retryBaseMs * 2 ** Math.min(this.failures, 20))
    this.failures++
    this.retryAt = now + delay
  }

  private set(state: PathState, endpoint: string | undefined): PathDecision {
    this.state = state
    this.endpoint = endpoint
    return this.current
  }
}
