/**
 * The path to one peer: which endpoint its WireGuard peer should point at, and why.
 *
 * Endpoint choice used to live in the WireGuard diff, which kept any endpoint that handshook in
 * the last 3 minutes. A relayed peer keeps handshaking, so a switch to direct (and back) would
 * have been refused for minutes. Here one small state machine per peer decides, from what
 * WireGuard shows (endpoint, last handshake, bytes) and the peer's candidates; the diff applies
 * what it is told. It holds no timers and reads no clock: the caller passes `now` on every
 * update, so tests drive it through any timeline without waiting.
 *
 * With a relay (the netmap names one and its socket is open) the peer goes through the relay at
 * once, and direct is reached by upgrades (daemon/nat/upgrade.ts) that never take the relayed
 * session down: WireGuard is pointed at a candidate only for the short, coordinated switch of
 * an upgrade. Without a relay, the candidates are tried one after the other (probing).
 *
 * States:
 * - `relay`: through the relay's local endpoint. An upgrade is due at `retryAt` (at once for a
 *   new peer, then with a backoff from `upgradeBaseMs` doubling up to `upgradeMaxMs`, and only
 *   every `upgradeSlowMs` after `upgradeSlowAfter` failures in a row; reset when the candidates
 *   change or a direct path dies), so a pair that can never go direct costs little. No upgrade at
 *   all while the caller says direct is out of reach (one side's UDP does not get out:
 *   daemon/nat/candidates.ts directOutOfReach), since every attempt would be futile and costs the
 *   switching side what it sends in its window; one is due at once when that changes. Where the
 *   two sides' NAT behaviour rules direct out (shared/nat/behaviour.ts directImpossible: both
 *   mappings endpoint-dependent, or one endpoint-dependent against address-and-port-dependent
 *   filtering) only one attempt every `natRecheckMs` checks that the classification is right;
 *   one is due at once when the verdict changes (a side's NAT behaviour changed). A new path
 *   whose NAT behaviours are not known yet (netcheck runs for a few seconds after a node joins)
 *   makes its first attempt only once they are, or after `natWaitMs`, so a pair that theory keeps
 *   on the relay makes no attempt at all. When
 *   WireGuard roams away from the relay (an authenticated packet came from a direct address: the
 *   other side switched), that address is adopted as direct. When the relay goes away the
 *   candidates are tried at once (probing), since nothing else carries the peer, except for a
 *   pair whose NAT behaviour rules direct out while its relay socket reconnects: it stays on the
 *   relay's local endpoint (whose shim queues what WireGuard sends meanwhile) for up to
 *   `relayReturnMs`, since probing could not work and would only send its packets nowhere.
 * - `probing`: without a relay, WireGuard is pointed at one direct candidate after the other,
 *   best first, each for `attemptMs`; proof is traffic from the peer while WireGuard still points
 *   at the candidate, or a handshake from wherever it roamed to. With a relay, `probing` is the
 *   switch of an upgrade, owned by the upgrade until it ends.
 * - `direct`: a direct endpoint handshook within `aliveMs`. Where WireGuard roamed to is adopted,
 *   never fought. When packets go out and nothing comes back for `stallMs` the decision asks for
 *   a probe; after `deadMs` the path is dead: back to the relay (or to probing without one).
 * - `waiting`: no relay and no candidate answered: the first candidate stays set (the peer may
 *   still reach this node there) until the next round.
 * - `idle`: nothing to point at; WireGuard learns the endpoint when the peer reaches us.
 */

import type {PathState} from '../../shared/protocol/local-api.js'

export type {PathState}

