/**
 * The change feed across controller replicas on one PostgreSQL (change-feed.ts's ChangeFeed).
 *
 * Local changes reach local subscribers as the in-process feed delivers them (at once, in commit
 * order). Every replica also hears every committed change through NOTIFY from the 0006 triggers
 * (`mesh_netmap`: network, version, node, kind, writer; `mesh_network`: op, network, writer) and
 * turns those written by OTHER replicas into NodeChanges read back from the store, delivered in
 * notification order (one queue). NOTIFY is lost while the listening connection is down, and
 * subscribers are told to expect that: after every reconnect this feed replays the newest change
 * of each network, so a cache that missed some finds a version gap and reloads (the netmap hub
 * does). A burst of remote changes to one network is coalesced to its newest change, which makes
 * the hub reload the network once instead of reading every node: the queue stays bounded.
 *
 * A remote change carries no `before` (the row is gone or changed); a remote network deletion is
 * told as a change of that network far ahead of any version, which makes the hub reload it, find
 * it gone and close its sessions.
 *
 * Policy changes (`mesh_policy`, migration 0013: tenant, writer) are told to local subscribers as
 * they arrive, with no read (the hub reads the policy itself). One lost while the listening
 * connection is down IS replayed: after a reconnect every tenant this feed has seen a network of
 * is told as changed, and the hub reads those policies again (an unchanged one sends nothing).
 *
 * Connection changes (`mesh_connections`, migration 0010) carry the whole log entry; other
 * replicas' entries are told to local subscribers as they arrive, with no read. They are events
 * for people watching, not state: one lost while the listening connection is down is not
 * replayed (the connection log and GET …/connections have it).
 */
import {z} from 'zod'
import {ConnectionLogEntrySchema, type Network} from '../../shared/protocol/control-api.js'
import {IdSchema} from '../../shared/protocol/fields.js'
import type {Clock} from '../../shared/clock.js'
import {InProcessChangeFeed, type ChangeFeed} from '../change-feed.js'
import type {ConnectionChange} from '../connections.js'
import type {PartLog} from '../context.js'
import {PgListener} from '../store/postgres/listener.js'
import type {NodeChange, Store} from '../store/store.js'

/** Remote changes of one network waiting beyond this many are collapsed to the newest one. */
const MAX_PENDING_PER_NETWORK = 256
/** A version no network reaches: "this network changed in a way only a reload can tell". */
const RELOAD_VERSION = Number.MAX_SAFE_INTEGER

/** A mesh_connections payload: what 0010's trigger builds (only our trigger writes it). */
const ConnectionNotifySchema = ConnectionLogEntrySchema.extend({
  networkId: IdSchema,
  tenantId: IdSchema,
  replica: z.string().max(64),
})
/** NOTIFY holds at most 8000 bytes; anything longer is not ours. */
const MAX_PAYLOAD = 8000

type Kind = NodeChange['kind']
interface Remote {
  readonly networkId: string
  readonly version: number
  readonly nodeId: string
  readonly kind: Kind
}

export interface PgChangeFeedOptions {
  readonly url: string
  /** This replica's name: its connections' application_name, the last word of its NOTIFYs. */
  readonly replica: string
  readonly store: Pick<Store, 'getNode' | 'getNetwork'> & {
    /** The newest change-log row of every network (the replay after a reconnect). */
    latestChanges(): Promise<Remote[]>
  }
  readonly clock: Clock
  readonly log: PartLog
}

export class PgChangeFeed implements ChangeFeed {
  private readonly local: InProcessChangeFeed
  private readonly listener: PgListener
  private readonly tenants = new Map<string, string>()
  private readonly pending = new Map<string, Remote[]>()
  private draining = false
  private closed = false

  constructor(private readonly opts: PgChangeFeedOptions) {
    this.local = new InProcessChangeFeed(opts.log)
    this.listener = new PgListener({
      url: opts.url,
      channels: ['mesh_netmap', 'mesh_network', 'mesh_connections', 'mesh_policy'],
      clock: opts.clock,
      log: opts.log,
      onNotification: (channel, payload) => this.heard(channel, payload),
      onConnected: (reconnect) => {
        if (reconnect) this.replay()
      },
    })
  }

  /** Starts listening; resolves once LISTEN is in place. */
  start(): Promise<void> {
    return this.listener.start()
  }

  async close(): Promise<void> {
    this.closed = true
    await this.listener.close()
  }

  publish(changes: NodeChange | readonly NodeChange[]): void {
    for (const c of Array.isArray(changes) ? (changes as readonly NodeChange[]) : [changes as NodeChange])
      if (c.tenantId) this.tenants.set(c.networkId, c.tenantId)
    this.local.publish(changes)
  }

  publishNetwork(network: Network): void {
    this.tenants.set(network.id, network.tenantId)
    this.local.publishNetwork(network)
  }

  onNodeChange(fn: (c: NodeChange) => void): () => void {
    return this.local.onNodeChange(fn)
  }

  onNetworkChange(fn: (n: Network) => void): () => void {
    return this.local.onNetworkChange(fn)
  }

