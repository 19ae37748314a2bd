/**
 * Turns what a node sees of its peers into bounded report frames that carry only changes.
 *
 * A report used to carry stats for every peer every 10 s: in a network of ~1,500 nodes one frame
 * passed the controller's frame limit, the controller closed the socket, and the daemon
 * reconnected and reported again, forever. Now the first report of a session carries every peer
 * (split into frames of REPORT_LIMITS.peersPerFrame, at most REPORT_LIMITS.framesPerReport per
 * report; the rest follows with the next reports), and later ones only the peers whose entry
 * changed. Entries are coarse on purpose (online or not, endpoint), so a quiet network sends
 * almost nothing.
 */
import {REPORT_LIMITS, type NodeReport, type PeerReport} from '../../shared/protocol/netmap.js'

const entryKey = (e: PeerReport): string => `${e.online ? 1 : 0}|${e.endpoint ?? ''}`

export class PeerReporter {
  /** What the controller holds for this session: peer id -> entryKey. */
  private readonly sent = new Map<string, string>()
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
    for (const p of peers) {
      if (seen.has(p.id)) continue
      seen.add(p.id)
      if (this.sent.get(p.id) !== entryKey(p)) changed.push(p)
    }
    // Peers the node no longer has: tell the controller once that they are gone from its view.
    for (const id of this.sent.keys()) if (!seen.has(id)) changed.push({id, online: false, endpoint: null})

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
      if (seen.has(p.id)) this.sent.set(p.id, entryKey(p))
      else this.sent.delete(p.id)
    }
    return out
  }
}