export interface PathTuning {
  /** How long one direct candidate gets to prove itself (WireGuard retries handshakes every 5 s). */
  readonly attemptMs: number
  /** A path with a handshake within this long is alive (WireGuard rekeys every 2 min). */
  readonly aliveMs: number
  /** Without a relay: first retry of direct candidates after a round failed. */
  readonly retryBaseMs: number
  /** Cap of that backoff. */
  readonly retryMaxMs: number
  /** With a relay: the next upgrade after a failed one; doubles up to upgradeMaxMs... */
  readonly upgradeBaseMs: number
  readonly upgradeMaxMs: number
  /**
   * ...and after upgradeSlowAfter failures in a row (every mode and candidate tried several
   * times: the NATs will not let this pair go direct) only every upgradeSlowMs, since a failed
   * switch costs the switching side the packets it sent in the window.
   */
  readonly upgradeSlowAfter: number
  readonly upgradeSlowMs: number
  /** An upgrade whose start was put off (the relayed tunnel did not answer yet) is due again after this. */
  readonly deferMs: number
  /** Direct: packets sent and nothing received since the first of them for this long calls for a probe... */
  readonly stallMs: number
  /** ...and for this long means the direct path is dead. */
  readonly deadMs: number
  /** After a direct path died, the first upgrade waits this long. */
  readonly reupgradeMs: number
  /** How long WireGuard may still show an old endpoint after the path moved to the relay. */
  readonly relayApplyMs: number
  /** How long a new peer waits for an expected relay before trying candidates without it. */
  readonly relayWaitMs: number
  /**
   * A new relayed peer's first upgrade waits this long: an attempt that fails costs what the
   * switching side sends during its window, and a new peer's first packets (the first ping, the
   * first connection) should go through the relay undisturbed.
   */
  readonly firstUpgradeMs: number
  /** A pair whose NAT behaviour rules direct out tries one upgrade this often, in case theory was wrong. */
  readonly natRecheckMs: number
  /**
   * How long a new path's first upgrade waits for both sides' NAT behaviour to be known: a
   * netcheck behind a port-filtering NAT takes ~2.5 s (its filtering tests wait out their
   * timeout), then the report and the delta; a loaded node applies netmap frames late. Only
   * paths whose verdict is still open wait (shared/nat/behaviour.ts verdictPending).
   */
  readonly natWaitMs: number
  /**
   * How long a relayed pair whose NAT behaviour rules direct out stays on its relay endpoint
   * while the relay socket reconnects, before trying the candidates after all. The relay socket
   * of a meshd whose relay died is back in well under a second; 10 s is the reconnect bound
   * the controller-failover tests hold replicas to, and past it the relay may be gone for good.
   */
  readonly relayReturnMs: number
  /**
   * A relayed peer that never handshook although WireGuard has sent to the relay for this long
   * asks for a poke (PathDecision.poke): a relayed handshake takes one relay round trip (20-150 ms
   * on a loaded 2-core machine), so one missing after this long is stuck, and WireGuard would try
   * again only after 5 s (REKEY_TIMEOUT). At most maxPokes per path; then WireGuard's own retries.
   */
  readonly pokeMs: number
  readonly maxPokes: number
}

export const DEFAULT_TUNING: PathTuning = {
  attemptMs: 6_000,
  aliveMs: 180_000,
  retryBaseMs: 10_000,
  retryMaxMs: 120_000,
  upgradeBaseMs: 2_000,
  upgradeMaxMs: 10_000,
  upgradeSlowAfter: 8,
  upgradeSlowMs: 60_000,
  deferMs: 1_000,
  stallMs: 1_000,
  deadMs: 2_000,
  reupgradeMs: 4_000,
  relayApplyMs: 2_000,
  relayWaitMs: 3_000,
  firstUpgradeMs: 1_000,
  natRecheckMs: 10 * 60_000,
  natWaitMs: 15_000,
  relayReturnMs: 10_000,
  pokeMs: 700,
  maxPokes: 3,
}

/** How long a latency sample counts toward PeerPath.baseLatency (it keeps one to two of these). */
export const BASE_LATENCY_MS = 60_000

/** What WireGuard shows for the peer now. */
export interface WireGuardView {
  /** The endpoint in use; undefined when WireGuard has none. */
  readonly endpoint: string | undefined
  /** Milliseconds since the epoch; 0 = never. */
  readonly lastHandshakeMs: number
  /** Bytes received from the peer so far. */
  readonly rxBytes: number
  /** Bytes sent to the peer so far (absent: no stall detection). */
  readonly txBytes?: number
}

