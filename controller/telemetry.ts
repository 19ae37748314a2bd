/**
 * Endpoint telemetry: the endpoint candidates nodes report over their netmap session, the public
 * mapping the discovery port observes, each coalesced per node so that a chatty node costs at
 * most one write and one delta per window; and the index of active nodes by WireGuard public key
 * that the discovery port looks initiators up in.
 *
 * Replicas: the pending reports and their windows are per process, and correct per replica: a
 * node's reports arrive over its one netmap session, which lives on one replica (a node that
 * moves replica starts a new window there, at worst one extra write). The observed mapping comes
 * from the discovery port of whichever replica the node's WireGuard reaches; two replicas could
 * both write it, the latest wins, which is right for a moving mapping. What is written is in the
 * database (nodes.endpoints, nodes.observed_endpoint) and reaches the other replicas through the
 * change feed. The key index is a per-replica cache of database rows, kept current from the feed.
 *
 * NAT behaviour (what a node's netcheck measured: RFC 4787 mapping and filtering) is stored with
 * the node (nodes.nat_mapping, nodes.nat_filtering) through the same coalescing: a node reports it
 * on each new netmap session and when it changes, so its window lives on the replica holding the
 * session, and the written change reaches peers on every replica through the change feed, and a
 * restarted controller still has it.
 */
import {MeshError} from '../shared/errors.js'
import {usableEndpoints} from '../shared/net/endpoint.js'
import type {Clock, TimerHandle} from '../shared/clock.js'
import type {Writes} from './domain/writes.js'
import type {NodeChange, Store, StoredNode} from './store/store.js'
import type {ChangeFeed} from './change-feed.js'
import {SILENT_LOG, type PartLog} from './context.js'
import {sameNat, type NatBehaviour} from '../shared/nat/behaviour.js'

/** A node's endpoint report waiting for its coalescing window to end (latest value wins). */
interface PendingEndpoints {
  node: StoredNode
  endpoints: string[] | undefined
  /** When the last change of this node was applied (ms). */
  appliedAt: number
  timer: TimerHandle | undefined
}

/** A node's NAT behaviour waiting for its coalescing window to end (latest value wins). */
interface PendingNat {
  readonly nodeId: string
  nat: NatBehaviour | undefined
  /** The last value written (or found unchanged): repeats cost no store call. */
  applied: NatBehaviour | undefined
  appliedAt: number
  timer: TimerHandle | undefined
}

/** A node's observed endpoint waiting for its coalescing window to end (latest value wins). */
interface PendingObserved {
  readonly nodeId: string
  endpoint: string | undefined
  /** The last value written (or found unchanged): repeats cost no store call. */
  applied: string | undefined
  appliedAt: number
  timer: TimerHandle | undefined
}

export interface EndpointTelemetryOptions {
  readonly clock: Clock
  /** At most one endpoint change per node is applied per this window; default 2 s. */
  readonly endpointWindowMs?: number | undefined
  /** Reports are logged at debug level, failures of held ones at warn. */
  readonly log?: PartLog | undefined
}

export class EndpointTelemetry {
  private readonly clock: Clock
  private readonly endpointWindowMs: number
  private readonly log: PartLog
  // Owned by the report/apply methods below; keyed by node id.
  private readonly endpointState = new Map<string, PendingEndpoints>()
  private readonly observedState = new Map<string, PendingObserved>()
  /** Active nodes by WireGuard public key (the discovery port's lookup); built by indexNodeKeys. */
  private keyIndex: Map<string, string> | undefined
  private readonly natState = new Map<string, PendingNat>()

  constructor(
    private readonly store: Pick<Store, 'activeNodeKeys'>,
    private readonly writes: Pick<Writes, 'setNodeEndpoints' | 'setNodeObservedEndpoint' | 'setNodeNat'>,
    private readonly feed: ChangeFeed,
    opts: EndpointTelemetryOptions,
  ) {
    this.clock = opts.clock
    this.endpointWindowMs = opts.endpointWindowMs ?? 2_000
    this.log = opts.log ?? SILENT_LOG
  }

