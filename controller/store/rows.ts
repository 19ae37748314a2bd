/**
 * Row mappers shared by the adapters: a database row (snake_case columns) to the store's types.
 * Tolerant of both drivers' value shapes: SQLite gives 0/1 for booleans and TEXT for JSON and
 * times; PostgreSQL may give booleans, parsed JSON, Date objects and BIGINTs as strings.
 */
import type {AuditEntry, NodeStatus, Role, Tenant, UserInvite} from '../../shared/protocol/control-api.js'
import {formatIPv4} from '../../shared/net/ipv4.js'
import type {FilteringBehaviour, MappingBehaviour} from '../../shared/nat/net-report.js'
import {decodeCursor} from './paging.js'
import type {
  AuditFilter,
  AuditRow,
  AuthKeyRecord,
  IdentityRecord,
  InviteRecord,
  OidcFlowRecord,
  PolicyRecord,
  MfaRecord,
  NetworkRecord,
  PageRequest,
  RefreshTokenRecord,
  RelayKeyRecord,
  RelayRecord,
  StoredAuditRow,
  StoredConnection,
  StoredNode,
  StoredPair,
  StoredSide,
  SessionRecord,
  UserRecord,
} from './store.js'

export type Row = Record<string, unknown>

/** A time column as RFC 3339 text (SQLite stores text; a timestamptz arrives as a Date). */
const time = (v: unknown): string => (v instanceof Date ? v.toISOString() : (v as string))
const timeOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : time(v))
export const str = (v: unknown): string => v as string
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : (v as string))
const bool = (v: unknown): boolean => v === true || v === 1 || v === 1n || v === '1'
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))
const json = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T))

export const toStoredConnection = (r: Row): StoredConnection => ({
  nodeA: str(r.node_a),
  nodeB: str(r.node_b),
  path: r.path as StoredConnection['path'],
  latencyMs: numOrNull(r.latency_ms),
  endpointA: strOrNull(r.endpoint_a),
  endpointB: strOrNull(r.endpoint_b),
  since: time(r.since),
  updatedAt: time(r.updated_at),
})

/** One side's columns (prefix `a_` or `b_`, migration 0008); null when the side does not report. */
const sideOf = (r: Row, p: 'a' | 'b'): StoredSide | null =>
  r[`${p}_path`] === null || r[`${p}_path`] === undefined
    ? null
    : {
        path: r[`${p}_path`] as StoredSide['path'],
        latencyMs: numOrNull(r[`${p}_latency_ms`]),
        endpoint: strOrNull(r[`${p}_endpoint`]),
        replica: str(r[`${p}_replica`]),
        at: time(r[`${p}_at`]),
      }

/** A row read with `a_held`/`b_held` (Tx.lockConnections). */
export const toStoredPair = (r: Row): StoredPair => ({
  ...toStoredConnection(r),
  sideA: sideOf(r, 'a'),
  sideB: sideOf(r, 'b'),
  heldA: bool(r.a_held),
  heldB: bool(r.b_held),
})

