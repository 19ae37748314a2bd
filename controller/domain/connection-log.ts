/**
 * Pair states reported by the NAT traversal work (telemetry: no audit entry, no netmap change):
 * the merge rule and the rules of writeConnections and writeConnectionSides, run inside
 * store.write(tx => ...).
 */
import {latencyChanged} from '../../shared/nat/latency.js'
import type {ConnectionEvent, ConnectionLogEntry, Path} from '../../shared/protocol/control-api.js'
import {
  CONNECTION_LOG_KEEP,
  type ConnectionSide,
  type ConnectionWrite,
  type SideWrite,
  type StoredConnection,
  type StoredSide,
  type Tx,
} from '../store/store.js'

/**
 * Writes a batch of pair states: upserts (or for `none` deletes) each pair's row, appends a log
 * entry for each write with an `event`, and keeps the newest CONNECTION_LOG_KEEP log entries of
 * the network (by count, not age, so a flapping pair cannot fill the disk however fast it
 * flaps). Writes naming a node that is not in the network, or not as the ordered pair a < b,
 * are skipped. Returns the appended log entries, with node names.
 */
export async function writeConnections(
  tx: Tx,
  networkId: string,
  writes: readonly ConnectionWrite[],
  at: string,
): Promise<ConnectionLogEntry[]> {
  if (writes.length === 0) return []
  const names = await tx.nodeNamesIn(networkId, [...new Set(writes.flatMap((w) => [w.nodeA, w.nodeB]))])
  const done: ConnectionWrite[] = []
  for (const w of writes) {
    if (!names.has(w.nodeA) || !names.has(w.nodeB) || !(w.nodeA < w.nodeB)) continue
    if (w.path === 'none') await tx.deleteConnection(networkId, w.nodeA, w.nodeB)
    // `since` moves only with a path change (an event); a latency or endpoint update keeps it.
    else await tx.upsertConnection(networkId, w, at, w.event !== undefined)
    done.push(w)
  }
  return logEvents(tx, networkId, done, names, at)
}

/** Appends a log entry for each write with an event, and trims the network's log. */
async function logEvents(
  tx: Tx,
  networkId: string,
  writes: readonly ConnectionWrite[],
  names: ReadonlyMap<string, string>,
  at: string,
): Promise<ConnectionLogEntry[]> {
  const logged: ConnectionLogEntry[] = []
  for (const w of writes) {
    if (!w.event) continue
    const id = await tx.appendConnectionLog(networkId, {
      nodeA: w.nodeA,
      nodeB: w.nodeB,
      event: w.event.event,
      from: w.event.from,
      to: w.path,
      latencyMs: w.latencyMs,
      at,
    })
    logged.push({
      id,
      at,
      a: {id: w.nodeA, name: names.get(w.nodeA) as string},
      b: {id: w.nodeB, name: names.get(w.nodeB) as string},
      event: w.event.event,
      from: w.event.from,
      to: w.path,
      latencyMs: w.latencyMs,
    })
  }
  if (logged.length > 0) await tx.trimConnectionLog(networkId, CONNECTION_LOG_KEEP)
  return logged
}

// ---- the merge rule (controller/connections.ts states it; shared by every replica's writes)

/** The merged state of a pair (rules 2 and 3 of controller/connections.ts). */
export interface MergedPair {
  readonly path: Path
  readonly latencyMs: number | null
  readonly endpointA: string | null
  readonly endpointB: string | null
}

