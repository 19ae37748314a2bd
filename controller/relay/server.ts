/**
 * The relay (WS /api/v1/relay): forwards still-encrypted WireGuard packets between connected
 * nodes of the same network. Frame format and close codes: shared/relay/frame.ts.
 *
 * Isolation: a node's frames are looked up ONLY among the connected nodes of its own network
 * (the network the credential authenticated to). An id that is not there (offline, removed,
 * forged, or a node of another network) is dropped and counted; nothing is ever delivered
 * across networks, and the sender learns nothing (no error frame, no close). Within a network,
 * `allowed` (when given) says whether the tenant's ACL policy lets two nodes see each other; a
 * packet between two that do not is dropped the same way ("policy"), whether it came from a
 * node here or from another relay (deliver()).
 *
 * Batches (shared/relay/frame.ts): a node that sent RELAY_BATCH_HEADER at the upgrade gets the
 * same header back and may receive batches. Packets are not sent as they are read: what one turn
 * of the event loop read for a receiver from one sender (a socket read holds many messages under
 * load) leaves at the end of that turn (setImmediate), in batches of up to RELAY_MAX_BATCH_BYTES
 * to a node that takes them, one data frame per packet to any other. The backlog cap counts
 * these queued packets too.
 *
 * Bad input: every message pays the sender's token buckets (its bytes, and one packet) BEFORE
 * it is parsed, so garbage costs a flooding node its own budget; the other packets of a batch
 * pay once it is decoded, and those over the packets/s budget are dropped ("rate"), the first
 * ones going on. A malformed frame (text, bad type,
 * bad id, empty or oversize payload) is dropped and counted, never answered with a close: one
 * corrupt packet must not cut a node's relayed sessions to all its peers. A message over the
 * WebSocket limit (header + maxPayload) is a protocol violation: ws closes that socket with 1009.
 *
 * Held packets (first packets of a pair that comes up at once): a packet for a node that has no
 * relay socket here (nor on another relay of the mesh) yet, but that `expected` says is an
 * active node of the SENDER's network (the controller knows it: it registered, and will connect
 * when its netmap names the relay), is held for it instead of dropped: per destination at most
 * holdPackets packets / holdBytes bytes (the oldest go first: a newer WireGuard handshake
 * initiation supersedes an older one), holdMs at most each, and holdTotalBytes / holdTotalPackets
 * over all destinations. They go, in order, when that very (network, node) attaches (or shows up
 * on the mesh); expired or evicted ones are dropped and counted ("expired", "hold_full").
 * Isolation is unchanged: the queue is keyed by the sender's network and only `expected`, the
 * controller's word, admits a destination, so a forged id or another network's node is never
 * held, and a held packet goes only to that node's authenticated socket. Connected destinations
 * never reach this code: their per-packet path is as before.
 *
 * Slow receivers: a receiver whose socket backlog (ws.bufferedAmount) is over maxBacklogBytes
 * gets nothing more until it drains; those packets are dropped and counted ("backlog"). WireGuard
 * and the TCP inside it cope with loss; a queue that grows without bound would not.
 *
 * One session per node: a new authenticated upgrade for a node replaces its open socket, which
 * is closed with RELAY_CLOSE.REPLACED; the new session inherits the old one's token buckets.
 *
 * The same code runs inside the controller and on its own (`mesh relay start`,
 * controller/relay/main.ts); it knows nothing of either. It is given:
 * - `authenticate`: who a credential belongs to (the controller asks its state; a stand-alone
 *   relay asks the controller, controller/relay/node-auth.ts);
 * - `removals`: a stream of nodes that stopped being active, whose sockets close at once (the
 *   controller's change feed; a stand-alone relay's heartbeat answers);
 * - `forward`: optional, where a packet for a node that is not connected here goes (the relay
 *   mesh, controller/relay/mesh.ts); packets arriving from the mesh come in through deliver(),
 *   which only ever delivers locally (a forwarded packet is never forwarded again).
 *
 * Wiring (controller/api/server.ts): route upgrades of WS_PATHS.relay to handleUpgrade; close()
 * on shutdown.
 */
