/**
 * The controller's coordinator: the API handlers, the netmap hub and the event stream call it;
 * it alone calls the store. It decides who may do what (roles), shapes audit contexts, mints
 * secrets, tracks node presence, and tells listeners about every node change after it commits.
 */
import type {
  AuditEntry,
  AuthKey,
  CreateAuthKeyRequestSchema,
  CreateInviteRequestSchema,
  CreateNetworkRequestSchema,
  Invite,
  LoginResponse,
  Network,
  NetworkMember,
  Node,
  NodeStatus,
  Permission,
  RegisterRequestSchema,
  RegisterResponse,
  Role,
  Tenant,
  UpdateNetworkRequest,
  User,
} from '../shared/protocol/control-api.js'
import {ROLE_RANK, SUPERUSER_RANK, roleAllows} from '../shared/protocol/control-api.js'
import type {z} from 'zod'
import {MeshError} from '../shared/errors.js'
import {usableEndpoints} from '../shared/net/endpoint.js'
import {parseCidr} from '../shared/net/ipv4.js'
import {newId, newSecret, hashSecret} from './auth/secrets.js'
import {DUMMY_HASH_PROMISE, hashPassword, verifyPassword} from './auth/password.js'
import {FailureLimiter, TokenBucketLimiter, TrustedSources} from './auth/rate-limit.js'
import type {
  AuditContext,
  JoinProof,
  NodeChange,
  Page,
  PageRequest,
  Store,
  StoredNode,
  UserRecord,
} from './store/store.js'
import {publicUser} from './store/store.js'
import {storeWrites, type Writes} from './domain/writes.js'
import {systemClock, type Clock, type TimerHandle} from '../shared/clock.js'
import {ConnectionTracker} from './connections.js'

/** User tokens live this long. */
export const TOKEN_TTL_MS = 30 * 86400 * 1000

/** USERNAME_TAKEN answers a tenant gets per hour before every user create is RATE_LIMITED. */
export const USERNAME_TAKEN_PER_HOUR = 10

/** Where a request came from: stamped on audit entries. */
export interface RequestMeta {
  readonly sourceAddress: string | null
  readonly requestId: string | null
}

/** An authenticated user and its tenant. */
export interface Principal {
  readonly user: UserRecord
  readonly tenant: Tenant
  readonly tokenHash: string
}

export type PresenceEvent = {
  readonly kind: 'online' | 'offline'
  readonly node: Node
  readonly tenantId: string
}

export interface StateOptions {
  /**
   * The controller's one source of time and timers: timestamps written to the store, token
   * expiry, login limits, endpoint coalescing, the connection tracker, and (through `clock`) the
   * netmap and event hubs and the ephemeral reaper. Default: the system clock; tests pass a
   * FakeClock and move it.
   */
  readonly clock?: Clock | undefined
  /**
   * Failed logins allowed per source address per minute; also the burst (and per-minute refill)
   * of a user's bucket for sources it has not logged in from recently. Default 10.
   */
  readonly loginFailuresPerMinute?: number
  /** At most one endpoint change per node is applied per this window; default 2 s. */
  readonly endpointWindowMs?: number
  /** How often reported paths are merged and written (ms); default 1,000. */
  readonly connectionFlushMs?: number | undefined
  /** Where node telemetry (endpoint reports) is logged, at debug level. */
  readonly log?: {debug(obj: object, msg: string): void; warn(obj: object, msg: string): void}
}

/** A node's endpoint report waiting for its coalescing window to end (latest value wins). */
interface PendingEndpoints {
  node: StoredNode
  endpoints: string[] | undefined
  /** When the last change of this node was applied (ms). */
  appliedAt: number
  timer: TimerHandle | undefined
}

/** A node's observed endpoint waiting for its coalescing window to end (latest value wins). */
interface PendingObserved {
  readonly nodeId: string
  endpoint: string | undefined
  /** The last value written (or found unchanged): repeats cost no store call. */
  applied: string | undefined
  appliedAt: number
  timer: TimerHandle | undefined
}

const SINCE_RE = /^(\d{1,6})([smhd])$/
const UNIT_MS = {s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000} as const

export class ControllerState {
  /** Time and timers for everything the controller schedules; see StateOptions.clock. */
  readonly clock: Clock
  private readonly online = new Map<string, number>()
  private readonly nodeListeners = new Set<(c: NodeChange) => void>()
  private readonly presenceListeners = new Set<(e: PresenceEvent) => void>()
  private readonly networkListeners = new Set<(n: Network) => void>()
  private readonly loginByAddress: FailureLimiter
  private readonly loginByUser: TokenBucketLimiter
  private readonly loginTrusted: TrustedSources
  /** USERNAME_TAKEN answers per tenant; see createUser. */
  private readonly usernameProbes: FailureLimiter
  /** Node changes committed but not yet told to listeners; see emit(). */
  private readonly unsent: NodeChange[] = []
  private flushScheduled = false
  private readonly endpointWindowMs: number
  private readonly endpointState = new Map<string, PendingEndpoints>()
  private readonly observedState = new Map<string, PendingObserved>()
  /** Active nodes by WireGuard public key (the discovery port's lookup); built by indexNodeKeys. */
  private keyIndex: Map<string, string> | undefined
  private readonly log: NonNullable<StateOptions['log']>
  /** Per-pair paths and latency from node reports, their log and change events. */
  readonly connections: ConnectionTracker
  /** Every write, each one transaction around its rule in controller/domain/. */
  private readonly writes: Writes

