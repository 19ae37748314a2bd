/**
 * The CLI <-> meshd contract (HTTP over meshd's unix socket): one route table keyed
 * "METHOD /v1/path" with a zod schema for every request and reply. The daemon parses bodies with
 * these schemas before a handler runs; the CLI parses replies with the same ones.
 */
import {z} from 'zod'
import {NetReportSchema} from '../nat/net-report.js'
import {NatBehaviourSchema} from '../nat/behaviour.js'
import {IdSchema, NameSchema, NodeStatusSchema, PublicKeySchema} from './fields.js'

/** Linux interface names: at most 15 bytes, and a conservative character set. */
export const InterfaceNameSchema = z
  .string()
  .regex(
    /^[a-zA-Z0-9_-]{1,15}$/,
    'an interface name: letters, digits, dash, underscore; at most 15 characters',
  )

export const BackendKindSchema = z.enum(['kernel', 'userspace', 'fake'])
export type BackendKind = z.infer<typeof BackendKindSchema>

/** A network named by the user: its name or its controller id. */
const NetworkRefSchema = z.string().min(1).max(100)

// ---------------------------------------------------------------------------------------------
// Status

export const PathStateSchema = z.enum(['idle', 'probing', 'direct', 'relay', 'waiting'])
export type PathState = z.infer<typeof PathStateSchema>

export const PeerStatusSchema = z.object({
  id: IdSchema,
  name: NameSchema,
  address: z.string(),
  publicKey: PublicKeySchema,
  /** The endpoint WireGuard uses now (it roams), else the one the path points at. */
  endpoint: z.string().nullable(),
  /**
   * How meshd reaches the peer: `direct` (a proven endpoint), `relay`, `probing` (trying a
   * candidate), `waiting` (no candidate answered; retrying later) or `idle` (nothing to try: the
   * peer must reach this node).
   */
  path: PathStateSchema,
  /** The last round trip measured through the tunnel (on the path then), in ms; null when none yet. */
  latencyMs: z.number().nonnegative().nullable().optional(),
  /** RFC 3339, null when there has never been a handshake. */
  lastHandshake: z.string().nullable(),
  rxBytes: z.number().int().nonnegative(),
  txBytes: z.number().int().nonnegative(),
  /** Bytes per second received from and sent to the peer over the last second or so. */
  rxBytesPerSecond: z.number().nonnegative(),
  txBytesPerSecond: z.number().nonnegative(),
  /** A handshake within the last 3 minutes (WireGuard rekeys every 2). */
  online: z.boolean(),
  /** The NAT behaviour the peer reported (its netcheck); absent when it has not. */
  nat: NatBehaviourSchema.optional(),
  /**
   * Why the two sides' NAT behaviour rules a direct path out (only a rare re-check is attempted),
   * or why it is out of reach for now (a side's UDP does not get out); absent when direct may work.
   */
  directBlocked: z.string().max(64).optional(),
  /** Relay -> direct upgrade attempts this node led or joined for the peer since its path began. */
  upgradeAttempts: z.number().int().nonnegative().optional(),
})
export type PeerStatus = z.infer<typeof PeerStatusSchema>

export const NetworkStatusSchema = z.object({
  id: IdSchema,
  name: NameSchema,
  cidr: z.string(),
  controller: z.string(),
  interface: InterfaceNameSchema,
  nodeId: IdSchema,
  nodeName: NameSchema,
  nodeStatus: NodeStatusSchema,
  /** The node's mesh address (no prefix length). */
  address: z.string(),
  publicKey: PublicKeySchema,
  listenPort: z.number().int().min(1).max(65535),
  /** Whether the user wants the interface up (`mesh up` / `mesh down`). */
  up: z.boolean(),
  /** Whether the netmap WebSocket is open and has delivered a map. */
  connected: z.boolean(),
  netmapVersion: z.number().int().nonnegative().nullable(),
  /** The last problem with the controller or WireGuard, cleared when things work again. */
  lastError: z.string().nullable(),
  /** The NAT behaviour this node's background netcheck measured (as `mesh netcheck` names it). */
  nat: NatBehaviourSchema.optional(),
  peers: z.array(PeerStatusSchema),
  /**
   * When this node's key expires (RFC 3339; null: never), as the controller last said; absent
   * while it has not said (an older controller, or no netmap yet). `mesh status` warns ahead.
   */
  keyExpiresAt: z.string().max(40).nullable().optional(),
})
export type NetworkStatus = z.infer<typeof NetworkStatusSchema>

