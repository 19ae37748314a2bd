/**
 * One relayed peer's local UDP endpoint (TOOLCHAIN "Relay and relay → direct upgrade").
 *
 * WireGuard tells peers apart only by endpoint, so each relayed peer gets its own socket on
 * 127.0.0.1:0, and that address becomes WireGuard's endpoint for the peer:
 *  - a datagram WireGuard sends there (source must be 127.0.0.1:<WireGuard listen port>;
 *    anything else on the machine is dropped) goes to the relay, addressed to the peer. The
 *    datagrams read in one turn of the event loop (libuv reads up to 32 per socket wakeup)
 *    leave together, in order, at the end of that turn (setImmediate), as one batch of at most
 *    RELAY_MAX_BATCH_BYTES (shared/relay/frame.ts): a lone packet waits for nothing, and under
 *    load the relay pays per batch rather than per packet. While the relay socket is down
 *    (reconnecting after the relay went away) they wait in the outage queue instead, bounded
 *    (OUTAGE: packets, bytes, age; the oldest are dropped first, counted as outage_overflow and
 *    outage_expired), and leave first, in order, when the socket is open again (relayOpen()):
 *    a ping in a short outage arrives late instead of being lost, and a handshake WireGuard sent
 *    meanwhile is not wasted (its next try would come only 5 s later). Two more kinds of packet
 *    are lost in an outage unless sent again: those the dead socket took in its last moments
 *    (written to a connection whose relay was already gone), and those sent after the reopen
 *    but before the peer's own relay socket was back (the relay drops packets for a node that
 *    is not connected). So the shim remembers what it sent in the last OUTAGE.inflightMs; when
 *    the socket is lost those go to the front of the outage queue (relayLost()), and from then
 *    until the first packet from the peer arrives everything sent is remembered (up to
 *    maxAgeMs) and sent once more at that moment (counted as resentPackets). Copies that did
 *    arrive are harmless: WireGuard drops a replayed data packet by its counter and a replayed
 *    handshake message by its timestamp or state;
 *  - a packet the relay brings from the peer is sent from this socket to WireGuard's listen
 *    port, so WireGuard sees it coming from the endpoint it has for that peer. These sends are
 *    paced (PACE): wireguard-go's socket keeps the kernel's default receive buffer (212,992
 *    bytes: 92 packets of 1452 bytes), and a daemon that was off the CPU for a few ms finds
 *    hundreds of relayed packets waiting in its WebSocket and would hand them all over at once;
 *    what does not fit is lost, and TCP inside the tunnel pays for every loss with a relayed
 *    round trip. Where the kernel shows how full WireGuard's socket is (Linux /proc/net/udp,
 *    daemon/relay/wireguard-queue.ts), only what fits below 7/8 of its buffer goes, and the rest
 *    waits until WireGuard has read: a fixed pace cannot know that wireguard-go is off the CPU,
 *    and on a loaded machine it overflowed the socket all the same (every TCP retransmit of a
 *    relayed iperf3 was such a drop). Elsewhere at most PACE.burst packets go at once, then
 *    PACE.perMs per millisecond. Either way the rest wait in order (at most PACE.maxQueued, the
 *    excess dropped as wireguard_backlog). The budget belongs to WireGuard's socket: a
 *    RelayClient's shims share one WireGuardPacer.
 *
 * Modes govern the relay -> WireGuard direction only (WireGuard sends here only while its
 * endpoint is this socket):
 *  - deliver: hand packets to WireGuard at once;
 *  - hold: keep up to maxPackets packets for up to maxMs, for the upgrade switch (a relayed
 *    packet arriving after WireGuard switched to a direct endpoint would roam it back here).
 *    Ends with setMode('deliver') (held packets go out first, in order) or setMode('drop')
 *    (discarded). If neither comes within maxMs, the `then` action runs: 'deliver' by default,
 *    so a forgotten hold never becomes a black hole. Packets over maxPackets are dropped;
 *  - drop: discard everything from the relay.
 */
