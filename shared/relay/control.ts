/**
 * What a stand-alone relay (`mesh relay start`) and the controller say to each other, and what
 * relays say to each other on their mesh links.
 *
 * Relay -> controller (REST, relay key in `Authorization: Bearer`):
 * - POST RELAY_API.heartbeat: "I am alive at `url`". The first one registers the relay; the
 *   controller lists a relay in full netmaps while its last heartbeat is younger than the
 *   liveness window. The answer names the nodes that stopped being active since the previous
 *   beat (the relay drops them: this is how removals reach a relay, polled, O(changes)), the
 *   other live relays (to mesh with) and the mesh token.
 * - POST RELAY_API.verifyNode: "whose node credential is this?" -> {nodeId, networkId, active}.
 * - POST RELAY_API.visibility: "who may see whom in network N?" under the tenant's ACL policy
 *   (RelayVisibility below); heartbeat answers name the tenants and networks whose answer changed.
 *
 * Relay <-> relay (WS RELAY_MESH_WS_PATH, mesh token in `Authorization: Bearer`): one link per
 * pair of relays, used both ways. Text messages carry presence (which nodes are connected to the
 * sender), binary messages carry forwarded WireGuard packets (RelayMeshPacket below).
 */
import {z} from 'zod'
import {RELAY_MAX_ID_BYTES} from './frame.js'

export const RELAY_API = {
  heartbeat: '/api/v1/relays/heartbeat',
  verifyNode: '/api/v1/relays/verify-node',
  visibility: '/api/v1/relays/visibility',
} as const

/** A stand-alone relay serves its mesh links here (and the node relay at RELAY_WS_PATH). */
export const RELAY_MESH_WS_PATH = '/api/v1/relay/mesh'

/** Relay keys: a recognisable prefix and 256 random bits (controller/auth/secrets.ts). */
export const RELAY_KEY_PREFIX = 'mrelay_'

const IdSchema = z
  .string()
  .min(1)
  .max(RELAY_MAX_ID_BYTES)
  .regex(/^[\x21-\x7e]+$/)

export const RelayNodeRefSchema = z.object({nodeId: IdSchema, networkId: IdSchema})
export type RelayNodeRef = z.infer<typeof RelayNodeRefSchema>

/** The most removals one heartbeat answer carries; more wait for the next beat. */
export const RELAY_MAX_GONE = 5000

export const RelayHeartbeatRequestSchema = z.object({
  /** The base URL nodes and other relays reach this relay at (http or https, no path). */
  url: z.string().url().max(2048),
  /** Must be the region of the relay key when given. */
  region: z.string().min(1).max(64).optional(),
  /** Nodes connected now (for the controller's metrics and `relay list`). */
  connected: z.number().int().nonnegative(),
})
export type RelayHeartbeatRequest = z.infer<typeof RelayHeartbeatRequestSchema>

export const RelayPeerSchema = z.object({url: z.string().max(2048), region: z.string().min(1).max(64)})

export const RelayHeartbeatResponseSchema = z.object({
  region: z.string().min(1).max(64),
  /**
   * Nodes that stopped being active (removed, disabled, pending again) since this relay's
   * previous beat to this controller: the relay closes their sockets and forgets their
   * credentials. A node may be named twice; that is harmless.
   */
  gone: z.array(RelayNodeRefSchema).max(RELAY_MAX_GONE),
  /** The other live stand-alone relays, to mesh with. */
  relays: z.array(RelayPeerSchema).max(64),
  /** What the controller's relay presents when it dials this one; accept it on mesh links. */
  meshToken: z.string().min(16).max(200),
  /** Beat again within this many ms to stay listed. */
  heartbeatMs: z.number().int().positive(),
  /** Whose visibility answers changed since the previous beat (absent: an older controller). */
  visibility: z
    .object({
      tenants: z.array(IdSchema).max(RELAY_MAX_GONE),
      networks: z.array(IdSchema).max(RELAY_MAX_GONE),
      /** More changed than the lists hold: every answer is stale. */
      all: z.boolean(),
    })
    .optional(),
})
export type RelayHeartbeatResponse = z.infer<typeof RelayHeartbeatResponseSchema>

export const RelayVerifyNodeRequestSchema = z.object({credential: z.string().min(1).max(300)})
export const RelayVerifyNodeResponseSchema = z.object({
  nodeId: IdSchema,
  networkId: IdSchema,
  active: z.boolean(),
})
export type RelayVerifyNodeResponse = z.infer<typeof RelayVerifyNodeResponseSchema>

/** Bounds on one visibility answer; a network beyond them is answered `unknown`. */
export const RELAY_VISIBILITY_LIMITS = {
  /** Active nodes named, over all classes. */
  nodes: 100_000,
  /** Class pairs listed in `sees`, over all classes. */
  pairs: 1_000_000,
} as const

export const RelayVisibilityRequestSchema = z.object({networkId: IdSchema})

