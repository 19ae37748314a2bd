/**
 * The Store on better-sqlite3: SQL only; the rules are controller/domain/'s.
 *
 * Two connections to one WAL database: the writer runs write(fn) transactions one at a time
 * (BEGIN IMMEDIATE ... COMMIT, queued, so an await inside fn never lets another write or a read
 * into the open transaction), and the reader serves every read outside them and so sees only
 * committed data. SQLite allows one writer at a time, which makes every write transaction
 * exclusive: lockTenant/lockNetwork only read here.
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type {
  AuditEntry,
  AuthKey,
  Connection,
  ConnectionEvent,
  ConnectionLogEntry,
  Invite,
  UserInvite,
  Network,
  NetworkMember,
  NodeStatus,
  Path,
  RelayKey,
  Role,
  Tenant,
  User,
} from '../../../shared/protocol/control-api.js'
import {MeshError, isMeshError} from '../../../shared/errors.js'
import type {
  AuditLink,
  AuditFilter,
  AuditRow,
  AuthKeyRecord,
  ConnectionWrite,
  InviteRecord,
  PolicyRecord,
  NetworkRecord,
  NewNetwork,
  NodeChange,
  NodePatch,
  Page,
  PageRequest,
  Store,
  StoredAuditRow,
  StoredConnection,
  StoredPair,
  StoredSide,
  StoredNode,
  Tx,
  UserRecord,
  IdentityRecord,
  MfaRecord,
  OidcFlowRecord,
  RefreshTokenRecord,
  SessionRecord,
  NewInvite,
  NewUserInvite,
  NewAuthKey,
  NewNodeRow,
  NewRelayKey,
  RelayBeat,
  RelayKeyRecord,
  RelayRecord,
} from '../store.js'
import {publicAuthKey, publicInvite, publicNetwork, publicRelayKey, publicUser} from '../store.js'
import {storageError, uniqueViolation} from '../errors.js'
import {decodeCursor, page} from '../paging.js'
import {
  numOrNull,
  str,
  strOrNull,
  AUDIT_INSERT_COLUMNS,
  auditOrder,
  auditRowValues,
  toAudit,
  toPolicy,
  toStoredAuditRow,
  toAuthKey,
  toInvite,
  toUserInvite,
  toNetwork,
  toNode,
  toRelay,
  toRelayKey,
  toStoredConnection,
  toStoredPair,
  toTenant,
  toUser,
  toIdentity,
  groupsByUser,
  toMfa,
  toOidcFlow,
  toRefreshToken,
  toSession,
  type Row,
} from '../rows.js'
import {openSqlite} from './open.js'
import {sqliteUniqueViolation} from './errors.js'
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

/** A statement cache over one connection: preparing costs far more than running these queries. */
class Statements {
  private readonly cache = new Map<string, Database.Statement>()

  constructor(readonly db: Database.Database) {}

  q(sql: string): Database.Statement {
    let st = this.cache.get(sql)
    if (!st) this.cache.set(sql, (st = this.db.prepare(sql)))
    return st
  }
}

const INVITE_SQL = 'SELECT i.*, n.tenant_id FROM invites i JOIN networks n ON n.id = i.network_id'
const AUTHKEY_SQL = 'SELECT k.*, n.tenant_id FROM auth_keys k JOIN networks n ON n.id = k.network_id'
const SESSION_SQL = 'SELECT s.*, u.tenant_id FROM sessions s JOIN users u ON u.id = s.user_id'

/** A side's five columns (path, latency_ms, endpoint, replica, at), all NULL for none. */
const sideValues = (x: StoredSide | null): (string | number | null)[] => [
  x?.path ?? null,
  x?.latencyMs ?? null,
  x?.endpoint ?? null,
  x?.replica ?? null,
  x?.at ?? null,
]

/** The writer connection's row operations; only ever used inside write(). */
class SqliteTx implements Tx {
  constructor(private readonly s: Statements) {}

  private q(sql: string): Database.Statement {
    return this.s.q(sql)
  }

  async lockTenant(id: string): Promise<Tenant | undefined> {
    const r = this.q('SELECT * FROM tenants WHERE id = ?').get(id) as Row | undefined
    return r && toTenant(r)
  }

  async lockNetwork(id: string): Promise<NetworkRecord | undefined> {
    return this.getNetwork(id)
  }

  async insertTenant(t: {id: string; name: string; at: string}): Promise<Tenant> {
    this.q('INSERT INTO tenants (id, name, created_at) VALUES (?,?,?)').run(t.id, t.name, t.at)
    return {id: t.id, name: t.name, createdAt: t.at}
  }

  async tenantKeyDays(tenantId: string): Promise<number> {
    const r = this.q('SELECT node_key_days FROM tenants WHERE id = ?').get(tenantId) as Row | undefined
    return r ? Number(r.node_key_days) : 0
  }

