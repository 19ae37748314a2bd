/**
 * The controller's storage port, cut in two:
 *  - Store: the reads the coordinator (state.ts) needs, plus write(fn), ONE transaction in which
 *    fn runs against a Tx.
 *  - Tx: row-level reads and writes inside that transaction, SQL only, no business rules.
 * The rules (who may register, name suffixing, address allocation, CIDR overlap, use counts,
 * limits, which audit entry a change writes) live in controller/domain/, which runs inside
 * store.write(tx => ...) and is the same code on every adapter (SQLite now, PostgreSQL next).
 *
 * What every adapter guarantees (the contract suite in contract.test-suite.ts checks them):
 *  1. write(fn) is one transaction: everything fn did, its audit rows included, commits, or none
 *     of it does (fn threw, or the commit failed).
 *  2. Concurrent writers are safe without check-then-insert races, also from two processes on
 *     one database: lockTenant/lockNetwork take the row's write lock (SQLite's write
 *     transaction is exclusive already, so they only read there), and UNIQUE constraints back
 *     every uniqueness rule. A violated constraint leaves the adapter as the MeshError that
 *     store/errors.ts maps it to (one table for every adapter), never as a driver error.
 *  3. Reads outside write() see only committed data.
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
  RelayKey,
  Role,
  Tenant,
  User,
  UserInvite,
} from '../../shared/protocol/control-api.js'
import type {NatBehaviour} from '../../shared/nat/behaviour.js'

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

/**
 * A node as stored: everything but `online`, which is presence kept by the coordinator, plus
 * when the coming expiry of its key was first announced (schema 0016; internal, not in the API).
 */
export type StoredNode = Omit<Node, 'online'> & {readonly keyWarnedAt?: string | null | undefined}

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

export const publicInvite = ({tenantId: _t, ...rest}: InviteRecord): Invite => rest
export const publicAuthKey = ({tenantId: _t, ...rest}: AuthKeyRecord): AuthKey => rest

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

/** An invite as created (its code only as a hash). */
export interface NewInvite {
  id: string
  networkId: string
  codeHash: string
  role: Role
  maxUses: number | null
  expiresAt: string
  createdBy: string
}

/** A user invite as created (its code only as a hash). */
export interface NewUserInvite {
  id: string
  tenantId: string
  codeHash: string
  role: Role
  maxUses: number | null
  expiresAt: string
  createdBy: string
}

/** An auth key as created (the key only as a hash). */
export interface NewAuthKey {
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
}

/** A relay key as stored: the API's view plus the key's hash. */
export interface RelayKeyRecord extends RelayKey {
  readonly keyHash: string
}

export const publicRelayKey = ({keyHash: _h, ...rest}: RelayKeyRecord): RelayKey => rest

/** A relay key as created (the key only as a hash). */
export interface NewRelayKey {
  id: string
  name: string
  region: string
  keyHash: string
  prefix: string
  /** null: imported from DATA_DIR/relay-keys.json. */
  createdBy: string | null
}

/** A relay that heartbeats: a stand-alone one (`mesh relay start`) or a replica's built-in one. */
export interface RelayRecord {
  readonly url: string
  readonly kind: 'standalone' | 'builtin'
  readonly region: string
  /** The key it registered with; null for built-in relays. */
  readonly keyId: string | null
  readonly connected: number
  readonly firstSeen: string
  readonly lastSeen: string
  /** Listed until then (its last heartbeat + its TTL). */
  readonly expiresAt: string
}

/** One heartbeat: the relay's row exists and expires at `expiresAt`. */
export interface RelayBeat {
  readonly url: string
  readonly kind: RelayRecord['kind']
  readonly region: string
  readonly keyId: string | null
  readonly connected: number
  readonly at: string
  readonly expiresAt: string
}

