/**
 * The parsed form of an ACL policy (issue 10): what parsePolicy produces and the evaluator,
 * the embedded tests and the compiler read. Immutable once built; not a wire format (the
 * controller stores the policy's text, never this).
 */

/** A node as the policy sees it: its mesh address, the user who owns it, and its tags. */
export interface PolicyNode {
  readonly id: string
  /** IPv4 mesh address, dotted quad, no prefix length. */
  readonly address: string
  /** The owning user's name; null for a node no user owns. */
  readonly owner: string | null
  /** `tag:name` strings. A tagged node is matched by its tags only, never by its owner. */
  readonly tags: readonly string[]
  /**
   * The groups the owner's OpenID provider put them in at their last login (the group claim of
   * each of their identities, together); absent or empty: none. Matched by `oidc:NAME` members
   * of policy groups; like the owner, ignored on a tagged node.
   */
  readonly ownerGroups?: readonly string[]
}

/** One validation problem: 1-based line and column, the JSON path (`acls[2].dst[1]`) and a one-line message. */
export interface PolicyError {
  readonly line: number
  readonly column: number
  /** JSON path of the offending value or key; empty for the document as a whole. */
  readonly path: string
  readonly message: string
}

export type PolicyProto = 'tcp' | 'udp' | 'icmp'

/** A port range, both ends included, 1..65535 (the shape of netmap.ts PortRange). */
export type PortRange = readonly [number, number]

/**
 * What one src/dst entry names (before the `:ports` of a dst).
 *   all    `*`: every node
 *   user   the untagged nodes the user owns
 *   group  the untagged nodes of the group's users (members flattened, nested groups included),
 *          and of users whose OpenID provider puts them in one of its `oidc:NAME` members
 *   tag    the nodes carrying the tag
 *   cidr   the nodes whose mesh address is inside (an address is a /32); from a literal or a hosts name
 */
export type Selector =
  | {readonly kind: 'all'; readonly text: string}
  | {readonly kind: 'user'; readonly text: string; readonly user: string}
  | {
      readonly kind: 'group'
      readonly text: string
      readonly users: ReadonlySet<string>
      /** IdP group names (the `oidc:` members, prefix cut off), nested groups' included. */
      readonly idpGroups: ReadonlySet<string>
    }
  | {readonly kind: 'tag'; readonly text: string; readonly tag: string}
  | {readonly kind: 'cidr'; readonly text: string; readonly base: number; readonly prefix: number}

/** A dst entry: a selector and the destination ports (`*` = [[1, 65535]]), sorted and merged. */
export interface DstEntry {
  readonly selector: Selector
  readonly ports: readonly PortRange[]
}

/** Where a rule or test sits in the text, for messages. */
export interface SourceSpot {
  /** Index in `acls` or `tests`. */
  readonly index: number
  readonly line: number
  readonly column: number
}

/** One `acls` entry: nodes matching any src entry may open connections to dst entries' nodes on their ports. */
export interface PolicyRule extends SourceSpot {
  readonly src: readonly Selector[]
  readonly dst: readonly DstEntry[]
  /** null = every protocol (ports are then `*`). */
  readonly proto: PolicyProto | null
}

/** One `tests` entry: what `src` must reach (accept) and must not reach (deny). */
export interface PolicyTest extends SourceSpot {
  readonly src: Selector
  readonly accept: readonly DstEntry[]
  readonly deny: readonly DstEntry[]
  /** The protocol the test checks; tcp when the test omits it. */
  readonly proto: PolicyProto
}

export interface Policy {
  readonly rules: readonly PolicyRule[]
  readonly tests: readonly PolicyTest[]
  /** Flattened group membership (nested groups resolved), for callers that list a group's users
   *  (its users only: `oidc:` members are resolved at each node, from its owner's groups). */
  readonly groups: ReadonlyMap<string, ReadonlySet<string>>
  /** hosts names and the CIDR each stands for (an address as /32). */
  readonly hosts: ReadonlyMap<string, {readonly base: number; readonly prefix: number}>
}