import {EventEmitter} from 'node:events'
import type {IncomingMessage} from 'node:http'
import type {Duplex} from 'node:stream'
import {Counter, Gauge, Registry} from 'prom-client'
import {systemClock, type Clock, type TimerHandle} from '../../shared/clock.js'
import {WebSocketServer, type RawData, type WebSocket} from 'ws'
import {
  decodeRelayMessage,
  encodeRelayBatch,
  isRelayPeerId,
  RELAY_BATCH_HEADER,
  RELAY_CLOSE,
  RELAY_FRAME_BATCH,
  RELAY_MAX_BATCH_BYTES,
  RELAY_MAX_BATCH_PACKETS,
  RELAY_MAX_PAYLOAD,
  relayBatchBytes,
  relayFrameHeader,
  relayMaxMessageBytes,
} from '../../shared/relay/frame.js'

export interface RelayIdentity {
  readonly nodeId: string
  readonly networkId: string
}

/** Subscribes a listener to a stream of events; returns the unsubscribe function. */
export type Subscribe<T> = (listener: (event: T) => void) => () => void

export interface RelayLimits {
  /** Largest WireGuard packet relayed (bytes); the WebSocket message limit follows from it. */
  maxPayload: number
  /** Per node: sustained packets per second, and the burst above it. */
  packetsPerSecond: number
  packetBurst: number
  /** Per node: sustained bytes per second (whole frames), and the burst above it. */
  bytesPerSecond: number
  byteBurst: number
  /** Per receiver: the socket backlog (ws.bufferedAmount) above which packets to it are dropped. */
  maxBacklogBytes: number
  /** Per expected destination not connected yet: packets and bytes held at most (oldest go first). */
  holdPackets: number
  holdBytes: number
  /** How long a held packet waits for its destination to connect (ms). */
  holdMs: number
  /** Over all destinations: packets and bytes held at most (beyond: not held, "hold_full"). */
  holdTotalPackets: number
  holdTotalBytes: number
}

/**
 * Per node about 50k packets/s and 64 MB/s (~540 Mbit/s), above the ~440 Mbit/s one
 * wireguard-go pair pushes on this kind of machine (TOOLCHAIN), with 1/10 s of burst. The
 * backlog cap is 1 MiB per receiver, ~20 ms at that rate. Holding: 32 packets / 64 KiB for up to
 * 1 s per destination (a node comes up within that, or WireGuard's own retry takes over), 4 MiB /
 * 8,192 packets over all (64 destinations filled to the brim).
 */
export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  maxPayload: RELAY_MAX_PAYLOAD,
  packetsPerSecond: 50_000,
  packetBurst: 5_000,
  bytesPerSecond: 64 * 1024 * 1024,
  byteBurst: 6.4 * 1024 * 1024,
  maxBacklogBytes: 1024 * 1024,
  holdPackets: 32,
  holdBytes: 64 * 1024,
  holdMs: 1000,
  holdTotalPackets: 8192,
  holdTotalBytes: 4 * 1024 * 1024,
}

/**
 * Why a frame was not delivered:
 * - malformed: not a well-formed binary data frame (shared/relay/frame.ts);
 * - rate: over the sender's packets/s or bytes/s bucket;
 * - unknown: the destination is not connected in the sender's network (offline, removed,
 *   forged, or the sender itself);
 * - foreign: the destination id is connected, but in another network;
 * - backlog: the receiver's socket backlog is over the cap;
 * - policy: the tenant's ACL policy does not let the two nodes see each other (`allowed`);
 * - expired: held for an expected node that did not connect within holdMs;
 * - hold_full: held for an expected node, but its queue or the relay's hold was full (the oldest
 *   of that node's queue go; over the relay-wide cap the new packet is not held).
 */
export type RelayDropReason =
  'malformed' | 'rate' | 'unknown' | 'foreign' | 'backlog' | 'policy' | 'expired' | 'hold_full'

export interface RelayDrop {
  readonly networkId: string
  /** The sender. */
  readonly nodeId: string
  readonly reason: RelayDropReason
}

/** The relay's Prometheus metrics, on the registry given (the controller's). */
export class RelayMetrics {
  readonly bytes: Counter<'network'>
  readonly packets: Counter<'network'>
  readonly dropped: Counter<'network' | 'reason'>
  readonly connected: Gauge<'network'>
  readonly held: Counter<'network'>