export const StatusSchema = z.object({
  protocolVersion: z.number().int(),
  /** The WireGuard backend chosen at start-up. */
  backend: BackendKindSchema,
  pid: z.number().int(),
  startedAt: z.string(),
  networks: z.array(NetworkStatusSchema),
})
export type Status = z.infer<typeof StatusSchema>

// ---------------------------------------------------------------------------------------------
// Requests and replies

export const JoinRequestSchema = z
  .object({
    controller: z.url({protocol: /^https?$/}),
    invite: z.string().min(1).max(200).optional(),
    authKey: z.string().min(1).max(200).optional(),
    /** The node's name in the network; default: this machine's hostname, made a valid name. */
    name: NameSchema.optional(),
    /** WireGuard interface name; default: the daemon's prefix + the first free number. */
    interface: InterfaceNameSchema.optional(),
    /** WireGuard listen port; default: a free UDP port. */
    listenPort: z.number().int().min(1).max(65535).optional(),
  })
  .strict()
  .refine((r) => (r.invite === undefined) !== (r.authKey === undefined), {
    message: 'give exactly one of invite and authKey',
    path: ['invite'],
  })
export type JoinRequest = z.input<typeof JoinRequestSchema>
export const JoinResultSchema = NetworkStatusSchema
export type JoinResult = z.infer<typeof JoinResultSchema>

export const UpRequestSchema = z.object({network: NetworkRefSchema.optional()}).strict()
export type UpRequest = z.infer<typeof UpRequestSchema>
/** Names of the networks whose state changed; empty when nothing had to change. */
export const UpResultSchema = z.object({changed: z.array(NameSchema)})
export type UpResult = z.infer<typeof UpResultSchema>

export const DownRequestSchema = z.object({network: NetworkRefSchema.optional()}).strict()
export type DownRequest = z.infer<typeof DownRequestSchema>
export const DownResultSchema = z.object({changed: z.array(NameSchema)})
export type DownResult = z.infer<typeof DownResultSchema>

/** `mesh rotate-key [NETWORK]`: every joined network when none is named. */
export const RotateKeyRequestSchema = z.object({network: NetworkRefSchema.optional()}).strict()
export type RotateKeyRequest = z.infer<typeof RotateKeyRequestSchema>
export const RotatedKeySchema = z.object({
  network: NameSchema,
  publicKey: PublicKeySchema,
  previousPublicKey: PublicKeySchema,
  /** The new key's expiry (null: never). */
  keyExpiresAt: z.string().max(40).nullable(),
})
export const RotateKeyResultSchema = z.object({rotated: z.array(RotatedKeySchema)})
export type RotateKeyResult = z.infer<typeof RotateKeyResultSchema>

export const LeaveRequestSchema = z.object({network: NetworkRefSchema}).strict()
export type LeaveRequest = z.infer<typeof LeaveRequestSchema>
export const LeaveResultSchema = z.object({
  left: NameSchema,
  interface: InterfaceNameSchema,
  /** Whether the controller removed the node too (false: unreachable; it stays listed there). */
  deregistered: z.boolean().optional(),
  /** Why deregistering failed, for the CLI to show. */
  warning: z.string().optional(),
})
export type LeaveResult = z.infer<typeof LeaveResultSchema>

export const IpEntrySchema = z.object({
  network: NameSchema,
  interface: InterfaceNameSchema,
  address: z.string(),
  cidr: z.string(),
})
export const IpResultSchema = z.object({addresses: z.array(IpEntrySchema)})
export type IpResult = z.infer<typeof IpResultSchema>

// ---------------------------------------------------------------------------------------------
// Netcheck and ping (NAT traversal diagnostics)

export const NetcheckRequestSchema = z.object({network: NetworkRefSchema.optional()}).strict()
export type NetcheckRequest = z.infer<typeof NetcheckRequestSchema>

