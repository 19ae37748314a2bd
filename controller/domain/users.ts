/**
 * Tenants, users and their tokens: the rules, run inside store.write(tx => ...). Uniqueness
 * (tenant names, usernames) is checked first for a clear answer and held by UNIQUE constraints,
 * which store/errors.ts maps to the same codes when two writers race.
 */
import type {Role, Tenant, User} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import {
  publicUser,
  type AuditContext,
  type AuditRecord,
  type NodeChange,
  type Tx,
  type UserRecord,
} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'
import {reassignNode, removeNode} from './nodes.js'

export async function createTenantWithOwner(
  tx: Tx,
  tenant: {id: string; name: string},
  owner: {id: string; username: string; passwordHash: string; superuser: boolean},
  ctx: AuditContext,
): Promise<{tenant: Tenant; owner: User}> {
  const t = await tx.insertTenant({id: tenant.id, name: tenant.name, at: ctx.at})
  if (await tx.usernameTaken(owner.username)) throw new MeshError('USERNAME_TAKEN')
  const u = await tx.insertUser({...owner, tenantId: tenant.id, role: 'owner', at: ctx.at})
  await chainAudit(tx, ctx, {
    tenantId: tenant.id,
    action: 'tenant.create',
    targetType: 'tenant',
    targetId: tenant.id,
    networkId: null,
    detail: {name: tenant.name, owner: owner.username},
  })
  return {tenant: t, owner: publicUser(u)}
}

export async function createUser(
  tx: Tx,
  user: {id: string; tenantId: string; username: string; passwordHash: string; role: Role},
  ctx: AuditContext,
): Promise<User> {
  if (await tx.usernameTaken(user.username)) throw new MeshError('USERNAME_TAKEN')
  const u = await tx.insertUser({...user, superuser: false, at: ctx.at})
  await chainAudit(tx, ctx, {
    tenantId: user.tenantId,
    action: 'user.create',
    targetType: 'user',
    targetId: user.id,
    networkId: null,
    detail: {username: user.username, role: user.role},
  })
  return publicUser(u)
}

export async function updateUserRole(tx: Tx, id: string, role: Role, ctx: AuditContext): Promise<User> {
  const before = await tx.getUser(id)
  if (!before) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  await tx.setUserRole(id, role)
  await chainAudit(tx, ctx, {
    tenantId: before.tenantId,
    action: 'user.update',
    targetType: 'user',
    targetId: id,
    networkId: null,
    detail: {role, previousRole: before.role},
  })
  return publicUser({...before, role})
}

/**
 * Renames the user: USERNAME_TAKEN when the name exists (checked for a clear answer, held by the
 * UNIQUE constraint when two writers race). Its sessions keep working: tokens name the user by id.
 */
export async function renameUser(tx: Tx, id: string, username: string, ctx: AuditContext): Promise<User> {
  const before = await tx.getUser(id)
  if (!before) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  if (username === before.username) return publicUser(before)
  if (await tx.usernameTaken(username)) throw new MeshError('USERNAME_TAKEN')
  await tx.setUsername(id, username)
  await chainAudit(tx, ctx, {
    tenantId: before.tenantId,
    action: 'user.rename',
    targetType: 'user',
    targetId: id,
    networkId: null,
    detail: {username, previousUsername: before.username},
  })
  return publicUser({...before, username})
}

/** What happens to the nodes a deleted user owns (absent: refuse while it owns any). */
export type UserNodesChoice = {readonly nodes: 'remove'} | {readonly nodes: 'reassign'; readonly to: string}

/**
 * Deletes the user. Nodes it owns (nodes.owner_id) are removed or given to another user of the
 * tenant, each a node change peers hear of, in the same transaction; with no choice a user that
 * owns nodes is USER_HAS_NODES and nothing changes (Headscale refuses too). Returns the node
 * changes for the change feed.
 */
export async function deleteUser(
  tx: Tx,
  id: string,
  ctx: AuditContext,
  choice?: UserNodesChoice,
): Promise<{changes: NodeChange[]; removed: string[]; reassigned: string[]}> {
  const before = await tx.getUser(id)
  if (!before) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  const owned = await tx.nodesOwnedBy(id)
  if (owned.length > 0 && choice === undefined) {
    throw new MeshError('USER_HAS_NODES', {
      message: `${before.username} owns ${owned.length} node(s): ${owned
        .slice(0, 5)
        .map((n) => n.name)
        .join(', ')}${owned.length > 5 ? ', ...' : ''}`,
    })
  }
  let heir: UserRecord | undefined
  if (choice?.nodes === 'reassign') {
    heir = await tx.getUser(choice.to)
    if (!heir || heir.tenantId !== before.tenantId) {
      throw new MeshError('NOT_FOUND', {message: 'the user to reassign the nodes to was not found'})
    }
    if (heir.id === id) {
      throw new MeshError('VALIDATION_FAILED', {
        message: 'to: cannot reassign the nodes to the user being deleted',
      })
    }
  }
  const changes: NodeChange[] = []
  for (const node of owned) {
    const change = heir ? await reassignNode(tx, node.id, heir.id, ctx) : await removeNode(tx, node.id, ctx)
    if (change) changes.push(change)
  }
  await tx.deleteUser(id)
  await chainAudit(tx, ctx, {
    tenantId: before.tenantId,
    action: 'user.delete',
    targetType: 'user',
    targetId: id,
    networkId: null,
    detail: {
      username: before.username,
      ...(owned.length === 0 ? {} : {nodes: choice?.nodes, count: owned.length}),
      ...(heir ? {to: heir.id} : {}),
    },
  })
  const ids = owned.map((n) => n.id)
  return heir ? {changes, removed: [], reassigned: ids} : {changes, removed: ids, reassigned: []}
}

/** Stores a login's token (hash only) and sweeps expired ones, so the table stays bounded. */
export async function createToken(
  tx: Tx,
  token: {id: string; hash: string; userId: string; expiresAt: string},
  ctx: AuditContext,
): Promise<void> {
  const user = await tx.getUser(token.userId)
  if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  await tx.insertToken({...token, at: ctx.at})
  await tx.deleteExpiredTokens(ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: user.tenantId,
    action: 'user.login',
    targetType: 'token',
    targetId: token.id,
    networkId: null,
  })
}

/** Logout: a token that is already gone is not an error. */
export async function deleteToken(tx: Tx, hash: string, ctx: AuditContext): Promise<void> {
  const token = await tx.getToken(hash)
  if (!token) return
  await tx.deleteToken(hash)
  await chainAudit(tx, ctx, {
    tenantId: token.tenantId,
    action: 'user.logout',
    targetType: 'token',
    targetId: token.id,
    networkId: null,
  })
}

/** An audit entry with no other change (failed logins, for instance). */
export async function appendAudit(
  tx: Tx,
  entry: AuditRecord & {detail: Record<string, unknown>},
  ctx: AuditContext,
): Promise<void> {
  await chainAudit(tx, ctx, entry)
}
