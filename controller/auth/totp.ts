/**
 * TOTP (RFC 6238) and recovery codes for MFA: the arithmetic only, no storage. Codes are what
 * every authenticator app makes by default: HMAC-SHA-1, 6 digits, a 30 s step; a code of the
 * step before or after now is accepted too (clock drift), and which step it was is returned so
 * the caller can refuse a code whose step was already used (RFC 6238 §5.2: accept a code once).
 * The HOTP/TOTP maths is the `otpauth` package's (RFC 4226/6238 with the RFC test vectors, kept
 * up to date, one dependency: @noble/hashes, which mesh already uses).
 */
import {randomBytes} from 'node:crypto'
import {Secret, TOTP} from 'otpauth'
import {hashSecret} from './secrets.js'

export const TOTP_PERIOD_S = 30
export const TOTP_DIGITS = 6
/** Steps accepted either side of now. */
export const TOTP_WINDOW = 1
export const RECOVERY_CODE_COUNT = 10
const ISSUER = 'mesh'

const totp = (secret: string, label = 'mesh') =>
  new TOTP({
    issuer: ISSUER,
    label,
    secret: Secret.fromBase32(secret),
    algorithm: 'SHA1',
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_S,
  })

/** A new secret: 160 random bits (RFC 4226's recommended length), base32. */
export const newTotpSecret = (): string => new Secret({size: 20}).base32

/** otpauth://totp/mesh:<account>?secret=...&issuer=mesh&algorithm=SHA1&digits=6&period=30 */
export const totpUri = (secret: string, account: string): string => totp(secret, account).toString()

/** The time step of `nowMs`. */
export const totpStep = (nowMs: number): number => Math.floor(nowMs / 1000 / TOTP_PERIOD_S)

/** The code of the step of `nowMs` (tests, and nothing else, make codes). */
export const totpCode = (secret: string, nowMs: number): string => totp(secret).generate({timestamp: nowMs})

/** True when `code` has the shape of a TOTP code (six digits) rather than a recovery code. */
export const looksLikeTotp = (code: string): boolean => /^\d{6}$/.test(code.trim())

/** The step `code` belongs to within the window around `nowMs`, or undefined when it matches none. */
export function matchTotp(secret: string, code: string, nowMs: number): number | undefined {
  const token = code.trim()
  if (!looksLikeTotp(token)) return undefined
  const delta = totp(secret).validate({token, timestamp: nowMs, window: TOTP_WINDOW})
  return delta === null ? undefined : totpStep(nowMs) + delta
}

// Crockford's base32 without I, L, O, U: nothing to misread when typed from paper.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'

/** A recovery code: 80 random bits as four groups of four, e.g. `7k2m-q9xd-4tza-h1pc`. */
export function newRecoveryCode(): string {
  const bytes = randomBytes(10)
  let bits = 0
  let acc = 0
  let out = ''
  for (const b of bytes) {
    acc = (acc << 8) | b
    bits += 8
    while (bits >= 5) {
      out += ALPHABET[(acc >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  return out.match(/.{4}/g)!.join('-')
}

/**
 * The stored form of a recovery code: SHA-256 of its normalised text (case, dashes and spaces
 * do not matter), bound to the user so equal codes of two users differ. 80 random bits are not
 * guessable, so, as for tokens (secrets.ts), a salt or a slow hash would protect nothing.
 */
export const hashRecoveryCode = (userId: string, code: string): string =>
  hashSecret(`mrec:${userId}:${code.toLowerCase().replace(/[\s-]/g, '')}`)
