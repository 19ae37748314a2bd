/**
 * Prometheus metrics of one controller instance, on its own Registry (never prom-client's
 * global default), so several controllers in one process (tests) do not share counters.
 */
import {Counter, Gauge, Histogram, Registry} from 'prom-client'

export class ControllerMetrics {
  readonly registry = new Registry()
  readonly httpRequests = new Counter({
    name: 'mesh_http_requests_total',
    help: 'HTTP requests served, by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  })
  readonly httpDuration = new Histogram({
    name: 'mesh_http_request_duration_seconds',
    help: 'HTTP request latency, by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  })
  readonly connectedNodes = new Gauge({
    name: 'mesh_connected_nodes',
    help: 'Nodes with an open netmap WebSocket',
    registers: [this.registry],
  })
  readonly registrations = new Counter({
    name: 'mesh_node_registrations_total',
    help: 'Nodes registered',
    registers: [this.registry],
  })
  readonly netmapFrames = new Counter({
    name: 'mesh_netmap_frames_total',
    help: 'Netmap frames sent to nodes, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  })
  readonly netmapFanout = new Histogram({
    name: 'mesh_netmap_fanout_seconds',
    help: "Time to hand one change's delta to every connected node of its network (the send loop)",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  })
  readonly netmapGzipFull = new Counter({
    name: 'mesh_netmap_gzip_full_total',
    help: 'Full maps sent gzipped (to nodes that asked, when the compressed peer list was ready)',
    registers: [this.registry],
  })
  readonly reportedPeers = new Counter({
    name: 'mesh_netmap_reported_peers_total',
    help: 'Peer entries received in node reports (nodes report only changes)',
    registers: [this.registry],
  })
  readonly netmapFramesDropped = new Counter({
    name: 'mesh_netmap_client_frames_dropped_total',
    help: 'Frames from nodes dropped by the per-socket rate limit',
    registers: [this.registry],
  })
  readonly eventSubscribers = new Gauge({
    name: 'mesh_event_subscribers',
    help: 'Open admin event WebSockets',
    registers: [this.registry],
  })
}

/** What the NAT metrics read at each scrape: the servers' own counters (no per-packet cost). */
export interface NatStatsSources {
  readonly stun?: () => {answered: number; errorResponses: number; dropped: Record<string, number>}
  readonly discovery?: () => {observed: number; dropped: Record<string, number>}
}

/**
 * The STUN and endpoint-discovery ports' counters as Prometheus counters on `registry`, read
 * from the servers' stats() at scrape time.
 */
export function registerNatMetrics(registry: Registry, sources: NatStatsSources): void {
  const {stun, discovery} = sources
  if (stun) {
    new Counter({
      name: 'mesh_stun_packets_total',
      help: 'STUN packets received, by outcome (answered, error-response, dropped) and drop reason',
      labelNames: ['outcome', 'reason'] as const,
      registers: [registry],
      collect() {
        const s = stun()
        this.reset()
        this.inc({outcome: 'answered', reason: ''}, s.answered)
        this.inc({outcome: 'error-response', reason: ''}, s.errorResponses)
        for (const [reason, n] of Object.entries(s.dropped)) this.inc({outcome: 'dropped', reason}, n)
      },
    })
  }
  if (discovery) {
    new Counter({
      name: 'mesh_discovery_packets_total',
      help: 'Endpoint-discovery datagrams, by outcome (observed, dropped) and drop reason',
      labelNames: ['outcome', 'reason'] as const,
      registers: [registry],
      collect() {
        const s = discovery()
        this.reset()
        this.inc({outcome: 'observed', reason: ''}, s.observed)
        for (const [reason, n] of Object.entries(s.dropped)) this.inc({outcome: 'dropped', reason}, n)
      },
    })
  }
}