  /**
   * A node reported its endpoint candidates. Coalesced per node: at most one change is written
   * and fanned out per endpoint window; a report inside the window replaces any pending one
   * (latest wins) and is applied when the window ends, so peers always converge on the last
   * report. Without this, one node alternating its reports would cost a DB write and a delta to
   * every peer per frame.
   *
   * Not audited: endpoints are presence telemetry the node sends every few seconds, not an
   * administrative change (the audit log records who changed what; a node's NAT mapping moving
   * is neither). They are logged at debug level instead.
   */
  async reportEndpoints(node: StoredNode, endpoints: readonly string[]): Promise<void> {
    // Each candidate on its own: one that is not an IP literal another node can reach is dropped
    // (never stored, never sent to peers), the others still count.
    const {endpoints: unique, dropped} = usableEndpoints(endpoints)
    if (dropped > 0) this.log.debug({nodeId: node.id, dropped}, 'dropped unusable endpoints from a report')
    const now = this.clock.now()
    let st = this.endpointState.get(node.id)
    if (!st) {
      st = {node, endpoints: undefined, appliedAt: -Infinity, timer: undefined}
      this.endpointState.set(node.id, st)
    }
    st.node = node
    const wait = st.appliedAt + this.endpointWindowMs - now
    if (wait <= 0 && !st.timer) {
      await this.applyEndpoints(st, unique)
      return
    }
    st.endpoints = unique
    if (!st.timer) {
      const entry = st
      entry.timer = this.clock.setTimeout(
        () => {
          entry.timer = undefined
          const latest = entry.endpoints
          entry.endpoints = undefined
          if (latest !== undefined && this.endpointState.get(entry.node.id) === entry) {
            this.applyEndpoints(entry, latest).catch((err: unknown) => {
              if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
                this.log.warn({err, nodeId: entry.node.id}, 'endpoint update failed')
            })
          }
        },
        Math.max(0, wait),
      )
    }
  }

  private async applyEndpoints(st: PendingEndpoints, endpoints: string[]): Promise<void> {
    // The window starts now, before the write: reports arriving while it runs wait for the window.
    const previous = st.appliedAt
    const started = (st.appliedAt = this.clock.now())
    const change = await this.writes.setNodeEndpoints(
      st.node.id,
      endpoints,
      new Date(this.clock.now()).toISOString(),
    )
    if (!change) {
      // Nothing changed: the window is not used up, unless another report already relied on it.
      if (st.appliedAt === started && !st.timer) st.appliedAt = previous
      return
    }
    this.log.debug({nodeId: st.node.id, endpoints}, 'node endpoints changed')
    this.feed.publish(change)
  }

  /**
   * A node reported the NAT behaviour its netcheck measured. Stored with the node (a node change:
   * peers on every replica get the new peer entry) and coalesced like reportEndpoints: at most
   * one change per node per endpoint window, the latest value wins when the window ends, and a
   * repeat of the value last written costs no store call (a node sends it on every new session).
   * So a node whose netcheck flaps between two answers costs one write per window, not one per
   * report. Not audited (telemetry).
   */
  async reportNat(node: {readonly id: string}, nat: NatBehaviour): Promise<void> {
    const now = this.clock.now()
    let st = this.natState.get(node.id)
    if (!st) {
      st = {nodeId: node.id, nat: undefined, applied: undefined, appliedAt: -Infinity, timer: undefined}
      this.natState.set(node.id, st)
    }
    if (!st.timer && st.applied !== undefined && sameNat(st.applied, nat)) return
    const wait = st.appliedAt + this.endpointWindowMs - now
    if (wait <= 0 && !st.timer) {
      await this.applyNat(st, nat)
      return
    }
    st.nat = {mapping: nat.mapping, filtering: nat.filtering}
    if (!st.timer) {
      const entry = st
      entry.timer = this.clock.setTimeout(
        () => {
          entry.timer = undefined
          const latest = entry.nat
          entry.nat = undefined
          if (latest !== undefined && this.natState.get(entry.nodeId) === entry) {
            this.applyNat(entry, latest).catch((err: unknown) => {
              if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
                this.log.warn({err, nodeId: entry.nodeId}, 'NAT behaviour update failed')
            })
          }
        },
        Math.max(0, wait),
      )
    }
  }

  private async applyNat(st: PendingNat, nat: NatBehaviour): Promise<void> {
    if (st.applied !== undefined && sameNat(st.applied, nat)) return
    const previous = st.appliedAt
    const started = (st.appliedAt = this.clock.now())
    let change: NodeChange | undefined
    try {
      change = await this.writes.setNodeNat(st.nodeId, nat)
    } catch (err) {
      // A node removed meanwhile: forget it, so its entry does not linger.
      if (err instanceof MeshError && err.code === 'NOT_FOUND') this.natState.delete(st.nodeId)
      throw err
    }
    st.applied = {mapping: nat.mapping, filtering: nat.filtering}
    if (!change) {
      if (st.appliedAt === started && !st.timer) st.appliedAt = previous
      return
    }
    this.log.debug({nodeId: st.nodeId, nat}, 'node NAT behaviour changed')
    this.feed.publish(change)
  }

  /** Drops a removed node's pending endpoint report (and observed endpoint, and NAT behaviour). */
  forget(nodeId: string): void {
    const nt = this.natState.get(nodeId)
    if (nt?.timer) this.clock.clearTimeout(nt.timer)
    this.natState.delete(nodeId)
    const st = this.endpointState.get(nodeId)
    if (st?.timer) this.clock.clearTimeout(st.timer)
    this.endpointState.delete(nodeId)
    const ob = this.observedState.get(nodeId)
    if (ob?.timer) this.clock.clearTimeout(ob.timer)
    this.observedState.delete(nodeId)
  }