/** A node row as registration inserts it. */
export interface NewNodeRow {
  id: string
  networkId: string
  name: string
  hostname: string
  os: string
  publicKey: string
  address: number
  credentialHash: string
  status: NodeStatus
  endpoints: readonly string[]
  tags: readonly string[]
  ephemeral: boolean
  /** User id of the person who let the node in (issue 10); null when unknown. */
  ownerId: string | null
  /** When its key expires (schema 0016); null: never. */
  keyExpiresAt: string | null
  at: string
}

/** How a node proves it may join; checked inside the registration transaction. */
export type JoinProof =
  | {readonly kind: 'invite'; readonly codeHash: string}
  | {readonly kind: 'authkey'; readonly keyHash: string}
  | {readonly kind: 'open'; readonly networkId: string; readonly userId?: string}

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
  /**
   * Only links of the tenant's chain numbered above this, oldest first (following the log: a
   * link's number is taken under the chain's lock held to commit, so once link n is visible every
   * link below it is too, which entry ids do not promise on PostgreSQL). The page cursor then
   * carries the last number.
   */
  readonly afterSeq?: number | undefined
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

/**
 * One node's own view of its peer in a pair (migration 0008), reduced as the merge uses it
 * (controller/domain/connection-log.ts sideOf): `none` when the node sees no handshake; the
 * endpoint only while `direct`.
 */
export interface ConnectionSide {
  readonly path: Path
  readonly latencyMs: number | null
  readonly endpoint: string | null
}

/** A side as stored: who wrote it and when. */
export interface StoredSide extends ConnectionSide {
  /** The controller replica that wrote it: the one holding the node's netmap session then. */
  readonly replica: string
  /** RFC 3339 time it was written. */
  readonly at: string
}

/** A pair's row with both sides, as read under the pair's lock (Tx.lockConnections). */
export interface StoredPair extends StoredConnection {
  /** a's view of b; null when a does not report (or the row predates migration 0008). */
  readonly sideA: StoredSide | null
  readonly sideB: StoredSide | null
  /**
   * Whether the side's replica still holds a live `presence` row of the side's node at the time
   * asked (PostgreSQL replicas keep those rows; on SQLite presence lives in memory and this is
   * always false).
   */
  readonly heldA: boolean
  readonly heldB: boolean
}

/**
 * What one controller replica writes for a pair: the sides whose nodes report to it. Absent: the
 * node does not report to this replica (the stored side stays). Null: the node no longer reports
 * here (its session closed or it reset its reports without this peer); the stored side is
 * cleared only if this replica wrote it.
 */
export interface SideWrite {
  readonly nodeA: string
  readonly nodeB: string
  readonly a?: ConnectionSide | null | undefined
  readonly b?: ConnectionSide | null | undefined
}

/** Connection-log entries kept per network; older ones are dropped as new ones come. */
export const CONNECTION_LOG_KEEP = 10_000

/** A network as stored: the API's view plus the allocation cursor and the netmap version. */
export interface NetworkRecord extends Network {
  /** The last address handed out (uint32), or null for none yet. */
  readonly ipamCursor: number | null
  readonly netmapVersion: number
}

/** The API's view of a stored network. */
export const publicNetwork = ({ipamCursor: _c, netmapVersion: _v, ...net}: NetworkRecord): Network => net

/** The fields of a node that change after registration (absent: unchanged). */
export interface NodePatch {
  readonly status?: NodeStatus | undefined
  readonly name?: string | undefined
  readonly endpoints?: readonly string[] | undefined
  readonly lastSeen?: string | undefined
  readonly observedEndpoint?: string | null | undefined
  /** Both NAT columns together (null: neither). */
  readonly nat?: NatBehaviour | null | undefined
  /** A rotated WireGuard key (schema 0016: rotation). */
  readonly publicKey?: string | undefined
  /** A new key expiry (null: never). */
  readonly keyExpiresAt?: string | null | undefined
  /** When the coming expiry was announced (null: not yet). */
  readonly keyWarnedAt?: string | null | undefined
}

