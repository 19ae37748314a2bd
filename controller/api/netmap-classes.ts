/**
 * The netmap hub's view of a tenant's ACL policy (issue 10, "Enforcement"): which visibility
 * class each node is in, which peers a class sees and with what inbound rules, and what differs
 * between two views. Pure: the hub (netmap.ts) holds the state and does the sending.
 *
 * A view is what the members of one class get as peers: peer id -> that peer's entry JSON. The
 * entry is the peer's own JSON (one string per node, shared by every class) with
 * `"inbound":[...]` spliced in when the policy limits what the class accepts from the peer. Two
 * nodes of one class have the same view (less their own entry), so the hub encodes each full map
 * and each delta once per class. Without a policy there is one class (NO_POLICY_CLASS), every
 * class sees every peer and no entry carries `inbound`: the views are the plain peer JSON and
 * the frames are byte for byte what they were before policies existed.
 *
 * Fail closed: a stored policy that no longer parses (written by a newer controller, say) is
 * compiled as a policy without rules, so every node sees no peer, rather than as no policy.
 */
import {
  compilePolicy,
  NO_POLICY_CLASS,
  parsePolicy,
  type CompiledPolicy,
  type Policy,
  type PolicyNode,
} from '../../shared/policy/index.js'
import type {InboundRule} from '../../shared/protocol/netmap.js'
import type {StoredNode} from '../store/store.js'

/** A tenant's policy as the hub applies it to one network. */
export interface NetPolicy {
  /** No policy: one class, everyone sees everyone, no inbound rules. */
  readonly open: boolean
  readonly compiled: CompiledPolicy
  /** User id -> user name, for the owners the policy names (empty when open). */
  readonly owners: ReadonlyMap<string, string>
  /**
   * User id -> the groups their OpenID provider put them in at their last login, for `oidc:`
   * members of policy groups (empty when open; users without any are absent).
   */
  readonly ownerGroups: ReadonlyMap<string, readonly string[]>
  /** The document it was compiled from (null: none), to tell whether a reload changed anything. */
  readonly document: string | null
  /** The stored document did not parse: compiled without rules (see the module comment). */
  readonly unparsable: boolean
}

const NO_RULES: Policy = {rules: [], tests: [], groups: new Map(), hosts: new Map()}

/** The open policy: what every network had before policies existed. */
export const OPEN_POLICY: NetPolicy = {
  open: true,
  compiled: compilePolicy(null, []),
  owners: new Map(),
  ownerGroups: new Map(),
  document: null,
  unparsable: false,
}

/** Compiles `document` (null: no policy) with the tenant's user names and their IdP groups. */
export function netPolicy(
  document: string | null,
  owners: ReadonlyMap<string, string>,
  ownerGroups: ReadonlyMap<string, readonly string[]> = new Map(),
): NetPolicy {
  if (document === null) return OPEN_POLICY
  const parsed = parsePolicy(document)
  return {
    open: false,
    compiled: compilePolicy(parsed.ok ? parsed.policy : NO_RULES, []),
    owners,
    ownerGroups,
    document,
    unparsable: !parsed.ok,
  }
}

/** Whether two policies give every node the same class, view and inbound rules. */
export function samePolicy(a: NetPolicy, b: NetPolicy): boolean {
  if (a.open || b.open) return a.open === b.open
  if (a.document !== b.document || a.owners.size !== b.owners.size) return false
  for (const [id, name] of a.owners) if (b.owners.get(id) !== name) return false
  // A login that changed someone's IdP groups changes the classes of their nodes.
  if (a.ownerGroups.size !== b.ownerGroups.size) return false
  for (const [id, groups] of a.ownerGroups) {
    const other = b.ownerGroups.get(id)
    if (!other || other.length !== groups.length || groups.some((g, i) => other[i] !== g)) return false
  }
  return true
}

/**
 * A node as the policy sees it: the owner by user name (null when unknown or no longer a user),
 * and the owner's IdP groups.
 */
