/**
 * The controller's view of how each pair of nodes is connected: it merges what the two nodes of a
 * pair report about each other (netmap reports, controller/api/netmap.ts) into one current path
 * and latency, writes what changed to the store in batches, and tells listeners (the admin event
 * stream) of every path change. It is not the netmap: nothing here reaches a node.
 *
 * Merge rule, per pair (a, b) with a < b, from a's view of b and b's view of a:
 *  1. A side counts only while its node sees a handshake (`online`): an offline side is `none`
 *     whatever path it names. A report without a path comes from a meshd older than the relay,
 *     so an online peer there is `direct`.
 *  2. The pair is `direct` when either side is direct, else `relay` when either side is relayed,
 *     else `none`. Direct wins: a handshake on a direct path proves it works, and during an
 *     upgrade only one side switches first (WireGuard's roaming carries the other over).
 *  3. Latency: the lower of the two sides' latencies measured on the merged path (both measure the
 *     same round trip; the higher one is more likely taken from a busy node or an older sample).
 *     Each side's endpoint is kept only while that side is direct (a relayed peer's endpoint is a
 *     loopback socket of its daemon, of no use to anyone else).
 *  4. A pair neither of whose nodes has a netmap session keeps its stored state: the controller
 *     does not know, and the data plane does not depend on it (ARCHITECTURE principle 2).
 *
 * Write coalescing: a report only marks its pair dirty; one flush per `flushMs` (default 1 s)
 * merges the dirty pairs and writes, in one transaction, only those whose path changed, whose
 * latency moved by more than shared/nat/latency.ts allows, or whose direct endpoint changed. A
 * pair that flaps inside one flush window writes nothing; a flush writes at most `maxWrites`
 * pairs and leaves the rest for the next. Reports that repeat what is stored write nothing.
 *
 * Owned by the event loop of the netmap hub: report/forget are synchronous and never await.
 */
import {systemClock, type Clock, type TimerHandle} from '../shared/clock.js'
import {latencyChanged} from '../shared/nat/latency.js'
import type {Connection, ConnectionEvent, ConnectionLogEntry, Path} from '../shared/protocol/control-api.js'
import type {PeerPath} from '../shared/protocol/netmap.js'
import type {ConnectionWrite, Page, PageRequest, Store, StoredConnection} from './store/store.js'
import {storeWrites, type Writes} from './domain/writes.js'

/** What one node last reported about one peer (controller/api/netmap.ts PeerLink). */
export interface PeerView {
  readonly online: boolean
  /** The endpoint the node's WireGuard uses for the peer; null when none or unusable. */
  readonly endpoint: string | null
  /** Absent from meshd older than the relay. */
  readonly path?: PeerPath | undefined
  readonly latencyMs?: number | undefined
}

/** A side's view reduced to what the merge uses (rule 1). */
interface Side {
  readonly path: Path
  readonly latencyMs: number | null
  readonly endpoint: string | null
}

/** The merged state of a pair (rules 2 and 3). */
export interface MergedPair {
  readonly path: Path
  readonly latencyMs: number | null
  readonly endpointA: string | null
  readonly endpointB: string | null
}

/** A path change, as the admin event stream tells it. */
export interface ConnectionChange extends ConnectionLogEntry {
  readonly networkId: string
  readonly tenantId: string
}

/** Rule 1: what one side's report counts as. */
export function sideOf(view: PeerView): Side {
  const path: Path = !view.online ? 'none' : (view.path ?? 'direct')
  return {
    path,
    latencyMs: path === 'none' ? null : (view.latencyMs ?? null),
    endpoint: path === 'direct' ? view.endpoint : null,
  }
}