/** An audit row: what changed (the who, where and when come from the AuditContext). */
export interface AuditRecord {
  readonly tenantId: string | null
  readonly action: string
  readonly targetType: string
  readonly targetId: string | null
  readonly networkId: string | null
  readonly detail?: Record<string, unknown> | undefined
}

/** A tenant's ACL policy as stored: the document as written, and its version. */
export interface PolicyRecord {
  readonly tenantId: string
  readonly document: string
  /** 1 for the first policy, +1 per change. */
  readonly version: number
  readonly updatedAt: string
  /** User id of who set it. */
  readonly updatedBy: string
}

/** A chain's newest link: its number and hash. */
export interface AuditLink {
  readonly seq: number
  readonly hash: string
}

/** An audit row as stored, link fields included; `detail` is the stored JSON text. */
export interface AuditRow {
  readonly at: string
  readonly tenantId: string | null
  readonly actor: string
  readonly actorName: string
  readonly action: string
  readonly targetType: string
  readonly targetId: string | null
  readonly networkId: string | null
  readonly sourceAddress: string | null
  readonly requestId: string | null
  readonly detail: string
  readonly chain: string
  readonly chainSeq: number
  readonly prevHash: string
  readonly hash: string
}

/** An audit row read back for verification, with its entry id. */
export interface StoredAuditRow extends AuditRow {
  readonly id: number
}

/** A session (one login and the refresh tokens that followed it: a token family), as stored. */
export interface SessionRecord {
  readonly id: string
  readonly userId: string
  readonly tenantId: string
  readonly createdAt: string
  readonly lastUsedAt: string
  /** Expiry of its current refresh token (sliding: each refresh pushes it on). */
  readonly expiresAt: string
  readonly sourceAddress: string | null
  readonly revokedAt: string | null
  readonly revokedReason: 'logout' | 'revoked' | 'reuse' | null
}

/** A refresh token as stored (its hash only). */
export interface RefreshTokenRecord {
  readonly hash: string
  readonly sessionId: string
  readonly createdAt: string
  readonly expiresAt: string
  /** When it was exchanged for the next one; null while it is the family's current token. */
  readonly retiredAt: string | null
  /** The client address that exchanged it. */
  readonly retiredBy: string | null
}

/** An account's TOTP MFA as stored. */
export interface MfaRecord {
  readonly userId: string
  /** Base32 TOTP secret. */
  readonly secret: string
  readonly createdAt: string
  /** Null while pending (made, not yet confirmed with a code): login does not ask for it then. */
  readonly enabledAt: string | null
  /** The newest time step whose code was accepted (codes of it or older are replays). */
  readonly lastStep: number | null
}

/** A person's identity at an OpenID provider, as stored (schema 0017): it names one user. */
export interface IdentityRecord {
  /** The provider's issuer identifier (the ID token's `iss`). */
  readonly issuer: string
  /** The ID token's `sub` at that issuer. */
  readonly subject: string
  readonly userId: string
  /** The name of the configured issuer it came through. */
  readonly provider: string
  readonly email: string | null
  /** The group claim at the last login. */
  readonly groups: readonly string[]
  readonly createdAt: string
  readonly lastLoginAt: string
}

/** The controller's half of an OIDC login in progress (schema 0017). */
export interface OidcFlowRecord {
  /** SHA-256 of the handle the client holds. */
  readonly idHash: string
  readonly kind: 'code' | 'device'
  readonly provider: string
  /** state, nonce, PKCE verifier and redirect URI; or the device code and poll interval. */
  readonly data: Readonly<Record<string, unknown>>
  readonly createdAt: string
  readonly expiresAt: string
  /** Device flows: the provider is not asked again before this. */
  readonly nextPollAt: string | null
  /** The client address that started it (schema 0018); null or absent when unknown. */
  readonly source?: string | null
}

/**
 * Row-level operations inside one write transaction. SQL only: every decision is the domain's.
 * Methods that read return undefined (or false) for a missing row and never throw for it.
 */
