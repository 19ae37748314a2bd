// Properties of address allocation: never the network or broadcast address, never an address
// in use, the cursor moves forward (no immediate reuse), wrap to the lowest free address, and
// exhaustion as ADDRESS_POOL_EXHAUSTED.
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {isMeshError} from '../shared/errors.js'
import {formatIPv4, parseCidr, type Cidr} from '../shared/net/ipv4.js'
import {allocateAddress} from './ipam.js'

const cidr = (text: string): Cidr => parseCidr(text) as Cidr

/** A tiny in-memory network: allocate and free like the store does. */
function pool(c: Cidr) {
  const used = new Set<number>()
  let cursor: number | null = null
  return {
    used,
    alloc(): number {
      const a = allocateAddress({cidr: c, cursor, used: used.size, taken: (x) => used.has(x)})
      used.add(a)
      cursor = a
      return a
    },
    free(a: number) {
      used.delete(a)
    },
  }
}

describe('allocateAddress', () => {
  it('starts at the first host address, never the network address', () => {
    const p = pool(cidr('10.0.0.0/24'))
    expect(formatIPv4(p.alloc())).toBe('10.0.0.1')
  })

  it('fills a /30 with its two hosts and never hands out network or broadcast', () => {
    const c = cidr('10.9.0.4/30')
    const p = pool(c)
    const got = [p.alloc(), p.alloc()].map(formatIPv4)
    expect(got).toEqual(['10.9.0.5', '10.9.0.6'])
    expect(() => p.alloc()).toThrow(expect.objectContaining({code: 'ADDRESS_POOL_EXHAUSTED'}))
  })

  it('does not reuse a freed address while higher addresses are free', () => {
    const p = pool(cidr('10.0.0.0/24'))
    const a = p.alloc()
    p.alloc()
    p.free(a)
    expect(formatIPv4(p.alloc())).toBe('10.0.0.3')
  })

  it('wraps to the lowest free address once the cursor passes the end', () => {
    const p = pool(cidr('10.0.0.0/29')) // hosts .1 to .6
    const addrs = Array.from({length: 6}, () => p.alloc())
    p.free(addrs[3]!) // .4
    p.free(addrs[1]!) // .2
    expect(formatIPv4(p.alloc())).toBe('10.0.0.2')
    expect(formatIPv4(p.alloc())).toBe('10.0.0.4')
    expect(() => p.alloc()).toThrow(expect.objectContaining({code: 'ADDRESS_POOL_EXHAUSTED'}))
  })

  it('never yields network/broadcast or a duplicate under any sequence of allocs and frees', () => {
    fc.assert(
      fc.property(
        fc.integer({min: 24, max: 30}),
        fc.array(fc.oneof(fc.constant<'alloc'>('alloc'), fc.nat({max: 300})), {maxLength: 400}),
        (prefix, ops) => {
          const c = cidr(`10.20.0.0/${prefix}`)
          const p = pool(c)
          const hosts = c.size - 2
          for (const op of ops) {
            if (op === 'alloc') {
              const before = p.used.size
              try {
                const a = p.alloc()
                expect(a).toBeGreaterThan(c.base)
                expect(a).toBeLessThan(c.base + c.size - 1)
                expect(p.used.size).toBe(before + 1)
              } catch (err) {
                expect(isMeshError(err) && err.code).toBe('ADDRESS_POOL_EXHAUSTED')
                expect(before).toBe(hosts)
              }
            } else {
              const victim = [...p.used][op % Math.max(1, p.used.size)]
              if (victim !== undefined) p.free(victim)
            }
          }
        },
      ),
      {numRuns: 300},
    )
  })

  it('refuses a full network before scanning', () => {
    let probes = 0
    expect(() =>
      allocateAddress({
        cidr: cidr('10.0.0.0/8'),
        cursor: null,
        used: 2 ** 24 - 2,
        taken: () => {
          probes++
          return true
        },
      }),
    ).toThrow(expect.objectContaining({code: 'ADDRESS_POOL_EXHAUSTED'}))
    expect(probes).toBe(0)
  })
})
