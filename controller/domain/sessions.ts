/**
 * Sessions (a login and the refresh tokens that followed it: one token family) and TOTP MFA: the
 * rules, run inside store.write(tx => ...). Secrets arrive here as hashes only; the TOTP
 * arithmetic (which time step a code belongs to) is controller/auth/totp.ts's, done before the
 * transaction, so what is checked here is only what the database must decide atomically: is this
 * refresh token still the family's current one, is this time step newer than the last accepted
 * one, is this recovery code unused.
 */
import {MeshError} from '../../shared/errors.js'
import type {AuditContext, SessionRecord, Tx} from '../store/store.js'
import {appendAudit as chainAudit} from './audit.js'

/** A new session with its first access and refresh token (hashes only). */
export interface NewSession {
  readonly sessionId: string
  readonly userId: string
  readonly access: {readonly id: string; readonly hash: string; readonly expiresAt: string}
  readonly refresh: {readonly hash: string; readonly expiresAt: string}
}

/** Logs in: the session, its first token pair, a sweep of what expired, and the audit entry. */
export async function startSession(tx: Tx, s: NewSession, ctx: AuditContext): Promise<void> {
  const user = await tx.getUser(s.userId)
  if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  await tx.insertSession({
    id: s.sessionId,
    userId: s.userId,
    at: ctx.at,
    expiresAt: s.refresh.expiresAt,
    sourceAddress: ctx.sourceAddress,
  })
  await tx.insertToken({
    id: s.access.id,
    hash: s.access.hash,
    userId: s.userId,
    at: ctx.at,
    expiresAt: s.access.expiresAt,
    sessionId: s.sessionId,
  })
  await tx.insertRefreshToken({
    hash: s.refresh.hash,
    sessionId: s.sessionId,
    at: ctx.at,
    expiresAt: s.refresh.expiresAt,
  })
  await tx.deleteExpiredTokens(ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: user.tenantId,
    action: 'user.login',
    targetType: 'session',
    targetId: s.sessionId,
    networkId: null,
  })
}

export interface RefreshRequest {
  /** Hash of the refresh token presented. */
  readonly presented: string
  readonly access: {readonly id: string; readonly hash: string; readonly expiresAt: string}
  readonly refresh: {readonly hash: string; readonly expiresAt: string}
  /**
   * How long after a refresh token was exchanged the same client (same source address) may
   * present it again without that counting as a replay: two of its processes refreshing at
   * once. The second is told REFRESH_TOKEN_RACED and re-reads its stored tokens.
   */
  readonly graceMs: number
  /**
   * The family's access tokens that expired before this are deleted with the refresh; later
   * ones stay, so that another process of the client still holding one is told TOKEN_EXPIRED
   * (and refreshes) rather than UNAUTHENTICATED (and gives up).
   */
  readonly sweepBefore: string
}

export type RefreshOutcome =
  | {readonly kind: 'refreshed'; readonly session: SessionRecord}
  /** A retired token came back: the family is revoked (committed); the caller answers REUSED. */
  | {readonly kind: 'reused'; readonly sessionId: string}

/**
 * Exchanges a refresh token for a new pair (rotation with reuse detection):
 *  1. An unknown token, or one of a revoked or expired session, is REFRESH_TOKEN_INVALID.
 *  2. The family's current token is retired by ONE conditional update: of two replicas that
 *     present it at once exactly one retires it (the other finds it retired, step 3).
 *  3. A retired token presented again is a replay, unless the same client address presents it
 *     within `graceMs` of its exchange (REFRESH_TOKEN_RACED; nothing changes). A replay revokes
 *     the whole family at once (its access tokens are deleted) and is audited; this is returned,
 *     not thrown, so that the revocation commits.
 *  4. The winner gets a new access and refresh token in the same family; the session's
 *     expiry slides on and its access tokens long expired (sweepBefore) are swept. Refreshes are not audited (one
 *     every access-token lifetime per session would drown the log); logins and revocations are.
 */