/** Rules 2 and 3 over the sides that count; undefined when neither does (rule 4: keep what is stored). */
export function mergeSides(
  sa: ConnectionSide | undefined,
  sb: ConnectionSide | undefined,
): MergedPair | undefined {
  if (!sa && !sb) return undefined
  const paths = [sa?.path, sb?.path]
  const path: Path = paths.includes('direct') ? 'direct' : paths.includes('relay') ? 'relay' : 'none'
  const latencies = [sa, sb]
    .filter((s): s is ConnectionSide => s !== undefined && s.path === path && s.latencyMs !== null)
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

const sameSide = (s: ConnectionSide, t: ConnectionSide): boolean =>
  s.path === t.path && s.latencyMs === t.latencyMs && s.endpoint === t.endpoint

/** A pair's side after a SideWrite field (see SideWrite); `stored` itself when nothing changes. */
function nextSide(
  stored: StoredSide | null,
  write: ConnectionSide | null | undefined,
  replica: string,
  at: string,
): StoredSide | null {
  if (write === undefined) return stored
  if (write === null) return stored && stored.replica === replica ? null : stored
  if (stored && stored.replica === replica && sameSide(stored, write)) return stored
  return {path: write.path, latencyMs: write.latencyMs, endpoint: write.endpoint, replica, at}
}

/** What writeConnectionSides did to one pair. */
export interface SideWriteResult {
  readonly nodeA: string
  readonly nodeB: string
  /** The pair has a row after the write (its sides are stored). */
  readonly stored: boolean
}

/**
 * The write of one controller replica (`replica`) for the pairs whose nodes report to it: the
 * path state shared by replicas on one database. For each pair, under the pair's lock:
 *  1. the stored row is read with both sides (Tx.lockConnections);
 *  2. the sides this replica holds are replaced (a null clears a side only where this replica
 *     wrote it: a session that closed here must not wipe the side a newer session of the node
 *     on another replica wrote);
 *  3. a side counts when this replica wrote it or its replica still holds a live presence row
 *     of the node: a side left by a replica that died stops counting once that replica's
 *     presence rows expire (PRESENCE_TTL_MS), with no rewrite of live sides; on SQLite (one
 *     process) only this process's sides count, so sides from before a restart are "not
 *     reporting" until the node reports again, as when views lived in memory;
 *  4. the merged state is computed from the sides that count (mergeSides; neither: rule 4, the
 *     stored state stays), written and logged as writeConnections does, and the sides stored
 *     with the row (a pair whose merged path is `none` has no row, so no sides either).
 * Two replicas writing the two sides of a pair at the same moment thus queue on the lock and
 * the second merges from the first's side. Writes naming a node that is not in the network, or
 * not as the ordered pair a < b, are skipped. Returns the log entries appended (with node names)
 * and, per pair written, whether it has a row now.
 */
export async function writeConnectionSides(
  tx: Tx,
  networkId: string,
  replica: string,
  writes: readonly SideWrite[],
  at: string,
): Promise<{logged: ConnectionLogEntry[]; pairs: SideWriteResult[]}> {
  if (writes.length === 0) return {logged: [], pairs: []}
  const names = await tx.nodeNamesIn(networkId, [...new Set(writes.flatMap((w) => [w.nodeA, w.nodeB]))])
  const valid = new Map<string, SideWrite>()
  for (const w of writes) {
    if (!names.has(w.nodeA) || !names.has(w.nodeB) || !(w.nodeA < w.nodeB)) continue
    valid.set(`${w.nodeA} ${w.nodeB}`, w)
  }
  const rows = new Map(
    (await tx.lockConnections(networkId, [...valid.values()], at)).map((r) => [`${r.nodeA} ${r.nodeB}`, r]),
  )
  const merges: ConnectionWrite[] = []
  const pairs: SideWriteResult[] = []
  for (const [key, w] of valid) {
    const row = rows.get(key) ?? null
    const sideA = nextSide(row?.sideA ?? null, w.a, replica, at)
    const sideB = nextSide(row?.sideB ?? null, w.b, replica, at)
    const counts = (s: StoredSide | null, stored: StoredSide | null, held: boolean) =>
      s !== null && (s.replica === replica || (s === stored && held))
    const merged = mergeSides(
      counts(sideA, row?.sideA ?? null, row?.heldA ?? false) ? (sideA as StoredSide) : undefined,
      counts(sideB, row?.sideB ?? null, row?.heldB ?? false) ? (sideB as StoredSide) : undefined,
    )
    const mw = merged && writeFor(w.nodeA, w.nodeB, row, merged)
    if (mw) merges.push(mw)
    const stored = mw ? mw.path !== 'none' : row !== null
    const sidesMoved = sideA !== (row?.sideA ?? null) || sideB !== (row?.sideB ?? null)
    const sides = {a: sideA, b: sideB}
    // `since` moves only with a path change (an event); a latency or endpoint update keeps it.
    if (mw && mw.path === 'none') await tx.deleteConnection(networkId, w.nodeA, w.nodeB)
    else if (mw) await tx.upsertConnection(networkId, mw, at, mw.event !== undefined, sides)
    else if (stored && sidesMoved) await tx.setConnectionSides(networkId, w.nodeA, w.nodeB, sides)
    pairs.push({nodeA: w.nodeA, nodeB: w.nodeB, stored})
  }
  const logged = await logEvents(tx, networkId, merges, names, at)
  return {logged, pairs}
}