export interface PathInput {
  /** Direct candidates, best first. */
  readonly candidates: readonly string[]
  /** The local endpoint that carries this peer over the relay; undefined without a usable relay. */
  readonly relay: string | undefined
  /**
   * The peer's relay endpoint while the relay socket is down and reconnecting (its shim queues
   * what WireGuard sends there until the socket is back); undefined when the relay is usable or
   * there is none. See relayReturnMs.
   */
  readonly relayReconnecting?: string | undefined
  /**
   * The netmap names a relay that is not usable yet (its socket is opening). A new peer then
   * waits for it up to relayWaitMs instead of handshaking toward a candidate: WireGuard retries an
   * unanswered handshake only after 5 s, so one sent the wrong way delays the first packet.
   */
  readonly relayExpected?: boolean
  /**
   * Why a direct path is out of reach for now (daemon/nat/candidates.ts directOutOfReach);
   * undefined when it may be reachable. With a relay, no upgrade is attempted until it is
   * undefined again. Without a relay the candidates are still tried: nothing else carries the peer.
   */
  readonly directOutOfReach?: string | undefined
  /**
   * Why both sides' NAT behaviour rules a direct path out (shared/nat/behaviour.ts
   * directImpossible); undefined when it may work or a side's behaviour is unknown. With a relay,
   * upgrades are then only rare re-checks (natRecheckMs).
   */
  readonly natImpossible?: string | undefined
  /**
   * A side's NAT behaviour is not known yet (its netcheck has not reported): a new path's first
   * upgrade waits for it, up to natWaitMs from the path's start.
   */
  readonly natPending?: boolean
  /** undefined before the peer is on the interface. */
  readonly wg: WireGuardView | undefined
  readonly now: number
}

export interface PathDecision {
  readonly state: PathState
  /** The endpoint WireGuard should have; undefined leaves WireGuard's own choice alone. */
  readonly endpoint: string | undefined
  /** Direct and nothing heard back lately: send a probe through the tunnel (its answer is traffic). */
  readonly probe?: boolean
  /**
   * Relayed and no handshake ever, pokeMs after WireGuard was first seen sending to the relay:
   * the caller should make WireGuard initiate a handshake at once. Only a re-created peer does:
   * WireGuard sends at most one initiation per 5 s per peer, and neither a new endpoint, a
   * keepalive turned on, nor a packet to the peer's address sends one sooner. The n-th poke of
   * this path (1-based), so that the caller can leave the first to one side of the pair.
   */
  readonly poke?: number
}

/**
 * How an upgrade attempt goes: `open` — this side opens its NAT toward the peer's candidates and
 * the peer switches; `switch` — the peer opens and this side switches. They alternate, because
 * which side must switch depends on the NATs (an endpoint-dependent mapping must be the side that
 * sends first). `index` picks the candidate the switching side aims at.
 */
export interface UpgradePlan {
  readonly mode: 'open' | 'switch'
  readonly index: number
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
   * is left alone, so packets that arrive another way move it away for good instead of being
   * hidden by the next apply.
   */
  private handsOff = false
  /** Probing without a relay: verifying an address WireGuard roamed to (not a round). */
  private verifying = false
  /** An upgrade's switch owns the endpoint (see beginSwitch). */
  private switching = false
  /** The candidate tried last: WireGuard may still show it for a moment after a round failed. */
  private lastTried: string | undefined
  /**
   * Relay: set when the path went to the relay from a direct endpoint; cleared once WireGuard is
   * seen at the relay, or after relayApplyMs (the apply has long run by then: an address other
   * than the relay's is a roam, e.g. the other side kept sending directly). Until then WireGuard
   * still shows the old endpoint, which is no roam.
   */
  private relayPendingUntil = 0
  /** Relay, direct ruled out: when the relay socket was first seen down (see relayReturnMs). */
  private relayLostAt: number | undefined
  /** When the peer's key was rotated, while the direct path waits for the new key's handshake. */
  private rotatedAt: number | undefined
  /** Failed rounds or upgrades in a row, for the backoff, and when the next is due. */
  private failures = 0
  private retryAt = 0
  /** Upgrade attempts since the last success (the plan rotates through modes and candidates). */
  private attempts = 0
  private candidatesKey: string | undefined
  /** The caller's directOutOfReach at the last update. */
  private outOfReach: string | undefined
  /** The caller's natImpossible and natPending at the last update. */
  private impossible: string | undefined
  private natPending = false
  /** Upgrade attempts this side led or joined since the path began (for status). */
  private attemptsTotal = 0
  get upgradeAttempts(): number {
    return this.attemptsTotal
  }
  /** Why NAT behaviour rules direct out (only rare re-check attempts); undefined if it does not. */
  get natImpossible(): string | undefined {
    return this.impossible
  }
  /** Why a direct path is out of reach for now (no upgrade is started or joined); undefined if not. */
  get directOutOfReach(): string | undefined {
    return this.outOfReach
  }
  /**
   * A new peer waiting for the relay to open: meshd keeps it off WireGuard meanwhile, because a
   * packet to a peer without an endpoint already spends WireGuard's one handshake per 5 s.
   */
  private waitingForRelay = false
  get awaitingRelay(): boolean {
    return this.waitingForRelay
  }
  /** When this path was first updated (a new peer waits for an expected relay from then). */
  private bornAt: number | undefined
  /**
   * Traffic: the last rx seen, and tx then (tx above it = sent since); when tx was first seen
   * above it (undefined: nothing sent since). An idle pair's keepalive after a quiet minute is
   * not a stall: the clock starts at the first packet that went unanswered.
   */
  private rxSeen: number | undefined
  private txAtRx = 0
  private unansweredSince: number | undefined
  /** When WireGuard's counters were last looked at. */
  private lookedAt: number | undefined
  private latencyMs: number | undefined
  private latencyAt = 0
  /** The smallest latency sample of the current and the previous BASE_LATENCY_MS (see baseLatency). */
  private baseCur: number | undefined
  private basePrev: number | undefined
  private baseSince = 0
  /** Relay: since when WireGuard has shown the relay endpoint with no handshake ever (see pokeMs). */
  private unshakenSince: number | undefined
  private pokes = 0