export const toTenant = (r: Row): Tenant => ({
  id: str(r.id),
  name: str(r.name),
  createdAt: time(r.created_at),
})
export const toUser = (r: Row): UserRecord => ({
  id: str(r.id),
  tenantId: str(r.tenant_id),
  username: str(r.username),
  role: r.role as Role,
  superuser: bool(r.superuser),
  createdAt: time(r.created_at),
  passwordHash: str(r.password_hash),
})
export const toNetwork = (r: Row): NetworkRecord => ({
  id: str(r.id),
  tenantId: str(r.tenant_id),
  name: str(r.name),
  cidr: str(r.cidr),
  description: str(r.description),
  joinPolicy: r.join_policy as NetworkRecord['joinPolicy'],
  maxNodes: numOrNull(r.max_nodes),
  nodeCount: Number(r.node_count ?? 0),
  createdAt: time(r.created_at),
  ipamCursor: numOrNull(r.ipam_cursor),
  netmapVersion: Number(r.netmap_version ?? 0),
})
export const toInvite = (r: Row): InviteRecord => ({
  id: str(r.id),
  networkId: str(r.network_id),
  tenantId: str(r.tenant_id),
  role: r.role as Role,
  maxUses: numOrNull(r.max_uses),
  uses: Number(r.uses),
  expiresAt: time(r.expires_at),
  revokedAt: timeOrNull(r.revoked_at),
  createdAt: time(r.created_at),
  createdBy: str(r.created_by),
})
export const toUserInvite = (r: Row): UserInvite => ({
  id: str(r.id),
  tenantId: str(r.tenant_id),
  role: r.role as Role,
  maxUses: numOrNull(r.max_uses),
  uses: Number(r.uses),
  expiresAt: time(r.expires_at),
  revokedAt: timeOrNull(r.revoked_at),
  createdAt: time(r.created_at),
  createdBy: str(r.created_by),
})
export const toAuthKey = (r: Row): AuthKeyRecord => ({
  id: str(r.id),
  networkId: str(r.network_id),
  tenantId: str(r.tenant_id),
  prefix: str(r.prefix),
  reusable: bool(r.reusable),
  ephemeral: bool(r.ephemeral),
  preApproved: bool(r.pre_approved),
  tags: json<string[]>(r.tags),
  uses: Number(r.uses),
  expiresAt: time(r.expires_at),
  revokedAt: timeOrNull(r.revoked_at),
  createdAt: time(r.created_at),
  createdBy: str(r.created_by),
})
export const toNode = (r: Row): StoredNode => ({
  id: str(r.id),
  networkId: str(r.network_id),
  name: str(r.name),
  hostname: str(r.hostname),
  os: str(r.os),
  publicKey: str(r.public_key),
  address: formatIPv4(Number(r.address)),
  status: r.status as NodeStatus,
  lastSeen: timeOrNull(r.last_seen),
  endpoints: json<string[]>(r.endpoints),
  tags: json<string[]>(r.tags),
  ephemeral: bool(r.ephemeral),
  createdAt: time(r.created_at),
  ...(typeof r.owner_id === 'string' ? {ownerId: r.owner_id} : {}),
  keyExpiresAt: timeOrNull(r.key_expires_at),
  keyWarnedAt: timeOrNull(r.key_warned_at),
  // Absent rather than null when none was observed: most nodes' shapes stay as they were.
  ...(typeof r.observed_endpoint === 'string' ? {observedEndpoint: r.observed_endpoint} : {}),
  // Absent when the node reported none; the columns' CHECKs hold them to the RFC 4787 names.
  ...(typeof r.nat_mapping === 'string' && typeof r.nat_filtering === 'string'
    ? {nat: {mapping: r.nat_mapping as MappingBehaviour, filtering: r.nat_filtering as FilteringBehaviour}}
    : {}),
})
export const toAudit = (r: Row): AuditEntry => ({
  id: Number(r.id),
  at: time(r.at),
  tenantId: strOrNull(r.tenant_id),
  actor: str(r.actor),
  actorName: str(r.actor_name),
  action: str(r.action),
  targetType: str(r.target_type),
  targetId: strOrNull(r.target_id),
  networkId: strOrNull(r.network_id),
  sourceAddress: strOrNull(r.source_address),
  requestId: strOrNull(r.request_id),
  detail: json<Record<string, unknown>>(r.detail),
  seq: r.chain_seq === null || r.chain_seq === undefined ? null : Number(r.chain_seq),
})

export const toPolicy = (r: Row): PolicyRecord => ({
  tenantId: str(r.tenant_id),
  document: str(r.document),
  version: Number(r.version),
  updatedAt: time(r.updated_at),
  updatedBy: str(r.updated_by),
})

/**
 * How a page of the audit log is read (the SQL around it is each adapter's): newest first by
 * entry id (the cursor is the last id seen; none = from the newest), or, following the log
 * (AuditFilter.afterSeq), oldest first along the tenant's chain by link number (the cursor is the
 * last number seen). Column names and operators are these literals only, never caller text.
 */
export function auditOrder(
  filter: AuditFilter,
  req: PageRequest,
): {scope: 'tenant_id' | 'chain'; key: 'id' | 'chain_seq'; op: '<' | '>'; dir: 'DESC' | 'ASC'; from: number} {
  if (filter.afterSeq !== undefined)
    return {
      scope: 'chain',
      key: 'chain_seq',
      op: '>',
      dir: 'ASC',
      from: Math.max(filter.afterSeq, decodeCursor(req.cursor)),
    }
  return {
    scope: 'tenant_id',
    key: 'id',
    op: '<',
    dir: 'DESC',
    from: decodeCursor(req.cursor) || Number.MAX_SAFE_INTEGER,
  }
}

