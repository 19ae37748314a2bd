import {describe, expect, it} from 'vitest'
import {
  directImpossible,
  NatBehaviourSchema,
  sameNat,
  verdictPending,
  type NatBehaviour,
} from './behaviour.js'

// The lab's kinds, as netcheck measures them (test/lab/nat-behaviour.root.test.ts).
const KINDS = {
  none: {mapping: 'endpoint-independent', filtering: 'endpoint-independent'},
  cone: {mapping: 'endpoint-independent', filtering: 'endpoint-independent'},
  restricted: {mapping: 'endpoint-independent', filtering: 'address-and-port-dependent'},
  symmetric: {mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent'},
  unknown: {mapping: 'unknown', filtering: 'unknown'},
} as const satisfies Record<string, NatBehaviour>
type Kind = keyof typeof KINDS

describe('directImpossible', () => {
  it.each<[Kind, Kind, string | undefined]>([
    ['none', 'none', undefined],
    ['none', 'cone', undefined],
    ['none', 'restricted', undefined],
    ['none', 'symmetric', undefined],
    ['cone', 'cone', undefined],
    ['cone', 'restricted', undefined],
    ['cone', 'symmetric', undefined],
    ['restricted', 'restricted', undefined],
    ['restricted', 'symmetric', 'endpoint-dependent-vs-port-filtering'],
    ['symmetric', 'symmetric', 'both-endpoint-dependent'],
    ['symmetric', 'unknown', undefined],
    ['unknown', 'unknown', undefined],
  ])('%s with %s: %s', (a, b, want) => {
    expect(directImpossible(KINDS[a], KINDS[b])).toBe(want)
    // Both sides come to the same answer.
    expect(directImpossible(KINDS[b], KINDS[a])).toBe(want)
  })

  it('tries when a side has not reported its behaviour', () => {
    expect(directImpossible(undefined, KINDS.symmetric)).toBeUndefined()
    expect(directImpossible(KINDS.symmetric, undefined)).toBeUndefined()
  })

  it('counts every destination-dependent mapping as endpoint-dependent, and lets address-dependent filtering in', () => {
    const edm = (mapping: NatBehaviour['mapping']): NatBehaviour => ({
      mapping,
      filtering: 'endpoint-independent',
    })
    for (const m of ['address-dependent', 'endpoint-dependent', 'address-and-port-dependent'] as const)
      expect(directImpossible(edm(m), KINDS.symmetric)).toBe('both-endpoint-dependent')
    const adf: NatBehaviour = {mapping: 'endpoint-independent', filtering: 'address-dependent'}
    expect(directImpossible(KINDS.symmetric, adf)).toBeUndefined()
    // Unknown filtering against an endpoint-dependent mapping: tried.
    expect(
      directImpossible(KINDS.symmetric, {mapping: 'endpoint-independent', filtering: 'unknown'}),
    ).toBeUndefined()
  })
})

describe('verdictPending', () => {
  it('waits for a side not reported yet only where it could still rule direct out', () => {
    // Behind a cone NAT (or none) every peer is reachable: nothing to wait for.
    expect(verdictPending(KINDS.cone, undefined)).toBe(false)
    expect(verdictPending(undefined, KINDS.none)).toBe(false)
    // Restricted or symmetric: the other side may be symmetric.
    expect(verdictPending(KINDS.restricted, undefined)).toBe(true)
    expect(verdictPending(undefined, KINDS.symmetric)).toBe(true)
    expect(verdictPending(undefined, undefined)).toBe(true)
    // Both known: nothing pending, whatever the verdict.
    expect(verdictPending(KINDS.symmetric, KINDS.symmetric)).toBe(false)
    expect(verdictPending(KINDS.unknown, KINDS.unknown)).toBe(false)
  })
})

describe('NatBehaviourSchema', () => {
  it('takes the RFC 4787 names and refuses anything else, extra keys included', () => {
    expect(NatBehaviourSchema.parse(KINDS.restricted)).toEqual(KINDS.restricted)
    expect(NatBehaviourSchema.safeParse({mapping: 'full-cone', filtering: 'unknown'}).success).toBe(false)
    expect(NatBehaviourSchema.safeParse({...KINDS.cone, extra: 1}).success).toBe(false)
    expect(NatBehaviourSchema.safeParse({mapping: 'x'.repeat(1e6), filtering: 'unknown'}).success).toBe(false)
    expect(NatBehaviourSchema.safeParse(null).success).toBe(false)
  })

  it('compares behaviours, absent as unknown', () => {
    expect(sameNat(KINDS.cone, {...KINDS.none})).toBe(true)
    expect(sameNat(undefined, KINDS.unknown)).toBe(true)
    expect(sameNat(KINDS.cone, KINDS.restricted)).toBe(false)
  })
})
