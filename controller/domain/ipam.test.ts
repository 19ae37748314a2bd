// Properties of address allocation: never the network or broadcast address, never an address
// in use, the cursor moves forward (no immediate reuse), wrap to the lowest free address, and
// exhaustion as ADDRESS_POOL_EXHAUSTED.
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {isMeshError} from '../../shared/errors.js'
import {formatIPv4, parseCidr, type Cidr} from '../../shared/net/ipv4.js'
import {ADDRESS_BATCH, allocateAddress} from './ipam.js'

const cidr = (text: string): Cidr => parseCidr(text) as Cidr

/** The store's sorted batch query over a set of addresses. */
const batches =
  (used: ReadonlySet<number>, calls = {count: 0}) =>
  async (from: number, limit: number): Promise<number[]> => {
    calls.count++
    return [...used]
      .filter((a) => a >= from)
      .sort((a, b) => a - b)
      .slice(0, limit)
  }

/** A tiny in-memory network: allocate and free like the store does. */
function pool(c: Cidr) {
  const used = new Set<number>()
  let cursor: number | null = null
  return {
    used,
    async alloc(): Promise<number> {
      const a = await allocateAddress({cidr: c, cursor, used: used.size, addressesFrom: batches(used)})
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
  it('starts at the first host address, never the network address', async () => {
    const p = pool(cidr('10.0.0.0/24'))
    expect(formatIPv4(await p.alloc())).toBe('10.0.0.1')
  })

  it('fills a /30 with its two hosts and never hands out network or broadcast', async () => {
    const c = cidr('10.9.0.4/30')
    const p = pool(c)
    const got = [await p.alloc(), await p.alloc()].map(formatIPv4)
    expect(got).toEqual(['10.9.0.5', '10.9.0.6'])
    await expect(p.alloc()).rejects.toMatchObject({code: 'ADDRESS_POOL_EXHAUSTED'})
  })

  it('does not reuse a freed address while higher addresses are free', async () => {
    const p = pool(cidr('10.0.0.0/24'))
    const a = await p.alloc()
    await p.alloc()
    p.free(a)
    expect(formatIPv4(await p.alloc())).toBe('10.0.0.3')
  })

  it('wraps to the lowest free address once the cursor passes the end', async () => {
    const p = pool(cidr('10.0.0.0/29')) // hosts .1 to .6
    const addrs: number[] = []
    for (let i = 0; i < 6; i++) addrs.push(await p.alloc())
    p.free(addrs[3]!) // .4
    p.free(addrs[1]!) // .2
    expect(formatIPv4(await p.alloc())).toBe('10.0.0.2')
    expect(formatIPv4(await p.alloc())).toBe('10.0.0.4')
    await expect(p.alloc()).rejects.toMatchObject({code: 'ADDRESS_POOL_EXHAUSTED'})
  })

  it('never yields network/broadcast or a duplicate under any sequence of allocs and frees', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({min: 24, max: 30}),
        fc.array(fc.oneof(fc.constant<'alloc'>('alloc'), fc.nat({max: 300})), {maxLength: 400}),
        async (prefix, ops) => {
          const c = cidr(`10.20.0.0/${prefix}`)
          const p = pool(c)
          const hosts = c.size - 2
          for (const op of ops) {
            if (op === 'alloc') {
              const before = p.used.size
              try {
                const a = await p.alloc()
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

  it('refuses a full network before asking the store', async () => {
    const calls = {count: 0}
    await expect(
      allocateAddress({
        cidr: cidr('10.0.0.0/8'),
        cursor: null,
        used: 2 ** 24 - 2,
        addressesFrom: batches(new Set(), calls),
      }),
    ).rejects.toMatchObject({code: 'ADDRESS_POOL_EXHAUSTED'})
    expect(calls.count).toBe(0)
  })

  it('finds a gap behind many taken addresses in a few batches, not one query per address', async () => {
    const c = cidr('10.0.0.0/16')
    const used = new Set<number>()
    for (let i = 1; i <= 3000; i++) used.add(c.base + i)
    const calls = {count: 0}
    const a = await allocateAddress({
      cidr: c,
      cursor: null,
      used: used.size,
      addressesFrom: batches(used, calls),
    })
    expect(formatIPv4(a)).toBe('10.0.11.185') // base + 3001
    expect(calls.count).toBe(Math.ceil(3000 / ADDRESS_BATCH) + (3000 % ADDRESS_BATCH === 0 ? 1 : 0))
  })
})
