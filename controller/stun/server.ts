/**
 * The controller's STUN server: answers Binding requests (RFC 5389) with the source address it
 * saw, and — when given an alternate address and/or port — the RFC 5780 behaviour-discovery
 * extras: RESPONSE-ORIGIN, OTHER-ADDRESS, and replies from another socket on CHANGE-REQUEST.
 * It is not a TURN server and does no authentication.
 *
 * Every packet is hostile. In order, before any work beyond a map lookup:
 *  1. per-source-address token bucket (SourceRateLimiter) — a flood costs one lookup per packet;
 *  2. strict decode (shared/stun/codec.ts) — malformed packets are dropped silently;
 *  3. only Binding requests are answered; anything else is dropped silently.
 * Each drop is counted by reason in stats(). A reply is never larger than ~4× the request that
 * caused it, and the rate limit bounds what one spoofed victim address can receive.
 */

import {MeshError} from '../../shared/errors.js'
import {systemClock, type Clock} from '../../shared/clock.js'
import {canonicalIp} from '../../shared/net/ip-bytes.js'
import {nodeUdpBind, type UdpBind, type UdpEndpoint, type UdpSocket} from '../../shared/net/udp.js'
import {
  ATTR,
  METHOD_BINDING,
  encodeMessage,
  findAttribute,
  tryDecodeMessage,
  unknownRequiredAttributes,
  type StunAttribute,
  type StunMessage,
} from '../../shared/stun/codec.js'
import {SourceRateLimiter} from '../../shared/net/source-rate-limit.js'

export interface StunServerOptions {
  /** Where Binding requests arrive (port 0: any free port). Must be a specific address for RFC 5780. */
  readonly primary: UdpEndpoint
  /**
   * RFC 5780 alternate: a second address (same family as the primary) and/or a second port (0: any
   * free port). With both, four sockets serve every CHANGE-REQUEST combination.
   */
  readonly alternate?: {readonly address?: string; readonly port?: number}
  /** SOFTWARE attribute for replies; omitted when unset (smaller replies). */
  readonly software?: string
  /** Per-source-address limit; defaults: 20 packets/s sustained, bursts of 40, 10,000 sources tracked. */
  readonly rateLimit?: {readonly perSecond?: number; readonly burst?: number; readonly maxSources?: number}
  readonly clock?: Clock
  /** Socket factory; node:dgram by default, a simulated network in tests. */
  readonly bind?: UdpBind
  /** Called once per received packet with what became of it: for tests and metrics. */
  readonly onPacket?: (outcome: StunPacketOutcome) => void
}

export type StunDropReason = 'rate-limited' | 'malformed' | 'not-binding-request'

export type StunPacketOutcome =
  | {readonly kind: 'answered'}
  | {readonly kind: 'error-response'; readonly code: number}
  | {readonly kind: 'dropped'; readonly reason: StunDropReason}

export interface StunServerStats {
  received: number
  /** Success responses sent. */
  answered: number
  /** Error responses sent (420: unknown comprehension-required attribute, or a change we cannot make). */
  errorResponses: number
  /** Sends the OS refused (counted when it tells us). */
  sendFailed: number
  dropped: Record<StunDropReason, number>
}

/** The bound sockets: primary, and the RFC 5780 alternates that exist. */
export interface StunServerAddresses {
  readonly primary: UdpEndpoint
  /** OTHER-ADDRESS as seen from the primary: differs in address and/or port. Absent without an alternate. */
  readonly other?: UdpEndpoint
  readonly all: readonly UdpEndpoint[]
}

/** Sockets indexed [address index][port index]: [0][0] primary, [1][*] alternate address, [*][1] alternate port. */
type Grid = (UdpSocket | undefined)[][]

const UNSPECIFIED = new Set(['0.0.0.0', '::'])

export class StunServer {
  private readonly clock: Clock
  private readonly limiter: SourceRateLimiter
  private grid: Grid = [
    [undefined, undefined],
    [undefined, undefined],
  ]
  private started = false
  private closed = false
  // Owned by the socket handlers; read by stats().
  private readonly counters: StunServerStats = {
    received: 0,
    answered: 0,
    errorResponses: 0,
    sendFailed: 0,
    dropped: {'rate-limited': 0, malformed: 0, 'not-binding-request': 0},
  }

