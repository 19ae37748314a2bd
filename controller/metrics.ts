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