import {createSocket, type RemoteInfo, type Socket} from 'node:dgram'
import {once} from 'node:events'
import {
  RELAY_MAX_BATCH_BYTES,
  RELAY_MAX_BATCH_PACKETS,
  RELAY_MAX_PAYLOAD,
  relayBatchBytes,
  relayFrameHeader,
} from '../../shared/relay/frame.js'
import type {InitiationTieBreak} from './initiation-tie-break.js'
import {DATAGRAM_TRUESIZE, type WireGuardQueue} from './wireguard-queue.js'

export type ShimMode = 'deliver' | 'hold' | 'drop'

export interface HoldOptions {
  /** Packets kept at most; later ones are dropped. 256 by default. */
  maxPackets?: number
  /** How long a hold lasts at most, in ms. 200 by default (follow the measured relay latency). */
  maxMs?: number
  /** What happens when maxMs passes without a decision. 'deliver' by default. */
  then?: 'deliver' | 'drop'
}

export const DEFAULT_HOLD = {maxPackets: 256, maxMs: 200, then: 'deliver'} as const

/** Bounds of a shim's outage queue (WireGuard -> relay while the relay socket is down). */
export interface OutageOptions {
  /** Packets kept at most (0: none, every packet in an outage is dropped as relay_down). */
  maxPackets?: number
  /** Payload bytes kept at most. */
  maxBytes?: number
  /** A packet older than this (ms) is not sent any more. */
  maxAgeMs?: number
  /**
   * What the relay socket carried in this last stretch (ms) before it was lost is sent again
   * after it (see the file comment).
   */
  inflightMs?: number
}

/**
 * The outage queue's defaults. 1 s of age: the relay socket of a meshd whose relay died is
 * back in 0.1-0.5 s (an immediate reconnect through the load balancer); later than 1 s, TCP
 * in the tunnel has retransmitted what waited and a ping's sender has long counted it.
 * 128 packets and 128 KiB (≈ 90 full-size packets) per peer: the 5 pings a second of a
 * quiet pair, a handshake or two and a TCP window's tail fit, and a shim never holds more
 * than that, however many peers are relayed; under bulk traffic the oldest go first (TCP
 * retransmits them anyway). 250 ms in flight: meshd saw its relay socket close 10-50 ms after
 * the relay's process was SIGKILLed (test/e2e/replicas-failover.root.test.ts, 2 loaded cores);
 * what it wrote in that time went nowhere; 250 leaves room for a slower machine, and sending a
 * packet that did arrive once more costs only its bytes.
 */
export const OUTAGE = {maxPackets: 128, maxBytes: 128 * 1024, maxAgeMs: 1000, inflightMs: 250} as const

/**
 * Pacing of relay -> WireGuard sends (see the file comment). burst 64 fits wireguard-go's
 * default socket buffer (92 packets of 1452 bytes) with room for what it has not read yet;
 * 64 per ms refill is 740 Mbit/s of 1452-byte packets, above the relay's own per-node byte
 * budget (64 MiB/s, ~537 Mbit/s) and what one wireguard-go pair moves on this kind of machine
 * (~320-520 Mbit/s), so steady traffic never waits. maxQueued 1024 is 16 ms at 64/ms, more than
 * the 300-420 KB (200-290 packets) seen waiting in a daemon's WebSocket after a stall; a packet
 * that waits is copied (a view would keep its whole 64 KiB socket read alive), so what waits is
 * at most 1024 x maxPayload (2 MiB) per WireGuard socket (per RelayClient), however many peers.
 *
 * targetMs/intervalMs bound how long packets wait, as CoDel (RFC 8289) does: once the packets
 * leaving the queue have all waited over targetMs for intervalMs, one is dropped, then the next
 * after intervalMs/sqrt(drops), until one leaves within targetMs. Without it, a relayed TCP stream
 * that no longer lost packets at WireGuard's socket (the probe) filled the queue to maxQueued and
 * kept it full: 1.5 MB, 120-150 ms on top of every relayed round trip under load (main's pacer,
 * which lost packets at the socket instead: 4-22 ms), which in turn stretched upgrade windows
 * (2.5 x the relayed round trip) and the stall of a failed one. A drop counts as wireguard_backlog.
 */
export const PACE = {burst: 64, perMs: 64, maxQueued: 1024, targetMs: 5, intervalMs: 100} as const