export interface Tx {
  // ---- locks: the row's write lock until the transaction ends (PostgreSQL: SELECT ... FOR
  // UPDATE). Every rule that reads a network's rows and then writes (registration, renames,
  // the allocation cursor) takes lockNetwork first; rules across a tenant's networks (CIDR
  // overlap, network names) take lockTenant.
  lockTenant(id: string): Promise<Tenant | undefined>
  lockNetwork(id: string): Promise<NetworkRecord | undefined>

  // ---- tenants, users, tokens
  insertTenant(t: {id: string; name: string; at: string}): Promise<Tenant>
  /** The tenant's default node key lifetime in days (schema 0016; 0: never); 0 for no tenant. */
  tenantKeyDays(tenantId: string): Promise<number>
  setTenantKeyDays(tenantId: string, days: number): Promise<void>
  getUser(id: string): Promise<UserRecord | undefined>
  usernameTaken(username: string): Promise<boolean>
  insertUser(u: {
    id: string
    tenantId: string
    username: string
    passwordHash: string
    role: Role
    superuser: boolean
    at: string
  }): Promise<UserRecord>
  setUserRole(id: string, role: Role): Promise<void>
  setUsername(id: string, username: string): Promise<void>
  deleteUser(id: string): Promise<void>
  /** `sessionId`: the session of an access token (schema 0014); absent for a session-less token. */
  insertToken(t: {
    id: string
    hash: string
    userId: string
    at: string
    expiresAt: string
    sessionId?: string | undefined
  }): Promise<void>
  /**
   * Deletes session-less tokens that expired before `at`, and sessions whose refresh token
   * expired before `at` (their tokens go with them).
   */
  deleteExpiredTokens(at: string): Promise<void>
  /** The token with its user's tenant and its session (null: a session-less token). */
  getToken(
    hash: string,
  ): Promise<{id: string; userId: string; tenantId: string; sessionId: string | null} | undefined>
  deleteToken(hash: string): Promise<void>

  // ---- sessions and refresh tokens (schema 0014)
  insertSession(s: {
    id: string
    userId: string
    at: string
    expiresAt: string
    sourceAddress: string | null
  }): Promise<void>
  /** The session with its user's tenant; revoked and expired ones too. */
  getSession(id: string): Promise<SessionRecord | undefined>
  /** A refresh exchanged: last use, the new (sliding) expiry and the client address. */
  touchSession(id: string, at: string, expiresAt: string, sourceAddress: string | null): Promise<void>
  /**
   * Revokes the session at once: deletes its access tokens, retires its current refresh token
   * and stamps revoked_at/reason unless it is revoked already. False when it was revoked already.
   */
  revokeSession(id: string, at: string, reason: 'logout' | 'revoked' | 'reuse'): Promise<boolean>
  /** Deletes the session's access tokens that expired before `at` (a refresh sweeps its own). */
  deleteExpiredSessionTokens(sessionId: string, at: string): Promise<void>
  insertRefreshToken(t: {hash: string; sessionId: string; at: string; expiresAt: string}): Promise<void>
  getRefreshToken(hash: string): Promise<RefreshTokenRecord | undefined>
  /**
   * Retires the refresh token if it is still current: one conditional UPDATE, so of two writers
   * that present the same token at once exactly one gets true (PostgreSQL: the second waits on
   * the row lock, then finds retired_at set and updates nothing).
   */
  retireRefreshToken(hash: string, at: string, by: string | null): Promise<boolean>