  async setTenantKeyDays(tenantId: string, days: number): Promise<void> {
    this.q('UPDATE tenants SET node_key_days = ? WHERE id = ?').run(days, tenantId)
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const r = this.q('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined
    return r && toUser(r)
  }

  async usernameTaken(username: string): Promise<boolean> {
    return this.q('SELECT 1 FROM users WHERE username = ?').get(username) !== undefined
  }

  async insertUser(u: {
    id: string
    tenantId: string
    username: string
    passwordHash: string
    role: Role
    superuser: boolean
    at: string
  }): Promise<UserRecord> {
    this.q(
      `INSERT INTO users (id, tenant_id, username, password_hash, role, superuser, created_at)
         VALUES (?,?,?,?,?,?,?)`,
    ).run(u.id, u.tenantId, u.username, u.passwordHash, u.role, u.superuser ? 1 : 0, u.at)
    return (await this.getUser(u.id)) as UserRecord
  }

  async setUserRole(id: string, role: Role): Promise<void> {
    this.q('UPDATE users SET role = ? WHERE id = ?').run(role, id)
  }

  async setUsername(id: string, username: string): Promise<void> {
    this.q('UPDATE users SET username = ? WHERE id = ?').run(username, id)
  }

  async deleteUser(id: string): Promise<void> {
    this.q('DELETE FROM users WHERE id = ?').run(id)
  }

  async insertToken(t: {
    id: string
    hash: string
    userId: string
    at: string
    expiresAt: string
    sessionId?: string | undefined
  }): Promise<void> {
    this.q(
      'INSERT INTO tokens (id, token_hash, user_id, created_at, expires_at, session_id) VALUES (?,?,?,?,?,?)',
    ).run(t.id, t.hash, t.userId, t.at, t.expiresAt, t.sessionId ?? null)
  }

  async deleteExpiredTokens(at: string): Promise<void> {
    this.q('DELETE FROM tokens WHERE session_id IS NULL AND expires_at < ?').run(at)
    this.q('DELETE FROM sessions WHERE expires_at < ?').run(at)
  }

  async getToken(
    hash: string,
  ): Promise<{id: string; userId: string; tenantId: string; sessionId: string | null} | undefined> {
    const r = this.q(
      'SELECT t.id, t.user_id, t.session_id, u.tenant_id FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?',
    ).get(hash) as Row | undefined
    return (
      r && {
        id: str(r.id),
        userId: str(r.user_id),
        tenantId: str(r.tenant_id),
        sessionId: strOrNull(r.session_id),
      }
    )
  }

  async deleteToken(hash: string): Promise<void> {
    this.q('DELETE FROM tokens WHERE token_hash = ?').run(hash)
  }

  async insertSession(x: {
    id: string
    userId: string
    at: string
    expiresAt: string
    sourceAddress: string | null
  }): Promise<void> {
    this.q(
      'INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, source_address) VALUES (?,?,?,?,?,?)',
    ).run(x.id, x.userId, x.at, x.at, x.expiresAt, x.sourceAddress)
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    const r = this.q(`${SESSION_SQL} WHERE s.id = ?`).get(id) as Row | undefined
    return r && toSession(r)
  }

  async touchSession(id: string, at: string, expiresAt: string, sourceAddress: string | null): Promise<void> {
    this.q('UPDATE sessions SET last_used_at = ?, expires_at = ?, source_address = ? WHERE id = ?').run(
      at,
      expiresAt,
      sourceAddress,
      id,
    )
  }

  async revokeSession(id: string, at: string, reason: 'logout' | 'revoked' | 'reuse'): Promise<boolean> {
    this.q('DELETE FROM tokens WHERE session_id = ?').run(id)
    this.q('UPDATE refresh_tokens SET retired_at = ? WHERE session_id = ? AND retired_at IS NULL').run(at, id)
    const res = this.q(
      'UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL',
    ).run(at, reason, id)
    return res.changes > 0
  }

  async deleteExpiredSessionTokens(sessionId: string, at: string): Promise<void> {
    this.q('DELETE FROM tokens WHERE session_id = ? AND expires_at < ?').run(sessionId, at)
  }

  async insertRefreshToken(t: {
    hash: string
    sessionId: string
    at: string
    expiresAt: string
  }): Promise<void> {
    this.q(
      'INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?,?,?,?)',
    ).run(t.hash, t.sessionId, t.at, t.expiresAt)
  }

  async getRefreshToken(hash: string): Promise<RefreshTokenRecord | undefined> {
    const r = this.q('SELECT * FROM refresh_tokens WHERE token_hash = ?').get(hash) as Row | undefined
    return r && toRefreshToken(r)
  }

  async retireRefreshToken(hash: string, at: string, by: string | null): Promise<boolean> {
    const res = this.q(
      'UPDATE refresh_tokens SET retired_at = ?, retired_by = ? WHERE token_hash = ? AND retired_at IS NULL',
    ).run(at, by, hash)
    return res.changes > 0
  }

  async getMfa(userId: string): Promise<MfaRecord | undefined> {
    const r = this.q('SELECT * FROM user_mfa WHERE user_id = ?').get(userId) as Row | undefined
    return r && toMfa(r)
  }

  async putPendingMfa(userId: string, secret: string, at: string): Promise<void> {
    this.q(
      `INSERT INTO user_mfa (user_id, secret, created_at, enabled_at, last_step) VALUES (?,?,?,NULL,NULL)
         ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at,
           enabled_at = NULL, last_step = NULL`,
    ).run(userId, secret, at)
  }

  async enableMfa(userId: string, at: string): Promise<void> {
    this.q('UPDATE user_mfa SET enabled_at = ? WHERE user_id = ?').run(at, userId)
  }

  async deleteMfa(userId: string): Promise<void> {
    this.q('DELETE FROM mfa_recovery_codes WHERE user_id = ?').run(userId)
    this.q('DELETE FROM user_mfa WHERE user_id = ?').run(userId)
  }

  async listMfa(): Promise<MfaRecord[]> {
    return (this.q('SELECT * FROM user_mfa ORDER BY user_id').all() as Row[]).map(toMfa)
  }

  async replaceMfaSecret(userId: string, from: string, to: string): Promise<boolean> {
    return (
      this.q('UPDATE user_mfa SET secret = ? WHERE user_id = ? AND secret = ?').run(to, userId, from)
        .changes > 0
    )
  }

  async useTotpStep(userId: string, step: number): Promise<boolean> {
    const res = this.q(
      'UPDATE user_mfa SET last_step = ? WHERE user_id = ? AND (last_step IS NULL OR last_step < ?)',
    ).run(step, userId, step)
    return res.changes > 0
  }

  async putRecoveryCodes(userId: string, hashes: readonly string[], at: string): Promise<void> {
    this.q('DELETE FROM mfa_recovery_codes WHERE user_id = ?').run(userId)
    const insert = this.q('INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) VALUES (?,?,?)')
    for (const h of hashes) insert.run(userId, h, at)
  }

  async useRecoveryCode(userId: string, hash: string, at: string): Promise<boolean> {
    const res = this.q(
      'UPDATE mfa_recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL',
    ).run(at, userId, hash)
    return res.changes > 0
  }

  // ---- OIDC (schema 0017)

  async getTenantByName(name: string): Promise<Tenant | undefined> {
    const r = this.q('SELECT * FROM tenants WHERE name = ?').get(name) as Row | undefined
    return r && toTenant(r)
  }

  async getIdentity(issuer: string, subject: string): Promise<IdentityRecord | undefined> {
    const r = this.q('SELECT * FROM user_identities WHERE issuer = ? AND subject = ?').get(
      issuer,
      subject,
    ) as Row | undefined
    return r && toIdentity(r)
  }

  async insertIdentity(i: IdentityRecord): Promise<void> {
    this.q(
      `INSERT INTO user_identities (issuer, subject, user_id, provider, email, groups, created_at, last_login_at)
         VALUES (?,?,?,?,?,?,?,?)`,
    ).run(
      i.issuer,
      i.subject,
      i.userId,
      i.provider,
      i.email,
      JSON.stringify(i.groups),
      i.createdAt,
      i.lastLoginAt,
    )
  }

  async updateIdentityLogin(
    issuer: string,
    subject: string,
    f: {email: string | null; groups: readonly string[]; at: string},
  ): Promise<void> {
    this.q(
      'UPDATE user_identities SET email = ?, groups = ?, last_login_at = ? WHERE issuer = ? AND subject = ?',
    ).run(f.email, JSON.stringify(f.groups), f.at, issuer, subject)
  }

  async insertOidcFlow(f: OidcFlowRecord): Promise<void> {
    this.q(
      `INSERT INTO oidc_flows (id_hash, kind, provider, data, created_at, expires_at, next_poll_at, source)
         VALUES (?,?,?,?,?,?,?,?)`,
    ).run(
      f.idHash,
      f.kind,
      f.provider,
      JSON.stringify(f.data),
      f.createdAt,
      f.expiresAt,
      f.nextPollAt,
      f.source ?? null,
    )
  }

  async claimOidcFlowPoll(idHash: string, at: string, nextPollAt: string): Promise<boolean> {
    const r = this.q(
      'UPDATE oidc_flows SET next_poll_at = ? WHERE id_hash = ? AND (next_poll_at IS NULL OR next_poll_at <= ?)',
    ).run(nextPollAt, idHash, at)
    return r.changes === 1
  }

  async countOidcFlowsFrom(source: string, at: string): Promise<number> {
    const r = this.q('SELECT count(*) AS n FROM oidc_flows WHERE source = ? AND expires_at > ?').get(
      source,
      at,
    ) as Row
    return Number(r.n)
  }

  async getOidcFlow(idHash: string): Promise<OidcFlowRecord | undefined> {
    const r = this.q('SELECT * FROM oidc_flows WHERE id_hash = ?').get(idHash) as Row | undefined
    return r && toOidcFlow(r)
  }

  async deleteOidcFlow(idHash: string): Promise<boolean> {
    return this.q('DELETE FROM oidc_flows WHERE id_hash = ?').run(idHash).changes > 0
  }

  async setOidcFlowPoll(
    idHash: string,
    nextPollAt: string,
    data: Readonly<Record<string, unknown>>,
  ): Promise<void> {
    this.q('UPDATE oidc_flows SET next_poll_at = ?, data = ? WHERE id_hash = ?').run(
      nextPollAt,
      JSON.stringify(data),
      idHash,
    )
  }

  async deleteExpiredOidcFlows(at: string): Promise<void> {
    this.q('DELETE FROM oidc_flows WHERE expires_at < ?').run(at)
  }

  async getNetwork(id: string): Promise<NetworkRecord | undefined> {
    const r = this.q('SELECT * FROM networks WHERE id = ?').get(id) as Row | undefined
    return r && toNetwork(r)
  }

  async networkNameTaken(tenantId: string, name: string): Promise<boolean> {
    return this.q('SELECT 1 FROM networks WHERE tenant_id = ? AND name = ?').get(tenantId, name) !== undefined
  }

  async networkCidrs(tenantId: string): Promise<{name: string; cidr: string}[]> {
    const rows = this.q('SELECT name, cidr FROM networks WHERE tenant_id = ?').all(tenantId) as Row[]
    return rows.map((r) => ({name: str(r.name), cidr: str(r.cidr)}))
  }

  async insertNetwork(net: NewNetwork, at: string): Promise<void> {
    this.q(
      `INSERT INTO networks (id, tenant_id, name, cidr, description, join_policy, max_nodes, created_at)
         VALUES (?,?,?,?,?,?,?,?)`,
    ).run(net.id, net.tenantId, net.name, net.cidr, net.description, net.joinPolicy, net.maxNodes, at)
  }

  async updateNetwork(
    id: string,
    f: {name: string; description: string; joinPolicy: string; maxNodes: number | null},
  ): Promise<void> {
    this.q('UPDATE networks SET name = ?, description = ?, join_policy = ?, max_nodes = ? WHERE id = ?').run(
      f.name,
      f.description,
      f.joinPolicy,
      f.maxNodes,
      id,
    )
  }

  async deleteNetwork(id: string): Promise<void> {
    this.q('DELETE FROM networks WHERE id = ?').run(id)
  }

  async upsertMember(networkId: string, userId: string, role: Role): Promise<void> {
    this.q(
      `INSERT INTO network_members (network_id, user_id, role) VALUES (?,?,?)
         ON CONFLICT (network_id, user_id) DO UPDATE SET role = excluded.role`,
    ).run(networkId, userId, role)
  }

  async deleteMember(networkId: string, userId: string): Promise<boolean> {
    return (
      this.q('DELETE FROM network_members WHERE network_id = ? AND user_id = ?').run(networkId, userId)
        .changes > 0
    )
  }

  async setIpamCursor(networkId: string, address: number): Promise<void> {
    this.q('UPDATE networks SET ipam_cursor = ? WHERE id = ?').run(address, networkId)
  }

  async bumpNetmap(networkId: string, nodeId: string, kind: NodeChange['kind']): Promise<number> {
    const row = this.q(
      'UPDATE networks SET netmap_version = netmap_version + 1 WHERE id = ? RETURNING netmap_version',
    ).get(networkId) as Row | undefined
    if (!row) throw new MeshError('NOT_FOUND', {message: 'network not found'})
    const version = Number(row.netmap_version)
    this.q('INSERT INTO netmap_changes (network_id, version, node_id, kind) VALUES (?,?,?,?)').run(
      networkId,
      version,
      nodeId,
      kind,
    )
    return version
  }

  async trimChangeLog(networkId: string, version: number): Promise<void> {
    this.q('DELETE FROM netmap_changes WHERE network_id = ? AND version <= ?').run(networkId, version)
  }

  async insertInvite(inv: NewInvite & {at: string}): Promise<void> {
    this.q(
      `INSERT INTO invites (id, network_id, code_hash, role, max_uses, expires_at, created_at, created_by)
         VALUES (?,?,?,?,?,?,?,?)`,
    ).run(inv.id, inv.networkId, inv.codeHash, inv.role, inv.maxUses, inv.expiresAt, inv.at, inv.createdBy)
  }

  async getInvite(id: string): Promise<InviteRecord | undefined> {
    const r = this.q(`${INVITE_SQL} WHERE i.id = ?`).get(id) as Row | undefined
    return r && toInvite(r)
  }

  async inviteByCode(codeHash: string): Promise<InviteRecord | undefined> {
    const r = this.q(`${INVITE_SQL} WHERE i.code_hash = ?`).get(codeHash) as Row | undefined
    return r && toInvite(r)
  }

  async revokeInvite(id: string, at: string): Promise<void> {
    this.q('UPDATE invites SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').run(at, id)
  }

  async countInviteUse(id: string): Promise<void> {
    this.q('UPDATE invites SET uses = uses + 1 WHERE id = ?').run(id)
  }

  async insertAuthKey(key: NewAuthKey & {at: string}): Promise<void> {
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
      key.at,
      key.createdBy,
    )
  }