/**
 * Why a packet did not go through the shim:
 * - foreign_source: a datagram to the shim from anything but WireGuard's listen port;
 * - too_large: a datagram from WireGuard over the relay's payload limit (or empty);
 * - relay_down / relay_backlog: the relay socket is not open (and the outage queue keeps
 *   nothing), or its send backlog is full;
 * - outage_overflow: pushed out of a full outage queue by newer packets (oldest first);
 * - outage_expired: waited in the outage queue longer than its maxAgeMs;
 * - hold_overflow: over maxPackets while holding;
 * - mode_drop: discarded by drop mode or a hold that ended in drop;
 * - no_wireguard_port: a packet for WireGuard while its listen port is unknown (0);
 * - wireguard_backlog: over PACE.maxQueued packets waiting for their turn to WireGuard, or one
 *   dropped because packets have been waiting too long (PACE.targetMs, PACE.intervalMs).
 */
export type ShimDropReason =
  | 'foreign_source'
  | 'too_large'
  | 'relay_down'
  | 'relay_backlog'
  | 'outage_overflow'
  | 'outage_expired'
  | 'hold_overflow'
  | 'mode_drop'
  | 'no_wireguard_port'
  | 'wireguard_backlog'

export interface ShimStats {
  mode: ShimMode
  /** WireGuard -> relay. */
  toRelayPackets: number
  toRelayBytes: number
  /** Packets sent to the relay a second time after an outage (see the file comment). */
  resentPackets: number
  /** Relay -> WireGuard (delivered). */
  toWireGuardPackets: number
  toWireGuardBytes: number
  /** Packets held now. */
  held: number
  /** Packets from WireGuard waiting in the outage queue for the relay socket now. */
  queued: number
  /** Packets waiting for their turn to WireGuard (pacing) now. */
  paced: number
  dropped: Record<ShimDropReason, number>
}

/** A Clock-shaped timer source (shared/clock.ts when it lands). */
export interface ShimClock {
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const systemShimClock: ShimClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref()
    return t
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
}

/** How a WireGuardPacer sees WireGuard's socket fill up (daemon/relay/wireguard-queue.ts). */
export interface PacerQueueProbe {
  probe: WireGuardQueue
  /** WireGuard's listen port now (0 when unknown). */
  port(): number
  /** The receive-queue bytes not to go over (wireguardQueueTarget()). */
  target: number
}

/**
 * The pace budget of one WireGuard listen socket, shared by all shims that send to it (a
 * RelayClient's): the socket buffer it protects is one, however many peers are relayed. One
 * queue in arrival order keeps each peer's packets in order.
 *
 * With a queue probe, the budget is refilled from the socket itself when it is spent: as many
 * packets as fit between what waits in WireGuard's receive queue and the target (counted at
 * DATAGRAM_TRUESIZE each, a full-size packet's share). Loopback delivery puts a sent datagram in
 * that queue within the send, so the next reading counts what this pacer sent meanwhile. When the
 * probe cannot tell (no socket on the port, no /proc), the time-based budget applies.
 */
export class WireGuardPacer {
  private queue: {
    send: (payload: Buffer) => void
    payload: Buffer
    owner: object
    /** When it was queued (clock ms). */
    at: number
    dropped?: () => void
  }[] = []
  /** CoDel state (PACE.targetMs): when waits over target have lasted intervalMs (0: not over). */
  private overUntil = 0
  private dropping = false
  private drops = 0
  private dropNext = 0
  private head = 0
  private tokens: number = PACE.burst
  private at = 0
  private timer: unknown = undefined
  private readonly waiting = new Map<object, number>()
  /**
   * At most one reading per turn of the event loop. `looked`: a reading was taken this turn (a
   * packet arriving while others wait may look again, but not 44 times for one WebSocket
   * message). `allowed`: that reading let packets go; then the next look is at the end of the
   * turn (turnEnd), not sooner: dgram sends to an address reach the kernel on a later tick (Node
   * resolves even a literal address on process.nextTick; a shim's connected socket sends at once,
   * but not every platform connects), so a second reading in the same turn might not see the
   * first one's packets and would allow them again. A reading that allowed nothing (the
   * socket is full) leaves the next look to the timer or the next arrival: no spin.
   */
  private looked = false
  private allowed = false
  private turnEnd: NodeJS.Immediate | undefined = undefined

