/**
 * Pair states reported by the NAT traversal work (telemetry: no audit entry, no netmap change):
 * the rules of writeConnections, run inside store.write(tx => ...).
 */
import type {ConnectionLogEntry} from '../../shared/protocol/control-api.js'
import {CONNECTION_LOG_KEEP, type ConnectionWrite, type Tx} from '../store/store.js'

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
  const logged: ConnectionLogEntry[] = []
  for (const w of writes) {
    const a = names.get(w.nodeA)
    const b = names.get(w.nodeB)
    if (a === undefined || b === undefined || !(w.nodeA < w.nodeB)) continue
    if (w.path === 'none') await tx.deleteConnection(networkId, w.nodeA, w.nodeB)
    // `since` moves only with a path change (an event); a latency or endpoint update keeps it.
    else await tx.upsertConnection(networkId, w, at, w.event !== undefined)
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
      a: {id: w.nodeA, name: a},
      b: {id: w.nodeB, name: b},
      event: w.event.event,
      from: w.event.from,
      to: w.path,
      latencyMs: w.latencyMs,
    })
  }
  if (logged.length > 0) await tx.trimConnectionLog(networkId, CONNECTION_LOG_KEEP)
  return logged
}
