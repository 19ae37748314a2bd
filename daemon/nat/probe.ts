/**
 * Prober: the echo service behind `mesh ping`. One UDP socket per joined network, bound on the
 * node's mesh address (port PROBE_PORT), so both requests and replies travel inside WireGuard and
 * a reply proves the mesh path to the peer works, whichever way (direct or relay) it goes.
 *
 * Wire format, 16 bytes, all fields fixed (anything else is dropped):
 *
 *     0..3   magic "MPNG"
 *     4      version 1
 *     5      type: 1 = echo request, 2 = echo reply,
 *                  3 = upgrade "opened", 4 = upgrade "open" (daemon/nat/upgrade.ts)
 *     6..7   zero for echoes; for upgrades the switch window in units of 10 ms, and the index
 *            of the candidate the switching side aims at
 *     8..15  nonce (random, chosen by the requester)
 *
 * A reply is the request with the type changed: the same size, so the service amplifies nothing.
 * Upgrade messages are never answered here: they go to `onControl`, which only the peer they
 * came from can be affected by (they travel inside WireGuard, whose allowed IPs bind the source
 * address to the peer's key).
 * Every packet is hostile: the length is checked first, then a per-source token bucket (a bounded
 * table) is charged, then the header; replies are matched by nonce and must come from the address
 * and port the request went to. Nothing a peer sends makes the prober throw or allocate beyond
 * its bounds.
 */

import {SourceRateLimiter} from '../../shared/net/source-rate-limit.js'
import {randomBytes} from 'node:crypto'
import {performance} from 'node:perf_hooks'
import {systemClock, type Clock, type TimerHandle} from '../../shared/clock.js'
import {canonicalIp} from '../../shared/net/ip-bytes.js'
import {nodeUdpBind, type UdpBind, type UdpEndpoint, type UdpSocket} from '../../shared/net/udp.js'

/** The echo port on every node's mesh address. */
export const PROBE_PORT = 41820

export const PROBE_PACKET_BYTES = 16
const MAGIC = Buffer.from('MPNG', 'ascii')
const VERSION = 1
export const PROBE_REQUEST = 1
export const PROBE_REPLY = 2
export const UPGRADE_OPENED = 3
export const UPGRADE_OPEN = 4

/** An upgrade message: see daemon/nat/upgrade.ts. */
export interface UpgradeMessage {
  readonly type: typeof UPGRADE_OPENED | typeof UPGRADE_OPEN
  /** The switch window in ms (a multiple of 10, at most 2,550). */
  readonly windowMs: number
  readonly index: number
  readonly nonce: Buffer
}

/** The wire form of an upgrade message. */
export function encodeUpgrade(msg: UpgradeMessage): Buffer {
  const b = encodeProbe(PROBE_REQUEST, msg.nonce)
  b[5] = msg.type
  b[6] = Math.max(0, Math.min(255, Math.round(msg.windowMs / 10)))
  b[7] = Math.max(0, Math.min(255, Math.floor(msg.index)))
  return b
}

/** An upgrade message, undefined for anything else. */
export function decodeUpgrade(data: Uint8Array): UpgradeMessage | undefined {
  if (data.length !== PROBE_PACKET_BYTES) return undefined
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (!b.subarray(0, 4).equals(MAGIC) || b[4] !== VERSION) return undefined
  const type = b[5]
  if (type !== UPGRADE_OPENED && type !== UPGRADE_OPEN) return undefined
  return {type, windowMs: b[6]! * 10, index: b[7]!, nonce: Buffer.from(b.subarray(8, 16))}
}

/** Pings waiting for a reply at once; more resolve null at once (never unbounded memory). */
export const MAX_PENDING_PINGS = 1024

/** The probe packet of `type` with `nonce` (8 bytes). */
export function encodeProbe(type: typeof PROBE_REQUEST | typeof PROBE_REPLY, nonce: Uint8Array): Buffer {
  if (nonce.length !== 8) throw new RangeError('a probe nonce is 8 bytes')
  const b = Buffer.alloc(PROBE_PACKET_BYTES)
  MAGIC.copy(b, 0)
  b[4] = VERSION
  b[5] = type
  b.set(nonce, 8)
  return b
}

/** The type and nonce of a well-formed probe packet, undefined for anything else. */
export function decodeProbe(data: Uint8Array): {type: 1 | 2; nonce: Buffer} | undefined {
  if (data.length !== PROBE_PACKET_BYTES) return undefined
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (!b.subarray(0, 4).equals(MAGIC) || b[4] !== VERSION || b[6] !== 0 || b[7] !== 0) return undefined
  const type = b[5]
  if (type !== PROBE_REQUEST && type !== PROBE_REPLY) return undefined
  return {type, nonce: Buffer.from(b.subarray(8, 16))}
}

export interface ProbeLogger {
  debug(obj: object, msg: string): void
}

export interface ProberOptions {
  /** The node's mesh address in the network (the socket binds here). */
  readonly address: string
  /** Default PROBE_PORT; 0 for any free port (a pinger that does not answer on the well-known port). */
  readonly port?: number
  readonly log?: ProbeLogger
  /** Socket factory; node:dgram by default. */
  readonly bind?: UdpBind
  /** Timers (and the rate limiter's time); the system clock by default. */
  readonly clock?: Clock
  /** Monotonic milliseconds for round trips; performance.now by default. */
  readonly now?: () => number
  /** Upgrade messages (already rate-limited per source); dropped when absent. */
  readonly onControl?: (msg: UpgradeMessage, from: UdpEndpoint) => void
  /** Per-source limit on packets handled; defaults: 20/s sustained, bursts of 40, 1,024 sources. */
  readonly rateLimit?: {readonly perSecond?: number; readonly burst?: number; readonly maxSources?: number}
}