  constructor(
    private readonly clock: ShimClock = systemShimClock,
    private readonly queueProbe?: PacerQueueProbe,
  ) {
    // With a probe, the first packet already looks at the socket.
    if (queueProbe) this.tokens = 0
  }

  /**
   * Sends `payload` with `send` now, or later in order when the budget is spent; false when
   * PACE.maxQueued packets already wait (the packet is dropped).
   */
  submit(owner: object, send: (payload: Buffer) => void, payload: Buffer, dropped?: () => void): boolean {
    // Packets waiting: look again now rather than at the timer (WireGuard may have read since;
    // under load the daemon's next turn comes sooner than its next timer).
    if (this.head < this.queue.length) this.drain()
    if (this.head === this.queue.length && this.token()) {
      send(payload)
      return true
    }
    if (this.queue.length - this.head >= PACE.maxQueued) return false
    this.queue.push({send, payload: Buffer.from(payload), owner, at: this.clock.now(), dropped})
    this.waiting.set(owner, (this.waiting.get(owner) ?? 0) + 1)
    this.schedule()
    return true
  }

  /** Packets of `owner` waiting now. */
  waitingFor(owner: object): number {
    return this.waiting.get(owner) ?? 0
  }

  /** Forgets what `owner` has waiting (a shim that closed). */
  forget(owner: object): void {
    if (!this.waiting.delete(owner)) return
    this.queue = this.queue.slice(this.head).filter((q) => q.owner !== owner)
    this.head = 0
  }

  private token(): boolean {
    if (this.tokens < 1 || !this.queueProbe) this.refill()
    if (this.tokens < 1) return false
    this.tokens--
    return true
  }

  /** Refills the budget: from WireGuard's receive queue when it can be read, else by time. */
  private refill(): void {
    const now = this.clock.now()
    const q = this.queueProbe
    if (q) {
      if (this.looked) return
      const port = q.port()
      const queued = port === 0 ? undefined : q.probe.rxQueue(port)
      if (queued !== undefined) {
        this.tokens = Math.floor(Math.max(0, q.target - queued) / DATAGRAM_TRUESIZE)
        this.at = now
        this.looked = true
        this.allowed = this.tokens > 0
        this.turnEnd ??= setImmediate(() => {
          this.turnEnd = undefined
          this.looked = false
          if (this.allowed && this.head < this.queue.length) this.drain()
        })
        return
      }
    }
    if (now > this.at) {
      this.tokens = Math.min(PACE.burst, this.tokens + (now - this.at) * PACE.perMs)
      this.at = now
    }
  }

  /** Sends what waits, in order, while the budget lasts. */
  private drain(): void {
    const now = this.clock.now()
    while (this.head < this.queue.length && this.token()) {
      let q = this.queue[this.head++]!
      this.left(q.owner)
      if (this.tooLong(now - q.at, now)) {
        // Dropped in place of the next one, which takes its token (RFC 8289 drops and sends on).
        q.dropped?.()
        if (this.head === this.queue.length) break
        q = this.queue[this.head++]!
        this.left(q.owner)
      }
      q.send(q.payload)
    }
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
    } else this.schedule()
  }

  private left(owner: object): void {
    const n = (this.waiting.get(owner) ?? 1) - 1
    if (n > 0) this.waiting.set(owner, n)
    else this.waiting.delete(owner)
  }

  /** CoDel's verdict on a packet that leaves after waiting `waited` ms (see PACE). */
  private tooLong(waited: number, now: number): boolean {
    if (waited < PACE.targetMs) {
      this.overUntil = 0
      this.dropping = false
      return false
    }
    if (this.overUntil === 0) {
      this.overUntil = now + PACE.intervalMs
      return false
    }
    if (now < this.overUntil) return false
    if (!this.dropping) {
      // Back to dropping soon after the last time: go on near the rate it had reached.
      this.drops = this.drops > 2 && now - this.dropNext < 8 * PACE.intervalMs ? this.drops - 2 : 1
      this.dropping = true
      this.dropNext = now + PACE.intervalMs / Math.sqrt(this.drops)
      return true
    }
    if (now < this.dropNext) return false
    this.drops++
    this.dropNext += PACE.intervalMs / Math.sqrt(this.drops)
    return true
  }

  /**
   * Drains later: at the end of this turn when a reading allowed sends that have not reached the
   * kernel yet (see `looked`), else in a millisecond (WireGuard is behind, or time paces).
   */
  private schedule(): void {
    if ((this.looked && this.allowed) || this.timer !== undefined) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      this.drain()
    }, 1)
  }
}

