/**
 * Upgrade: moves a relayed peer to a direct path without taking the relayed session down
 * (TOOLCHAIN "Relay and relay → direct upgrade": the scheme that lost the fewest packets here).
 *
 * One side opens its NAT toward the other's candidates — short-lived throwaway WireGuard peers
 * (random key, no allowed IPs, keepalive 1) whose handshake initiations leave from WireGuard's own
 * port — and only the other side switches: it holds the packets the relay brings for the peer
 * (a relayed packet arriving after the switch would roam WireGuard back to the relay), points
 * WireGuard at the opener's candidate and pings through the tunnel. A reply can only have come
 * the direct way (relayed ones are held), so it is the proof: the held packets are dropped, and
 * the opener follows by itself — WireGuard roams to the source of the first direct packet. No
 * reply within the window: the switcher points WireGuard back at the relay and delivers what it
 * held, so a failed attempt costs the packets it sent in that window and nothing else.
 *
 * That cost is what a pair that cannot go direct pays for every try, so the window is sized from
 * the path's unloaded round trip (PeerPath.baseLatency), bounded by maxWindowMs: a relayed round
 * trip measured under load is mostly the stream's own data queued in the relay, which a direct
 * packet never waits behind, and a window grown with it (≈ 500 ms under an iperf3 stream) made
 * each failed attempt stall loaded TCP for a retransmission timeout or more. The relayed
 * round trip still paces what costs nothing: how long the leader waits before switching, for its
 * `open` message to reach the peer.
 *
 * Which side switches matters (an endpoint-dependent mapping must be the side that sends first),
 * so attempts alternate: `open` (the leader opens, the peer switches) and `switch` (the peer
 * opens, the leader switches). The leader — the side with the smaller public key — times the
 * attempts (PeerPath.upgradeDue: at once, then with backoff); messages travel through the
 * relayed tunnel itself (daemon/nat/probe.ts types 3 and 4), so they are authenticated by
 * WireGuard and need no controller round trip.
 *
 * Everything it touches comes through UpgradeLink, and time through the injected clock, so its
 * tests run without a network and without waiting.
 */

import {randomBytes} from 'node:crypto'
import {delay, type Clock, type TimerHandle} from '../../shared/clock.js'
import type {PeerPath, WireGuardView} from './path.js'
import {UPGRADE_OPEN, UPGRADE_OPENED, type UpgradeMessage} from './probe.js'
import type {HoldOptions, ShimMode} from '../relay/shim.js'

export interface UpgradePeer {
  readonly id: string
  readonly publicKey: string
  /** Mesh address (where its prober listens, through the tunnel). */
  readonly address: string
  /** Its direct candidates as this node orders them. */
  readonly candidates: readonly string[]
}

export interface UpgradeShim {
  /** The relay's local endpoint for the peer. */
  readonly endpoint: string
  setMode(mode: ShimMode, hold?: HoldOptions): void
}

export interface UpgradeLink {
  readonly clock: Clock
  /** What WireGuard shows for the peer now. */
  read(publicKey: string): Promise<WireGuardView | undefined>
  /** Points WireGuard's peer at `endpoint` at once. */
  setEndpoint(publicKey: string, endpoint: string): Promise<void>
  /** Opens this node's NAT toward `targets` (throwaway peers); resolves to what closes it again. */
  openNat(targets: readonly string[]): Promise<() => Promise<void>>
  /** The peer's relay endpoint; undefined when it has none. */
  shim(peerId: string): UpgradeShim | undefined
  /** One echo through the tunnel: the round trip in ms, null without a reply in time. */
  ping(address: string, timeoutMs: number): Promise<number | null>
  /** An upgrade message to the peer's prober, through the tunnel. */
  send(address: string, msg: UpgradeMessage): void
  readonly log: {debug(obj: object, msg: string): void; info(obj: object, msg: string): void}
}

export interface UpgradeTuning {
  /** Attempts running at once per network (each holds up to 4 throwaway peers). */
  readonly maxConcurrent: number
  /** Time between opening the NAT and telling the peer to switch (wireguard-go sends within ~10 ms). */
  readonly openLeadMs: number
  /** Time between holding the relay and switching, for packets already on their way into WireGuard. */
  readonly settleMs: number
  /** After a switch, relayed packets still in flight are dropped this long. */
  readonly graceMs: number
  /**
   * Bounds of the switch window, derived from the path's unloaded round trip
   * (PeerPath.baseLatency). Everything the switching side sends in the window is lost when the
   * switch fails, so the bound is kept below what stalls a TCP stream for long (Linux's minimum
   * retransmission timeout is 200 ms).
   */
  readonly minWindowMs: number
  readonly maxWindowMs: number
  /** Relayed packets held while switching at most (what comes over them is dropped). */
  readonly holdPackets: number
  /** How often the opener looks for the peer's direct packets. */
  readonly watchEveryMs: number
}

