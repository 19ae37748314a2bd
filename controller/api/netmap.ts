/**
 * The netmap WebSocket (WS /api/v1/netmap): one session per connected node, a full map first and
 * then deltas, resumable by version.
 *
 * Cost model, for 5,000 connected nodes in one network:
 *  - Each network with connected nodes has one in-memory NetState: every node, and the JSON of
 *    every ACTIVE node as a peer, serialized once when it changes.
 *  - A full map is a string join of those cached peer strings (minus self).
 *  - One node change produces one delta, serialized and encoded ONCE, and the same bytes are
 *    written to every connected active node: O(1) bytes per receiver, O(n) sends in total.
 *  - A node that reconnects with ?version=N gets the ids changed since N from the store's change
 *    log (upserts for active peers, removals for the rest), or a full map when the log does not
 *    reach back to N or when its own entry changed.
 *
 * Version gaps: the cache of a network applies a change as a delta only when its version is the
 * cached version + 1. A change feed that spans replicas may miss or reorder changes
 * (change-feed.ts), so a change further ahead means the cache missed something: the hub reloads
 * that network from the store and sends each connected node what differs (a full map when its
 * own entry changed, else one delta with every changed and removed peer). Changes at or below
 * the cached version are stale and dropped.
 *
 * ACL policy (issue 10, netmap-classes.ts): each node is in a visibility class, computed from the
 * node alone; nodes of one class see the same peers with the same inbound rules. A network's
 * cache keeps one view per class it has served since its last (re)load (the peers that class
 * sees, as their entry JSON) and its encoded peer list, and a node change produces one delta per
 * receiving class (added to classes that see the node only now, removed from those that saw it
 * before only, changed for the rest that see it): O(classes) encodings, O(1) bytes per receiver.
 * Without a policy there is exactly one class and everything above is byte for byte as before.
 * A policy change (change feed: onPolicyChange) reloads each loaded network of the tenant like a
 * gap does: each connected node is told the difference between its view before and after, one
 * encoding per (class before, class after), and a node whose view did not change gets nothing.
 * An OIDC login that changes someone's IdP groups (which `oidc:` members of policy groups match)
 * is told as a policy change of their tenant, on every replica, and goes the same way.
 * A node never gets an entry for a peer its class does not see: full maps, deltas, reloads and
 * resumes all read the node's class view; reports about peers it does not see are ignored; the
 * built-in relay asks relayAllowed() before it forwards.
 *
 * Replicas: the cache and the sessions are per replica (a node's sessions live where its socket
 * landed); everything in them is rebuilt from the store, and kept current by the change feed.
 * The peer links nodes report are per replica too: the node reports over its own session.
 */
import type {IncomingMessage} from 'node:http'
import type {Duplex} from 'node:stream'
import type {Logger} from 'pino'
import {WebSocketServer, type WebSocket} from 'ws'
import {formatEndpoint, isEndpoint, parseUsableEndpoint, usableEndpoints} from '../../shared/net/endpoint.js'
import {LIMITS} from '../../shared/protocol/control-api.js'
import {
  CLOSE,
  ClientFrameSchema,
  NETMAP_GZIP,
  type NatServices,
  type Peer,
  type PeerPath,
  type PeerReport,
  type Self,
} from '../../shared/protocol/netmap.js'
import type {ControllerMetrics} from '../metrics.js'
import type {Auth} from '../auth/auth.js'
import type {ChangeFeed} from '../change-feed.js'
import type {ConnectionTracker} from '../connections.js'
import type {Presence} from '../presence.js'
import type {EndpointTelemetry} from '../telemetry.js'
import type {NodeChange, StoredNode} from '../store/store.js'
import {keyExpired} from '../domain/nodes.js'
import type {NetmapSource} from '../netmap-source.js'
import {MeshError} from '../../shared/errors.js'
import {rawErrorResponse} from './raw-response.js'
import {PeerListGzip, storedGzipMember} from './netmap-gzip.js'
import {MAX_SESSIONS_PER_NODE, SessionRateLimiter} from './session-limit.js'
import {prebuiltTextFrame, sendPrebuilt, type PrebuiltFrame} from './ws-frame.js'
import {storageError, StorageFailureLog} from '../store/errors.js'
import {every, type Clock, type TimerHandle} from '../../shared/clock.js'
import {NO_POLICY_CLASS} from '../../shared/policy/index.js'
import {
  classOf,
  diffViews,
  netPolicy,
  OPEN_POLICY,
  peerEntry,
  samePolicy,
  viewOf,
  type NetPolicy,
} from './netmap-classes.js'

/** A socket whose unsent backlog exceeds this is too slow to keep up: dropped, it will resume. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024
/**
 * Peer-list bytes one policy reload may gzip on the event loop when a class's list is too big for
 * PeerListGzip's inline gzip (netmap-gzip.ts): 8 MB is about 100 ms at level 1 (2.3 MB in 28 ms).
 */
const RELOAD_GZIP_BYTES = 8 * 1024 * 1024
/** Last-seen is written on connect/disconnect and at most this often from reports. */
const TOUCH_EVERY_MS = 60_000
/**
 * Client frames per socket: a burst of REPORT_BURST, then REPORT_RATE per second sustained. A
 * daemon reports every 10 s and on config changes, far below this. Excess frames are dropped,
 * not answered with a close: a close would cost a reconnect, presence events and a full map,
 * more than the frames themselves. The newest dropped frame is kept (one per socket) and handled
 * when the budget allows, so a flood still ends with the node's last report applied.
 */
const REPORT_RATE = 20
const REPORT_BURST = 40

interface Conn {
  readonly ws: WebSocket
  readonly nodeId: string
  /** The node accepts full maps as gzip (NETMAP_GZIP). */
  readonly gzip: boolean
  alive: boolean
  lastTouch: number
  /** Token bucket of client frames (see REPORT_RATE). */
  tokens: number
  tokensAt: number
  /** The newest frame dropped by the rate limit, handled once a token is back. */
  held: {data: unknown; isBinary: boolean} | undefined
  heldTimer: TimerHandle | undefined
}