  async getAuthKey(id: string): Promise<AuthKeyRecord | undefined> {
    const r = this.q(`${AUTHKEY_SQL} WHERE k.id = ?`).get(id) as Row | undefined
    return r && toAuthKey(r)
  }

  async authKeyByHash(keyHash: string): Promise<AuthKeyRecord | undefined> {
    const r = this.q(`${AUTHKEY_SQL} WHERE k.key_hash = ?`).get(keyHash) as Row | undefined
    return r && toAuthKey(r)
  }

  async revokeAuthKey(id: string, at: string): Promise<void> {
    this.q('UPDATE auth_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').run(at, id)
  }

  async countAuthKeyUse(id: string): Promise<void> {
    this.q('UPDATE auth_keys SET uses = uses + 1 WHERE id = ?').run(id)
  }

  async insertUserInvite(inv: NewUserInvite & {at: string}): Promise<void> {
    this.q(
      `INSERT INTO user_invites (id, tenant_id, code_hash, role, max_uses, expires_at, created_at, created_by)
         VALUES (?,?,?,?,?,?,?,?)`,
    ).run(inv.id, inv.tenantId, inv.codeHash, inv.role, inv.maxUses, inv.expiresAt, inv.at, inv.createdBy)
  }

  async getUserInvite(id: string): Promise<UserInvite | undefined> {
    const r = this.q('SELECT * FROM user_invites WHERE id = ?').get(id) as Row | undefined
    return r && toUserInvite(r)
  }