/**
 * Who may see whom in one network, for a stand-alone relay to drop packets between nodes that
 * may not (as the built-in relay does): `open` (no policy: every pair of the network), `policy`
 * (the active nodes grouped by visibility class; `sees[i]` lists the classes class i sees, a
 * symmetric relation), or `unknown` (the network is gone, or too large to say within
 * RELAY_VISIBILITY_LIMITS: the relay decides as without a policy).
 */
export const RelayVisibilitySchema = z
  .discriminatedUnion('mode', [
    z.object({mode: z.literal('open'), networkId: IdSchema, tenantId: IdSchema}),
    z.object({
      mode: z.literal('policy'),
      networkId: IdSchema,
      tenantId: IdSchema,
      classes: z
        .array(z.array(IdSchema).max(RELAY_VISIBILITY_LIMITS.nodes))
        .max(RELAY_VISIBILITY_LIMITS.nodes),
      sees: z
        .array(z.array(z.number().int().nonnegative()).max(RELAY_VISIBILITY_LIMITS.nodes))
        .max(RELAY_VISIBILITY_LIMITS.nodes),
    }),
    z.object({mode: z.literal('unknown'), networkId: IdSchema, tenantId: IdSchema.nullable()}),
  ])
  .superRefine((v, ctx) => {
    if (v.mode !== 'policy') return
    let nodes = 0
    for (const c of v.classes) nodes += c.length
    let pairs = 0
    for (const row of v.sees) pairs += row.length
    if (nodes > RELAY_VISIBILITY_LIMITS.nodes || pairs > RELAY_VISIBILITY_LIMITS.pairs)
      ctx.addIssue({code: 'custom', message: 'too many nodes or class pairs'})
    if (v.sees.length !== v.classes.length)
      ctx.addIssue({code: 'custom', message: 'sees must have one row per class'})
    else if (v.sees.some((row) => row.some((j) => j >= v.classes.length)))
      ctx.addIssue({code: 'custom', message: 'sees names a class that does not exist'})
  })
export type RelayVisibility = z.infer<typeof RelayVisibilitySchema>

/** Mesh presence (text messages): the full list once per link, then changes. */
export const RelayMeshPresenceSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    url: z.string().max(2048),
    nodes: z.array(RelayNodeRefSchema).max(1_000_000),
  }),
  z.object({type: z.literal('add'), node: RelayNodeRefSchema}),
  z.object({type: z.literal('del'), node: RelayNodeRefSchema}),
])
export type RelayMeshPresence = z.infer<typeof RelayMeshPresenceSchema>

/**
 * A forwarded packet batch (binary): three length-prefixed ids (1 byte length each: network,
 * source node, destination node), then 1..RELAY_MAX_BATCH_PACKETS entries of a 2-byte
 * big-endian length and the packet, like a relay batch frame.
 */
export interface RelayMeshPacket {
  readonly networkId: string
  readonly src: string
  readonly dst: string
  readonly payloads: Buffer[]
}

export function encodeMeshPacket(p: RelayMeshPacket): Buffer {
  const ids = [p.networkId, p.src, p.dst].map((s) => Buffer.from(s, 'latin1'))
  let size = 0
  for (const id of ids) size += 1 + id.length
  for (const pl of p.payloads) size += 2 + pl.length
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const id of ids) {
    out[at++] = id.length
    at += id.copy(out, at)
  }
  for (const pl of p.payloads) {
    out.writeUInt16BE(pl.length, at)
    at += 2 + pl.copy(out, at + 2)
  }
  return out
}

/** Strict: throws on any malformed message (bad id, empty or oversize entry, trailing bytes). */
export function decodeMeshPacket(
  buf: Buffer,
  opts: {maxPayload: number; maxPackets: number},
): RelayMeshPacket {
  let at = 0
  const ids: string[] = []
  for (let i = 0; i < 3; i++) {
    const n = buf[at]
    if (n === undefined || n < 1 || n > RELAY_MAX_ID_BYTES || at + 1 + n > buf.length)
      throw new Error('bad id')
    const id = buf.toString('latin1', at + 1, at + 1 + n)
    if (!/^[\x21-\x7e]+$/.test(id)) throw new Error('bad id')
    ids.push(id)
    at += 1 + n
  }
  const payloads: Buffer[] = []
  while (at < buf.length) {
    if (at + 2 > buf.length || payloads.length === opts.maxPackets) throw new Error('bad entry')
    const n = buf.readUInt16BE(at)
    if (n < 1 || n > opts.maxPayload || at + 2 + n > buf.length) throw new Error('bad entry')
    payloads.push(buf.subarray(at + 2, at + 2 + n))
    at += 2 + n
  }
  if (payloads.length === 0) throw new Error('no packet')
  return {networkId: ids[0]!, src: ids[1]!, dst: ids[2]!, payloads}
}
