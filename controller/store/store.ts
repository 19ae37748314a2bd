/**
 * The controller's storage port: every read and every atomic write the coordinator (state.ts)
 * needs, as Promise-returning methods so a PostgreSQL adapter can implement the same interface
 * without touching the handlers.
 *
 * Invariants every adapter keeps (the contract suite in contract.test-suite.ts checks them):
 *  1. Each mutating method is ONE transaction that also appends its audit entry: either both
 *     the change and its audit row are committed, or neither is.
 *  2. Rules that need a consistent view (unique names, CIDR overlap, invite/key use counts,
 *     address allocation, max nodes) are decided inside that transaction, so two concurrent
 *     controllers cannot both win. They throw MeshError with the stable code.
 *  3. Every change to a node that peers can see bumps its network's netmap version by one and
 *     records (network, version, node id) in the change log, in the same transaction.
 *  4. Secrets (tokens, invite codes, auth keys, node credentials) are stored only as SHA-256
 *     hashes; passwords only as salted scrypt hashes.
 */
import type {
  AuditEntry,
  AuthKey,
  Connection,
  ConnectionEvent,
  ConnectionLogEntry,
  Invite,
  JoinPolicy,
  Network,
  NetworkMember,
  Node,
  NodeStatus,
  Path,
  Role,
  Tenant,
  User,
} from '../../shared/protocol/control-api.js'

/** Who did it, from where, in which request: stamped on every audit entry. */
export interface AuditContext {
  /** `user:<id>`, `node:<id>` or `system`. */
  readonly actor: string
  readonly actorName: string
  readonly sourceAddress: string | null
  readonly requestId: string | null
  /** The time of the change (also used for the rows it writes). */
  readonly at: string
}

/** A node as stored: everything but `online`, which is presence kept by the coordinator. */
export type StoredNode = Omit<Node, 'online'>

export interface UserRecord extends User {
  readonly passwordHash: string
}

/** A user as the API shows it: the record without its password hash. */
export const publicUser = (u: UserRecord): User => ({
  id: u.id,
  tenantId: u.tenantId,
  username: u.username,
  role: u.role,
  superuser: u.superuser,
  createdAt: u.createdAt,
})

export interface InviteRecord extends Invite {
  readonly tenantId: string
}

export interface AuthKeyRecord extends AuthKey {
  readonly tenantId: string
}

/** A node change that peers must hear of; returned by every node mutation. */
export interface NodeChange {
  readonly networkId: string
  readonly tenantId: string
  /** The network's netmap version after this change. */
  readonly version: number
  readonly nodeId: string
  readonly kind: 'added' | 'changed' | 'removed'
  /** The node after the change; null when removed. */
  readonly node: StoredNode | null
  /** The node before the change; null when added. */
  readonly before: StoredNode | null
  /** Set when the node went because its whole network was deleted (no peer deltas needed). */
  readonly networkDeleted?: boolean
}

export interface Page<T> {
  readonly items: T[]
  readonly nextCursor: string | null
}

export interface PageRequest {
  readonly limit: number
  readonly cursor?: string | undefined
}

export interface NewNetwork {
  readonly id: string
  readonly tenantId: string
  readonly name: string
  readonly cidr: string
  readonly description: string
  readonly joinPolicy: JoinPolicy
  readonly maxNodes: number | null
}

export interface NetworkPatch {
  readonly name?: string | undefined
  readonly description?: string | undefined
  readonly joinPolicy?: JoinPolicy | undefined
  readonly maxNodes?: number | null | undefined
}

/** How a node proves it may join; checked inside the registration transaction. */
export type JoinProof =
  | {readonly kind: 'invite'; readonly codeHash: string}
  | {readonly kind: 'authkey'; readonly keyHash: string}
  | {readonly kind: 'open'; readonly networkId: string}

export interface NewNode {
  readonly id: string
  readonly name: string
  readonly hostname: string
  readonly os: string
  readonly publicKey: string
  readonly endpoints: readonly string[]
  readonly credentialHash: string
}

export interface AuditFilter {
  readonly tenantId: string
  readonly since?: string | undefined
  /** `user:<id>`, `node:<id>`, or a user name (matched against actor_name). */
  readonly actor?: string | undefined
  readonly networkId?: string | undefined
}