  async userInviteByCode(codeHash: string): Promise<UserInvite | undefined> {
    const r = this.q('SELECT * FROM user_invites WHERE code_hash = ?').get(codeHash) as Row | undefined
    return r && toUserInvite(r)
  }

  async revokeUserInvite(id: string, at: string): Promise<void> {
    this.q('UPDATE user_invites SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').run(at, id)
  }

  async useUserInvite(id: string, at: string): Promise<boolean> {
    const res = this.q(
      `UPDATE user_invites SET uses = uses + 1
         WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)`,
    ).run(id, at)
    return res.changes === 1
  }

  async nodesOwnedBy(userId: string): Promise<StoredNode[]> {
    return (this.q('SELECT * FROM nodes WHERE owner_id = ? ORDER BY seq').all(userId) as Row[]).map(toNode)
  }

  async setNodeOwner(id: string, ownerId: string | null): Promise<void> {
    this.q('UPDATE nodes SET owner_id = ? WHERE id = ?').run(ownerId, id)
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    const r = this.q('SELECT * FROM nodes WHERE id = ?').get(id) as Row | undefined
    return r && toNode(r)
  }

  async networkNodes(networkId: string): Promise<StoredNode[]> {
    return (this.q('SELECT * FROM nodes WHERE network_id = ? ORDER BY seq').all(networkId) as Row[]).map(
      toNode,
    )
  }

  async publicKeyTaken(networkId: string, publicKey: string): Promise<boolean> {
    return (
      this.q('SELECT 1 FROM nodes WHERE network_id = ? AND public_key = ?').get(networkId, publicKey) !==
      undefined
    )
  }

  async nodeNameTaken(networkId: string, name: string): Promise<boolean> {
    return this.q('SELECT 1 FROM nodes WHERE network_id = ? AND name = ?').get(networkId, name) !== undefined
  }

  async nodeNamesWithPrefix(networkId: string, prefix: string): Promise<string[]> {
    // substr() rather than LIKE: no wildcard characters to escape, and case-sensitive.
    const rows = this.q('SELECT name FROM nodes WHERE network_id = ? AND substr(name, 1, ?) = ?').all(
      networkId,
      prefix.length,
      prefix,
    ) as Row[]
    return rows.map((r) => str(r.name))
  }

  async nodeAddressesFrom(networkId: string, from: number, limit: number): Promise<number[]> {
    const rows = this.q(
      'SELECT address FROM nodes WHERE network_id = ? AND address >= ? ORDER BY address LIMIT ?',
    ).all(networkId, from, limit) as Row[]
    return rows.map((r) => Number(r.address))
  }