  publishConnection(change: ConnectionChange): void {
    this.local.publishConnection(change)
  }

  onConnectionChange(fn: (c: ConnectionChange) => void): () => void {
    return this.local.onConnectionChange(fn)
  }

  publishPolicy(tenantId: string): void {
    this.local.publishPolicy(tenantId)
  }

  onPolicyChange(fn: (tenantId: string) => void): () => void {
    return this.local.onPolicyChange(fn)
  }

  /** One notification; anything malformed is dropped (only our triggers write these channels). */
  private heard(channel: string, payload: string): void {
    if (channel === 'mesh_connections') {
      this.connectionHeard(payload)
      return
    }
    const words = payload.split(' ')
    if (words.at(-1) === this.opts.replica) return // our own: already told locally
    if (channel === 'mesh_policy') {
      const tenantId = words[0] ?? ''
      if (words.length === 2 && IdSchema.safeParse(tenantId).success && !this.closed)
        this.local.publishPolicy(tenantId)
      return
    }
    if (channel === 'mesh_netmap' && words.length === 5) {
      const [networkId, version, nodeId, kind] = words as [string, string, string, string]
      if (!/^\d{1,15}$/.test(version) || !['added', 'changed', 'removed'].includes(kind)) return
      this.enqueue({networkId, version: Number(version), nodeId, kind: kind as Kind})
    } else if (channel === 'mesh_network' && words.length === 3) {
      const [op, networkId] = words as [string, string]
      if (op === 'deleted') this.enqueue({networkId, version: RELOAD_VERSION, nodeId: '', kind: 'removed'})
      else if (op === 'insert' || op === 'update') void this.networkChanged(networkId)
    }
  }

  private connectionHeard(payload: string): void {
    if (this.closed || payload.length > MAX_PAYLOAD) return
    let parsed: z.infer<typeof ConnectionNotifySchema>
    try {
      parsed = ConnectionNotifySchema.parse(JSON.parse(payload))
    } catch {
      return
    }
    const {replica, ...change} = parsed
    if (replica === this.opts.replica) return // our own: already told locally
    this.local.publishConnection(change)
  }

  private enqueue(r: Remote): void {
    if (this.closed) return
    let q = this.pending.get(r.networkId)
    if (!q) this.pending.set(r.networkId, (q = []))
    q.push(r)
    // Coalesce a burst: the newest change alone makes a subscriber with a gap reload.
    if (q.length > MAX_PENDING_PER_NETWORK) q.splice(0, q.length - 1)
    if (!this.draining) {
      this.draining = true
      setImmediate(() => void this.drain())
    }
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closed && this.pending.size > 0) {
        const [networkId, q] = this.pending.entries().next().value as [string, Remote[]]
        const r = q.shift() as Remote
        if (q.length === 0) this.pending.delete(networkId)
        try {
          const change = await this.toChange(r)
          if (change) this.local.publish(change)
        } catch (err) {
          // The store is unreachable: this change is lost here, and the next one of the network
          // shows the gap (the hub reloads then).
          this.opts.log.warn({err, networkId: r.networkId}, 'could not read a change another replica made')
        }
      }
    } finally {
      this.draining = false
    }
  }

  private async toChange(r: Remote): Promise<NodeChange | undefined> {
    let tenantId = this.tenants.get(r.networkId)
    if (tenantId === undefined) {
      const net = await this.opts.store.getNetwork(r.networkId)
      tenantId = net?.tenantId ?? ''
      if (net) this.tenants.set(r.networkId, tenantId)
    }
    if (r.version === RELOAD_VERSION) {
      this.tenants.delete(r.networkId)
      return {
        networkId: r.networkId,
        tenantId,
        version: r.version,
        nodeId: '',
        kind: 'removed',
        node: null,
        before: null,
      }
    }
    const node = r.kind === 'removed' ? undefined : await this.opts.store.getNode(r.nodeId)
    // Changed again (or removed) since: the later notification tells that; this one still
    // carries its version, so a subscriber's versions stay in step.
    return {
      networkId: r.networkId,
      tenantId,
      version: r.version,
      nodeId: r.nodeId,
      kind: node ? r.kind : 'removed',
      node: node ?? null,
      before: null,
    }
  }

  private async networkChanged(networkId: string): Promise<void> {
    try {
      const net = await this.opts.store.getNetwork(networkId)
      if (net && !this.closed) this.publishNetwork(net)
    } catch (err) {
      this.opts.log.warn({err, networkId}, 'could not read a network another replica changed')
    }
  }

  /** After a reconnect: the newest change of every network, so gaps show and caches reload. */
  private replay(): void {
    this.opts.store
      .latestChanges()
      .then((latest) => {
        for (const r of latest) this.enqueue(r)
        // Policy notifications lost meanwhile: the hub reads every tenant's policy it holds again.
        for (const tenantId of new Set(this.tenants.values()))
          if (tenantId !== '' && !this.closed) this.local.publishPolicy(tenantId)
      })
      .catch((err: unknown) => this.opts.log.warn({err}, 'could not replay changes after reconnecting'))
  }
}
