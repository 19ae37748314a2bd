import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {NAME_RE} from '../../shared/protocol/fields.js'
import {candidatePrefix, freeName, suffixed} from './names.js'

describe('freeName', () => {
  it('keeps a free name as it is', () => {
    expect(freeName('web', new Set(['db']))).toBe('web')
  })

  it('takes the smallest free suffix from 2 on', () => {
    expect(freeName('web', new Set(['web']))).toBe('web-2')
    expect(freeName('web', new Set(['web', 'web-2', 'web-4']))).toBe('web-3')
  })

  it('cuts a long name so that name and suffix stay within 63 characters, without a dash before the suffix', () => {
    const want = 'a'.repeat(60) + '-bc'
    const got = freeName(want, new Set([want]))
    expect(got).toBe('a'.repeat(60) + '-2')
    expect(got.length).toBeLessThanOrEqual(63)
  })

  it('yields a valid name that starts with the candidate prefix, for any valid name and any taken set', () => {
    const name = fc.stringMatching(NAME_RE)
    fc.assert(
      fc.property(name, fc.array(fc.nat({max: 40})), (want, ns) => {
        const taken = new Set([want, ...ns.map((n) => suffixed(want, n + 2))])
        const got = freeName(want, taken)
        expect(taken.has(got)).toBe(false)
        expect(got).toMatch(NAME_RE)
        expect(got.startsWith(candidatePrefix(want))).toBe(true)
      }),
      {numRuns: 300},
    )
  })
})
