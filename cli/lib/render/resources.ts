// Human renderings of the controller's resources; --json prints the protocol objects instead.
import type {
  AuditEntry,
  AuthKey,
  Invite,
  Network,
  NetworkMember,
  Node,
  NodeDetail,
  RelayKey,
  Tenant,
  User,
  UserInvite,
} from '../../../shared/protocol/control-api.js'
import {KEY_EXPIRY_WARNING_MS} from '../../../shared/protocol/control-api.js'
import {type Column, renderFields, renderTable, stdoutColor} from './table.js'

/** `2026-11-22 10:04Z`: minutes are enough on a screen, and UTC avoids guessing the zone. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '-'
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 16).replace('T', ' ')}Z`
}

/**
 * A node key's expiry for people: `never`, `expired`, or the time with how far off it is, marked
 * `(soon)` inside the warning window; `-` when the controller did not say (an older one).
 */
export function keyExpiryText(iso: string | null | undefined, now: Date = new Date()): string {
  if (iso === undefined) return '-'
  if (iso === null) return 'never'
  const left = new Date(iso).getTime() - now.getTime()
  if (Number.isNaN(left)) return iso
  if (left <= 0) return 'expired'
  const days = Math.floor(left / 86_400_000)
  const span = days >= 1 ? `${days}d` : `${Math.max(1, Math.floor(left / 3_600_000))}h`
  return `${formatTime(iso)} (in ${span}${left <= KEY_EXPIRY_WARNING_MS ? ', soon' : ''})`
}

/** An invite's or auth key's state in one word, as a person wants to see it. */
export function grantState(
  g: {revokedAt: string | null; expiresAt: string; uses: number; maxUses?: number | null; reusable?: boolean},
  now: Date = new Date(),
): string {
  if (g.revokedAt) return 'revoked'
  if (new Date(g.expiresAt).getTime() <= now.getTime()) return 'expired'
  if (g.maxUses != null && g.uses >= g.maxUses) return 'used up'
  if (g.reusable === false && g.uses > 0) return 'used'
  return 'active'
}

const table = <T>(rows: readonly T[], columns: Column<T>[], empty: string): string =>
  renderTable(rows, columns, {color: stdoutColor(), empty})

export const networksTable = (rows: readonly Network[]): string =>
  table(
    rows,
    [
      {header: 'NAME', get: (n) => n.name},
      {header: 'CIDR', get: (n) => n.cidr},
      {header: 'POLICY', get: (n) => n.joinPolicy},
      {
        header: 'NODES',
        get: (n) => (n.maxNodes === null ? n.nodeCount : `${n.nodeCount}/${n.maxNodes}`),
        align: 'right',
      },
      {header: 'ID', get: (n) => n.id},
      {header: 'DESCRIPTION', get: (n) => n.description},
    ],
    'No networks. Create one with `mesh network create NAME --cidr 10.20.0.0/24`.',
  )

export const networkDetails = (n: Network): string =>
  renderFields([
    ['name', n.name],
    ['id', n.id],
    ['cidr', n.cidr],
    ['join policy', n.joinPolicy],
    ['nodes', n.nodeCount],
    ['max nodes', n.maxNodes ?? 'unlimited'],
    ['description', n.description],
    ['created', formatTime(n.createdAt)],
  ])

export const invitesTable = (rows: readonly Invite[]): string =>
  table(
    rows,
    [
      {header: 'ID', get: (i) => i.id},
      {header: 'ROLE', get: (i) => i.role},
      {header: 'USES', get: (i) => `${i.uses}/${i.maxUses ?? '∞'}`, align: 'right'},
      {header: 'STATE', get: (i) => grantState(i)},
      {header: 'EXPIRES', get: (i) => formatTime(i.expiresAt)},
      {header: 'CREATED', get: (i) => formatTime(i.createdAt)},
    ],
    'No invites. Create one with `mesh invite create --network NAME`.',
  )

export const userInvitesTable = (rows: readonly UserInvite[]): string =>
  table(
    rows,
    [
      {header: 'ID', get: (i) => i.id},
      {header: 'ROLE', get: (i) => i.role},
      {header: 'USES', get: (i) => `${i.uses}/${i.maxUses ?? '∞'}`, align: 'right'},
      {header: 'STATE', get: (i) => grantState(i)},
      {header: 'EXPIRES', get: (i) => formatTime(i.expiresAt)},
      {header: 'CREATED', get: (i) => formatTime(i.createdAt)},
    ],
    'No user invites. Create one with `mesh user invite --role member`.',
  )

export const authKeysTable = (rows: readonly AuthKey[]): string =>
  table(
    rows,
    [
      {header: 'ID', get: (k) => k.id},
      {header: 'PREFIX', get: (k) => k.prefix},
      {
        header: 'KIND',
        get: (k) =>
          [
            k.reusable ? 'reusable' : 'single-use',
            k.ephemeral && 'ephemeral',
            k.preApproved && 'pre-approved',
          ]
            .filter(Boolean)
            .join(','),
      },
      {header: 'TAGS', get: (k) => k.tags.join(',')},
      {header: 'USES', get: (k) => k.uses, align: 'right'},
      {header: 'STATE', get: (k) => grantState(k)},
      {header: 'EXPIRES', get: (k) => formatTime(k.expiresAt)},
    ],
    'No auth keys. Create one with `mesh authkey create --network NAME`.',
  )