export interface PeerShimOptions {
  /** WireGuard's listen port on 127.0.0.1 now (0 when unknown: everything is dropped). */
  wireGuardPort(): number
  /**
   * Hands packets from WireGuard for this peer (1..RELAY_MAX_BATCH_PACKETS, at most
   * RELAY_MAX_BATCH_BYTES as a batch) to the relay, in order; the reason when it could not (then
   * none of them went).
   */
  sendPackets(packets: Buffer[]): undefined | 'relay_down' | 'relay_backlog'
  maxPayload?: number
  clock?: ShimClock
  hold?: HoldOptions
  /** Bounds of the outage queue; OUTAGE by default. */
  outage?: OutageOptions
  onDrop?(reason: ShimDropReason): void
  /** Called with the number held after each packet is added to a hold. */
  onHeld?(count: number): void
  /** The pace budget of WireGuard's socket, shared by the shims that send to it; one of its own by default. */
  pacer?: WireGuardPacer
  /** Settles handshake-initiation races with the peer (daemon/relay/initiation-tie-break.ts). */
  tieBreak?: InitiationTieBreak
}

const LOOPBACK = '127.0.0.1'

/**
 * A packet from WireGuard and when it came (clock ms). dgram hands each datagram in a buffer of
 * its own (byteOffset 0, byteLength = length: checked on Node 24), so keeping one pins nothing else.
 */
interface Sent {
  readonly packet: Buffer
  readonly at: number
}

/** How many of `items` from `from` on make one batch to the relay (at least one), and their bytes. */
function batchOf(peerIdLength: number, items: readonly Sent[], from: number): {n: number; bytes: number} {
  let n = 0
  let bytes = 0
  while (
    from + n < items.length &&
    n < RELAY_MAX_BATCH_PACKETS &&
    (n === 0 ||
      relayBatchBytes(peerIdLength, n + 1, bytes + items[from + n]!.packet.length) <= RELAY_MAX_BATCH_BYTES)
  )
    bytes += items[from + n++]!.packet.length
  return {n, bytes}
}

export class PeerShim {
  private readonly maxPayload: number
  private readonly clock: ShimClock
  private mode: ShimMode = 'deliver'
  private held: Buffer[] = []
  private holdLimit: number = DEFAULT_HOLD.maxPackets
  private holdTimer: unknown = undefined
  private closed = false
  /** Packets from WireGuard waiting for the end of this event-loop turn, and their bytes. */
  private pending: Buffer[] = []
  private pendingBytes = 0
  private flushHandle: NodeJS.Immediate | undefined = undefined
  /**
   * The outage queue: packets from WireGuard that found the relay socket down, oldest first,
   * each with when it came (clock ms); their payload bytes. Owned by this shim: filled by
   * flush(), emptied by drainOutage() (relayOpen() or the next flush) and by expiry.
   */
  private outage: Sent[] = []
  private outageBytes = 0
  private readonly outageLimits: Required<OutageOptions>
  /**
   * What went to the relay lately, oldest first (inflightMs; maxAgeMs while awaitingPeer), within
   * the outage bounds: sent again after an outage. Owned by this shim like the outage queue.
   */
  private recent: Sent[] = []
  private recentBytes = 0
  /** The relay socket was lost and the peer has not been heard from since. */
  private awaitingPeer = false
  private readonly pacer: WireGuardPacer
  private readonly sendToWireGuardFn = (payload: Buffer): void => this.sendToWireGuard(payload)
  private readonly pacedDropFn = (): void => this.drop('wireguard_backlog')
  /** The WireGuard port the socket is connected to (connectTo); 0 when not connected. */
  private connectedTo = 0
  private readonly counters = {
    toRelayPackets: 0,
    toRelayBytes: 0,
    resentPackets: 0,
    toWireGuardPackets: 0,
    toWireGuardBytes: 0,
  }
  private readonly drops: Record<ShimDropReason, number> = {
    foreign_source: 0,
    too_large: 0,
    relay_down: 0,
    relay_backlog: 0,
    outage_overflow: 0,
    outage_expired: 0,
    hold_overflow: 0,
    mode_drop: 0,
    no_wireguard_port: 0,
    wireguard_backlog: 0,
  }

