/**
 * The Store on PostgreSQL (node-postgres): SQL only; the rules are controller/domain/'s.
 *
 * write(fn) is one READ COMMITTED transaction on one pooled client. Rules that read and then
 * write take a row lock first (lockNetwork / lockTenant: SELECT ... FOR UPDATE), so two
 * controller replicas on one database take turns where it matters and read each other's
 * committed rows after the lock; UNIQUE constraints back every uniqueness rule. A transaction
 * that loses a deadlock or a serialization check is run again (at most WRITE_ATTEMPTS times):
 * the rules are pure functions of the rows they read, so a rerun decides afresh.
 *
 * Reads outside write() go to the pool and see committed data. changesSince is one statement,
 * so its version and change rows come from one snapshot.
 */
import crypto from 'node:crypto'
import type pg from 'pg'
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
import {uniqueViolation} from '../errors.js'
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
import {isPostgresRetryable, postgresStorageError, postgresUniqueViolation} from './errors.js'
import {checkout, type Lease} from './open.js'

/** Runs of one write transaction before a deadlock or serialization failure is given up. */
const WRITE_ATTEMPTS = 4
/** Bytes each readiness write probe rewrites (see the SQLite adapter's ping for why). */
const WRITE_PROBE_BYTES = 16 * 1024
/** A successful write probe is trusted this long. */
const WRITE_PROBE_INTERVAL_MS = 1_000

/** Something that runs a query: the pool, or the client of an open transaction. */
type Queryable = Pick<pg.Pool, 'query'>

const INVITE_SQL = 'SELECT i.*, n.tenant_id FROM invites i JOIN networks n ON n.id = i.network_id'
const AUTHKEY_SQL = 'SELECT k.*, n.tenant_id FROM auth_keys k JOIN networks n ON n.id = k.network_id'
const SESSION_SQL = 'SELECT s.*, u.tenant_id FROM sessions s JOIN users u ON u.id = s.user_id'

async function rows(db: Queryable, sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await db.query(sql, params)).rows as Row[]
}
async function one(db: Queryable, sql: string, params: unknown[] = []): Promise<Row | undefined> {
  return (await rows(db, sql, params))[0]
}
const flag = (b: boolean): number => (b ? 1 : 0)

/**
 * First key of the per-pair advisory locks of Tx.lockConnections (the second is a hash of the
 * pair); apart from mesh's session locks (0x6d657368: the migration lock and the singleton jobs).
 */
const PAIR_LOCK_CLASS = 0x6d657063
/** First key of the per-chain advisory locks of Tx.lockAuditChain ('mesa'; the second: the chain's hash). */
const AUDIT_LOCK_CLASS = 0x6d657361

/** A side's five columns (path, latency_ms, endpoint, replica, at), all NULL for none. */
const sideValues = (x: StoredSide | null): (string | number | null)[] => [
  x?.path ?? null,
  x?.latencyMs ?? null,
  x?.endpoint ?? null,
  x?.replica ?? null,
  x?.at ?? null,
]

/** The row operations of one transaction, on its client. */
class PgTx implements Tx {
  constructor(private readonly c: Queryable) {}

  async lockTenant(id: string): Promise<Tenant | undefined> {
    const r = await one(this.c, 'SELECT * FROM tenants WHERE id = $1 FOR UPDATE', [id])
    return r && toTenant(r)
  }