  constructor(
    private readonly store: Store,
    opts: StateOptions = {},
  ) {
    this.writes = storeWrites(store)
    this.clock = opts.clock ?? systemClock
    const max = opts.loginFailuresPerMinute ?? 10
    const clock = () => this.clock.now()
    this.loginByAddress = new FailureLimiter({max, windowMs: 60_000, now: clock})
    this.loginByUser = new TokenBucketLimiter({capacity: max, refillEveryMs: 60_000 / max, now: clock})
    this.loginTrusted = new TrustedSources({ttlMs: TOKEN_TTL_MS, perKey: 16, maxKeys: 100_000, now: clock})
    this.usernameProbes = new FailureLimiter({
      max: USERNAME_TAKEN_PER_HOUR,
      windowMs: 3_600_000,
      now: clock,
    })
    this.endpointWindowMs = opts.endpointWindowMs ?? 2_000
    this.log = opts.log ?? {debug: () => undefined, warn: () => undefined}
    this.connections = new ConnectionTracker(store, {
      clock: this.clock,
      flushMs: opts.connectionFlushMs,
      log: this.log,
    })
  }

  /** The clock's time as a Date (for ISO timestamps). */
  now(): Date {
    return new Date(this.clock.now())
  }

  // ---------------------------------------------------------------------------------------------
  // listeners

  onNodeChange(fn: (c: NodeChange) => void): () => void {
    this.nodeListeners.add(fn)
    return () => this.nodeListeners.delete(fn)
  }

  /** A network's name, description or policy changed. */
  onNetworkChange(fn: (n: Network) => void): () => void {
    this.networkListeners.add(fn)
    return () => this.networkListeners.delete(fn)
  }

  onPresence(fn: (e: PresenceEvent) => void): () => void {
    this.presenceListeners.add(fn)
    return () => this.presenceListeners.delete(fn)
  }

  /**
   * Tells listeners (netmap fan-out, admin events) about committed changes on the next turn of
   * the event loop, not now: the HTTP reply of the request that made the change is written first,
   * so its latency does not grow with the number of connected nodes. One FIFO queue for every
   * network keeps deltas in commit order, and setImmediate keeps the delay far below a second.
   */
  private emit(changes: NodeChange | NodeChange[]): void {
    for (const c of Array.isArray(changes) ? changes : [changes]) this.unsent.push(c)
    if (this.flushScheduled || this.unsent.length === 0) return
    this.flushScheduled = true
    setImmediate(() => this.flushChanges())
  }

  private flushChanges(): void {
    this.flushScheduled = false
    for (const c of this.unsent.splice(0)) {
      for (const fn of this.nodeListeners) {
        try {
          fn(c)
        } catch (err) {
          // One broken listener must not keep a change from the others.
          this.log.warn({err, nodeId: c.nodeId}, 'node change listener failed')
        }
      }
    }
  }

  private ctx(actor: {actor: string; actorName: string}, meta: RequestMeta): AuditContext {
    return {
      ...actor,
      sourceAddress: meta.sourceAddress,
      requestId: meta.requestId,
      at: this.now().toISOString(),
    }
  }

  private userCtx(p: Principal, meta: RequestMeta): AuditContext {
    return this.ctx({actor: `user:${p.user.id}`, actorName: p.user.username}, meta)
  }

  private systemCtx(): AuditContext {
    return this.ctx({actor: 'system', actorName: 'system'}, {sourceAddress: null, requestId: null})
  }

  withPresence = (n: StoredNode): Node => ({...n, online: this.online.has(n.id)})

  isOnline = (nodeId: string): boolean => this.online.has(nodeId)

  // ---------------------------------------------------------------------------------------------
  // first start

  /**
   * Creates tenant `default` with superuser owner `admin` when the database has no tenant.
   * Returns the password when it created the account, undefined otherwise.
   */
  async bootstrap(password: string): Promise<boolean> {
    if (await this.store.hasTenants()) return false
    await this.writes.createTenantWithOwner(
      {id: newId('t'), name: 'default'},
      {id: newId('u'), username: 'admin', passwordHash: await hashPassword(password), superuser: true},
      this.systemCtx(),
    )
    return true
  }

  // ---------------------------------------------------------------------------------------------
  // authentication