interface NetState {
  readonly id: string
  /** Filled in by the initial load. */
  tenantId: string
  /** JSON of {id, name, cidr}. */
  headerJson: string
  version: number
  /** The version the initial load read: changes up to it are in the cache already. */
  loadedVersion: number
  readonly nodes: Map<string, StoredNode>
  /** Peer JSON of active nodes only (each node's own JSON, without inbound rules). */
  readonly peerJson: Map<string, string>
  /** The tenant's policy as of the last (re)load or policy change; OPEN_POLICY when none. */
  policy: NetPolicy
  /** Every node's visibility class under `policy` (NO_POLICY_CLASS for all when open). */
  readonly classes: Map<string, string>
  /**
   * The views of classes whose nodes were sent a full map since the last (re)load, built on
   * first use (see view()). Open policy: the one view's peers ARE `peerJson` (the same map).
   */
  views: Map<string, ClassView>
  /**
   * A session resuming from this netmap version or older may hold a view of an older policy:
   * it gets a full map. 0 when the hub knows of no policy change (open policy since the load).
   */
  policySince: number
  /** A policy change was told while the network was loading: read it again once loaded. */
  policyStale: boolean
  /** Owner ids missing from `policy.owners` that made the hub read the user names again. */
  readonly askedOwners: Set<string>
  readonly conns: Map<string, Set<Conn>>
  /**
   * What each connected node reports about its peers (reporter id -> peer id -> link). Only
   * online links to other active nodes of this network are kept (an offline entry removes the
   * link), so it grows with the pairs that really talk, not with nodes², and a node cannot fill
   * it with made-up ids.
   */
  readonly links: Map<string, Map<string, PeerLink>>
  /** Set while the initial load runs; changes meanwhile are queued and applied after. */
  loading: Promise<void> | null
  queued: NodeChange[]
}

/** What one visibility class sees: its peers' entries, and their encodings for full maps. */
interface ClassView {
  /** Peer id -> entry JSON (netmap-classes.ts peerEntry), in the order of the network's peers. */
  readonly peers: Map<string, string>
  /** Every entry joined once, rebuilt lazily after a change; see peerBlob(). */
  peerList: PeerBlob | null
  /** peerList gzipped for nodes that accept compressed full maps (netmap-gzip.ts). */
  readonly peerGzip: PeerListGzip
}

/** A node's view of one peer, from its reports. */
export interface PeerLink {
  online: boolean
  /** The endpoint the node's WireGuard uses for the peer; null when none or unusable. */
  endpoint: string | null
  /** The path the node uses for the peer; absent from meshd older than the relay. */
  path?: PeerPath
  /** Round trip in ms on `path`; absent when not measured. */
  latencyMs?: number
}

export const toPeer = (n: StoredNode): Peer => {
  // Stored before endpoints were checked one by one, a bad one must still not reach peers.
  const peer: Peer = {
    id: n.id,
    name: n.name,
    publicKey: n.publicKey,
    address: n.address,
    endpoints: usableEndpoints(n.endpoints).endpoints,
    hostname: n.hostname,
    os: n.os,
    tags: n.tags,
  }
  // The observed mapping is stored as seen (a loopback or link-local source included): only a
  // usable one reaches peers.
  const observed = parseUsableEndpoint(n.observedEndpoint)
  if (observed) peer.observedEndpoint = formatEndpoint(observed)
  // What the node's netcheck last measured, as it reported it (stored: controller/telemetry.ts).
  if (n.nat) peer.nat = {mapping: n.nat.mapping, filtering: n.nat.filtering}
  return peer
}
export const toSelf = (n: StoredNode): Self => ({
  id: n.id,
  name: n.name,
  publicKey: n.publicKey,
  address: n.address,
  status: n.status,
  ...selfObserved(n.observedEndpoint),
  keyExpiresAt: n.keyExpiresAt ?? null,
})

/**
 * Null when nothing was observed (meshd then knows its UDP does not get out); absent when what
 * was observed is no usable endpoint (say loopback, for a node beside the controller), which
 * says nothing about the node's UDP.
 */
const selfObserved = (text: unknown): {observedEndpoint?: string | null} => {
  if (typeof text !== 'string') return {observedEndpoint: null}
  const ep = parseUsableEndpoint(text)
  return ep ? {observedEndpoint: formatEndpoint(ep)} : {}
}

/** What the hub takes from the rest of the controller, each part narrowed to what it calls. */
export interface NetmapHubDeps {
  /** Time and timers (rate limits, ping rounds). */
  readonly clock: Clock
  readonly auth: Pick<Auth, 'authenticateNode'>
  readonly presence: Pick<Presence, 'connected' | 'disconnected' | 'touch'>
  readonly telemetry: Pick<EndpointTelemetry, 'reportEndpoints' | 'reportNat'>
  readonly feed: Pick<ChangeFeed, 'onNodeChange' | 'onNetworkChange' | 'onPolicyChange'>
  readonly connections: Pick<ConnectionTracker, 'forgetReporter' | 'resetReporter' | 'report' | 'forgetNode'>
  readonly source: NetmapSource
}

/** The active peers' JSON joined with commas, and where each peer's entry lies in it. */
export interface PeerBlob {
  readonly bytes: Buffer
  /** Byte range [start, end) of each peer's JSON in `bytes`. */
  readonly ranges: ReadonlyMap<string, readonly [number, number]>
}

export function peerBlob(peerJson: ReadonlyMap<string, string>): PeerBlob {
  const parts: Buffer[] = []
  const ranges = new Map<string, [number, number]>()
  let at = 0
  for (const [id, json] of peerJson) {
    if (parts.length > 0) {
      parts.push(COMMA)
      at += 1
    }
    const b = Buffer.from(json)
    ranges.set(id, [at, at + b.length])
    parts.push(b)
    at += b.length
  }
  return {bytes: Buffer.concat(parts, at), ranges}
}
const COMMA = Buffer.from(',')

/** The blob's peers without `id`'s entry (and one comma beside it), as views into the blob. */
export function peersExcept(blob: PeerBlob, id: string): Buffer[] {
  const own = blob.ranges.get(id)
  if (!own) return [blob.bytes]
  const [start, end] = own
  if (start === 0) return [blob.bytes.subarray(Math.min(blob.bytes.length, end + 1))]
  return [blob.bytes.subarray(0, start - 1), blob.bytes.subarray(end)]
}

const REVOKED_FRAME = JSON.stringify({type: 'revoked', reason: 'the node was removed from the network'})

export class NetmapHub {
  private readonly wss: WebSocketServer
  private readonly nets = new Map<string, NetState>()
  /** Time and timers (rate limits, ping rounds). */
  private readonly clock: Clock
  private readonly stopPinger: () => void
  private readonly unsubscribe: () => void
  private closing = false
  /** New sessions per node credential; see session-limit.ts. */
  private readonly sessionLimit: SessionRateLimiter
  private readonly storageLog: StorageFailureLog
  /** The controller's NAT services; its relay list changes as stand-alone relays come and go. */
  private readonly nat: NatServices | undefined
  /** `,"nat":{...}` for full maps ('' when none), made again when `nat.relays` is replaced. */
  private natCache: {relays: unknown; json: string} | undefined
  /** Whether the NAT services changed since start: resumed sessions then get them too. */
  private natAnnounced = false

