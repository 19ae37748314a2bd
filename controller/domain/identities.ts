/**
 * OIDC logins (issue 10): the rules, run inside store.write(tx => ...). A person's identity at
 * an OpenID provider (issuer + subject, unique) names one user. Its first login creates that
 * user under a free name made from its claims: in the configured tenant, or, when the login
 * carries a user invite, in the invite's tenant with the invite's role, spending one use of it
 * (user-invites.ts acceptUserInvite). Every login stores the group claim it brought, sets the
 * tenant role the groups map to (where a mapping is configured, only in the configured tenant;
 * never a superuser's), starts a session and is audited, all in one transaction.
 * The ID token was checked before (controller/auth/oidc.ts); what is decided here is only what
 * the database must decide atomically.
 */
import type {Role} from '../../shared/protocol/control-api.js'
import {MeshError} from '../../shared/errors.js'
import type {AuditContext, OidcFlowRecord, Tx, UserRecord} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'
import {startSession, type NewSession} from './sessions.js'
import {acceptUserInvite} from './user-invites.js'

/** What a checked ID token (and UserInfo) said, and what the issuer's settings make of it. */
export interface OidcLogin {
  /** The configured issuer's name. */
  readonly provider: string
  readonly issuer: string
  readonly subject: string
  readonly email: string | null
  readonly groups: readonly string[]
  /** Names to try for a new user, best first (already in the user-name alphabet). */
  readonly usernames: readonly string[]
  /** The tenant (by name) a new user lands in. */
  readonly tenant: string
  /** The role the groups map to; undefined when the issuer maps none. */
  readonly mappedRole: Role | undefined
  readonly defaultRole: Role
  /** The id a new user gets. */
  readonly newUserId: string
  /** The stored form of a user without a password (never verifies). */
  readonly passwordHash: string
  /**
   * SHA-256 of a user invite code the login carries (`mesh signup INVITE --oidc`): the identity
   * must be new, and its user is made by the invite. Undefined: a plain login.
   */
  readonly inviteHash?: string | undefined
}

/** Whether two group claims hold the same groups (order and repeats aside). */
const sameGroups = (a: readonly string[], b: readonly string[]): boolean => {
  const sa = new Set(a)
  const sb = new Set(b)
  return sa.size === sb.size && [...sa].every((g) => sb.has(g))
}

/** Names tried per candidate: NAME, NAME-2 ... NAME-9. */
const SUFFIXES = 9

/**
 * Finds or creates the user of an OIDC identity and starts its session. `session.userId` is
 * filled in here; `base` is the audit context without its actor (the user, known only here).
 * `groupsChanged`: a known identity came with other groups than its last login (policies that
 * name IdP groups must then be applied again to the user's nodes).
 */
export async function oidcLogin(
  tx: Tx,
  login: OidcLogin,
  session: Omit<NewSession, 'userId'>,
  base: Omit<AuditContext, 'actor' | 'actorName'>,
): Promise<{user: UserRecord; created: boolean; groupsChanged: boolean}> {
  const known = await tx.getIdentity(login.issuer, login.subject)
  let user: UserRecord | undefined
  let created = false
  let invited = false
  const groupsChanged = known !== undefined && !sameGroups(known.groups, login.groups)
  if (login.inviteHash !== undefined) {
    // An invite makes a new account: an identity that already has one keeps it, and the invite
    // stays unspent (nothing is written).
    if (known) {
      const existing = await tx.getUser(known.userId)
      throw new MeshError('OIDC_IDENTITY_TAKEN', {
        message: `this ${login.provider} identity already has an account${existing ? ` (${existing.username})` : ''}; the invite was not used`,
      })
    }
    const username = await freeUsername(tx, login.usernames)
    user = await acceptUserInvite(
      tx,
      login.inviteHash,
      {
        id: login.newUserId,
        username,
        identity: {
          kind: 'oidc',
          passwordHash: login.passwordHash,
          issuer: login.issuer,
          subject: login.subject,
          provider: login.provider,
          email: login.email,
          groups: login.groups,
        },
      },
      {...base, actor: `user:${login.newUserId}`, actorName: username},
    )
    created = true
    invited = true
  } else if (known) {
    user = await tx.getUser(known.userId)
    if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
    await tx.updateIdentityLogin(login.issuer, login.subject, {
      email: login.email,
      groups: login.groups,
      at: base.at,
    })
  } else {
    const tenant = await tx.getTenantByName(login.tenant)
    if (!tenant) {
      throw new MeshError('OIDC_LOGIN_FAILED', {
        message: `the tenant ${login.tenant} that new users of issuer ${login.provider} land in does not exist`,
        hint: 'ask the controller admin to create it or to fix `tenant` in the OIDC config',
      })
    }
    const username = await freeUsername(tx, login.usernames)
    user = await tx.insertUser({
      id: login.newUserId,
      tenantId: tenant.id,
      username,
      passwordHash: login.passwordHash,
      role: login.mappedRole ?? login.defaultRole,
      superuser: false,
      at: base.at,
    })
    await tx.insertIdentity({
      issuer: login.issuer,
      subject: login.subject,
      userId: user.id,
      provider: login.provider,
      email: login.email,
      groups: login.groups,
      createdAt: base.at,
      lastLoginAt: base.at,
    })
    created = true
  }
  const ctx: AuditContext = {...base, actor: `user:${user.id}`, actorName: user.username}
  // The role mapping is the configured tenant's: a user an invite put in another tenant keeps
  // the role the invite gave (an admin there changes it).
  const mapsRole =
    login.mappedRole !== undefined &&
    !created &&
    !user.superuser &&
    login.mappedRole !== user.role &&
    (await tx.getTenantByName(login.tenant))?.id === user.tenantId
  // An invited user was audited as user.signup (acceptUserInvite).
  if (created && !invited) {
    await chainAudit(tx, ctx, {
      tenantId: user.tenantId,
      action: 'user.create',
      targetType: 'user',
      targetId: user.id,
      networkId: null,
      detail: {username: user.username, role: user.role, via: 'oidc', provider: login.provider},
    })
  } else if (mapsRole && login.mappedRole !== undefined) {
    await tx.setUserRole(user.id, login.mappedRole)
    await chainAudit(tx, ctx, {
      tenantId: user.tenantId,
      action: 'user.update',
      targetType: 'user',
      targetId: user.id,
      networkId: null,
      detail: {role: login.mappedRole, previousRole: user.role, via: 'oidc groups'},
    })
    user = {...user, role: login.mappedRole}
  }
  await chainAudit(tx, ctx, {
    tenantId: user.tenantId,
    action: 'user.oidc_login',
    targetType: 'user',
    targetId: user.id,
    networkId: null,
    detail: {
      provider: login.provider,
      issuer: login.issuer,
      subject: login.subject,
      groups: login.groups,
      created,
      ...(invited ? {invited: true} : {}),
    },
  })
  await startSession(tx, {...session, userId: user.id}, ctx)
  return {user, created, groupsChanged}
}

