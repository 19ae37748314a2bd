/**
 * Presence shared by controller replicas on one PostgreSQL (presence.ts's Presence).
 *
 * Each replica counts its own sessions per node, as the in-process presence does, and holds one
 * `presence` row per node it has sessions of, with an expiry it pushes forward every
 * HEARTBEAT_MS (TTL_MS ahead). A replica that dies stops pushing; a sweep on one replica at a
 * time (singleton lock) deletes expired rows. Every row inserted or deleted is announced with
 * NOTIFY (`mesh_presence`), and each replica keeps a cache of live rows from those, so isOnline
 * answers from memory; the reaper's onlineAmong asks the table. A node is online while any
 * replica holds a live row of it; `online`/`offline` events fire on every replica when the
 * first row appears or the last one goes, with the node read back from the store.
 *
 * The cache is reloaded from the table after the notification connection (re)connects, since
 * NOTIFY is lost while it is down.
 */
import {MeshError} from '../../shared/errors.js'
import {every, type Clock} from '../../shared/clock.js'
import {GroupCommit} from '../group-commit.js'
import type {PartLog} from '../context.js'
import type {Writes} from '../domain/writes.js'
import type {SingletonLock} from '../leader.js'
import {withPresence, type Presence, type PresenceEvent} from '../presence.js'
import {PgListener} from '../store/postgres/listener.js'
import type {PgPresenceTable} from '../store/postgres/presence-table.js'
import type {Store, StoredNode} from '../store/store.js'

/** A row counts this long after its replica's last heartbeat. */
export const PRESENCE_TTL_MS = 30_000
/** How often a replica pushes its rows forward (a third of the TTL: two heartbeats may fail). */
export const HEARTBEAT_MS = 10_000

export interface SharedPresenceOptions {
  readonly url: string
  readonly replica: string
  readonly table: PgPresenceTable
  readonly store: Pick<Store, 'getNode' | 'getNetwork'>
  readonly writes: Pick<Writes, 'touchNodes'>
  readonly lock: SingletonLock
  readonly clock: Clock
  readonly log: PartLog
  /** As InProcessPresenceOptions.beforeOffline: runs when this replica's last session closed. */
  readonly beforeOffline?: (nodeId: string) => Promise<void>
}

export class SharedPresence implements Presence {
  /** This replica's open sessions per node. */
  private readonly sessions = new Map<string, number>()
  /** Live rows by node: the replicas holding it. */
  private readonly rows = new Map<string, Set<string>>()
  private readonly listeners = new Set<(e: PresenceEvent) => void>()
  private readonly listener: PgListener
  private stopTimers: (() => void) | undefined
  /**
   * This replica's rows and last-seen writes, grouped while one is running: 10,000 nodes
   * reconnecting would otherwise queue 20,000 statements on a pool of ten, past its timeout.
   * The last of a node's hold/release waiting wins (its latest state is what counts).
   */
  private readonly rowWrites: GroupCommit<string, 'hold' | 'release'>
  private readonly touches: GroupCommit<string, string>

  constructor(private readonly opts: SharedPresenceOptions) {
    this.rowWrites = new GroupCommit((rows) => {
      const hold: string[] = []
      const release: string[] = []
      for (const [nodeId, op] of rows) (op === 'hold' ? hold : release).push(nodeId)
      return opts.table.apply(opts.replica, {hold, release}, this.iso(), this.iso(PRESENCE_TTL_MS))
    })
    this.touches = new GroupCommit((seen) => opts.writes.touchNodes(seen))
    this.listener = new PgListener({
      url: opts.url,
      channels: ['mesh_presence'],
      clock: opts.clock,
      log: opts.log,
      onNotification: (_c, payload) => this.heard(payload),
      onConnected: () => void this.reload(),
    })
  }

  private iso(offsetMs = 0): string {
    return new Date(this.opts.clock.now() + offsetMs).toISOString()
  }

  /** Listens, loads the live rows, and starts the heartbeat and the sweep. */
  async start(): Promise<void> {
    await this.listener.start()
    const beat = every(this.opts.clock, HEARTBEAT_MS, () => {
      this.opts.table.heartbeat(this.opts.replica, this.iso(PRESENCE_TTL_MS)).catch((err: unknown) => {
        this.opts.log.warn({err}, 'presence heartbeat failed')
      })
      this.opts.lock
        .tryRun('presence-sweep', () => this.opts.table.sweep(this.iso()))
        .catch((err: unknown) => this.opts.log.warn({err}, 'presence sweep failed'))
    })
    this.stopTimers = beat
  }