  constructor(
    private readonly deps: NetmapHubDeps,
    private readonly metrics: ControllerMetrics,
    private readonly log: Logger,
    opts: {pingIntervalMs?: number | undefined; nat?: NatServices | undefined} = {},
  ) {
    const clock = (this.clock = deps.clock)
    this.nat = opts.nat
    this.sessionLimit = new SessionRateLimiter(undefined, undefined, () => clock.now())
    this.storageLog = new StorageFailureLog(log, undefined, () => clock.now())
    this.wss = new WebSocketServer({noServer: true, maxPayload: LIMITS.maxFrameBytes, clientTracking: false})
    const offNodes = deps.feed.onNodeChange((c) => this.onChange(c))
    const offNetworks = deps.feed.onNetworkChange((n) => {
      const net = this.nets.get(n.id)
      if (net && !net.loading) net.headerJson = JSON.stringify({id: n.id, name: n.name, cidr: n.cidr})
    })
    const offPolicies = deps.feed.onPolicyChange((tenantId) => this.onPolicyChange(tenantId))
    this.unsubscribe = () => {
      offNodes()
      offNetworks()
      offPolicies()
    }
    this.stopPinger = every(clock, opts.pingIntervalMs ?? 30_000, () => this.pingAll())
  }

  private natJson(): string {
    const nat = this.nat
    if (nat === undefined) return ''
    const cached = this.natCache
    if (cached !== undefined && cached.relays === nat.relays) return cached.json
    const json = `,"nat":${JSON.stringify(nat)}`
    this.natCache = {relays: nat.relays, json}
    return json
  }

  /**
   * Tells every connected node the NAT services again (`nat` in a delta without peers, at the
   * network's current version): for when stand-alone relays came or went. Rare, so one small
   * frame per node is fine; nodes of a network still loading get them with their full map.
   */
  announceNat(): void {
    this.natAnnounced = true
    const nat = this.natJson()
    if (nat === '') return
    for (const net of this.nets.values()) {
      if (net.loading) continue
      const frame = `{"type":"delta","version":${net.version}${nat}}`
      for (const set of net.conns.values()) for (const conn of set) this.send(conn, frame, 'delta')
    }
  }