  constructor(private readonly tuning: PathTuning = DEFAULT_TUNING) {}

  get current(): PathDecision {
    return {
      state: this.state,
      endpoint: this.state === 'probing' && this.handsOff ? undefined : this.endpoint,
    }
  }

  /** The last measured round trip through the tunnel, and when (0 = never). */
  get latency(): {ms: number | undefined; at: number} {
    return {ms: this.latencyMs, at: this.latencyAt}
  }

  /**
   * The peer replaced its key pair (`mesh rotate-key`) at `now`; this path now belongs to the new
   * key. A direct path stays direct while WireGuard handshakes with the new key (see update()).
   */
  keyRotated(now: number): void {
    this.rotatedAt = now
    this.rxSeen = undefined
    this.unansweredSince = undefined
  }

  /** A latency sample was asked for now (a peer that never answers is not asked every tick). */
  latencyAsked(now: number): void {
    this.latencyAt = now
  }

  noteLatency(ms: number, now: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    this.latencyMs = ms
    this.latencyAt = now
    // Two buckets of BASE_LATENCY_MS: the base is the smallest sample of the last one to two.
    if (now - this.baseSince >= 2 * BASE_LATENCY_MS) {
      this.basePrev = undefined
      this.baseCur = undefined
      this.baseSince = now
    } else if (now - this.baseSince >= BASE_LATENCY_MS) {
      this.basePrev = this.baseCur
      this.baseCur = undefined
      this.baseSince = now
    }
    this.baseCur = Math.min(this.baseCur ?? ms, ms)
  }

  /**
   * The smallest round trip through the tunnel measured in the last one to two minutes
   * (BASE_LATENCY_MS), undefined without a sample: what the path costs unloaded. A relayed
   * round trip under load is mostly queueing in the relay's buffers, which a direct path does not
   * go through, so an upgrade sizes its switch window from this, not from the latest sample.
   */
  baseLatency(now: number): number | undefined {
    if (now - this.baseSince >= 2 * BASE_LATENCY_MS) return undefined
    if (now - this.baseSince >= BASE_LATENCY_MS) return this.baseCur
    if (this.basePrev === undefined) return this.baseCur
    return Math.min(this.basePrev, this.baseCur ?? this.basePrev)
  }

