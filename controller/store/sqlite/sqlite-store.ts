/**
 * The Store on better-sqlite3: every mutation is one db.transaction() that also appends its
 * audit row; rules needing a consistent view are decided inside it (see store.ts).
 */
import fs from 'node:fs'
import path from 'node:path'
import type Database from 'better-sqlite3'
import type {
  AuditEntry,
  AuthKey,
  Connection,
  ConnectionEvent,
  ConnectionLogEntry,
  Invite,
  Network,
  NetworkMember,
  NodeStatus,
  Path,
  Role,
  Tenant,
  User,
} from '../../../shared/protocol/control-api.js'
import {MeshError} from '../../../shared/errors.js'
import {cidrsOverlap, formatIPv4, parseCidr} from '../../../shared/net/ipv4.js'
import {allocateAddress} from '../../ipam.js'
import type {
  AuditContext,
  AuditFilter,
  AuthKeyRecord,
  ConnectionWrite,
  InviteRecord,
  JoinProof,
  NetworkPatch,
  NewNetwork,
  NewNode,
  NodeChange,
  Page,
  PageRequest,
  Store,
  StoredConnection,
  StoredNode,
  UserRecord,
} from '../store.js'
import {CONNECTION_LOG_KEEP, publicUser} from '../store.js'
import {openSqlite} from './open.js'
import type {Migration} from './migrations.js'

/**
 * The readiness write probe: a successful one is trusted this long (an unauthenticated
 * /readyz must not turn into a stream of disk writes); a failed one is retried on every call,
 * so recovery shows at once.
 */
const WRITE_PROBE_INTERVAL_MS = 1_000
/**
 * Bytes each write probe rewrites (random, so SQLite cannot skip unchanged pages): a few pages,
 * more than a typical mutation writes, so a probe does not pass in the room a failed larger
 * write left behind in the WAL.
 */
const WRITE_PROBE_BYTES = 16 * 1024
/** Free space on the database's file system below which the controller is not ready. */
const MIN_FREE_BYTES = 1024 * 1024

/** Change-log rows kept per network for resume-by-version; older resumes get a full map. */
const CHANGE_LOG_KEEP = 10_000

type Row = Record<string, unknown>

const str = (v: unknown): string => v as string
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : (v as string))
const bool = (v: unknown): boolean => v === 1 || v === 1n

const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
const toStoredConnection = (r: Row): StoredConnection => ({
  nodeA: str(r.node_a),
  nodeB: str(r.node_b),
  path: r.path as StoredConnection['path'],
  latencyMs: numOrNull(r.latency_ms),
  endpointA: strOrNull(r.endpoint_a),
  endpointB: strOrNull(r.endpoint_b),
  since: str(r.since),
  updatedAt: str(r.updated_at),
})

const toTenant = (r: Row): Tenant => ({id: str(r.id), name: str(r.name), createdAt: str(r.created_at)})
const toUser = (r: Row): UserRecord => ({
  id: str(r.id),
  tenantId: str(r.tenant_id),
  username: str(r.username),
  role: r.role as Role,
  superuser: bool(r.superuser),
  createdAt: str(r.created_at),
  passwordHash: str(r.password_hash),
})
const toNetwork = (r: Row): Network => ({
  id: str(r.id),
  tenantId: str(r.tenant_id),
  name: str(r.name),
  cidr: str(r.cidr),
  description: str(r.description),
  joinPolicy: r.join_policy as Network['joinPolicy'],
  maxNodes: r.max_nodes === null ? null : Number(r.max_nodes),
  nodeCount: Number(r.node_count ?? 0),
  createdAt: str(r.created_at),
})
const toInvite = (r: Row): InviteRecord => ({
  id: str(r.id),
  networkId: str(r.network_id),
  tenantId: str(r.tenant_id),
  role: r.role as Role,
  maxUses: r.max_uses === null ? null : Number(r.max_uses),
  uses: Number(r.uses),
  expiresAt: str(r.expires_at),
  revokedAt: strOrNull(r.revoked_at),
  createdAt: str(r.created_at),
  createdBy: str(r.created_by),
})
const publicInvite = ({tenantId: _t, ...rest}: InviteRecord): Invite => rest
const toAuthKey = (r: Row): AuthKeyRecord => ({
  id: str(r.id),
  networkId: str(r.network_id),
  tenantId: str(r.tenant_id),
  prefix: str(r.prefix),
  reusable: bool(r.reusable),
  ephemeral: bool(r.ephemeral),
  preApproved: bool(r.pre_approved),
  tags: JSON.parse(str(r.tags)) as string[],
  uses: Number(r.uses),
  expiresAt: str(r.expires_at),
  revokedAt: strOrNull(r.revoked_at),
  createdAt: str(r.created_at),
  createdBy: str(r.created_by),
})
const publicAuthKey = ({tenantId: _t, ...rest}: AuthKeyRecord): AuthKey => rest
const toNode = (r: Row): StoredNode => ({
  id: str(r.id),
  networkId: str(r.network_id),
  name: str(r.name),
  hostname: str(r.hostname),
  os: str(r.os),
  publicKey: str(r.public_key),
  address: formatIPv4(Number(r.address)),
  status: r.status as NodeStatus,
  lastSeen: strOrNull(r.last_seen),
  endpoints: JSON.parse(str(r.endpoints)) as string[],
  tags: JSON.parse(str(r.tags)) as string[],
  ephemeral: bool(r.ephemeral),
  createdAt: str(r.created_at),
  // Absent rather than null when none was observed: most nodes' shapes stay as they were.
  ...(typeof r.observed_endpoint === 'string' ? {observedEndpoint: r.observed_endpoint} : {}),
})
const toAudit = (r: Row): AuditEntry => ({
  id: Number(r.id),
  at: str(r.at),
  tenantId: strOrNull(r.tenant_id),
  actor: str(r.actor),
  actorName: str(r.actor_name),
  action: str(r.action),
  targetType: str(r.target_type),
  targetId: strOrNull(r.target_id),
  networkId: strOrNull(r.network_id),
  sourceAddress: strOrNull(r.source_address),
  requestId: strOrNull(r.request_id),
  detail: JSON.parse(str(r.detail)) as Record<string, unknown>,
})