  async insertNode(n: NewNodeRow): Promise<StoredNode> {
    this.q(
      `INSERT INTO nodes (id, network_id, name, hostname, os, public_key, address, credential_hash, status,
           endpoints, tags, ephemeral, owner_id, key_expires_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
    ).run(
      n.id,
      n.networkId,
      n.name,
      n.hostname,
      n.os,
      n.publicKey,
      n.address,
      n.credentialHash,
      n.status,
      JSON.stringify(n.endpoints),
      JSON.stringify(n.tags),
      n.ephemeral ? 1 : 0,
      n.ownerId,
      n.keyExpiresAt,
      n.at,
    )
    return (await this.getNode(n.id)) as StoredNode
  }

  async updateNode(id: string, patch: NodePatch): Promise<void> {
    // One statement per field set, so each stays a cached prepared statement.
    if (patch.status !== undefined) this.q('UPDATE nodes SET status = ? WHERE id = ?').run(patch.status, id)
    if (patch.name !== undefined) this.q('UPDATE nodes SET name = ? WHERE id = ?').run(patch.name, id)
    if (patch.endpoints !== undefined)
      this.q('UPDATE nodes SET endpoints = ? WHERE id = ?').run(JSON.stringify(patch.endpoints), id)
    if (patch.lastSeen !== undefined)
      this.q('UPDATE nodes SET last_seen = ? WHERE id = ?').run(patch.lastSeen, id)
    if (patch.observedEndpoint !== undefined)
      this.q('UPDATE nodes SET observed_endpoint = ? WHERE id = ?').run(patch.observedEndpoint, id)
    if (patch.nat !== undefined)
      this.q('UPDATE nodes SET nat_mapping = ?, nat_filtering = ? WHERE id = ?').run(
        patch.nat?.mapping ?? null,
        patch.nat?.filtering ?? null,
        id,
      )
    if (patch.publicKey !== undefined)
      this.q('UPDATE nodes SET public_key = ? WHERE id = ?').run(patch.publicKey, id)
    if (patch.keyExpiresAt !== undefined)
      this.q('UPDATE nodes SET key_expires_at = ? WHERE id = ?').run(patch.keyExpiresAt, id)
    if (patch.keyWarnedAt !== undefined)
      this.q('UPDATE nodes SET key_warned_at = ? WHERE id = ?').run(patch.keyWarnedAt, id)
  }

  async deleteNode(id: string): Promise<void> {
    this.q('DELETE FROM nodes WHERE id = ?').run(id)
  }

  async nodeNamesIn(networkId: string, ids: readonly string[]): Promise<Map<string, string>> {
    const st = this.q('SELECT name FROM nodes WHERE id = ? AND network_id = ?')
    const names = new Map<string, string>()
    for (const id of ids) {
      const r = st.get(id, networkId) as Row | undefined
      if (r) names.set(id, str(r.name))
    }
    return names
  }

  async upsertConnection(
    networkId: string,
    w: ConnectionWrite,
    at: string,
    moveSince: boolean,
    sides?: {a: StoredSide | null; b: StoredSide | null},
  ): Promise<void> {
    const merged = [networkId, w.nodeA, w.nodeB, w.path, w.latencyMs, w.endpointA, w.endpointB, at, at]
    if (!sides) {
      this.q(
        `INSERT INTO connections (network_id, node_a, node_b, path, latency_ms, endpoint_a, endpoint_b,
             since, updated_at) VALUES (?,?,?,?,?,?,?,?,?)
           ON CONFLICT (network_id, node_a, node_b) DO UPDATE SET path = excluded.path,
             latency_ms = excluded.latency_ms, endpoint_a = excluded.endpoint_a,
             endpoint_b = excluded.endpoint_b, updated_at = excluded.updated_at,
             since = CASE WHEN ? THEN excluded.since ELSE connections.since END`,
      ).run(...merged, moveSince ? 1 : 0)
      return
    }
    this.q(
      `INSERT INTO connections (network_id, node_a, node_b, path, latency_ms, endpoint_a, endpoint_b,
           since, updated_at, a_path, a_latency_ms, a_endpoint, a_replica, a_at,
           b_path, b_latency_ms, b_endpoint, b_replica, b_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
         ON CONFLICT (network_id, node_a, node_b) DO UPDATE SET path = excluded.path,
           latency_ms = excluded.latency_ms, endpoint_a = excluded.endpoint_a,
           endpoint_b = excluded.endpoint_b, updated_at = excluded.updated_at,
           since = CASE WHEN ? THEN excluded.since ELSE connections.since END,
           a_path = excluded.a_path, a_latency_ms = excluded.a_latency_ms, a_endpoint = excluded.a_endpoint,
           a_replica = excluded.a_replica, a_at = excluded.a_at,
           b_path = excluded.b_path, b_latency_ms = excluded.b_latency_ms, b_endpoint = excluded.b_endpoint,
           b_replica = excluded.b_replica, b_at = excluded.b_at`,
    ).run(...merged, ...sideValues(sides.a), ...sideValues(sides.b), moveSince ? 1 : 0)
  }

  async deleteConnection(networkId: string, nodeA: string, nodeB: string): Promise<void> {
    this.q('DELETE FROM connections WHERE network_id = ? AND node_a = ? AND node_b = ?').run(
      networkId,
      nodeA,
      nodeB,
    )
  }

  async appendConnectionLog(
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
  ): Promise<number> {
    const row = this.q(
      `INSERT INTO connection_log (network_id, node_a, node_b, event, from_path, to_path, latency_ms, at)
         VALUES (?,?,?,?,?,?,?,?) RETURNING seq`,
    ).get(networkId, e.nodeA, e.nodeB, e.event, e.from, e.to, e.latencyMs, e.at) as Row
    return Number(row.seq)
  }

  async trimConnectionLog(networkId: string, keep: number): Promise<void> {
    const cut = this.q(
      'SELECT seq FROM connection_log WHERE network_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?',
    ).get(networkId, keep) as Row | undefined
    if (cut) this.q('DELETE FROM connection_log WHERE network_id = ? AND seq <= ?').run(networkId, cut.seq)
  }

  async lockConnections(
    networkId: string,
    pairs: readonly {nodeA: string; nodeB: string}[],
    at: string,
  ): Promise<StoredPair[]> {
    // Write transactions run one at a time on the one writer: reading is locking enough.
    const st = this.q(
      `SELECT c.*,
         EXISTS (SELECT 1 FROM presence p WHERE p.node_id = c.node_a AND p.replica = c.a_replica
                   AND p.expires_at >= ?) AS a_held,
         EXISTS (SELECT 1 FROM presence p WHERE p.node_id = c.node_b AND p.replica = c.b_replica
                   AND p.expires_at >= ?) AS b_held
       FROM connections c WHERE c.network_id = ? AND c.node_a = ? AND c.node_b = ?`,
    )
    const out: StoredPair[] = []
    for (const p of pairs) {
      const r = st.get(at, at, networkId, p.nodeA, p.nodeB) as Row | undefined
      if (r) out.push(toStoredPair(r))
    }
    return out
  }

  async setConnectionSides(
    networkId: string,
    nodeA: string,
    nodeB: string,
    sides: {a: StoredSide | null; b: StoredSide | null},
  ): Promise<void> {
    this.q(
      `UPDATE connections SET a_path = ?, a_latency_ms = ?, a_endpoint = ?, a_replica = ?, a_at = ?,
         b_path = ?, b_latency_ms = ?, b_endpoint = ?, b_replica = ?, b_at = ?
       WHERE network_id = ? AND node_a = ? AND node_b = ?`,
    ).run(...sideValues(sides.a), ...sideValues(sides.b), networkId, nodeA, nodeB)
  }

  async insertRelayKey(key: NewRelayKey & {at: string}): Promise<void> {
    this.q(
      `INSERT INTO relay_keys (id, name, region, key_hash, prefix, created_by, created_at)
         VALUES (?,?,?,?,?,?,?)`,
    ).run(key.id, key.name, key.region, key.keyHash, key.prefix, key.createdBy, key.at)
  }

  async getRelayKey(id: string): Promise<RelayKeyRecord | undefined> {
    const r = this.q('SELECT * FROM relay_keys WHERE id = ?').get(id) as Row | undefined
    return r && toRelayKey(r)
  }

  async relayKeyByHash(keyHash: string): Promise<RelayKeyRecord | undefined> {
    const r = this.q('SELECT * FROM relay_keys WHERE key_hash = ?').get(keyHash) as Row | undefined
    return r && toRelayKey(r)
  }

  async revokeRelayKey(id: string, at: string): Promise<void> {
    this.q('UPDATE relay_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').run(at, id)
  }

  async deleteRelaysOfKey(keyId: string): Promise<number> {
    return this.q('DELETE FROM relays WHERE key_id = ?').run(keyId).changes
  }

  async upsertRelay(b: RelayBeat): Promise<boolean> {
    const existed = this.q('SELECT 1 FROM relays WHERE url = ?').get(b.url) !== undefined
    this.q(
      `INSERT INTO relays (url, kind, region, key_id, connected, first_seen, last_seen, expires_at)
         VALUES (?,?,?,?,?,?,?,?)
       ON CONFLICT (url) DO UPDATE SET kind = excluded.kind, region = excluded.region,
         key_id = excluded.key_id, connected = excluded.connected, last_seen = excluded.last_seen,
         expires_at = excluded.expires_at`,
    ).run(b.url, b.kind, b.region, b.keyId, b.connected, b.at, b.at, b.expiresAt)
    return !existed
  }

  async deleteRelay(url: string): Promise<boolean> {
    return this.q('DELETE FROM relays WHERE url = ?').run(url).changes > 0
  }

  async deleteExpiredRelays(at: string): Promise<number> {
    return this.q('DELETE FROM relays WHERE expires_at < ?').run(at).changes
  }

  async getSetting(name: string): Promise<string | undefined> {
    const r = this.q('SELECT value FROM settings WHERE name = ?').get(name) as Row | undefined
    return r && str(r.value)
  }

  async insertSettingIfAbsent(name: string, value: string, at: string): Promise<string> {
    this.q('INSERT OR IGNORE INTO settings (name, value, created_at) VALUES (?,?,?)').run(name, value, at)
    return (await this.getSetting(name)) as string
  }

  async getPolicy(tenantId: string): Promise<PolicyRecord | undefined> {
    const r = this.q('SELECT * FROM policies WHERE tenant_id = ?').get(tenantId) as Row | undefined
    return r && toPolicy(r)
  }

  async putPolicy(p: PolicyRecord): Promise<void> {
    this.q(
      `INSERT INTO policies (tenant_id, document, version, updated_at, updated_by) VALUES (?,?,?,?,?)
         ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document, version = excluded.version,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
    ).run(p.tenantId, p.document, p.version, p.updatedAt, p.updatedBy)
  }

  async deletePolicy(tenantId: string): Promise<void> {
    this.q('DELETE FROM policies WHERE tenant_id = ?').run(tenantId)
  }

  async lockAuditChain(): Promise<void> {
    // One writer: the transaction already holds SQLite's write lock.
  }

  async lastAuditLink(chain: string): Promise<AuditLink | undefined> {
    const r = this.q('SELECT chain_seq, hash FROM audit WHERE chain = ? ORDER BY chain_seq DESC LIMIT 1').get(
      chain,
    ) as Row | undefined
    return r && {seq: Number(r.chain_seq), hash: str(r.hash)}
  }

  async insertAudit(row: AuditRow): Promise<void> {
    const values = auditRowValues(row)
    this.q(`INSERT INTO audit (${AUDIT_INSERT_COLUMNS}) VALUES (${values.map(() => '?').join(',')})`).run(
      ...values,
    )
  }
}

/** A driver error as the MeshError the rest of the controller knows, or the error itself. */
function mapError(err: unknown): unknown {
  if (isMeshError(err)) return err
  const unique = sqliteUniqueViolation(err)
  if (unique) return uniqueViolation(unique.table, unique.columns, err)
  return storageError(err) ?? err
}

export class SqliteStore implements Store {
  private readonly writer: Statements
  private readonly reader: Statements
  private readonly tx: SqliteTx
  /** The tail of the write queue: each write starts when the one before it has ended. */
  private queue: Promise<unknown> = Promise.resolve()
  private lastWriteProbeAt = -Infinity

