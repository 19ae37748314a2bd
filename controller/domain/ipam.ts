/**
 * Address allocation inside a network's CIDR: never the network or broadcast address, never an
 * address another node of the network holds, and not the address of a node removed a moment
 * ago (a per-network cursor moves forward; only when it passes the end does allocation wrap to
 * the lowest free address).
 *
 * The store answers in sorted batches ("the network's addresses >= x, at most n"), so a
 * registration costs one or two round trips on a networked database, not one per address.
 * Registration runs this under the network's row lock (domain/nodes.ts), so two controllers
 * cannot hand out the same address; the UNIQUE (network_id, address) constraint backs it.
 */
import {hostRange, type Cidr} from '../../shared/net/ipv4.js'
import {MeshError} from '../../shared/errors.js'

/** Addresses fetched per round trip while looking for a gap. */
export const ADDRESS_BATCH = 512

export interface AllocateInput {
  readonly cidr: Cidr
  /** The last address handed out in this network, or null for none yet. */
  readonly cursor: number | null
  /** How many addresses of the network are in use now. */
  readonly used: number
  /** The network's addresses >= `from`, ascending, at most `limit` of them. */
  readonly addressesFrom: (from: number, limit: number) => Promise<readonly number[]>
}

/**
 * Returns the next free host address.
 *
 * 1. Full (used >= host count) -> ADDRESS_POOL_EXHAUSTED, before any query.
 * 2. The first gap from cursor + 1 to the last host address.
 * 3. Past the end, wrap: the first gap from the first host address.
 * Each scan reads at most `used` addresses, so it ends after used / ADDRESS_BATCH + 1 batches.
 */
export async function allocateAddress(input: AllocateInput): Promise<number> {
  const range = hostRange(input.cidr)
  if (range.count <= 0 || input.used >= range.count) {
    throw new MeshError('ADDRESS_POOL_EXHAUSTED')
  }
  const start =
    input.cursor === null || input.cursor < range.first || input.cursor >= range.last
      ? range.first
      : input.cursor + 1
  const maxBatches = Math.floor(input.used / ADDRESS_BATCH) + 2
  const found =
    (await firstGap(start, range.last, maxBatches, input.addressesFrom)) ??
    (await firstGap(range.first, start - 1, maxBatches, input.addressesFrom))
  if (found === undefined) throw new MeshError('ADDRESS_POOL_EXHAUSTED')
  return found
}

/** The lowest address in [from, to] that addressesFrom does not list, or undefined. */
async function firstGap(
  from: number,
  to: number,
  maxBatches: number,
  addressesFrom: AllocateInput['addressesFrom'],
): Promise<number | undefined> {
  let next = from
  for (let batch = 0; batch < maxBatches && next <= to; batch++) {
    const taken = await addressesFrom(next, ADDRESS_BATCH)
    for (const a of taken) {
      if (a < next) continue // not >= from as asked: ignore rather than loop
      if (a > next) return next
      next = a + 1
      if (next > to) return undefined
    }
    if (taken.length < ADDRESS_BATCH) return next <= to ? next : undefined
  }
  return undefined
}