  /** Takes what is known now and returns where WireGuard should point. */
  update(input: PathInput): PathDecision {
    const {candidates, relay, wg, now} = input
    const key = candidates.join(',')
    const candidatesChanged = this.candidatesKey !== undefined && key !== this.candidatesKey
    this.candidatesKey = key
    this.bornAt ??= now
    const outOfReach = input.directOutOfReach
    // Direct came within reach (a mapping was observed): an upgrade is due at once, as for new
    // candidates, not after the backoff of attempts that could not work; but never before a new
    // peer's firstUpgradeMs (both arrive within a moment of a node joining).
    const reachable = this.outOfReach !== undefined && outOfReach === undefined
    this.outOfReach = outOfReach
    // NAT behaviour: a verdict that changes re-checks at once (a side moved or its NAT changed),
    // a pair newly ruled out waits natRecheckMs. Candidates that change while it is ruled out do
    // not call for an attempt: what rules it out is the NATs, not the addresses (a node that moved
    // runs netcheck again, and a new verdict comes with its result).
    const impossible = input.natImpossible
    const verdictChanged = impossible !== this.impossible
    const possibleNow = verdictChanged && impossible === undefined
    this.impossible = impossible
    this.natPending = input.natPending === true
    if ((candidatesChanged && impossible === undefined) || reachable || possibleNow) {
      this.failures = 0
      this.attempts = 0
      this.retryAt = Math.max(now, this.bornAt + this.tuning.firstUpgradeMs)
    }
    if (verdictChanged && impossible !== undefined) {
      this.failures = 0
      this.attempts = 0
      this.retryAt = now + this.tuning.natRecheckMs
    }
    this.trackTraffic(wg, now)
    if (relay !== undefined) this.relayLostAt = undefined
    if (this.switching) return this.current
    if (relay !== undefined && wg?.endpoint === relay) this.relayPendingUntil = 0

    if (
      this.state === 'probing' &&
      wg !== undefined &&
      wg.endpoint === this.endpoint &&
      this.rxBase === undefined
    ) {
      this.rxBase = wg.rxBytes
      this.handsOff = true
    }
    // The peer rotated its key (keyRotated): WireGuard meets the new key at the direct endpoint
    // that worked, and the next packet handshakes there. Until that handshake (or attemptMs
    // without one), the new key's missing or empty WireGuard entry says nothing about the path.
    if (this.rotatedAt !== undefined) {
      const met = wg !== undefined && wg.lastHandshakeMs >= this.rotatedAt
      if (this.state !== 'direct' || met || now - this.rotatedAt >= this.tuning.attemptMs)
        this.rotatedAt = undefined
      else return this.current
    }
    if (this.isLiveDirect(wg, relay, now)) {
      if (this.state === 'direct' && this.stalled(wg, now, this.tuning.deadMs))
        return this.fallBack(wg!.endpoint, candidates, relay, now)
      this.failures = 0
      this.verifying = false
      const d = this.set('direct', wg!.endpoint)
      return this.stalled(wg, now, this.tuning.stallMs) ? {...d, probe: true} : d
    }

    if (relay !== undefined) {
      this.waitingForRelay = false
      return this.withRelay(candidates, relay, wg, now)
    }
    if (this.state === 'idle' && input.relayExpected && now - this.bornAt < this.tuning.relayWaitMs) {
      this.waitingForRelay = true
      return this.current
    }
    this.waitingForRelay = false

    // No relay: relayed or waiting, and WireGuard moved to another direct address (the peer's
    // packets came from there): verify it like a candidate, without pointing WireGuard anywhere.
    if (
      (this.state === 'relay' || this.state === 'waiting') &&
      wg?.endpoint !== undefined &&
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
      this.verifying = true
      return this.set('probing', wg.endpoint)
    }

    switch (this.state) {
      case 'direct':
        // The direct path went quiet: start from the best candidate.
        return this.startRound(candidates, now)
      case 'idle':
        return this.startRound(candidates, now)
      case 'probing':
        if (candidatesChanged) return this.startRound(candidates, now)
        if (now - this.attemptAt < this.tuning.attemptMs) return this.current
        if (this.attempt + 1 < this.round.length) return this.probe(this.attempt + 1, now)
        return this.giveUp(candidates, now)
      case 'relay':
        // The relay socket is reconnecting and direct is ruled out: stay on the relay endpoint
        // (its shim queues what WireGuard sends) for up to relayReturnMs.
        if (
          impossible !== undefined &&
          input.relayReconnecting !== undefined &&
          input.relayReconnecting === this.endpoint
        ) {
          this.relayLostAt ??= now
          if (now - this.relayLostAt < this.tuning.relayReturnMs) return this.current
        }
        this.relayLostAt = undefined
        // The relay went away under a relayed peer (the controller is down, say): its direct
        // candidates at once, whatever the upgrade backoff says, since nothing else carries it.
        return this.startRound(candidates, now)
      case 'waiting':
        if (now >= this.retryAt) return this.startRound(candidates, now)
        return this.set('waiting', this.endpoint)
    }
  }