/** Rules 2 and 3; undefined when neither side reports (rule 4: keep what is stored). */
export function mergePair(a: PeerView | undefined, b: PeerView | undefined): MergedPair | undefined {
  if (!a && !b) return undefined
  const sa = a ? sideOf(a) : undefined
  const sb = b ? sideOf(b) : undefined
  const paths = [sa?.path, sb?.path]
  const path: Path = paths.includes('direct') ? 'direct' : paths.includes('relay') ? 'relay' : 'none'
  const latencies = [sa, sb]
    .filter((s): s is Side => s !== undefined && s.path === path && s.latencyMs !== null)
    .map((s) => s.latencyMs as number)
  return {
    path,
    latencyMs: path === 'none' || latencies.length === 0 ? null : Math.min(...latencies),
    endpointA: sa?.endpoint ?? null,
    endpointB: sb?.endpoint ?? null,
  }
}

/** The log event for a path change; undefined when the path did not change. */
export function eventFor(from: Path, to: Path): ConnectionEvent | undefined {
  if (from === to) return undefined
  if (from === 'none') return 'connected'
  if (to === 'none') return 'disconnected'
  return to === 'direct' ? 'upgraded_to_direct' : 'fell_back_to_relay'
}

/**
 * What to write for a pair whose stored state is `stored` (null: no row, path none) and whose
 * merged state is `merged`; undefined when nothing worth a write changed.
 */
export function writeFor(
  nodeA: string,
  nodeB: string,
  stored: StoredConnection | null,
  merged: MergedPair,
): ConnectionWrite | undefined {
  const from: Path = stored?.path ?? 'none'
  const event = eventFor(from, merged.path)
  if (
    !event &&
    (merged.path === 'none' ||
      (stored &&
        !latencyChanged(stored.latencyMs, merged.latencyMs) &&
        stored.endpointA === merged.endpointA &&
        stored.endpointB === merged.endpointB))
  )
    return undefined
  return {nodeA, nodeB, ...merged, ...(event ? {event: {event, from}} : {})}
}

interface PairState {
  readonly a: string
  readonly b: string
  /** a's view of b, and b's view of a. */
  viewA: PeerView | undefined
  viewB: PeerView | undefined
  /** As stored; null when the pair has no row. */
  stored: StoredConnection | null
}

interface NetState {
  readonly id: string
  tenantId: string
  readonly pairs: Map<string, PairState>
  readonly dirty: Set<string>
  /** Nodes with a netmap session that reported into this network. */
  readonly reporters: Set<string>
  /** Until the stored pairs are read, nothing is flushed. */
  loaded: boolean
}

export interface ConnectionTrackerOptions {
  readonly clock?: Clock | undefined
  /** How often dirty pairs are merged and written; default 1,000 ms. */
  readonly flushMs?: number | undefined
  /** Pairs written per flush at most; default 5,000. */
  readonly maxWrites?: number | undefined
  readonly log?: {warn(obj: object, msg: string): void} | undefined
}

const pairKey = (a: string, b: string): string => `${a}\u0000${b}`

export class ConnectionTracker {
  private readonly clock: Clock
  private readonly flushMs: number
  private readonly maxWrites: number
  private readonly log: NonNullable<ConnectionTrackerOptions['log']>
  private readonly nets = new Map<string, NetState>()
  private readonly listeners = new Set<(c: ConnectionChange) => void>()
  private timer: TimerHandle | undefined
  private flushing: Promise<void> | undefined
  /** Set when the last flush failed. */
  private failed = false
  private closed = false
  private readonly writes: Writes

  constructor(
    private readonly store: Store,
    opts: ConnectionTrackerOptions = {},
  ) {
    this.writes = storeWrites(store)
    this.clock = opts.clock ?? systemClock
    this.flushMs = opts.flushMs ?? 1_000
    this.maxWrites = opts.maxWrites ?? 5_000
    this.log = opts.log ?? {warn: () => undefined}
  }