  /**
   * Failed logins are limited twice. Per source address strictly (a fixed window). Per user by a
   * token bucket that only sources the user has not logged in from recently draw on: a per-user
   * block that every address shares would let anyone who knows a user name lock that user out
   * from everywhere, for free and for as long as it likes. So a source where this user logged in
   * with the right password within the token lifetime skips the user's bucket (its own address
   * limit still holds), and a new source is throttled, not blocked: once the failures stop it
   * waits at most one refill interval. Guessing one account from many addresses stays capped at
   * the bucket's refill rate, as before.
   */
  async login(username: string, password: string, meta: RequestMeta): Promise<LoginResponse> {
    const addrKey = meta.sourceAddress ?? 'unknown'
    const trusted = meta.sourceAddress !== null && this.loginTrusted.isTrusted(username, addrKey)
    if (this.loginByAddress.blocked(addrKey) || (!trusted && this.loginByUser.blocked(username))) {
      throw new MeshError('RATE_LIMITED', {
        message: 'too many failed logins',
        hint: `wait ${Math.max(this.loginByAddress.retryAfter(addrKey), trusted ? 0 : this.loginByUser.retryAfter(username))} s and try again`,
      })
    }
    // Charged before the slow password check and taken back on success: charged only after it,
    // guesses sent at once would all pass blocked() before the first of them had failed.
    this.loginByAddress.fail(addrKey)
    if (!trusted) this.loginByUser.take(username)
    const user = await this.store.getUserByUsername(username)
    // Unknown users cost a scrypt too, so response time does not reveal which names exist.
    const ok = await verifyPassword(password, user?.passwordHash ?? (await DUMMY_HASH_PROMISE()))
    if (!user || !ok) {
      if (user) {
        await this.writes.appendAudit(
          {
            tenantId: user.tenantId,
            action: 'user.login_failed',
            targetType: 'user',
            targetId: user.id,
            networkId: null,
            detail: {},
          },
          this.ctx({actor: `user:${user.id}`, actorName: user.username}, meta),
        )
      }
      throw new MeshError('INVALID_CREDENTIALS')
    }
    this.loginByAddress.forgive(addrKey)
    if (!trusted) this.loginByUser.refund(username)
    if (meta.sourceAddress !== null) this.loginTrusted.trust(username, addrKey)
    const token = newSecret('token')
    const expiresAt = new Date(this.now().getTime() + TOKEN_TTL_MS).toISOString()
    await this.writes.createToken(
      {id: newId('tok'), hash: hashSecret(token), userId: user.id, expiresAt},
      this.ctx({actor: `user:${user.id}`, actorName: user.username}, meta),
    )
    const tenant = await this.mustTenant(user.tenantId)
    return {token, expiresAt, user: publicUser(user), tenant}
  }

  /** The user behind a bearer token, or undefined (unknown, expired, or its user deleted). */
  async authenticateUser(token: string): Promise<Principal | undefined> {
    if (!token.startsWith('mtok_') || token.length > 200) return undefined
    const tokenHash = hashSecret(token)
    const rec = await this.store.getToken(tokenHash)
    if (!rec || rec.expiresAt <= this.now().toISOString()) return undefined
    const user = await this.store.getUser(rec.userId)
    if (!user) return undefined
    const tenant = await this.store.getTenant(user.tenantId)
    return tenant && {user, tenant, tokenHash}
  }

  async logout(p: Principal, meta: RequestMeta): Promise<void> {
    await this.writes.deleteToken(p.tokenHash, this.userCtx(p, meta))
  }

  async authenticateNode(credential: string): Promise<StoredNode | undefined> {
    if (!credential.startsWith('mnode_') || credential.length > 200) return undefined
    return this.store.getNodeByCredential(hashSecret(credential))
  }

  private async mustTenant(id: string): Promise<Tenant> {
    const t = await this.store.getTenant(id)
    if (!t) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
    return t
  }

  // ---------------------------------------------------------------------------------------------
  // authorization: objects of another tenant are NOT_FOUND, never FORBIDDEN

  /** The user's role on a network: its member role there, else its tenant role. */
  async networkRole(p: Principal, networkId: string): Promise<Role> {
    return (await this.store.getMemberRole(networkId, p.user.id)) ?? p.user.role
  }

  requireTenant(p: Principal, permission: Permission): void {
    if (!roleAllows(p.user.role, permission)) {
      throw new MeshError('FORBIDDEN', {message: `your role ${p.user.role} does not allow ${permission}`})
    }
  }

  async requireNetwork(p: Principal, networkId: string, permission: Permission): Promise<void> {
    const role = await this.networkRole(p, networkId)
    if (!roleAllows(role, permission)) {
      throw new MeshError('FORBIDDEN', {
        message: `your role ${role} on this network does not allow ${permission}`,
      })
    }
  }

  // ---------------------------------------------------------------------------------------------
  // ranks: owner > admin > member > guest, a superuser above all (ROLE_RANK)

  /**
   * The caller's rank, on a network or (no network) in the tenant: the rank of the role its access
   * comes from there (networkRole), so a tenant admin lowered to member on a network acts as a
   * member there, exactly as its permissions do.
   */
  private async callerRank(p: Principal, networkId?: string): Promise<{rank: number; role: string}> {
    if (p.user.superuser) return {rank: SUPERUSER_RANK, role: 'superuser'}
    const role = networkId === undefined ? p.user.role : await this.networkRole(p, networkId)
    return {rank: ROLE_RANK[role], role}
  }

  /**
   * How far up a user stands when someone acts on it: the higher of its tenant role and its role
   * on the network. A network role lowers what a user may do there, never who may act on it: a
   * tenant owner an owner lowered on one network still outranks the tenant's admins there.
   */
  private async standing(user: UserRecord, networkId?: string): Promise<{rank: number; role: string}> {
    if (user.superuser) return {rank: SUPERUSER_RANK, role: 'superuser'}
    const there = networkId === undefined ? undefined : await this.store.getMemberRole(networkId, user.id)
    const role = there !== undefined && ROLE_RANK[there] > ROLE_RANK[user.role] ? there : user.role
    return {rank: ROLE_RANK[role], role}
  }

  /** ROLE_TOO_HIGH unless the caller's rank (there) is at least that of `role`. */
  private async requireMayGrant(p: Principal, role: Role, networkId?: string): Promise<void> {
    const me = await this.callerRank(p, networkId)
    if (ROLE_RANK[role] > me.rank) {
      throw new MeshError('ROLE_TOO_HIGH', {
        message: `your role ${me.role}${networkId ? ' on this network' : ''} cannot grant the role ${role}`,
      })
    }
  }

