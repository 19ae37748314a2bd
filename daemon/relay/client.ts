/**
 * The daemon's side of the relay: one WebSocket per joined network to the controller's
 * /api/v1/relay (Bearer node credential), and one PeerShim (daemon/relay/shim.ts) per relayed
 * peer, whose 127.0.0.1 address is WireGuard's endpoint for that peer.
 *
 * The socket reconnects by itself with jittered exponential backoff after any close, except
 * RELAY_CLOSE.REPLACED (another session of this node took over: reconnecting would push it out
 * in turn) and close(). One exception to the backoff (reconnectDelay): a session that was up
 * and healthy and ends abnormally (1006: the TCP connection reset or closed without a close
 * frame, as when the relay's process dies behind a load balancer) tries again at once, within
 * a small jitter, since the load balancer routes the new connection to a live relay; a failure
 * of that attempt goes on with the backoff. Shims live across reconnects; while the socket is
 * down, what WireGuard sends to a relayed peer waits in the shim's outage queue (bounded in
 * packets, bytes and age; daemon/relay/shim.ts) and leaves, in order, when the socket is open
 * again, with what the lost socket carried in its last moments; what is sent after the reopen
 * goes once more when the peer is first heard from (its own socket may have come back later):
 * packets in a short outage arrive late instead of being lost.
 *
 * Packets go out in batches when the relay announced them at the upgrade (RELAY_BATCH_HEADER;
 * shared/relay/frame.ts), else one data frame each. Frames are sent with an all-zero WebSocket
 * mask, which ws then skips (no per-byte XOR here, nor the unmasking at the relay): masking
 * protects HTTP intermediaries from attacker-chosen bytes, and everything we send is WireGuard
 * ciphertext, which nobody can choose.
 *
 * Every message from the relay is decoded strictly (bounded by maxPayload) and its packets are
 * handed only to the shim of the peer it names; a frame for a peer without a shim is counted and
 * reported ('unknown_peer', 'unknownPeer'), so the daemon may decide to relay that peer too, and
 * parked briefly (PARK: a few packets per peer, a bounded number of peers, 1 s): two nodes that
 * come up at once get the other's first handshake initiation (which the relay held for them,
 * controller/relay/server.ts) as soon as their relay socket opens, BEFORE they have a shim for
 * that peer and before their WireGuard knows it. Parked packets go to the peer's shim when
 * WireGuard first sends something through it, the sign that WireGuard has the peer now (a
 * packet handed over earlier would be dropped by WireGuard as from an unknown key); older ones
 * than PARK.ms are dropped then.
 *
 * Wiring (daemon/backend.ts): one RelayClient per network the node has joined and whose netmap
 * names a relay; shimFor(peerId) when the path says relay, then set the peer's WireGuard
 * endpoint to the returned endpoint; setMode() around an upgrade; release() when the peer
 * leaves or goes direct for good; setWireGuardPort() when the interface is recreated.
 */
import {wsUrl} from '../../shared/net/ws-url.js'
import {EventEmitter} from 'node:events'
import WebSocket, {type ClientOptions} from 'ws'
import {
  decodeRelayMessage,
  encodeRelayBatch,
  encodeRelayFrame,
  RELAY_BATCH_HEADER,
  RELAY_CLOSE,
  RELAY_FRAME_BATCH,
  RELAY_MAX_PAYLOAD,
  RELAY_WS_PATH,
  relayFrameHeader,
  relayMaxMessageBytes,
} from '../../shared/relay/frame.js'
import {InitiationTieBreak, initiationWinner} from './initiation-tie-break.js'
import {
  PeerShim,
  systemShimClock,
  WireGuardPacer,
  type HoldOptions,
  type OutageOptions,
  type ShimClock,
  type ShimDropReason,
  type ShimMode,
  type ShimStats,
} from './shim.js'
import {ProcWireGuardQueue, wireGuardQueueTarget, type WireGuardQueue} from './wireguard-queue.js'

export interface BackoffOptions {
  /** First retry delay (ms), before jitter. 250 by default. */
  minMs?: number
  /** Largest retry delay (ms), before jitter. 30,000 by default. */
  maxMs?: number
  /**
   * A session open at least this long (ms) counts as healthy: if it then closes abnormally
   * (1006), the first reconnect goes at once (within quickJitterMs). 1000 by default: a relay
   * that accepts and then dies at once is retried at most about once a second per node, as
   * before (each open resets the backoff), never in a tight loop.
   */
  healthyMs?: number
  /**
   * The spread (ms) of that first quick attempt: uniform in [0, quickJitterMs). 100 by default:
   * every node of a relay that died sees the close within the same few ms; spread over 100 ms a
   * replica's 1,000 relay sessions reach the survivors at ~10 per ms instead of all in one, at a
   * cost of 50 ms on average to the outage. A graceful restart (1001) and refusals keep the
   * backoff (125-250 ms first, then doubling).
   */
  quickJitterMs?: number
}