  /** Number of open node sockets. */
  get connections(): number {
    let n = 0
    for (const net of this.nets.values()) for (const set of net.conns.values()) n += set.size
    return n
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): void {
    const auth = req.headers.authorization ?? ''
    const credential = /^Bearer (\S{1,300})$/i.exec(auth)?.[1] ?? ''
    const versionText = url.searchParams.get('version')
    const resumeFrom =
      versionText !== null && /^\d{1,15}$/.test(versionText) ? Number(versionText) : undefined
    const gzip = url.searchParams.get(NETMAP_GZIP.param) === NETMAP_GZIP.value
    socket.on('error', () => socket.destroy())
    void this.deps.auth
      .authenticateNode(credential)
      .catch((err: unknown) => {
        this.log.error({err}, 'netmap authentication failed')
        return undefined
      })
      .then((node) => {
        if (socket.destroyed) return
        const retryAfter = node && !this.closing ? this.sessionLimit.take(node.id) : 0
        if (retryAfter > 0) {
          // Before the upgrade: a refused session costs no WebSocket and no full map.
          const error = new MeshError('RATE_LIMITED', {
            message: 'too many new netmap sessions for this node',
            hint: 'one meshd per node; it reconnects by itself',
          })
          socket.end(rawErrorResponse(error, `Retry-After: ${retryAfter}\r\n`))
          return
        }
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          // First: an 'error' without a listener (an oversize frame, a protocol violation)
          // would throw and take the whole controller down.
          ws.on('error', () => ws.terminate())
          if (!node || this.closing) {
            ws.close(
              this.closing ? CLOSE.SHUTTING_DOWN : CLOSE.UNAUTHENTICATED,
              this.closing ? 'shutting down' : 'NODE_CREDENTIAL_INVALID',
            )
            return
          }
          // An expired key is refused at once, before the sweep has disabled the node.
          if (keyExpired(node, this.clock.now())) {
            ws.close(CLOSE.KEY_EXPIRED, 'NODE_KEY_EXPIRED')
            return
          }
          this.attach(ws, node, resumeFrom, gzip).catch((err: unknown) => {
            this.log.error({err, nodeId: node.id}, 'netmap session failed')
            ws.terminate()
          })
        })
      })
  }

  private async attach(
    ws: WebSocket,
    node: StoredNode,
    resumeFrom: number | undefined,
    gzip: boolean,
  ): Promise<void> {
    ws.on('error', () => ws.terminate())
    const net = await this.netState(node.networkId)
    if (!net || ws.readyState !== ws.OPEN) {
      ws.close(CLOSE.REVOKED, 'network gone')
      return
    }
    const conn: Conn = {
      ws,
      nodeId: node.id,
      gzip,
      alive: true,
      lastTouch: this.clock.now(),
      tokens: REPORT_BURST,
      tokensAt: this.clock.now(),
      held: undefined,
      heldTimer: undefined,
    }
    let set = net.conns.get(node.id)
    if (!set) net.conns.set(node.id, (set = new Set()))
    set.add(conn)
    // At most MAX_SESSIONS_PER_NODE: the oldest (first in insertion order) make way.
    for (const old of set) {
      if (set.size <= MAX_SESSIONS_PER_NODE) break
      set.delete(old)
      old.ws.close(CLOSE.REPLACED, 'replaced by a newer session')
    }
    this.metrics.connectedNodes.inc()
    ws.on('pong', () => {
      conn.alive = true
    })
    ws.on('close', () => {
      if (conn.heldTimer) this.clock.clearTimeout(conn.heldTimer)
      conn.held = undefined
      const s = net.conns.get(node.id)
      s?.delete(conn)
      if (s && s.size === 0) {
        net.conns.delete(node.id)
        net.links.delete(node.id)
        // Not at shutdown: every session closing then is no news about any pair.
        if (!this.closing) this.deps.connections.forgetReporter(net.id, node.id)
      }
      this.metrics.connectedNodes.dec()
      // Only this cache: a reload that failed (or found the network gone) may have replaced it.
      if (net.conns.size === 0 && !net.loading && this.nets.get(net.id) === net) this.nets.delete(net.id)
      // At shutdown the store closes right after the sockets: presence gives up its rows itself
      // (SharedPresence.close), and a write now would only fail on a closed pool.
      if (this.closing) return
      void this.deps.presence.disconnected(node, net.tenantId).catch((err: unknown) => {
        if (!this.storageFailure(err)) this.log.warn({err, nodeId: node.id}, 'presence update failed')
      })
    })
    ws.on('message', (data, isBinary) => this.limitFrame(conn, node, data, isBinary))
    // A full or read-only disk loses the last-seen time, not the node's netmap (it is in memory).
    await this.deps.presence.connected(node, net.tenantId).catch((err: unknown) => {
      if (!this.storageFailure(err)) throw err
    })
    await this.sendInitial(net, conn, resumeFrom)
  }

  /** Logs a storage failure (full disk) once per 10 s without a stack; false for anything else. */
  private storageFailure(err: unknown): boolean {
    const error = storageError(err)
    if (error) this.storageLog.report(error, 'netmap presence')
    return error !== undefined
  }

  /** The first frame: a full map, or what changed since the version the node already has. */
  private async sendInitial(net: NetState, conn: Conn, resumeFrom: number | undefined): Promise<void> {
    const self = net.nodes.get(conn.nodeId)
    if (!self) {
      this.revoke(conn)
      return
    }
    // A policy change is no row of the change log: a node that may hold a view of an older
    // policy gets a full map (policySince is 0 while the hub knows of none).
    if (resumeFrom !== undefined && self.status === 'active' && resumeFrom > net.policySince) {
      const since = await this.deps.source.changesSince(net.id, resumeFrom)
      // The await let changes (and a policy reload) in: the view is taken after it.
      if (since && !since.nodeIds.includes(self.id) && net.nodes.get(self.id) === self && !net.loading) {
        // Only peers its class sees; every other changed id is told as removed (it may have
        // seen it under its class before).
        const peers = this.view(net, this.classOfId(net, self.id)).peers
        const changed: string[] = []
        const removed: string[] = []
        for (const id of since.nodeIds) {
          const json = peers.get(id)
          if (json !== undefined) changed.push(json)
          else removed.push(JSON.stringify(id))
        }
        const version = Math.max(since.version, net.version)
        let frame = `{"type":"delta","version":${version}`
        if (changed.length > 0) frame += `,"changed":[${changed.join(',')}]`
        if (removed.length > 0) frame += `,"removed":[${removed.join(',')}]`
        // The NAT services may have changed meanwhile, once stand-alone relays came or went.
        this.send(conn, frame + (this.natAnnounced ? this.natJson() : '') + '}', 'delta')
        return
      }
    }
    this.sendFull(conn, net, self)
  }

  /**
   * A full map as the chunks of one message: its head, the network's shared peer bytes around
   * the node's own entry, and its tail. The peer list is encoded once per change of the peer
   * set and sent by reference to every node (send() writes the chunks as fragments of one
   * WebSocket message), so a cold start of N nodes costs O(N) encoding, not O(N²), and the
   * queued maps share one buffer instead of holding a copy each.
   */
  private sendFull(conn: Conn, net: NetState, self: StoredNode): void {
    const head = Buffer.from(
      `{"type":"full","version":${net.version},"network":${net.headerJson},"self":${JSON.stringify(toSelf(self))},"peers":[`,
    )
    const tail = Buffer.from(`]${this.natJson()}}`)
    if (self.status !== 'active') {
      this.send(conn, [head, tail], 'full')
      return
    }
    // The peers of the node's class, encoded once per class.
    const view = this.view(net, this.classOfId(net, self.id))
    const list = (view.peerList ??= peerBlob(view.peers))
    // Compressed: the same gzipped list for every node of the class, own entry included (the
    // node drops it).
    const gzipped = conn.gzip ? view.peerGzip.get(list) : undefined
    if (gzipped) {
      this.metrics.netmapGzipFull.inc()
      this.send(conn, [storedGzipMember(head), gzipped, storedGzipMember(tail)], 'full', true)
    } else this.send(conn, [head, ...peersExcept(list, self.id), tail], 'full')
  }

  /** The per-socket rate limit in front of onFrame; see REPORT_RATE. */
  private limitFrame(conn: Conn, node: StoredNode, data: unknown, isBinary: boolean): void {
    const now = this.clock.now()
    conn.tokens = Math.min(REPORT_BURST, conn.tokens + ((now - conn.tokensAt) * REPORT_RATE) / 1000)
    conn.tokensAt = now
    if (conn.tokens >= 1 && !conn.held) {
      conn.tokens -= 1
      this.onFrame(conn, node, data, isBinary)
      return
    }
    if (conn.held) this.metrics.netmapFramesDropped.inc()
    else this.log.debug({nodeId: node.id}, 'netmap frames over the rate limit; dropping')
    conn.held = {data, isBinary}
    if (conn.heldTimer) return
    const waitMs = Math.ceil(((1 - conn.tokens) * 1000) / REPORT_RATE)
    conn.heldTimer = this.clock.setTimeout(() => {
      conn.heldTimer = undefined
      const held = conn.held
      conn.held = undefined
      if (held && conn.ws.readyState === conn.ws.OPEN) this.limitFrame(conn, node, held.data, held.isBinary)
    }, waitMs)
  }

  private onFrame(conn: Conn, node: StoredNode, data: unknown, isBinary: boolean): void {
    let parsed: unknown
    try {
      parsed = isBinary ? undefined : JSON.parse(String(data))
    } catch {
      parsed = undefined
    }
    const frame = ClientFrameSchema.safeParse(parsed)
    if (!frame.success) {
      conn.ws.close(CLOSE.BAD_FRAME, 'invalid frame')
      return
    }
    if (frame.data.reset || frame.data.peers)
      this.applyLinks(node, frame.data.reset === true, frame.data.peers ?? [])
    // Stored with the node (coalesced there): a change reaches peers as a node change.
    if (frame.data.nat !== undefined) {
      void this.deps.telemetry
        .reportNat(node, frame.data.nat)
        .catch((err: unknown) => this.log.warn({err, nodeId: node.id}, 'NAT behaviour report failed'))
    }
    const now = this.clock.now()
    const current = this.nets.get(node.networkId)?.nodes.get(node.id) ?? node
    if (frame.data.endpoints !== undefined) {
      conn.lastTouch = now
      void this.deps.telemetry
        .reportEndpoints(current, frame.data.endpoints)
        .catch((err: unknown) => this.log.warn({err, nodeId: node.id}, 'endpoint report failed'))
    } else if (now - conn.lastTouch > TOUCH_EVERY_MS) {
      conn.lastTouch = now
      void this.deps.presence.touch(node.id).catch(() => undefined)
    }
  }

  private peerJsonOf(n: StoredNode): string {
    return JSON.stringify(toPeer(n))
  }

  /** The class of node `id` in `net` (NO_POLICY_CLASS when open or unknown). */
  private classOfId(net: NetState, id: string): string {
    return net.policy.open ? NO_POLICY_CLASS : (net.classes.get(id) ?? NO_POLICY_CLASS)
  }

  /** Whether nodes `a` and `b` of `net` see each other under its policy (true when open). */
  private visible(net: NetState, a: string, b: string): boolean {
    if (net.policy.open) return true
    const ca = net.classes.get(a)
    const cb = net.classes.get(b)
    return ca !== undefined && cb !== undefined && net.policy.compiled.sees(ca, cb)
  }

  /** The view of class `cls` in `net`, built from the cache on first use. */
  private view(net: NetState, cls: string): ClassView {
    let v = net.views.get(cls)
    if (!v) {
      const peers = net.policy.open ? net.peerJson : viewOf(net.policy, cls, net.peerJson, net.classes)
      v = {peers, peerList: null, peerGzip: new PeerListGzip(() => this.clock.now())}
      net.views.set(cls, v)
    }
    return v
  }

  /**
   * Whether the built-in relay may carry packets from `src` to `dst` of `networkId`: both are
   * active nodes of a network this replica holds, and they see each other under its policy.
   * Undefined when this replica holds no cache of the network (no session of it here), so only
   * the caller can decide (controller/main.ts lets it through: see there why).
   */
  relayAllowed(networkId: string, src: string, dst: string): boolean | undefined {
    const net = this.nets.get(networkId)
    if (!net || net.loading) return undefined
    // No policy: the relay decides alone, as before policies existed.
    if (net.policy.open) return true
    if (net.nodes.get(src)?.status !== 'active' || net.nodes.get(dst)?.status !== 'active') return false
    return this.visible(net, src, dst)
  }

  /**
   * Whether `nodeId` is an active node of `networkId` as this replica's cache holds it: the
   * built-in relay holds packets briefly for such a node while it has no relay socket yet
   * (controller/relay/server.ts, "Held packets"). False when the network is not cached here.
   */
  relayExpected(networkId: string, nodeId: string): boolean {
    const net = this.nets.get(networkId)
    return net !== undefined && !net.loading && net.nodes.get(nodeId)?.status === 'active'
  }

  /** Forgets what nodes reported about peers they no longer see (after a class or policy change). */
  private dropInvisibleLinks(net: NetState): void {
    if (net.policy.open) return
    for (const [reporter, links] of net.links)
      for (const id of links.keys())
        if (!this.visible(net, reporter, id)) {
          links.delete(id)
          this.deps.connections.report(net, reporter, id, {online: false, endpoint: null})
        }
  }

  /**
   * Takes a node's report about its peers: entries for ids that are not other active nodes of
   * its network are ignored; an endpoint that does not parse is kept as null.
   */
  private applyLinks(node: StoredNode, reset: boolean, peers: readonly PeerReport[]): void {
    const net = this.nets.get(node.networkId)
    if (!net) return
    if (reset) {
      net.links.delete(node.id)
      this.deps.connections.resetReporter(net.id, node.id)
    }
    if (peers.length === 0) return
    this.metrics.reportedPeers.inc(peers.length)
    let links = net.links.get(node.id)
    if (!links) net.links.set(node.id, (links = new Map()))
    for (const p of peers) {
      // Reports about peers its class does not see are ignored like made-up ids: the node cannot
      // learn of them here, nor make the controller record a pair the policy forbids.
      if (p.id === node.id || net.nodes.get(p.id)?.status !== 'active' || !this.visible(net, node.id, p.id))
        continue
      const endpoint = p.endpoint !== null && isEndpoint(p.endpoint) ? p.endpoint : null
      const link: PeerLink = {online: p.online, endpoint}
      if (p.path !== undefined) link.path = p.path
      if (p.latencyMs !== undefined) link.latencyMs = p.latencyMs
      // Offline: the link ends here (meshd reports only peers with a handshake, and an offline
      // entry once when one goes), so memory follows live pairs even if an old meshd sends all.
      if (link.online) links.set(p.id, link)
      else links.delete(p.id)
      // Coalesced there: a report that changes nothing costs no write.
      this.deps.connections.report(net, node.id, p.id, link)
    }
  }

  /**
   * The peers a connected node last reported online (peer id -> link); empty when the node has
   * no open session. A peer that is absent is offline as far as the node said.
   */
  peerLinks(networkId: string, nodeId: string): ReadonlyMap<string, PeerLink> {
    const net = this.nets.get(networkId)
    const links = net?.links.get(nodeId)
    if (!net || !links) return new Map()
    const out = new Map<string, PeerLink>()
    for (const [id, link] of links)
      if (net.nodes.get(id)?.status === 'active' && this.visible(net, nodeId, id)) out.set(id, link)
    return out
  }

  /** The NetState of a network, loading it on first use; undefined when the network is gone. */
  private async netState(networkId: string): Promise<NetState | undefined> {
    let net = this.nets.get(networkId)
    if (!net) {
      const created: NetState = {
        id: networkId,
        tenantId: '',
        headerJson: '',
        version: 0,
        loadedVersion: 0,
        nodes: new Map(),
        peerJson: new Map(),
        policy: OPEN_POLICY,
        classes: new Map(),
        views: new Map(),
        policySince: 0,
        policyStale: false,
        askedOwners: new Set(),
        conns: new Map(),
        links: new Map(),
        loading: null,
        queued: [],
      }
      net = created
      this.nets.set(networkId, created)
      created.loading = this.load(created).finally(() => this.loaded(created))
    }
    if (net.loading) {
      try {
        await net.loading
      } catch (err) {
        if (this.nets.get(networkId) === net) this.nets.delete(networkId)
        throw err
      }
    }
    if (net.headerJson === '') {
      if (this.nets.get(networkId) === net && net.conns.size === 0) this.nets.delete(networkId)
      return undefined
    }
    return net
  }

  private async load(net: NetState): Promise<void> {
    // Version first, nodes second: the snapshot is at least as new as the version, and queued
    // changes newer than the version are re-applied (upserts and removals are idempotent).
    const snap = await this.deps.source.netmapSnapshot(net.id)
    if (!snap) return
    const {network: info, version, nodes} = snap
    net.tenantId = info.tenantId
    net.headerJson = JSON.stringify({id: info.id, name: info.name, cidr: info.cidr})
    net.version = version
    net.loadedVersion = version
    net.policy = netPolicy(snap.policy, snap.owners, snap.ownerGroups)
    this.policyWarn(net)
    // Unknown history: whoever resumes from before the load may hold an older policy's view.
    net.policySince = net.policy.open ? 0 : version
    for (const n of nodes) {
      net.nodes.set(n.id, n)
      net.classes.set(n.id, classOf(net.policy, n))
      if (n.status === 'active') net.peerJson.set(n.id, this.peerJsonOf(n))
    }
  }

  private policyWarn(net: NetState): void {
    if (net.policy.unparsable)
      this.log.error(
        {tenantId: net.tenantId, networkId: net.id},
        'the stored ACL policy does not parse; its networks see no peers until it is set again',
      )
  }

  /**
   * A tenant's policy changed (or may have): each loaded network of the tenant is read again and
   * its connected nodes are told what they see now (reload). One still loading is read again
   * once loaded.
   */
  private onPolicyChange(tenantId: string): void {
    for (const net of this.nets.values()) {
      if (net.tenantId !== tenantId && net.tenantId !== '') continue
      if (net.loading) net.policyStale = true
      else if (net.tenantId === tenantId) this.resync(net, undefined)
    }
  }

  /**
   * A load or reload of `net` ended: changes queued meanwhile go through onChange in version
   * order (the stale ones are dropped there, a gap starts another reload).
   */
  private loaded(net: NetState): void {
    net.loading = null
    const queued = net.queued.splice(0).sort((a, b) => a.version - b.version)
    if (this.nets.get(net.id) !== net || net.headerJson === '') return
    for (const c of queued) this.onChange(c)
    // A policy change told meanwhile may be newer than what the load read.
    if (net.policyStale && !net.loading) {
      net.policyStale = false
      this.resync(net, undefined)
    }
  }

  private onChange(change: NodeChange): void {
    const net = this.nets.get(change.networkId)
    if (!net) return
    if (net.loading) {
      net.queued.push(change)
      return
    }
    if (change.networkDeleted) {
      // The whole network is going: revoke each node's sessions, no peer deltas (which would be
      // O(nodes²) for one deletion).
      net.nodes.delete(change.nodeId)
      net.peerJson.delete(change.nodeId)
      net.classes.delete(change.nodeId)
      for (const v of net.views.values()) {
        v.peers.delete(change.nodeId)
        v.peerList = null
      }
      for (const conn of net.conns.get(change.nodeId) ?? []) this.revoke(conn)
      return
    }
    // Changes are told after their commit (change-feed.ts): one the cache already holds (the
    // load read it, or it came twice) is stale here and would only send peers an old state again.
    if (change.version <= net.version) return
    if (change.version !== net.version + 1) {
      this.resync(net, change)
      return
    }
    this.apply(net, change, true)
  }

  /**
   * The cache of `net` missed at least one change (see the module comment), or the tenant's
   * policy changed (`trigger` undefined): reloads the network and tells each connected node what
   * differs. Changes arriving meanwhile are queued, as during the first load; `trigger` is
   * queued too, in case the store read is older than it. A reload that fails drops the network's
   * sessions: their nodes reconnect and resume from the store.
   */
  private resync(net: NetState, trigger: NodeChange | undefined): void {
    if (trigger)
      this.log.info(
        {networkId: net.id, cached: net.version, received: trigger.version},
        'netmap version gap; reloading the network',
      )
    else this.log.debug({networkId: net.id}, 'ACL policy changed; reloading the network')
    if (trigger) net.queued.push(trigger)
    net.loading = this.reload(net)
      .catch((err: unknown) => {
        if (!this.storageFailure(err)) this.log.warn({err, networkId: net.id}, 'netmap reload failed')
        if (this.nets.get(net.id) === net) this.nets.delete(net.id)
        for (const conns of net.conns.values()) for (const conn of conns) conn.ws.terminate()
      })
      .finally(() => {
        // Every session closed while it ran: nobody needs this cache any more.
        if (net.conns.size === 0 && this.nets.get(net.id) === net) this.nets.delete(net.id)
        this.loaded(net)
      })
  }

  private async reload(net: NetState): Promise<void> {
    const snap = await this.deps.source.netmapSnapshot(net.id)
    if (!snap) {
      // The network is gone: so is every session of it.
      net.headerJson = ''
      if (this.nets.get(net.id) === net) this.nets.delete(net.id)
      for (const conns of net.conns.values()) for (const conn of conns) this.revoke(conn)
      return
    }
    // From here to the end one synchronous block: no session sees a half-swapped cache.
    const oldNodes = new Map(net.nodes)
    const oldPeers = new Map(net.peerJson)
    const oldPolicy = net.policy
    const oldClasses = new Map(net.classes)
    const oldViews = net.views
    net.headerJson = JSON.stringify({id: snap.network.id, name: snap.network.name, cidr: snap.network.cidr})
    net.version = Math.max(net.version, snap.version)
    net.loadedVersion = net.version
    const policy = netPolicy(snap.policy, snap.owners, snap.ownerGroups)
    if (!samePolicy(oldPolicy, policy)) {
      net.policy = policy
      this.policyWarn(net)
      // Sessions resuming from this version or older may hold the old policy's view.
      net.policySince = net.version
    }
    net.nodes.clear()
    net.peerJson.clear()
    net.classes.clear()
    net.views = new Map()
    for (const n of snap.nodes) {
      net.nodes.set(n.id, n)
      net.classes.set(n.id, classOf(net.policy, n))
      if (n.status === 'active') net.peerJson.set(n.id, this.peerJsonOf(n))
    }

    // 1. Links about nodes that are no longer peers go, as in apply(), and so do links between
    //    nodes that no longer see each other.
    const removedPeers = [...oldPeers.keys()].filter((id) => !net.peerJson.has(id))
    for (const id of new Set([...removedPeers, ...[...oldNodes.keys()].filter((id) => !net.nodes.has(id))])) {
      net.links.delete(id)
      for (const links of net.links.values()) links.delete(id)
      this.deps.connections.forgetNode(net.id, id)
    }
    this.dropInvisibleLinks(net)
    // 2. What a node of class `before` held and what one of class `after` must hold now, once
    //    per pair of classes (one pair, NO_POLICY_CLASS twice, without a policy).
    const version = net.version
    const oldView = (cls: string): ReadonlyMap<string, string> =>
      oldPolicy.open ? oldPeers : (oldViews.get(cls)?.peers ?? viewOf(oldPolicy, cls, oldPeers, oldClasses))
    interface Group {
      readonly changed: ReadonlyMap<string, string>
      readonly removed: readonly string[]
      readonly removedSet: ReadonlySet<string>
      /** What the delta's entries and ids weigh (bytes, about), to tell when a full map is smaller. */
      readonly weight: number
      readonly view: ClassView
      shared: Buffer | undefined
      /** `changed` joined once, for deltas that leave the node's own entry out (peersExcept). */
      blob: PeerBlob | undefined
    }
    const groups = new Map<string, Group>()
    const groupOf = (before: string, after: string): Group => {
      const key = `${before}\n${after}`
      let g = groups.get(key)
      if (!g) {
        const view = this.view(net, after)
        const diff = diffViews(oldView(before), view.peers)
        let weight = 0
        for (const c of diff.changed) weight += c.json.length + 1
        for (const id of diff.removed) weight += id.length + 3
        g = {
          changed: new Map(diff.changed.map((c) => [c.id, c.json])),
          removed: diff.removed,
          removedSet: new Set(diff.removed),
          weight,
          view,
          shared: undefined,
          blob: undefined,
        }
        groups.set(key, g)
      }
      return g
    }
    // A delta's entries are views into one blob per group (the node's own entry cut out, as
    // sendFull does with the class's peer list): building a string per node instead cost O(nodes)
    // bytes of string work per node when a policy removal touched every node's view.
    const deltaFor = (g: Group, selfId: string, self: StoredNode | undefined): Buffer[] | undefined => {
      const ups = g.changed.size - (g.changed.has(selfId) ? 1 : 0)
      const gone = g.removed.filter((id) => id !== selfId).map((id) => JSON.stringify(id))
      if (ups === 0 && gone.length === 0 && !self) return undefined
      let head = `{"type":"delta","version":${version}`
      if (self) head += `,"self":${JSON.stringify(toSelf(self))}`
      const parts: Buffer[] = []
      if (ups > 0) {
        parts.push(
          Buffer.from(`${head},"changed":[`),
          ...peersExcept((g.blob ??= peerBlob(g.changed)), selfId),
        )
        head = ']'
      }
      if (gone.length > 0) head += `,"removed":[${gone.join(',')}]`
      parts.push(Buffer.from(`${head}}`))
      return parts
    }
    // 3. Each session: revoked, a full map, or one delta (shared bytes per pair of classes when
    //    nothing in it is its own). When a policy came, went or changed, a full map instead where
    //    the delta would weigh as much as the class's peer list as sent (gzipped to a node that
    //    takes it): the full map's peer bytes are one shared buffer per class, while a delta is
    //    text (a policy removed from 1,000 nodes: 1,000 deltas of 1,000 entries, 160 MB, against
    //    1,000 gzipped maps sharing one 40 kB list; bench/policy-change.mjs).
    const policyMoved = !(oldPolicy.open && net.policy.open)
    /** Peer-list bytes this reload may gzip on the event loop (about 100 ms at level 1). */
    let gzipBudget = RELOAD_GZIP_BYTES
    for (const [id, conns] of net.conns) {
      const self = net.nodes.get(id)
      const old = oldNodes.get(id)
      for (const conn of conns) {
        if (!self) {
          this.revoke(conn)
          continue
        }
        if (keyExpired(self, this.clock.now())) {
          conn.ws.close(CLOSE.KEY_EXPIRED, 'NODE_KEY_EXPIRED')
          continue
        }
        const isPeer = self.status === 'active'
        if (!old || (old.status === 'active') !== isPeer) {
          this.sendFull(conn, net, self)
          continue
        }
        const selfChanged = JSON.stringify(toSelf(old)) !== JSON.stringify(toSelf(self))
        if (!isPeer) {
          // A pending node sees no peers: only its own entry.
          if (selfChanged)
            this.send(
              conn,
              `{"type":"delta","version":${version},"self":${JSON.stringify(toSelf(self))}}`,
              'delta',
            )
          continue
        }
        const before = oldPolicy.open ? NO_POLICY_CLASS : (oldClasses.get(id) ?? NO_POLICY_CLASS)
        const g = groupOf(before, this.classOfId(net, id))
        if (g.changed.size === 0 && g.removed.length === 0 && !selfChanged) continue
        const ownEntry = g.changed.get(id)
        const own = g.removedSet.has(id)
        if (policyMoved) {
          const weight =
            g.weight - (ownEntry === undefined ? 0 : ownEntry.length + 1) - (own ? id.length + 3 : 0)
          // A full map also carries the network, the node itself and the NAT services.
          const head =
            net.headerJson.length + JSON.stringify(toSelf(self)).length + this.natJson().length + 64
          // Against what the full map's peers cost on the wire: the class's gzipped list (one
          // buffer shared by the class) for a node that takes gzip, once it is ready.
          const list = (g.view.peerList ??= peerBlob(g.view.peers))
          let gz = conn.gzip ? g.view.peerGzip.get(list) : undefined
          // Too big to gzip inline as get() does: made here, within a budget per reload (a
          // 3,000-node removal otherwise sent 3,000 text deltas of 480 kB while it was made).
          if (conn.gzip && gz === undefined && gzipBudget >= list.bytes.length) {
            gzipBudget -= list.bytes.length
            gz = g.view.peerGzip.getNow(list)
          }
          const fullBytes = gz?.length ?? list.bytes.length
          if (weight >= fullBytes + head) {
            this.sendFull(conn, net, self)
            continue
          }
        }
        let frame: Buffer | Buffer[] | undefined
        if (!selfChanged && ownEntry === undefined && !own)
          frame = g.shared ??= Buffer.concat(deltaFor(g, '', undefined)!)
        else frame = deltaFor(g, id, selfChanged ? self : undefined)
        if (frame !== undefined) this.send(conn, frame, 'delta')
      }
    }
  }

  /** Updates the cache with one change and fans out one delta per class; see the module comment. */
  private apply(net: NetState, change: NodeChange, fanOut: boolean): void {
    if (change.version > net.version) net.version = change.version
    const prev = net.nodes.get(change.nodeId) ?? change.before
    const next = change.node
    const wasPeer = prev?.status === 'active'
    const isPeer = next?.status === 'active'
    const policy = net.policy
    const prevClass = net.classes.get(change.nodeId) ?? (prev ? classOf(policy, prev) : NO_POLICY_CLASS)
    const nextClass = next ? classOf(policy, next) : prevClass
    if (next) {
      net.nodes.set(next.id, next)
      net.classes.set(next.id, nextClass)
    } else {
      net.nodes.delete(change.nodeId)
      net.classes.delete(change.nodeId)
    }
    let peerJson: string | undefined
    if (isPeer) {
      peerJson = this.peerJsonOf(next)
      net.peerJson.set(next.id, peerJson)
    } else {
      net.peerJson.delete(change.nodeId)
      if (wasPeer || !next) {
        net.links.delete(change.nodeId)
        for (const links of net.links.values()) links.delete(change.nodeId)
        this.deps.connections.forgetNode(net.id, change.nodeId)
      }
    }
    const moved = prev !== null && prev !== undefined && prevClass !== nextClass
    if (moved) this.dropInvisibleLinks(net)
    // A user the policy may name whom the cache has not heard of: read the user names again
    // (until then the node is classed as owned by nobody, which sees no more than its owner would).
    // Once per user id and policy: a removed user's nodes must not make every change a reload.
    const owner = next?.ownerId
    if (!policy.open && owner !== undefined && !policy.owners.has(owner) && !net.askedOwners.has(owner)) {
      net.askedOwners.add(owner)
      if (net.loading) net.policyStale = true
      else setImmediate(() => this.onPolicyChange(net.tenantId))
    }
    // What a receiver of class `cls` is told: the node's entry (added where it is new to the
    // class), its removal (where the class saw it before only), or nothing.
    const seesBefore = (cls: string): boolean => wasPeer && policy.compiled.sees(cls, prevClass)
    const seesAfter = (cls: string): boolean => isPeer && policy.compiled.sees(cls, nextClass)
    const entryFor = (cls: string): string => peerEntry(peerJson!, policy.compiled.inbound(cls, nextClass))
    for (const [cls, v] of net.views) {
      v.peerList = null
      if (policy.open) continue // its peers are net.peerJson, updated above
      if (seesAfter(cls)) v.peers.set(change.nodeId, entryFor(cls))
      else v.peers.delete(change.nodeId)
    }
    if (!fanOut) return

    // 1. Everyone else that is active: one delta per receiving class, encoded once.
    const frames = new Map<string, PrebuiltFrame | null>()
    const frameFor = (cls: string): PrebuiltFrame | null => {
      let bytes = frames.get(cls)
      if (bytes !== undefined) return bytes
      const was = seesBefore(cls)
      let frame: string | undefined
      if (seesAfter(cls))
        frame = `{"type":"delta","version":${net.version},"${was ? 'changed' : 'added'}":[${entryFor(cls)}]}`
      else if (was)
        frame = `{"type":"delta","version":${net.version},"removed":[${JSON.stringify(change.nodeId)}]}`
      bytes = frame === undefined ? null : prebuiltTextFrame(Buffer.from(frame))
      frames.set(cls, bytes)
      return bytes
    }
    if (wasPeer || isPeer) {
      const started = performance.now()
      // No policy: one frame for everyone, picked once (the loop is the hot path at 10k nodes).
      // Each frame is framed once and written as is (ws-frame.ts), and counted once.
      const shared = policy.open ? frameFor(NO_POLICY_CLASS) : undefined
      let sent = 0
      for (const [id, conns] of net.conns) {
        if (id === change.nodeId || net.nodes.get(id)?.status !== 'active') continue
        const msg = shared !== undefined ? shared : frameFor(net.classes.get(id) ?? NO_POLICY_CLASS)
        if (msg === null) continue
        for (const conn of conns) {
          if (!this.writable(conn)) continue
          sendPrebuilt(conn.ws, msg)
          sent++
        }
      }
      if (sent > 0) this.metrics.netmapFrames.inc({type: 'delta'}, sent)
      this.metrics.netmapFanout.observe((performance.now() - started) / 1000)
    }
    // 2. The node itself: its class moved, so does everything it sees (a full map).
    const own = net.conns.get(change.nodeId)
    if (!own) return
    const expired = next !== null && keyExpired(next, this.clock.now())
    for (const conn of own) {
      if (!next) this.revoke(conn)
      else if (expired) conn.ws.close(CLOSE.KEY_EXPIRED, 'NODE_KEY_EXPIRED')
      else if (wasPeer !== isPeer || (isPeer && moved)) this.sendFull(conn, net, next)
      else
        this.send(
          conn,
          `{"type":"delta","version":${net.version},"self":${JSON.stringify(toSelf(next))}}`,
          'delta',
        )
    }
  }

  /** One message (text unless `binary`); chunks go as the fragments of one message, in one go. */
  private send(
    conn: Conn,
    data: string | Buffer | readonly Buffer[],
    type: 'full' | 'delta' | 'revoked',
    binary = false,
  ): void {
    if (!this.writable(conn)) return
    if (Array.isArray(data)) {
      const chunks = (data as readonly Buffer[]).filter((c, i, all) => c.length > 0 || i === all.length - 1)
      for (const [i, chunk] of chunks.entries()) conn.ws.send(chunk, {binary, fin: i === chunks.length - 1})
    } else conn.ws.send(data as string | Buffer, {binary: false})
    this.metrics.netmapFrames.inc({type})
  }

  /** The socket is open and not too far behind (a slow one is dropped here: it resyncs). */
  private writable(conn: Conn): boolean {
    if (conn.ws.readyState !== conn.ws.OPEN) return false
    if (conn.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.log.warn({nodeId: conn.nodeId}, 'netmap socket too slow; dropping it')
      conn.ws.terminate()
      return false
    }
    return true
  }

  private revoke(conn: Conn): void {
    this.send(conn, REVOKED_FRAME, 'revoked')
    conn.ws.close(CLOSE.REVOKED, 'node removed')
  }

  private pingAll(): void {
    this.sessionLimit.prune()
    for (const net of this.nets.values())
      for (const conns of net.conns.values())
        for (const conn of conns) {
          if (!conn.alive) {
            conn.ws.terminate()
            continue
          }
          conn.alive = false
          conn.ws.ping()
        }
  }

  /** Closes every node socket with 1001 (going away). */
  async close(): Promise<void> {
    this.closing = true
    this.stopPinger()
    this.unsubscribe()
    const closed: Promise<void>[] = []
    for (const net of this.nets.values())
      for (const conns of net.conns.values())
        for (const conn of conns) {
          closed.push(
            new Promise<void>((resolve) => {
              conn.ws.once('close', () => resolve())
              conn.ws.close(CLOSE.SHUTTING_DOWN, 'controller shutting down')
              // Real time, not the clock: a bound on socket I/O at shutdown, which a test's
              // FakeClock (never moved once the test ends) must not hold up.
              setTimeout(() => {
                conn.ws.terminate()
                resolve()
              }, 2000).unref()
            }),
          )
        }
    await Promise.all(closed)
    this.wss.close()
  }
}
