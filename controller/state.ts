/**
 * The controller's administrative operations (tenants, users, networks, members, invites, auth
 * keys, node registration and removal, the audit log), and the composition of the parts that
 * each hold one job:
 *  - auth (auth/auth.ts): login and its limits, tokens, node credentials;
 *  - access (auth/access.ts): roles, ranks, lookups in the caller's tenant;
 *  - presence (presence.ts): which nodes hold a netmap session;
 *  - telemetry (telemetry.ts): endpoint reports and observed mappings, the public-key index;
 *  - feed (change-feed.ts): committed node and network changes, to whoever keeps a cache;
 *  - reaper (reaper.ts, under the singleton lock of leader.ts): ephemeral nodes that went away.
 * Callers take the part they use (the netmap hub never sees the admin operations); the API
 * handlers call the operations here. Every write goes through `Writes` (domain/writes.ts), one
 * transaction each, and every committed node change is published on the feed.
 *
 * Replicas: this class keeps one piece of process memory, the USERNAME_TAKEN limit per tenant
 * (createUser), which is per replica today and belongs in the database with the login limits
 * (see auth/auth.ts). The parts say for themselves what they keep.
 */
import {randomBytes} from 'node:crypto'
import type {
  AuditEntry,
  AuditVerification,
  PolicyInfo,
  AuthKey,
  CreateAuthKeyRequestSchema,
  CreateInviteRequestSchema,
  CreateNetworkRequestSchema,
  CreateRelayKeyRequestSchema,
  Invite,
  Network,
  NetworkMember,
  Node,
  NodeStatus,
  RegisterRequestSchema,
  RegisterResponse,
  RelayKey,
  Role,
  Tenant,
  UpdateNetworkRequest,
  User,
  CreateUserInviteRequestSchema,
  LoginResponse,
  UserInvite,
} from '../shared/protocol/control-api.js'
import {verifyAuditChain} from './domain/audit.js'
import {requireAdmits} from './domain/user-invites.js'
import {checkPolicy} from '../shared/policy/check.js'
import {roleAllows} from '../shared/protocol/control-api.js'
import type {z} from 'zod'
import {MeshError} from '../shared/errors.js'
import {usableEndpoints} from '../shared/net/endpoint.js'
import {RELAY_KEY_PREFIX} from '../shared/relay/control.js'
import {parseCidr} from '../shared/net/ipv4.js'
import {systemClock, type Clock} from '../shared/clock.js'
import {newId, newSecret, hashSecret} from './auth/secrets.js'
import {hashPassword} from './auth/password.js'
import {FailureLimiter} from './auth/rate-limit.js'
import {Auth, type Principal} from './auth/auth.js'
import {Access} from './auth/access.js'
import {
  publicUser,
  type UserRecord,
  type JoinProof,
  type Page,
  type PageRequest,
  type PolicyRecord,
  type Store,
  type StoredNode,
} from './store/store.js'
import {storeWrites, type Writes} from './domain/writes.js'
import {ConnectionTracker} from './connections.js'
import {InProcessChangeFeed, type ChangeFeed} from './change-feed.js'
import {InProcessPresence, withPresence, type InProcessPresenceOptions, type Presence} from './presence.js'
import {EndpointTelemetry} from './telemetry.js'
import {InProcessLock, type SingletonLock} from './leader.js'
import type {LoginLimits} from './auth/login-limits.js'
import {EphemeralReaper} from './reaper.js'
import {KeyExpirySweeper} from './key-expiry.js'
import {storeNetmapSource, type NetmapSource} from './netmap-source.js'
import type {OidcConfig} from './auth/oidc-config.js'
import type {SecretsKey} from './auth/secrets-key.js'
import {
  auditContext,
  NO_REQUEST,
  SILENT_LOG,
  systemContext,
  userContext,
  type PartLog,
  type RequestMeta,
} from './context.js'

/** Key rotations a node may make per hour (see ControllerState.rotations). */
export const ROTATIONS_PER_HOUR = 10