async function freeUsername(tx: Tx, candidates: readonly string[]): Promise<string> {
  for (const name of candidates) {
    for (let i = 1; i <= SUFFIXES; i++) {
      const tryName = i === 1 ? name : `${name.slice(0, 60)}-${i}`
      if (!(await tx.usernameTaken(tryName))) return tryName
    }
  }
  throw new MeshError('USERNAME_TAKEN', {
    message: 'no free user name could be made from the OIDC claims',
    hint: 'ask an admin to free the name, or to set a distinct preferred_username at the provider',
  })
}

/**
 * Logins in progress one client address may hold at once. A start writes a row and (device
 * flow) asks the provider without authentication; a person needs one or two at a time, and each
 * ends when finished or after at most 30 min.
 */
export const OIDC_FLOWS_PER_SOURCE = 10

/**
 * RATE_LIMITED when `source` already holds `limit` (the OIDC config's pendingPerAddress, default
 * OIDC_FLOWS_PER_SOURCE) logins in progress at `at`. Asked before the provider is (oidc.ts) and
 * again, in the same transaction as the insert, by startOidcFlow. (PostgreSQL: starts from one
 * address racing each other may pass one count together; the overshoot is bounded by how many
 * run at once.)
 */
export async function checkOidcFlowRoom(
  tx: Tx,
  source: string | null,
  at: string,
  limit = OIDC_FLOWS_PER_SOURCE,
): Promise<void> {
  if (source === null) return
  if ((await tx.countOidcFlowsFrom(source, at)) >= limit) {
    throw new MeshError('RATE_LIMITED', {
      message: `too many OpenID Connect logins in progress from this address (${limit})`,
      hint: 'finish or abandon the ones started (each expires within 30 min), then try again',
    })
  }
}

/** A new OIDC login in progress; a sweep of expired ones rides along. */
export async function startOidcFlow(tx: Tx, f: OidcFlowRecord, limit = OIDC_FLOWS_PER_SOURCE): Promise<void> {
  await tx.deleteExpiredOidcFlows(f.createdAt)
  await checkOidcFlowRoom(tx, f.source ?? null, f.createdAt, limit)
  await tx.insertOidcFlow(f)
}

/**
 * Takes a code flow out (finished at most once: a wrong state or code burns it too). Undefined
 * when it is unknown, already taken, or expired at `at`.
 */
export async function takeOidcFlow(tx: Tx, idHash: string, at: string): Promise<OidcFlowRecord | undefined> {
  const f = await tx.getOidcFlow(idHash)
  if (!f || !(await tx.deleteOidcFlow(idHash))) return undefined
  return f.expiresAt <= at ? undefined : f
}

/**
 * A device flow's poll: undefined when it is unknown or expired (then deleted); else the flow,
 * and whether this poll may ask the provider now (its next poll time is moved on by
 * `intervalMs`, so two polls at once ask it only once).
 */
export async function pollOidcFlow(
  tx: Tx,
  idHash: string,
  at: string,
  nextPollAt: string,
): Promise<{flow: OidcFlowRecord; ask: boolean} | undefined> {
  const f = await tx.getOidcFlow(idHash)
  if (!f || f.kind !== 'device') return undefined
  if (f.expiresAt <= at) {
    await tx.deleteOidcFlow(idHash)
    return undefined
  }
  if (f.nextPollAt !== null && f.nextPollAt > at) return {flow: f, ask: false}
  // A conditional UPDATE, not a write after the read above: on PostgreSQL two polls at once both
  // read the poll as due, and only the claim tells which of them asks the provider.
  return {flow: f, ask: await tx.claimOidcFlowPoll(idHash, at, nextPollAt)}
}

/** The provider said slow_down: a longer interval from now on. */
export async function slowOidcFlow(
  tx: Tx,
  idHash: string,
  nextPollAt: string,
  data: Readonly<Record<string, unknown>>,
): Promise<void> {
  await tx.setOidcFlowPoll(idHash, nextPollAt, data)
}

/** Ends a flow (done, denied or expired at the provider). */
export async function endOidcFlow(tx: Tx, idHash: string): Promise<boolean> {
  return tx.deleteOidcFlow(idHash)
}
