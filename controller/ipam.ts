/**
 * Address allocation inside a network's CIDR: never the network or broadcast address, never an
 * address another node of the network holds, and not the address of a node removed a moment
 * ago (a per-network cursor moves forward; only when it passes the end does allocation wrap to
 * the lowest free address). Pure: the store supplies the cursor and a taken() probe and runs
 * this inside its registration transaction.
 */
import {hostRange, type Cidr} from '../shared/net/ipv4.js'
import {MeshError} from '../shared/errors.js'

export interface AllocateInput {
  readonly cidr: Cidr
  /** The last address handed out in this network, or null for none yet. */
  readonly cursor: number | null
  /** How many addresses of the network are in use now. */
  readonly used: number
  /** True when a node of the network holds the address. */
  readonly taken: (address: number) => boolean
}

/**
 * Returns the next free host address.
 *
 * 1. Full (used >= host count) → ADDRESS_POOL_EXHAUSTED, before any scan.
 * 2. Scan upward from cursor + 1 to the last host address.
 * 3. Past the end, wrap: scan upward from the first host address.
 * Because a free address exists, each scan stops after at most `used + 1` probes.
 */
export function allocateAddress(input: AllocateInput): number {
  const range = hostRange(input.cidr)
  if (range.count <= 0 || input.used >= range.count) {
    throw new MeshError('ADDRESS_POOL_EXHAUSTED')
  }
  const start =
    input.cursor === null || input.cursor < range.first || input.cursor >= range.last
      ? range.first
      : input.cursor + 1
  // Bounded: at most range.count probes in total across both passes.
  for (let addr = start; addr <= range.last; addr++) {
    if (!input.taken(addr)) return addr
  }
  for (let addr = range.first; addr < start; addr++) {
    if (!input.taken(addr)) return addr
  }
  throw new MeshError('ADDRESS_POOL_EXHAUSTED')
}