  /** Stops, and gives up this replica's rows (its sessions end with it). */
  async close(): Promise<void> {
    this.stopTimers?.()
    await this.listener.close()
    const release = [...this.sessions.keys()]
    this.sessions.clear()
    await this.opts.table
      .apply(this.opts.replica, {hold: [], release}, this.iso(), this.iso())
      .catch(() => undefined)
  }

  async connected(node: StoredNode, _tenantId: string): Promise<void> {
    const n = (this.sessions.get(node.id) ?? 0) + 1
    this.sessions.set(node.id, n)
    if (n === 1) await this.rowWrites.add(node.id, 'hold')
    await this.touch(node.id)
  }

  async disconnected(node: StoredNode, _tenantId: string): Promise<void> {
    const n = (this.sessions.get(node.id) ?? 1) - 1
    if (n > 0) {
      this.sessions.set(node.id, n)
      return
    }
    this.sessions.delete(node.id)
    if (this.opts.beforeOffline) {
      await this.opts.beforeOffline(node.id).catch((err: unknown) => {
        if (!(err instanceof MeshError && err.code === 'NOT_FOUND')) throw err
      })
    }
    // A new session of the node opened during the await: keep the row.
    if (!this.sessions.has(node.id)) await this.rowWrites.add(node.id, 'release')
    await this.touch(node.id)
  }

  touch(nodeId: string): Promise<void> {
    return this.touches.add(nodeId, this.iso())
  }

  /** Live rows (any replica), or a session here whose row's NOTIFY has not come back yet. */
  isOnline(nodeId: string): boolean {
    return this.rowsOnline(nodeId) || this.sessions.has(nodeId)
  }

  /** What events follow: the rows alone, so each replica tells the same transitions. */
  private rowsOnline(nodeId: string): boolean {
    return (this.rows.get(nodeId)?.size ?? 0) > 0
  }

  onlineAmong(nodeIds: readonly string[]): Promise<ReadonlySet<string>> {
    return this.opts.table.onlineAmong(nodeIds, this.iso())
  }

  onChange(fn: (e: PresenceEvent) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** `on|off NODE REPLICA` from the presence trigger. */
  private heard(payload: string): void {
    const [op, nodeId, replica] = payload.split(' ')
    if (!nodeId || !replica || (op !== 'on' && op !== 'off')) return
    const before = this.rowsOnline(nodeId)
    let set = this.rows.get(nodeId)
    if (op === 'on') {
      if (!set) this.rows.set(nodeId, (set = new Set()))
      set.add(replica)
    } else if (set) {
      set.delete(replica)
      if (set.size === 0) this.rows.delete(nodeId)
    }
    const after = this.rowsOnline(nodeId)
    if (before !== after) void this.emit(after ? 'online' : 'offline', nodeId)
  }

  private async reload(): Promise<void> {
    try {
      const live = await this.opts.table.live(this.iso())
      const was = new Set(this.rows.keys())
      this.rows.clear()
      for (const {nodeId, replica} of live) {
        let set = this.rows.get(nodeId)
        if (!set) this.rows.set(nodeId, (set = new Set()))
        set.add(replica)
      }
      for (const id of was) if (!this.rowsOnline(id)) void this.emit('offline', id)
      for (const id of this.rows.keys()) if (!was.has(id)) void this.emit('online', id)
    } catch (err) {
      this.opts.log.warn({err}, 'could not load presence')
    }
  }

  private async emit(kind: 'online' | 'offline', nodeId: string): Promise<void> {
    if (this.listeners.size === 0) return
    try {
      const node = await this.opts.store.getNode(nodeId)
      const net = node && (await this.opts.store.getNetwork(node.networkId))
      if (!node || !net) return
      // Still so after the reads (a quick reconnect would otherwise say offline, then online).
      if (this.rowsOnline(nodeId) !== (kind === 'online')) return
      const ev: PresenceEvent = {kind, node: withPresence(this, node), tenantId: net.tenantId}
      for (const fn of this.listeners) fn(ev)
    } catch (err) {
      this.opts.log.warn({err, nodeId}, 'could not tell a presence change')
    }
  }
}