  /** OUTRANKED when `target` stands above the caller (there); an equal rank may act. */
  private async requireNotOutranked(p: Principal, target: UserRecord, networkId?: string): Promise<void> {
    const me = await this.callerRank(p, networkId)
    const them = await this.standing(target, networkId)
    if (them.rank > me.rank) {
      throw new MeshError('OUTRANKED', {
        message: `${target.username} is ${them.role}, above your role ${me.role}${networkId ? ' on this network' : ''}`,
      })
    }
  }

  /**
   * Revoking an invite or auth key: its creator may, anyone else needs admin rank on its network
   * (a tenant admin or owner without a lower role there, or a superuser).
   */
  private async requireMayRevoke(
    p: Principal,
    what: 'invite' | 'auth key',
    obj: {networkId: string; createdBy: string},
  ): Promise<void> {
    if (obj.createdBy === p.user.id) return
    const me = await this.callerRank(p, obj.networkId)
    if (me.rank < ROLE_RANK.admin) {
      throw new MeshError('FORBIDDEN', {
        message: `your role ${me.role} on this network may revoke only the ${what}s you created`,
        hint: `ask an admin of the network to revoke this ${what}`,
      })
    }
  }

  /** A network of the user's tenant by id or name. */
  async findNetwork(p: Principal, ref: string): Promise<Network> {
    const byId = await this.store.getNetwork(ref)
    const net =
      byId && byId.tenantId === p.tenant.id ? byId : await this.store.getNetworkByName(p.tenant.id, ref)
    if (!net) throw new MeshError('NOT_FOUND', {message: `network ${ref} not found`})
    return net
  }

  async findNode(p: Principal, id: string): Promise<StoredNode> {
    const node = await this.store.getNode(id)
    const net = node && (await this.store.getNetwork(node.networkId))
    if (!node || !net || net.tenantId !== p.tenant.id)
      throw new MeshError('NOT_FOUND', {message: 'node not found'})
    return node
  }

  async findInvite(p: Principal, id: string): Promise<{networkId: string}> {
    const inv = await this.store.getInvite(id)
    if (!inv || inv.tenantId !== p.tenant.id) throw new MeshError('NOT_FOUND', {message: 'invite not found'})
    return inv
  }

  async findAuthKey(p: Principal, id: string): Promise<{networkId: string}> {
    const key = await this.store.getAuthKey(id)
    if (!key || key.tenantId !== p.tenant.id)
      throw new MeshError('NOT_FOUND', {message: 'auth key not found'})
    return key
  }

  async findUser(p: Principal, id: string): Promise<UserRecord> {
    const user = await this.store.getUser(id)
    if (!user || user.tenantId !== p.tenant.id) throw new MeshError('NOT_FOUND', {message: 'user not found'})
    return user
  }

  // ---------------------------------------------------------------------------------------------
  // tenants and users

  async createTenant(
    p: Principal,
    req: {name: string; owner: {username: string; password: string}},
    meta: RequestMeta,
  ): Promise<{tenant: Tenant; owner: User}> {
    if (!p.user.superuser) throw new MeshError('FORBIDDEN', {message: 'only superusers can create tenants'})
    return this.writes.createTenantWithOwner(
      {id: newId('t'), name: req.name},
      {
        id: newId('u'),
        username: req.owner.username,
        passwordHash: await hashPassword(req.owner.password),
        superuser: false,
      },
      this.userCtx(p, meta),
    )
  }

  listUsers(p: Principal, page: PageRequest): Promise<Page<User>> {
    return this.store.listUsers(p.tenant.id, page)
  }

  /**
   * User names are unique across tenants, because login carries only a name and a password. So
   * USERNAME_TAKEN tells a tenant's owner that a name exists somewhere, maybe in another tenant.
   * To keep that from becoming a directory of other tenants' users, each tenant gets
   * USERNAME_TAKEN_PER_HOUR such answers an hour; after that EVERY create of the tenant is
   * RATE_LIMITED until the window ends (refusing only the colliding ones would answer the same
   * question). Keyed by tenant, not by user: an owner could otherwise mint more owners to probe.
   * The collision is charged before the lookup and taken back when the name is free, so
   * concurrent probes cannot all slip past the check.
   */
  async createUser(
    p: Principal,
    req: {username: string; password: string; role: Role},
    meta: RequestMeta,
  ): Promise<User> {
    await this.requireMayGrant(p, req.role)
    const probes = p.tenant.id
    if (this.usernameProbes.blocked(probes)) {
      throw new MeshError('RATE_LIMITED', {
        message: `too many user creates with a name that was taken (${USERNAME_TAKEN_PER_HOUR} an hour per tenant)`,
        hint: `wait ${Math.ceil(this.usernameProbes.retryAfter(probes) / 60)} min and try again`,
      })
    }
    this.usernameProbes.fail(probes)
    if (await this.store.getUserByUsername(req.username)) throw new MeshError('USERNAME_TAKEN')
    this.usernameProbes.forgive(probes)
    try {
      return await this.createUserRecord(p, req, meta)
    } catch (err) {
      // Taken meanwhile by a concurrent create: an answer like any other.
      if (err instanceof MeshError && err.code === 'USERNAME_TAKEN') this.usernameProbes.fail(probes)
      throw err
    }
  }

  private async createUserRecord(
    p: Principal,
    req: {username: string; password: string; role: Role},
    meta: RequestMeta,
  ): Promise<User> {
    return this.writes.createUser(
      {
        id: newId('u'),
        tenantId: p.tenant.id,
        username: req.username,
        passwordHash: await hashPassword(req.password),
        role: req.role,
      },
      this.userCtx(p, meta),
    )
  }