  private constructor(
    readonly peerId: string,
    private readonly socket: Socket,
    readonly port: number,
    private readonly opts: PeerShimOptions,
  ) {
    this.maxPayload = opts.maxPayload ?? RELAY_MAX_PAYLOAD
    this.clock = opts.clock ?? systemShimClock
    this.pacer = opts.pacer ?? new WireGuardPacer(this.clock)
    this.outageLimits = {...OUTAGE, ...opts.outage}
    socket.on('message', (msg, rinfo) => this.fromWireGuard(msg, rinfo))
  }

  /** Binds a socket on 127.0.0.1:0 for the peer. */
  static async open(peerId: string, opts: PeerShimOptions): Promise<PeerShim> {
    relayFrameHeader(peerId) // throws on an id that cannot travel in a frame
    const socket = createSocket({type: 'udp4'})
    // A socket error (e.g. a send refused by the kernel) must never take meshd down.
    socket.on('error', () => undefined)
    socket.bind(0, LOOPBACK)
    await once(socket, 'listening')
    // Bigger buffers ride out bursts at relay throughput; the kernel may cap them.
    try {
      socket.setRecvBufferSize(1 << 21)
      socket.setSendBufferSize(1 << 21)
    } catch {
      // keep the defaults
    }
    return new PeerShim(peerId, socket, socket.address().port, opts)
  }

  /** WireGuard's endpoint for the peer. */
  get endpoint(): string {
    return `${LOOPBACK}:${this.port}`
  }

  get currentMode(): ShimMode {
    return this.mode
  }

  stats(): ShimStats {
    return {
      mode: this.mode,
      ...this.counters,
      held: this.held.length,
      queued: this.outage.length,
      paced: this.pacer.waitingFor(this),
      dropped: {...this.drops},
    }
  }

  private drop(reason: ShimDropReason, n = 1): void {
    if (n <= 0) return
    this.drops[reason] += n
    this.opts.onDrop?.(reason)
  }

  private fromWireGuard(msg: Buffer, rinfo: RemoteInfo): void {
    const wg = this.opts.wireGuardPort()
    if (rinfo.address !== LOOPBACK || wg === 0 || rinfo.port !== wg) return this.drop('foreign_source')
    if (msg.length < 1 || msg.length > this.maxPayload) return this.drop('too_large')
    if (
      this.pending.length === RELAY_MAX_BATCH_PACKETS ||
      relayBatchBytes(this.peerId.length, this.pending.length + 1, this.pendingBytes + msg.length) >
        RELAY_MAX_BATCH_BYTES
    )
      this.flush()
    this.opts.tieBreak?.outgoing(msg)
    this.pending.push(msg)
    this.pendingBytes += msg.length
    this.flushHandle ??= setImmediate(() => {
      this.flushHandle = undefined
      this.flush()
    })
  }

  /** Sends what WireGuard gave since the last flush, as one batch (after what the outage queue holds). */
  private flush(): void {
    const packets = this.pending
    if (packets.length === 0) return
    const bytes = this.pendingBytes
    this.pending = []
    this.pendingBytes = 0
    // Order: what waits in the outage queue goes first; if it cannot, these wait behind it.
    if (this.outage.length > 0 && !this.drainOutage()) return this.enqueueOutage(packets)
    const problem = this.opts.sendPackets(packets)
    if (problem === 'relay_down') return this.enqueueOutage(packets)
    if (problem) return this.drop(problem, packets.length)
    this.counters.toRelayPackets += packets.length
    this.counters.toRelayBytes += bytes
    const now = this.clock.now()
    for (const packet of packets) this.remember({packet, at: now}, now)
  }