  constructor(registry: Registry = new Registry()) {
    this.bytes = new Counter({
      name: 'mesh_relay_bytes_total',
      help: 'WireGuard packet bytes delivered by the relay, by network',
      labelNames: ['network'] as const,
      registers: [registry],
    })
    this.packets = new Counter({
      name: 'mesh_relay_packets_total',
      help: 'WireGuard packets delivered by the relay, by network',
      labelNames: ['network'] as const,
      registers: [registry],
    })
    this.dropped = new Counter({
      name: 'mesh_relay_dropped_packets_total',
      help: 'Relay frames not delivered, by network of the sender and reason (malformed, rate, unknown, foreign, backlog, policy, expired, hold_full)',
      labelNames: ['network', 'reason'] as const,
      registers: [registry],
    })
    this.connected = new Gauge({
      name: 'mesh_relay_connected_nodes',
      help: 'Nodes with an open relay WebSocket, by network',
      labelNames: ['network'] as const,
      registers: [registry],
    })
    this.held = new Counter({
      name: 'mesh_relay_held_packets_total',
      help: 'Packets held for an expected node of the network that had no relay socket yet (delivered when it connects, else dropped as expired)',
      labelNames: ['network'] as const,
      registers: [registry],
    })
  }
}

export interface RelayLog {
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
  info?(obj: object, msg: string): void
}

export interface RelayServerOptions {
  /** The node a credential belongs to, or undefined when it is not valid (removed, wrong, pending). */
  authenticate(credential: string): Promise<RelayIdentity | undefined>
  metrics?: RelayMetrics
  limits?: Partial<RelayLimits>
  /** Time and timers (token buckets, held packets' expiry); the system clock by default. */
  clock?: Clock
  /** Milliseconds, for the token buckets; clock.now by default. Kept for tests that only move time. */
  now?: () => number
  log?: RelayLog
  /** Sockets that do not answer a ping within this interval are dropped. 30 s by default. */
  pingIntervalMs?: number
  /** Nodes no longer active (removed, disabled, pending): their sockets close with REVOKED. */
  removals?: Subscribe<RelayIdentity>
  /**
   * A packet batch whose destination is not connected here, in the sender's network: true when
   * it was taken elsewhere (the relay mesh), false to drop it as 'unknown'/'foreign'.
   */
  forward?: (from: RelayIdentity, dstNodeId: string, payloads: Buffer[]) => boolean
  /**
   * Whether `src` may send to `dst` in `networkId` under the tenant's ACL policy (they see each
   * other); false drops the packets as 'policy'. Asked for every message, so it must be cheap
   * and synchronous. Without it every pair of one network may talk (a stand-alone relay).
   */
  allowed?: (networkId: string, srcNodeId: string, dstNodeId: string) => boolean
  /**
   * Whether `nodeId` is an active node of `networkId` that is expected to connect (the controller
   * knows it): packets for it are held briefly while it has no socket (see "Held packets").
   * Asked only for packets whose destination is not connected, so never on the forwarding path
   * of connected nodes; must be synchronous. Without it nothing is held (a stand-alone relay).
   */
  expected?: (networkId: string, nodeId: string) => boolean
}

/** A sender as the receiving side sees it: a connected node, or one on another relay. */
interface Source {
  readonly id: RelayIdentity
  readonly net: Net
  /** The frame headers (data, batch) with this node as source, prefixed to what it sends. */
  readonly header: Buffer
  readonly batchHeader: Buffer
}

interface Buckets {
  packets: number
  bytes: number
  at: number
}

interface Conn extends Source {
  readonly ws: WebSocket
  /** Whether this node takes batches (it announced them at the upgrade). */
  readonly batchIn: boolean
  buckets: Buckets
  alive: boolean
  /** Packets for this node not sent yet (they go at the end of this event-loop turn), by sender. */
  pending: Map<Source, Buffer[]>
  pendingBytes: number
}

/** Connected nodes of one network, and its metric children (label lookups done once). */
interface Net {
  readonly id: string
  readonly nodes: Map<string, Conn>
  readonly bytes: {inc(n: number): void}
  readonly packets: {inc(n?: number): void}
  readonly held: {inc(n?: number): void}
  readonly dropped: Record<RelayDropReason, {inc(n?: number): void}>
}