  async updateUser(p: Principal, id: string, role: Role, meta: RequestMeta): Promise<User> {
    const target = await this.findUser(p, id)
    if (id === p.user.id && role !== p.user.role) {
      // Demoting yourself could leave a tenant without anyone able to manage it.
      throw new MeshError('FORBIDDEN', {
        message: 'you cannot change your own role',
        hint: 'ask another owner',
      })
    }
    await this.requireNotOutranked(p, target)
    await this.requireMayGrant(p, role)
    return this.writes.updateUserRole(id, role, this.userCtx(p, meta))
  }

  async deleteUser(p: Principal, id: string, meta: RequestMeta): Promise<void> {
    const target = await this.findUser(p, id)
    if (id === p.user.id) {
      throw new MeshError('FORBIDDEN', {message: 'you cannot delete yourself', hint: 'ask another owner'})
    }
    await this.requireNotOutranked(p, target)
    await this.writes.deleteUser(id, this.userCtx(p, meta))
  }

  // ---------------------------------------------------------------------------------------------
  // networks and members

  listNetworks(p: Principal, page: PageRequest): Promise<Page<Network>> {
    return this.store.listNetworks(p.tenant.id, page)
  }

  async createNetwork(
    p: Principal,
    req: z.output<typeof CreateNetworkRequestSchema>,
    meta: RequestMeta,
  ): Promise<Network> {
    const cidr = parseCidr(req.cidr)
    if (!cidr || cidr.prefix < 8 || cidr.prefix > 30) {
      throw new MeshError('INVALID_CIDR', {
        message: `cidr: ${JSON.stringify(req.cidr)} is not an IPv4 network prefix from /8 to /30 with host bits zero`,
      })
    }
    return this.writes.createNetwork(
      {
        id: newId('n'),
        tenantId: p.tenant.id,
        name: req.name,
        cidr: req.cidr,
        description: req.description,
        joinPolicy: req.joinPolicy,
        maxNodes: req.maxNodes,
      },
      this.userCtx(p, meta),
    )
  }

  async updateNetwork(
    p: Principal,
    net: Network,
    patch: UpdateNetworkRequest,
    meta: RequestMeta,
  ): Promise<Network> {
    const updated = await this.writes.updateNetwork(net.id, patch, this.userCtx(p, meta))
    for (const fn of this.networkListeners) fn(updated)
    return updated
  }

  async deleteNetwork(p: Principal, net: Network, meta: RequestMeta): Promise<void> {
    const changes = await this.writes.deleteNetwork(net.id, this.userCtx(p, meta))
    this.emit(changes)
  }

  listMembers(net: Network): Promise<NetworkMember[]> {
    return this.store.listMembers(net.id)
  }

  async setMember(
    p: Principal,
    net: Network,
    userId: string,
    role: Role,
    meta: RequestMeta,
  ): Promise<NetworkMember> {
    const target = await this.findUser(p, userId)
    // Who first (OUTRANKED), then what (ROLE_TOO_HIGH): a tenant admin can neither demote the
    // tenant owner on a network nor make itself owner there.
    await this.requireNotOutranked(p, target, net.id)
    await this.requireMayGrant(p, role, net.id)
    return this.writes.setMember(net.id, userId, role, this.userCtx(p, meta))
  }

  async removeMember(p: Principal, net: Network, userId: string, meta: RequestMeta): Promise<void> {
    // Removing a network role gives the user its tenant role back there: never above `standing`.
    await this.requireNotOutranked(p, await this.findUser(p, userId), net.id)
    await this.writes.removeMember(net.id, userId, this.userCtx(p, meta))
  }

  // ---------------------------------------------------------------------------------------------
  // invites and auth keys

  async createInvite(
    p: Principal,
    net: Network,
    req: z.output<typeof CreateInviteRequestSchema>,
    meta: RequestMeta,
  ): Promise<{invite: Invite; code: string}> {
    await this.requireMayGrant(p, req.role, net.id)
    const code = newSecret('invite')
    const invite = await this.writes.createInvite(
      {
        id: newId('iv'),
        networkId: net.id,
        codeHash: hashSecret(code),
        role: req.role,
        maxUses: req.maxUses,
        expiresAt: new Date(this.now().getTime() + req.expiresIn * 1000).toISOString(),
        createdBy: p.user.id,
      },
      this.userCtx(p, meta),
    )
    return {invite, code}
  }

  listInvites(net: Network, page: PageRequest): Promise<Page<Invite>> {
    return this.store.listInvites(net.id, page)
  }

  async revokeInvite(p: Principal, id: string, meta: RequestMeta): Promise<Invite> {
    const inv = await this.store.getInvite(id)
    if (inv) await this.requireMayRevoke(p, 'invite', inv)
    return this.writes.revokeInvite(id, this.userCtx(p, meta))
  }

  async createAuthKey(
    p: Principal,
    net: Network,
    req: z.output<typeof CreateAuthKeyRequestSchema>,
    meta: RequestMeta,
  ): Promise<{authKey: AuthKey; key: string}> {
    if (req.preApproved) {
      // A pre-approved key lets its nodes skip approval, so it needs what approving needs.
      const role = await this.networkRole(p, net.id)
      if (!roleAllows(role, 'node.approve')) {
        throw new MeshError('FORBIDDEN', {
          message: `a pre-approved auth key needs node.approve, which your role ${role} on this network lacks`,
          hint: 'create the key without pre-approval and ask an admin to approve its nodes',
        })
      }
    }
    const key = newSecret('authKey')
    const authKey = await this.writes.createAuthKey(
      {
        id: newId('ak'),
        networkId: net.id,
        keyHash: hashSecret(key),
        prefix: key.slice(0, 12),
        reusable: req.reusable,
        ephemeral: req.ephemeral,
        preApproved: req.preApproved,
        tags: [...new Set(req.tags)],
        expiresAt: new Date(this.now().getTime() + req.expiresIn * 1000).toISOString(),
        createdBy: p.user.id,
      },
      this.userCtx(p, meta),
    )
    return {authKey, key}
  }

