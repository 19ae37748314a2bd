/**
 * Netmap WebSocket frames between the controller and a node (daemon), and the admin event stream.
 *
 * The rule for both streams: the first message is the full state, later messages are deltas in
 * which absent means unchanged. A delta costs O(1) per receiving node for one changed peer.
 * A node that reconnects with `?version=N` gets only what changed since N (or a full map when
 * the controller no longer has that history).
 *
 * Compressed full maps: a node that connects with `?encoding=gzip` (NETMAP_GZIP) may get a full
 * map as one binary message instead of text: gzip members (RFC 1952) whose concatenated text is
 * the full map's JSON, with one difference: `peers` may include the node's own entry, which the
 * node drops (the controller compresses the network's peer list once and sends the same bytes
 * to every node). Deltas stay text. Older nodes never ask and get text as before.
 */
import {z} from 'zod'
import {
  ConnectionChangeSchema,
  EndpointSchema,
  IdSchema,
  NameSchema,
  NodeSchema,
  NodeStatusSchema,
  PathSchema,
  PublicKeySchema,
  TagSchema,
} from './control-api.js'
import {ENDPOINT_MAX_LENGTH} from '../net/endpoint.js'
import {NatBehaviourSchema} from '../nat/behaviour.js'

/** The query a node adds to the netmap URL to accept compressed full maps (see above). */
export const NETMAP_GZIP = {param: 'encoding', value: 'gzip'} as const

/** A port range, both ends included. */
export const PortRangeSchema = z
  .tuple([z.number().int().min(1).max(65535), z.number().int().min(1).max(65535)])
  .refine(([lo, hi]) => lo <= hi, 'a port range goes from low to high')
/**
 * One kind of traffic a node accepts from a peer under the tenant's ACL policy (issue 10):
 * `all` is every protocol and port (ports empty); `tcp` and `udp` name their destination port
 * ranges (at least one); `icmp` is echo and the rest of ICMP (ports empty).
 */
export const InboundRuleSchema = z.discriminatedUnion('proto', [
  z.object({proto: z.literal('all')}),
  z.object({proto: z.enum(['tcp', 'udp']), ports: z.array(PortRangeSchema).min(1).max(64)}),
  z.object({proto: z.literal('icmp')}),
])
export type InboundRule = z.infer<typeof InboundRuleSchema>
/** At most this many inbound rules per peer entry. */
export const MAX_INBOUND_RULES = 64

export const PeerSchema = z.object({
  id: IdSchema,
  name: NameSchema,
  publicKey: PublicKeySchema,
  /** The peer's mesh address (no prefix length). */
  address: z.string(),
  endpoints: z.array(EndpointSchema),
  /**
   * The public address:port the controller observed for the peer's WireGuard socket on its
   * endpoint-discovery port (the peer's NAT mapping); kept apart from the endpoints the peer
   * reports, so its reports never erase it. Absent or null when none was observed yet.
   */
  observedEndpoint: EndpointSchema.nullable().optional(),
  /**
   * The NAT behaviour the peer measured in front of itself (its netcheck, RFC 4787 names), as it
   * last reported it; absent when it has not (an older meshd, or no netcheck yet). meshd skips
   * upgrade attempts that theory rules out (shared/nat/behaviour.ts directImpossible). One that
   * does not parse (a newer controller's value) reads as absent rather than costing the peer.
   */
  nat: NatBehaviourSchema.optional().catch(undefined),
  hostname: z.string(),
  os: z.string(),
  tags: z.array(TagSchema),
  /**
   * What the receiving node accepts from this peer over the mesh, when the tenant has an ACL
   * policy: connections the peer opens are let in only when they match one entry; replies to
   * connections the receiving node opened always are. Absent: everything (no policy, or a rule
   * that allows the peer all traffic); empty: only replies (the receiving node may reach the peer,
   * not the other way round). The receiving meshd enforces it with nftables on the mesh
   * interface (daemon/firewall). Entries past MAX_INBOUND_RULES make the peer entry invalid.
   */
  inbound: z.array(InboundRuleSchema).max(MAX_INBOUND_RULES).optional(),
})
export type Peer = z.infer<typeof PeerSchema>

/**
 * A UDP service of the controller: at `host` (an IP literal or DNS name; absent = the host the
 * node reaches the controller at, from its controller URL) and `port`.
 */
export const UdpServiceSchema = z.object({
  host: z.string().min(1).max(253).optional(),
  port: z.number().int().min(1).max(65535),
})
export type UdpService = z.infer<typeof UdpServiceSchema>