  // ---- TOTP MFA (schema 0014)
  getMfa(userId: string): Promise<MfaRecord | undefined>
  /** Inserts or replaces the account's MFA row as pending (enabled_at NULL) with a new secret. */
  putPendingMfa(userId: string, secret: string, at: string): Promise<void>
  enableMfa(userId: string, at: string): Promise<void>
  /** Deletes the account's MFA row and its recovery codes. */
  deleteMfa(userId: string): Promise<void>
  /**
   * Records `step` as the newest accepted time step if it is newer than the stored one: false
   * when it is not (a replay, or a concurrent use of the same code that lost).
   */
  useTotpStep(userId: string, step: number): Promise<boolean>
  /** Replaces the account's recovery codes with these hashes. */
  putRecoveryCodes(userId: string, hashes: readonly string[], at: string): Promise<void>
  /** Marks the code used if it exists and is unused; false otherwise (one conditional UPDATE). */
  useRecoveryCode(userId: string, hash: string, at: string): Promise<boolean>
  /**
   * Every account's MFA row, by user id (PostgreSQL: locked until the transaction ends): the
   * start-up pass that seals plain secrets (domain/sessions.ts sealMfaSecrets).
   */
  listMfa(): Promise<MfaRecord[]>
  /** Sets the row's secret to `to` if it still holds `from`; false otherwise (one conditional UPDATE). */
  replaceMfaSecret(userId: string, from: string, to: string): Promise<boolean>

  // ---- OIDC identities and logins in progress (schema 0017)
  getTenantByName(name: string): Promise<Tenant | undefined>
  getIdentity(issuer: string, subject: string): Promise<IdentityRecord | undefined>
  insertIdentity(i: IdentityRecord): Promise<void>
  /** A later login: the claims it brought and its time. */
  updateIdentityLogin(
    issuer: string,
    subject: string,
    fields: {email: string | null; groups: readonly string[]; at: string},
  ): Promise<void>
  insertOidcFlow(f: OidcFlowRecord): Promise<void>
  getOidcFlow(idHash: string): Promise<OidcFlowRecord | undefined>
  /** True for exactly one of several writers deleting the same flow: a flow is finished once. */
  deleteOidcFlow(idHash: string): Promise<boolean>
  /** A device flow polled: when the provider may be asked next, and its (maybe slowed) interval. */
  setOidcFlowPoll(idHash: string, nextPollAt: string, data: Readonly<Record<string, unknown>>): Promise<void>
  /** Deletes flows that expired before `at`. */
  deleteExpiredOidcFlows(at: string): Promise<void>

  // ---- networks and members
  getNetwork(id: string): Promise<NetworkRecord | undefined>
  networkNameTaken(tenantId: string, name: string): Promise<boolean>
  /** Name and CIDR of every network of the tenant. */
  networkCidrs(tenantId: string): Promise<{name: string; cidr: string}[]>
  insertNetwork(net: NewNetwork, at: string): Promise<void>
  updateNetwork(
    id: string,
    fields: {name: string; description: string; joinPolicy: JoinPolicy; maxNodes: number | null},
  ): Promise<void>
  /** Deletes the network; its nodes, invites, keys, members and connections go with it. */
  deleteNetwork(id: string): Promise<void>
  /** Inserts or updates the user's role on the network. */
  upsertMember(networkId: string, userId: string, role: Role): Promise<void>
  /** False when the user had no role on the network. */
  deleteMember(networkId: string, userId: string): Promise<boolean>
  setIpamCursor(networkId: string, address: number): Promise<void>
  /** Bumps the network's netmap version, logs (version, node id, kind) and returns the new version. */
  bumpNetmap(networkId: string, nodeId: string, kind: NodeChange['kind']): Promise<number>
  /** Drops the network's change-log rows at or below `version`. */
  trimChangeLog(networkId: string, version: number): Promise<void>

  // ---- invites and auth keys
  insertInvite(inv: NewInvite & {at: string}): Promise<void>
  getInvite(id: string): Promise<InviteRecord | undefined>
  inviteByCode(codeHash: string): Promise<InviteRecord | undefined>
  /** Sets revoked_at unless it is set already (revoking twice keeps the first time). */
  revokeInvite(id: string, at: string): Promise<void>
  countInviteUse(id: string): Promise<void>
  insertAuthKey(key: NewAuthKey & {at: string}): Promise<void>
  getAuthKey(id: string): Promise<AuthKeyRecord | undefined>
  authKeyByHash(keyHash: string): Promise<AuthKeyRecord | undefined>
  revokeAuthKey(id: string, at: string): Promise<void>
  countAuthKeyUse(id: string): Promise<void>