/** USERNAME_TAKEN answers a tenant gets per hour before every user create is RATE_LIMITED. */
export const USERNAME_TAKEN_PER_HOUR = 10

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
  /** Where the failed-login limits live; default this process (a replica set passes shared ones). */
  readonly loginLimits?: LoginLimits | undefined
  /** OpenID Connect issuers people may log in with (issue 10); none by default. */
  readonly oidc?: OidcConfig | undefined
  /** Seals TOTP secrets at rest (auth/secrets-key.ts); none: MFA cannot be enabled. */
  readonly secrets?: SecretsKey | undefined
  /** At most one endpoint change per node is applied per this window; default 2 s. */
  readonly endpointWindowMs?: number
  /** How often reported paths are merged and written (ms); default 1,000. */
  readonly connectionFlushMs?: number | undefined
  /**
   * This controller's name among replicas (its presence rows'); the connection tracker stores
   * it with the path sides it writes. Default: a name of the tracker's own (one controller).
   */
  readonly replica?: string | undefined
  /** Where node telemetry (endpoint reports) is logged, at debug level. */
  readonly log?: PartLog
  /** The change feed; default the in-process one (a replica set passes a shared one). */
  readonly feed?: ChangeFeed | undefined
  /** Builds presence from what it needs; default the in-process one. */
  readonly presence?: ((deps: InProcessPresenceOptions) => Presence) | undefined
  /** The lock singleton jobs (the reaper) run under; default the in-process one (always runs). */
  readonly lock?: SingletonLock | undefined
}

const SINCE_RE = /^(\d{1,6})([smhd])$/
const UNIT_MS = {s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000} as const

export class ControllerState {
  /** Time and timers for everything the controller schedules; see StateOptions.clock. */
  readonly clock: Clock
  /** Who is calling: login, tokens, node credentials. */
  readonly auth: Auth
  /** What a caller may do, and the lookups in its tenant. */
  readonly access: Access
  /** Committed node and network changes, for whoever keeps a cache of them. */
  readonly feed: ChangeFeed
  /** Which nodes hold a netmap session. */
  readonly presence: Presence
  /** Endpoint reports and observed mappings, coalesced per node; the public-key index. */
  readonly telemetry: EndpointTelemetry
  /** Per-pair paths and latency from node reports, their log and change events. */
  readonly connections: ConnectionTracker
  /** Removes ephemeral nodes that went away; main.ts runs its sweeps. */
  readonly reaper: EphemeralReaper
  /** Disables nodes whose key expired and announces coming expiries; main.ts runs its sweeps. */
  readonly keyExpiry: KeyExpirySweeper
  /** The reads a netmap session starts from (the netmap hub's). */
  readonly netmap: NetmapSource
  /** USERNAME_TAKEN answers per tenant; see createUser. Per process (see the module comment). */
  private readonly usernameProbes: FailureLimiter
  /**
   * Key rotations per node (ROTATIONS_PER_HOUR): each one sends every peer a delta, so a node
   * (or a stolen credential) must not make that a flood. Per process, like usernameProbes.
   */
  private readonly rotations: FailureLimiter
  /** Every write, each one transaction around its rule in controller/domain/. */
  private readonly writes: Writes
  private readonly withPresence = (n: StoredNode): Node => withPresence(this.presence, n)

  constructor(
    private readonly store: Store,
    opts: StateOptions = {},
  ) {
    const clock = (this.clock = opts.clock ?? systemClock)
    const log = opts.log ?? SILENT_LOG
    const writes = (this.writes = storeWrites(store))
    this.usernameProbes = new FailureLimiter({
      max: USERNAME_TAKEN_PER_HOUR,
      windowMs: 3_600_000,
      now: () => clock.now(),
    })
    this.rotations = new FailureLimiter({
      max: ROTATIONS_PER_HOUR,
      windowMs: 3_600_000,
      now: () => clock.now(),
    })
    this.auth = new Auth(store, writes, {
      clock,
      loginFailuresPerMinute: opts.loginFailuresPerMinute,
      loginLimits: opts.loginLimits,
      oidc: opts.oidc,
      secrets: opts.secrets,
      log,
    })
    this.access = new Access(store)
    this.netmap = storeNetmapSource(store)
    this.feed = opts.feed ?? new InProcessChangeFeed(log)
    // Policies may name IdP groups (`oidc:NAME`): a login that changed someone's groups is a
    // policy change of their tenant for every replica's netmap hub and relay. Only when the
    // tenant's policy may name one: without a policy groups decide nothing, and a document
    // without "oidc:" names none (unless written with \u escapes, which are let through too).
    this.auth.oidc.onGroupsChange((tenantId) => {
      store.getPolicy(tenantId).then(
        (policy) => {
          const doc = policy?.document
          if (doc !== undefined && (doc.includes('oidc:') || doc.includes('\\u')))
            this.feed.publishPolicy(tenantId)
        },
        (err: unknown) => log.warn({err, tenantId}, 'reading the policy after an OIDC group change failed'),
      )
    })
    const telemetry = (this.telemetry = new EndpointTelemetry(store, writes, this.feed, {
      clock,
      endpointWindowMs: opts.endpointWindowMs,
      log,
    }))
    this.presence = (opts.presence ?? ((deps) => new InProcessPresence(deps)))({
      clock,
      writes,
      // A node's last session closed: what it reported last is written before it goes offline.
      beforeOffline: (nodeId) => telemetry.settle(nodeId),
    })
    this.connections = new ConnectionTracker(store, {
      clock,
      flushMs: opts.connectionFlushMs,
      replica: opts.replica,
      log,
    })
    // Through the feed, so that admins on every replica hear of it (the shared feed carries it).
    this.connections.onChange((c) => this.feed.publishConnection(c))
    this.reaper = new EphemeralReaper({
      store,
      presence: this.presence,
      lock: opts.lock ?? new InProcessLock(),
      clock,
      remove: (nodeId) => this.removeNode(undefined, nodeId, NO_REQUEST),
    })
    this.keyExpiry = new KeyExpirySweeper({
      store,
      writes,
      publish: (change) => this.feed.publish(change),
      lock: opts.lock ?? new InProcessLock(),
      clock,
    })
  }