/** A pair's current state as stored (a pair with no working path has none). */
export interface StoredConnection {
  /** The smaller node id of the pair. */
  readonly nodeA: string
  readonly nodeB: string
  readonly path: 'direct' | 'relay'
  readonly latencyMs: number | null
  /** The endpoint a's WireGuard uses for b. */
  readonly endpointA: string | null
  readonly endpointB: string | null
  readonly since: string
  readonly updatedAt: string
}

/** One pair's new state for writeConnections; `path: 'none'` removes the pair's row. */
export interface ConnectionWrite {
  readonly nodeA: string
  readonly nodeB: string
  readonly path: Path
  readonly latencyMs: number | null
  readonly endpointA: string | null
  readonly endpointB: string | null
  /** Set when the path changed: the row's `since` becomes the write time and this is logged. */
  readonly event?: {readonly event: ConnectionEvent; readonly from: Path} | undefined
}

/** Connection-log entries kept per network; older ones are dropped as new ones come. */
export const CONNECTION_LOG_KEEP = 10_000

export interface Store {
  /**
   * Readiness probe: the database answers AND a small write commits (a full disk must fail it).
   * Throws the storage's own error, or STORAGE_FULL when the disk is (nearly) full.
   */
  ping(): Promise<void>
  close(): Promise<void>

  // ---- tenants and users
  hasTenants(): Promise<boolean>
  createTenantWithOwner(
    tenant: {id: string; name: string},
    owner: {id: string; username: string; passwordHash: string; superuser: boolean},
    audit: AuditContext,
  ): Promise<{tenant: Tenant; owner: User}>
  getTenant(id: string): Promise<Tenant | undefined>
  getUser(id: string): Promise<UserRecord | undefined>
  getUserByUsername(username: string): Promise<UserRecord | undefined>
  listUsers(tenantId: string, page: PageRequest): Promise<Page<User>>
  createUser(
    user: {id: string; tenantId: string; username: string; passwordHash: string; role: Role},
    audit: AuditContext,
  ): Promise<User>
  updateUserRole(id: string, role: Role, audit: AuditContext): Promise<User>
  deleteUser(id: string, audit: AuditContext): Promise<void>

  // ---- user tokens
  createToken(
    token: {id: string; hash: string; userId: string; expiresAt: string},
    audit: AuditContext,
  ): Promise<void>
  getToken(hash: string): Promise<{id: string; userId: string; expiresAt: string} | undefined>
  deleteToken(hash: string, audit: AuditContext): Promise<void>

  // ---- networks and members
  listNetworks(tenantId: string, page: PageRequest): Promise<Page<Network>>
  getNetwork(id: string): Promise<Network | undefined>
  getNetworkByName(tenantId: string, name: string): Promise<Network | undefined>
  createNetwork(net: NewNetwork, audit: AuditContext): Promise<Network>
  updateNetwork(id: string, patch: NetworkPatch, audit: AuditContext): Promise<Network>
  /** Deletes the network with its nodes, invites and keys; returns the removed nodes' changes. */
  deleteNetwork(id: string, audit: AuditContext): Promise<NodeChange[]>
  listMembers(networkId: string): Promise<NetworkMember[]>
  getMemberRole(networkId: string, userId: string): Promise<Role | undefined>
  setMember(networkId: string, userId: string, role: Role, audit: AuditContext): Promise<NetworkMember>
  removeMember(networkId: string, userId: string, audit: AuditContext): Promise<void>

  // ---- invites and auth keys
  createInvite(
    invite: {
      id: string
      networkId: string
      codeHash: string
      role: Role
      maxUses: number | null
      expiresAt: string
      createdBy: string
    },
    audit: AuditContext,
  ): Promise<Invite>
  listInvites(networkId: string, page: PageRequest): Promise<Page<Invite>>
  getInvite(id: string): Promise<InviteRecord | undefined>
  revokeInvite(id: string, audit: AuditContext): Promise<Invite>
  createAuthKey(
    key: {
      id: string
      networkId: string
      keyHash: string
      prefix: string
      reusable: boolean
      ephemeral: boolean
      preApproved: boolean
      tags: readonly string[]
      expiresAt: string
      createdBy: string
    },
    audit: AuditContext,
  ): Promise<AuthKey>
  listAuthKeys(networkId: string, page: PageRequest): Promise<Page<AuthKey>>
  getAuthKey(id: string): Promise<AuthKeyRecord | undefined>
  revokeAuthKey(id: string, audit: AuditContext): Promise<AuthKey>