export const policyNode = (
  n: StoredNode,
  owners: ReadonlyMap<string, string>,
  ownerGroups: ReadonlyMap<string, readonly string[]> = new Map(),
): PolicyNode => {
  const groups = n.ownerId === undefined ? undefined : ownerGroups.get(n.ownerId)
  return {
    id: n.id,
    address: n.address,
    owner: n.ownerId === undefined ? null : (owners.get(n.ownerId) ?? null),
    tags: n.tags,
    ...(groups === undefined ? {} : {ownerGroups: groups}),
  }
}

/** The node's visibility class under `p`. O(rules); NO_POLICY_CLASS when open. */
export const classOf = (p: NetPolicy, n: StoredNode): string =>
  p.open ? NO_POLICY_CLASS : p.compiled.classOf(policyNode(n, p.owners, p.ownerGroups))

/** A peer's entry for a receiver: its own JSON, with `inbound` when the policy limits it. */
export function peerEntry(peerJson: string, inbound: readonly InboundRule[] | undefined): string {
  if (inbound === undefined) return peerJson
  return `${peerJson.slice(0, -1)},"inbound":${JSON.stringify(inbound)}}`
}

/**
 * The view of class `cls`: every active peer it sees (peer id -> entry JSON), in the order of
 * `peers`. `peers` is the network's active nodes' own JSON, `classes` every node's class.
 */
export function viewOf(
  p: NetPolicy,
  cls: string,
  peers: ReadonlyMap<string, string>,
  classes: ReadonlyMap<string, string>,
): Map<string, string> {
  if (p.open) return new Map(peers)
  const view = new Map<string, string>()
  for (const [id, json] of peers) {
    const peerClass = classes.get(id)
    if (peerClass === undefined || !p.compiled.sees(cls, peerClass)) continue
    view.set(id, peerEntry(json, p.compiled.inbound(cls, peerClass)))
  }
  return view
}

/** What a node holding view `before` must be told to hold `after`: upserted entries and removed ids. */
export interface ViewDiff {
  /** Entry JSON of peers new in `after` or whose entry differs, in `after`'s order. */
  readonly changed: readonly {readonly id: string; readonly json: string}[]
  /** Ids in `before` that are not in `after`. */
  readonly removed: readonly string[]
}

export function diffViews(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): ViewDiff {
  const changed: {id: string; json: string}[] = []
  for (const [id, json] of after) if (before.get(id) !== json) changed.push({id, json})
  const removed: string[] = []
  for (const id of before.keys()) if (!after.has(id)) removed.push(id)
  return {changed, removed}
}

/**
 * What a stand-alone relay is told about a network (shared/relay/control.ts RelayVisibility):
 * its active nodes grouped by class under `p`, and for each class the classes it sees. Null
 * when open (every pair may talk) or beyond `limits` (the relay decides as without a policy).
 * O(nodes × rules) for the classes, O(classes²) for `sees`.
 */
export function relayVisibilityOf(
  p: NetPolicy,
  nodes: readonly StoredNode[],
  limits: {readonly nodes: number; readonly pairs: number},
): {classes: string[][]; sees: number[][]} | null {
  if (p.open) return null
  const active = nodes.filter((n) => n.status === 'active')
  if (active.length > limits.nodes) return null
  const index = new Map<string, number>()
  const keys: string[] = []
  const classes: string[][] = []
  for (const n of active) {
    const cls = classOf(p, n)
    let i = index.get(cls)
    if (i === undefined) {
      index.set(cls, (i = keys.length))
      keys.push(cls)
      classes.push([])
    }
    classes[i]!.push(n.id)
  }
  const sees: number[][] = []
  let pairs = 0
  for (const a of keys) {
    const row: number[] = []
    for (const [j, b] of keys.entries()) if (p.compiled.sees(a, b)) row.push(j)
    pairs += row.length
    if (pairs > limits.pairs) return null
    sees.push(row)
  }
  return {classes, sees}
}