  async lockNetwork(id: string): Promise<NetworkRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM networks WHERE id = $1 FOR UPDATE', [id])
    return r && toNetwork(r)
  }

  async insertTenant(t: {id: string; name: string; at: string}): Promise<Tenant> {
    const r = await one(this.c, 'INSERT INTO tenants (id, name, created_at) VALUES ($1,$2,$3) RETURNING *', [
      t.id,
      t.name,
      t.at,
    ])
    return toTenant(r as Row)
  }

  async tenantKeyDays(tenantId: string): Promise<number> {
    const r = await one(this.c, 'SELECT node_key_days FROM tenants WHERE id = $1', [tenantId])
    return r ? Number(r.node_key_days) : 0
  }

  async setTenantKeyDays(tenantId: string, days: number): Promise<void> {
    await this.c.query('UPDATE tenants SET node_key_days = $1 WHERE id = $2', [days, tenantId])
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM users WHERE id = $1', [id])
    return r && toUser(r)
  }

  async usernameTaken(username: string): Promise<boolean> {
    return (await one(this.c, 'SELECT 1 FROM users WHERE username = $1', [username])) !== undefined
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
    const r = await one(
      this.c,
      `INSERT INTO users (id, tenant_id, username, password_hash, role, superuser, created_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING *`,
      [u.id, u.tenantId, u.username, u.passwordHash, u.role, flag(u.superuser), u.at],
    )
    return toUser(r as Row)
  }

  async setUserRole(id: string, role: Role): Promise<void> {
    await this.c.query('UPDATE users SET role = $1 WHERE id = $2', [role, id])
  }

  async setUsername(id: string, username: string): Promise<void> {
    await this.c.query('UPDATE users SET username = $1 WHERE id = $2', [username, id])
  }

  async deleteUser(id: string): Promise<void> {
    await this.c.query('DELETE FROM users WHERE id = $1', [id])
  }

  async insertToken(t: {
    id: string
    hash: string
    userId: string
    at: string
    expiresAt: string
    sessionId?: string | undefined
  }): Promise<void> {
    await this.c.query(
      'INSERT INTO tokens (id, token_hash, user_id, created_at, expires_at, session_id) VALUES ($1,$2,$3,$4,$5,$6)',
      [t.id, t.hash, t.userId, t.at, t.expiresAt, t.sessionId ?? null],
    )
  }

  async deleteExpiredTokens(at: string): Promise<void> {
    await this.c.query('DELETE FROM tokens WHERE session_id IS NULL AND expires_at < $1', [at])
    await this.c.query('DELETE FROM sessions WHERE expires_at < $1', [at])
  }

  async getToken(
    hash: string,
  ): Promise<{id: string; userId: string; tenantId: string; sessionId: string | null} | undefined> {
    const r = await one(
      this.c,
      'SELECT t.id, t.user_id, t.session_id, u.tenant_id FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1',
      [hash],
    )
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
    await this.c.query('DELETE FROM tokens WHERE token_hash = $1', [hash])
  }

  async insertSession(x: {
    id: string
    userId: string
    at: string
    expiresAt: string
    sourceAddress: string | null
  }): Promise<void> {
    await this.c.query(
      'INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, source_address) VALUES ($1,$2,$3,$3,$4,$5)',
      [x.id, x.userId, x.at, x.expiresAt, x.sourceAddress],
    )
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    const r = await one(this.c, `${SESSION_SQL} WHERE s.id = $1`, [id])
    return r && toSession(r)
  }

  async touchSession(id: string, at: string, expiresAt: string, sourceAddress: string | null): Promise<void> {
    await this.c.query(
      'UPDATE sessions SET last_used_at = $1, expires_at = $2, source_address = $3 WHERE id = $4',
      [at, expiresAt, sourceAddress, id],
    )
  }

  async revokeSession(id: string, at: string, reason: 'logout' | 'revoked' | 'reuse'): Promise<boolean> {
    await this.c.query('DELETE FROM tokens WHERE session_id = $1', [id])
    await this.c.query(
      'UPDATE refresh_tokens SET retired_at = $1 WHERE session_id = $2 AND retired_at IS NULL',
      [at, id],
    )
    const res = await this.c.query(
      'UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL',
      [at, reason, id],
    )
    return (res.rowCount ?? 0) > 0
  }

  async deleteExpiredSessionTokens(sessionId: string, at: string): Promise<void> {
    await this.c.query('DELETE FROM tokens WHERE session_id = $1 AND expires_at < $2', [sessionId, at])
  }

  async insertRefreshToken(t: {
    hash: string
    sessionId: string
    at: string
    expiresAt: string
  }): Promise<void> {
    await this.c.query(
      'INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1,$2,$3,$4)',
      [t.hash, t.sessionId, t.at, t.expiresAt],
    )
  }

  async getRefreshToken(hash: string): Promise<RefreshTokenRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM refresh_tokens WHERE token_hash = $1', [hash])
    return r && toRefreshToken(r)
  }

  async retireRefreshToken(hash: string, at: string, by: string | null): Promise<boolean> {
    // READ COMMITTED: a second writer blocks on the row lock, then re-checks retired_at IS NULL
    // against the committed row and updates nothing.
    const res = await this.c.query(
      'UPDATE refresh_tokens SET retired_at = $1, retired_by = $2 WHERE token_hash = $3 AND retired_at IS NULL',
      [at, by, hash],
    )
    return (res.rowCount ?? 0) > 0
  }

  async getMfa(userId: string): Promise<MfaRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM user_mfa WHERE user_id = $1', [userId])
    return r && toMfa(r)
  }

  async putPendingMfa(userId: string, secret: string, at: string): Promise<void> {
    await this.c.query(
      `INSERT INTO user_mfa (user_id, secret, created_at, enabled_at, last_step) VALUES ($1,$2,$3,NULL,NULL)
         ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = excluded.created_at,
           enabled_at = NULL, last_step = NULL`,
      [userId, secret, at],
    )
  }

  async enableMfa(userId: string, at: string): Promise<void> {
    await this.c.query('UPDATE user_mfa SET enabled_at = $1 WHERE user_id = $2', [at, userId])
  }

  async deleteMfa(userId: string): Promise<void> {
    await this.c.query('DELETE FROM mfa_recovery_codes WHERE user_id = $1', [userId])
    await this.c.query('DELETE FROM user_mfa WHERE user_id = $1', [userId])
  }

  async listMfa(): Promise<MfaRecord[]> {
    return (await rows(this.c, 'SELECT * FROM user_mfa ORDER BY user_id FOR UPDATE')).map(toMfa)
  }

  async replaceMfaSecret(userId: string, from: string, to: string): Promise<boolean> {
    const res = await this.c.query('UPDATE user_mfa SET secret = $1 WHERE user_id = $2 AND secret = $3', [
      to,
      userId,
      from,
    ])
    return (res.rowCount ?? 0) > 0
  }

  async useTotpStep(userId: string, step: number): Promise<boolean> {
    const res = await this.c.query(
      'UPDATE user_mfa SET last_step = $1 WHERE user_id = $2 AND (last_step IS NULL OR last_step < $1)',
      [step, userId],
    )
    return (res.rowCount ?? 0) > 0
  }

  async putRecoveryCodes(userId: string, hashes: readonly string[], at: string): Promise<void> {
    await this.c.query('DELETE FROM mfa_recovery_codes WHERE user_id = $1', [userId])
    await this.c.query(
      'INSERT INTO mfa_recovery_codes (user_id, code_hash, created_at) SELECT $1, h, $3 FROM unnest($2::text[]) AS h',
      [userId, [...hashes], at],
    )
  }

  async useRecoveryCode(userId: string, hash: string, at: string): Promise<boolean> {
    const res = await this.c.query(
      'UPDATE mfa_recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL',
      [at, userId, hash],
    )
    return (res.rowCount ?? 0) > 0
  }

  // ---- OIDC (schema 0017)

  async getTenantByName(name: string): Promise<Tenant | undefined> {
    const r = await one(this.c, 'SELECT * FROM tenants WHERE name = $1', [name])
    return r && toTenant(r)
  }

  async getIdentity(issuer: string, subject: string): Promise<IdentityRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM user_identities WHERE issuer = $1 AND subject = $2', [
      issuer,
      subject,
    ])
    return r && toIdentity(r)
  }

  async insertIdentity(i: IdentityRecord): Promise<void> {
    await this.c.query(
      `INSERT INTO user_identities (issuer, subject, user_id, provider, email, groups, created_at, last_login_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [
        i.issuer,
        i.subject,
        i.userId,
        i.provider,
        i.email,
        JSON.stringify(i.groups),
        i.createdAt,
        i.lastLoginAt,
      ],
    )
  }

  async updateIdentityLogin(
    issuer: string,
    subject: string,
    f: {email: string | null; groups: readonly string[]; at: string},
  ): Promise<void> {
    await this.c.query(
      'UPDATE user_identities SET email = $1, groups = $2, last_login_at = $3 WHERE issuer = $4 AND subject = $5',
      [f.email, JSON.stringify(f.groups), f.at, issuer, subject],
    )
  }

  async insertOidcFlow(f: OidcFlowRecord): Promise<void> {
    await this.c.query(
      `INSERT INTO oidc_flows (id_hash, kind, provider, data, created_at, expires_at, next_poll_at, source)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [
        f.idHash,
        f.kind,
        f.provider,
        JSON.stringify(f.data),
        f.createdAt,
        f.expiresAt,
        f.nextPollAt,
        f.source ?? null,
      ],
    )
  }

  async claimOidcFlowPoll(idHash: string, at: string, nextPollAt: string): Promise<boolean> {
    const res = await this.c.query(
      'UPDATE oidc_flows SET next_poll_at = $1 WHERE id_hash = $2 AND (next_poll_at IS NULL OR next_poll_at <= $3)',
      [nextPollAt, idHash, at],
    )
    return res.rowCount === 1
  }

  async countOidcFlowsFrom(source: string, at: string): Promise<number> {
    const r = await one(
      this.c,
      'SELECT count(*) AS n FROM oidc_flows WHERE source = $1 AND expires_at > $2',
      [source, at],
    )
    return Number(r?.n ?? 0)
  }

  async getOidcFlow(idHash: string): Promise<OidcFlowRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM oidc_flows WHERE id_hash = $1', [idHash])
    return r && toOidcFlow(r)
  }

  async deleteOidcFlow(idHash: string): Promise<boolean> {
    const res = await this.c.query('DELETE FROM oidc_flows WHERE id_hash = $1', [idHash])
    return (res.rowCount ?? 0) > 0
  }

  async setOidcFlowPoll(
    idHash: string,
    nextPollAt: string,
    data: Readonly<Record<string, unknown>>,
  ): Promise<void> {
    await this.c.query('UPDATE oidc_flows SET next_poll_at = $1, data = $2 WHERE id_hash = $3', [
      nextPollAt,
      JSON.stringify(data),
      idHash,
    ])
  }

  async deleteExpiredOidcFlows(at: string): Promise<void> {
    await this.c.query('DELETE FROM oidc_flows WHERE expires_at < $1', [at])
  }

  async getNetwork(id: string): Promise<NetworkRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM networks WHERE id = $1', [id])
    return r && toNetwork(r)
  }

  async networkNameTaken(tenantId: string, name: string): Promise<boolean> {
    return (
      (await one(this.c, 'SELECT 1 FROM networks WHERE tenant_id = $1 AND name = $2', [tenantId, name])) !==
      undefined
    )
  }

  async networkCidrs(tenantId: string): Promise<{name: string; cidr: string}[]> {
    const rs = await rows(this.c, 'SELECT name, cidr FROM networks WHERE tenant_id = $1', [tenantId])
    return rs.map((r) => ({name: str(r.name), cidr: str(r.cidr)}))
  }

  async insertNetwork(net: NewNetwork, at: string): Promise<void> {
    await this.c.query(
      `INSERT INTO networks (id, tenant_id, name, cidr, description, join_policy, max_nodes, created_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [net.id, net.tenantId, net.name, net.cidr, net.description, net.joinPolicy, net.maxNodes, at],
    )
  }

  async updateNetwork(
    id: string,
    f: {name: string; description: string; joinPolicy: string; maxNodes: number | null},
  ): Promise<void> {
    await this.c.query(
      'UPDATE networks SET name = $1, description = $2, join_policy = $3, max_nodes = $4 WHERE id = $5',
      [f.name, f.description, f.joinPolicy, f.maxNodes, id],
    )
  }

  async deleteNetwork(id: string): Promise<void> {
    await this.c.query('DELETE FROM networks WHERE id = $1', [id])
  }

  async upsertMember(networkId: string, userId: string, role: Role): Promise<void> {
    await this.c.query(
      `INSERT INTO network_members (network_id, user_id, role) VALUES ($1,$2,$3)
         ON CONFLICT (network_id, user_id) DO UPDATE SET role = excluded.role`,
      [networkId, userId, role],
    )
  }

  async deleteMember(networkId: string, userId: string): Promise<boolean> {
    const res = await this.c.query('DELETE FROM network_members WHERE network_id = $1 AND user_id = $2', [
      networkId,
      userId,
    ])
    return (res.rowCount ?? 0) > 0
  }

  async setIpamCursor(networkId: string, address: number): Promise<void> {
    await this.c.query('UPDATE networks SET ipam_cursor = $1 WHERE id = $2', [address, networkId])
  }

  async bumpNetmap(networkId: string, nodeId: string, kind: NodeChange['kind']): Promise<number> {
    const r = await one(
      this.c,
      'UPDATE networks SET netmap_version = netmap_version + 1 WHERE id = $1 RETURNING netmap_version',
      [networkId],
    )
    if (!r) throw new MeshError('NOT_FOUND', {message: 'network not found'})
    const version = Number(r.netmap_version)
    await this.c.query(
      'INSERT INTO netmap_changes (network_id, version, node_id, kind) VALUES ($1,$2,$3,$4)',
      [networkId, version, nodeId, kind],
    )
    return version
  }

  async trimChangeLog(networkId: string, version: number): Promise<void> {
    await this.c.query('DELETE FROM netmap_changes WHERE network_id = $1 AND version <= $2', [
      networkId,
      version,
    ])
  }

  async insertInvite(inv: NewInvite & {at: string}): Promise<void> {
    await this.c.query(
      `INSERT INTO invites (id, network_id, code_hash, role, max_uses, expires_at, created_at, created_by)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [inv.id, inv.networkId, inv.codeHash, inv.role, inv.maxUses, inv.expiresAt, inv.at, inv.createdBy],
    )
  }

  async getInvite(id: string): Promise<InviteRecord | undefined> {
    const r = await one(this.c, `${INVITE_SQL} WHERE i.id = $1`, [id])
    return r && toInvite(r)
  }

  async inviteByCode(codeHash: string): Promise<InviteRecord | undefined> {
    const r = await one(this.c, `${INVITE_SQL} WHERE i.code_hash = $1`, [codeHash])
    return r && toInvite(r)
  }

  async revokeInvite(id: string, at: string): Promise<void> {
    await this.c.query('UPDATE invites SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2', [at, id])
  }

  async countInviteUse(id: string): Promise<void> {
    await this.c.query('UPDATE invites SET uses = uses + 1 WHERE id = $1', [id])
  }

  async insertAuthKey(key: NewAuthKey & {at: string}): Promise<void> {
    await this.c.query(
      `INSERT INTO auth_keys (id, network_id, key_hash, prefix, reusable, ephemeral, pre_approved, tags,
           expires_at, created_at, created_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
      [
        key.id,
        key.networkId,
        key.keyHash,
        key.prefix,
        flag(key.reusable),
        flag(key.ephemeral),
        flag(key.preApproved),
        JSON.stringify(key.tags),
        key.expiresAt,
        key.at,
        key.createdBy,
      ],
    )
  }

  async getAuthKey(id: string): Promise<AuthKeyRecord | undefined> {
    const r = await one(this.c, `${AUTHKEY_SQL} WHERE k.id = $1`, [id])
    return r && toAuthKey(r)
  }

  async authKeyByHash(keyHash: string): Promise<AuthKeyRecord | undefined> {
    const r = await one(this.c, `${AUTHKEY_SQL} WHERE k.key_hash = $1`, [keyHash])
    return r && toAuthKey(r)
  }

  async revokeAuthKey(id: string, at: string): Promise<void> {
    await this.c.query('UPDATE auth_keys SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2', [at, id])
  }

  async countAuthKeyUse(id: string): Promise<void> {
    await this.c.query('UPDATE auth_keys SET uses = uses + 1 WHERE id = $1', [id])
  }

  async insertUserInvite(inv: NewUserInvite & {at: string}): Promise<void> {
    await this.c.query(
      `INSERT INTO user_invites (id, tenant_id, code_hash, role, max_uses, expires_at, created_at, created_by)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [inv.id, inv.tenantId, inv.codeHash, inv.role, inv.maxUses, inv.expiresAt, inv.at, inv.createdBy],
    )
  }

  async getUserInvite(id: string): Promise<UserInvite | undefined> {
    const r = await one(this.c, 'SELECT * FROM user_invites WHERE id = $1', [id])
    return r && toUserInvite(r)
  }

  async userInviteByCode(codeHash: string): Promise<UserInvite | undefined> {
    const r = await one(this.c, 'SELECT * FROM user_invites WHERE code_hash = $1', [codeHash])
    return r && toUserInvite(r)
  }

  async revokeUserInvite(id: string, at: string): Promise<void> {
    await this.c.query('UPDATE user_invites SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2', [
      at,
      id,
    ])
  }

  async useUserInvite(id: string, at: string): Promise<boolean> {
    // READ COMMITTED: a second writer waits on the row lock, then re-checks the WHERE on the row
    // the first one committed, so the last use is taken once.
    const res = await this.c.query(
      `UPDATE user_invites SET uses = uses + 1
         WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)`,
      [id, at],
    )
    return res.rowCount === 1
  }

  async nodesOwnedBy(userId: string): Promise<StoredNode[]> {
    const res = await this.c.query('SELECT * FROM nodes WHERE owner_id = $1 ORDER BY seq', [userId])
    return (res.rows as Row[]).map(toNode)
  }

  async setNodeOwner(id: string, ownerId: string | null): Promise<void> {
    await this.c.query('UPDATE nodes SET owner_id = $1 WHERE id = $2', [ownerId, id])
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    const r = await one(this.c, 'SELECT * FROM nodes WHERE id = $1', [id])
    return r && toNode(r)
  }

  async networkNodes(networkId: string): Promise<StoredNode[]> {
    return (await rows(this.c, 'SELECT * FROM nodes WHERE network_id = $1 ORDER BY seq', [networkId])).map(
      toNode,
    )
  }

  async publicKeyTaken(networkId: string, publicKey: string): Promise<boolean> {
    const r = await one(this.c, 'SELECT 1 FROM nodes WHERE network_id = $1 AND public_key = $2', [
      networkId,
      publicKey,
    ])
    return r !== undefined
  }

  async nodeNameTaken(networkId: string, name: string): Promise<boolean> {
    return (
      (await one(this.c, 'SELECT 1 FROM nodes WHERE network_id = $1 AND name = $2', [networkId, name])) !==
      undefined
    )
  }

  async nodeNamesWithPrefix(networkId: string, prefix: string): Promise<string[]> {
    // left() rather than LIKE: no wildcard characters to escape.
    const rs = await rows(this.c, 'SELECT name FROM nodes WHERE network_id = $1 AND left(name, $2) = $3', [
      networkId,
      prefix.length,
      prefix,
    ])
    return rs.map((r) => str(r.name))
  }

  async nodeAddressesFrom(networkId: string, from: number, limit: number): Promise<number[]> {
    const rs = await rows(
      this.c,
      'SELECT address FROM nodes WHERE network_id = $1 AND address >= $2 ORDER BY address LIMIT $3',
      [networkId, from, limit],
    )
    return rs.map((r) => Number(r.address))
  }

  async insertNode(n: NewNodeRow): Promise<StoredNode> {
    const r = await one(
      this.c,
      `INSERT INTO nodes (id, network_id, name, hostname, os, public_key, address, credential_hash, status,
           endpoints, tags, ephemeral, owner_id, key_expires_at, created_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) RETURNING *`,
      [
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
        flag(n.ephemeral),
        n.ownerId,
        n.keyExpiresAt,
        n.at,
      ],
    )
    return toNode(r as Row)
  }

  async updateNode(id: string, patch: NodePatch): Promise<void> {
    // Only the fields given; each column name is one of these literals, never caller text.
    const sets: string[] = []
    const params: unknown[] = []
    const set = (column: string, value: unknown) => {
      params.push(value)
      sets.push(`${column} = $${params.length}`)
    }
    if (patch.status !== undefined) set('status', patch.status)
    if (patch.name !== undefined) set('name', patch.name)
    if (patch.endpoints !== undefined) set('endpoints', JSON.stringify(patch.endpoints))
    if (patch.lastSeen !== undefined) set('last_seen', patch.lastSeen)
    if (patch.observedEndpoint !== undefined) set('observed_endpoint', patch.observedEndpoint)
    if (patch.nat !== undefined) {
      set('nat_mapping', patch.nat?.mapping ?? null)
      set('nat_filtering', patch.nat?.filtering ?? null)
    }
    if (patch.publicKey !== undefined) set('public_key', patch.publicKey)
    if (patch.keyExpiresAt !== undefined) set('key_expires_at', patch.keyExpiresAt)
    if (patch.keyWarnedAt !== undefined) set('key_warned_at', patch.keyWarnedAt)
    if (sets.length === 0) return
    params.push(id)
    await this.c.query(`UPDATE nodes SET ${sets.join(', ')} WHERE id = $${params.length}`, params)
  }

  async deleteNode(id: string): Promise<void> {
    await this.c.query('DELETE FROM nodes WHERE id = $1', [id])
  }

  async nodeNamesIn(networkId: string, ids: readonly string[]): Promise<Map<string, string>> {
    const rs = await rows(
      this.c,
      'SELECT id, name FROM nodes WHERE network_id = $1 AND id = ANY($2::text[])',
      [networkId, [...ids]],
    )
    return new Map(rs.map((r) => [str(r.id), str(r.name)]))
  }

  async upsertConnection(
    networkId: string,
    w: ConnectionWrite,
    at: string,
    moveSince: boolean,
    sides?: {a: StoredSide | null; b: StoredSide | null},
  ): Promise<void> {
    const merged = [networkId, w.nodeA, w.nodeB, w.path, w.latencyMs, w.endpointA, w.endpointB, at, moveSince]
    if (!sides) {
      await this.c.query(
        `INSERT INTO connections (network_id, node_a, node_b, path, latency_ms, endpoint_a, endpoint_b,
             since, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8)
           ON CONFLICT (network_id, node_a, node_b) DO UPDATE SET path = excluded.path,
             latency_ms = excluded.latency_ms, endpoint_a = excluded.endpoint_a,
             endpoint_b = excluded.endpoint_b, updated_at = excluded.updated_at,
             since = CASE WHEN $9 THEN excluded.since ELSE connections.since END`,
        merged,
      )
      return
    }
    await this.c.query(
      `INSERT INTO connections (network_id, node_a, node_b, path, latency_ms, endpoint_a, endpoint_b,
           since, updated_at, a_path, a_latency_ms, a_endpoint, a_replica, a_at,
           b_path, b_latency_ms, b_endpoint, b_replica, b_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)
         ON CONFLICT (network_id, node_a, node_b) DO UPDATE SET path = excluded.path,
           latency_ms = excluded.latency_ms, endpoint_a = excluded.endpoint_a,
           endpoint_b = excluded.endpoint_b, updated_at = excluded.updated_at,
           since = CASE WHEN $9 THEN excluded.since ELSE connections.since END,
           a_path = excluded.a_path, a_latency_ms = excluded.a_latency_ms, a_endpoint = excluded.a_endpoint,
           a_replica = excluded.a_replica, a_at = excluded.a_at,
           b_path = excluded.b_path, b_latency_ms = excluded.b_latency_ms, b_endpoint = excluded.b_endpoint,
           b_replica = excluded.b_replica, b_at = excluded.b_at`,
      [...merged, ...sideValues(sides.a), ...sideValues(sides.b)],
    )
  }

  async deleteConnection(networkId: string, nodeA: string, nodeB: string): Promise<void> {
    await this.c.query('DELETE FROM connections WHERE network_id = $1 AND node_a = $2 AND node_b = $3', [
      networkId,
      nodeA,
      nodeB,
    ])
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
    const r = await one(
      this.c,
      `INSERT INTO connection_log (network_id, node_a, node_b, event, from_path, to_path, latency_ms, at)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING seq`,
      [networkId, e.nodeA, e.nodeB, e.event, e.from, e.to, e.latencyMs, e.at],
    )
    return Number((r as Row).seq)
  }

  async trimConnectionLog(networkId: string, keep: number): Promise<void> {
    await this.c.query(
      `DELETE FROM connection_log WHERE network_id = $1 AND seq <= (
         SELECT seq FROM connection_log WHERE network_id = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)`,
      [networkId, keep],
    )
  }

  async lockConnections(
    networkId: string,
    pairs: readonly {nodeA: string; nodeB: string}[],
    at: string,
  ): Promise<StoredPair[]> {
    if (pairs.length === 0) return []
    const as = pairs.map((p) => p.nodeA)
    const bs = pairs.map((p) => p.nodeB)
    // 1. One advisory transaction lock per pair, in ascending key order on every replica, so two
    //    flushes over overlapping pairs queue instead of deadlocking (a hash collision only makes
    //    two pairs share a lock; a deadlock anyway is 40P01, which write() retries).
    await this.c.query(
      `SELECT count(pg_advisory_xact_lock($1, k)) FROM (
         SELECT DISTINCT hashtext($2 || ' ' || a || ' ' || b) AS k
         FROM unnest($3::text[], $4::text[]) AS u(a, b) ORDER BY k) s`,
      [PAIR_LOCK_CLASS, networkId, as, bs],
    )
    // 2. The rows, locked against writers that do not take the pair lock (node removal).
    const rs = await rows(
      this.c,
      `SELECT c.*,
         EXISTS (SELECT 1 FROM presence p WHERE p.node_id = c.node_a AND p.replica = c.a_replica
                   AND p.expires_at >= $2) AS a_held,
         EXISTS (SELECT 1 FROM presence p WHERE p.node_id = c.node_b AND p.replica = c.b_replica
                   AND p.expires_at >= $2) AS b_held
       FROM connections c JOIN unnest($3::text[], $4::text[]) AS u(a, b)
         ON c.node_a = u.a AND c.node_b = u.b
       WHERE c.network_id = $1 FOR UPDATE OF c`,
      [networkId, at, as, bs],
    )
    return rs.map(toStoredPair)
  }

  async setConnectionSides(
    networkId: string,
    nodeA: string,
    nodeB: string,
    sides: {a: StoredSide | null; b: StoredSide | null},
  ): Promise<void> {
    await this.c.query(
      `UPDATE connections SET a_path = $4, a_latency_ms = $5, a_endpoint = $6, a_replica = $7, a_at = $8,
         b_path = $9, b_latency_ms = $10, b_endpoint = $11, b_replica = $12, b_at = $13
       WHERE network_id = $1 AND node_a = $2 AND node_b = $3`,
      [networkId, nodeA, nodeB, ...sideValues(sides.a), ...sideValues(sides.b)],
    )
  }

  async insertRelayKey(key: NewRelayKey & {at: string}): Promise<void> {
    await this.c.query(
      `INSERT INTO relay_keys (id, name, region, key_hash, prefix, created_by, created_at)
         VALUES ($1,$2,$3,$4,$5,$6,$7)`,
      [key.id, key.name, key.region, key.keyHash, key.prefix, key.createdBy, key.at],
    )
  }

  async getRelayKey(id: string): Promise<RelayKeyRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM relay_keys WHERE id = $1', [id])
    return r && toRelayKey(r)
  }

  async relayKeyByHash(keyHash: string): Promise<RelayKeyRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM relay_keys WHERE key_hash = $1', [keyHash])
    return r && toRelayKey(r)
  }

  async revokeRelayKey(id: string, at: string): Promise<void> {
    await this.c.query('UPDATE relay_keys SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2', [at, id])
  }

  async deleteRelaysOfKey(keyId: string): Promise<number> {
    return (await this.c.query('DELETE FROM relays WHERE key_id = $1', [keyId])).rowCount ?? 0
  }

  async upsertRelay(b: RelayBeat): Promise<boolean> {
    // xmax is 0 on a row this statement inserted, and the updating transaction's id otherwise.
    const r = await one(
      this.c,
      `INSERT INTO relays (url, kind, region, key_id, connected, first_seen, last_seen, expires_at)
         VALUES ($1,$2,$3,$4,$5,$6,$6,$7)
       ON CONFLICT (url) DO UPDATE SET kind = excluded.kind, region = excluded.region,
         key_id = excluded.key_id, connected = excluded.connected, last_seen = excluded.last_seen,
         expires_at = excluded.expires_at
       RETURNING (xmax = 0) AS inserted`,
      [b.url, b.kind, b.region, b.keyId, b.connected, b.at, b.expiresAt],
    )
    return r?.inserted === true
  }

  async deleteRelay(url: string): Promise<boolean> {
    return ((await this.c.query('DELETE FROM relays WHERE url = $1', [url])).rowCount ?? 0) > 0
  }

  async deleteExpiredRelays(at: string): Promise<number> {
    return (await this.c.query('DELETE FROM relays WHERE expires_at < $1', [at])).rowCount ?? 0
  }

  async getSetting(name: string): Promise<string | undefined> {
    const r = await one(this.c, 'SELECT value FROM settings WHERE name = $1', [name])
    return r && str(r.value)
  }

  async insertSettingIfAbsent(name: string, value: string, at: string): Promise<string> {
    await this.c.query(
      'INSERT INTO settings (name, value, created_at) VALUES ($1,$2,$3) ON CONFLICT (name) DO NOTHING',
      [name, value, at],
    )
    return (await this.getSetting(name)) as string
  }

  async getPolicy(tenantId: string): Promise<PolicyRecord | undefined> {
    const r = await one(this.c, 'SELECT * FROM policies WHERE tenant_id = $1', [tenantId])
    return r && toPolicy(r as Row)
  }

  async putPolicy(p: PolicyRecord): Promise<void> {
    await this.c.query(
      `INSERT INTO policies (tenant_id, document, version, updated_at, updated_by) VALUES ($1,$2,$3,$4,$5)
         ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document, version = excluded.version,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      [p.tenantId, p.document, p.version, p.updatedAt, p.updatedBy],
    )
  }

  async deletePolicy(tenantId: string): Promise<void> {
    await this.c.query('DELETE FROM policies WHERE tenant_id = $1', [tenantId])
  }

  async lockAuditChain(chain: string): Promise<void> {
    // Held until commit: the next writer of this chain reads the link this one inserts.
    await this.c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [AUDIT_LOCK_CLASS, chain])
  }

  async lastAuditLink(chain: string): Promise<AuditLink | undefined> {
    const r = await one(
      this.c,
      'SELECT chain_seq, hash FROM audit WHERE chain = $1 ORDER BY chain_seq DESC LIMIT 1',
      [chain],
    )
    return r && {seq: Number((r as Row).chain_seq), hash: str((r as Row).hash)}
  }

  async insertAudit(row: AuditRow): Promise<void> {
    const values = auditRowValues(row)
    await this.c.query(
      `INSERT INTO audit (${AUDIT_INSERT_COLUMNS}) VALUES (${values.map((_, k) => `$${k + 1}`).join(',')})`,
      values,
    )
  }
}

/** A driver error as the MeshError the rest of the controller knows, or the error itself. */
function mapError(err: unknown): unknown {
  if (isMeshError(err)) return err
  const unique = postgresUniqueViolation(err)
  if (unique) return uniqueViolation(unique.table, unique.columns, err)
  return postgresStorageError(err) ?? err
}

export class PostgresStore implements Store {
  private lastWriteProbeAt = -Infinity

  /** Takes a migrated pool (open.ts) and owns it from then on: close() ends it. */
  constructor(readonly pool: pg.Pool) {}

  private async q(sql: string, params: unknown[] = []): Promise<Row[]> {
    try {
      return await rows(this.pool, sql, params)
    } catch (err) {
      throw mapError(err)
    }
  }

  private async q1(sql: string, params: unknown[] = []): Promise<Row | undefined> {
    return (await this.q(sql, params))[0]
  }

  async write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let lease: Lease
      try {
        lease = await checkout(this.pool)
      } catch (err) {
        throw mapError(err)
      }
      let failure: unknown
      try {
        await lease.client.query('BEGIN')
        const result = await fn(new PgTx(lease.client))
        await lease.client.query('COMMIT')
        return result
      } catch (err) {
        failure = err
        try {
          await lease.client.query('ROLLBACK')
          failure = undefined // the connection is fine: back to the pool
        } catch {
          // the connection is gone: closed on release, not returned to the pool
        }
        if (attempt < WRITE_ATTEMPTS && isPostgresRetryable(err)) continue
        throw mapError(err)
      } finally {
        lease.release(failure)
      }
    }
  }

  async ping(): Promise<void> {
    await this.q('SELECT 1')
    const t = performance.now()
    if (t - this.lastWriteProbeAt < WRITE_PROBE_INTERVAL_MS) return
    this.lastWriteProbeAt = -Infinity
    await this.q('UPDATE readiness_probe SET probed_at = $1, headroom = $2 WHERE id = 1', [
      new Date().toISOString(),
      crypto.randomBytes(WRITE_PROBE_BYTES),
    ])
    this.lastWriteProbeAt = t
  }

  async close(): Promise<void> {
    await this.pool.end()
  }

  // ---------------------------------------------------------------------------------------------
  // reads

  async hasTenants(): Promise<boolean> {
    return (await this.q1('SELECT 1 FROM tenants LIMIT 1')) !== undefined
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const r = await this.q1('SELECT * FROM tenants WHERE id = $1', [id])
    return r && toTenant(r)
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const r = await this.q1('SELECT * FROM users WHERE id = $1', [id])
    return r && toUser(r)
  }

  async getUserByUsername(username: string): Promise<UserRecord | undefined> {
    const r = await this.q1('SELECT * FROM users WHERE username = $1', [username])
    return r && toUser(r)
  }

  async listUsers(tenantId: string, req: PageRequest): Promise<Page<User>> {
    const rs = await this.q('SELECT * FROM users WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3', [
      tenantId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ])
    return page(rs, req.limit, (r) => publicUser(toUser(r)))
  }

  async getToken(
    hash: string,
  ): Promise<{id: string; userId: string; expiresAt: string; sessionId: string | null} | undefined> {
    const r = await this.q1('SELECT * FROM tokens WHERE token_hash = $1', [hash])
    return (
      r && {
        id: str(r.id),
        userId: str(r.user_id),
        expiresAt: toTimeText(r.expires_at),
        sessionId: strOrNull(r.session_id),
      }
    )
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    const r = await this.q1(`${SESSION_SQL} WHERE s.id = $1`, [id])
    return r && toSession(r)
  }

  async listSessions(userId: string, at: string): Promise<SessionRecord[]> {
    const rows = await this.q(
      `${SESSION_SQL} WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at >= $2 ORDER BY s.seq LIMIT 1000`,
      [userId, at],
    )
    return rows.map(toSession)
  }

  async getMfa(userId: string): Promise<MfaRecord | undefined> {
    const r = await this.q1('SELECT * FROM user_mfa WHERE user_id = $1', [userId])
    return r && toMfa(r)
  }

  async identitiesOf(userId: string): Promise<IdentityRecord[]> {
    const rs = await this.q(
      'SELECT * FROM user_identities WHERE user_id = $1 ORDER BY created_at, issuer, subject',
      [userId],
    )
    return rs.map(toIdentity)
  }

  async listNetworks(tenantId: string, req: PageRequest): Promise<Page<Network>> {
    const rs = await this.q(
      'SELECT * FROM networks WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [tenantId, decodeCursor(req.cursor), req.limit + 1],
    )
    return page(rs, req.limit, (r) => publicNetwork(toNetwork(r)))
  }

  async getNetwork(id: string): Promise<Network | undefined> {
    const r = await this.q1('SELECT * FROM networks WHERE id = $1', [id])
    return r && publicNetwork(toNetwork(r))
  }

  async getNetworkByName(tenantId: string, name: string): Promise<Network | undefined> {
    const r = await this.q1('SELECT * FROM networks WHERE tenant_id = $1 AND name = $2', [tenantId, name])
    return r && publicNetwork(toNetwork(r))
  }

  async listMembers(networkId: string): Promise<NetworkMember[]> {
    const rs = await this.q(
      `SELECT m.user_id, u.username, m.role FROM network_members m JOIN users u ON u.id = m.user_id
         WHERE m.network_id = $1 ORDER BY u.username`,
      [networkId],
    )
    return rs.map((r) => ({userId: str(r.user_id), username: str(r.username), role: r.role as Role}))
  }

  async getMemberRole(networkId: string, userId: string): Promise<Role | undefined> {
    const r = await this.q1('SELECT role FROM network_members WHERE network_id = $1 AND user_id = $2', [
      networkId,
      userId,
    ])
    return r ? (r.role as Role) : undefined
  }

  async listInvites(networkId: string, req: PageRequest): Promise<Page<Invite>> {
    const rs = await this.q(`${INVITE_SQL} WHERE i.network_id = $1 AND i.seq > $2 ORDER BY i.seq LIMIT $3`, [
      networkId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ])
    return page(rs, req.limit, (r) => publicInvite(toInvite(r)))
  }

  async getInvite(id: string): Promise<InviteRecord | undefined> {
    const r = await this.q1(`${INVITE_SQL} WHERE i.id = $1`, [id])
    return r && toInvite(r)
  }

  async listUserInvites(tenantId: string, req: PageRequest): Promise<Page<UserInvite>> {
    const rs = await this.q(
      'SELECT * FROM user_invites WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [tenantId, decodeCursor(req.cursor), req.limit + 1],
    )
    return page(rs, req.limit, toUserInvite)
  }

  async getUserInvite(id: string): Promise<UserInvite | undefined> {
    const r = await this.q1('SELECT * FROM user_invites WHERE id = $1', [id])
    return r && toUserInvite(r)
  }

  async userInviteByCode(codeHash: string): Promise<UserInvite | undefined> {
    const r = await this.q1('SELECT * FROM user_invites WHERE code_hash = $1', [codeHash])
    return r && toUserInvite(r)
  }

  async listAuthKeys(networkId: string, req: PageRequest): Promise<Page<AuthKey>> {
    const rs = await this.q(`${AUTHKEY_SQL} WHERE k.network_id = $1 AND k.seq > $2 ORDER BY k.seq LIMIT $3`, [
      networkId,
      decodeCursor(req.cursor),
      req.limit + 1,
    ])
    return page(rs, req.limit, (r) => publicAuthKey(toAuthKey(r)))
  }

  async getAuthKey(id: string): Promise<AuthKeyRecord | undefined> {
    const r = await this.q1(`${AUTHKEY_SQL} WHERE k.id = $1`, [id])
    return r && toAuthKey(r)
  }

  async getNode(id: string): Promise<StoredNode | undefined> {
    const r = await this.q1('SELECT * FROM nodes WHERE id = $1', [id])
    return r && toNode(r)
  }

  async getNodeByCredential(credentialHash: string): Promise<StoredNode | undefined> {
    const r = await this.q1('SELECT * FROM nodes WHERE credential_hash = $1', [credentialHash])
    return r && toNode(r)
  }

  async listNodes(
    networkId: string,
    filter: {status?: NodeStatus | undefined},
    req: PageRequest,
  ): Promise<Page<StoredNode>> {
    const rs = await this.q(
      `SELECT * FROM nodes WHERE network_id = $1 AND ($2::text IS NULL OR status = $2) AND seq > $3
         ORDER BY seq LIMIT $4`,
      [networkId, filter.status ?? null, decodeCursor(req.cursor), req.limit + 1],
    )
    return page(rs, req.limit, toNode)
  }

  async allNodes(networkId: string): Promise<StoredNode[]> {
    return (await this.q('SELECT * FROM nodes WHERE network_id = $1 ORDER BY seq', [networkId])).map(toNode)
  }

  async tenantNodes(tenantId: string): Promise<StoredNode[]> {
    const rs = await this.q(
      'SELECT nd.* FROM nodes nd JOIN networks n ON n.id = nd.network_id WHERE n.tenant_id = $1 ORDER BY nd.seq',
      [tenantId],
    )
    return rs.map(toNode)
  }

  async ephemeralNodes(): Promise<StoredNode[]> {
    return (await this.q('SELECT * FROM nodes WHERE ephemeral = 1')).map(toNode)
  }

  async activeNodeKeys(): Promise<{id: string; publicKey: string}[]> {
    const rs = await this.q("SELECT id, public_key FROM nodes WHERE status = 'active'")
    return rs.map((r) => ({id: str(r.id), publicKey: str(r.public_key)}))
  }

  async keyExpiries(q: {
    after: string | null
    until: string
    unwarned?: boolean | undefined
    limit: number
  }): Promise<StoredNode[]> {
    const rs = await this.q(
      `SELECT * FROM nodes WHERE status = 'active' AND key_expires_at IS NOT NULL
         AND ($1::text IS NULL OR key_expires_at > $1) AND key_expires_at <= $2
         AND (NOT $3::boolean OR key_warned_at IS NULL)
         ORDER BY key_expires_at, id LIMIT $4`,
      [q.after, q.until, q.unwarned === true, q.limit],
    )
    return rs.map(toNode)
  }

  async tenantKeyDays(tenantId: string): Promise<number> {
    const r = await this.q1('SELECT node_key_days FROM tenants WHERE id = $1', [tenantId])
    return r ? Number(r.node_key_days) : 0
  }

  async netmapVersion(networkId: string): Promise<number> {
    const r = await this.q1('SELECT netmap_version FROM networks WHERE id = $1', [networkId])
    return r ? Number(r.netmap_version) : 0
  }

  async changesSince(
    networkId: string,
    version: number,
  ): Promise<{version: number; nodeIds: string[]} | undefined> {
    // One statement, one snapshot: the current version and the log rows agree.
    const r = await this.q1(
      `SELECT coalesce((SELECT netmap_version FROM networks WHERE id = $1), 0) AS current,
              (SELECT min(version) FROM netmap_changes WHERE network_id = $1) AS oldest,
              ARRAY(SELECT DISTINCT node_id FROM netmap_changes WHERE network_id = $1 AND version > $2) AS ids`,
      [networkId, version],
    )
    const current = Number(r?.current ?? 0)
    if (version > current) return undefined
    if (version === current) return {version: current, nodeIds: []}
    if (r?.oldest === null || r?.oldest === undefined || Number(r.oldest) > version + 1) return undefined
    return {version: current, nodeIds: (r.ids as string[]).map(str)}
  }

  /**
   * The newest change-log row of every network (beyond the Store interface: the replica change
   * feed replays these after its notification connection came back).
   */
  async latestChanges(): Promise<
    {networkId: string; version: number; nodeId: string; kind: NodeChange['kind']}[]
  > {
    const rs = await this.q(
      `SELECT DISTINCT ON (network_id) network_id, version, node_id, coalesce(kind, 'changed') AS kind
         FROM netmap_changes ORDER BY network_id, version DESC`,
    )
    return rs.map((r) => ({
      networkId: str(r.network_id),
      version: Number(r.version),
      nodeId: str(r.node_id),
      kind: r.kind as NodeChange['kind'],
    }))
  }

  async allConnections(networkId: string): Promise<StoredConnection[]> {
    return (await this.q('SELECT * FROM connections WHERE network_id = $1', [networkId])).map(
      toStoredConnection,
    )
  }

  async listConnections(
    networkId: string,
    filter: {nodeId?: string | undefined},
    req: PageRequest,
  ): Promise<Page<Connection>> {
    const rs = await this.q(
      `SELECT c.*, na.name AS name_a, nb.name AS name_b FROM connections c
         JOIN nodes na ON na.id = c.node_a AND na.status = 'active'
         JOIN nodes nb ON nb.id = c.node_b AND nb.status = 'active'
         WHERE c.network_id = $1 AND c.seq > $2 AND ($3::text IS NULL OR c.node_a = $3 OR c.node_b = $3)
         ORDER BY c.seq LIMIT $4`,
      [networkId, decodeCursor(req.cursor), filter.nodeId ?? null, req.limit + 1],
    )
    return page(rs, req.limit, (r) => {
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
    const rs = await this.q(
      `SELECT l.*, na.name AS name_a, nb.name AS name_b FROM connection_log l
         LEFT JOIN nodes na ON na.id = l.node_a
         LEFT JOIN nodes nb ON nb.id = l.node_b
         WHERE l.network_id = $1 AND l.seq < $2 AND ($3::text IS NULL OR l.node_a = $3 OR l.node_b = $3)
         ORDER BY l.seq DESC LIMIT $4`,
      [networkId, before, filter.nodeId ?? null, req.limit + 1],
    )
    return page(rs, req.limit, (r) => ({
      id: Number(r.seq),
      at: toTimeText(r.at),
      a: {id: str(r.node_a), name: strOrNull(r.name_a)},
      b: {id: str(r.node_b), name: strOrNull(r.name_b)},
      event: r.event as ConnectionEvent,
      from: r.from_path as Path,
      to: r.to_path as Path,
      latencyMs: numOrNull(r.latency_ms),
    }))
  }

  async listRelayKeys(req: PageRequest): Promise<Page<RelayKey>> {
    const rs = await this.q('SELECT * FROM relay_keys WHERE seq > $1 ORDER BY seq LIMIT $2', [
      decodeCursor(req.cursor),
      req.limit + 1,
    ])
    return page(rs, req.limit, (r) => publicRelayKey(toRelayKey(r)))
  }

  async getRelayKey(id: string): Promise<RelayKeyRecord | undefined> {
    const r = await this.q1('SELECT * FROM relay_keys WHERE id = $1', [id])
    return r && toRelayKey(r)
  }

  async relayKeyByHash(keyHash: string): Promise<RelayKeyRecord | undefined> {
    const r = await this.q1('SELECT * FROM relay_keys WHERE key_hash = $1', [keyHash])
    return r && toRelayKey(r)
  }

  async liveRelays(at: string): Promise<RelayRecord[]> {
    return (await this.q('SELECT * FROM relays WHERE expires_at >= $1 ORDER BY region, url', [at])).map(
      toRelay,
    )
  }

  async getSetting(name: string): Promise<string | undefined> {
    const r = await this.q1('SELECT value FROM settings WHERE name = $1', [name])
    return r && str(r.value)
  }

  async listAudit(filter: AuditFilter, req: PageRequest): Promise<Page<AuditEntry>> {
    const q = auditOrder(filter, req)
    const rs = await this.q(
      `SELECT *, ${q.key} AS seq FROM audit WHERE ${q.scope} = $1 AND ${q.key} ${q.op} $2
           AND ($3::text IS NULL OR at >= $3)
           AND ($4::text IS NULL OR actor = $4 OR actor_name = $4)
           AND ($5::text IS NULL OR network_id = $5)
         ORDER BY ${q.key} ${q.dir} LIMIT $6`,
      [
        filter.tenantId,
        q.from,
        filter.since ?? null,
        filter.actor ?? null,
        filter.networkId ?? null,
        req.limit + 1,
      ],
    )
    return page(rs, req.limit, toAudit)
  }

  async getPolicy(tenantId: string): Promise<PolicyRecord | undefined> {
    const [r] = await this.q('SELECT * FROM policies WHERE tenant_id = $1', [tenantId])
    return r && toPolicy(r)
  }

  async auditLinks(chain: string, afterSeq: number, limit: number): Promise<StoredAuditRow[]> {
    const rs = await this.q(
      'SELECT * FROM audit WHERE chain = $1 AND chain_seq > $2 ORDER BY chain_seq LIMIT $3',
      [chain, afterSeq, limit],
    )
    return rs.map(toStoredAuditRow)
  }

  async countUnchainedAudit(tenantId: string | null): Promise<number> {
    const rs = await this.q(
      'SELECT count(*) AS n FROM audit WHERE tenant_id IS NOT DISTINCT FROM $1 AND chain IS NULL',
      [tenantId],
    )
    return Number(rs[0]?.n ?? 0)
  }

  async identityGroupsOf(tenantId: string): Promise<Map<string, string[]>> {
    const rs = await this.q(
      `SELECT i.user_id, i.groups FROM user_identities i JOIN users u ON u.id = i.user_id
       WHERE u.tenant_id = $1 AND i.groups <> '[]'`,
      [tenantId],
    )
    return groupsByUser(rs)
  }
}

const toTimeText = (v: unknown): string => (v instanceof Date ? v.toISOString() : (v as string))