  /** The clock's time as a Date (for ISO timestamps). */
  now(): Date {
    return new Date(this.clock.now())
  }

  /** Readiness: throws when the database does not answer. */
  ping(): Promise<void> {
    return this.store.ping()
  }

  /** Shutdown: writes pending endpoint reports and paths so nothing a node said is lost. */
  async close(): Promise<void> {
    await this.connections.close()
    await this.telemetry.close()
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
      userContext(this.clock, p.user, meta),
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
    await this.access.requireMayGrant(p, req.role)
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
      userContext(this.clock, p.user, meta),
    )
  }

  /** Changes a user's tenant role, its name, or both (the role first). */
  async updateUser(
    p: Principal,
    id: string,
    change: {role?: Role | undefined; username?: string | undefined},
    meta: RequestMeta,
  ): Promise<User> {
    const target = await this.access.findUser(p, id)
    const {role, username} = change
    if (role !== undefined && id === p.user.id && role !== p.user.role) {
      // Demoting yourself could leave a tenant without anyone able to manage it.
      throw new MeshError('FORBIDDEN', {
        message: 'you cannot change your own role',
        hint: 'ask another owner',
      })
    }
    await this.access.requireNotOutranked(p, target)
    if (role !== undefined) await this.access.requireMayGrant(p, role)
    let user =
      role === undefined
        ? publicUser(target)
        : await this.writes.updateUserRole(id, role, userContext(this.clock, p.user, meta))
    if (username !== undefined && username !== target.username)
      user = await this.renameUser(p, target, username, meta)
    return user
  }

  /**
   * A policy names users by name, so a rename that would leave the tenant's policy naming a user
   * that no longer exists (or silently give the old name's rules to nobody) is refused: change
   * the policy first. USERNAME_TAKEN answers draw on the tenant's probe limit (see createUser).
   */
  private async renameUser(
    p: Principal,
    target: UserRecord,
    username: string,
    meta: RequestMeta,
  ): Promise<User> {
    const policy = await this.store.getPolicy(p.tenant.id)
    if (policy) {
      const names = new Set(await this.tenantUserNames(p.tenant.id))
      names.delete(target.username)
      names.add(username)
      try {
        checkPolicy(policy.document, {users: names})
      } catch (err) {
        if (!(err instanceof MeshError)) throw err
        throw new MeshError('USER_NAMED_IN_POLICY', {
          message: `the ACL policy names ${target.username}; without that name it does not hold: ${err.message}`,
        })
      }
    }
    const probes = p.tenant.id
    if (this.usernameProbes.blocked(probes)) {
      throw new MeshError('RATE_LIMITED', {
        message: `too many user changes to a name that was taken (${USERNAME_TAKEN_PER_HOUR} an hour per tenant)`,
        hint: `wait ${Math.ceil(this.usernameProbes.retryAfter(probes) / 60)} min and try again`,
      })
    }
    try {
      const user = await this.writes.renameUser(target.id, username, userContext(this.clock, p.user, meta))
      // Policies and the netmap hub name owners by user name: every replica reads them again.
      this.feed.publishPolicy(p.tenant.id)
      return user
    } catch (err) {
      if (err instanceof MeshError && err.code === 'USERNAME_TAKEN') this.usernameProbes.fail(probes)
      throw err
    }
  }

  /**
   * Deletes a user and, as `choice` says, removes its nodes or gives them to another user (each a
   * node change every peer hears of, as a netmap delta). Without a choice a user that owns nodes
   * is USER_HAS_NODES.
   */
  async deleteUser(
    p: Principal,
    id: string,
    choice: {nodes?: 'remove' | 'reassign' | undefined; to?: string | undefined},
    meta: RequestMeta,
  ): Promise<{removedNodes: string[]; reassignedNodes: string[]}> {
    const target = await this.access.findUser(p, id)
    if (id === p.user.id) {
      throw new MeshError('FORBIDDEN', {message: 'you cannot delete yourself', hint: 'ask another owner'})
    }
    await this.access.requireNotOutranked(p, target)
    if (choice.nodes === 'reassign' && choice.to === undefined) {
      throw new MeshError('VALIDATION_FAILED', {message: 'to: nodes=reassign needs the user to give them to'})
    }
    if (choice.nodes !== 'reassign' && choice.to !== undefined) {
      throw new MeshError('VALIDATION_FAILED', {message: 'to: only with nodes=reassign'})
    }
    if (choice.to !== undefined) await this.access.findUser(p, choice.to)
    const res = await this.writes.deleteUser(
      id,
      userContext(this.clock, p.user, meta),
      choice.nodes === undefined
        ? undefined
        : choice.nodes === 'remove'
          ? {nodes: 'remove'}
          : {nodes: 'reassign', to: choice.to as string},
    )
    for (const nodeId of res.removed) this.telemetry.forget(nodeId)
    this.feed.publish(res.changes)
    // The user's nodes have no owner a policy can name now: the netmap hub reads the user names
    // again, as after a policy change (PostgreSQL: the 0013 trigger on users tells the others).
    this.feed.publishPolicy(p.tenant.id)
    return {removedNodes: res.removed, reassignedNodes: res.reassigned}
  }

  // ---------------------------------------------------------------------------------------------
  // user invites (issue 10): people make their own account in the tenant

  /** A user invite with a role up to the caller's own (ROLE_TOO_HIGH above it). */
  async createUserInvite(
    p: Principal,
    req: z.output<typeof CreateUserInviteRequestSchema>,
    meta: RequestMeta,
  ): Promise<{invite: UserInvite; code: string}> {
    await this.access.requireMayGrant(p, req.role)
    const code = newSecret('userInvite')
    const invite = await this.writes.createUserInvite(
      {
        id: newId('uiv'),
        tenantId: p.tenant.id,
        codeHash: hashSecret(code),
        role: req.role,
        maxUses: req.maxUses,
        expiresAt: new Date(this.now().getTime() + req.expiresIn * 1000).toISOString(),
        createdBy: p.user.id,
      },
      userContext(this.clock, p.user, meta),
    )
    return {invite, code}
  }

  listUserInvites(p: Principal, page: PageRequest): Promise<Page<UserInvite>> {
    return this.store.listUserInvites(p.tenant.id, page)
  }

  revokeUserInvite(p: Principal, inv: UserInvite, meta: RequestMeta): Promise<UserInvite> {
    return this.writes.revokeUserInvite(inv.id, userContext(this.clock, p.user, meta))
  }

  /**
   * POST /signup: makes the account a user invite admits and logs it in (a session, as login).
   * USERNAME_TAKEN answers are limited per invite (USERNAME_TAKEN_PER_HOUR), so an invite is no
   * directory of the controller's user names (see createUser).
   */
  async signup(
    req: {invite: string; username: string; password: string},
    meta: RequestMeta,
  ): Promise<LoginResponse> {
    if (!req.invite.startsWith('uinv_')) throw new MeshError('INVITE_INVALID')
    const codeHash = hashSecret(req.invite)
    const probes = `signup:${codeHash}`
    if (this.usernameProbes.blocked(probes)) {
      throw new MeshError('RATE_LIMITED', {
        message: `too many sign-ups with a name that was taken (${USERNAME_TAKEN_PER_HOUR} an hour per invite)`,
        hint: `wait ${Math.ceil(this.usernameProbes.retryAfter(probes) / 60)} min and try again`,
      })
    }
    // Before the slow password hash: a made-up or spent code costs one lookup.
    requireAdmits(await this.store.userInviteByCode(codeHash), this.now().toISOString())
    const id = newId('u')
    const ctx = auditContext(this.clock, {actor: `user:${id}`, actorName: req.username}, meta)
    let user
    try {
      user = await this.writes.acceptUserInvite(
        codeHash,
        {
          id,
          username: req.username,
          identity: {kind: 'password', passwordHash: await hashPassword(req.password)},
        },
        ctx,
      )
    } catch (err) {
      if (err instanceof MeshError && err.code === 'USERNAME_TAKEN') this.usernameProbes.fail(probes)
      throw err
    }
    const tenant = (await this.store.getTenant(user.tenantId)) as Tenant
    const pair = await this.auth.sessions.start(user, ctx)
    return {...pair, user: publicUser(user), tenant}
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
      userContext(this.clock, p.user, meta),
    )
  }

  async updateNetwork(
    p: Principal,
    net: Network,
    patch: UpdateNetworkRequest,
    meta: RequestMeta,
  ): Promise<Network> {
    const updated = await this.writes.updateNetwork(net.id, patch, userContext(this.clock, p.user, meta))
    this.feed.publishNetwork(updated)
    return updated
  }

  async deleteNetwork(p: Principal, net: Network, meta: RequestMeta): Promise<void> {
    const changes = await this.writes.deleteNetwork(net.id, userContext(this.clock, p.user, meta))
    this.feed.publish(changes)
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
    const target = await this.access.findUser(p, userId)
    // Who first (OUTRANKED), then what (ROLE_TOO_HIGH): a tenant admin can neither demote the
    // tenant owner on a network nor make itself owner there.
    await this.access.requireNotOutranked(p, target, net.id)
    await this.access.requireMayGrant(p, role, net.id)
    return this.writes.setMember(net.id, userId, role, userContext(this.clock, p.user, meta))
  }

  async removeMember(p: Principal, net: Network, userId: string, meta: RequestMeta): Promise<void> {
    // Removing a network role gives the user its tenant role back there: never above `standing`.
    await this.access.requireNotOutranked(p, await this.access.findUser(p, userId), net.id)
    await this.writes.removeMember(net.id, userId, userContext(this.clock, p.user, meta))
  }

  // ---------------------------------------------------------------------------------------------
  // invites and auth keys

  async createInvite(
    p: Principal,
    net: Network,
    req: z.output<typeof CreateInviteRequestSchema>,
    meta: RequestMeta,
  ): Promise<{invite: Invite; code: string}> {
    await this.access.requireMayGrant(p, req.role, net.id)
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
      userContext(this.clock, p.user, meta),
    )
    return {invite, code}
  }

  listInvites(net: Network, page: PageRequest): Promise<Page<Invite>> {
    return this.store.listInvites(net.id, page)
  }

  async revokeInvite(p: Principal, id: string, meta: RequestMeta): Promise<Invite> {
    const inv = await this.store.getInvite(id)
    if (inv) await this.access.requireMayRevoke(p, 'invite', inv)
    return this.writes.revokeInvite(id, userContext(this.clock, p.user, meta))
  }

  async createAuthKey(
    p: Principal,
    net: Network,
    req: z.output<typeof CreateAuthKeyRequestSchema>,
    meta: RequestMeta,
  ): Promise<{authKey: AuthKey; key: string}> {
    if (req.preApproved) {
      // A pre-approved key lets its nodes skip approval, so it needs what approving needs.
      const role = await this.access.networkRole(p, net.id)
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
      userContext(this.clock, p.user, meta),
    )
    return {authKey, key}
  }

  listAuthKeys(net: Network, page: PageRequest): Promise<Page<AuthKey>> {
    return this.store.listAuthKeys(net.id, page)
  }

  async revokeAuthKey(p: Principal, id: string, meta: RequestMeta): Promise<AuthKey> {
    const key = await this.store.getAuthKey(id)
    if (key) await this.access.requireMayRevoke(p, 'auth key', key)
    return this.writes.revokeAuthKey(id, userContext(this.clock, p.user, meta))
  }

  // ---------------------------------------------------------------------------------------------
  // relay keys (deployment-wide: superusers only; the routes check it, and so does this)

  async createRelayKey(
    p: Principal,
    req: z.output<typeof CreateRelayKeyRequestSchema>,
    meta: RequestMeta,
  ): Promise<{relayKey: RelayKey; key: string}> {
    requireSuperuser(p)
    const id = newId('rk')
    // The same shape as every other secret (auth/secrets.ts): 256 random bits behind a prefix.
    const key = RELAY_KEY_PREFIX + randomBytes(32).toString('base64url')
    const relayKey = await this.writes.createRelayKey(
      {
        id,
        name: req.name ?? req.region,
        region: req.region,
        keyHash: hashSecret(key),
        prefix: key.slice(0, 12),
        createdBy: p.user.id,
      },
      userContext(this.clock, p.user, meta),
      p.tenant.id,
    )
    return {relayKey, key}
  }

  listRelayKeys(p: Principal, page: PageRequest): Promise<Page<RelayKey>> {
    requireSuperuser(p)
    return this.store.listRelayKeys(page)
  }

  revokeRelayKey(p: Principal, id: string, meta: RequestMeta): Promise<RelayKey> {
    requireSuperuser(p)
    return this.writes.revokeRelayKey(id, userContext(this.clock, p.user, meta), p.tenant.id)
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
      const net = await this.access.findNetwork(principal, req.network ?? '')
      await this.access.requireNetwork(principal, net.id, 'node.register')
      if (net.joinPolicy !== 'open') {
        throw new MeshError('FORBIDDEN', {
          message: `network ${net.name} has join policy ${net.joinPolicy}: a token alone cannot register`,
          hint: 'join with an invite or an auth key',
        })
      }
      proof = {kind: 'open', networkId: net.id, userId: principal.user.id}
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
      auditContext(this.clock, actor, meta),
    )
    this.feed.publish(change)
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
    const change = await this.writes.approveNode(id, userContext(this.clock, p.user, meta))
    this.feed.publish(change)
    return this.withPresence(change.node as StoredNode)
  }

  async renameNode(p: Principal, id: string, name: string, meta: RequestMeta): Promise<Node> {
    const change = await this.writes.renameNode(id, name, userContext(this.clock, p.user, meta))
    this.feed.publish(change)
    return this.withPresence(change.node as StoredNode)
  }

  async removeNode(p: Principal | undefined, id: string, meta: RequestMeta): Promise<void> {
    const change = await this.writes.removeNode(
      id,
      p ? userContext(this.clock, p.user, meta) : systemContext(this.clock),
    )
    this.telemetry.forget(id)
    this.feed.publish(change)
  }

  /** A node removes itself with its own credential (`mesh leave`): audited as node.leave. */
  async leaveNode(node: StoredNode, meta: RequestMeta): Promise<void> {
    const change = await this.writes.removeNode(
      node.id,
      auditContext(this.clock, {actor: `node:${node.id}`, actorName: node.name}, meta),
      'node.leave',
    )
    this.telemetry.forget(node.id)
    this.feed.publish(change)
  }
  // ---------------------------------------------------------------------------------------------
  // node keys: rotation and expiry (issue 10)

  /**
   * The node replaces its WireGuard public key with its credential (`mesh rotate-key`); the
   * private key never leaves the node. Audited as node.rotate_key by the node.
   */
  async rotateNodeKey(node: StoredNode, publicKey: string, meta: RequestMeta): Promise<Node> {
    if (this.rotations.blocked(node.id))
      throw new MeshError('RATE_LIMITED', {
        message: `at most ${ROTATIONS_PER_HOUR} key rotations per node an hour`,
        hint: 'rotate keys now and then, not in a loop',
      })
    this.rotations.fail(node.id)
    const change = await this.writes.rotateNodeKey(
      node.id,
      publicKey,
      auditContext(this.clock, {actor: `node:${node.id}`, actorName: node.name}, meta),
    )
    this.feed.publish(change)
    return this.withPresence(change.node as StoredNode)
  }

  /** An admin expires a node's key now (`mesh node expire`). */
  async expireNode(p: Principal, id: string, meta: RequestMeta): Promise<Node> {
    const change = await this.writes.expireNodeKey(id, userContext(this.clock, p.user, meta))
    this.feed.publish(change)
    return this.withPresence(change.node as StoredNode)
  }

  /**
   * An admin gives a node's key a new expiry (`mesh node extend`): `by` seconds from now, or
   * never; neither: the tenant's default lifetime from now (never when that is 0).
   */
  async extendNode(
    p: Principal,
    id: string,
    req: {by?: number | undefined; never?: boolean | undefined},
    meta: RequestMeta,
  ): Promise<Node> {
    let expiresAt: string | null
    if (req.never === true) expiresAt = null
    else {
      const seconds = req.by ?? (await this.store.tenantKeyDays(p.tenant.id)) * 86_400
      expiresAt = seconds === 0 ? null : new Date(this.clock.now() + seconds * 1000).toISOString()
    }
    const change = await this.writes.extendNodeKey(id, expiresAt, userContext(this.clock, p.user, meta))
    this.feed.publish(change)
    return this.withPresence(change.node as StoredNode)
  }

  async getKeyExpiry(p: Principal): Promise<{days: number}> {
    return {days: await this.store.tenantKeyDays(p.tenant.id)}
  }

  /** The tenant's default node key lifetime in days (0: never), for keys made from now on. */
  async setKeyExpiry(p: Principal, days: number, meta: RequestMeta): Promise<{days: number}> {
    return {
      days: await this.writes.setTenantKeyDays(p.tenant.id, days, userContext(this.clock, p.user, meta)),
    }
  }

  // ---------------------------------------------------------------------------------------------
  // audit

  async listAudit(
    p: Principal,
    q: {
      since?: string | undefined
      actor?: string | undefined
      network?: string | undefined
      afterSeq?: number | undefined
    },
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
    const networkId = q.network === undefined ? undefined : (await this.access.findNetwork(p, q.network)).id
    return this.store.listAudit(
      {tenantId: p.tenant.id, since, actor: q.actor, networkId, afterSeq: q.afterSeq},
      page,
    )
  }

  // ---------------------------------------------------------------------------------------------
  // ACL policy

  async getPolicy(p: Principal): Promise<PolicyInfo> {
    return policyInfo(await this.store.getPolicy(p.tenant.id))
  }

  async setPolicy(
    p: Principal,
    req: {document: string; ifVersion?: number | undefined},
    meta: RequestMeta,
  ): Promise<PolicyInfo> {
    const stored = await this.writes.setPolicy(
      p.tenant.id,
      req.document,
      {ifVersion: req.ifVersion, userId: p.user.id, users: await this.tenantUserNames(p.tenant.id)},
      userContext(this.clock, p.user, meta),
    )
    // Committed: every replica's netmap hub reads it again (PostgreSQL: the 0013 trigger too).
    this.feed.publishPolicy(p.tenant.id)
    return policyInfo(stored)
  }

  /** Every user name of the tenant (what a policy may name), page by page. */
  private async tenantUserNames(tenantId: string): Promise<string[]> {
    const names: string[] = []
    let cursor: string | undefined
    // Bounded: each page moves the cursor forward; a tenant has finitely many users.
    for (;;) {
      const page = await this.store.listUsers(tenantId, {limit: 500, cursor})
      for (const u of page.items) names.push(u.username)
      if (page.nextCursor === null) return names
      cursor = page.nextCursor
    }
  }

  async deletePolicy(p: Principal, meta: RequestMeta): Promise<void> {
    if (await this.writes.deletePolicy(p.tenant.id, userContext(this.clock, p.user, meta)))
      this.feed.publishPolicy(p.tenant.id)
  }

  /** Validates a document and runs its tests without storing it (POLICY_INVALID / _TESTS_FAILED). */
  async checkPolicy(p: Principal, document: string): Promise<{ok: true; rules: number; tests: number}> {
    const policy = checkPolicy(document, {users: await this.tenantUserNames(p.tenant.id)})
    return {ok: true, rules: policy.rules.length, tests: policy.tests.length}
  }

  /** The caller's tenant's audit chain, recomputed (controller/domain/audit.ts). */
  verifyAudit(p: Principal): Promise<AuditVerification> {
    return verifyAuditChain(this.store, p.tenant.id)
  }
}

const policyInfo = (r: PolicyRecord | undefined): PolicyInfo =>
  r
    ? {document: r.document, version: r.version, updatedAt: r.updatedAt, updatedBy: r.updatedBy}
    : {document: null, version: 0, updatedAt: null, updatedBy: null}

function requireSuperuser(p: Principal): void {
  if (!p.user.superuser) throw new MeshError('FORBIDDEN', {message: 'only superusers may manage relay keys'})
}