  /** Relay-first: everything that is not a live direct path goes through the relay. */
  private withRelay(
    candidates: readonly string[],
    relay: string,
    wg: WireGuardView | undefined,
    now: number,
  ): PathDecision {
    // The peer went back to the relay (WireGuard followed its packets there) or the direct path
    // stopped handshaking: back to the relay, and upgrade again later.
    if (this.state === 'direct') return this.fallBack(wg?.endpoint, candidates, relay, now)
    // WireGuard roamed away from the relay after it was applied: only an authenticated packet
    // from a direct address moves it, so the other side switched. Adopt it (a dead one is caught
    // by the stall check and falls back within deadMs).
    if (
      this.state === 'relay' &&
      now >= this.relayPendingUntil &&
      wg?.endpoint !== undefined &&
      wg.endpoint !== relay &&
      wg.lastHandshakeMs > 0 &&
      now - wg.lastHandshakeMs < this.tuning.aliveMs
    ) {
      this.failures = 0
      this.attempts = 0
      this.txAtRx = wg.txBytes ?? 0
      this.unansweredSince = undefined
      return this.set('direct', wg.endpoint)
    }
    if (this.state === 'idle') this.retryAt = Math.max(this.retryAt, now + this.tuning.firstUpgradeMs)
    if (this.state !== 'relay') {
      // A round in progress (the relay came up meanwhile) or idle: the relay at once; the relay
      // must be applied before a move away from it counts as a roam.
      this.relayPendingUntil =
        wg?.endpoint !== undefined && wg.endpoint !== relay ? now + this.tuning.relayApplyMs : 0
      this.handsOff = false
      this.verifying = false
    }
    return this.pokeIfStuck(this.set('relay', relay), wg, relay, now)
  }

  /** `d` with poke set when a relayed handshake is overdue (see pokeMs). */
  private pokeIfStuck(
    d: PathDecision,
    wg: WireGuardView | undefined,
    relay: string,
    now: number,
  ): PathDecision {
    if (wg === undefined || wg.endpoint !== relay || wg.lastHandshakeMs > 0) {
      this.unshakenSince = undefined
      return d
    }
    this.unshakenSince ??= now
    if (this.pokes >= this.tuning.maxPokes || now - this.unshakenSince < this.tuning.pokeMs) return d
    this.pokes++
    // The re-created peer gets pokeMs of its own before the next.
    this.unshakenSince = now
    return {...d, poke: this.pokes}
  }

  /** Whether an upgrade attempt should start now (the caller decides which side leads). */
  upgradeDue(now: number): boolean {
    return (
      this.state === 'relay' &&
      !this.switching &&
      this.outOfReach === undefined &&
      !(this.natPending && this.bornAt !== undefined && now < this.bornAt + this.tuning.natWaitMs) &&
      now >= this.relayPendingUntil &&
      (this.candidatesKey ?? '') !== '' &&
      now >= this.retryAt
    )
  }

  /**
   * The plan of the next attempt, counting it: both modes on the best candidate, twice, then
   * both on the next candidate (in turn), and so on — the best candidate gets two rounds of
   * every three, since later ones (other private addresses) rarely answer.
   */
  nextUpgrade(candidateCount: number): UpgradePlan {
    const n = this.attempts++
    const round = Math.floor(n / 2)
    const others = Math.max(0, candidateCount - 1)
    const index = round % 3 === 2 && others > 0 ? 1 + (Math.floor(round / 3) % others) : 0
    return {mode: n % 2 === 0 ? 'open' : 'switch', index}
  }

  /** An attempt this side leads or joins has started (counted for status; the backoff is apart). */
  noteUpgradeAttempt(): void {
    this.attemptsTotal++
  }

  /** The attempt could not start (the relayed tunnel did not answer yet): try again soon. */
  upgradeDeferred(now: number): void {
    if (this.attempts > 0) this.attempts--
    this.retryAt = now + this.tuning.deferMs
  }