/** WebSocket close code 1006: the connection ended without a close frame (reset, process gone). */
export const CLOSE_ABNORMAL = 1006

/**
 * The delay before reconnect attempt `attempt` (0-based): min(maxMs, minMs·2^attempt), of which
 * a random half is taken away ("equal jitter"), so clients that lost the relay together do not
 * come back together.
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const min = opts.minMs ?? 250
  const max = opts.maxMs ?? 30_000
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

/**
 * The delay before the next reconnect after a close (see the file comment): a healthy session
 * (open at least healthyMs) that closed abnormally (1006) is retried within quickJitterMs and
 * leaves the backoff where it was (at its start: the open reset it), anything else waits
 * backoffDelay(attempt). `quick` says which.
 */
export function reconnectDelay(
  close: {code: number; openForMs: number | undefined; attempt: number},
  opts: BackoffOptions = {},
  random: () => number = Math.random,
): {delayMs: number; quick: boolean} {
  const healthy = close.openForMs !== undefined && close.openForMs >= (opts.healthyMs ?? 1000)
  if (healthy && close.code === CLOSE_ABNORMAL)
    return {delayMs: Math.floor(random() * (opts.quickJitterMs ?? 100)), quick: true}
  return {delayMs: backoffDelay(close.attempt, opts, random), quick: false}
}

export interface RelayClientOptions {
  /** The controller's base URL (http or https); the relay is at RELAY_WS_PATH on it. */
  controller: string
  /** The node credential of this network. */
  credential: string
  /**
   * This node's id in the network: with it, each shim settles handshake-initiation races with
   * its peer (daemon/relay/initiation-tie-break.ts); without it, WireGuard's 5 s retry does.
   */
  selfId?: string
  /** WireGuard's listen port on 127.0.0.1 (0 when not known yet). */
  wireGuardPort: number
  /** Largest WireGuard packet carried; the same as the relay's. 2048 by default. */
  maxPayload?: number
  backoff?: BackoffOptions
  random?: () => number
  clock?: ShimClock
  /** Defaults for setMode('hold'). */
  hold?: HoldOptions
  /** Bounds of each shim's outage queue (daemon/relay/shim.ts OUTAGE by default). */
  outage?: OutageOptions
  /**
   * How full WireGuard's listen socket is, for pacing packets into it (daemon/relay/shim.ts,
   * WireGuardPacer): /proc/net/udp on Linux by default; false paces by time alone (for tests
   * that count the time-based pace).
   */
  wireGuardQueue?: WireGuardQueue | false
  /** The relay socket's send backlog above which packets are dropped. 1 MiB by default. */
  maxSendBacklogBytes?: number
  /**
   * The socket is pinged this often; with nothing heard from the relay for 3 intervals it is
   * cut and reconnected (a NAT that dropped the TCP mapping leaves it silent). 15 s by default.
   */
  keepaliveMs?: number
  /** TLS options (ca) and the like for the WebSocket. */
  ws?: Pick<ClientOptions, 'ca' | 'rejectUnauthorized' | 'handshakeTimeout' | 'localAddress'>
}

export type RelayClientDropReason = ShimDropReason | 'malformed' | 'unknown_peer'

export interface RelayClientEvents {
  /** The relay socket is open (again). */
  open: []
  /** The relay socket closed; a reconnect follows unless `reconnectInMs` is undefined. */
  close: [info: {code: number; reason: string; reconnectInMs: number | undefined}]
  /** Another session of this node replaced this one; this client stopped. */
  replaced: []
  /** A frame from the relay for a peer that has no shim (dropped). */
  unknownPeer: [peerId: string]
  drop: [info: {peerId: string | undefined; reason: RelayClientDropReason}]
  /** A packet was added to a peer's hold; `count` are held now. */
  held: [peerId: string, count: number]
}

/** Bounds of the packets parked for peers without a shim (see the file comment). */
export const PARK = {packetsPerPeer: 8, peers: 64, ms: 1000} as const

/** ws's generateMask: an all-zero key, which ws does not apply (see the file comment). */
const zeroMask = (mask: Buffer): void => void mask.fill(0)