  // ---- user invites (schema 0015)
  insertUserInvite(inv: NewUserInvite & {at: string}): Promise<void>
  getUserInvite(id: string): Promise<UserInvite | undefined>
  userInviteByCode(codeHash: string): Promise<UserInvite | undefined>
  /** Sets revoked_at unless it is set already (revoking twice keeps the first time). */
  revokeUserInvite(id: string, at: string): Promise<void>
  /**
   * Counts one use if the invite is still good at `at` (not revoked, not expired, uses left): one
   * conditional UPDATE, so of two sign-ups racing for the last use exactly one gets true
   * (PostgreSQL: the second waits on the row lock, then finds no use left).
   */
  useUserInvite(id: string, at: string): Promise<boolean>

  // ---- nodes
  getNode(id: string): Promise<StoredNode | undefined>
  /** Every node whose owner is the user, in every network, oldest first. */
  nodesOwnedBy(userId: string): Promise<StoredNode[]>
  setNodeOwner(id: string, ownerId: string | null): Promise<void>
  networkNodes(networkId: string): Promise<StoredNode[]>
  publicKeyTaken(networkId: string, publicKey: string): Promise<boolean>
  nodeNameTaken(networkId: string, name: string): Promise<boolean>
  /** Names of the network's nodes that start with `prefix` (compared as plain text). */
  nodeNamesWithPrefix(networkId: string, prefix: string): Promise<string[]>
  /** The network's node addresses >= `from`, ascending, at most `limit` of them. */
  nodeAddressesFrom(networkId: string, from: number, limit: number): Promise<number[]>
  insertNode(n: NewNodeRow): Promise<StoredNode>
  updateNode(id: string, patch: NodePatch): Promise<void>
  deleteNode(id: string): Promise<void>

  // ---- connections
  /** Names of those of `ids` that are nodes of the network. */
  nodeNamesIn(networkId: string, ids: readonly string[]): Promise<Map<string, string>>
  /**
   * Inserts or updates the pair's row; `since` moves to `at` only when `moveSince`. With
   * `sides`, both side columns are set in the same statement (as setConnectionSides would).
   */
  upsertConnection(
    networkId: string,
    w: ConnectionWrite,
    at: string,
    moveSince: boolean,
    sides?: {a: StoredSide | null; b: StoredSide | null},
  ): Promise<void>
  deleteConnection(networkId: string, nodeA: string, nodeB: string): Promise<void>
  /** Appends a connection-log row and returns its sequence number. */
  appendConnectionLog(
    networkId: string,
    e: {
      nodeA: string
      nodeB: string
      event: ConnectionEvent
      from: Path
      to: Path
      latencyMs: number | null
      at: string
    },
  ): Promise<number>
  /** Keeps only the newest `keep` connection-log rows of the network. */
  trimConnectionLog(networkId: string, keep: number): Promise<void>
  /**
   * Locks the pairs until the transaction ends and returns the rows of those that have one, with
   * both sides and whether each side's replica still holds its node at `at`. PostgreSQL: one
   * advisory transaction lock per pair, taken in one global order (a pair with no row yet has
   * no row to lock, and two replicas may each be about to create it), then SELECT ... FOR
   * UPDATE. SQLite: write transactions run one at a time already.
   */
  lockConnections(
    networkId: string,
    pairs: readonly {nodeA: string; nodeB: string}[],
    at: string,
  ): Promise<StoredPair[]>
  /** Sets both side columns of the pair's existing row; null clears a side. */
  setConnectionSides(
    networkId: string,
    nodeA: string,
    nodeB: string,
    sides: {a: StoredSide | null; b: StoredSide | null},
  ): Promise<void>