export async function refreshSession(tx: Tx, r: RefreshRequest, ctx: AuditContext): Promise<RefreshOutcome> {
  const at = ctx.at
  let token = await tx.getRefreshToken(r.presented)
  if (!token) throw new MeshError('REFRESH_TOKEN_INVALID')
  const session = await tx.getSession(token.sessionId)
  // 1. A revoked family stays revoked: replaying its tokens changes nothing more.
  if (!session || session.revokedAt !== null || session.expiresAt <= at) {
    throw new MeshError('REFRESH_TOKEN_INVALID')
  }
  if (token.retiredAt === null) {
    if (token.expiresAt <= at) throw new MeshError('REFRESH_TOKEN_INVALID')
    // 2.
    if (await tx.retireRefreshToken(r.presented, at, ctx.sourceAddress)) {
      // 4.
      await tx.insertToken({
        id: r.access.id,
        hash: r.access.hash,
        userId: session.userId,
        at,
        expiresAt: r.access.expiresAt,
        sessionId: session.id,
      })
      await tx.insertRefreshToken({
        hash: r.refresh.hash,
        sessionId: session.id,
        at,
        expiresAt: r.refresh.expiresAt,
      })
      await tx.touchSession(session.id, at, r.refresh.expiresAt, ctx.sourceAddress)
      await tx.deleteExpiredSessionTokens(session.id, r.sweepBefore)
      return {
        kind: 'refreshed',
        session: {
          ...session,
          lastUsedAt: at,
          expiresAt: r.refresh.expiresAt,
          sourceAddress: ctx.sourceAddress,
        },
      }
    }
    // Lost the race of step 2: read what the winner wrote.
    token = await tx.getRefreshToken(r.presented)
    if (!token) throw new MeshError('REFRESH_TOKEN_INVALID')
  }
  // 3.
  const sinceRetired = Date.parse(at) - Date.parse(token.retiredAt ?? at)
  if (token.retiredBy !== null && token.retiredBy === ctx.sourceAddress && sinceRetired <= r.graceMs) {
    throw new MeshError('REFRESH_TOKEN_RACED')
  }
  await tx.revokeSession(session.id, at, 'reuse')
  await chainAudit(tx, ctx, {
    tenantId: session.tenantId,
    action: 'session.reuse_detected',
    targetType: 'session',
    targetId: session.id,
    networkId: null,
    detail: {
      userId: session.userId,
      retiredAt: token.retiredAt,
      retiredBy: token.retiredBy,
      presentedBy: ctx.sourceAddress,
    },
  })
  return {kind: 'reused', sessionId: session.id}
}

/**
 * Revokes a session at once (logout, `mesh session revoke`): its access tokens stop working and
 * its refresh token is retired. Revoking a revoked session is not an error and writes nothing.
 */
export async function revokeSession(
  tx: Tx,
  id: string,
  reason: 'logout' | 'revoked',
  ctx: AuditContext,
): Promise<void> {
  const session = await tx.getSession(id)
  if (!session) throw new MeshError('NOT_FOUND', {message: 'session not found'})
  if (!(await tx.revokeSession(id, ctx.at, reason))) return
  await chainAudit(tx, ctx, {
    tenantId: session.tenantId,
    action: reason === 'logout' ? 'user.logout' : 'session.revoke',
    targetType: 'session',
    targetId: id,
    networkId: null,
    detail: {userId: session.userId},
  })
}

// ---- TOTP MFA

/** A second factor as checked before the transaction: the code's time step, or a recovery code's hash. */
export type SecondFactor =
  | {readonly kind: 'totp'; readonly secret: string; readonly step: number}
  | {readonly kind: 'recovery'; readonly hash: string}

/**
 * Uses up a second factor: a TOTP time step newer than the last accepted one (RFC 6238 §5.2: a
 * code is accepted once), checked against the secret it was computed with (the secret may have
 * changed since it was read), or an unused recovery code. False when it cannot be used.
 */
export async function useSecondFactor(
  tx: Tx,
  userId: string,
  f: SecondFactor,
  ctx: AuditContext,
): Promise<boolean> {
  const mfa = await tx.getMfa(userId)
  if (!mfa || mfa.enabledAt === null) return false
  if (f.kind === 'totp') return mfa.secret === f.secret && tx.useTotpStep(userId, f.step)
  return tx.useRecoveryCode(userId, f.hash, ctx.at)
}

/** Starts MFA: a new secret, pending until confirmed. MFA_ALREADY_ENABLED when it is on. */
export async function beginMfa(tx: Tx, userId: string, secret: string, ctx: AuditContext): Promise<void> {
  const user = await tx.getUser(userId)
  if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  const mfa = await tx.getMfa(userId)
  if (mfa?.enabledAt) throw new MeshError('MFA_ALREADY_ENABLED')
  await tx.putPendingMfa(userId, secret, ctx.at)
}

