import {describe, expect, it} from 'vitest'
import {
  hashRecoveryCode,
  looksLikeTotp,
  matchTotp,
  newRecoveryCode,
  newTotpSecret,
  totpCode,
  totpStep,
  totpUri,
} from './totp.js'

// RFC 6238 appendix B: the SHA-1 seed "12345678901234567890" (base32 below); the RFC's codes
// have 8 digits, authenticator apps show the last 6.
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'

describe('TOTP (RFC 6238)', () => {
  it.each([
    [59, '287082'],
    [1111111109, '081804'],
    [1111111111, '050471'],
    [1234567890, '005924'],
    [2000000000, '279037'],
  ])('makes the RFC 6238 test vector code at T=%i', (t, code) => {
    expect(totpCode(RFC_SECRET, t * 1000)).toBe(code)
  })

  it('matches a code of the step before or after now, and names its step; not two steps away', () => {
    const now = 1111111109_000
    const step = totpStep(now)
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now), now)).toBe(step)
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now - 30_000), now)).toBe(step - 1)
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now + 30_000), now)).toBe(step + 1)
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now + 60_000), now)).toBeUndefined()
    expect(matchTotp(RFC_SECRET, 'abcdef', now)).toBeUndefined()
  })

  it('makes 160-bit secrets and an otpauth URI authenticator apps read', () => {
    const secret = newTotpSecret()
    expect(secret).toMatch(/^[A-Z2-7]{32}$/)
    const uri = new URL(totpUri(secret, 'alice'))
    expect(uri.protocol).toBe('otpauth:')
    expect(uri.host).toBe('totp')
    expect(decodeURIComponent(uri.pathname)).toBe('/mesh:alice')
    expect(Object.fromEntries(uri.searchParams)).toMatchObject({
      secret,
      issuer: 'mesh',
      algorithm: 'SHA1',
      digits: '6',
      period: '30',
    })
  })
})

describe('recovery codes', () => {
  it('are four groups of four unambiguous characters, all different', () => {
    const codes = Array.from({length: 50}, newRecoveryCode)
    for (const c of codes) expect(c).toMatch(/^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$/)
    expect(new Set(codes).size).toBe(50)
    expect(codes.some(looksLikeTotp)).toBe(false)
  })

  it('hash the same whatever the case and dashes, and differently per user', () => {
    const c = '7k2m-q9xd-4tza-h1pc'
    expect(hashRecoveryCode('u1', c)).toBe(hashRecoveryCode('u1', '7K2MQ9XD 4TZAH1PC'))
    expect(hashRecoveryCode('u1', c)).not.toBe(hashRecoveryCode('u2', c))
  })
})