  /** Adds a packet that went to the relay to `recent`, within its bounds. */
  private remember(sent: Sent, now: number): void {
    const {maxPackets, maxBytes, maxAgeMs, inflightMs} = this.outageLimits
    if (maxPackets <= 0) return
    this.recent.push(sent)
    this.recentBytes += sent.packet.length
    const keepMs = this.awaitingPeer ? maxAgeMs : inflightMs
    while (
      this.recent.length > 0 &&
      (this.recent.length > maxPackets || this.recentBytes > maxBytes || now - this.recent[0]!.at > keepMs)
    )
      this.recentBytes -= this.recent.shift()!.packet.length
  }

  /**
   * The relay socket was lost (a reconnect follows): what it carried in the last inflightMs may
   * not have arrived, so it goes to the front of the outage queue; and until the peer is heard
   * from again, what is sent is remembered to be sent once more then (see the file comment).
   */
  relayLost(): void {
    if (this.closed) return
    const now = this.clock.now()
    const lost = this.recent.filter((r) => now - r.at <= this.outageLimits.inflightMs)
    this.recent = []
    this.recentBytes = 0
    this.awaitingPeer = true
    if (lost.length === 0) return
    const queued = this.outage
    this.outage = []
    this.outageBytes = 0
    this.enqueueOutage(lost)
    this.enqueueOutage(queued)
  }

  /**
   * Keeps packets for the relay's return, within the outage bounds (the oldest go first); plain
   * buffers came now, Sent ones keep when they came.
   */
  private enqueueOutage(packets: readonly (Buffer | Sent)[]): void {
    const {maxPackets, maxBytes} = this.outageLimits
    if (maxPackets <= 0) return this.drop('relay_down', packets.length)
    const now = this.clock.now()
    this.expireOutage(now)
    for (const p of packets) {
      const sent = Buffer.isBuffer(p) ? {packet: p, at: now} : p
      this.outage.push(sent)
      this.outageBytes += sent.packet.length
    }
    let over = 0
    while (this.outage.length > maxPackets || (this.outageBytes > maxBytes && this.outage.length > 0)) {
      this.outageBytes -= this.outage.shift()!.packet.length
      over++
    }
    this.drop('outage_overflow', over)
  }

  /** Drops what waited in the outage queue longer than its maxAgeMs. */
  private expireOutage(now: number): void {
    let expired = 0
    while (this.outage.length > 0 && now - this.outage[0]!.at > this.outageLimits.maxAgeMs) {
      this.outageBytes -= this.outage.shift()!.packet.length
      expired++
    }
    this.drop('outage_expired', expired)
  }

  /**
   * Sends the outage queue to the relay in order, in batches; true when it is empty after, false
   * when the relay socket is (still) down. A batch the relay's backlog refuses is dropped.
   */
  private drainOutage(): boolean {
    const now = this.clock.now()
    this.expireOutage(now)
    while (this.outage.length > 0) {
      const {n, bytes} = batchOf(this.peerId.length, this.outage, 0)
      const batch = this.outage.slice(0, n)
      const problem = this.opts.sendPackets(batch.map((q) => q.packet))
      if (problem === 'relay_down') return false
      this.outage.splice(0, n)
      this.outageBytes -= bytes
      if (problem) this.drop(problem, n)
      else {
        this.counters.toRelayPackets += n
        this.counters.toRelayBytes += bytes
        for (const q of batch) this.remember(q, now)
      }
    }
    return true
  }

  /**
   * The first packet from the peer since the relay socket was lost: the peer's socket is back, so
   * what was sent since the loss (up to maxAgeMs old) goes once more, in order, for what the relay
   * dropped while the peer was not connected to it.
   */
  private peerHeard(): void {
    this.awaitingPeer = false
    const now = this.clock.now()
    const again = this.recent.filter((r) => now - r.at <= this.outageLimits.maxAgeMs)
    for (let i = 0; i < again.length;) {
      const {n} = batchOf(this.peerId.length, again, i)
      if (this.opts.sendPackets(again.slice(i, i + n).map((r) => r.packet)) !== undefined) return
      this.counters.resentPackets += n
      i += n
    }
  }

