// Unit tests of the duration and --since parsers.
import {describe, expect, it} from 'vitest'
import {isMeshError} from '../../shared/errors.js'
import {parseDuration, parseSince} from './duration.js'

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
  } catch (err) {
    return isMeshError(err) ? err.code : 'NOT_A_MESH_ERROR'
  }
  return undefined
}

describe('parseDuration', () => {
  it('reads each unit in seconds', () => {
    expect(parseDuration('45s')).toBe(45)
    expect(parseDuration('30m')).toBe(1800)
    expect(parseDuration('12h')).toBe(43_200)
    expect(parseDuration('7d')).toBe(604_800)
    expect(parseDuration('2w')).toBe(1_209_600)
  })

  it('adds up combined parts such as 1h30m and tolerates surrounding spaces', () => {
    expect(parseDuration('1h30m')).toBe(5400)
    expect(parseDuration(' 1d12h ')).toBe(129_600)
  })

  it('refuses text that is not a duration with INVALID_ARGUMENT', () => {
    for (const bad of ['', '7', 'd', '7 d', '-1h', '1.5h', '7days', '1y', 'h1', '1H']) {
      expect(
        codeOf(() => parseDuration(bad)),
        bad,
      ).toBe('INVALID_ARGUMENT')
    }
  })

  it('refuses zero and anything past ten years', () => {
    expect(codeOf(() => parseDuration('0m'))).toBe('INVALID_ARGUMENT')
    expect(codeOf(() => parseDuration('600w'))).toBe('INVALID_ARGUMENT')
    expect(parseDuration('520w')).toBe(520 * 7 * 86_400)
  })

  it('names the flag in its message', () => {
    expect(() => parseDuration('soon', '--expires')).toThrow(/--expires "soon" is not a duration/)
  })
})

describe('parseSince', () => {
  const now = new Date('2026-11-22T12:00:00.000Z')

  it('turns a duration into the time that long before now', () => {
    expect(parseSince('1h', now)).toBe('2026-11-22T11:00:00.000Z')
    expect(parseSince('2d', now)).toBe('2026-11-20T12:00:00.000Z')
  })

  it('normalises an RFC 3339 time with an offset to UTC', () => {
    expect(parseSince('2026-11-22T10:00:00+02:00', now)).toBe('2026-11-22T08:00:00.000Z')
    expect(parseSince('2026-11-01T00:00:00Z', now)).toBe('2026-11-01T00:00:00.000Z')
  })

  it('refuses dates without a zone and other text', () => {
    for (const bad of ['2026-11-22', '2026-11-22T10:00:00', 'yesterday', '2026-13-01T00:00:00Z']) {
      expect(
        codeOf(() => parseSince(bad, now)),
        bad,
      ).toBe('INVALID_ARGUMENT')
    }
  })
})
