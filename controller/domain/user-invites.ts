/**
 * User invites (issue 10): the rules, run inside store.write(tx => ...). An invite lets people
 * make their own account in a tenant with the invite's role; it keeps an expiry, a use count and
 * a revocation like a device invite. Accepting it makes the account and spends one use in the
 * same transaction: the use is one conditional UPDATE (Tx.useUserInvite), so the last use is
 * taken once however many controllers race for it.
 *
 * How the account proves itself is an `Identity`: a password (POST /signup), or an OpenID
 * identity (an OIDC login that carries the invite: domain/identities.ts oidcLogin), for which the
 * user row gets no password and user_identities the issuer + subject, in the same transaction.
 */
import type {UserInvite} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import type {AuditContext, NewUserInvite, Tx, UserRecord} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'

/** How a new account will log in. */
export type Identity =
  | {readonly kind: 'password'; readonly passwordHash: string}
  | {
      readonly kind: 'oidc'
      /** What the users row stores: a value no password verifies (auth/oidc.ts NO_PASSWORD). */
      readonly passwordHash: string
      readonly issuer: string
      readonly subject: string
      /** The configured issuer's name. */
      readonly provider: string
      readonly email: string | null
      readonly groups: readonly string[]
    }

export async function createUserInvite(tx: Tx, inv: NewUserInvite, ctx: AuditContext): Promise<UserInvite> {
  if (!(await tx.lockTenant(inv.tenantId))) throw new MeshError('NOT_FOUND', {message: 'tenant not found'})
  await tx.insertUserInvite({...inv, at: ctx.at})
  await chainAudit(tx, ctx, {
    tenantId: inv.tenantId,
    action: 'userinvite.create',
    targetType: 'userinvite',
    targetId: inv.id,
    networkId: null,
    detail: {role: inv.role, maxUses: inv.maxUses, expiresAt: inv.expiresAt},
  })
  return (await tx.getUserInvite(inv.id)) as UserInvite
}

/** Revoking twice is a no-op that keeps the first time. */
export async function revokeUserInvite(tx: Tx, id: string, ctx: AuditContext): Promise<UserInvite> {
  const inv = await tx.getUserInvite(id)
  if (!inv) throw new MeshError('NOT_FOUND', {message: 'user invite not found'})
  await tx.revokeUserInvite(id, ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: inv.tenantId,
    action: 'userinvite.revoke',
    targetType: 'userinvite',
    targetId: id,
    networkId: null,
  })
  return (await tx.getUserInvite(id)) as UserInvite
}

/**
 * The invite if it admits a new account at `at`; INVITE_INVALID / _REVOKED / _EXPIRED / _USED_UP
 * otherwise. The coordinator also asks before it hashes a password (scrypt), so a made-up code
 * costs the controller one lookup, not a slow hash.
 */
export function requireAdmits(inv: UserInvite | undefined, at: string): UserInvite {
  if (!inv) throw new MeshError('INVITE_INVALID')
  if (inv.revokedAt !== null) throw new MeshError('INVITE_REVOKED')
  if (inv.expiresAt <= at) throw new MeshError('INVITE_EXPIRED')
  if (inv.maxUses !== null && inv.uses >= inv.maxUses) throw new MeshError('INVITE_USED_UP')
  return inv
}

/**
 * Makes the account an invite admits: INVITE_INVALID / _REVOKED / _EXPIRED / _USED_UP when the
 * invite does not admit (nothing is written), USERNAME_TAKEN when the name exists (no use is
 * spent). Audited as user.signup, by the new user.
 */
export async function acceptUserInvite(
  tx: Tx,
  codeHash: string,
  user: {id: string; username: string; identity: Identity},
  ctx: AuditContext,
): Promise<UserRecord> {
  const inv = requireAdmits(await tx.userInviteByCode(codeHash), ctx.at)
  if (await tx.usernameTaken(user.username)) throw new MeshError('USERNAME_TAKEN')
  // Checked above for a clear answer; this is what holds when sign-ups race for the last use.
  if (!(await tx.useUserInvite(inv.id, ctx.at))) throw new MeshError('INVITE_USED_UP')
  const created = await tx.insertUser({
    id: user.id,
    tenantId: inv.tenantId,
    username: user.username,
    passwordHash: user.identity.passwordHash,
    role: inv.role,
    superuser: false,
    at: ctx.at,
  })
  const identity = user.identity
  if (identity.kind === 'oidc') {
    await tx.insertIdentity({
      issuer: identity.issuer,
      subject: identity.subject,
      userId: user.id,
      provider: identity.provider,
      email: identity.email,
      groups: identity.groups,
      createdAt: ctx.at,
      lastLoginAt: ctx.at,
    })
  }
  await chainAudit(tx, ctx, {
    tenantId: inv.tenantId,
    action: 'user.signup',
    targetType: 'user',
    targetId: user.id,
    networkId: null,
    detail: {
      username: user.username,
      role: inv.role,
      invite: inv.id,
      via: identity.kind,
      ...(identity.kind === 'oidc' ? {provider: identity.provider} : {}),
    },
  })
  return created
}