  /**
   * This side switches WireGuard to `endpoint` for an upgrade: the path is `probing` and leaves
   * WireGuard alone (the upgrade sets the endpoint itself) until upgradeSucceeded/upgradeFailed.
   */
  beginSwitch(endpoint: string, now: number): void {
    this.switching = true
    this.attemptAt = now
    this.rxBase = undefined
    this.handsOff = true
    this.set('probing', endpoint)
  }

  /** The direct path is proven (a reply came back while only the direct path could carry it). */
  upgradeSucceeded(endpoint: string): void {
    this.switching = false
    this.failures = 0
    this.attempts = 0
    this.handsOff = false
    this.verifying = false
    this.relayPendingUntil = 0
    this.rxSeen = undefined // rebased at the next look
    this.unansweredSince = undefined
    this.set('direct', endpoint)
  }

  /** The attempt failed: back on the relay, next attempt after the backoff. */
  upgradeFailed(relay: string | undefined, now: number): void {
    const wasSwitching = this.switching
    this.switching = false
    this.handsOff = false
    const delay =
      this.impossible !== undefined
        ? this.tuning.natRecheckMs
        : this.failures >= this.tuning.upgradeSlowAfter
          ? this.tuning.upgradeSlowMs
          : Math.min(this.tuning.upgradeMaxMs, this.tuning.upgradeBaseMs * 2 ** Math.min(this.failures, 20))
    this.failures++
    this.retryAt = now + delay
    if (relay === undefined) {
      this.set('waiting', this.endpoint)
      return
    }
    // The switch pointed WireGuard at the candidate: it is no roam until the relay is back.
    if (wasSwitching) this.relayPendingUntil = now + this.tuning.relayApplyMs
    this.set('relay', relay)
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

  private trackTraffic(wg: WireGuardView | undefined, now: number): void {
    if (wg === undefined) return
    const tx = wg.txBytes ?? 0
    const previous = this.lookedAt ?? now
    this.lookedAt = now
    if (this.rxSeen === undefined || wg.rxBytes !== this.rxSeen) {
      this.rxSeen = wg.rxBytes
      this.txAtRx = tx
      this.unansweredSince = undefined
    } else if (tx > this.txAtRx && this.unansweredSince === undefined)
      // Sent at some point since the previous look (at most stallMs ago: looks are a tick apart,
      // unless the caller paused), and nothing has come back since then.
      this.unansweredSince = Math.max(previous, now - this.tuning.stallMs)
  }

  /** Packets went out since the last byte came in, the first of them at least `ms` ago. */
  private stalled(wg: WireGuardView | undefined, now: number, ms: number): boolean {
    if (wg?.txBytes === undefined || this.unansweredSince === undefined) return false
    return now - this.unansweredSince >= ms
  }

  /** The direct path died: to the relay (upgrade again after reupgradeMs), or a new round. */
  private fallBack(
    from: string | undefined,
    candidates: readonly string[],
    relay: string | undefined,
    now: number,
  ): PathDecision {
    this.failures = 0
    this.attempts = 0
    this.lastTried = from
    this.rxSeen = undefined
    this.unansweredSince = undefined
    if (relay === undefined) return this.startRound(candidates, now)
    this.retryAt = now + this.tuning.reupgradeMs
    this.relayPendingUntil = from !== undefined && from !== relay ? now + this.tuning.relayApplyMs : 0
    // A probe through the relay brings the other side over (its WireGuard follows our packets).
    return {...this.set('relay', relay), probe: true}
  }

  private startRound(candidates: readonly string[], now: number): PathDecision {
    this.round = [...candidates]
    this.verifying = false
    if (this.round.length > 0) return this.probe(0, now)
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

  private giveUp(candidates: readonly string[], now: number): PathDecision {
    const delay = Math.min(this.tuning.retryMaxMs, this.tuning.retryBaseMs * 2 ** Math.min(this.failures, 20))
    this.failures++
    this.retryAt = now + delay
    this.verifying = false
    return this.set('waiting', candidates[0])
  }

  private set(state: PathState, endpoint: string | undefined): PathDecision {
    this.state = state
    this.endpoint = endpoint
    return this.current
  }
}