export type ProbeDropReason = 'malformed' | 'rate-limited' | 'unexpected-reply'

export interface ProberStats {
  received: number
  /** Echo requests answered. */
  answered: number
  /** Replies that matched a ping of ours. */
  replies: number
  /** Upgrade messages handed on. */
  control: number
  dropped: Record<ProbeDropReason, number>
}

interface Pending {
  readonly from: UdpEndpoint
  readonly sentAt: number
  readonly timer: TimerHandle
  readonly resolve: (rttMs: number | null) => void
}

export class Prober {
  private readonly pending = new Map<string, Pending>()
  private readonly limiter: SourceRateLimiter
  private readonly counts: ProberStats = {
    received: 0,
    answered: 0,
    replies: 0,
    control: 0,
    dropped: {malformed: 0, 'rate-limited': 0, 'unexpected-reply': 0},
  }
  private closed = false
  private readonly clock: Clock
  private readonly now: () => number

  private constructor(
    private readonly sock: UdpSocket,
    private readonly opts: ProberOptions,
  ) {
    this.clock = opts.clock ?? systemClock
    this.now = opts.now ?? (() => performance.now())
    this.limiter = new SourceRateLimiter({
      perSecond: opts.rateLimit?.perSecond ?? 20,
      burst: opts.rateLimit?.burst ?? 40,
      maxSources: opts.rateLimit?.maxSources ?? 1024,
      clock: this.clock,
    })
    sock.onMessage((data, from) => this.onMessage(data, from))
  }

  /** The address this prober is bound to. */
  get address(): string {
    return this.opts.address
  }

  /** Binds the socket and starts answering; rejects when the address cannot be bound (e.g. the interface is down). */
  static async start(opts: ProberOptions): Promise<Prober> {
    const sock = await (opts.bind ?? nodeUdpBind)({address: opts.address, port: opts.port ?? PROBE_PORT})
    opts.log?.debug({local: sock.local}, 'probe socket open')
    return new Prober(sock, opts)
  }

  /** Where the socket is bound. */
  get local(): UdpEndpoint {
    return this.sock.local
  }

  /**
   * Sends one echo request to `address` (port PROBE_PORT unless given) and resolves with the round
   * trip in ms, or null when no reply came within `timeoutMs` (default 2,000) or the prober closed.
   * Never rejects.
   */
  ping(address: string, opts: {timeoutMs?: number; port?: number} = {}): Promise<number | null> {
    const ip = canonicalIp(address)
    if (this.closed || ip === undefined || this.pending.size >= MAX_PENDING_PINGS)
      return Promise.resolve(null)
    const to = {address: ip, port: opts.port ?? PROBE_PORT}
    let nonce = randomBytes(8)
    while (this.pending.has(nonce.toString('hex'))) nonce = randomBytes(8)
    const key = nonce.toString('hex')
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => this.settle(key, null), opts.timeoutMs ?? 2000)
      this.pending.set(key, {from: to, sentAt: this.now(), timer, resolve})
      this.sock.send(encodeProbe(PROBE_REQUEST, nonce), to, (err) => {
        this.opts.log?.debug({to, err: err.message}, 'probe send failed')
        this.settle(key, null)
      })
    })
  }

  stats(): ProberStats {
    return {...this.counts, dropped: {...this.counts.dropped}}
  }

  /** Sends an upgrade message to `address` (port PROBE_PORT unless given). */
  sendControl(address: string, msg: UpgradeMessage, port = PROBE_PORT): void {
    const ip = canonicalIp(address)
    if (this.closed || ip === undefined) return
    this.sock.send(encodeUpgrade(msg), {address: ip, port}, (err) => {
      this.opts.log?.debug({to: ip, err: err.message}, 'upgrade message send failed')
    })
  }

  /** Closes the socket; pings in flight resolve null. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const key of [...this.pending.keys()]) this.settle(key, null)
    this.sock.close()
  }

  private settle(key: string, rttMs: number | null): void {
    const p = this.pending.get(key)
    if (p === undefined) return
    this.pending.delete(key)
    this.clock.clearTimeout(p.timer)
    p.resolve(rttMs)
  }

  private onMessage(data: Buffer, from: UdpEndpoint): void {
    if (this.closed) return
    this.counts.received++
    // Cheapest checks first: a wrong size costs nothing, the bucket one map lookup.
    if (data.length !== PROBE_PACKET_BYTES) return void this.counts.dropped.malformed++
    if (!this.limiter.take(from.address)) return void this.counts.dropped['rate-limited']++
    const msg = decodeProbe(data)
    if (msg === undefined) {
      const control = decodeUpgrade(data)
      if (control === undefined || this.opts.onControl === undefined)
        return void this.counts.dropped.malformed++
      this.counts.control++
      this.opts.onControl(control, from)
      return
    }
    if (msg.type === PROBE_REQUEST) {
      this.sock.send(encodeProbe(PROBE_REPLY, msg.nonce), from)
      this.counts.answered++
      return
    }
    const key = msg.nonce.toString('hex')
    const p = this.pending.get(key)
    if (p === undefined || p.from.address !== from.address || p.from.port !== from.port)
      return void this.counts.dropped['unexpected-reply']++
    this.counts.replies++
    this.settle(key, Math.max(0, this.now() - p.sentAt))
  }
}