/** One relay of the netmap, as reached from this node over HTTP(S). */
export const RelayCheckSchema = z.object({
  region: z.string().max(64),
  /** What was fetched: the relay's origin + /healthz. */
  url: z.string().max(2100),
  /** An HTTP answer (any status below 500) came back within the time limit. */
  reachable: z.boolean(),
  /** The faster of two GETs on one connection (the second without the TCP/TLS handshake), ms. */
  latencyMs: z.number().nonnegative().nullable(),
  /** Why it is not reachable (one line), null when it is. */
  error: z.string().max(200).nullable(),
  /** This node's home relay (its relay socket goes there); absent from an older meshd. */
  home: z.boolean().optional(),
})
export type RelayCheck = z.infer<typeof RelayCheckSchema>

/** `mesh netcheck --json`: the NetReport of the network's STUN server, plus which network and its relays. */
export const NetcheckResultSchema = NetReportSchema.extend({
  network: NameSchema,
  controller: z.string(),
  /** Empty when the controller names no relay. */
  relays: z.array(RelayCheckSchema).max(16),
})
export type NetcheckResult = z.infer<typeof NetcheckResultSchema>

/** Pings per request, and the interval bounds (the echo responder allows 20/s per source). */
export const PING_MAX_COUNT = 100
export const PING_MIN_INTERVAL_MS = 50

export const PingRequestSchema = z
  .object({
    network: NetworkRefSchema.optional(),
    /** The peer's name, node id or mesh address. */
    peer: z.string().min(1).max(100),
    count: z.number().int().min(1).max(PING_MAX_COUNT).default(1),
    /** Between the starts of two attempts. */
    intervalMs: z.number().int().min(PING_MIN_INTERVAL_MS).max(10_000).default(1000),
    /** How long one attempt waits for its reply. */
    timeoutMs: z.number().int().min(50).max(10_000).default(2000),
  })
  .strict()
export type PingRequest = z.input<typeof PingRequestSchema>

export const PingAttemptSchema = z.object({
  /** 1-based attempt number. */
  seq: z.number().int().min(1),
  /** The peer's name and mesh address. */
  peer: z.string(),
  address: z.string(),
  /** Round trip over the mesh, ms; null when no reply came within the timeout. */
  rttMs: z.number().nonnegative().nullable(),
  /** The peer's path when the attempt ended (as in `mesh status`). */
  path: PathStateSchema,
  /** The peer's WireGuard endpoint then (for a relayed peer: the local relay socket). */
  endpoint: z.string().nullable(),
})
export type PingAttempt = z.infer<typeof PingAttemptSchema>
export const PingResultSchema = z.array(PingAttemptSchema).min(1).max(PING_MAX_COUNT)
export type PingResult = z.infer<typeof PingResultSchema>

// ---------------------------------------------------------------------------------------------
// The status stream (GET /v1/watch): newline-delimited JSON, one WatchEvent per line

/** The stream's path; not in LOCAL_ROUTES (its reply is a stream of events, not one body). */
export const WATCH_PATH = '/v1/watch'
/** Longest line meshd writes (a full status of a very large network), and the CLI accepts. */
export const WATCH_MAX_LINE_BYTES = 16 * 1024 * 1024

const NetworkHeaderSchema = NetworkStatusSchema.omit({peers: true})
export type NetworkHeader = z.infer<typeof NetworkHeaderSchema>

/**
 * - status: the whole status; always first, and again when networks were joined or left;
 * - network: a network's own fields changed (connection, address, errors…);
 * - peers: peers of one network changed (whole entries) or are gone (ids).
 * Applied in order to the last `status`, they give what GET /v1/status would answer then.
 */
export const WatchEventSchema = z.discriminatedUnion('type', [
  z.object({type: z.literal('status'), status: StatusSchema}),
  z.object({type: z.literal('network'), network: NetworkHeaderSchema}),
  z.object({
    type: z.literal('peers'),
    networkId: IdSchema,
    changed: z.array(PeerStatusSchema),
    removed: z.array(IdSchema),
  }),
])
export type WatchEvent = z.infer<typeof WatchEventSchema>