  // ---- relays (shared by controller replicas)
  insertRelayKey(key: NewRelayKey & {at: string}): Promise<void>
  getRelayKey(id: string): Promise<RelayKeyRecord | undefined>
  relayKeyByHash(keyHash: string): Promise<RelayKeyRecord | undefined>
  /** Sets revoked_at unless it is set already (revoking twice keeps the first time). */
  revokeRelayKey(id: string, at: string): Promise<void>
  /** Deletes the relays registered with the key; returns how many. */
  deleteRelaysOfKey(keyId: string): Promise<number>
  /**
   * Inserts the relay's row or pushes it forward (region, key, connected, last_seen, expiry);
   * first_seen is kept. Returns true when the row is new.
   */
  upsertRelay(beat: RelayBeat): Promise<boolean>
  /** Deletes the relay's row (a replica that stops); false when there was none. */
  deleteRelay(url: string): Promise<boolean>
  /** Deletes relays whose expiry is before `at`; returns how many. */
  deleteExpiredRelays(at: string): Promise<number>
  getSetting(name: string): Promise<string | undefined>
  /** Writes the setting unless it exists; returns the value stored (the existing one, if any). */
  insertSettingIfAbsent(name: string, value: string, at: string): Promise<string>

  // ---- ACL policy (controller/domain/policies.ts decides what may be stored)
  getPolicy(tenantId: string): Promise<PolicyRecord | undefined>
  /** Inserts or replaces the tenant's policy row. */
  putPolicy(p: PolicyRecord): Promise<void>
  deletePolicy(tenantId: string): Promise<void>

  // ---- audit: a hash chain per tenant; the rule (what is hashed, in which order) is
  // controller/domain/audit.ts's, which every write that audits goes through.
  /**
   * Holds the chain's append lock until the transaction ends, so links are numbered and hashed
   * one after the other (PostgreSQL: an advisory transaction lock per chain; SQLite: its single
   * writer already is one).
   */
  lockAuditChain(chain: string): Promise<void>
  /** The newest link of the chain; undefined when the chain has none yet. */
  lastAuditLink(chain: string): Promise<AuditLink | undefined>
  /** Inserts one audit row, its link fields included, as given. */
  insertAudit(row: AuditRow): Promise<void>

  // ---- OIDC logins in progress per address (schema 0018)
  /** How many OIDC flows started from `source` have not expired at `at`. */
  countOidcFlowsFrom(source: string, at: string): Promise<number>
  /**
   * Moves a device flow's next poll time to `nextPollAt` if it is due at `at` (null or not after
   * `at`): true for exactly one of several pollers racing for the same due poll (one conditional
   * UPDATE; PostgreSQL re-checks the condition after the first writer commits).
   */
  claimOidcFlowPoll(idHash: string, at: string, nextPollAt: string): Promise<boolean>
}

export interface Store {
  /**
   * Readiness probe: the database answers AND a small write commits (a full disk must fail it).
   * Throws STORAGE_FULL or STORAGE_UNAVAILABLE (store/errors.ts) when the storage is at fault.
   */
  ping(): Promise<void>
  close(): Promise<void>

  /**
   * Runs fn in one write transaction and commits what it did; rolls everything back when fn
   * throws (and rethrows). Writes queue behind each other; fn must not call write() itself.
   */
  write<T>(fn: (tx: Tx) => Promise<T>): Promise<T>

  // ---- tenants and users
  hasTenants(): Promise<boolean>
  getTenant(id: string): Promise<Tenant | undefined>
  getUser(id: string): Promise<UserRecord | undefined>
  getUserByUsername(username: string): Promise<UserRecord | undefined>
  listUsers(tenantId: string, page: PageRequest): Promise<Page<User>>
  /** `sessionId` null: a token from before schema 0014 (no refresh; valid until its expiry). */
  getToken(
    hash: string,
  ): Promise<{id: string; userId: string; expiresAt: string; sessionId: string | null} | undefined>
  getSession(id: string): Promise<SessionRecord | undefined>
  /** The user's sessions that are neither revoked nor expired at `at`, oldest first. */
  listSessions(userId: string, at: string): Promise<SessionRecord[]>
  getMfa(userId: string): Promise<MfaRecord | undefined>
  /** The user's OIDC identities (schema 0017), oldest first. */
  identitiesOf(userId: string): Promise<IdentityRecord[]>

