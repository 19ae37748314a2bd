/**
 * Secrets the controller hands out (invite codes, auth keys, user access and refresh tokens, node credentials, OIDC login handles) and
 * how it keeps them: 32 random bytes (256 bits) as base64url behind a recognisable prefix, shown
 * once, stored only as a SHA-256 hash. A plain hash is enough for such secrets: they are not
 * guessable, so there is nothing for a salt or a slow hash to protect.
 */
import {createHash, randomBytes} from 'node:crypto'

export const SECRET_PREFIX = {
  invite: 'inv_',
  userInvite: 'uinv_',
  authKey: 'mkey_',
  token: 'mtok_',
  refresh: 'mref_',
  node: 'mnode_',
  /** The handle of an OIDC login in progress (schema 0017). */
  oidcFlow: 'moidc_',
} as const

export function newSecret(kind: keyof typeof SECRET_PREFIX): string {
  return SECRET_PREFIX[kind] + randomBytes(32).toString('base64url')
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex')

/** Public ids: a short type prefix and 96 random bits; never secret, never reused. */
export const newId = (prefix: string): string => `${prefix}_${randomBytes(12).toString('base64url')}`