  /** `db` is the writer connection (tests read pragmas and raw rows through it). */
  private constructor(
    readonly db: Database.Database,
    readerDb: Database.Database,
  ) {
    this.writer = new Statements(db)
    this.reader = new Statements(readerDb)
    this.tx = new SqliteTx(this.writer)
  }

  static async open(file: string, opts: {migrations?: readonly Migration[]} = {}): Promise<SqliteStore> {
    const db = await openSqlite(file, opts)
    try {
      const reader = new Database(file)
      reader.pragma('busy_timeout = 5000')
      reader.pragma('query_only = ON')
      return new SqliteStore(db, reader)
    } catch (err) {
      db.close()
      throw err
    }
  }

  private r(sql: string): Database.Statement {
    return this.reader.q(sql)
  }

  /** Runs `fn` when every write queued before it has ended. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => undefined)
    return run
  }

  write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      try {
        this.db.exec('BEGIN IMMEDIATE')
        const result = await fn(this.tx)
        this.db.exec('COMMIT')
        return result
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK')
        throw mapError(err)
      }
    })
  }

  /**
   * Readiness: the database answers, a small write commits (STORAGE_FULL and the like when it
   * cannot), and the file system holding the database has at least MIN_FREE_BYTES free (else
   * STORAGE_FULL: a write may still fit in the WAL's old room, but the next larger one will not).
   */
  async ping(): Promise<void> {
    this.r('SELECT 1').get()
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
    await this.exclusive(async () => {
      try {
        this.writer
          .q('UPDATE readiness_probe SET probed_at = ?, headroom = randomblob(?) WHERE id = 1')
          .run(new Date().toISOString(), WRITE_PROBE_BYTES)
      } catch (err) {
        throw mapError(err)
      }
    })
    this.lastWriteProbeAt = t
  }

  async close(): Promise<void> {
    await this.queue
    if (this.reader.db.open) this.reader.db.close()
    if (this.db.open) this.db.close()
  }

  // ---------------------------------------------------------------------------------------------
  // reads: the reader connection, committed data only

