/**
 * The admin event stream (WS /api/v1/events): a user token in `Authorization: Bearer`, first a
 * snapshot of the nodes the user may see, then node_added / node_removed / node_changed /
 * node_online / node_offline, node_key_expiring / node_key_expired (issue 10), and
 * connection_changed when the path between two nodes changes (controller/connections.ts), for
 * the user's tenant only. Each event is serialized once and the same bytes go to every
 * subscriber of that tenant.
 *
 * Replicas: subscribers are per replica (their socket landed here); what they hear comes from
 * the change feed (node and connection changes) and presence, which span replicas on PostgreSQL.
 */
import type {IncomingMessage} from 'node:http'
import type {Duplex} from 'node:stream'
import type {Logger} from 'pino'
import {WebSocketServer, type WebSocket} from 'ws'
import {every} from '../../shared/clock.js'
import {isMeshError} from '../../shared/errors.js'
import {LIMITS} from '../../shared/protocol/control-api.js'
import {CLOSE, type AdminEvent} from '../../shared/protocol/netmap.js'
import type {ControllerMetrics} from '../metrics.js'
import type {Node} from '../../shared/protocol/control-api.js'
import type {Clock} from '../../shared/clock.js'
import type {Auth, Principal} from '../auth/auth.js'
import type {ChangeFeed} from '../change-feed.js'
import {withPresence, type Presence} from '../presence.js'
import type {NodeChange} from '../store/store.js'
import {keyExpired} from '../domain/nodes.js'

/** What the stream takes from the rest of the controller, each part narrowed to what it calls. */
export interface EventHubDeps {
  readonly clock: Clock
  readonly auth: Pick<Auth, 'authenticateUser'>
  readonly feed: Pick<ChangeFeed, 'onNodeChange' | 'onConnectionChange'>
  readonly presence: Pick<Presence, 'onChange' | 'isOnline'>
  /** The snapshot a new subscriber starts from: every node of its tenant, with presence. */
  readonly nodes: {tenantNodes(p: Principal): Promise<Node[]>}
}

const MAX_BUFFERED_BYTES = 16 * 1024 * 1024

/** What the periodic check needs of each subscriber. */
interface Subscriber {
  readonly token: string
  alive: boolean
}

