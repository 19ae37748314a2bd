/**
 * The change feed: how the parts of the controller that keep something in memory (the netmap
 * hub's cache, the admin event stream, the discovery port's key index, the relay) hear of node
 * and network changes after they commit. Writers publish; subscribers react.
 *
 * The contract a subscriber may rely on is only this: every change it receives is committed and
 * carries (networkId, version), versions of one network grow by one per node change, and within
 * one process changes arrive in the order they were published. It must NOT assume it sees every
 * version: a feed that spans replicas (PostgreSQL LISTEN/NOTIFY, which drops notifications while
 * a listener reconnects) can miss or reorder some, so a subscriber that keeps a versioned cache
 * checks for gaps and reloads from the store (the netmap hub does; see netmap.ts).
 *
 * Connection changes (a pair's path moved: controller/connections.ts) travel on the feed too, so
 * that the admin event stream of every replica hears them, whichever replica wrote them.
 *
 * Policy changes (a tenant's ACL policy set or removed, issue 10) carry only the tenant id: the
 * netmap hub reads the policy again and tells each affected node what it sees now. A listener
 * may also hear one when nothing changed (a replica replays them after it lost notifications);
 * reading again must then change nothing.
 *
 * Replicas: the in-process feed below is per process and reaches only this replica's
 * subscribers. The shared one (replicas/pg-change-feed.ts) also hears other replicas' committed
 * changes through NOTIFY and hands them to the same subscribers.
 */
import type {Network} from '../shared/protocol/control-api.js'
import type {ConnectionChange} from './connections.js'
import type {NodeChange} from './store/store.js'
import {SILENT_LOG, type PartLog} from './context.js'

export interface ChangeFeed {
  /**
   * Publishes committed node changes. Subscribers hear them later (never inside this call), so
   * the request that made a change answers before the fan-out to every node runs.
   */
  publish(changes: NodeChange | readonly NodeChange[]): void
  /** Publishes a committed change of a network's name, description or policy. */
  publishNetwork(network: Network): void
  /** Subscribes to node changes; returns the unsubscribe function. */
  onNodeChange(fn: (c: NodeChange) => void): () => void
  /** Subscribes to network changes; returns the unsubscribe function. */
  onNetworkChange(fn: (n: Network) => void): () => void
  /** Publishes a committed change of a pair's path (a connection-log entry). */
  publishConnection(change: ConnectionChange): void
  /** Subscribes to connection changes; returns the unsubscribe function. */
  onConnectionChange(fn: (c: ConnectionChange) => void): () => void
  /** Publishes a committed change of a tenant's ACL policy (set or removed). */
  publishPolicy(tenantId: string): void
  /** Subscribes to policy changes (the tenant id); returns the unsubscribe function. */
  onPolicyChange(fn: (tenantId: string) => void): () => void
}

/**
 * The single-process feed: one FIFO queue for every network, flushed on the next turn of the
 * event loop (setImmediate keeps the delay far below a second), so subscribers see node changes
 * in commit order. Network changes are told at once, as before the feed existed.
 */
export class InProcessChangeFeed implements ChangeFeed {
  private readonly nodeListeners = new Set<(c: NodeChange) => void>()
  private readonly networkListeners = new Set<(n: Network) => void>()
  private readonly connectionListeners = new Set<(c: ConnectionChange) => void>()
  private readonly policyListeners = new Set<(tenantId: string) => void>()
  /** Node changes published but not yet told to listeners; see publish(). */
  private readonly unsent: NodeChange[] = []
  private flushScheduled = false

  constructor(private readonly log: PartLog = SILENT_LOG) {}

  publish(changes: NodeChange | readonly NodeChange[]): void {
    for (const c of Array.isArray(changes) ? (changes as readonly NodeChange[]) : [changes as NodeChange])
      this.unsent.push(c)
    if (this.flushScheduled || this.unsent.length === 0) return
    this.flushScheduled = true
    setImmediate(() => this.flush())
  }

  publishNetwork(network: Network): void {
    for (const fn of this.networkListeners) fn(network)
  }

  /** Told at once, like network changes: a flush of the connection tracker already batched them. */
  publishConnection(change: ConnectionChange): void {
    for (const fn of this.connectionListeners) {
      try {
        fn(change)
      } catch (err) {
        this.log.warn({err, networkId: change.networkId}, 'connection change listener failed')
      }
    }
  }

  onConnectionChange(fn: (c: ConnectionChange) => void): () => void {
    this.connectionListeners.add(fn)
    return () => this.connectionListeners.delete(fn)
  }

  /**
   * Told on the next turn, like node changes, so the request that set the policy answers before
   * the hub reads it again; node changes published before it are told first.
   */
  publishPolicy(tenantId: string): void {
    setImmediate(() => {
      for (const fn of this.policyListeners) {
        try {
          fn(tenantId)
        } catch (err) {
          this.log.warn({err, tenantId}, 'policy change listener failed')
        }
      }
    })
  }

  onPolicyChange(fn: (tenantId: string) => void): () => void {
    this.policyListeners.add(fn)
    return () => this.policyListeners.delete(fn)
  }

  onNodeChange(fn: (c: NodeChange) => void): () => void {
    this.nodeListeners.add(fn)
    return () => this.nodeListeners.delete(fn)
  }

  onNetworkChange(fn: (n: Network) => void): () => void {
    this.networkListeners.add(fn)
    return () => this.networkListeners.delete(fn)
  }

  private flush(): void {
    this.flushScheduled = false
    for (const c of this.unsent.splice(0)) {
      for (const fn of this.nodeListeners) {
        try {
          fn(c)
        } catch (err) {
          // One broken listener must not keep a change from the others.
          this.log.warn({err, nodeId: c.nodeId}, 'node change listener failed')
        }
      }
    }
  }
}