export const DEFAULT_UPGRADE_TUNING: UpgradeTuning = {
  maxConcurrent: 8,
  openLeadMs: 50,
  settleMs: 20,
  graceMs: 1_000,
  minWindowMs: 200,
  maxWindowMs: 400,
  holdPackets: 1_024,
  watchEveryMs: 100,
}

export type UpgradeResult = 'direct' | 'failed' | 'deferred' | 'busy' | 'ignored'

/** The side that times the attempts of a pair: the one with the smaller public key. */
export const leads = (self: string, peer: string): boolean => self < peer

const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v))

export class Upgrader {
  private readonly busy = new Set<string>()
  private readonly graceTimers = new Map<string, TimerHandle>()
  private closed = false

  constructor(
    private readonly link: UpgradeLink,
    private readonly tuning: UpgradeTuning = DEFAULT_UPGRADE_TUNING,
  ) {}

  /** Attempts in progress. */
  get active(): number {
    return this.busy.size
  }

  close(): void {
    this.closed = true
    for (const t of this.graceTimers.values()) this.link.clock.clearTimeout(t)
    this.graceTimers.clear()
  }

  /** The leader's side of one attempt (the caller checked leads() and path.upgradeDue()). */
  async lead(peer: UpgradePeer, path: PeerPath): Promise<UpgradeResult> {
    if (this.closed || this.busy.has(peer.id) || this.busy.size >= this.tuning.maxConcurrent) return 'busy'
    const shim = this.link.shim(peer.id)
    if (shim === undefined || peer.candidates.length === 0) return 'ignored'
    this.busy.add(peer.id)
    try {
      const plan = path.nextUpgrade(peer.candidates.length)
      // The relayed tunnel must carry the message: a ping first proves it and sizes the window.
      const rtt = await this.link.ping(peer.address, 1_000)
      const now = this.link.clock.now()
      if (rtt === null || this.closed) {
        path.upgradeDeferred(now)
        return 'deferred'
      }
      path.noteLatency(rtt, now)
      // The direct round trip is rarely longer than the relayed one unloaded: a window of a little
      // more than two of those keeps what a failed switch costs (the switcher's packets in it)
      // small. Not the latest sample: under load the relayed round trip is mostly queueing in the
      // relay's buffers (hundreds of ms), which the direct path does not go through, and a window
      // grown with it made every failed attempt stall a loaded TCP stream.
      const base = Math.min(rtt, path.baseLatency(now) ?? rtt)
      const windowMs = this.windowFor(base)
      const msg = {windowMs, index: plan.index, nonce: randomBytes(8)}
      path.noteUpgradeAttempt()
      this.link.log.debug({peer: peer.id, plan, rtt, base, windowMs}, 'upgrade attempt')
      if (plan.mode === 'open') {
        const close = await this.link.openNat(peer.candidates)
        try {
          await delay(this.link.clock, this.tuning.openLeadMs)
          const before = await this.link.read(peer.publicKey)
          this.link.send(peer.address, {type: UPGRADE_OPENED, ...msg})
          return await this.watch(peer, path, shim, before, windowMs + rtt + 200, true)
        } finally {
          await close().catch(() => {})
        }
      }
      this.link.send(peer.address, {type: UPGRADE_OPEN, ...msg})
      // The peer's throwaway initiations leave once the message is there: at most one relayed
      // round trip from now (under load the way there, behind the stream's data, can take
      // nearly all of it). Waiting costs nothing; switching early would spend the short window
      // on a NAT not yet open.
      await delay(this.link.clock, rtt + this.tuning.openLeadMs)
      const target = peer.candidates[plan.index % peer.candidates.length]!
      return await this.switchTo(peer, path, shim, target, windowMs, base)
    } finally {
      this.busy.delete(peer.id)
    }
  }

  /**
   * A message from the peer (the caller matched the source to the peer). Only taken while the
   * path is relayed, direct is not out of reach (a futile switch would cost what this side sends
   * in its window) and no attempt with the peer runs; anything else is ignored.
   */
  async onMessage(peer: UpgradePeer, path: PeerPath, msg: UpgradeMessage): Promise<UpgradeResult> {
    if (this.closed || this.busy.has(peer.id) || this.busy.size >= this.tuning.maxConcurrent) return 'busy'
    const shim = this.link.shim(peer.id)
    if (
      shim === undefined ||
      path.current.state !== 'relay' ||
      path.directOutOfReach !== undefined ||
      peer.candidates.length === 0
    )
      return 'ignored'
    const windowMs = clamp(msg.windowMs, this.tuning.minWindowMs, this.tuning.maxWindowMs)
    const base = path.baseLatency(this.link.clock.now())
    path.noteUpgradeAttempt()
    this.link.log.debug({peer: peer.id, type: msg.type, windowMs}, 'upgrade attempt joined')
    this.busy.add(peer.id)
    try {
      if (msg.type === UPGRADE_OPENED) {
        const target = peer.candidates[msg.index % peer.candidates.length]!
        return await this.switchTo(peer, path, shim, target, windowMs, base)
      }
      const close = await this.link.openNat(peer.candidates)
      try {
        const before = await this.link.read(peer.publicKey)
        // The leader switches up to one relayed round trip after this message arrived (it waits
        // that long for the message to get here): watch past its window with room for that.
        return await this.watch(peer, path, shim, before, windowMs + 1_000, false)
      } finally {
        await close().catch(() => {})
      }
    } finally {
      this.busy.delete(peer.id)
    }
  }

