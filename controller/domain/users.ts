/**
 * Tenants, users and their tokens: the rules, run inside store.write(tx => ...). Uniqueness
 * (tenant names, usernames) is checked first for a clear answer and held by UNIQUE constraints,
 * which store/errors.ts maps to the same codes when two writers race.
 */
import type {Role, Tenant, User} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import {publicUser, type AuditContext, type AuditRecord, type Tx} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'

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

export async function deleteUser(tx: Tx, id: string, ctx: AuditContext): Promise<void> {
  const before = await tx.getUser(id)
  if (!before) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  await tx.deleteUser(id)
  await chainAudit(tx, ctx, {
    tenantId: before.tenantId,
    action: 'user.delete',
    targetType: 'user',
    targetId: id,
    networkId: null,
    detail: {username: before.username},
  })
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
