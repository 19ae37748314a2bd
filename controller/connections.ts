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
 * Several controller replicas on one database (README "Several controller replicas"): a's
 * netmap session may be on one replica and b's on another, so no process holds both views. Each
 * side is therefore stored with the pair's row (migration 0008: its path, latency, endpoint, the
 * replica that wrote it and when), and the merge runs inside the write transaction, under the
 * pair's lock, from both stored sides (controller/domain/connection-log.ts writeConnectionSides).
 * A replica writes only the sides of the nodes that report to it; one that stops reporting here
 * (session closed; a reset that left the peer out) has its side cleared, but only where this
 * replica wrote it. A side written by a replica that died counts only while that replica's
 * presence row of the node lives (30 s after its last heartbeat): no TTL on sides themselves,
 * which would need every unchanged side rewritten periodically; when the node reconnects
 * elsewhere its first report, after the reset, takes the side over.
 *
 * Write coalescing: a report only marks its pair dirty; one flush per `flushMs` (default 1 s)
 * writes, in one transaction, the dirty pairs whose side held here changed: its path, its direct
 * endpoint, or its latency by more than shared/nat/latency.ts allows (compared with what this
 * replica last wrote for it). A pair that flaps inside one flush window writes nothing; a flush
 * writes at most `maxWrites` pairs and leaves the rest for the next. Reports that repeat what
 * was written write nothing; the merged row and the log change only when the merge of the stored
 * sides changes them (writeFor).
 *
 * Owned by the event loop of the netmap hub: report/forget are synchronous and never await.
 */
import {randomBytes} from 'node:crypto'
import {systemClock, type Clock, type TimerHandle} from '../shared/clock.js'
import {latencyChanged} from '../shared/nat/latency.js'
import type {Connection, ConnectionLogEntry, Path} from '../shared/protocol/control-api.js'
import type {PeerPath} from '../shared/protocol/netmap.js'
import type {ConnectionSide, Page, PageRequest, SideWrite, Store} from './store/store.js'
import {mergeSides, type MergedPair} from './domain/connection-log.js'
import {storeWrites, type Writes} from './domain/writes.js'

export {eventFor, mergeSides, writeFor, type MergedPair} from './domain/connection-log.js'

/** What one node last reported about one peer (controller/api/netmap.ts PeerLink). */
export interface PeerView {
  readonly online: boolean
  /** The endpoint the node's WireGuard uses for the peer; null when none or unusable. */
  readonly endpoint: string | null
  /** Absent from meshd older than the relay. */
  readonly path?: PeerPath | undefined
  readonly latencyMs?: number | undefined
}

/** A path change, as the admin event stream tells it. */
export interface ConnectionChange extends ConnectionLogEntry {
  readonly networkId: string
  readonly tenantId: string
}

/** Rule 1: what one side's report counts as. */
export function sideOf(view: PeerView): ConnectionSide {
  const path: Path = !view.online ? 'none' : (view.path ?? 'direct')
  return {
    path,
    latencyMs: path === 'none' ? null : (view.latencyMs ?? null),
    endpoint: path === 'direct' ? view.endpoint : null,
  }
}

/** Rules 2 and 3 over two views; undefined when neither side reports (rule 4: keep what is stored). */
export function mergePair(a: PeerView | undefined, b: PeerView | undefined): MergedPair | undefined {
  return mergeSides(a && sideOf(a), b && sideOf(b))
}

/** Whether a side moved enough to be written again (the same bar as the merged row's). */
const sideMoved = (prev: ConnectionSide, next: ConnectionSide): boolean =>
  prev.path !== next.path || prev.endpoint !== next.endpoint || latencyChanged(prev.latencyMs, next.latencyMs)

/** One side of a pair as this replica holds it. */
interface HeldSide {
  /** The node's last view of its peer, while it reports to this replica. */
  view: PeerView | undefined
  /** What this replica last wrote for the side (null: cleared); undefined: nothing yet. */
  sent: ConnectionSide | null | undefined
  /**
   * Set by a reset: the next report is written even if it repeats `sent`, so that this replica
   * takes the side over (the node may come from a replica that died).
   */
  force: boolean
}

interface PairState {
  readonly a: string
  readonly b: string
  /** a's view of b, and b's view of a. */
  readonly sideA: HeldSide
  readonly sideB: HeldSide
  /** The pair had a row after this replica's last write of it. */
  stored: boolean
}