export class RelayClient extends EventEmitter<RelayClientEvents> {
  private url: string
  private readonly clock: ShimClock
  private readonly maxPayload: number
  private readonly maxSendBacklog: number
  private readonly keepaliveMs: number
  private ws: WebSocket | undefined
  private base: string
  /** Whether the relay of the open socket takes batches. */
  private batchOut = false
  private wgPort: number
  private attempt = 0
  /** When the open socket opened (clock ms); undefined while none is open. */
  private openedAt: number | undefined = undefined
  private retryTimer: unknown = undefined
  private keepaliveTimer: unknown = undefined
  private lastHeard = 0
  private stopped = false
  private readonly shims = new Map<string, PeerShim>()
  /** The pace budget of WireGuard's listen socket, shared by every shim of this client. */
  private readonly pacer: WireGuardPacer
  /** The /proc files the default queue probe keeps open; closed with the client. */
  private procQueue: ProcWireGuardQueue | undefined
  private readonly opening = new Map<string, Promise<PeerShim>>()
  private readonly clientDrops = {malformed: 0, unknown_peer: 0}
  /** Packets for peers without a shim, oldest first (see PARK); owned by onMessage/shim sends. */
  private readonly parked = new Map<string, {at: number; payload: Buffer}[]>()

  constructor(private readonly opts: RelayClientOptions) {
    super()
    this.base = opts.controller
    this.url = wsUrl(opts.controller, RELAY_WS_PATH).toString()
    this.clock = opts.clock ?? systemShimClock
    this.maxPayload = opts.maxPayload ?? RELAY_MAX_PAYLOAD
    this.maxSendBacklog = opts.maxSendBacklogBytes ?? 1024 * 1024
    this.keepaliveMs = opts.keepaliveMs ?? 15_000
    this.wgPort = opts.wireGuardPort
    if (opts.wireGuardQueue === undefined) this.procQueue = ProcWireGuardQueue.open()
    const probe = opts.wireGuardQueue === false ? undefined : (opts.wireGuardQueue ?? this.procQueue)
    this.pacer = new WireGuardPacer(
      this.clock,
      probe && {probe, port: () => this.wgPort, target: wireGuardQueueTarget()},
    )
    this.connect()
  }