  // ---- nodes
  /**
   * Registers a node in one transaction: checks the invite or auth key (INVITE_* / AUTHKEY_*),
   * counts a use, enforces max nodes, picks a unique name (web, web-2, ...) and an address
   * (controller/ipam.ts), inserts the node and bumps the netmap version.
   */
  registerNode(proof: JoinProof, node: NewNode, audit: AuditContext): Promise<NodeChange>
  getNode(id: string): Promise<StoredNode | undefined>
  getNodeByCredential(credentialHash: string): Promise<StoredNode | undefined>
  listNodes(
    networkId: string,
    filter: {status?: NodeStatus | undefined},
    page: PageRequest,
  ): Promise<Page<StoredNode>>
  /** Every node of a network, unpaged (netmap cache loading). */
  allNodes(networkId: string): Promise<StoredNode[]>
  /** Every node of a tenant (admin event snapshot). */
  tenantNodes(tenantId: string): Promise<StoredNode[]>
  ephemeralNodes(): Promise<StoredNode[]>
  approveNode(id: string, audit: AuditContext): Promise<NodeChange>
  renameNode(id: string, name: string, audit: AuditContext): Promise<NodeChange>
  /** Audited as `action`: node.remove (an admin or the reaper) or node.leave (the node itself). */
  removeNode(id: string, audit: AuditContext, action?: 'node.remove' | 'node.leave'): Promise<NodeChange>
  /**
   * Returns undefined when the endpoints did not change (nothing written). Bumps the netmap
   * version but writes no audit entry: endpoints are node telemetry, not an administrative change.
   */
  setNodeEndpoints(id: string, endpoints: readonly string[], at: string): Promise<NodeChange | undefined>
  /**
   * The public mapping observed on the discovery port (null: none). Kept apart from the reported
   * endpoints, which it never touches (and setNodeEndpoints never touches it). Like
   * setNodeEndpoints: undefined when unchanged, bumps the netmap version, no audit entry.
   */
  setNodeObservedEndpoint(id: string, endpoint: string | null, at: string): Promise<NodeChange | undefined>
  /** Id and WireGuard public key of every active node (the discovery port's key index). */
  activeNodeKeys(): Promise<{id: string; publicKey: string}[]>
  /** Presence bookkeeping: last-seen time only; not audited, no netmap change. */
  touchNode(id: string, at: string): Promise<void>

  // ---- netmap versions
  netmapVersion(networkId: string): Promise<number>
  /**
   * Node ids changed after `version`, or undefined when the change log no longer reaches back
   * that far (or `version` is from the future): the caller sends a full map.
   */
  changesSince(networkId: string, version: number): Promise<{version: number; nodeIds: string[]} | undefined>

  // ---- connections (NAT traversal reporting; telemetry: no audit entry, no netmap change)
  /**
   * Writes a batch of pair states in one transaction: upserts (or for `none` deletes) each pair's
   * row, appends a log entry for each write with an `event`, and drops log entries beyond the
   * newest CONNECTION_LOG_KEEP of the network. Writes naming a node that is no longer in the
   * network are skipped. Returns the appended log entries, with node names.
   */
  writeConnections(
    networkId: string,
    writes: readonly ConnectionWrite[],
    at: string,
  ): Promise<ConnectionLogEntry[]>
  /** Every stored pair of a network (the connection tracker's starting point). */
  allConnections(networkId: string): Promise<StoredConnection[]>
  /** Pairs of a network whose nodes are both active, optionally only those of one node. */
  listConnections(
    networkId: string,
    filter: {nodeId?: string | undefined},
    page: PageRequest,
  ): Promise<Page<Connection>>
  /** The connection log of a network, newest first, optionally only entries of one node. */
  connectionLog(
    networkId: string,
    filter: {nodeId?: string | undefined},
    page: PageRequest,
  ): Promise<Page<ConnectionLogEntry>>

  // ---- audit
  /** An audit entry with no other change (failed logins, for instance). */
  appendAudit(
    entry: {
      tenantId: string | null
      action: string
      targetType: string
      targetId: string | null
      networkId: string | null
      detail: Record<string, unknown>
    },
    audit: AuditContext,
  ): Promise<void>
  listAudit(filter: AuditFilter, page: PageRequest): Promise<Page<AuditEntry>>
}
