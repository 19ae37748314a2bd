/**
 * Turns what a node sees of its peers into bounded report frames that carry only changes.
 *
 * A report used to carry stats for every peer every 10 s: in a network of ~1,500 nodes one frame
 * passed the controller's frame limit, the controller closed the socket, and the daemon
 * reconnected and reported again, forever. Now the first report of a session carries every peer
 * (split into frames of REPORT_LIMITS.peersPerFrame, at most REPORT_LIMITS.framesPerReport per
 * report; the rest follows with the next reports), and later ones only the peers whose entry
 * changed. Entries are coarse on purpose (online or not, endpoint, path, latency only when it
 * moved more than shared/nat/latency.ts allows), so a quiet network sends almost nothing, and
 * round-trip jitter does not turn every report into a change.
 *
 * Only peers with a handshake are reported. meshd's WireGuard holds every peer of the netmap, and
 * a report of all of them (most offline: a node talks to a few peers of a big network) made the
 * controller hold N entries for each of N nodes: 10,000 nodes meant 10⁸ entries. A peer is sent
 * when it comes online and while it changes; when it goes offline (or leaves the view) it is sent
 * once as offline and then forgotten, so the controller holds only live links. A peer never seen
 * online is never sent: to the controller, "not reported" and "offline" mean the same.
 */
import {latencyChanged} from '../../shared/nat/latency.js'
import {REPORT_LIMITS, type NodeReport, type PeerReport} from '../../shared/protocol/netmap.js'

/** What decides whether an entry changed, apart from its latency (see `latencyChanged`). */
const entryKey = (e: PeerReport): string => `${e.online ? 1 : 0}|${e.endpoint ?? ''}|${e.path ?? ''}`

/** What the controller holds of one peer: the key and the latency last sent. */
interface Sent {
  readonly key: string
  readonly latencyMs: number | undefined
}

/** 0.1 ms is finer than any path needs, and keeps entries short. */
const roundLatency = (ms: number): number => Math.round(ms * 10) / 10

/** The entry as it goes out: latency rounded, absent fields left out. */
function outgoing(p: PeerReport): PeerReport {
  const out: PeerReport = {id: p.id, online: p.online, endpoint: p.endpoint}
  if (p.path !== undefined) out.path = p.path
  if (p.latencyMs !== undefined && Number.isFinite(p.latencyMs))
    out.latencyMs = roundLatency(Math.min(Math.max(p.latencyMs, 0), 60_000))
  return out
}

export class PeerReporter {
  /** What the controller holds for this session: peer id -> what was last sent. */
  private readonly sent = new Map<string, Sent>()
  private sentEndpoints: string | undefined
  private fresh = true

  constructor(private readonly limits: {peersPerFrame: number; framesPerReport: number} = REPORT_LIMITS) {}

  /** A new session (or a frame that did not go out): the next report starts over. */
  reset(): void {
    this.sent.clear()
    this.sentEndpoints = undefined
    this.fresh = true
  }

  /**
   * The frames to send now for the node's current view; assumes they all go out (call reset()
   * when one does not). Always at least one frame: an empty report is the session's heartbeat.
   */
  frames(endpoints: readonly string[], peers: readonly PeerReport[]): NodeReport[] {
    const changed: PeerReport[] = []
    const seen = new Set<string>()
    for (const raw of peers) {
      if (seen.has(raw.id)) continue
      seen.add(raw.id)
      const p = outgoing(raw)
      const last = this.sent.get(p.id)
      // Offline and not known online at the controller: nothing to say.
      if (!p.online && !last) continue
      // Sent again when online, endpoint or path changed, or the latency moved by more than
      // jitter (compared with the latency last SENT, so a slow drift still gets through).
      if (!last || last.key !== entryKey(p) || latencyChanged(last.latencyMs, p.latencyMs)) changed.push(p)
    }
    // Peers the node no longer has: tell the controller once that they are gone from its view.
    for (const id of this.sent.keys())
      if (!seen.has(id)) changed.push({id, online: false, endpoint: null, path: 'none'})

    const first: NodeReport = {type: 'report'}
    if (this.fresh) first.reset = true
    const endpointsKey = endpoints.join(',')
    if (this.fresh || endpointsKey !== this.sentEndpoints) first.endpoints = [...endpoints]
    this.fresh = false
    this.sentEndpoints = endpointsKey

    const out: NodeReport[] = [first]
    const max = this.limits.peersPerFrame * this.limits.framesPerReport
    const batch = changed.slice(0, max)
    for (let i = 0; i < batch.length; i += this.limits.peersPerFrame) {
      const chunk = batch.slice(i, i + this.limits.peersPerFrame)
      if (i === 0) first.peers = chunk
      else out.push({type: 'report', peers: chunk})
    }
    for (const p of batch) {
      // An offline peer is told once, then forgotten like one that left the view.
      if (p.online && seen.has(p.id)) this.sent.set(p.id, {key: entryKey(p), latencyMs: p.latencyMs})
      else this.sent.delete(p.id)
    }
    return out
  }
}