  listAuthKeys(net: Network, page: PageRequest): Promise<Page<AuthKey>> {
    return this.store.listAuthKeys(net.id, page)
  }

  async revokeAuthKey(p: Principal, id: string, meta: RequestMeta): Promise<AuthKey> {
    const key = await this.store.getAuthKey(id)
    if (key) await this.requireMayRevoke(p, 'auth key', key)
    return this.writes.revokeAuthKey(id, this.userCtx(p, meta))
  }

  // ---------------------------------------------------------------------------------------------
  // nodes

  /**
   * Registers a node with an invite code, an auth key, or (open networks only) a user token
   * with node.register. `principal` is the bearer of the request, when it sent a user token.
   */
  async register(
    req: z.output<typeof RegisterRequestSchema>,
    principal: Principal | undefined,
    meta: RequestMeta,
  ): Promise<RegisterResponse> {
    const credential = newSecret('node')
    const nodeId = newId('nd')
    let actor = {actor: `node:${nodeId}`, actorName: req.name}
    let proof: JoinProof
    if (req.invite !== undefined) {
      if (!req.invite.startsWith('inv_')) throw new MeshError('INVITE_INVALID')
      proof = {kind: 'invite', codeHash: hashSecret(req.invite)}
    } else if (req.authKey !== undefined) {
      if (!req.authKey.startsWith('mkey_')) throw new MeshError('AUTHKEY_INVALID')
      proof = {kind: 'authkey', keyHash: hashSecret(req.authKey)}
    } else {
      if (!principal) {
        throw new MeshError('UNAUTHENTICATED', {
          message: 'registering with a network name needs a user token in Authorization: Bearer',
        })
      }
      const net = await this.findNetwork(principal, req.network ?? '')
      await this.requireNetwork(principal, net.id, 'node.register')
      if (net.joinPolicy !== 'open') {
        throw new MeshError('FORBIDDEN', {
          message: `network ${net.name} has join policy ${net.joinPolicy}: a token alone cannot register`,
          hint: 'join with an invite or an auth key',
        })
      }
      proof = {kind: 'open', networkId: net.id}
      actor = {actor: `user:${principal.user.id}`, actorName: principal.user.username}
    }
    const change = await this.writes.registerNode(
      proof,
      {
        id: nodeId,
        name: req.name,
        hostname: req.hostname,
        os: req.os,
        publicKey: req.publicKey,
        endpoints: usableEndpoints(req.endpoints).endpoints,
        credentialHash: hashSecret(credential),
      },
      this.ctx(actor, meta),
    )
    this.emit(change)
    const node = change.node as StoredNode
    const net = (await this.store.getNetwork(node.networkId)) as Network
    return {node: this.withPresence(node), network: {id: net.id, name: net.name, cidr: net.cidr}, credential}
  }

  async listNodes(
    net: Network,
    filter: {status?: NodeStatus | undefined},
    page: PageRequest,
  ): Promise<Page<Node>> {
    const res = await this.store.listNodes(net.id, filter, page)
    return {items: res.items.map(this.withPresence), nextCursor: res.nextCursor}
  }

  /** Every node of the user's tenant (the admin stream's snapshot). */
  async tenantNodes(p: Principal): Promise<Node[]> {
    return (await this.store.tenantNodes(p.tenant.id)).map(this.withPresence)
  }

  async approveNode(p: Principal, id: string, meta: RequestMeta): Promise<Node> {
    const change = await this.writes.approveNode(id, this.userCtx(p, meta))
    this.emit(change)
    return this.withPresence(change.node as StoredNode)
  }

  async renameNode(p: Principal, id: string, name: string, meta: RequestMeta): Promise<Node> {
    const change = await this.writes.renameNode(id, name, this.userCtx(p, meta))
    this.emit(change)
    return this.withPresence(change.node as StoredNode)
  }

  async removeNode(p: Principal | undefined, id: string, meta: RequestMeta): Promise<void> {
    const change = await this.writes.removeNode(id, p ? this.userCtx(p, meta) : this.systemCtx())
    this.forgetEndpoints(id)
    this.emit(change)
  }

  /** A node removes itself with its own credential (`mesh leave`): audited as node.leave. */
  async leaveNode(node: StoredNode, meta: RequestMeta): Promise<void> {
    const change = await this.writes.removeNode(
      node.id,
      this.ctx({actor: `node:${node.id}`, actorName: node.name}, meta),
      'node.leave',
    )
    this.forgetEndpoints(node.id)
    this.emit(change)
  }