  /** Whether the relay socket is open now. */
  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN
  }

  /** Resolves when the relay socket is open (at once when it is). */
  whenOpen(): Promise<void> {
    if (this.connected) return Promise.resolve()
    return new Promise((resolve) => this.once('open', () => resolve()))
  }

  /**
   * Resolves when the socket is open (true) or its current attempt ended without opening
   * (false: the controller is down, refused it, ...). Unlike whenOpen() it settles either way,
   * so a caller awaiting it never waits on a socket that keeps failing.
   */
  whenAttemptSettles(): Promise<boolean> {
    if (this.connected) return Promise.resolve(true)
    return new Promise((resolve) => {
      const opened = () => {
        this.off('close', closed)
        resolve(true)
      }
      const closed = () => {
        this.off('open', opened)
        resolve(false)
      }
      this.once('open', opened)
      this.once('close', closed)
    })
  }

  setWireGuardPort(port: number): void {
    this.wgPort = port
  }

  /** The base URL of the relay the socket goes to (the controller's, or a stand-alone relay's). */
  get relayUrl(): string {
    return this.base
  }

  /**
   * Moves the socket to another relay (a new home relay): the open socket is closed and a new
   * one opens at once. Shims stay, so WireGuard's endpoints for relayed peers do not change;
   * packets in between wait in the shims' outage queues.
   */
  retarget(base: string): void {
    if (this.stopped || base === this.base) return
    this.base = base
    this.url = wsUrl(base, RELAY_WS_PATH).toString()
    this.attempt = 0
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    if (this.keepaliveTimer !== undefined) this.clock.clearTimeout(this.keepaliveTimer)
    this.keepaliveTimer = undefined
    const old = this.ws
    this.ws = undefined
    this.openedAt = undefined
    if (old) {
      if (old.readyState === WebSocket.CONNECTING) old.terminate()
      else old.close(1000, 'moving to another relay')
      for (const shim of this.shims.values()) shim.relayLost()
      this.emit('close', {code: 1000, reason: 'moving to another relay', reconnectInMs: 0})
    }
    this.connect()
  }

  private connect(): void {
    if (this.stopped) return
    const ws = new WebSocket(this.url, {
      ...this.opts.ws,
      headers: {authorization: `Bearer ${this.opts.credential}`, [RELAY_BATCH_HEADER]: '1'},
      maxPayload: relayMaxMessageBytes(this.maxPayload),
      perMessageDeflate: false,
      handshakeTimeout: this.opts.ws?.handshakeTimeout ?? 10_000,
      followRedirects: false,
      generateMask: zeroMask,
    })
    this.ws = ws
    this.batchOut = false
    ws.binaryType = 'nodebuffer'
    ws.on('error', () => undefined) // a 'close' always follows
    ws.on('upgrade', (res) => {
      if (this.ws === ws) this.batchOut = res.headers[RELAY_BATCH_HEADER] === '1'
    })
    ws.on('open', () => {
      this.attempt = 0
      this.openedAt = this.clock.now()
      this.heard()
      this.scheduleKeepalive(ws)
      // What waited in the shims' outage queues goes first, before the 'open' listeners run.
      for (const shim of this.shims.values()) shim.relayOpen()
      this.emit('open')
    })
    ws.on('message', (data, isBinary) => {
      this.heard()
      this.onMessage(data as Buffer, isBinary)
    })
    ws.on('ping', () => this.heard())
    ws.on('pong', () => this.heard())
    ws.on('close', (code, reasonBuf) => this.onClose(ws, code, reasonBuf.toString()))
  }

  private heard(): void {
    this.lastHeard = this.clock.now()
  }

  private scheduleKeepalive(ws: WebSocket): void {
    this.keepaliveTimer = this.clock.setTimeout(() => {
      this.keepaliveTimer = undefined
      if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return
      if (this.clock.now() - this.lastHeard >= 3 * this.keepaliveMs) {
        ws.terminate()
        return
      }
      ws.ping()
      this.scheduleKeepalive(ws)
    }, this.keepaliveMs)
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return
    this.ws = undefined
    const openForMs = this.openedAt === undefined ? undefined : this.clock.now() - this.openedAt
    this.openedAt = undefined
    if (this.keepaliveTimer !== undefined) this.clock.clearTimeout(this.keepaliveTimer)
    this.keepaliveTimer = undefined
    if (this.stopped) {
      this.emit('close', {code, reason, reconnectInMs: undefined})
      return
    }
    if (code === RELAY_CLOSE.REPLACED) {
      this.stopped = true
      this.emit('close', {code, reason, reconnectInMs: undefined})
      this.emit('replaced')
      return
    }
    const {delayMs: delay, quick} = reconnectDelay(
      {code, openForMs, attempt: this.attempt},
      this.opts.backoff,
      this.opts.random,
    )
    // A quick attempt that fails goes on from the start of the backoff.
    if (!quick) this.attempt++
    for (const shim of this.shims.values()) shim.relayLost()
    this.emit('close', {code, reason, reconnectInMs: delay})
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined
      this.connect()
    }, delay)
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (!isBinary) return this.clientDrop(undefined, 'malformed')
    let peerId: string
    let payloads: Buffer[]
    try {
      ;({peerId, payloads} = decodeRelayMessage(data, {maxPayload: this.maxPayload}))
    } catch {
      return this.clientDrop(undefined, 'malformed')
    }
    const shim = this.shims.get(peerId)
    if (!shim) {
      this.clientDrop(peerId, 'unknown_peer', payloads.length)
      this.park(peerId, payloads)
      this.emit('unknownPeer', peerId)
      return
    }
    for (const p of payloads) shim.fromRelay(p)
  }

  /** Parks packets for a peer without a shim (bounded; the oldest go first). */
  private park(peerId: string, payloads: Buffer[]): void {
    const now = this.clock.now()
    let list = this.parked.get(peerId)
    if (!list) {
      if (this.parked.size >= PARK.peers)
        for (const [id, l] of this.parked) if (now - l.at(-1)!.at >= PARK.ms) this.parked.delete(id)
      if (this.parked.size >= PARK.peers) return
      this.parked.set(peerId, (list = []))
    }
    // Copies: each payload is a view into the whole relay message, which must not stay alive.
    for (const payload of payloads) list.push({at: now, payload: Buffer.from(payload)})
    if (list.length > PARK.packetsPerPeer) list.splice(0, list.length - PARK.packetsPerPeer)
  }

  /**
   * WireGuard sent through a peer's shim, so it knows the peer: what was parked for it goes to
   * WireGuard now, after this send (the shim is in the middle of it).
   */
  private releaseParked(peerId: string): void {
    const list = this.parked.get(peerId)
    if (!list) return
    this.parked.delete(peerId)
    setImmediate(() => {
      const shim = this.shims.get(peerId)
      const now = this.clock.now()
      if (shim) for (const p of list) if (now - p.at < PARK.ms) shim.fromRelay(p.payload)
    })
  }

  private clientDrop(peerId: string | undefined, reason: 'malformed' | 'unknown_peer', n = 1): void {
    this.clientDrops[reason] += n
    if (this.listenerCount('drop') > 0) this.emit('drop', {peerId, reason})
  }

  /** Packets of one peer to the relay: one batch when it takes them, else a data frame each. */
  private sendPackets(
    peerId: string,
    headers: {data: Buffer; batch: Buffer},
    packets: Buffer[],
  ): undefined | 'relay_down' | 'relay_backlog' {
    const ws = this.ws
    if (!ws || ws.readyState !== WebSocket.OPEN) return 'relay_down'
    if (ws.bufferedAmount > this.maxSendBacklog) return 'relay_backlog'
    const maxPayload = this.maxPayload
    if (this.batchOut && packets.length > 1)
      ws.send(encodeRelayBatch(peerId, packets, {header: headers.batch, maxPayload}))
    else for (const p of packets) ws.send(encodeRelayFrame(peerId, p, {header: headers.data, maxPayload}))
    return undefined
  }

  /**
   * The local endpoint for a relayed peer ("127.0.0.1:port"), opening its shim on first use;
   * the same one until release(peerId).
   */
  async shimFor(peerId: string): Promise<{endpoint: string; port: number}> {
    if (this.stopped) throw new Error('relay client is closed')
    let shim = this.shims.get(peerId)
    if (!shim) {
      let opening = this.opening.get(peerId)
      if (!opening) {
        const headers = {data: relayFrameHeader(peerId), batch: relayFrameHeader(peerId, RELAY_FRAME_BATCH)}
        opening = PeerShim.open(peerId, {
          wireGuardPort: () => this.wgPort,
          sendPackets: (packets) => {
            const r = this.sendPackets(peerId, headers, packets)
            if (this.parked.size > 0) this.releaseParked(peerId)
            return r
          },
          maxPayload: this.maxPayload,
          clock: this.clock,
          hold: this.opts.hold,
          outage: this.opts.outage,
          pacer: this.pacer,
          onDrop: (reason) => {
            if (this.listenerCount('drop') > 0) this.emit('drop', {peerId, reason})
          },
          onHeld: (count) => this.emit('held', peerId, count),
          ...(this.opts.selfId !== undefined &&
            this.opts.selfId !== peerId && {
              tieBreak: new InitiationTieBreak(initiationWinner(this.opts.selfId, peerId), () =>
                this.clock.now(),
              ),
            }),
        })
        this.opening.set(peerId, opening)
        opening
          .then(async (s) => {
            if (this.opening.get(peerId) !== opening) return void (await s.close())
            this.opening.delete(peerId)
            this.shims.set(peerId, s)
          })
          .catch(() => this.opening.delete(peerId))
      }
      await opening
      shim = this.shims.get(peerId)
      if (!shim) throw new Error('relay: the shim was released while it opened')
    }
    return {endpoint: shim.endpoint, port: shim.port}
  }

  /** Sets a peer's shim mode (see daemon/relay/shim.ts); false when the peer has no shim. */
  setMode(peerId: string, mode: ShimMode, hold?: HoldOptions): boolean {
    const shim = this.shims.get(peerId)
    if (!shim) return false
    shim.setMode(mode, hold)
    return true
  }

  /** Counters of a peer's shim; undefined when it has none. */
  stats(peerId: string): ShimStats | undefined {
    return this.shims.get(peerId)?.stats()
  }

  /** Frames from the relay dropped before reaching a shim. */
  get dropped(): {malformed: number; unknown_peer: number} {
    return {...this.clientDrops}
  }

  /** The peers that have a shim. */
  get peers(): string[] {
    return [...this.shims.keys()]
  }

  /** Closes a peer's shim (held packets are discarded). */
  async release(peerId: string): Promise<void> {
    this.opening.delete(peerId)
    this.parked.delete(peerId)
    const shim = this.shims.get(peerId)
    if (!shim) return
    this.shims.delete(peerId)
    await shim.close()
  }

  /** Stops reconnecting, closes the relay socket and every shim. */
  async close(): Promise<void> {
    this.stopped = true
    this.parked.clear()
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer)
    if (this.keepaliveTimer !== undefined) this.clock.clearTimeout(this.keepaliveTimer)
    this.retryTimer = this.keepaliveTimer = undefined
    this.procQueue?.close()
    const ws = this.ws
    const closing: Promise<unknown>[] = [...this.shims.keys()].map((p) => this.release(p))
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      closing.push(
        new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            ws.terminate()
            resolve()
          }, 2000)
          t.unref()
          ws.once('close', () => {
            clearTimeout(t)
            resolve()
          })
          if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
          else ws.close(1000, 'meshd leaving')
        }),
      )
    }
    await Promise.all(closing)
  }
}
