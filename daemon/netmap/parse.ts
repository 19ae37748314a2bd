/**
 * Parsing netmap frames from a controller one peer at a time. The envelope (type, version,
 * network, self) must be valid or the frame is ignored; each peer entry is then checked on its
 * own, so one node with a bad key or a malformed entry never costs this node the other peers:
 *
 * - an entry that is not a valid peer (bad id, key, low-order key, name, tags …) is dropped; when
 *   a delta changes a known peer into such an entry, the peer is removed (its old config is no
 *   longer what the controller says);
 * - a valid peer with bad endpoints keeps only the endpoints a peer can use (shared/net/endpoint.ts),
 *   possibly none: WireGuard then learns the endpoint when that peer connects;
 * - removed ids that are not ids are ignored (no peer can have them).
 *
 * Addresses are checked later against the network's CIDR (usablePeers in backend.ts).
 */
import {z} from 'zod'
import {usableEndpoints} from '../../shared/net/endpoint.js'
import {IdSchema} from '../../shared/protocol/control-api.js'
import {
  NetmapDeltaSchema,
  NetmapFullSchema,
  NetmapRevokedSchema,
  PeerSchema,
  type Peer,
  type ServerFrame,
} from '../../shared/protocol/netmap.js'

/** At most this many endpoint candidates of one peer are kept (the controller stores 16). */
export const MAX_PEER_ENDPOINTS = 16

/** Why one peer entry (or some of its endpoints) was not taken; `peer` is its id when readable. */
export interface PeerDrop {
  readonly peer: string | null
  readonly what: 'peer' | 'endpoints'
  readonly why: string
}

const Entries = z.array(z.unknown())
const LooseFrameSchema = z.discriminatedUnion('type', [
  NetmapFullSchema.extend({peers: Entries}),
  NetmapDeltaSchema.extend({
    added: Entries.optional(),
    changed: Entries.optional(),
    removed: Entries.optional(),
  }),
  NetmapRevokedSchema,
])

const idOf = (entry: unknown): string | null => {
  const id = (entry as {id?: unknown} | null)?.id
  return IdSchema.safeParse(id).success ? (id as string) : null
}

const describe = (issues: readonly z.core.$ZodIssue[]): string =>
  issues
    .slice(0, 3)
    .map((i) => `${i.path.map(String).join('.') || 'entry'}: ${i.message}`)
    .join('; ')

/** One peer entry: the peer (with its usable endpoints only), or null when it must be dropped. */
export function parsePeer(entry: unknown, onDrop: (d: PeerDrop) => void = () => {}): Peer | null {
  let res = PeerSchema.safeParse(entry)
  if (!res.success) {
    const onlyEndpoints = res.error.issues.every((i) => i.path[0] === 'endpoints')
    if (!onlyEndpoints || typeof entry !== 'object' || entry === null) {
      onDrop({peer: idOf(entry), what: 'peer', why: describe(res.error.issues)})
      return null
    }
    // Everything but the endpoints is fine: keep the peer, check its endpoints below.
    res = PeerSchema.safeParse({...entry, endpoints: []})
    if (!res.success) {
      onDrop({peer: idOf(entry), what: 'peer', why: describe(res.error.issues)})
      return null
    }
  }
  const raw = (entry as {endpoints?: unknown}).endpoints
  const list = Array.isArray(raw) ? raw : []
  // Bounded work for a hostile list: only the first few dozen are even looked at.
  const kept = usableEndpoints(list.slice(0, MAX_PEER_ENDPOINTS * 4)).endpoints.slice(0, MAX_PEER_ENDPOINTS)
  if (kept.length < list.length || !Array.isArray(raw))
    onDrop({
      peer: res.data.id,
      what: 'endpoints',
      why: `kept ${kept.length} of ${list.length} endpoints (the others are not usable IP literals, repeated, or over ${MAX_PEER_ENDPOINTS})`,
    })
  return {...res.data, endpoints: kept}
}

/**
 * A frame from the controller, its peers checked one by one (see the module comment); null when
 * the frame itself is not a netmap frame, with `issues` describing why.
 */
export function parseServerFrame(
  raw: unknown,
  onDrop: (d: PeerDrop) => void = () => {},
): {frame: ServerFrame; issues?: undefined} | {frame: null; issues: string} {
  const env = LooseFrameSchema.safeParse(raw)
  if (!env.success) return {frame: null, issues: describe(env.error.issues)}
  const f = env.data
  if (f.type === 'revoked') return {frame: f}
  const take = (entries: readonly unknown[], dropped: string[]): Peer[] => {
    const out: Peer[] = []
    for (const entry of entries) {
      const p = parsePeer(entry, onDrop)
      if (p) out.push(p)
      else {
        const id = idOf(entry)
        if (id !== null) dropped.push(id)
      }
    }
    return out
  }
  if (f.type === 'full') return {frame: {...f, peers: take(f.peers, [])}}
  const gone: string[] = []
  const added = f.added && take(f.added, gone)
  const changed = f.changed && take(f.changed, gone)
  const removed = (f.removed ?? []).filter((id): id is string => IdSchema.safeParse(id).success)
  // A peer the delta upserts in one entry and drops in another keeps the valid entry.
  const upserted = new Set([...(added ?? []), ...(changed ?? [])].map((p) => p.id))
  removed.push(...gone.filter((id) => !upserted.has(id)))
  return {
    frame: {
      type: 'delta',
      version: f.version,
      ...(f.self !== undefined && {self: f.self}),
      ...(added !== undefined && {added}),
      ...(changed !== undefined && {changed}),
      ...((f.removed !== undefined || gone.length > 0) && {removed: [...new Set(removed)]}),
      ...(f.nat !== undefined && {nat: f.nat}),
    },
  }
}