  // ---- networks and members
  listNetworks(tenantId: string, page: PageRequest): Promise<Page<Network>>
  getNetwork(id: string): Promise<Network | undefined>
  getNetworkByName(tenantId: string, name: string): Promise<Network | undefined>
  listMembers(networkId: string): Promise<NetworkMember[]>
  getMemberRole(networkId: string, userId: string): Promise<Role | undefined>

  // ---- invites and auth keys
  listInvites(networkId: string, page: PageRequest): Promise<Page<Invite>>
  getInvite(id: string): Promise<InviteRecord | undefined>
  listAuthKeys(networkId: string, page: PageRequest): Promise<Page<AuthKey>>
  getAuthKey(id: string): Promise<AuthKeyRecord | undefined>

  // ---- user invites (schema 0015)
  listUserInvites(tenantId: string, page: PageRequest): Promise<Page<UserInvite>>
  getUserInvite(id: string): Promise<UserInvite | undefined>
  userInviteByCode(codeHash: string): Promise<UserInvite | undefined>

  // ---- nodes
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
  /** Id and WireGuard public key of every active node (the discovery port's key index). */
  activeNodeKeys(): Promise<{id: string; publicKey: string}[]>
  /**
   * Active nodes whose key expires after `after` (null: any time before) and at or before
   * `until`, soonest first, at most `limit` (the key-expiry sweep; schema 0016). With
   * `unwarned`, only those whose coming expiry was not announced yet.
   */
  keyExpiries(q: {
    after: string | null
    until: string
    unwarned?: boolean | undefined
    limit: number
  }): Promise<StoredNode[]>
  /** The tenant's default node key lifetime in days (0: never). */
  tenantKeyDays(tenantId: string): Promise<number>

  // ---- netmap versions
  netmapVersion(networkId: string): Promise<number>
  /**
   * Node ids changed after `version`, or undefined when the change log no longer reaches back
   * that far (or `version` is from the future): the caller sends a full map. One consistent
   * snapshot.
   */
  changesSince(networkId: string, version: number): Promise<{version: number; nodeIds: string[]} | undefined>

  // ---- connections (NAT traversal reporting)
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

  // ---- relays
  listRelayKeys(page: PageRequest): Promise<Page<RelayKey>>
  getRelayKey(id: string): Promise<RelayKeyRecord | undefined>
  relayKeyByHash(keyHash: string): Promise<RelayKeyRecord | undefined>
  /** Relays whose expiry is at or after `at`, by region then URL. */
  liveRelays(at: string): Promise<RelayRecord[]>
  getSetting(name: string): Promise<string | undefined>

  // ---- ACL policy
  /** The tenant's policy; undefined when it has none (every node may reach every other). */
  getPolicy(tenantId: string): Promise<PolicyRecord | undefined>

  // ---- audit
  listAudit(filter: AuditFilter, page: PageRequest): Promise<Page<AuditEntry>>
  /**
   * Up to `limit` links of the chain with a number above `afterSeq`, in chain order, exactly as
   * stored (for verification: nothing is parsed or normalised).
   */
  auditLinks(chain: string, afterSeq: number, limit: number): Promise<StoredAuditRow[]>
  /** How many entries of the tenant (null: of no tenant) were written before the chain existed. */
  countUnchainedAudit(tenantId: string | null): Promise<number>

  // ---- OIDC groups in policies (issue 10)
  /**
   * User id -> the group claims of the user's OIDC identities at their last logins (every issuer
   * together, sorted, without repeats), for the tenant's users that have any: what `oidc:`
   * members of policy groups match. One query; at most the tenant's identities.
   */
  identityGroupsOf(tenantId: string): Promise<Map<string, string[]>>
}