  /** Path changes, after they are committed. */
  onChange(fn: (c: ConnectionChange) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** A node reported its view of one peer (both of the same network; the hub checked them). */
  report(net: {id: string; tenantId: string}, reporterId: string, peerId: string, view: PeerView): void {
    if (this.closed || reporterId === peerId) return
    const st = this.net(net)
    st.reporters.add(reporterId)
    const [a, b] = reporterId < peerId ? [reporterId, peerId] : [peerId, reporterId]
    const key = pairKey(a, b)
    let pair = st.pairs.get(key)
    if (!pair) st.pairs.set(key, (pair = {a, b, viewA: undefined, viewB: undefined, stored: null}))
    if (reporterId === a) pair.viewA = view
    else pair.viewB = view
    this.markDirty(st, key)
  }

  /**
   * A new session of the node starts its reports over: its earlier views are dropped without
   * marking the pairs dirty (the session's first report follows at once and sets them again).
   */
  resetReporter(networkId: string, reporterId: string): void {
    const st = this.nets.get(networkId)
    if (!st) return
    for (const pair of st.pairs.values()) {
      if (pair.a === reporterId) pair.viewA = undefined
      else if (pair.b === reporterId) pair.viewB = undefined
    }
  }

  /** The node's last netmap session closed: its views no longer count (rule 4 for its pairs). */
  forgetReporter(networkId: string, reporterId: string): void {
    const st = this.nets.get(networkId)
    if (!st || this.closed) return
    st.reporters.delete(reporterId)
    for (const [key, pair] of st.pairs) {
      if (pair.a === reporterId && pair.viewA) pair.viewA = undefined
      else if (pair.b === reporterId && pair.viewB) pair.viewB = undefined
      else continue
      this.markDirty(st, key)
    }
    this.dropIfIdle(st)
  }

  /** The node was removed or is no longer active: its pairs leave memory (rows go with the node). */
  forgetNode(networkId: string, nodeId: string): void {
    const st = this.nets.get(networkId)
    if (!st) return
    st.reporters.delete(nodeId)
    for (const [key, pair] of st.pairs) {
      if (pair.a !== nodeId && pair.b !== nodeId) continue
      st.pairs.delete(key)
      st.dirty.delete(key)
    }
    this.dropIfIdle(st)
  }

  /** How many pairs of the network are held in memory (live pairs and pairs with a row). */
  pairsHeld(networkId: string): number {
    return this.nets.get(networkId)?.pairs.size ?? 0
  }

  list(
    networkId: string,
    filter: {nodeId?: string | undefined},
    page: PageRequest,
  ): Promise<Page<Connection>> {
    return this.store.listConnections(networkId, filter, page)
  }

  logOf(
    networkId: string,
    filter: {nodeId?: string | undefined},
    page: PageRequest,
  ): Promise<Page<ConnectionLogEntry>> {
    return this.store.connectionLog(networkId, filter, page)
  }

  /**
   * Writes every dirty pair now (tests, shutdown); resolves when nothing is left to write, or
   * after a flush that failed (the failure is logged; the pairs stay dirty for the next one).
   */
  async flush(): Promise<void> {
    for (let round = 0; round < 10_000; round++) {
      if (this.flushing) {
        await this.flushing
        continue
      }
      const pending = [...this.nets.values()].some((n) => n.dirty.size > 0 || !n.loaded)
      if (!pending) return
      this.failed = false
      await this.runFlush()
      if (this.failed) return
    }
  }

  /** Shutdown: writes what is pending, then takes no more reports. */
  async close(): Promise<void> {
    if (this.timer) this.clock.clearTimeout(this.timer)
    this.timer = undefined
    await this.flush().catch((err: unknown) => this.log.warn({err}, 'connection flush at shutdown failed'))
    this.closed = true
    this.nets.clear()
  }

  private net(net: {id: string; tenantId: string}): NetState {
    const st = this.nets.get(net.id)
    if (st) {
      st.tenantId = net.tenantId
      return st
    }
    const created: NetState = {
      id: net.id,
      tenantId: net.tenantId,
      pairs: new Map(),
      dirty: new Set(),
      reporters: new Set(),
      loaded: false,
    }
    this.nets.set(net.id, created)
    return created
  }

  private markDirty(st: NetState, key: string): void {
    st.dirty.add(key)
    this.schedule()
  }

  private schedule(): void {
    if (this.timer || this.closed) return
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      void this.runFlush()
    }, this.flushMs)
  }

  /** A network no node reports into, with nothing to write, leaves memory. */
  private dropIfIdle(st: NetState): void {
    if (st.reporters.size === 0 && st.dirty.size === 0 && !this.flushing) this.nets.delete(st.id)
  }

  /**
   * Pairs just merged that are down on both sides and have no stored row leave memory: what is
   * held follows the pairs that talk (or have a row), not every pair that was once reported.
   * Dropping one changes no merge: an absent view and an offline one both count as `none`.
   */
  private prune(st: NetState, keys: readonly string[]): void {
    for (const key of keys) {
      const pair = st.pairs.get(key)
      if (!pair || pair.stored || st.dirty.has(key)) continue
      if (!pair.viewA?.online && !pair.viewB?.online) st.pairs.delete(key)
    }
  }

  private runFlush(): Promise<void> {
    if (this.flushing) return this.flushing
    const run = this.flushOnce()
      .catch((err: unknown) => {
        this.failed = true
        this.log.warn({err}, 'connection flush failed')
      })
      .finally(() => {
        this.flushing = undefined
        for (const st of [...this.nets.values()]) this.dropIfIdle(st)
        if ([...this.nets.values()].some((n) => n.dirty.size > 0)) this.schedule()
      })
    this.flushing = run
    return run
  }

  private async flushOnce(): Promise<void> {
    let budget = this.maxWrites
    for (const st of [...this.nets.values()]) {
      if (budget <= 0) break
      if (!st.loaded) {
        // The stored pairs are the starting point: without them a restart would log every pair
        // as newly connected.
        const rows = await this.store.allConnections(st.id)
        for (const row of rows) {
          const key = pairKey(row.nodeA, row.nodeB)
          const pair = st.pairs.get(key)
          if (pair) pair.stored = row
          else
            st.pairs.set(key, {a: row.nodeA, b: row.nodeB, viewA: undefined, viewB: undefined, stored: row})
        }
        st.loaded = true
      }
      if (st.dirty.size === 0) continue
      const keys: string[] = []
      const writes: ConnectionWrite[] = []
      for (const key of st.dirty) {
        if (writes.length >= budget) break
        keys.push(key)
        const pair = st.pairs.get(key)
        const merged = pair && mergePair(pair.viewA, pair.viewB)
        const w = pair && merged && writeFor(pair.a, pair.b, pair.stored, merged)
        if (w) writes.push(w)
      }
      for (const key of keys) st.dirty.delete(key)
      budget -= writes.length
      if (writes.length === 0) {
        this.prune(st, keys)
        continue
      }
      const at = new Date(this.clock.now()).toISOString()
      let logged: ConnectionLogEntry[]
      try {
        logged = await this.writes.writeConnections(st.id, writes, at)
      } catch (err) {
        // Tried again with the next flush (a full disk heals; a removed network is dropped).
        for (const key of keys) if (st.pairs.has(key)) st.dirty.add(key)
        throw err
      }
      for (const w of writes) {
        const pair = st.pairs.get(pairKey(w.nodeA, w.nodeB))
        if (!pair) continue
        pair.stored =
          w.path === 'none'
            ? null
            : {
                nodeA: w.nodeA,
                nodeB: w.nodeB,
                path: w.path,
                latencyMs: w.latencyMs,
                endpointA: w.endpointA,
                endpointB: w.endpointB,
                since: w.event ? at : (pair.stored?.since ?? at),
                updatedAt: at,
              }
      }
      this.prune(st, keys)
      for (const entry of logged) {
        const change: ConnectionChange = {...entry, networkId: st.id, tenantId: st.tenantId}
        for (const fn of this.listeners) {
          try {
            fn(change)
          } catch (err) {
            this.log.warn({err}, 'connection change listener failed')
          }
        }
      }
    }
  }
}
