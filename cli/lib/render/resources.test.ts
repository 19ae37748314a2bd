// Unit tests of the resource renderers' judgement calls (time format, invite/key state).
import {describe, expect, it} from 'vitest'
import {formatTime, grantState} from './resources.js'

describe('formatTime', () => {
  it('shows minutes in UTC and a dash for nothing', () => {
    expect(formatTime('2026-11-22T10:04:59.123+01:00')).toBe('2026-11-22 09:04Z')
    expect(formatTime(null)).toBe('-')
  })

  it('passes through text that is not a time rather than printing Invalid Date', () => {
    expect(formatTime('soon')).toBe('soon')
  })
})

describe('grantState', () => {
  const now = new Date('2026-11-22T12:00:00Z')
  const future = '2026-12-01T00:00:00Z'

  it('puts revoked before expired before used up', () => {
    expect(
      grantState(
        {revokedAt: '2026-11-20T00:00:00Z', expiresAt: '2026-11-21T00:00:00Z', uses: 5, maxUses: 5},
        now,
      ),
    ).toBe('revoked')
    expect(grantState({revokedAt: null, expiresAt: '2026-11-21T00:00:00Z', uses: 5, maxUses: 5}, now)).toBe(
      'expired',
    )
    expect(grantState({revokedAt: null, expiresAt: future, uses: 5, maxUses: 5}, now)).toBe('used up')
  })

  it('calls unlimited invites and reusable keys active however often used', () => {
    expect(grantState({revokedAt: null, expiresAt: future, uses: 99, maxUses: null}, now)).toBe('active')
    expect(grantState({revokedAt: null, expiresAt: future, uses: 99, reusable: true}, now)).toBe('active')
    expect(grantState({revokedAt: null, expiresAt: future, uses: 1, reusable: false}, now)).toBe('used')
  })
})