export const relayKeysTable = (rows: readonly RelayKey[]): string =>
  table(
    rows,
    [
      {header: 'ID', get: (k) => k.id},
      {header: 'NAME', get: (k) => k.name},
      {header: 'REGION', get: (k) => k.region},
      {header: 'PREFIX', get: (k) => k.prefix},
      {header: 'STATE', get: (k) => (k.revokedAt === null ? 'live' : 'revoked')},
      {header: 'CREATED', get: (k) => formatTime(k.createdAt)},
    ],
    'No relay keys. Create one with `mesh relay key create --region NAME`.',
  )

export const nodesTable = (rows: readonly Node[]): string =>
  table(
    rows,
    [
      {header: 'ID', get: (n) => n.id},
      {header: 'NAME', get: (n) => n.name},
      {header: 'ADDRESS', get: (n) => n.address},
      {header: 'STATUS', get: (n) => n.status},
      {header: 'ONLINE', get: (n) => (n.online ? 'yes' : 'no')},
      {header: 'LAST SEEN', get: (n) => formatTime(n.lastSeen)},
      {header: 'OS', get: (n) => n.os},
      {header: 'TAGS', get: (n) => n.tags.join(',')},
      {header: 'KEY EXPIRY', get: (n) => keyExpiryText(n.keyExpiresAt)},
    ],
    'No nodes.',
  )

export const nodeDetails = (n: Node): string =>
  renderFields([
    ['name', n.name],
    ['id', n.id],
    ['address', n.address],
    ['status', n.status],
    ['online', n.online ? 'yes' : 'no'],
    ['public key', n.publicKey],
    ['hostname', n.hostname],
    ['os', n.os],
    ['tags', n.tags.join(', ')],
    ['ephemeral', n.ephemeral ? 'yes' : 'no'],
    ['key expires', keyExpiryText(n.keyExpiresAt)],
    ['last seen', formatTime(n.lastSeen)],
    ['created', formatTime(n.createdAt)],
  ])

/** `12.3 ms`; `<1 ms` below a millisecond; `-` when not measured. */
export const formatLatency = (ms: number | null): string =>
  ms === null ? '-' : ms < 1 ? '<1 ms' : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`

/** The node's connections under its details (`mesh node show`). */
export const nodeConnectionsTable = (n: NodeDetail): string =>
  table(
    n.connections,
    [
      {header: 'PEER', get: (c) => c.peer.name ?? c.peer.id},
      {header: 'PATH', get: (c) => c.path},
      {header: 'LATENCY', get: (c) => formatLatency(c.latencyMs), align: 'right'},
      {header: 'ENDPOINT', get: (c) => c.endpoint},
      {header: 'SINCE', get: (c) => formatTime(c.since)},
    ],
    'No connections reported.',
  )

export const auditTable = (rows: readonly AuditEntry[]): string =>
  table(
    rows,
    [
      {header: 'TIME', get: (a) => formatTime(a.at)},
      {header: 'ACTOR', get: (a) => a.actorName || a.actor},
      {header: 'ACTION', get: (a) => a.action},
      {header: 'TARGET', get: (a) => (a.targetId ? `${a.targetType}:${a.targetId}` : a.targetType)},
      {header: 'SOURCE', get: (a) => a.sourceAddress},
    ],
    'No audit entries match.',
  )

/** One audit entry on one line, as `mesh audit --follow` prints them. */
export const auditLine = (a: AuditEntry): string =>
  [
    formatTime(a.at),
    a.actorName || a.actor,
    a.action,
    a.targetId ? `${a.targetType}:${a.targetId}` : a.targetType,
    a.sourceAddress ?? '',
  ]
    .join('  ')
    .trimEnd()

export const usersTable = (rows: readonly User[]): string =>
  table(
    rows,
    [
      {header: 'ID', get: (u) => u.id},
      {header: 'USER', get: (u) => u.username},
      {header: 'ROLE', get: (u) => u.role},
      {header: 'SUPERUSER', get: (u) => (u.superuser ? 'yes' : 'no')},
      {header: 'CREATED', get: (u) => formatTime(u.createdAt)},
    ],
    'No users.',
  )

export const membersTable = (rows: readonly NetworkMember[], network: string): string =>
  table(
    rows,
    [
      {header: 'USER', get: (m) => m.username},
      {header: 'ROLE', get: (m) => m.role},
      {header: 'ID', get: (m) => m.userId},
    ],
    `No network roles; everyone has their tenant role. Give one with \`mesh network member set ${network} USER --role admin\`.`,
  )

export const tenantDetails = (t: {tenant: Tenant; owner: User}): string =>
  renderFields([
    ['tenant', t.tenant.name],
    ['id', t.tenant.id],
    ['owner', t.owner.username],
    ['owner id', t.owner.id],
    ['created', formatTime(t.tenant.createdAt)],
  ])