  /** The relay socket is open (again): what waited in the outage queue leaves now, in order. */
  relayOpen(): void {
    if (this.closed || this.outage.length === 0) return
    this.drainOutage()
  }

  /** A packet the relay brought from the peer. */
  fromRelay(payload: Buffer): void {
    if (this.closed) return
    if (this.awaitingPeer) this.peerHeard()
    const settled = this.opts.tieBreak?.incoming(payload)
    if (settled && !settled.deliver) {
      // Our own initiation goes to the peer again instead (see InitiationTieBreak).
      const problem = this.opts.sendPackets([settled.resend])
      if (problem) this.drop(problem)
      return
    }
    switch (this.mode) {
      case 'deliver':
        return this.toWireGuard(payload)
      case 'drop':
        return this.drop('mode_drop')
      case 'hold':
        if (this.held.length >= this.holdLimit) return this.drop('hold_overflow')
        // A copy: a view would keep its whole 64 KiB socket read alive for the hold.
        this.held.push(Buffer.from(payload))
        this.opts.onHeld?.(this.held.length)
    }
  }

  private toWireGuard(payload: Buffer): void {
    if (!this.pacer.submit(this, this.sendToWireGuardFn, payload, this.pacedDropFn))
      this.drop('wireguard_backlog')
  }

  private sendToWireGuard(payload: Buffer): void {
    if (this.closed) return
    const wg = this.opts.wireGuardPort()
    if (wg === 0) return this.drop('no_wireguard_port')
    if (wg !== this.connectedTo) this.connectTo(wg)
    if (this.connectedTo === wg) this.socket.send(payload)
    else this.socket.send(payload, wg, LOOPBACK)
    this.counters.toWireGuardPackets++
    this.counters.toWireGuardBytes += payload.length
  }

  /**
   * Connects the socket to WireGuard's listen port (connectSync: Node >= 24.19), so that a send
   * skips the per-packet address lookup (a process.nextTick and two closures in dgram) and the
   * kernel's per-packet route lookup: the receiving daemon's sends to WireGuard were its largest
   * cost. A connected socket also takes datagrams only from that port: the kernel drops foreign
   * ones before meshd sees them (not counted as foreign_source then). On a port change it
   * reconnects; where it cannot, sends name the address as before.
   */
  private connectTo(port: number): void {
    const socket = this.socket as Socket & {connectSync?: (port: number, address: string) => void}
    if (typeof socket.connectSync !== 'function') return
    try {
      if (this.connectedTo !== 0) {
        this.connectedTo = 0
        socket.disconnect()
      }
      socket.connectSync(port, LOOPBACK)
      this.connectedTo = port
    } catch {
      this.connectedTo = 0
    }
  }

  /**
   * Switches mode. Entering hold starts its time bound (a hold while holding keeps the first
   * deadline); leaving it delivers (deliver) or discards (drop) what was held, in order.
   */
  setMode(mode: ShimMode, hold: HoldOptions = {}): void {
    if (this.closed) return
    if (mode === 'hold') {
      if (this.mode === 'hold') return
      const h = {...DEFAULT_HOLD, ...this.opts.hold, ...hold}
      this.mode = 'hold'
      this.holdLimit = Math.max(0, Math.floor(h.maxPackets))
      this.holdTimer = this.clock.setTimeout(() => {
        this.holdTimer = undefined
        if (this.mode === 'hold') this.setMode(h.then)
      }, h.maxMs)
      return
    }
    if (this.holdTimer !== undefined) {
      this.clock.clearTimeout(this.holdTimer)
      this.holdTimer = undefined
    }
    this.mode = mode
    const held = this.held
    this.held = []
    if (mode === 'deliver') for (const p of held) this.toWireGuard(p)
    else this.drop('mode_drop', held.length)
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve()
    this.closed = true
    if (this.holdTimer !== undefined) this.clock.clearTimeout(this.holdTimer)
    if (this.flushHandle !== undefined) clearImmediate(this.flushHandle)
    this.pacer.forget(this)
    this.held = []
    this.pending = []
    this.outage = []
    this.outageBytes = 0
    this.recent = []
    this.recentBytes = 0
    return new Promise((resolve) => this.socket.close(() => resolve()))
  }
}