  /**
   * A node reported its endpoint candidates. Coalesced per node: at most one change is written
   * and fanned out per endpoint window; a report inside the window replaces any pending one
   * (latest wins) and is applied when the window ends, so peers always converge on the last
   * report. Without this, one node alternating its reports would cost a DB write and a delta to
   * every peer per frame.
   *
   * Not audited: endpoints are presence telemetry the node sends every few seconds, not an
   * administrative change (the audit log records who changed what; a node's NAT mapping moving
   * is neither). They are logged at debug level instead.
   */
  async reportEndpoints(node: StoredNode, endpoints: readonly string[]): Promise<void> {
    // Each candidate on its own: one that is not an IP literal another node can reach is dropped
    // (never stored, never sent to peers), the others still count.
    const {endpoints: unique, dropped} = usableEndpoints(endpoints)
    if (dropped > 0) this.log.debug({nodeId: node.id, dropped}, 'dropped unusable endpoints from a report')
    const now = this.clock.now()
    let st = this.endpointState.get(node.id)
    if (!st) {
      st = {node, endpoints: undefined, appliedAt: -Infinity, timer: undefined}
      this.endpointState.set(node.id, st)
    }
    st.node = node
    const wait = st.appliedAt + this.endpointWindowMs - now
    if (wait <= 0 && !st.timer) {
      await this.applyEndpoints(st, unique)
      return
    }
    st.endpoints = unique
    if (!st.timer) {
      const entry = st
      entry.timer = this.clock.setTimeout(
        () => {
          entry.timer = undefined
          const latest = entry.endpoints
          entry.endpoints = undefined
          if (latest !== undefined && this.endpointState.get(entry.node.id) === entry) {
            this.applyEndpoints(entry, latest).catch((err: unknown) => {
              if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
                this.log.warn({err, nodeId: entry.node.id}, 'endpoint update failed')
            })
          }
        },
        Math.max(0, wait),
      )
    }
  }

  private async applyEndpoints(st: PendingEndpoints, endpoints: string[]): Promise<void> {
    // The window starts now, before the write: reports arriving while it runs wait for the window.
    const previous = st.appliedAt
    const started = (st.appliedAt = this.clock.now())
    const change = await this.writes.setNodeEndpoints(st.node.id, endpoints, this.now().toISOString())
    if (!change) {
      // Nothing changed: the window is not used up, unless another report already relied on it.
      if (st.appliedAt === started && !st.timer) st.appliedAt = previous
      return
    }
    this.log.debug({nodeId: st.node.id, endpoints}, 'node endpoints changed')
    this.emit(change)
  }

  /** Drops a removed node's pending endpoint report (and observed endpoint). */
  private forgetEndpoints(nodeId: string): void {
    const st = this.endpointState.get(nodeId)
    if (st?.timer) this.clock.clearTimeout(st.timer)
    this.endpointState.delete(nodeId)
    const ob = this.observedState.get(nodeId)
    if (ob?.timer) this.clock.clearTimeout(ob.timer)
    this.observedState.delete(nodeId)
  }

  /**
   * The controller observed a node's public mapping on its discovery port. Stored apart from
   * the endpoints the node reports (a report never erases it), and coalesced per node like
   * reportEndpoints: at most one change per endpoint window, the latest value wins. WireGuard
   * sends an initiation every few seconds, so repeats of the value last written cost no store
   * call. Not audited (telemetry). Unusable values are stored (peers never see them: toPeer
   * filters) so an operator can still see what was observed.
   */
  async reportObservedEndpoint(node: {readonly id: string}, endpoint: string): Promise<void> {
    const now = this.clock.now()
    let st = this.observedState.get(node.id)
    if (!st) {
      st = {nodeId: node.id, endpoint: undefined, applied: undefined, appliedAt: -Infinity, timer: undefined}
      this.observedState.set(node.id, st)
    }
    if (!st.timer && st.applied === endpoint) return
    const wait = st.appliedAt + this.endpointWindowMs - now
    if (wait <= 0 && !st.timer) {
      await this.applyObserved(st, endpoint)
      return
    }
    st.endpoint = endpoint
    if (!st.timer) {
      const entry = st
      entry.timer = this.clock.setTimeout(
        () => {
          entry.timer = undefined
          const latest = entry.endpoint
          entry.endpoint = undefined
          if (latest !== undefined && this.observedState.get(entry.nodeId) === entry) {
            this.applyObserved(entry, latest).catch((err: unknown) => {
              if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
                this.log.warn({err, nodeId: entry.nodeId}, 'observed endpoint update failed')
            })
          }
        },
        Math.max(0, wait),
      )
    }
  }

  private async applyObserved(st: PendingObserved, endpoint: string): Promise<void> {
    if (st.applied === endpoint) return
    const previous = st.appliedAt
    const started = (st.appliedAt = this.clock.now())
    let change: NodeChange | undefined
    try {
      change = await this.writes.setNodeObservedEndpoint(st.nodeId, endpoint)
    } catch (err) {
      // A node removed meanwhile: forget it, so its entry does not linger.
      if (err instanceof MeshError && err.code === 'NOT_FOUND') this.observedState.delete(st.nodeId)
      throw err
    }
    st.applied = endpoint
    if (!change) {
      if (st.appliedAt === started && !st.timer) st.appliedAt = previous
      return
    }
    this.log.debug({nodeId: st.nodeId, observedEndpoint: endpoint}, 'node observed endpoint changed')
    this.emit(change)
  }

  /**
   * Builds the in-memory index of active nodes by WireGuard public key and keeps it current from
   * node changes (the discovery port looks keys up synchronously, once per initiation).
   */
  async indexNodeKeys(): Promise<void> {
    if (this.keyIndex) return
    const index = new Map<string, string>()
    this.keyIndex = index
    // Changes committed before the read are in it; re-applying them later is harmless.
    this.onNodeChange((c) => {
      const before = c.before
      if (before && index.get(before.publicKey) === before.id) index.delete(before.publicKey)
      if (c.node?.status === 'active') index.set(c.node.publicKey, c.node.id)
    })
    for (const n of await this.store.activeNodeKeys()) index.set(n.publicKey, n.id)
  }