/** Applies one event to a status (a new object; the old one is left as it was). */
export function applyWatchEvent(st: Status | undefined, ev: WatchEvent): Status | undefined {
  if (ev.type === 'status') return ev.status
  if (!st) return st
  const networks = st.networks.map((n) => {
    if (ev.type === 'network') return n.id === ev.network.id ? {...ev.network, peers: n.peers} : n
    if (n.id !== ev.networkId) return n
    const changed = new Map(ev.changed.map((p) => [p.id, p]))
    const removed = new Set(ev.removed)
    const peers = n.peers.filter((p) => !removed.has(p.id)).map((p) => changed.get(p.id) ?? p)
    const known = new Set(peers.map((p) => p.id))
    for (const p of ev.changed) if (!known.has(p.id)) peers.push(p)
    return {...n, peers}
  })
  return {...st, networks}
}

// ---------------------------------------------------------------------------------------------
// The route table

export interface LocalRouteDef {
  readonly method: 'GET' | 'POST'
  readonly path: `/v1/${string}`
  readonly summary: string
  /** Absent for GET routes: they take no body. */
  readonly request?: z.ZodType
  readonly response: z.ZodType
}

const route = <const R extends LocalRouteDef>(r: R): R => r

export const LOCAL_ROUTES = {
  'GET /v1/status': route({
    method: 'GET',
    path: '/v1/status',
    summary: 'Networks, interfaces, peers and the WireGuard backend',
    response: StatusSchema,
  }),
  'POST /v1/join': route({
    method: 'POST',
    path: '/v1/join',
    summary: 'Register with a controller (invite or auth key) and bring the network up',
    request: JoinRequestSchema,
    response: JoinResultSchema,
  }),
  'POST /v1/up': route({
    method: 'POST',
    path: '/v1/up',
    summary: 'Bring one or all joined networks up',
    request: UpRequestSchema,
    response: UpResultSchema,
  }),
  'POST /v1/down': route({
    method: 'POST',
    path: '/v1/down',
    summary: 'Take one or all networks down without leaving them',
    request: DownRequestSchema,
    response: DownResultSchema,
  }),
  'POST /v1/leave': route({
    method: 'POST',
    path: '/v1/leave',
    summary:
      'Remove the node at the controller (best effort), remove the interface and forget the network (keys, credential, cached netmap)',
    request: LeaveRequestSchema,
    response: LeaveResultSchema,
  }),
  'GET /v1/ip': route({
    method: 'GET',
    path: '/v1/ip',
    summary: "This node's mesh addresses",
    response: IpResultSchema,
  }),
  'POST /v1/netcheck': route({
    method: 'POST',
    path: '/v1/netcheck',
    summary:
      "UDP, public address, NAT mapping and filtering (the network's STUN server) and relay reachability",
    request: NetcheckRequestSchema,
    response: NetcheckResultSchema,
  }),
  'POST /v1/ping': route({
    method: 'POST',
    path: '/v1/ping',
    summary: 'Echo requests to a peer over the mesh: round trip and path of each',
    request: PingRequestSchema,
    response: PingResultSchema,
  }),
  'POST /v1/rotate-key': route({
    method: 'POST',
    path: '/v1/rotate-key',
    summary:
      "Make a new WireGuard key pair here, have the controller swap the node's public key, then use it (address and peers stay)",
    request: RotateKeyRequestSchema,
    response: RotateKeyResultSchema,
  }),
} as const satisfies Record<string, LocalRouteDef>

export type LocalRouteKey = keyof typeof LOCAL_ROUTES
export type LocalRequest<K extends LocalRouteKey> = (typeof LOCAL_ROUTES)[K] extends {
  request: infer Q extends z.ZodType
}
  ? z.input<Q>
  : undefined
export type LocalParsedRequest<K extends LocalRouteKey> = (typeof LOCAL_ROUTES)[K] extends {
  request: infer Q extends z.ZodType
}
  ? z.infer<Q>
  : undefined
export type LocalResponse<K extends LocalRouteKey> = z.infer<(typeof LOCAL_ROUTES)[K]['response']>

/** Largest request body meshd accepts on its socket (PAYLOAD_TOO_LARGE's message names it). */
export const LOCAL_MAX_BODY_BYTES = 1024 * 1024