  /**
   * The controller observed a node's public mapping on its discovery port. Stored apart from
   * the endpoints the node reports (a report never erases it), and coalesced per node like
   * reportEndpoints: at most one change per endpoint window, the latest value wins. WireGuard
   * sends an initiation every few seconds, so repeats of the value last written cost no store
   * call. Not audited (telemetry). Unusable values are stored (peers never see them: toPeer
   * filters) so an operator can still see what was observed.
   */
  async reportObservedEndpoint(node: {readonly id: string}, endpoint: string): Promise<void> {
    const now = this.clock.now()
    let st = this.observedState.get(node.id)
    if (!st) {
      st = {nodeId: node.id, endpoint: undefined, applied: undefined, appliedAt: -Infinity, timer: undefined}
      this.observedState.set(node.id, st)
    }
    if (!st.timer && st.applied === endpoint) return
    const wait = st.appliedAt + this.endpointWindowMs - now
    if (wait <= 0 && !st.timer) {
      await this.applyObserved(st, endpoint)
      return
    }
    st.endpoint = endpoint
    if (!st.timer) {
      const entry = st
      entry.timer = this.clock.setTimeout(
        () => {
          entry.timer = undefined
          const latest = entry.endpoint
          entry.endpoint = undefined
          if (latest !== undefined && this.observedState.get(entry.nodeId) === entry) {
            this.applyObserved(entry, latest).catch((err: unknown) => {
              if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
                this.log.warn({err, nodeId: entry.nodeId}, 'observed endpoint update failed')
            })
          }
        },
        Math.max(0, wait),
      )
    }
  }

  private async applyObserved(st: PendingObserved, endpoint: string): Promise<void> {
    if (st.applied === endpoint) return
    const previous = st.appliedAt
    const started = (st.appliedAt = this.clock.now())
    let change: NodeChange | undefined
    try {
      change = await this.writes.setNodeObservedEndpoint(st.nodeId, endpoint)
    } catch (err) {
      // A node removed meanwhile: forget it, so its entry does not linger.
      if (err instanceof MeshError && err.code === 'NOT_FOUND') this.observedState.delete(st.nodeId)
      throw err
    }
    st.applied = endpoint
    if (!change) {
      if (st.appliedAt === started && !st.timer) st.appliedAt = previous
      return
    }
    this.log.debug({nodeId: st.nodeId, observedEndpoint: endpoint}, 'node observed endpoint changed')
    this.feed.publish(change)
  }

  /**
   * Builds the in-memory index of active nodes by WireGuard public key and keeps it current from
   * node changes (the discovery port looks keys up synchronously, once per initiation).
   */
  async indexNodeKeys(): Promise<void> {
    if (this.keyIndex) return
    const index = new Map<string, string>()
    this.keyIndex = index
    // Changes committed before the read are in it; re-applying them later is harmless.
    this.feed.onNodeChange((c) => {
      const before = c.before
      if (before && index.get(before.publicKey) === before.id) index.delete(before.publicKey)
      if (c.node?.status === 'active') index.set(c.node.publicKey, c.node.id)
    })
    for (const n of await this.store.activeNodeKeys()) index.set(n.publicKey, n.id)
  }

  /** The active node with this WireGuard public key (needs indexNodeKeys first). */
  activeNodeByPublicKey(publicKey: string): string | undefined {
    return this.keyIndex?.get(publicKey)
  }

  /**
   * A node's last netmap session closed: writes its pending reports now and forgets their windows
   * (also the NAT value last written: the node's next session may be on another replica, which
   * may change it meanwhile, so this one must not take a repeat for unchanged when it returns).
   */
  async settle(nodeId: string): Promise<void> {
    const nt = this.natState.get(nodeId)
    if (nt) {
      if (nt.timer) this.clock.clearTimeout(nt.timer)
      this.natState.delete(nodeId)
      if (nt.nat !== undefined)
        await this.applyNat(nt, nt.nat).catch((err: unknown) => {
          if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
            this.log.warn({err, nodeId}, 'NAT behaviour update failed')
        })
    }
    const st = this.endpointState.get(nodeId)
    if (!st) return
    if (st.timer) this.clock.clearTimeout(st.timer)
    this.endpointState.delete(nodeId)
    if (st.endpoints !== undefined) await this.applyEndpoints(st, st.endpoints)
  }

  /** Shutdown: writes pending endpoint and NAT reports so nothing a node said is lost. */
  async close(): Promise<void> {
    for (const st of this.observedState.values()) if (st.timer) this.clock.clearTimeout(st.timer)
    this.observedState.clear()
    for (const id of new Set([...this.endpointState.keys(), ...this.natState.keys()])) {
      await this.settle(id).catch((err: unknown) => {
        if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
          this.log.warn({err, nodeId: id}, 'endpoint update failed')
      })
    }
  }
}