  async hasTenants(): Promise<boolean> {
    return this.r('SELECT 1 FROM tenants LIMIT 1').get() !== undefined
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const r = this.r('SELECT * FROM tenants WHERE id = ?').get(id) as Row | undefined
    return r && toTenant(r)
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const r = this.r('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined
    return r && toUser(r)
  }

  async getUserByUsername(username: string): Promise<UserRecord | undefined> {
    const r = this.r('SELECT * FROM users WHERE username = ?').get(username) as Row | undefined
    return r && toUser(r)
  }

  async listUsers(tenantId: string, req: PageRequest): Promise<Page<User>> {
    const rows = this.r('SELECT * FROM users WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(
      tenantId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, (r) => publicUser(toUser(r)))
  }

  async getToken(
    hash: string,
  ): Promise<{id: string; userId: string; expiresAt: string; sessionId: string | null} | undefined> {
    const r = this.r('SELECT * FROM tokens WHERE token_hash = ?').get(hash) as Row | undefined
    return (
      r && {
        id: str(r.id),
        userId: str(r.user_id),
        expiresAt: str(r.expires_at),
        sessionId: strOrNull(r.session_id),
      }
    )
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    const r = this.r(`${SESSION_SQL} WHERE s.id = ?`).get(id) as Row | undefined
    return r && toSession(r)
  }

  async listSessions(userId: string, at: string): Promise<SessionRecord[]> {
    const rows = this.r(
      `${SESSION_SQL} WHERE s.user_id = ? AND s.revoked_at IS NULL AND s.expires_at >= ? ORDER BY s.seq LIMIT 1000`,
    ).all(userId, at) as Row[]
    return rows.map(toSession)
  }

  async getMfa(userId: string): Promise<MfaRecord | undefined> {
    const r = this.r('SELECT * FROM user_mfa WHERE user_id = ?').get(userId) as Row | undefined
    return r && toMfa(r)
  }

  async identitiesOf(userId: string): Promise<IdentityRecord[]> {
    const rows = this.r(
      'SELECT * FROM user_identities WHERE user_id = ? ORDER BY created_at, issuer, subject',
    ).all(userId) as Row[]
    return rows.map(toIdentity)
  }

  async listNetworks(tenantId: string, req: PageRequest): Promise<Page<Network>> {
    const rows = this.r('SELECT * FROM networks WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(
      tenantId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, (r) => publicNetwork(toNetwork(r)))
  }

  async getNetwork(id: string): Promise<Network | undefined> {
    const r = this.r('SELECT * FROM networks WHERE id = ?').get(id) as Row | undefined
    return r && publicNetwork(toNetwork(r))
  }

  async getNetworkByName(tenantId: string, name: string): Promise<Network | undefined> {
    const r = this.r('SELECT * FROM networks WHERE tenant_id = ? AND name = ?').get(tenantId, name) as
      Row | undefined
    return r && publicNetwork(toNetwork(r))
  }

  async listMembers(networkId: string): Promise<NetworkMember[]> {
    const rows = this.r(
      `SELECT m.user_id, u.username, m.role FROM network_members m JOIN users u ON u.id = m.user_id
         WHERE m.network_id = ? ORDER BY u.username`,
    ).all(networkId) as Row[]
    return rows.map((r) => ({userId: str(r.user_id), username: str(r.username), role: r.role as Role}))
  }

  async getMemberRole(networkId: string, userId: string): Promise<Role | undefined> {
    const r = this.r('SELECT role FROM network_members WHERE network_id = ? AND user_id = ?').get(
      networkId,
      userId,
    ) as Row | undefined
    return r ? (r.role as Role) : undefined
  }

  async listInvites(networkId: string, req: PageRequest): Promise<Page<Invite>> {
    const rows = this.r(`${INVITE_SQL} WHERE i.network_id = ? AND i.seq > ? ORDER BY i.seq LIMIT ?`).all(
      networkId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, (r) => publicInvite(toInvite(r)))
  }

  async getInvite(id: string): Promise<InviteRecord | undefined> {
    const r = this.r(`${INVITE_SQL} WHERE i.id = ?`).get(id) as Row | undefined
    return r && toInvite(r)
  }

  async listUserInvites(tenantId: string, req: PageRequest): Promise<Page<UserInvite>> {
    const rows = this.r(
      'SELECT * FROM user_invites WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?',
    ).all(tenantId, decodeCursor(req.cursor), req.limit + 1) as Row[]
    return page(rows, req.limit, toUserInvite)
  }

  async getUserInvite(id: string): Promise<UserInvite | undefined> {
    const r = this.r('SELECT * FROM user_invites WHERE id = ?').get(id) as Row | undefined
    return r && toUserInvite(r)
  }

  async userInviteByCode(codeHash: string): Promise<UserInvite | undefined> {
    const r = this.r('SELECT * FROM user_invites WHERE code_hash = ?').get(codeHash) as Row | undefined
    return r && toUserInvite(r)
  }

  async listAuthKeys(networkId: string, req: PageRequest): Promise<Page<AuthKey>> {
    const rows = this.r(`${AUTHKEY_SQL} WHERE k.network_id = ? AND k.seq > ? ORDER BY k.seq LIMIT ?`).all(
      networkId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, (r) => publicAuthKey(toAuthKey(r)))
  }

  async getAuthKey(id: string): Promise<AuthKeyRecord | undefined> {
    const r = this.r(`${AUTHKEY_SQL} WHERE k.id = ?`).get(id) as Row | undefined
    return r && toAuthKey(r)
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    const r = this.r('SELECT * FROM nodes WHERE id = ?').get(id) as Row | undefined
    return r && toNode(r)
  }

  async getNodeByCredential(credentialHash: string): Promise<StoredNode | undefined> {
    const r = this.r('SELECT * FROM nodes WHERE credential_hash = ?').get(credentialHash) as Row | undefined
    return r && toNode(r)
  }

  async listNodes(
    networkId: string,
    filter: {status?: NodeStatus | undefined},
    req: PageRequest,
  ): Promise<Page<StoredNode>> {
    const rows = this.r(
      `SELECT * FROM nodes WHERE network_id = ? AND (? IS NULL OR status = ?) AND seq > ? ORDER BY seq LIMIT ?`,
    ).all(
      networkId,
      filter.status ?? null,
      filter.status ?? null,
      decodeCursor(req.cursor),
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, toNode)
  }

  async allNodes(networkId: string): Promise<StoredNode[]> {
    return (this.r('SELECT * FROM nodes WHERE network_id = ? ORDER BY seq').all(networkId) as Row[]).map(
      toNode,
    )
  }

  async tenantNodes(tenantId: string): Promise<StoredNode[]> {
    return (
      this.r(
        'SELECT nd.* FROM nodes nd JOIN networks n ON n.id = nd.network_id WHERE n.tenant_id = ? ORDER BY nd.seq',
      ).all(tenantId) as Row[]
    ).map(toNode)
  }

  async ephemeralNodes(): Promise<StoredNode[]> {
    return (this.r('SELECT * FROM nodes WHERE ephemeral = 1').all() as Row[]).map(toNode)
  }

  async activeNodeKeys(): Promise<{id: string; publicKey: string}[]> {
    const rows = this.r("SELECT id, public_key FROM nodes WHERE status = 'active'").all() as Row[]
    return rows.map((r) => ({id: str(r.id), publicKey: str(r.public_key)}))
  }

  async keyExpiries(q: {
    after: string | null
    until: string
    unwarned?: boolean | undefined
    limit: number
  }): Promise<StoredNode[]> {
    const rows = this.r(
      `SELECT * FROM nodes WHERE status = 'active' AND key_expires_at IS NOT NULL
         AND (? IS NULL OR key_expires_at > ?) AND key_expires_at <= ? AND (? = 0 OR key_warned_at IS NULL)
         ORDER BY key_expires_at, id LIMIT ?`,
    ).all(q.after, q.after, q.until, q.unwarned ? 1 : 0, q.limit) as Row[]
    return rows.map(toNode)
  }

  async tenantKeyDays(tenantId: string): Promise<number> {
    const r = this.r('SELECT node_key_days FROM tenants WHERE id = ?').get(tenantId) as Row | undefined
    return r ? Number(r.node_key_days) : 0
  }

  async netmapVersion(networkId: string): Promise<number> {
    const r = this.r('SELECT netmap_version FROM networks WHERE id = ?').get(networkId) as Row | undefined
    return r ? Number(r.netmap_version) : 0
  }

  async changesSince(
    networkId: string,
    version: number,
  ): Promise<{version: number; nodeIds: string[]} | undefined> {
    // One read transaction: the version and the log rows from the same snapshot.
    return this.reader.db.transaction(() => {
      const current = Number(
        (this.r('SELECT netmap_version FROM networks WHERE id = ?').get(networkId) as Row | undefined)
          ?.netmap_version ?? 0,
      )
      if (version > current) return undefined
      if (version === current) return {version: current, nodeIds: []}
      const oldest = this.r('SELECT min(version) AS v FROM netmap_changes WHERE network_id = ?').get(
        networkId,
      ) as Row
      if (oldest.v === null || Number(oldest.v) > version + 1) return undefined
      const rows = this.r(
        'SELECT DISTINCT node_id FROM netmap_changes WHERE network_id = ? AND version > ?',
      ).all(networkId, version) as Row[]
      return {version: current, nodeIds: rows.map((r) => str(r.node_id))}
    })()
  }

  async allConnections(networkId: string): Promise<StoredConnection[]> {
    const rows = this.r('SELECT * FROM connections WHERE network_id = ?').all(networkId) as Row[]
    return rows.map(toStoredConnection)
  }

  async listConnections(
    networkId: string,
    filter: {nodeId?: string | undefined},
    req: PageRequest,
  ): Promise<Page<Connection>> {
    const node = filter.nodeId ?? null
    const rows = this.r(
      `SELECT c.*, na.name AS name_a, nb.name AS name_b FROM connections c
         JOIN nodes na ON na.id = c.node_a AND na.status = 'active'
         JOIN nodes nb ON nb.id = c.node_b AND nb.status = 'active'
         WHERE c.network_id = ? AND c.seq > ? AND (? IS NULL OR c.node_a = ? OR c.node_b = ?)
         ORDER BY c.seq LIMIT ?`,
    ).all(networkId, decodeCursor(req.cursor), node, node, node, req.limit + 1) as Row[]
    return page(rows, req.limit, (r) => {
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
    req: PageRequest,
  ): Promise<Page<ConnectionLogEntry>> {
    const before = decodeCursor(req.cursor) || Number.MAX_SAFE_INTEGER
    const node = filter.nodeId ?? null
    const rows = this.r(
      `SELECT l.*, na.name AS name_a, nb.name AS name_b FROM connection_log l
         LEFT JOIN nodes na ON na.id = l.node_a
         LEFT JOIN nodes nb ON nb.id = l.node_b
         WHERE l.network_id = ? AND l.seq < ? AND (? IS NULL OR l.node_a = ? OR l.node_b = ?)
         ORDER BY l.seq DESC LIMIT ?`,
    ).all(networkId, before, node, node, node, req.limit + 1) as Row[]
    return page(rows, req.limit, (r) => ({
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

  async listRelayKeys(req: PageRequest): Promise<Page<RelayKey>> {
    const rows = this.r('SELECT * FROM relay_keys WHERE seq > ? ORDER BY seq LIMIT ?').all(
      decodeCursor(req.cursor),
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, (r) => publicRelayKey(toRelayKey(r)))
  }

  async getRelayKey(id: string): Promise<RelayKeyRecord | undefined> {
    const r = this.r('SELECT * FROM relay_keys WHERE id = ?').get(id) as Row | undefined
    return r && toRelayKey(r)
  }

  async relayKeyByHash(keyHash: string): Promise<RelayKeyRecord | undefined> {
    const r = this.r('SELECT * FROM relay_keys WHERE key_hash = ?').get(keyHash) as Row | undefined
    return r && toRelayKey(r)
  }

  async liveRelays(at: string): Promise<RelayRecord[]> {
    const rows = this.r('SELECT * FROM relays WHERE expires_at >= ? ORDER BY region, url').all(at) as Row[]
    return rows.map(toRelay)
  }

  async getSetting(name: string): Promise<string | undefined> {
    const r = this.r('SELECT value FROM settings WHERE name = ?').get(name) as Row | undefined
    return r && str(r.value)
  }

  async listAudit(filter: AuditFilter, req: PageRequest): Promise<Page<AuditEntry>> {
    const q = auditOrder(filter, req)
    const actor = filter.actor ?? null
    const rows = this.r(
      `SELECT *, ${q.key} AS seq FROM audit WHERE ${q.scope} = ? AND ${q.key} ${q.op} ?
           AND (? IS NULL OR at >= ?)
           AND (? IS NULL OR actor = ? OR actor_name = ?)
           AND (? IS NULL OR network_id = ?)
         ORDER BY ${q.key} ${q.dir} LIMIT ?`,
    ).all(
      filter.tenantId,
      q.from,
      filter.since ?? null,
      filter.since ?? null,
      actor,
      actor,
      actor,
      filter.networkId ?? null,
      filter.networkId ?? null,
      req.limit + 1,
    ) as Row[]
    return page(rows, req.limit, toAudit)
  }

  async getPolicy(tenantId: string): Promise<PolicyRecord | undefined> {
    const r = this.r('SELECT * FROM policies WHERE tenant_id = ?').get(tenantId) as Row | undefined
    return r && toPolicy(r)
  }

  async auditLinks(chain: string, afterSeq: number, limit: number): Promise<StoredAuditRow[]> {
    const rows = this.r(
      'SELECT * FROM audit WHERE chain = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?',
    ).all(chain, afterSeq, limit) as Row[]
    return rows.map(toStoredAuditRow)
  }

  async countUnchainedAudit(tenantId: string | null): Promise<number> {
    const r = this.r('SELECT count(*) AS n FROM audit WHERE tenant_id IS ? AND chain IS NULL').get(
      tenantId,
    ) as Row
    return Number(r.n)
  }

  async identityGroupsOf(tenantId: string): Promise<Map<string, string[]>> {
    const rows = this.r(
      `SELECT i.user_id, i.groups FROM user_identities i JOIN users u ON u.id = i.user_id
       WHERE u.tenant_id = ? AND i.groups <> '[]'`,
    ).all(tenantId) as Row[]
    return groupsByUser(rows)
  }
}