/** The columns of an audit row as both adapters insert it, and its values in that order. */
export const AUDIT_INSERT_COLUMNS =
  'at, tenant_id, actor, actor_name, action, target_type, target_id, network_id, source_address, request_id, detail, chain, chain_seq, prev_hash, hash'
export const auditRowValues = (r: AuditRow): unknown[] => [
  r.at,
  r.tenantId,
  r.actor,
  r.actorName,
  r.action,
  r.targetType,
  r.targetId,
  r.networkId,
  r.sourceAddress,
  r.requestId,
  r.detail,
  r.chain,
  r.chainSeq,
  r.prevHash,
  r.hash,
]

/** An audit row exactly as stored (no value normalised: verification hashes what is there). */
export const toStoredAuditRow = (r: Row): StoredAuditRow => ({
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
  detail: str(r.detail),
  chain: str(r.chain),
  chainSeq: Number(r.chain_seq),
  prevHash: str(r.prev_hash),
  hash: str(r.hash),
})

export const toRelayKey = (r: Row): RelayKeyRecord => ({
  id: str(r.id),
  name: str(r.name),
  region: str(r.region),
  prefix: str(r.prefix),
  keyHash: str(r.key_hash),
  createdAt: time(r.created_at),
  createdBy: strOrNull(r.created_by),
  revokedAt: timeOrNull(r.revoked_at),
})

export const toRelay = (r: Row): RelayRecord => ({
  url: str(r.url),
  kind: r.kind as RelayRecord['kind'],
  region: str(r.region),
  keyId: strOrNull(r.key_id),
  connected: Number(r.connected),
  firstSeen: time(r.first_seen),
  lastSeen: time(r.last_seen),
  expiresAt: time(r.expires_at),
})

// ---- sessions, refresh tokens and MFA (schema 0014); sessions are read joined with users
// (u.tenant_id AS tenant_id)

export const toSession = (r: Row): SessionRecord => ({
  id: str(r.id),
  userId: str(r.user_id),
  tenantId: str(r.tenant_id),
  createdAt: time(r.created_at),
  lastUsedAt: time(r.last_used_at),
  expiresAt: time(r.expires_at),
  sourceAddress: strOrNull(r.source_address),
  revokedAt: timeOrNull(r.revoked_at),
  revokedReason: strOrNull(r.revoked_reason) as SessionRecord['revokedReason'],
})

export const toRefreshToken = (r: Row): RefreshTokenRecord => ({
  hash: str(r.token_hash),
  sessionId: str(r.session_id),
  createdAt: time(r.created_at),
  expiresAt: time(r.expires_at),
  retiredAt: timeOrNull(r.retired_at),
  retiredBy: strOrNull(r.retired_by),
})

export const toMfa = (r: Row): MfaRecord => ({
  userId: str(r.user_id),
  secret: str(r.secret),
  createdAt: time(r.created_at),
  enabledAt: timeOrNull(r.enabled_at),
  lastStep: numOrNull(r.last_step),
})

export const toIdentity = (r: Row): IdentityRecord => ({
  issuer: str(r.issuer),
  subject: str(r.subject),
  userId: str(r.user_id),
  provider: str(r.provider),
  email: strOrNull(r.email),
  groups: json<string[]>(r.groups),
  createdAt: time(r.created_at),
  lastLoginAt: time(r.last_login_at),
})

export const toOidcFlow = (r: Row): OidcFlowRecord => ({
  idHash: str(r.id_hash),
  kind: r.kind as OidcFlowRecord['kind'],
  provider: str(r.provider),
  data: json<Record<string, unknown>>(r.data),
  createdAt: time(r.created_at),
  expiresAt: time(r.expires_at),
  nextPollAt: timeOrNull(r.next_poll_at),
})

/**
 * Rows of (user_id, groups) of user_identities as user id -> the union of their group claims,
 * sorted (a stable order, so two reads of one state compare equal); empty claims left out.
 */
export function groupsByUser(rows: readonly Row[]): Map<string, string[]> {
  const sets = new Map<string, Set<string>>()
  for (const r of rows) {
    const groups = json<string[]>(r.groups)
    if (!Array.isArray(groups) || groups.length === 0) continue
    const userId = str(r.user_id)
    let set = sets.get(userId)
    if (!set) sets.set(userId, (set = new Set()))
    for (const g of groups) if (typeof g === 'string') set.add(g)
  }
  const out = new Map<string, string[]>()
  for (const [id, set] of sets) out.set(id, [...set].sort())
  return out
}