const REASONS: readonly RelayDropReason[] = [
  'malformed',
  'rate',
  'unknown',
  'foreign',
  'backlog',
  'policy',
  'expired',
  'hold_full',
]

/** Packets held for one expected destination, oldest first. */
interface Held {
  readonly networkId: string
  readonly nodeId: string
  readonly packets: {readonly src: Source; readonly payload: Buffer; readonly at: number}[]
  bytes: number
}

const heldKey = (networkId: string, nodeId: string): string => `${networkId}\0${nodeId}`

const noLog: RelayLog = {warn: () => undefined, error: () => undefined}

export class RelayServer extends EventEmitter<{
  drop: [RelayDrop]
  connect: [RelayIdentity]
  disconnect: [RelayIdentity]
}> {
  readonly limits: RelayLimits
  readonly metrics: RelayMetrics
  private readonly wss: WebSocketServer
  private readonly nets = new Map<string, Net>()
  /** Node id -> number of networks it is connected in (to tell "foreign" from "unknown"). */
  private readonly connectedIds = new Map<string, number>()
  private readonly now: () => number
  private readonly clock: Clock
  private readonly log: RelayLog
  private readonly pinger: NodeJS.Timeout
  private closing = false
  /** Receivers with packets queued this turn, and the flush that sends them. */
  private readonly dirty = new Set<Conn>()
  private flushHandle: NodeJS.Immediate | undefined = undefined
  /** Senders on other relays (deliver()), by network and node; bounded (cleared when full). */
  private readonly remoteSources = new Map<string, Source>()
  private readonly unsubscribeRemovals: () => void
  /**
   * Packets held for expected destinations with no socket yet, by (network, node); owned by the
   * relay's event handlers. Bounded by limits.hold*; the timer drops what expired.
   */
  private readonly held = new Map<string, Held>()
  private heldPackets = 0
  private heldBytes = 0
  private holdTimer: TimerHandle | undefined = undefined

  constructor(private readonly opts: RelayServerOptions) {
    super()
    this.limits = {...DEFAULT_RELAY_LIMITS, ...opts.limits}
    this.metrics = opts.metrics ?? new RelayMetrics()
    this.clock = opts.clock ?? systemClock
    this.now = opts.now ?? (() => this.clock.now())
    this.log = opts.log ?? noLog
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: relayMaxMessageBytes(this.limits.maxPayload),
    })
    // Tell a client that announced batches that this relay takes and sends them.
    this.wss.on('headers', (headers, req) => {
      if (req.headers[RELAY_BATCH_HEADER] === '1') headers.push(`${RELAY_BATCH_HEADER}: 1`)
    })
    this.pinger = setInterval(() => this.pingAll(), opts.pingIntervalMs ?? 30_000)
    this.pinger.unref()
    this.unsubscribeRemovals =
      opts.removals?.((r) => {
        this.dropHeld(heldKey(r.networkId, r.nodeId), 'unknown')
        this.disconnect(r.nodeId, {networkId: r.networkId})
      }) ?? (() => undefined)
  }

  /** Every connected node (for heartbeats and the mesh's presence). */
  connectedNodes(): RelayIdentity[] {
    const out: RelayIdentity[] = []
    for (const net of this.nets.values()) for (const conn of net.nodes.values()) out.push(conn.id)
    return out
  }

  /**
   * Hands packets that came from another relay to a node connected here. Never forwards them on
   * (no loops); false when the node is not connected here or its backlog is full (dropped and
   * counted against the sender's network).
   */
  deliver(networkId: string, srcNodeId: string, dstNodeId: string, payloads: Buffer[]): boolean {
    const dst = this.nets.get(networkId)?.nodes.get(dstNodeId)
    if (!dst || dst.ws.readyState !== dst.ws.OPEN || srcNodeId === dstNodeId) {
      this.net(networkId).dropped.unknown.inc(payloads.length)
      if (this.nets.get(networkId)?.nodes.size === 0) this.nets.delete(networkId)
      return false
    }
    if (this.opts.allowed?.(networkId, srcNodeId, dstNodeId) === false) {
      this.net(networkId).dropped.policy.inc(payloads.length)
      return false
    }
    const key = `${networkId}\0${srcNodeId}`
    let src = this.remoteSources.get(key)
    if (!src || src.net !== dst.net) {
      if (this.remoteSources.size >= 10_000) this.remoteSources.clear()
      src = {
        id: {networkId, nodeId: srcNodeId},
        net: dst.net,
        header: relayFrameHeader(srcNodeId),
        batchHeader: relayFrameHeader(srcNodeId, RELAY_FRAME_BATCH),
      }
      this.remoteSources.set(key, src)
    }
    this.queue(src, dst, payloads, payloads.length)
    return true
  }

  /** Open relay sockets. */
  get connections(): number {
    let n = 0
    for (const net of this.nets.values()) n += net.nodes.size
    return n
  }

  /** Whether a node has an open relay socket in a network. */
  isConnected(networkId: string, nodeId: string): boolean {
    return this.nets.get(networkId)?.nodes.has(nodeId) ?? false
  }

  /**
   * Takes over an HTTP upgrade on the relay path. The credential is `Authorization: Bearer`;
   * an invalid one gets a WebSocket close with RELAY_CLOSE.UNAUTHENTICATED.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const auth = req.headers.authorization ?? ''
    const credential = /^Bearer (\S{1,300})$/i.exec(auth)?.[1] ?? ''
    socket.on('error', () => socket.destroy())
    const authenticated =
      credential === ''
        ? Promise.resolve(undefined)
        : this.opts.authenticate(credential).catch((err: unknown) => {
            this.log.error({err}, 'relay authentication failed')
            return undefined
          })
    void authenticated.then((id) => {
      if (socket.destroyed) return
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        // First: an 'error' without a listener (oversize message, protocol violation) would
        // throw and take the controller down.
        ws.on('error', () => ws.terminate())
        if (this.closing) {
          ws.close(RELAY_CLOSE.SHUTTING_DOWN, 'shutting down')
          return
        }
        if (!id || !isRelayPeerId(id.nodeId)) {
          if (id) this.log.error({nodeId: id.nodeId}, 'relay: node id cannot travel in a frame')
          ws.close(RELAY_CLOSE.UNAUTHENTICATED, 'NODE_CREDENTIAL_INVALID')
          return
        }
        this.attach(ws, {nodeId: id.nodeId, networkId: id.networkId}, req.headers[RELAY_BATCH_HEADER] === '1')
      })
    })
  }

  private attach(ws: WebSocket, id: RelayIdentity, batchIn: boolean): void {
    const net = this.net(id.networkId)
    const old = net.nodes.get(id.nodeId)
    const conn: Conn = {
      ws,
      id,
      net,
      header: relayFrameHeader(id.nodeId),
      batchHeader: relayFrameHeader(id.nodeId, RELAY_FRAME_BATCH),
      batchIn,
      buckets: old
        ? old.buckets
        : {packets: this.limits.packetBurst, bytes: this.limits.byteBurst, at: this.now()},
      alive: true,
      pending: new Map(),
      pendingBytes: 0,
    }
    if (old) {
      this.detach(old)
      old.ws.close(RELAY_CLOSE.REPLACED, 'replaced by a newer session')
    }
    net.nodes.set(id.nodeId, conn)
    this.connectedIds.set(id.nodeId, (this.connectedIds.get(id.nodeId) ?? 0) + 1)
    this.metrics.connected.inc({network: id.networkId})
    ws.on('pong', () => {
      conn.alive = true
    })
    ws.on('close', () => this.detach(conn))
    ws.on('message', (data, isBinary) => this.onMessage(conn, data, isBinary))
    this.releaseHeld(id.networkId, id.nodeId)
    this.emit('connect', id)
  }

  /** Forgets a connection (idempotent: only the first call for a conn counts). */
  private detach(conn: Conn): void {
    const {net, id} = conn
    if (net.nodes.get(id.nodeId) !== conn) return
    net.nodes.delete(id.nodeId)
    const n = (this.connectedIds.get(id.nodeId) ?? 1) - 1
    if (n > 0) this.connectedIds.set(id.nodeId, n)
    else this.connectedIds.delete(id.nodeId)
    this.metrics.connected.dec({network: id.networkId})
    if (net.nodes.size === 0) this.nets.delete(net.id)
    this.emit('disconnect', id)
  }

  private net(networkId: string): Net {
    let net = this.nets.get(networkId)
    if (!net) {
      const labels = {network: networkId}
      const dropped = {} as Record<RelayDropReason, {inc(n?: number): void}>
      for (const reason of REASONS) dropped[reason] = this.metrics.dropped.labels({...labels, reason})
      net = {
        id: networkId,
        nodes: new Map(),
        bytes: this.metrics.bytes.labels(labels),
        packets: this.metrics.packets.labels(labels),
        held: this.metrics.held.labels(labels),
        dropped,
      }
      this.nets.set(networkId, net)
    }
    return net
  }

  private onMessage(conn: Conn, data: RawData, isBinary: boolean): void {
    // binaryType is 'nodebuffer': data is one Buffer, fragments already joined.
    const buf = data as Buffer
    if (!this.take(conn, buf.length)) return this.drop(conn, 'rate')
    if (!isBinary) return this.drop(conn, 'malformed')
    let msg: ReturnType<typeof decodeRelayMessage>
    try {
      msg = decodeRelayMessage(buf, {maxPayload: this.limits.maxPayload})
    } catch {
      return this.drop(conn, 'malformed')
    }
    const {peerId, payloads} = msg
    // The first packet paid before decoding; the others pay now, and those over budget drop.
    const n = 1 + this.takePackets(conn, payloads.length - 1)
    if (n < payloads.length) this.drop(conn, 'rate', payloads.length - n)
    // Before the mesh too: a packet the policy forbids goes nowhere.
    if (peerId !== conn.id.nodeId && this.opts.allowed?.(conn.id.networkId, conn.id.nodeId, peerId) === false)
      return this.drop(conn, 'policy', n)
    const dst = conn.net.nodes.get(peerId)
    if (!dst && peerId !== conn.id.nodeId && this.opts.forward?.(conn.id, peerId, payloads.slice(0, n)))
      return
    if (!dst && peerId !== conn.id.nodeId && this.opts.expected?.(conn.id.networkId, peerId) === true)
      return this.hold(conn, peerId, payloads, n)
    if (!dst || dst === conn)
      return this.drop(conn, this.connectedIds.has(peerId) && !dst ? 'foreign' : 'unknown', n)
    if (dst.ws.readyState !== dst.ws.OPEN) return this.drop(conn, 'unknown', n)
    this.queue(conn, dst, payloads, n)
  }

  /**
   * Holds the first `n` payloads from `src` for `dstNodeId` of the sender's network, which
   * `expected` vouched for (see "Held packets"). Over the destination's caps the oldest held
   * packets go; over the relay-wide caps the new ones are not held.
   */
  private hold(src: Conn, dstNodeId: string, payloads: Buffer[], n: number): void {
    const l = this.limits
    const k = heldKey(src.id.networkId, dstNodeId)
    let h = this.held.get(k)
    const now = this.clock.now()
    for (let i = 0; i < n; i++) {
      const payload = payloads[i]!
      if (
        payload.length > l.holdBytes ||
        this.heldPackets + 1 > l.holdTotalPackets ||
        this.heldBytes + payload.length > l.holdTotalBytes
      ) {
        this.drop(src, 'hold_full')
        continue
      }
      if (!h) this.held.set(k, (h = {networkId: src.id.networkId, nodeId: dstNodeId, packets: [], bytes: 0}))
      while (h.packets.length >= l.holdPackets || h.bytes + payload.length > l.holdBytes) {
        const old = h.packets.shift()!
        this.forgetHeld(h, old.payload.length)
        this.drop(old.src, 'hold_full')
      }
      // A copy: the payload is a view into the whole WebSocket message (a batch), which must not
      // be kept alive for one small packet; the caps count what is really held.
      h.packets.push({src, payload: Buffer.from(payload), at: now})
      h.bytes += payload.length
      this.heldPackets++
      this.heldBytes += payload.length
      src.net.held.inc()
    }
    this.holdTimer ??= this.clock.setTimeout(() => this.expireHeld(), l.holdMs)
  }

  private forgetHeld(h: Held, bytes: number): void {
    h.bytes -= bytes
    this.heldPackets--
    this.heldBytes -= bytes
  }

  /** Drops every packet held for a destination (key), counted as `reason`. */
  private dropHeld(k: string, reason: RelayDropReason): void {
    const h = this.held.get(k)
    if (!h) return
    this.held.delete(k)
    for (const p of h.packets) {
      this.forgetHeld(h, p.payload.length)
      this.drop(p.src, reason)
    }
  }

  /**
   * Sends what was held for a node that is now connected here (after attach) or on another
   * relay of the mesh (RelayMesh calls this when the node shows up there). The destination is
   * exactly the (network, node) the packets were held for; `allowed` was asked when they came.
   */
  releaseHeld(networkId: string, nodeId: string): void {
    const k = heldKey(networkId, nodeId)
    const h = this.held.get(k)
    if (!h) return
    const dst = this.nets.get(networkId)?.nodes.get(nodeId)
    if (dst && dst.ws.readyState !== dst.ws.OPEN) return
    this.held.delete(k)
    // Once per node that connects with packets waiting for it: bounded, and the sign that two
    // nodes came up at once (issue 7's first-ping case).
    this.log.info?.(
      {networkId, nodeId, packets: h.packets.length, waitedMs: this.clock.now() - h.packets[0]!.at},
      'relay: delivering packets held for a node that just connected',
    )
    for (const p of h.packets) {
      this.forgetHeld(h, p.payload.length)
      if (dst) this.queue(p.src, dst, [p.payload], 1)
      else if (!this.opts.forward?.(p.src.id, nodeId, [p.payload])) this.drop(p.src, 'unknown')
    }
  }

  /** Drops held packets older than holdMs ("expired"); re-arms for the oldest left. */
  private expireHeld(): void {
    this.holdTimer = undefined
    const now = this.clock.now()
    const holdMs = this.limits.holdMs
    let next = Infinity
    for (const [k, h] of this.held) {
      while (h.packets.length > 0 && now - h.packets[0]!.at >= holdMs) {
        const p = h.packets.shift()!
        this.forgetHeld(h, p.payload.length)
        this.drop(p.src, 'expired')
      }
      if (h.packets.length === 0) this.held.delete(k)
      else next = Math.min(next, h.packets[0]!.at + holdMs)
    }
    if (next !== Infinity) this.holdTimer = this.clock.setTimeout(() => this.expireHeld(), next - now)
  }

  /** What is held now, over all destinations (for tests and metrics). */
  get holding(): {destinations: number; packets: number; bytes: number} {
    return {destinations: this.held.size, packets: this.heldPackets, bytes: this.heldBytes}
  }

  /** Queues the first `n` payloads from `src` for `dst`, sent at the end of this turn. */
  private queue(src: Source, dst: Conn, payloads: Buffer[], n: number): void {
    if (dst.ws.bufferedAmount + dst.pendingBytes > this.limits.maxBacklogBytes)
      return this.drop(src, 'backlog', n)
    let list = dst.pending.get(src)
    if (!list) dst.pending.set(src, (list = []))
    for (let i = 0; i < n; i++) {
      list.push(payloads[i]!)
      dst.pendingBytes += payloads[i]!.length
    }
    this.dirty.add(dst)
    this.flushHandle ??= setImmediate(() => this.flush())
  }

  /**
   * Sends what this turn of the event loop queued, per receiver and sender: one batch per
   * RELAY_MAX_BATCH_BYTES to a node that takes batches, one data frame per packet to any other.
   * Messages read together (a socket read holds many) thus leave together, in fewer messages and
   * writes than arrived.
   */
  private flush(): void {
    this.flushHandle = undefined
    const dirty = [...this.dirty]
    this.dirty.clear()
    for (const dst of dirty) {
      const pending = dst.pending
      dst.pending = new Map()
      dst.pendingBytes = 0
      const open = dst.ws.readyState === dst.ws.OPEN && dst.net.nodes.get(dst.id.nodeId) === dst
      for (const [src, packets] of pending)
        if (open) this.send(dst, src, packets)
        else this.drop(src, 'unknown', packets.length)
    }
  }

  private send(dst: Conn, src: Source, packets: Buffer[]): void {
    let bytes = 0
    const maxPayload = this.limits.maxPayload
    const one = (p: Buffer) => dst.ws.send(Buffer.concat([src.header, p], src.header.length + p.length))
    if (!dst.batchIn) for (const p of packets) one(p)
    else {
      const idBytes = src.id.nodeId.length
      let chunk: Buffer[] = []
      let chunkBytes = 0
      const out = () => {
        if (chunk.length === 1) one(chunk[0]!)
        else if (chunk.length > 1)
          dst.ws.send(encodeRelayBatch(src.id.nodeId, chunk, {header: src.batchHeader, maxPayload}))
        chunk = []
        chunkBytes = 0
      }
      for (const p of packets) {
        if (
          chunk.length === RELAY_MAX_BATCH_PACKETS ||
          relayBatchBytes(idBytes, chunk.length + 1, chunkBytes + p.length) > RELAY_MAX_BATCH_BYTES
        )
          out()
        chunk.push(p)
        chunkBytes += p.length
      }
      out()
    }
    for (const p of packets) bytes += p.length
    src.net.packets.inc(packets.length)
    src.net.bytes.inc(bytes)
  }

  /** Takes one packet of `size` bytes from the sender's buckets; false when over either rate. */
  private take(conn: Conn, size: number): boolean {
    const b = conn.buckets
    const now = this.now()
    const elapsed = Math.max(0, now - b.at)
    b.at = now
    const l = this.limits
    b.packets = Math.min(l.packetBurst, b.packets + (elapsed * l.packetsPerSecond) / 1000)
    b.bytes = Math.min(l.byteBurst, b.bytes + (elapsed * l.bytesPerSecond) / 1000)
    if (b.packets < 1 || b.bytes < size) return false
    b.packets -= 1
    b.bytes -= size
    return true
  }

  /** Takes up to `count` more packets (bytes were paid with the message); how many it could. */
  private takePackets(conn: Conn, count: number): number {
    if (count <= 0) return 0
    const b = conn.buckets
    const n = Math.min(count, Math.floor(b.packets))
    b.packets -= n
    return n
  }

  private drop(conn: Source, reason: RelayDropReason, n = 1): void {
    if (n <= 0) return
    conn.net.dropped[reason].inc(n)
    if (this.listenerCount('drop') > 0)
      this.emit('drop', {networkId: conn.id.networkId, nodeId: conn.id.nodeId, reason})
  }

  /**
   * Closes a node's relay socket (RELAY_CLOSE.REVOKED by default): for a node removed from its
   * network. Without networkId, in every network it is connected in.
   */
  disconnect(nodeId: string, opts: {networkId?: string; code?: number; reason?: string} = {}): void {
    const nets = opts.networkId === undefined ? [...this.nets.values()] : [this.nets.get(opts.networkId)]
    for (const net of nets) {
      const conn = net?.nodes.get(nodeId)
      if (!conn) continue
      this.detach(conn)
      conn.ws.close(opts.code ?? RELAY_CLOSE.REVOKED, opts.reason ?? 'node removed')
    }
  }

  private pingAll(): void {
    for (const net of [...this.nets.values()])
      for (const conn of [...net.nodes.values()]) {
        if (!conn.alive) {
          this.detach(conn)
          conn.ws.terminate()
          continue
        }
        conn.alive = false
        conn.ws.ping()
      }
  }

  /** Closes every relay socket with 1001 (going away); sockets that do not close in 2 s are cut. */
  async close(): Promise<void> {
    this.closing = true
    this.unsubscribeRemovals()
    clearInterval(this.pinger)
    if (this.flushHandle !== undefined) clearImmediate(this.flushHandle)
    this.flushHandle = undefined
    this.dirty.clear()
    if (this.holdTimer !== undefined) this.clock.clearTimeout(this.holdTimer)
    this.holdTimer = undefined
    for (const k of [...this.held.keys()]) this.dropHeld(k, 'unknown')
    const closed: Promise<void>[] = []
    for (const net of [...this.nets.values()])
      for (const conn of [...net.nodes.values()]) {
        closed.push(
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              conn.ws.terminate()
              resolve()
            }, 2000)
            timer.unref()
            conn.ws.once('close', () => {
              clearTimeout(timer)
              resolve()
            })
            conn.ws.close(RELAY_CLOSE.SHUTTING_DOWN, 'relay shutting down')
          }),
        )
      }
    await Promise.all(closed)
    this.wss.close()
  }
}