/** Opaque cursors: base64url of the last row's seq. Anything unreadable starts from the top. */
const encodeCursor = (seq: number): string => Buffer.from(`s${seq}`).toString('base64url')
function decodeCursor(cursor: string | undefined): number {
  if (!cursor) return 0
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const m = /^s(\d{1,15})$/.exec(text)
  if (!m) throw new MeshError('VALIDATION_FAILED', {message: 'cursor: not a cursor from this server'})
  return Number(m[1])
}

export class SqliteStore implements Store {
  /** Prepared statements by SQL text: preparing costs far more than running these queries. */
  private readonly statements = new Map<string, Database.Statement>()

  private lastWriteProbeAt = -Infinity

  private constructor(readonly db: Database.Database) {}

  private q(sql: string): Database.Statement {
    let st = this.statements.get(sql)
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)))
    return st
  }

  static async open(file: string, opts: {migrations?: readonly Migration[]} = {}): Promise<SqliteStore> {
    return new SqliteStore(await openSqlite(file, opts))
  }

  /**
   * Readiness: the database answers, a small write commits (rolled back on SQLITE_FULL and the
   * like, which reach the caller as they are: storageError() maps them), and the file system
   * holding the database has at least MIN_FREE_BYTES free (else STORAGE_FULL: a write may still
   * fit in the WAL's old room, but the next larger one will not).
   */
  async ping(): Promise<void> {
    this.q('SELECT 1').get()
    let free: number | undefined
    try {
      const st = fs.statfsSync(path.dirname(this.db.name))
      // root may also use the blocks reserved for it (ext4's 5 %); others may not.
      free = (process.getuid?.() === 0 ? st.bfree : st.bavail) * st.bsize
    } catch {
      free = undefined // not knowable here (e.g. an in-memory database): the write probe decides
    }
    if (free !== undefined && free < MIN_FREE_BYTES) {
      this.lastWriteProbeAt = -Infinity
      throw new MeshError('STORAGE_FULL', {
        message: `the controller's storage is full (${Math.floor(free / 1024)} KiB free on the database's file system)`,
      })
    }
    const t = performance.now()
    if (t - this.lastWriteProbeAt < WRITE_PROBE_INTERVAL_MS) return
    this.lastWriteProbeAt = -Infinity
    this.q('UPDATE readiness_probe SET probed_at = ?, headroom = randomblob(?) WHERE id = 1').run(
      new Date().toISOString(),
      WRITE_PROBE_BYTES,
    )
    this.lastWriteProbeAt = t
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close()
  }

  // ---------------------------------------------------------------------------------------------
  // helpers

  private audit(
    ctx: AuditContext,
    e: {
      tenantId: string | null
      action: string
      targetType: string
      targetId: string | null
      networkId: string | null
      detail?: Record<string, unknown>
    },
  ): void {
    this.q(
      `INSERT INTO audit (at, tenant_id, actor, actor_name, action, target_type, target_id, network_id,
           source_address, request_id, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
    ).run(
      ctx.at,
      e.tenantId,
      ctx.actor,
      ctx.actorName,
      e.action,
      e.targetType,
      e.targetId,
      e.networkId,
      ctx.sourceAddress,
      ctx.requestId,
      JSON.stringify(e.detail ?? {}),
    )
  }

  private page<T>(rows: Row[], limit: number, map: (r: Row) => T): Page<T> {
    const more = rows.length > limit
    const slice = more ? rows.slice(0, limit) : rows
    const last = slice.at(-1)
    return {
      items: slice.map(map),
      nextCursor: more && last ? encodeCursor(Number(last.seq)) : null,
    }
  }

  private networkRow(id: string): Row | undefined {
    return this.q('SELECT * FROM networks WHERE id = ?').get(id) as Row | undefined
  }

  private nodeRow(id: string): Row | undefined {
    return this.q('SELECT * FROM nodes WHERE id = ?').get(id) as Row | undefined
  }

  /** Bumps the network's netmap version and logs which node changed. Inside a transaction. */
  private bump(networkId: string, nodeId: string): number {
    const row = this.q(
      'UPDATE networks SET netmap_version = netmap_version + 1 WHERE id = ? RETURNING netmap_version',
    ).get(networkId) as {netmap_version: number}
    const version = Number(row.netmap_version)
    this.q('INSERT INTO netmap_changes (network_id, version, node_id) VALUES (?,?,?)').run(
      networkId,
      version,
      nodeId,
    )
    if (version % 1000 === 0) {
      this.q('DELETE FROM netmap_changes WHERE network_id = ? AND version <= ?').run(
        networkId,
        version - CHANGE_LOG_KEEP,
      )
    }
    return version
  }

  private tenantOfNetwork(networkId: string): string {
    const r = this.q('SELECT tenant_id FROM networks WHERE id = ?').get(networkId) as Row | undefined
    if (!r) throw new MeshError('NOT_FOUND', {message: 'network not found'})
    return str(r.tenant_id)
  }

  // ---------------------------------------------------------------------------------------------
  // tenants and users

  async hasTenants(): Promise<boolean> {
    return this.q('SELECT 1 FROM tenants LIMIT 1').get() !== undefined
  }

  async createTenantWithOwner(
    tenant: {id: string; name: string},
    owner: {id: string; username: string; passwordHash: string; superuser: boolean},
    ctx: AuditContext,
  ): Promise<{tenant: Tenant; owner: User}> {
    return this.db.transaction(() => {
      if (this.q('SELECT 1 FROM tenants WHERE name = ?').get(tenant.name)) {
        throw new MeshError('TENANT_NAME_TAKEN')
      }
      if (this.q('SELECT 1 FROM users WHERE username = ?').get(owner.username)) {
        throw new MeshError('USERNAME_TAKEN')
      }
      this.q('INSERT INTO tenants (id, name, created_at) VALUES (?,?,?)').run(tenant.id, tenant.name, ctx.at)
      this.q(
        `INSERT INTO users (id, tenant_id, username, password_hash, role, superuser, created_at)
           VALUES (?,?,?,?,?,?,?)`,
      ).run(owner.id, tenant.id, owner.username, owner.passwordHash, 'owner', owner.superuser ? 1 : 0, ctx.at)
      this.audit(ctx, {
        tenantId: tenant.id,
        action: 'tenant.create',
        targetType: 'tenant',
        targetId: tenant.id,
        networkId: null,
        detail: {name: tenant.name, owner: owner.username},
      })
      const t = toTenant(this.q('SELECT * FROM tenants WHERE id = ?').get(tenant.id) as Row)
      const u = toUser(this.q('SELECT * FROM users WHERE id = ?').get(owner.id) as Row)
      return {tenant: t, owner: publicUser(u)}
    })()
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const r = this.q('SELECT * FROM tenants WHERE id = ?').get(id) as Row | undefined
    return r && toTenant(r)
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const r = this.q('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined
    return r && toUser(r)
  }

  async getUserByUsername(username: string): Promise<UserRecord | undefined> {
    const r = this.q('SELECT * FROM users WHERE username = ?').get(username) as Row | undefined
    return r && toUser(r)
  }

  async listUsers(tenantId: string, page: PageRequest): Promise<Page<User>> {
    const rows = this.q('SELECT * FROM users WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(
      tenantId,
      decodeCursor(page.cursor),
      page.limit + 1,
    ) as Row[]
    return this.page(rows, page.limit, (r) => publicUser(toUser(r)))
  }

  async createUser(
    user: {id: string; tenantId: string; username: string; passwordHash: string; role: Role},
    ctx: AuditContext,
  ): Promise<User> {
    return this.db.transaction(() => {
      if (this.q('SELECT 1 FROM users WHERE username = ?').get(user.username)) {
        throw new MeshError('USERNAME_TAKEN')
      }
      this.q(
        `INSERT INTO users (id, tenant_id, username, password_hash, role, superuser, created_at)
           VALUES (?,?,?,?,?,0,?)`,
      ).run(user.id, user.tenantId, user.username, user.passwordHash, user.role, ctx.at)
      this.audit(ctx, {
        tenantId: user.tenantId,
        action: 'user.create',
        targetType: 'user',
        targetId: user.id,
        networkId: null,
        detail: {username: user.username, role: user.role},
      })
      return publicUser(toUser(this.q('SELECT * FROM users WHERE id = ?').get(user.id) as Row))
    })()
  }

  async updateUserRole(id: string, role: Role, ctx: AuditContext): Promise<User> {
    return this.db.transaction(() => {
      const before = this.q('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined
      if (!before) throw new MeshError('NOT_FOUND', {message: 'user not found'})
      this.q('UPDATE users SET role = ? WHERE id = ?').run(role, id)
      this.audit(ctx, {
        tenantId: str(before.tenant_id),
        action: 'user.update',
        targetType: 'user',
        targetId: id,
        networkId: null,
        detail: {role, previousRole: before.role},
      })
      return publicUser(toUser(this.q('SELECT * FROM users WHERE id = ?').get(id) as Row))
    })()
  }

  async deleteUser(id: string, ctx: AuditContext): Promise<void> {
    this.db.transaction(() => {
      const before = this.q('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined
      if (!before) throw new MeshError('NOT_FOUND', {message: 'user not found'})
      this.q('DELETE FROM users WHERE id = ?').run(id)
      this.audit(ctx, {
        tenantId: str(before.tenant_id),
        action: 'user.delete',
        targetType: 'user',
        targetId: id,
        networkId: null,
        detail: {username: before.username},
      })
    })()
  }

  // ---------------------------------------------------------------------------------------------
  // tokens

  async createToken(
    token: {id: string; hash: string; userId: string; expiresAt: string},
    ctx: AuditContext,
  ): Promise<void> {
    this.db.transaction(() => {
      const user = this.q('SELECT tenant_id FROM users WHERE id = ?').get(token.userId) as Row | undefined
      if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
      this.q('INSERT INTO tokens (id, token_hash, user_id, created_at, expires_at) VALUES (?,?,?,?,?)').run(
        token.id,
        token.hash,
        token.userId,
        ctx.at,
        token.expiresAt,
      )
      // Expired tokens are swept here so the table does not grow without bound.
      this.q('DELETE FROM tokens WHERE expires_at < ?').run(ctx.at)
      this.audit(ctx, {
        tenantId: str(user.tenant_id),
        action: 'user.login',
        targetType: 'token',
        targetId: token.id,
        networkId: null,
      })
    })()
  }

  async getToken(hash: string): Promise<{id: string; userId: string; expiresAt: string} | undefined> {
    const r = this.q('SELECT * FROM tokens WHERE token_hash = ?').get(hash) as Row | undefined
    return r && {id: str(r.id), userId: str(r.user_id), expiresAt: str(r.expires_at)}
  }

  async deleteToken(hash: string, ctx: AuditContext): Promise<void> {
    this.db.transaction(() => {
      const r = this.q(
        'SELECT t.id, u.tenant_id FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?',
      ).get(hash) as Row | undefined
      if (!r) return
      this.q('DELETE FROM tokens WHERE token_hash = ?').run(hash)
      this.audit(ctx, {
        tenantId: str(r.tenant_id),
        action: 'user.logout',
        targetType: 'token',
        targetId: str(r.id),
        networkId: null,
      })
    })()
  }

  // ---------------------------------------------------------------------------------------------
  // networks and members

  async listNetworks(tenantId: string, page: PageRequest): Promise<Page<Network>> {
    const rows = this.q('SELECT * FROM networks WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(
      tenantId,
      decodeCursor(page.cursor),
      page.limit + 1,
    ) as Row[]
    return this.page(rows, page.limit, toNetwork)
  }

  async getNetwork(id: string): Promise<Network | undefined> {
    const r = this.networkRow(id)
    return r && toNetwork(r)
  }

  async getNetworkByName(tenantId: string, name: string): Promise<Network | undefined> {
    const r = this.q('SELECT id FROM networks WHERE tenant_id = ? AND name = ?').get(tenantId, name) as
      Row | undefined
    return r ? this.getNetwork(str(r.id)) : undefined
  }

  async createNetwork(net: NewNetwork, ctx: AuditContext): Promise<Network> {
    const cidr = parseCidr(net.cidr)
    if (!cidr) throw new MeshError('INVALID_CIDR', {message: `cidr: ${net.cidr} is not a network prefix`})
    return this.db.transaction(() => {
      if (this.q('SELECT 1 FROM networks WHERE tenant_id = ? AND name = ?').get(net.tenantId, net.name)) {
        throw new MeshError('NETWORK_NAME_TAKEN', {message: `a network named ${net.name} already exists`})
      }
      const others = this.q('SELECT name, cidr FROM networks WHERE tenant_id = ?').all(net.tenantId) as Row[]
      for (const o of others) {
        const oc = parseCidr(str(o.cidr))
        if (oc && cidrsOverlap(cidr, oc)) {
          throw new MeshError('CIDR_OVERLAP', {
            message: `cidr: ${net.cidr} overlaps ${str(o.cidr)} of network ${str(o.name)}`,
          })
        }
      }
      this.q(
        `INSERT INTO networks (id, tenant_id, name, cidr, description, join_policy, max_nodes, created_at)
           VALUES (?,?,?,?,?,?,?,?)`,
      ).run(net.id, net.tenantId, net.name, net.cidr, net.description, net.joinPolicy, net.maxNodes, ctx.at)
      this.audit(ctx, {
        tenantId: net.tenantId,
        action: 'network.create',
        targetType: 'network',
        targetId: net.id,
        networkId: net.id,
        detail: {name: net.name, cidr: net.cidr, joinPolicy: net.joinPolicy, maxNodes: net.maxNodes},
      })
      return toNetwork(this.networkRow(net.id) as Row)
    })()
  }

  async updateNetwork(id: string, patch: NetworkPatch, ctx: AuditContext): Promise<Network> {
    return this.db.transaction(() => {
      const before = this.networkRow(id)
      if (!before) throw new MeshError('NOT_FOUND', {message: 'network not found'})
      if (patch.name !== undefined && patch.name !== before.name) {
        const clash = this.q('SELECT 1 FROM networks WHERE tenant_id = ? AND name = ?').get(
          before.tenant_id,
          patch.name,
        )
        if (clash)
          throw new MeshError('NETWORK_NAME_TAKEN', {message: `a network named ${patch.name} already exists`})
      }
      const next = {
        name: patch.name ?? str(before.name),
        description: patch.description ?? str(before.description),
        joinPolicy: patch.joinPolicy ?? str(before.join_policy),
        maxNodes: patch.maxNodes === undefined ? before.max_nodes : patch.maxNodes,
      }
      this.q(
        'UPDATE networks SET name = ?, description = ?, join_policy = ?, max_nodes = ? WHERE id = ?',
      ).run(next.name, next.description, next.joinPolicy, next.maxNodes, id)
      this.audit(ctx, {
        tenantId: str(before.tenant_id),
        action: 'network.update',
        targetType: 'network',
        targetId: id,
        networkId: id,
        detail: {...patch},
      })
      return toNetwork(this.networkRow(id) as Row)
    })()
  }

  async deleteNetwork(id: string, ctx: AuditContext): Promise<NodeChange[]> {
    return this.db.transaction(() => {
      const before = this.networkRow(id)
      if (!before) throw new MeshError('NOT_FOUND', {message: 'network not found'})
      const nodes = (this.q('SELECT * FROM nodes WHERE network_id = ?').all(id) as Row[]).map(toNode)
      const version = Number(before.netmap_version) + 1
      this.q('DELETE FROM networks WHERE id = ?').run(id)
      this.audit(ctx, {
        tenantId: str(before.tenant_id),
        action: 'network.delete',
        targetType: 'network',
        targetId: id,
        networkId: id,
        detail: {name: before.name, cidr: before.cidr, nodes: nodes.length},
      })
      return nodes.map((n): NodeChange => ({
        networkId: id,
        tenantId: str(before.tenant_id),
        version,
        nodeId: n.id,
        kind: 'removed',
        node: null,
        before: n,
        networkDeleted: true,
      }))
    })()
  }

  async listMembers(networkId: string): Promise<NetworkMember[]> {
    const rows = this.q(
      `SELECT m.user_id, u.username, m.role FROM network_members m JOIN users u ON u.id = m.user_id
         WHERE m.network_id = ? ORDER BY u.username`,
    ).all(networkId) as Row[]
    return rows.map((r) => ({userId: str(r.user_id), username: str(r.username), role: r.role as Role}))
  }

  async getMemberRole(networkId: string, userId: string): Promise<Role | undefined> {
    const r = this.q('SELECT role FROM network_members WHERE network_id = ? AND user_id = ?').get(
      networkId,
      userId,
    ) as Row | undefined
    return r ? (r.role as Role) : undefined
  }

  async setMember(networkId: string, userId: string, role: Role, ctx: AuditContext): Promise<NetworkMember> {
    return this.db.transaction(() => {
      const tenantId = this.tenantOfNetwork(networkId)
      const user = this.q('SELECT username, tenant_id FROM users WHERE id = ?').get(userId) as Row | undefined
      if (!user || user.tenant_id !== tenantId) throw new MeshError('NOT_FOUND', {message: 'user not found'})
      this.q(
        `INSERT INTO network_members (network_id, user_id, role) VALUES (?,?,?)
           ON CONFLICT (network_id, user_id) DO UPDATE SET role = excluded.role`,
      ).run(networkId, userId, role)
      this.audit(ctx, {
        tenantId,
        action: 'member.set',
        targetType: 'user',
        targetId: userId,
        networkId,
        detail: {role},
      })
      return {userId, username: str(user.username), role}
    })()
  }

  async removeMember(networkId: string, userId: string, ctx: AuditContext): Promise<void> {
    this.db.transaction(() => {
      const tenantId = this.tenantOfNetwork(networkId)
      const res = this.q('DELETE FROM network_members WHERE network_id = ? AND user_id = ?').run(
        networkId,
        userId,
      )
      if (res.changes === 0)
        throw new MeshError('NOT_FOUND', {message: 'the user has no role on this network'})
      this.audit(ctx, {tenantId, action: 'member.remove', targetType: 'user', targetId: userId, networkId})
    })()
  }

  // ---------------------------------------------------------------------------------------------
  // invites and auth keys

  async createInvite(
    inv: {
      id: string
      networkId: string
      codeHash: string
      role: Role
      maxUses: number | null
      expiresAt: string
      createdBy: string
    },
    ctx: AuditContext,
  ): Promise<Invite> {
    return this.db.transaction(() => {
      const tenantId = this.tenantOfNetwork(inv.networkId)
      this.q(
        `INSERT INTO invites (id, network_id, code_hash, role, max_uses, expires_at, created_at, created_by)
           VALUES (?,?,?,?,?,?,?,?)`,
      ).run(inv.id, inv.networkId, inv.codeHash, inv.role, inv.maxUses, inv.expiresAt, ctx.at, inv.createdBy)
      this.audit(ctx, {
        tenantId,
        action: 'invite.create',
        targetType: 'invite',
        targetId: inv.id,
        networkId: inv.networkId,
        detail: {role: inv.role, maxUses: inv.maxUses, expiresAt: inv.expiresAt},
      })
      return publicInvite(this.inviteById(inv.id) as InviteRecord)
    })()
  }

  private inviteById(id: string): InviteRecord | undefined {
    const r = this.q(
      'SELECT i.*, n.tenant_id FROM invites i JOIN networks n ON n.id = i.network_id WHERE i.id = ?',
    ).get(id) as Row | undefined
    return r && toInvite(r)
  }

  async listInvites(networkId: string, page: PageRequest): Promise<Page<Invite>> {
    const rows = this.q(
      `SELECT i.*, n.tenant_id FROM invites i JOIN networks n ON n.id = i.network_id
         WHERE i.network_id = ? AND i.seq > ? ORDER BY i.seq LIMIT ?`,
    ).all(networkId, decodeCursor(page.cursor), page.limit + 1) as Row[]
    return this.page(rows, page.limit, (r) => publicInvite(toInvite(r)))
  }

  async getInvite(id: string): Promise<InviteRecord | undefined> {
    return this.inviteById(id)
  }

  async revokeInvite(id: string, ctx: AuditContext): Promise<Invite> {
    return this.db.transaction(() => {
      const inv = this.inviteById(id)
      if (!inv) throw new MeshError('NOT_FOUND', {message: 'invite not found'})
      // Revoking twice is a no-op that keeps the first time.
      this.q('UPDATE invites SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').run(ctx.at, id)
      this.audit(ctx, {
        tenantId: inv.tenantId,
        action: 'invite.revoke',
        targetType: 'invite',
        targetId: id,
        networkId: inv.networkId,
      })
      return publicInvite(this.inviteById(id) as InviteRecord)
    })()
  }

  private authKeyById(id: string): AuthKeyRecord | undefined {
    const r = this.q(
      'SELECT k.*, n.tenant_id FROM auth_keys k JOIN networks n ON n.id = k.network_id WHERE k.id = ?',
    ).get(id) as Row | undefined
    return r && toAuthKey(r)
  }

  async createAuthKey(
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
    ctx: AuditContext,
  ): Promise<AuthKey> {
    return this.db.transaction(() => {
      const tenantId = this.tenantOfNetwork(key.networkId)
      this.q(
        `INSERT INTO auth_keys (id, network_id, key_hash, prefix, reusable, ephemeral, pre_approved, tags,
             expires_at, created_at, created_by) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
      ).run(
        key.id,
        key.networkId,
        key.keyHash,
        key.prefix,
        key.reusable ? 1 : 0,
        key.ephemeral ? 1 : 0,
        key.preApproved ? 1 : 0,
        JSON.stringify(key.tags),
        key.expiresAt,
        ctx.at,
        key.createdBy,
      )
      this.audit(ctx, {
        tenantId,
        action: 'authkey.create',
        targetType: 'authkey',
        targetId: key.id,
        networkId: key.networkId,
        detail: {
          reusable: key.reusable,
          ephemeral: key.ephemeral,
          preApproved: key.preApproved,
          tags: key.tags,
          expiresAt: key.expiresAt,
        },
      })
      return publicAuthKey(this.authKeyById(key.id) as AuthKeyRecord)
    })()
  }

  async listAuthKeys(networkId: string, page: PageRequest): Promise<Page<AuthKey>> {
    const rows = this.q(
      `SELECT k.*, n.tenant_id FROM auth_keys k JOIN networks n ON n.id = k.network_id
         WHERE k.network_id = ? AND k.seq > ? ORDER BY k.seq LIMIT ?`,
    ).all(networkId, decodeCursor(page.cursor), page.limit + 1) as Row[]
    return this.page(rows, page.limit, (r) => publicAuthKey(toAuthKey(r)))
  }

  async getAuthKey(id: string): Promise<AuthKeyRecord | undefined> {
    return this.authKeyById(id)
  }

  async revokeAuthKey(id: string, ctx: AuditContext): Promise<AuthKey> {
    return this.db.transaction(() => {
      const key = this.authKeyById(id)
      if (!key) throw new MeshError('NOT_FOUND', {message: 'auth key not found'})
      this.q('UPDATE auth_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').run(ctx.at, id)
      this.audit(ctx, {
        tenantId: key.tenantId,
        action: 'authkey.revoke',
        targetType: 'authkey',
        targetId: id,
        networkId: key.networkId,
      })
      return publicAuthKey(this.authKeyById(id) as AuthKeyRecord)
    })()
  }

  // ---------------------------------------------------------------------------------------------
  // nodes

  async registerNode(proof: JoinProof, node: NewNode, ctx: AuditContext): Promise<NodeChange> {
    return this.db.transaction(() => {
      const now = ctx.at
      let networkId: string
      let preApproved = false
      let ephemeral = false
      let tags: string[] = []
      let via: Record<string, unknown>
      // 1. The proof: decided here so two registrations cannot both use a single-use secret.
      if (proof.kind === 'invite') {
        const r = this.q(
          'SELECT i.*, n.tenant_id FROM invites i JOIN networks n ON n.id = i.network_id WHERE code_hash = ?',
        ).get(proof.codeHash) as Row | undefined
        if (!r) throw new MeshError('INVITE_INVALID')
        const inv = toInvite(r)
        if (inv.revokedAt !== null) throw new MeshError('INVITE_REVOKED')
        if (inv.expiresAt <= now) throw new MeshError('INVITE_EXPIRED')
        if (inv.maxUses !== null && inv.uses >= inv.maxUses) throw new MeshError('INVITE_USED_UP')
        this.q('UPDATE invites SET uses = uses + 1 WHERE id = ?').run(inv.id)
        networkId = inv.networkId
        via = {invite: inv.id}
      } else if (proof.kind === 'authkey') {
        const r = this.q(
          'SELECT k.*, n.tenant_id FROM auth_keys k JOIN networks n ON n.id = k.network_id WHERE key_hash = ?',
        ).get(proof.keyHash) as Row | undefined
        if (!r) throw new MeshError('AUTHKEY_INVALID')
        const key = toAuthKey(r)
        if (key.revokedAt !== null) throw new MeshError('AUTHKEY_REVOKED')
        if (key.expiresAt <= now) throw new MeshError('AUTHKEY_EXPIRED')
        if (!key.reusable && key.uses >= 1) throw new MeshError('AUTHKEY_USED')
        this.q('UPDATE auth_keys SET uses = uses + 1 WHERE id = ?').run(key.id)
        networkId = key.networkId
        ephemeral = key.ephemeral
        tags = key.tags
        preApproved = key.preApproved
        via = {authKey: key.id, preApproved: key.preApproved}
      } else {
        networkId = proof.networkId
        via = {open: true}
      }
      const net = this.q('SELECT * FROM networks WHERE id = ?').get(networkId) as Row | undefined
      if (!net) throw new MeshError('NOT_FOUND', {message: 'network not found'})
      // Under the approval policy a node waits for POST /nodes/:id/approve unless its auth key
      // was made pre-approved.
      const status: NodeStatus = net.join_policy === 'approval' && !preApproved ? 'pending' : 'active'
      // 2. Limits and uniqueness.
      // Kept by triggers (migration 0002): counting rows would cost O(nodes) per registration.
      const count = Number(net.node_count)
      if (net.max_nodes !== null && count >= Number(net.max_nodes)) {
        throw new MeshError('NETWORK_MAX_NODES', {
          message: `the network is limited to ${String(net.max_nodes)} nodes`,
        })
      }
      if (
        this.q('SELECT 1 FROM nodes WHERE network_id = ? AND public_key = ?').get(networkId, node.publicKey)
      ) {
        throw new MeshError('PUBLIC_KEY_TAKEN')
      }
      const name = this.freeName(networkId, node.name)
      // 3. The address: cursor-based, see ipam.ts.
      const cidr = parseCidr(str(net.cidr))
      if (!cidr) throw new Error(`stored CIDR ${str(net.cidr)} does not parse`)
      const takenStmt = this.q('SELECT 1 FROM nodes WHERE network_id = ? AND address = ?')
      const address = allocateAddress({
        cidr,
        cursor: net.ipam_cursor === null ? null : Number(net.ipam_cursor),
        used: count,
        taken: (a) => takenStmt.get(networkId, a) !== undefined,
      })
      this.q('UPDATE networks SET ipam_cursor = ? WHERE id = ?').run(address, networkId)
      this.q(
        `INSERT INTO nodes (id, network_id, name, hostname, os, public_key, address, credential_hash, status,
             endpoints, tags, ephemeral, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
      ).run(
        node.id,
        networkId,
        name,
        node.hostname,
        node.os,
        node.publicKey,
        address,
        node.credentialHash,
        status,
        JSON.stringify(node.endpoints),
        JSON.stringify(tags),
        ephemeral ? 1 : 0,
        now,
      )
      const version = this.bump(networkId, node.id)
      const stored = toNode(this.nodeRow(node.id) as Row)
      this.audit(ctx, {
        tenantId: str(net.tenant_id),
        action: 'node.register',
        targetType: 'node',
        targetId: node.id,
        networkId,
        detail: {name, address: stored.address, publicKey: node.publicKey, status: stored.status, ...via},
      })
      return {
        networkId,
        tenantId: str(net.tenant_id),
        version,
        nodeId: node.id,
        kind: 'added' as const,
        node: stored,
        before: null,
      }
    })()
  }

  /** `want`, or `want-N` with the smallest free N >= 2, kept within 63 characters. */
  private freeName(networkId: string, want: string): string {
    const taken = this.q('SELECT 1 FROM nodes WHERE network_id = ? AND name = ?')
    if (!taken.get(networkId, want)) return want
    // Bounded: a network has at most ~16M nodes; names are probed in order.
    for (let n = 2; n < 20_000_000; n++) {
      const suffix = `-${n}`
      const candidate = want.slice(0, 63 - suffix.length).replace(/-+$/, '') + suffix
      if (!taken.get(networkId, candidate)) return candidate
    }
    throw new MeshError('NODE_NAME_TAKEN')
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    const r = this.nodeRow(id)
    return r && toNode(r)
  }

  async getNodeByCredential(credentialHash: string): Promise<StoredNode | undefined> {
    const r = this.q('SELECT * FROM nodes WHERE credential_hash = ?').get(credentialHash) as Row | undefined
    return r && toNode(r)
  }

  async listNodes(
    networkId: string,
    filter: {status?: NodeStatus | undefined},
    page: PageRequest,
  ): Promise<Page<StoredNode>> {
    const rows = this.q(
      `SELECT * FROM nodes WHERE network_id = ? AND (? IS NULL OR status = ?) AND seq > ? ORDER BY seq LIMIT ?`,
    ).all(
      networkId,
      filter.status ?? null,
      filter.status ?? null,
      decodeCursor(page.cursor),
      page.limit + 1,
    ) as Row[]
    return this.page(rows, page.limit, toNode)
  }

  async allNodes(networkId: string): Promise<StoredNode[]> {
    return (this.q('SELECT * FROM nodes WHERE network_id = ? ORDER BY seq').all(networkId) as Row[]).map(
      toNode,
    )
  }

  async tenantNodes(tenantId: string): Promise<StoredNode[]> {
    return (
      this.q(
        'SELECT nd.* FROM nodes nd JOIN networks n ON n.id = nd.network_id WHERE n.tenant_id = ? ORDER BY nd.seq',
      ).all(tenantId) as Row[]
    ).map(toNode)
  }

  async ephemeralNodes(): Promise<StoredNode[]> {
    return (this.q('SELECT * FROM nodes WHERE ephemeral = 1').all() as Row[]).map(toNode)
  }

  /** Applies `change` to one node in a transaction with a version bump and an audit entry. */
  /** One node change in a transaction: version bump, audit entry (unless `action` is null). */
  private mutateNode(
    id: string,
    ctx: AuditContext | {at: string},
    action: string | null,
    change: (before: StoredNode) => Record<string, unknown> | undefined,
  ): NodeChange | undefined {
    return this.db.transaction(() => {
      const row = this.nodeRow(id)
      if (!row) throw new MeshError('NOT_FOUND', {message: 'node not found'})
      const before = toNode(row)
      const detail = change(before)
      if (detail === undefined) return undefined
      const version = this.bump(before.networkId, id)
      const tenantId = this.tenantOfNetwork(before.networkId)
      if (action !== null)
        this.audit(ctx as AuditContext, {
          tenantId,
          action,
          targetType: 'node',
          targetId: id,
          networkId: before.networkId,
          detail,
        })
      const after = this.nodeRow(id)
      return {
        networkId: before.networkId,
        tenantId,
        version,
        nodeId: id,
        kind: after ? 'changed' : 'removed',
        node: after ? toNode(after) : null,
        before,
      } satisfies NodeChange
    })()
  }

  async approveNode(id: string, ctx: AuditContext): Promise<NodeChange> {
    return this.mutateNode(id, ctx, 'node.approve', (before) => {
      if (before.status !== 'pending') throw new MeshError('NODE_NOT_PENDING')
      this.q("UPDATE nodes SET status = 'active' WHERE id = ?").run(id)
      return {name: before.name}
    }) as NodeChange
  }

  async renameNode(id: string, name: string, ctx: AuditContext): Promise<NodeChange> {
    return this.mutateNode(id, ctx, 'node.rename', (before) => {
      if (name !== before.name) {
        if (this.q('SELECT 1 FROM nodes WHERE network_id = ? AND name = ?').get(before.networkId, name)) {
          throw new MeshError('NODE_NAME_TAKEN', {
            message: `a node named ${name} already exists in the network`,
          })
        }
      }
      this.q('UPDATE nodes SET name = ? WHERE id = ?').run(name, id)
      return {name, previousName: before.name}
    }) as NodeChange
  }

  async removeNode(
    id: string,
    ctx: AuditContext,
    action: 'node.remove' | 'node.leave' = 'node.remove',
  ): Promise<NodeChange> {
    return this.mutateNode(id, ctx, action, (before) => {
      this.q('DELETE FROM nodes WHERE id = ?').run(id)
      return {name: before.name, address: before.address, publicKey: before.publicKey}
    }) as NodeChange
  }

  async setNodeEndpoints(
    id: string,
    endpoints: readonly string[],
    at: string,
  ): Promise<NodeChange | undefined> {
    // Telemetry, not an administrative change: no audit entry (see ControllerState.reportEndpoints).
    return this.mutateNode(id, {at}, null, (before) => {
      if (JSON.stringify(before.endpoints) === JSON.stringify(endpoints)) return undefined
      this.q('UPDATE nodes SET endpoints = ?, last_seen = ? WHERE id = ?').run(
        JSON.stringify(endpoints),
        at,
        id,
      )
      return {endpoints}
    })
  }

  async setNodeObservedEndpoint(
    id: string,
    endpoint: string | null,
    at: string,
  ): Promise<NodeChange | undefined> {
    // Telemetry like setNodeEndpoints: no audit entry. The reported endpoints are not touched.
    return this.mutateNode(id, {at}, null, (before) => {
      if ((before.observedEndpoint ?? null) === endpoint) return undefined
      this.q('UPDATE nodes SET observed_endpoint = ? WHERE id = ?').run(endpoint, id)
      return {observedEndpoint: endpoint}
    })
  }

  async activeNodeKeys(): Promise<{id: string; publicKey: string}[]> {
    const rows = this.q("SELECT id, public_key FROM nodes WHERE status = 'active'").all() as Row[]
    return rows.map((r) => ({id: str(r.id), publicKey: str(r.public_key)}))
  }

  async touchNode(id: string, at: string): Promise<void> {
    this.q('UPDATE nodes SET last_seen = ? WHERE id = ?').run(at, id)
  }

  // ---------------------------------------------------------------------------------------------
  // netmap versions

  async netmapVersion(networkId: string): Promise<number> {
    const r = this.q('SELECT netmap_version FROM networks WHERE id = ?').get(networkId) as Row | undefined
    return r ? Number(r.netmap_version) : 0
  }

  async changesSince(
    networkId: string,
    version: number,
  ): Promise<{version: number; nodeIds: string[]} | undefined> {
    return this.db.transaction(() => {
      const current = Number(
        (this.q('SELECT netmap_version FROM networks WHERE id = ?').get(networkId) as Row | undefined)
          ?.netmap_version ?? 0,
      )
      if (version > current) return undefined
      if (version === current) return {version: current, nodeIds: []}
      const oldest = this.q('SELECT min(version) AS v FROM netmap_changes WHERE network_id = ?').get(
        networkId,
      ) as Row
      if (oldest.v === null || Number(oldest.v) > version + 1) return undefined
      const rows = this.q(
        'SELECT DISTINCT node_id FROM netmap_changes WHERE network_id = ? AND version > ?',
      ).all(networkId, version) as Row[]
      return {version: current, nodeIds: rows.map((r) => str(r.node_id))}
    })()
  }

  // ---------------------------------------------------------------------------------------------
  // connections

  async writeConnections(
    networkId: string,
    writes: readonly ConnectionWrite[],
    at: string,
  ): Promise<ConnectionLogEntry[]> {
    if (writes.length === 0) return []
    return this.db.transaction(() => {
      const logged: ConnectionLogEntry[] = []
      const inNetwork = this.q('SELECT id, name FROM nodes WHERE id = ? AND network_id = ?')
      for (const w of writes) {
        const a = inNetwork.get(w.nodeA, networkId) as Row | undefined
        const b = inNetwork.get(w.nodeB, networkId) as Row | undefined
        if (!a || !b || !(w.nodeA < w.nodeB)) continue
        if (w.path === 'none') {
          this.q('DELETE FROM connections WHERE network_id = ? AND node_a = ? AND node_b = ?').run(
            networkId,
            w.nodeA,
            w.nodeB,
          )
        } else {
          // `since` moves only with a path change (an event); a latency or endpoint update keeps it.
          this.q(
            `INSERT INTO connections (network_id, node_a, node_b, path, latency_ms, endpoint_a, endpoint_b,
                 since, updated_at) VALUES (?,?,?,?,?,?,?,?,?)
               ON CONFLICT (network_id, node_a, node_b) DO UPDATE SET path = excluded.path,
                 latency_ms = excluded.latency_ms, endpoint_a = excluded.endpoint_a,
                 endpoint_b = excluded.endpoint_b, updated_at = excluded.updated_at,
                 since = CASE WHEN ? THEN excluded.since ELSE connections.since END`,
          ).run(
            networkId,
            w.nodeA,
            w.nodeB,
            w.path,
            w.latencyMs,
            w.endpointA,
            w.endpointB,
            at,
            at,
            w.event ? 1 : 0,
          )
        }
        if (!w.event) continue
        const row = this.q(
          `INSERT INTO connection_log (network_id, node_a, node_b, event, from_path, to_path, latency_ms, at)
             VALUES (?,?,?,?,?,?,?,?) RETURNING seq`,
        ).get(networkId, w.nodeA, w.nodeB, w.event.event, w.event.from, w.path, w.latencyMs, at) as Row
        logged.push({
          id: Number(row.seq),
          at,
          a: {id: w.nodeA, name: str(a.name)},
          b: {id: w.nodeB, name: str(b.name)},
          event: w.event.event,
          from: w.event.from,
          to: w.path,
          latencyMs: w.latencyMs,
        })
      }
      if (logged.length > 0) {
        // Retention: the newest CONNECTION_LOG_KEEP entries of the network (by count, not age, so
        // a flapping pair cannot fill the disk however fast it flaps).
        const cut = this.q(
          'SELECT seq FROM connection_log WHERE network_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?',
        ).get(networkId, CONNECTION_LOG_KEEP) as Row | undefined
        if (cut)
          this.q('DELETE FROM connection_log WHERE network_id = ? AND seq <= ?').run(networkId, cut.seq)
      }
      return logged
    })()
  }

  async allConnections(networkId: string): Promise<StoredConnection[]> {
    const rows = this.q('SELECT * FROM connections WHERE network_id = ?').all(networkId) as Row[]
    return rows.map(toStoredConnection)
  }

  async listConnections(
    networkId: string,
    filter: {nodeId?: string | undefined},
    page: PageRequest,
  ): Promise<Page<Connection>> {
    const node = filter.nodeId ?? null
    const rows = this.q(
      `SELECT c.*, na.name AS name_a, nb.name AS name_b FROM connections c
         JOIN nodes na ON na.id = c.node_a AND na.status = 'active'
         JOIN nodes nb ON nb.id = c.node_b AND nb.status = 'active'
         WHERE c.network_id = ? AND c.seq > ? AND (? IS NULL OR c.node_a = ? OR c.node_b = ?)
         ORDER BY c.seq LIMIT ?`,
    ).all(networkId, decodeCursor(page.cursor), node, node, node, page.limit + 1) as Row[]
    return this.page(rows, page.limit, (r) => {
      const c = toStoredConnection(r)
      return {
        a: {id: c.nodeA, name: str(r.name_a)},
        b: {id: c.nodeB, name: str(r.name_b)},
        path: c.path,
        latencyMs: c.latencyMs,
        endpoints: {a: c.endpointA, b: c.endpointB},
        since: c.since,
        updatedAt: c.updatedAt,
      }
    })
  }

  async connectionLog(
    networkId: string,
    filter: {nodeId?: string | undefined},
    page: PageRequest,
  ): Promise<Page<ConnectionLogEntry>> {
    const before = decodeCursor(page.cursor) || Number.MAX_SAFE_INTEGER
    const node = filter.nodeId ?? null
    const rows = this.q(
      `SELECT l.*, na.name AS name_a, nb.name AS name_b FROM connection_log l
         LEFT JOIN nodes na ON na.id = l.node_a
         LEFT JOIN nodes nb ON nb.id = l.node_b
         WHERE l.network_id = ? AND l.seq < ? AND (? IS NULL OR l.node_a = ? OR l.node_b = ?)
         ORDER BY l.seq DESC LIMIT ?`,
    ).all(networkId, before, node, node, node, page.limit + 1) as Row[]
    return this.page(rows, page.limit, (r) => ({
      id: Number(r.seq),
      at: str(r.at),
      a: {id: str(r.node_a), name: strOrNull(r.name_a)},
      b: {id: str(r.node_b), name: strOrNull(r.name_b)},
      event: r.event as ConnectionEvent,
      from: r.from_path as Path,
      to: r.to_path as Path,
      latencyMs: numOrNull(r.latency_ms),
    }))
  }

  // ---------------------------------------------------------------------------------------------
  // audit

  async appendAudit(
    entry: {
      tenantId: string | null
      action: string
      targetType: string
      targetId: string | null
      networkId: string | null
      detail: Record<string, unknown>
    },
    ctx: AuditContext,
  ): Promise<void> {
    this.audit(ctx, entry)
  }

  async listAudit(filter: AuditFilter, page: PageRequest): Promise<Page<AuditEntry>> {
    // Newest first: the cursor is the last id seen; 0 means "from the newest".
    const before = decodeCursor(page.cursor) || Number.MAX_SAFE_INTEGER
    const actor = filter.actor ?? null
    const rows = this.q(
      `SELECT *, id AS seq FROM audit WHERE tenant_id = ? AND id < ?
           AND (? IS NULL OR at >= ?)
           AND (? IS NULL OR actor = ? OR actor_name = ?)
           AND (? IS NULL OR network_id = ?)
         ORDER BY id DESC LIMIT ?`,
    ).all(
      filter.tenantId,
      before,
      filter.since ?? null,
      filter.since ?? null,
      actor,
      actor,
      actor,
      filter.networkId ?? null,
      filter.networkId ?? null,
      page.limit + 1,
    ) as Row[]
    return this.page(rows, page.limit, toAudit)
  }
}
