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
 * - `probing`: WireGuard is pointed at one direct candidate after the other, best first, each for
 *   `attemptMs`. Proof: traffic from the peer while WireGuard still points at the candidate
 *   (WireGuard moves its endpoint to the source of every authenticated packet, so packets that
 *   came another way would have moved it there), or a handshake from wherever it roamed to.
 * - `direct`: a direct endpoint handshook within `aliveMs`. Where WireGuard roamed to (an
 *   authenticated packet from a new address) is adopted, never fought.
 * - `relay`: no candidate answered: the peer goes through the relay's local endpoint, and the
 *   candidates are tried again after a backoff (`retryBaseMs` doubling up to `retryMaxMs`, reset
 *   when the candidates change), so a pair that can never go direct costs little. While a retry
 *   fails, the other side's relayed packets move WireGuard back to the relay by themselves.
 * - `waiting`: like relay, without a relay: the first candidate stays set (the peer may still
 *   reach this node there) until the next round.
 * - `idle`: nothing to point at; WireGuard learns the endpoint when the peer reaches us.
 */

import type {PathState} from '../../shared/protocol/local-api.js'

export type {PathState}

export interface PathTuning {
  /** How long one direct candidate gets to prove itself (WireGuard retries handshakes every 5 s). */
  readonly attemptMs: number
  /** A path with a handshake within this long is alive (WireGuard rekeys every 2 min). */
  readonly aliveMs: number
  /** First retry of direct candidates after a round failed. */
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
  /** Bytes received from the peer so far. */
  readonly rxBytes: number
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
}

export class PeerPath {
  private state: PathState = 'idle'
  private endpoint: string | undefined
  /** Probing: the round's candidates, the one being tried, since when, and rx seen there first. */
  private round: readonly string[] = []
  private attempt = 0
  private attemptAt = 0
  private rxBase: number | undefined
  /**
   * Probing: WireGuard was seen pointing at the candidate; from then on until the attempt ends it
   * is left alone, so packets that arrive another way (through the relay) move it away for good
   * instead of being hidden by the next apply.
   */
  private handsOff = false
  /** The candidate tried last: WireGuard may still show it for a moment after a round failed. */
  private lastTried: string | undefined
  /** Failed rounds in a row, for the backoff, and when the next round is due. */
  private failures = 0
  private retryAt = 0
  private candidatesKey: string | undefined

  constructor(private readonly tuning: PathTuning = DEFAULT_TUNING) {}

  get current(): PathDecision {
    return {
      state: this.state,
      endpoint: this.state === 'probing' && this.handsOff ? undefined : this.endpoint,
    }
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

    if (
      this.state === 'probing' &&
      wg !== undefined &&
      wg.endpoint === this.endpoint &&
      this.rxBase === undefined
    ) {
      this.rxBase = wg.rxBytes
      this.handsOff = true
    }
    if (this.isLiveDirect(wg, relay, now)) {
      this.failures = 0
      return this.set('direct', wg!.endpoint)
    }
    // Relayed or waiting, and WireGuard moved to another direct address (the peer's packets came
    // from there): verify it like a candidate, without pointing WireGuard anywhere.
    if (
      (this.state === 'relay' || this.state === 'waiting') &&
      wg?.endpoint !== undefined &&
      wg.endpoint !== relay &&
      wg.endpoint !== this.lastTried &&
      wg.endpoint !== this.endpoint &&
      wg.lastHandshakeMs > 0 &&
      now - wg.lastHandshakeMs < this.tuning.aliveMs
    ) {
      this.round = [wg.endpoint]
      this.attempt = 0
      this.attemptAt = now
      this.rxBase = wg.rxBytes
      this.handsOff = true
      return this.set('probing', wg.endpoint)
    }

    switch (this.state) {
      case 'direct':
        // The other side went back to the relay (WireGuard followed its packets there): follow,
        // and try direct again later.
        if (relay !== undefined && wg?.endpoint === relay) return this.giveUp(candidates, relay, now)
        // The direct path went quiet: start from the best candidate.
        return this.startRound(candidates, relay, now)
      case 'idle':
        return this.startRound(candidates, relay, now)
      case 'probing':
        if (candidatesChanged) return this.startRound(candidates, relay, now)
        if (now - this.attemptAt < this.tuning.attemptMs) return this.current
        if (this.attempt + 1 < this.round.length) return this.probe(this.attempt + 1, now)
        return this.giveUp(candidates, relay, now)
      case 'waiting':
      case 'relay':
        if (now >= this.retryAt) return this.startRound(candidates, relay, now)
        if (relay !== undefined) return this.set('relay', relay)
        return this.set('waiting', this.state === 'waiting' ? this.endpoint : candidates[0])
    }
  }

  /**
   * A direct endpoint is alive when it handshook within aliveMs. While a candidate is being
   * tried: a handshake after the attempt began from wherever WireGuard roamed to (not the relay),
   * or traffic received at the candidate (more bytes than at the first look after the switch,
   * WireGuard still pointing there; meshd sends probes through the tunnel while it tries). A
   * fresh handshake at the candidate itself is no proof: the peer may have reached this node
   * elsewhere just before the apply pointed WireGuard back at the candidate.
   */
  private isLiveDirect(wg: WireGuardView | undefined, relay: string | undefined, now: number): boolean {
    if (wg === undefined || wg.endpoint === undefined || wg.endpoint === relay) return false
    if (wg.lastHandshakeMs <= 0 || now - wg.lastHandshakeMs >= this.tuning.aliveMs) return false
    // Proven before, or a session found at start-up: alive while it handshakes.
    if (this.state === 'direct' || this.state === 'idle') return true
    // Relayed or waiting: WireGuard may still show the candidate of the failed round; a move to
    // another address is verified first (see update()).
    if (this.state !== 'probing') return false
    // Bytes received since WireGuard was seen at the candidate, and it is still at a direct
    // address (the candidate, or wherever the peer's packets came from): they came directly.
    if (this.rxBase !== undefined) return wg.rxBytes > this.rxBase
    // Not seen at the candidate yet: a handshake since the attempt began, from an address the
    // peer's packets moved WireGuard to.
    return wg.endpoint !== this.endpoint && wg.lastHandshakeMs >= this.attemptAt
  }

  private startRound(candidates: readonly string[], relay: string | undefined, now: number): PathDecision {
    this.round = [...candidates]
    if (this.round.length > 0) return this.probe(0, now)
    if (relay !== undefined) return this.set('relay', relay)
    return this.set('idle', undefined)
  }

  private probe(i: number, now: number): PathDecision {
    this.attempt = i
    this.attemptAt = now
    this.rxBase = undefined
    this.handsOff = false
    this.lastTried = this.round[i]
    return this.set('probing', this.round[i])
  }

  private giveUp(candidates: readonly string[], relay: string | undefined, now: number): PathDecision {
    const delay = Math.min(this.tuning.retryMaxMs, this.tuning.retryBaseMs * 2 ** Math.min(this.failures, 20))
    this.failures++
    this.retryAt = now + delay
    if (relay !== undefined) return this.set('relay', relay)
    return this.set('waiting', candidates[0])
  }

  private set(state: PathState, endpoint: string | undefined): PathDecision {
    this.state = state
    this.endpoint = endpoint
    return this.current
  }
}