/** A relay nodes may use; `url` absent = the controller itself, at RELAY path on its own URL. */
export const RelayInfoSchema = z.object({
  url: z.string().max(2048).optional(),
  region: z.string().min(1).max(64),
})
export type RelayInfo = z.infer<typeof RelayInfoSchema>

/**
 * NAT traversal services the controller offers; each absent (or null, or empty) when not offered,
 * as with a controller older than them.
 */
export const NatServicesSchema = z.object({
  /** RFC 5389 STUN, with the RFC 5780 alternate when the controller has a second address/port. */
  stun: z.object({primary: UdpServiceSchema, alternate: UdpServiceSchema.optional()}).nullable().optional(),
  /**
   * Endpoint discovery: meshd adds this key as a WireGuard peer with no allowed IPs and a short
   * keepalive, so the controller sees the public mapping of the node's WireGuard socket.
   */
  discovery: z.object({publicKey: PublicKeySchema, service: UdpServiceSchema}).nullable().optional(),
  relays: z.array(RelayInfoSchema).max(16).optional(),
})
export type NatServices = z.infer<typeof NatServicesSchema>

export const SelfSchema = z.object({
  id: IdSchema,
  name: NameSchema,
  publicKey: PublicKeySchema,
  address: z.string(),
  status: NodeStatusSchema,
  /**
   * The public mapping the controller observed for this node's own WireGuard socket (as peers
   * get it for theirs); null when it observed none, which with discovery offered means this
   * node's UDP does not get out. Absent from a controller older than the field, and when the
   * observed address is none peers could use (loopback, for a node beside the controller).
   */
  observedEndpoint: EndpointSchema.nullable().optional(),
  /**
   * When this node's key expires (null: never); meshd and `mesh status` warn before it. Absent
   * from a controller older than the field.
   */
  keyExpiresAt: z.string().max(40).nullable().optional(),
})
export type Self = z.infer<typeof SelfSchema>

export const NetmapNetworkSchema = z.object({id: IdSchema, name: NameSchema, cidr: z.string()})

/** Server -> node: the whole map. Only active nodes are peers; a pending self gets no peers. */
export const NetmapFullSchema = z.object({
  type: z.literal('full'),
  version: z.number().int().nonnegative(),
  network: NetmapNetworkSchema,
  self: SelfSchema,
  peers: z.array(PeerSchema),
  nat: NatServicesSchema.optional(),
})
export type NetmapFull = z.infer<typeof NetmapFullSchema>

/**
 * Server -> node: what changed since the previous message. `added` and `changed` are both
 * upserts for the receiver (a resumed session may list a peer it never saw under `changed`);
 * `removed` lists node ids that are no longer peers (removed, disabled or pending again).
 */
export const NetmapDeltaSchema = z.object({
  type: z.literal('delta'),
  version: z.number().int().nonnegative(),
  self: SelfSchema.optional(),
  added: z.array(PeerSchema).optional(),
  changed: z.array(PeerSchema).optional(),
  /** Node ids. */
  removed: z.array(IdSchema).optional(),
  /**
   * The controller's NAT services, whole, when they changed (stand-alone relays came or went)
   * and on a resumed session. A meshd older than the field ignores it.
   */
  nat: NatServicesSchema.optional(),
})
export type NetmapDelta = z.infer<typeof NetmapDeltaSchema>

/** Server -> node: this node was removed from the network; its credential no longer works. */
export const NetmapRevokedSchema = z.object({type: z.literal('revoked'), reason: z.string()})

export const ServerFrameSchema = z.discriminatedUnion('type', [
  NetmapFullSchema,
  NetmapDeltaSchema,
  NetmapRevokedSchema,
])
export type ServerFrame = z.infer<typeof ServerFrameSchema>

/**
 * What a node tells the controller about one peer: whether they handshook recently and the
 * endpoint its WireGuard uses for it. Only what changed since the node's previous report is
 * sent (see daemon/netmap/peer-report.ts): per-peer byte counters and handshake times change
 * all the time and the controller has no use for them, so they stay on the node.
 */
/**
 * How a node's packets reach a peer: `direct` (WireGuard talks to the peer's endpoint itself),
 * `relay` (through the controller's relay) or `none` (no working path).
 */
export const PeerPathSchema = PathSchema
export type PeerPath = z.infer<typeof PeerPathSchema>

/** Largest latency a report carries (ms); a round trip beyond it is no working path anyway. */
export const MAX_REPORTED_LATENCY_MS = 60_000