interface NetState {
  readonly id: string
  tenantId: string
  readonly pairs: Map<string, PairState>
  /**
   * Pair keys by node, for what one node's session does to its pairs (reset, close, removal):
   * without it each of those walked every pair of the network, and 10,000 nodes reconnecting
   * after a restart cost 10,000 walks of ~40,000 pairs (43 s of CPU in the bench).
   */
  readonly byNode: Map<string, Set<string>>
  readonly dirty: Set<string>
  /** Nodes with a netmap session that reported into this network. */
  readonly reporters: Set<string>
}

export interface ConnectionTrackerOptions {
  readonly clock?: Clock | undefined
  /** How often dirty pairs are merged and written; default 1,000 ms. */
  readonly flushMs?: number | undefined
  /** Pairs written per flush at most; default 5,000. */
  readonly maxWrites?: number | undefined
  /**
   * This controller's name among replicas: the `replica` of its presence rows (main.ts
   * replicaName), which decides whether its sides count on other replicas. Default: a name of
   * its own, right for a single controller (SQLite).
   */
  readonly replica?: string | undefined
  readonly log?: {warn(obj: object, msg: string): void} | undefined
}

const pairKey = (a: string, b: string): string => `${a}\u0000${b}`

/**
 * The field of a side in this flush's SideWrite: the view when it moved from what was written
 * (or a reset asks for a takeover), null when the node stopped reporting here after a write,
 * undefined when there is nothing to write.
 */
function sideToWrite(side: HeldSide): ConnectionSide | null | undefined {
  if (side.view) {
    const next = sideOf(side.view)
    return side.force || !side.sent || sideMoved(side.sent, next) ? next : undefined
  }
  return side.sent ? null : undefined
}

/** A held side's current view when it differs at all from what was written; else undefined. */
function freshSide(side: HeldSide): ConnectionSide | undefined {
  if (!side.view || !side.sent) return undefined
  const next = sideOf(side.view)
  const same =
    next.path === side.sent.path &&
    next.latencyMs === side.sent.latencyMs &&
    next.endpoint === side.sent.endpoint
  return same ? undefined : next
}

/** A pair enters the network's state and its nodes' index. */
function addPair(st: NetState, key: string, pair: PairState): void {
  st.pairs.set(key, pair)
  for (const id of [pair.a, pair.b]) {
    let keys = st.byNode.get(id)
    if (!keys) st.byNode.set(id, (keys = new Set()))
    keys.add(key)
  }
}

/** A pair leaves the network's state and its nodes' index. */
function deletePair(st: NetState, key: string): void {
  const pair = st.pairs.get(key)
  if (!pair) return
  st.pairs.delete(key)
  for (const id of [pair.a, pair.b]) {
    const keys = st.byNode.get(id)
    keys?.delete(key)
    if (keys?.size === 0) st.byNode.delete(id)
  }
}

/** The pairs of `nodeId` (a copy: callers may delete while they walk). */
function pairsOf(st: NetState, nodeId: string): [string, PairState][] {
  const out: [string, PairState][] = []
  for (const key of st.byNode.get(nodeId) ?? []) {
    const pair = st.pairs.get(key)
    if (pair) out.push([key, pair])
  }
  return out
}

