/**
 * Presence: which nodes are online, meaning they hold at least one netmap session. The netmap
 * hub reports sessions opening and closing; the admin event stream, the node list (`online`) and
 * the ephemeral reaper read it.
 *
 * Replicas: the in-process implementation below counts the sessions of THIS process only, with
 * no TTL: a node is online from its first session's open to its last session's close, however
 * long that is. Behind a load balancer a node's session lives on one replica, so the others see
 * it offline; and a replica that dies never says `disconnected`. A shared implementation (later)
 * keeps one row per (node, replica) with an expiry that each replica heartbeats while it holds
 * the session; a node is online while any unexpired row exists, and rows of a dead replica
 * expire by themselves. Online/offline events then come from the change feed, not from here.
 * `isOnline` may answer from a per-replica cache of those rows; `onlineAmong` must ask the
 * shared state (the reaper acts on it).
 */
import {GroupCommit} from './group-commit.js'
import type {Node} from '../shared/protocol/control-api.js'
import {MeshError} from '../shared/errors.js'
import type {Clock} from '../shared/clock.js'
import type {Writes} from './domain/writes.js'
import type {StoredNode} from './store/store.js'

export type PresenceEvent = {
  readonly kind: 'online' | 'offline'
  readonly node: Node
  readonly tenantId: string
}

export interface Presence {
  /** A netmap session of this node opened; several sessions count once. */
  connected(node: StoredNode, tenantId: string): Promise<void>
  /** A netmap session of this node closed; the node goes offline with its last one. */
  disconnected(node: StoredNode, tenantId: string): Promise<void>
  /** The node is still there (it sent something): refreshes its last-seen time. */
  touch(nodeId: string): Promise<void>
  /** Whether the node is online, as this replica knows it (a cache may lag a shared state). */
  isOnline(nodeId: string): boolean
  /** Which of these nodes are online on any replica: what a destructive decision must ask. */
  onlineAmong(nodeIds: readonly string[]): Promise<ReadonlySet<string>>
  /** Subscribes to a node going online or offline; returns the unsubscribe function. */
  onChange(fn: (e: PresenceEvent) => void): () => void
}

/** A stored node as the API shows it: with `online` from presence. */
export const withPresence = (
  presence: Pick<Presence, 'isOnline'>,
  {keyWarnedAt: _warned, ...n}: StoredNode,
): Node => ({
  ...n,
  online: presence.isOnline(n.id),
})

export interface InProcessPresenceOptions {
  readonly clock: Clock
  readonly writes: Pick<Writes, 'touchNodes'>
  /**
   * Runs when a node's last session closed, before its last-seen time is written and `offline`
   * is told (the controller writes the node's pending endpoint report there). NOT_FOUND (the
   * node was removed meanwhile) is ignored.
   */
  readonly beforeOffline?: (nodeId: string) => Promise<void>
}

/** Presence counted in this process's memory; see the module comment for what it cannot see. */
export class InProcessPresence implements Presence {
  /** Open sessions per node; owned by connected/disconnected. */
  private readonly online = new Map<string, number>()
  private readonly listeners = new Set<(e: PresenceEvent) => void>()
  /** Last-seen writes, grouped while one is running (a reconnect storm is a few transactions). */
  private readonly touches: GroupCommit<string, string>

  constructor(private readonly opts: InProcessPresenceOptions) {
    this.touches = new GroupCommit((seen) => opts.writes.touchNodes(seen))
  }

  async connected(node: StoredNode, tenantId: string): Promise<void> {
    const n = (this.online.get(node.id) ?? 0) + 1
    this.online.set(node.id, n)
    await this.touch(node.id)
    // A close that overlapped the await has already told everyone the node is offline.
    if (n === 1 && this.online.has(node.id)) this.emit('online', node, tenantId)
  }

  async disconnected(node: StoredNode, tenantId: string): Promise<void> {
    const n = (this.online.get(node.id) ?? 1) - 1
    if (n > 0) {
      this.online.set(node.id, n)
      return
    }
    this.online.delete(node.id)
    if (this.opts.beforeOffline) {
      await this.opts.beforeOffline(node.id).catch((err: unknown) => {
        if (!(err instanceof MeshError && err.code === 'NOT_FOUND')) throw err
      })
    }
    await this.touch(node.id)
    // A new session opened during the awaits: the node is online again, so saying offline now
    // would leave admins (and the event's own online flag) contradicting the presence state.
    if (!this.online.has(node.id)) this.emit('offline', node, tenantId)
  }

  touch(nodeId: string): Promise<void> {
    return this.touches.add(nodeId, new Date(this.opts.clock.now()).toISOString())
  }

  isOnline(nodeId: string): boolean {
    return this.online.has(nodeId)
  }

  onlineAmong(nodeIds: readonly string[]): Promise<ReadonlySet<string>> {
    return Promise.resolve(new Set(nodeIds.filter((id) => this.online.has(id))))
  }

  onChange(fn: (e: PresenceEvent) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  private emit(kind: 'online' | 'offline', node: StoredNode, tenantId: string): void {
    const lastSeen = new Date(this.opts.clock.now()).toISOString()
    const ev: PresenceEvent = {kind, node: withPresence(this, {...node, lastSeen}), tenantId}
    for (const fn of this.listeners) fn(ev)
  }
}