export class EventHub {
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIMITS.maxFrameBytes,
    clientTracking: false,
  })
  /** Subscribers by tenant id. */
  private readonly subs = new Map<string, Set<WebSocket>>()
  private readonly unsubscribe: (() => void)[] = []
  private readonly subscribers = new Map<WebSocket, Subscriber>()
  private readonly stopChecker: () => void
  private closing = false

  constructor(
    private readonly deps: EventHubDeps,
    private readonly metrics: ControllerMetrics,
    private readonly log: Logger,
    opts: {pingIntervalMs?: number | undefined} = {},
  ) {
    const clock = deps.clock
    this.stopChecker = every(clock, opts.pingIntervalMs ?? 30_000, () => this.checkAll())
    this.unsubscribe.push(
      deps.feed.onNodeChange((c) => this.onChange(c)),
      deps.presence.onChange((e) =>
        this.publish(e.tenantId, {
          type: e.kind === 'online' ? 'node_online' : 'node_offline',
          at: new Date(clock.now()).toISOString(),
          networkId: e.node.networkId,
          node: e.node,
        }),
      ),
      deps.feed.onConnectionChange((c) =>
        this.publish(c.tenantId, {
          type: 'connection_changed',
          at: c.at,
          networkId: c.networkId,
          a: c.a,
          b: c.b,
          from: c.from,
          to: c.to,
          latencyMs: c.latencyMs,
        }),
      ),
    )
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const token = /^Bearer (\S{1,300})$/i.exec(req.headers.authorization ?? '')?.[1] ?? ''
    socket.on('error', () => socket.destroy())
    void this.deps.auth
      .authenticateUser(token)
      .catch((err: unknown) => {
        this.log.error({err}, 'event stream authentication failed')
        return undefined
      })
      .then((principal) => {
        if (socket.destroyed) return
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          // First: an 'error' without a listener (an oversize frame, a protocol violation)
          // would throw and take the whole controller down.
          ws.on('error', () => ws.terminate())
          if (!principal || this.closing) {
            ws.close(
              this.closing ? CLOSE.SHUTTING_DOWN : CLOSE.UNAUTHENTICATED,
              this.closing ? 'shutting down' : 'UNAUTHENTICATED',
            )
            return
          }
          this.attach(ws, principal, token).catch((err: unknown) => {
            this.log.error({err}, 'event stream failed')
            ws.terminate()
          })
        })
      })
  }

  private async attach(ws: WebSocket, p: Principal, token: string): Promise<void> {
    ws.on('error', () => ws.terminate())
    // Subscribe before reading the snapshot so no event falls between the two; a client may see
    // an event for a node the snapshot already shows, which is harmless (events are upserts).
    let set = this.subs.get(p.tenant.id)
    if (!set) this.subs.set(p.tenant.id, (set = new Set()))
    const pending: Buffer[] = []
    const sub = ws as WebSocket & {meshQueue?: Buffer[] | undefined}
    sub.meshQueue = pending
    set.add(ws)
    const subscriber: Subscriber = {token, alive: true}
    this.subscribers.set(ws, subscriber)
    this.metrics.eventSubscribers.inc()
    ws.on('pong', () => {
      subscriber.alive = true
    })
    ws.on('close', () => {
      this.subscribers.delete(ws)
      set.delete(ws)
      if (set.size === 0) this.subs.delete(p.tenant.id)
      this.metrics.eventSubscribers.dec()
    })
    // Frames from the client carry no meaning on this stream; they are ignored.
    ws.on('message', () => undefined)
    const nodes = await this.deps.nodes.tenantNodes(p)
    if (ws.readyState !== ws.OPEN) return
    ws.send(JSON.stringify({type: 'snapshot', nodes}))
    sub.meshQueue = undefined
    for (const frame of pending) ws.send(frame, {binary: false})
  }

  private onChange(c: NodeChange): void {
    const node = c.node ?? c.before
    if (!node) return
    const type = c.kind === 'added' ? 'node_added' : c.kind === 'removed' ? 'node_removed' : 'node_changed'
    const at = new Date(this.deps.clock.now()).toISOString()
    const shown = withPresence(this.deps.presence, node)
    if (!c.node) shown.online = false
    this.publish(c.tenantId, {type, at, networkId: c.networkId, node: shown})
    // Key expiry (issue 10), told once each: the sweep's first announcement of a coming expiry
    // (key_warned_at set), and the node disabled because its key expired. Only where the change
    // carries the node as it was (a change that arrives without it says nothing about either).
    const before = c.before
    if (!c.node || !before) return
    if (!before.keyWarnedAt && c.node.keyWarnedAt)
      this.publish(c.tenantId, {type: 'node_key_expiring', at, networkId: c.networkId, node: shown})
    if (before.status === 'active' && c.node.status === 'disabled' && keyExpired(c.node, at))
      this.publish(c.tenantId, {type: 'node_key_expired', at, networkId: c.networkId, node: shown})
  }

  private publish(tenantId: string, event: AdminEvent): void {
    const set = this.subs.get(tenantId)
    if (!set || set.size === 0) return
    const bytes = Buffer.from(JSON.stringify(event))
    for (const ws of set) {
      const queue = (ws as WebSocket & {meshQueue?: Buffer[] | undefined}).meshQueue
      if (queue) {
        queue.push(bytes)
        continue
      }
      if (ws.readyState !== ws.OPEN) continue
      if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
        ws.terminate()
        continue
      }
      ws.send(bytes, {binary: false})
    }
  }

  /**
   * Every ping interval: drops sockets that did not answer the last ping (half-open TCP would
   * otherwise stay subscribed forever) and closes streams whose token no longer authenticates
   * (logged out, expired, or its user deleted): the token was checked only at the upgrade.
   */
  private checkAll(): void {
    for (const [ws, sub] of this.subscribers) {
      if (!sub.alive) {
        ws.terminate()
        continue
      }
      sub.alive = false
      ws.ping()
      this.deps.auth.authenticateUser(sub.token).then(
        (p) => {
          if (!p) ws.close(CLOSE.UNAUTHENTICATED, 'UNAUTHENTICATED')
        },
        (err: unknown) => {
          // An access token that expired while its session lives keeps the stream (the session
          // is what logout and revocation end, and they delete the token: then p is undefined).
          if (isMeshError(err) && err.code === 'TOKEN_EXPIRED') return
          this.log.warn({err}, 'event stream token check failed')
        },
      )
    }
  }

  async close(): Promise<void> {
    this.closing = true
    this.stopChecker()
    for (const u of this.unsubscribe) u()
    const all = [...this.subs.values()].flatMap((s) => [...s])
    await Promise.all(
      all.map(
        (ws) =>
          new Promise<void>((resolve) => {
            ws.once('close', () => resolve())
            ws.close(CLOSE.SHUTTING_DOWN, 'controller shutting down')
            // Real time: a bound on socket I/O at shutdown (see NetmapHub.close).
            setTimeout(() => {
              ws.terminate()
              resolve()
            }, 2000).unref()
          }),
      ),
    )
    this.wss.close()
  }
}