export class ConnectionTracker {
  private readonly clock: Clock
  private readonly flushMs: number
  private readonly maxWrites: number
  private readonly replica: string
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
    this.replica = opts.replica ?? `tracker-${randomBytes(6).toString('hex')}`
    this.log = opts.log ?? {warn: () => undefined}
  }

  /** Path changes committed by this replica's writes. */
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
    if (!pair) {
      const side = (): HeldSide => ({view: undefined, sent: undefined, force: false})
      pair = {a, b, sideA: side(), sideB: side(), stored: false}
      addPair(st, key, pair)
    }
    ;(reporterId === a ? pair.sideA : pair.sideB).view = view
    this.markDirty(st, key)
  }

  /**
   * A new session of the node starts its reports over: its earlier views are dropped, and its
   * next report of each peer is written even if it repeats the last (this replica takes the
   * side over). Peers the new session does not report again are cleared at the next flush.
   */
  resetReporter(networkId: string, reporterId: string): void {
    const st = this.nets.get(networkId)
    if (!st || this.closed) return
    for (const [key, pair] of pairsOf(st, reporterId)) {
      const side = pair.a === reporterId ? pair.sideA : pair.sideB
      side.view = undefined
      side.force = true
      this.markDirty(st, key)
    }
  }

  /** The node's last netmap session closed: its views no longer count (rule 4 for its pairs). */
  forgetReporter(networkId: string, reporterId: string): void {
    const st = this.nets.get(networkId)
    if (!st || this.closed) return
    st.reporters.delete(reporterId)
    for (const [key, pair] of pairsOf(st, reporterId)) {
      const side = pair.a === reporterId ? pair.sideA : pair.sideB
      if (!side.view && !side.sent) continue
      side.view = undefined
      this.markDirty(st, key)
    }
    this.dropIfIdle(st)
  }

  /** The node was removed or is no longer active: its pairs leave memory (rows go with the node). */
  forgetNode(networkId: string, nodeId: string): void {
    const st = this.nets.get(networkId)
    if (!st) return
    st.reporters.delete(nodeId)
    for (const [key] of pairsOf(st, nodeId)) {
      deletePair(st, key)
      st.dirty.delete(key)
    }
    this.dropIfIdle(st)
  }

  /** How many pairs of the network are held in memory (live pairs and pairs with a side written here). */
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
      const pending = [...this.nets.values()].some((n) => n.dirty.size > 0)
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
      byNode: new Map(),
      dirty: new Set(),
      reporters: new Set(),
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
   * Pairs just flushed that are down on both sides held here, and that either have no row or
   * hold no side written here, leave memory: what is held follows the pairs that talk, not every
   * pair that was once reported. Dropping one changes no merge: an absent view and an offline
   * one both count as `none`, and a side left in a row is cleared by the flush before (or, on
   * PostgreSQL, stops counting with this replica's presence row).
   */
  private prune(st: NetState, keys: readonly string[]): void {
    for (const key of keys) {
      const pair = st.pairs.get(key)
      if (!pair || st.dirty.has(key) || pair.sideA.view?.online || pair.sideB.view?.online) continue
      if (!pair.stored || (!pair.sideA.sent && !pair.sideB.sent)) deletePair(st, key)
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
      if (st.dirty.size === 0) continue
      const keys: string[] = []
      const writes: SideWrite[] = []
      for (const key of st.dirty) {
        if (writes.length >= budget) break
        keys.push(key)
        const pair = st.pairs.get(key)
        if (!pair) continue
        let a = sideToWrite(pair.sideA)
        let b = sideToWrite(pair.sideB)
        if (a === undefined && b === undefined) continue
        // The row is written anyway: a side held here goes with its latest value, jitter
        // included, so the merge sees what one process seeing both views would.
        if (a === undefined) a = freshSide(pair.sideA)
        if (b === undefined) b = freshSide(pair.sideB)
        writes.push({
          nodeA: pair.a,
          nodeB: pair.b,
          ...(a !== undefined ? {a} : {}),
          ...(b !== undefined ? {b} : {}),
        })
      }
      for (const key of keys) st.dirty.delete(key)
      budget -= writes.length
      if (writes.length === 0) {
        this.prune(st, keys)
        continue
      }
      const at = new Date(this.clock.now()).toISOString()
      let result: Awaited<ReturnType<Writes['writeConnectionSides']>>
      try {
        result = await this.writes.writeConnectionSides(st.id, this.replica, writes, at)
      } catch (err) {
        // Tried again with the next flush (a full disk heals; a removed network is dropped).
        for (const key of keys) if (st.pairs.has(key)) st.dirty.add(key)
        throw err
      }
      const stored = new Map(result.pairs.map((p) => [pairKey(p.nodeA, p.nodeB), p.stored]))
      for (const w of writes) {
        const key = pairKey(w.nodeA, w.nodeB)
        const pair = st.pairs.get(key)
        if (!pair) continue
        // What was sent is what the row now holds for the side (or, for a pair skipped because
        // a node left, what no row holds: the node's removal drops the pair from memory too).
        if (w.a !== undefined) pair.sideA.sent = w.a
        if (w.b !== undefined) pair.sideB.sent = w.b
        if (w.a !== undefined) pair.sideA.force = false
        if (w.b !== undefined) pair.sideB.force = false
        pair.stored = stored.get(key) ?? false
      }
      // A reset that was not followed by a report of the pair leaves nothing to take over.
      for (const key of keys) {
        const pair = st.pairs.get(key)
        if (pair && !pair.sideA.view) pair.sideA.force = false
        if (pair && !pair.sideB.view) pair.sideB.force = false
      }
      this.prune(st, keys)
      for (const entry of result.logged) {
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