  /**
   * The opener waits for the switcher's direct packets: WireGuard leaves the relay's endpoint for
   * the address they came from. Then relayed packets still in flight are dropped for a moment
   * (they would roam it back). `judge`: the leader records a failure for its backoff.
   */
  private async watch(
    peer: UpgradePeer,
    path: PeerPath,
    shim: UpgradeShim,
    before: WireGuardView | undefined,
    forMs: number,
    judge: boolean,
  ): Promise<UpgradeResult> {
    const clock = this.link.clock
    const deadline = clock.now() + forMs
    for (let i = 0; i < 100 && clock.now() < deadline && !this.closed; i++) {
      await delay(clock, this.tuning.watchEveryMs)
      const v = await this.link.read(peer.publicKey)
      if (v?.endpoint !== undefined && v.endpoint !== shim.endpoint && v.rxBytes > (before?.rxBytes ?? 0)) {
        this.dropLateRelayed(peer.id, shim)
        path.upgradeSucceeded(v.endpoint)
        this.link.log.info({peer: peer.id, endpoint: v.endpoint, side: 'opener'}, 'upgraded to direct')
        return 'direct'
      }
    }
    if (judge) path.upgradeFailed(shim.endpoint, clock.now())
    return 'failed'
  }

  /** The switch window for a path whose unloaded round trip is `baseMs`. */
  private windowFor(baseMs: number): number {
    return clamp(Math.round(baseMs * 2.5) + 150, this.tuning.minWindowMs, this.tuning.maxWindowMs)
  }

  /**
   * This side switches to `target` (see the file comment). `baseRtt`: the path's unloaded round
   * trip, which paces the pings in the window.
   */
  private async switchTo(
    peer: UpgradePeer,
    path: PeerPath,
    shim: UpgradeShim,
    target: string,
    windowMs: number,
    baseRtt: number | undefined,
  ): Promise<UpgradeResult> {
    const clock = this.link.clock
    shim.setMode('hold', {maxMs: windowMs + 500, maxPackets: this.tuning.holdPackets, then: 'deliver'})
    await delay(clock, this.tuning.settleMs)
    path.beginSwitch(target, clock.now())
    const switched = await this.link.setEndpoint(peer.publicKey, target).then(
      () => true,
      () => false,
    )
    const deadline = clock.now() + windowMs
    // Several pings fit in the window: a first one lost (to a NAT opening late, or a busy prober)
    // leaves time for another.
    const perPing = clamp(Math.round((baseRtt ?? windowMs / 4) * 2) + 50, 60, windowMs)
    let rtt: number | null = null
    for (let i = 0; switched && rtt === null && i < 50 && !this.closed; i++) {
      const left = deadline - clock.now()
      if (left <= 0) break
      rtt = await this.link.ping(peer.address, Math.min(perPing, left))
    }
    if (rtt !== null) {
      this.dropLateRelayed(peer.id, shim)
      path.upgradeSucceeded(target)
      path.noteLatency(rtt, clock.now())
      this.link.log.info({peer: peer.id, endpoint: target, rtt, side: 'switcher'}, 'upgraded to direct')
      // Traffic of our own: if a late relayed packet rolled the opener back, this pulls it over.
      void this.link.ping(peer.address, 500)
      return 'direct'
    }
    await this.link.setEndpoint(peer.publicKey, shim.endpoint).catch(() => {})
    path.upgradeFailed(shim.endpoint, clock.now())
    shim.setMode('deliver')
    // Through the relay again: if the opener had followed us, this brings it back.
    void this.link.ping(peer.address, 1_000)
    this.link.log.debug({peer: peer.id, target}, 'upgrade switch failed')
    return 'failed'
  }

  /** Drops what the relay still brings for the peer for graceMs, then delivers again. */
  private dropLateRelayed(peerId: string, shim: UpgradeShim): void {
    shim.setMode('drop')
    const old = this.graceTimers.get(peerId)
    if (old !== undefined) this.link.clock.clearTimeout(old)
    this.graceTimers.set(
      peerId,
      this.link.clock.setTimeout(() => {
        this.graceTimers.delete(peerId)
        shim.setMode('deliver')
      }, this.tuning.graceMs),
    )
  }
}