/**
 * Turns pending MFA on with its first code and stores the recovery codes (hashes). The code's
 * step is recorded, so the same code cannot then log in.
 */
export async function confirmMfa(
  tx: Tx,
  userId: string,
  code: {secret: string; step: number},
  recoveryHashes: readonly string[],
  ctx: AuditContext,
): Promise<void> {
  const user = await tx.getUser(userId)
  if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  const mfa = await tx.getMfa(userId)
  if (!mfa) throw new MeshError('MFA_NOT_ENABLED', {message: 'no MFA setup is pending for this account'})
  if (mfa.enabledAt) throw new MeshError('MFA_ALREADY_ENABLED')
  if (mfa.secret !== code.secret || !(await tx.useTotpStep(userId, code.step))) {
    throw new MeshError('MFA_CODE_INVALID')
  }
  await tx.enableMfa(userId, ctx.at)
  await tx.putRecoveryCodes(userId, recoveryHashes, ctx.at)
  await chainAudit(tx, ctx, {
    tenantId: user.tenantId,
    action: 'user.mfa_enable',
    targetType: 'user',
    targetId: userId,
    networkId: null,
  })
}

/** Turns MFA off with a current code or a recovery code (used up either way). */
export async function disableMfa(tx: Tx, userId: string, f: SecondFactor, ctx: AuditContext): Promise<void> {
  const user = await tx.getUser(userId)
  if (!user) throw new MeshError('NOT_FOUND', {message: 'user not found'})
  const mfa = await tx.getMfa(userId)
  if (!mfa?.enabledAt) throw new MeshError('MFA_NOT_ENABLED')
  if (!(await useSecondFactor(tx, userId, f, ctx))) throw new MeshError('MFA_CODE_INVALID')
  await tx.deleteMfa(userId)
  await chainAudit(tx, ctx, {
    tenantId: user.tenantId,
    action: 'user.mfa_disable',
    targetType: 'user',
    targetId: userId,
    networkId: null,
    detail: {with: f.kind},
  })
}

/**
 * True when a stored TOTP secret is sealed: sealed forms start with their version (`v1:`);
 * base32, what was stored before, has no lowercase letters and no `:`.
 */
export const isSealedSecret = (stored: string): boolean => /^v\d+:/.test(stored)

/**
 * What sealMfaSecrets needs of the controller's secrets key (controller/auth/secrets-key.ts):
 * its id, which key a stored secret names, and sealing a plain one for its user.
 */
export interface MfaSealer {
  readonly keyId: string
  /** The key id a stored secret was sealed with (`?` when unreadable); undefined when plain. */
  sealedWith(stored: string): string | undefined
  seal(userId: string, plain: string): string
}

/**
 * At start, in one transaction: seals every plain TOTP secret (stored before secrets were sealed)
 * with `sealer`, each only if its row still holds the secret read (a replica that changed it
 * meanwhile wins), so running it again, or on two replicas at once, seals nothing twice.
 * SECRETS_KEY_MISMATCH, sealing nothing, when any secret names another key. Without a sealer it
 * only counts. The counts are of the rows before it ran; sealedNow is what it sealed.
 */
export async function sealMfaSecrets(
  tx: Tx,
  sealer: MfaSealer | undefined,
): Promise<{total: number; sealed: number; plain: number; sealedNow: number}> {
  const rows = await tx.listMfa()
  const plain = rows.filter((r) => !isSealedSecret(r.secret))
  const counts = {total: rows.length, sealed: rows.length - plain.length, plain: plain.length, sealedNow: 0}
  if (!sealer) return counts
  const foreign = rows.filter((r) => {
    const id = sealer.sealedWith(r.secret)
    return id !== undefined && id !== sealer.keyId
  })
  if (foreign.length > 0) {
    const keyIds = [...new Set(foreign.map((r) => sealer.sealedWith(r.secret)!))].sort()
    throw new MeshError('SECRETS_KEY_MISMATCH', {
      message: `the MFA secrets of ${foreign.length} account(s) were sealed with secrets key ${keyIds.join(', ')}, not with this controller's key ${sealer.keyId}`,
      detail: {keyIds, controllerKeyId: sealer.keyId, users: foreign.map((r) => r.userId).slice(0, 20)},
    })
  }
  for (const r of plain) {
    if (await tx.replaceMfaSecret(r.userId, r.secret, sealer.seal(r.userId, r.secret))) counts.sealedNow++
  }
  return counts
}