export const PeerReportSchema = z.object({
  /** The peer's node id. */
  id: IdSchema,
  online: z.boolean(),
  /** As `wg` shows it; the controller keeps it only when it parses as an endpoint. */
  endpoint: z.string().max(64).nullable(),
  /**
   * The path the node uses for the peer. Absent from older nodes (which have no relay): the
   * controller then takes an online peer as direct and an offline one as none.
   */
  path: PeerPathSchema.optional(),
  /** The last measured round trip to the peer over `path`, in ms; absent when not measured. */
  latencyMs: z.number().min(0).max(MAX_REPORTED_LATENCY_MS).optional(),
})
export type PeerReport = z.infer<typeof PeerReportSchema>

/**
 * Bounds of one report. Each frame stays far below LIMITS.maxFrameBytes (an entry is at most
 * ~200 bytes of JSON) and a report is at most `framesPerReport` frames, inside the controller's
 * per-socket frame budget; peers beyond that go out with the next report.
 */
export const REPORT_LIMITS = {peersPerFrame: 500, framesPerReport: 10} as const

/** An endpoint candidate in a node's report: bounded text, checked with EndpointSchema later. */
export const ReportedEndpointSchema = z.string().max(ENDPOINT_MAX_LENGTH)

/**
 * Node -> server: what changed in what the node sees. `endpoints` (its local candidates) when
 * they changed or on a new session; `peers` the peers whose entry changed; `reset` on the first
 * frame of a session, telling the controller to drop what this node reported before. A report
 * with neither is a heartbeat.
 */
export const NodeReportSchema = z.object({
  type: z.literal('report'),
  /**
   * Candidates as the node sees them. Each is checked by the controller on its own (a bad one is
   * dropped, the rest are kept), so one odd interface address does not cost the node its report.
   */
  endpoints: z.array(ReportedEndpointSchema).max(16).optional(),
  reset: z.literal(true).optional(),
  peers: z.array(PeerReportSchema).max(REPORT_LIMITS.peersPerFrame).optional(),
  /**
   * The NAT behaviour this node measured in front of itself (its netcheck), when it changed or on
   * a new session. Two bounded enums; the controller passes it on to peers as it is.
   */
  nat: NatBehaviourSchema.optional(),
})
export type NodeReport = z.infer<typeof NodeReportSchema>

export const ClientFrameSchema = z.discriminatedUnion('type', [NodeReportSchema])
export type ClientFrame = z.infer<typeof ClientFrameSchema>

/** WebSocket close codes the netmap endpoint uses (4000-4999 is the application range). */
export const CLOSE = {
  UNAUTHENTICATED: 4401,
  REVOKED: 4403,
  BAD_FRAME: 4400,
  /**
   * The node opened more netmap sessions than the controller keeps per node: this, its oldest,
   * was closed for a newer one. A client just reconnects with its usual backoff.
   */
  REPLACED: 4409,
  /**
   * The node's key expired (reason NODE_KEY_EXPIRED; issue 10): refused until an admin extends
   * it. meshd keeps its state and retries with its usual backoff; status shows why.
   */
  KEY_EXPIRED: 4410,
  SHUTTING_DOWN: 1001,
} as const

// ---------------------------------------------------------------------------------------------
// Admin event stream (WS /api/v1/events): for watchers and the TUIs.

export const AdminEventTypeSchema = z.enum([
  'node_online',
  'node_offline',
  'node_added',
  'node_removed',
  'node_changed',
  /** A node's key expires within 14 days (told once per expiry; issue 10). */
  'node_key_expiring',
  /** A node's key expired: it is disabled until an admin extends it. */
  'node_key_expired',
])
export const NodeEventSchema = z.object({
  type: AdminEventTypeSchema,
  at: z.string(),
  networkId: IdSchema,
  node: NodeSchema,
})
export type NodeEvent = z.infer<typeof NodeEventSchema>
/**
 * The path between two nodes changed (connected, disconnected, upgraded to direct, fell back to
 * the relay): `from` and `to` are the merged paths of the pair (controller/connections.ts).
 */
export const ConnectionChangedEventSchema = ConnectionChangeSchema.extend({
  type: z.literal('connection_changed'),
  networkId: IdSchema,
})
export type ConnectionChangedEvent = z.infer<typeof ConnectionChangedEventSchema>
export const AdminEventSchema = z.union([NodeEventSchema, ConnectionChangedEventSchema])
export type AdminEvent = z.infer<typeof AdminEventSchema>
/** First frame on the admin stream: the current nodes the user may see. */
export const AdminSnapshotSchema = z.object({type: z.literal('snapshot'), nodes: z.array(NodeSchema)})
export type AdminSnapshot = z.infer<typeof AdminSnapshotSchema>