  constructor(private readonly opts: StunServerOptions) {
    // RFC 5389 §15.10 asks for fewer than 128 characters; bytes keep every reply well under 548.
    if (opts.software !== undefined && Buffer.byteLength(opts.software) > 128) {
      throw new MeshError('CONFIG_INVALID', {message: 'the STUN SOFTWARE text is longer than 128 bytes'})
    }
    this.clock = opts.clock ?? systemClock
    this.limiter = new SourceRateLimiter({
      perSecond: opts.rateLimit?.perSecond ?? 20,
      burst: opts.rateLimit?.burst ?? 40,
      maxSources: opts.rateLimit?.maxSources ?? 10_000,
      clock: this.clock,
    })
  }

  /**
   * Binds every socket (primary first, so port 0 resolves and the alternates reuse it). On any
   * failure the sockets already bound are closed and a MeshError is thrown (CONFIG_INVALID for a
   * bad address, LISTEN_FAILED when a bind fails).
   */
  async start(): Promise<StunServerAddresses> {
    if (this.started) throw new Error('StunServer.start() called twice')
    this.started = true
    const bind = this.opts.bind ?? nodeUdpBind
    const a1 = this.checkAddress(this.opts.primary.address, 'primary')
    const alt =
      this.opts.alternate?.address === undefined && this.opts.alternate?.port === undefined
        ? undefined
        : this.opts.alternate
    const a2 = alt?.address === undefined ? undefined : this.checkAddress(alt.address, 'alternate')
    if (alt !== undefined && (UNSPECIFIED.has(a1) || (a2 !== undefined && a2 === a1))) {
      throw new MeshError('CONFIG_INVALID', {
        message: 'a STUN alternate needs a specific primary address and a different alternate address',
      })
    }
    if (a2 !== undefined && a2.includes(':') !== a1.includes(':')) {
      throw new MeshError('CONFIG_INVALID', {
        message: 'the STUN alternate address must be of the primary’s family',
      })
    }
    if (alt?.port !== undefined && alt.port !== 0 && alt.port === this.opts.primary.port) {
      throw new MeshError('CONFIG_INVALID', {
        message: 'the STUN alternate port must differ from the primary port',
      })
    }
    const open = async (i: number, p: number, at: UdpEndpoint): Promise<UdpSocket> => {
      let sock: UdpSocket
      try {
        sock = await bind(at)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err)
        throw new MeshError('LISTEN_FAILED', {
          message: `could not bind the STUN socket ${fmt(at)}: ${code}`,
          hint: 'pick a free UDP port (and an address of this host) for the STUN server',
          cause: err,
        })
      }
      this.grid[i]![p] = sock
      sock.onMessage((data, from) => this.handle(i, p, data, from))
      return sock
    }
    try {
      const primary = await open(0, 0, {address: a1, port: this.opts.primary.port})
      const p1 = primary.local.port
      let p2: number | undefined
      if (alt?.port !== undefined) p2 = (await open(0, 1, {address: a1, port: alt.port})).local.port
      if (a2 !== undefined) {
        await open(1, 0, {address: a2, port: p1})
        if (p2 !== undefined) await open(1, 1, {address: a2, port: p2})
      }
    } catch (err) {
      this.close()
      throw err
    }
    return this.addresses()
  }

  addresses(): StunServerAddresses {
    const primary = this.grid[0]![0]
    if (primary === undefined) throw new Error('StunServer is not started')
    const other = this.otherOf(0, 0)
    const all = this.grid
      .flat()
      .filter((s): s is UdpSocket => s !== undefined)
      .map((s) => s.local)
    return other === undefined
      ? {primary: primary.local, all}
      : {primary: primary.local, other: other.local, all}
  }

  stats(): StunServerStats {
    return {...this.counters, dropped: {...this.counters.dropped}}
  }

  /** Closes every socket; idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const row of this.grid) for (const s of row) s?.close()
    this.grid = [
      [undefined, undefined],
      [undefined, undefined],
    ]
  }

  private checkAddress(text: string, what: string): string {
    const ip = canonicalIp(text)
    if (ip === undefined) {
      throw new MeshError('CONFIG_INVALID', {
        message: `the STUN ${what} address is not an IP address: ${text}`,
      })
    }
    return ip
  }

  /** RFC 5780 §7.4 OTHER-ADDRESS: the socket differing from (i, p) in every dimension we have. */
  private otherOf(i: number, p: number): UdpSocket | undefined {
    const hasAltAddress = this.grid[1]![0] !== undefined
    const hasAltPort = this.grid[0]![1] !== undefined
    if (!hasAltAddress && !hasAltPort) return undefined
    return this.grid[hasAltAddress ? 1 - i : i]![hasAltPort ? 1 - p : p]
  }

  private outcome(o: StunPacketOutcome): void {
    if (o.kind === 'dropped') this.counters.dropped[o.reason]++
    this.opts.onPacket?.(o)
  }

  private handle(i: number, p: number, data: Buffer, from: UdpEndpoint): void {
    this.counters.received++
    // Step 1: rate limit per source address (not per port: ports are free to vary).
    if (!this.limiter.take(from.address)) return this.outcome({kind: 'dropped', reason: 'rate-limited'})
    // Step 2: strict decode.
    const decoded = tryDecodeMessage(data)
    if (!decoded.ok) return this.outcome({kind: 'dropped', reason: 'malformed'})
    const req = decoded.message
    // Step 3: Binding requests only (indications and responses get no answer, RFC 5389 §7.3).
    if (req.cls !== 'request' || req.method !== METHOD_BINDING) {
      return this.outcome({kind: 'dropped', reason: 'not-binding-request'})
    }
    const receivedOn = this.grid[i]![p]!
    const unknown = unknownRequiredAttributes(req)
    if (unknown.length > 0) return this.replyError(receivedOn, req, from, unknown)
    // RFC 5780 §6.1: answer from the socket the CHANGE-REQUEST names, or 420 when we have none.
    const change = findAttribute(req, 'change-request')
    const si = change?.changeIp ? 1 - i : i
    const sp = change?.changePort ? 1 - p : p
    const sendFrom = this.grid[si]![sp]
    if (sendFrom === undefined) return this.replyError(receivedOn, req, from, [ATTR.CHANGE_REQUEST])

    const family = from.address.includes(':') ? 6 : 4
    const attributes: StunAttribute[] = [{kind: 'xor-mapped-address', address: {family, ...from}}]
    if (!UNSPECIFIED.has(sendFrom.local.address)) {
      attributes.push({kind: 'response-origin', address: {family, ...sendFrom.local}})
    }
    const other = this.otherOf(i, p)
    if (other !== undefined) attributes.push({kind: 'other-address', address: {family, ...other.local}})
    if (this.opts.software !== undefined) attributes.push({kind: 'software', text: this.opts.software})
    this.send(sendFrom, {...reply(req, 'success'), attributes}, from)
    this.counters.answered++
    this.outcome({kind: 'answered'})
  }

  private replyError(on: UdpSocket, req: StunMessage, to: UdpEndpoint, unknown: number[]): void {
    const attributes: StunAttribute[] = [
      {kind: 'error-code', code: 420, reason: 'Unknown Attribute'},
      // Bounded: the decoder caps attributes per message.
      {kind: 'unknown-attributes', types: unknown},
    ]
    if (this.opts.software !== undefined) attributes.push({kind: 'software', text: this.opts.software})
    this.send(on, {...reply(req, 'error'), attributes}, to)
    this.counters.errorResponses++
    this.outcome({kind: 'error-response', code: 420})
  }

  private send(on: UdpSocket, msg: StunMessage, to: UdpEndpoint): void {
    on.send(encodeMessage(msg), to, () => this.counters.sendFailed++)
  }
}

function reply(req: StunMessage, cls: 'success' | 'error'): Omit<StunMessage, 'attributes'> {
  return {cls, method: METHOD_BINDING, transactionId: req.transactionId, fingerprint: true}
}

const fmt = (e: UdpEndpoint): string =>
  e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`