  /** The active node with this WireGuard public key (needs indexNodeKeys first). */
  activeNodeByPublicKey(publicKey: string): string | undefined {
    return this.keyIndex?.get(publicKey)
  }

  /** A node's last netmap socket closed: writes its pending report now and forgets its window. */
  private async settleEndpoints(nodeId: string): Promise<void> {
    const st = this.endpointState.get(nodeId)
    if (!st) return
    if (st.timer) this.clock.clearTimeout(st.timer)
    this.endpointState.delete(nodeId)
    if (st.endpoints !== undefined) await this.applyEndpoints(st, st.endpoints)
  }

  /** Shutdown: writes pending endpoint reports and paths so nothing a node said is lost. */
  async close(): Promise<void> {
    await this.connections.close()
    for (const st of this.observedState.values()) if (st.timer) this.clock.clearTimeout(st.timer)
    this.observedState.clear()
    for (const id of [...this.endpointState.keys()]) {
      await this.settleEndpoints(id).catch((err: unknown) => {
        if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
          this.log.warn({err, nodeId: id}, 'endpoint update failed')
      })
    }
  }

  /** Presence: a netmap socket of this node opened or closed. Several sockets count once. */
  async nodeConnected(node: StoredNode, tenantId: string): Promise<void> {
    const n = (this.online.get(node.id) ?? 0) + 1
    this.online.set(node.id, n)
    await this.touch(node.id)
    // A close that overlapped the await has already told everyone the node is offline.
    if (n === 1 && this.online.has(node.id)) this.emitPresence('online', node, tenantId)
  }

  async nodeDisconnected(node: StoredNode, tenantId: string): Promise<void> {
    const n = (this.online.get(node.id) ?? 1) - 1
    if (n > 0) {
      this.online.set(node.id, n)
      return
    }
    this.online.delete(node.id)
    await this.settleEndpoints(node.id).catch((err: unknown) => {
      if (!(err instanceof MeshError && err.code === 'NOT_FOUND')) throw err
    })
    await this.touch(node.id)
    // A new socket opened during the awaits: the node is online again, so saying offline now
    // would leave admins (and the event's own online flag) contradicting the presence state.
    if (!this.online.has(node.id)) this.emitPresence('offline', node, tenantId)
  }

  async touch(nodeId: string): Promise<void> {
    await this.writes.touchNode(nodeId, this.now().toISOString())
  }

  private emitPresence(kind: 'online' | 'offline', node: StoredNode, tenantId: string): void {
    const ev: PresenceEvent = {
      kind,
      node: this.withPresence({...node, lastSeen: this.now().toISOString()}),
      tenantId,
    }
    for (const fn of this.presenceListeners) fn(ev)
  }

  /** Removes ephemeral nodes that have been offline longer than `timeoutMs`. */
  async reapEphemeral(timeoutMs: number): Promise<number> {
    const cutoff = this.now().getTime() - timeoutMs
    let removed = 0
    for (const node of await this.store.ephemeralNodes()) {
      if (this.online.has(node.id)) continue
      const seen = Date.parse(node.lastSeen ?? node.createdAt)
      if (seen > cutoff) continue
      try {
        await this.removeNode(undefined, node.id, {sourceAddress: null, requestId: null})
        removed++
      } catch (err) {
        // Removed meanwhile by someone else: nothing to do.
        if (!(err instanceof MeshError && err.code === 'NOT_FOUND')) throw err
      }
    }
    return removed
  }

  // ---------------------------------------------------------------------------------------------
  // netmap sessions and readiness

  /** Readiness: throws when the database does not answer. */
  ping(): Promise<void> {
    return this.store.ping()
  }

  /**
   * What a netmap session needs to start: the network, its version and every node. The version
   * is read FIRST, so the node list is at least as new as the version it is paired with.
   */
  async netmapSnapshot(
    networkId: string,
  ): Promise<{network: Network; version: number; nodes: StoredNode[]} | undefined> {
    const version = await this.store.netmapVersion(networkId)
    const network = await this.store.getNetwork(networkId)
    if (!network) return undefined
    return {network, version, nodes: await this.store.allNodes(networkId)}
  }

  /** Node ids changed since `version`, or undefined when only a full map will do. */
  changesSince(
    networkId: string,
    version: number,
  ): Promise<{version: number; nodeIds: string[]} | undefined> {
    return this.store.changesSince(networkId, version)
  }

  // ---------------------------------------------------------------------------------------------
  // audit

  async listAudit(
    p: Principal,
    q: {since?: string | undefined; actor?: string | undefined; network?: string | undefined},
    page: PageRequest,
  ): Promise<Page<AuditEntry>> {
    let since: string | undefined
    if (q.since !== undefined) {
      const m = SINCE_RE.exec(q.since)
      const t = m
        ? this.now().getTime() - Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]
        : Date.parse(q.since)
      if (!Number.isFinite(t)) {
        throw new MeshError('VALIDATION_FAILED', {
          message: 'since: expected an RFC 3339 time or a duration like 1h',
        })
      }
      since = new Date(t).toISOString()
    }
    const networkId = q.network === undefined ? undefined : (await this.findNetwork(p, q.network)).id
    return this.store.listAudit({tenantId: p.tenant.id, since, actor: q.actor, networkId}, page)
  }
}
