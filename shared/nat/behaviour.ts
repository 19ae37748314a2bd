/**
 * A node's NAT behaviour as it travels between meshd and the controller (RFC 4787 mapping and
 * filtering, measured by netcheck: daemon/nat/netcheck.ts), and the rule that says from both
 * sides' behaviour whether a direct path between two nodes is possible at all.
 *
 * It is not the NetReport (shared/nat/net-report.ts), which says everything `mesh netcheck`
 * learned; this is the two fields a peer needs, in the same RFC 4787 names.
 */
import {z} from 'zod'
import {
  FilteringBehaviourSchema,
  MappingBehaviourSchema,
  type FilteringBehaviour,
  type MappingBehaviour,
} from './net-report.js'

/** Mapping and filtering of the NAT in front of a node; strict: a report with more is refused. */
export const NatBehaviourSchema = z
  .object({mapping: MappingBehaviourSchema, filtering: FilteringBehaviourSchema})
  .strict()
export type NatBehaviour = z.infer<typeof NatBehaviourSchema>

export const UNKNOWN_NAT: NatBehaviour = {mapping: 'unknown', filtering: 'unknown'}

/** Whether two behaviours are the same (absent = unknown). */
export const sameNat = (a: NatBehaviour | undefined, b: NatBehaviour | undefined): boolean =>
  (a?.mapping ?? 'unknown') === (b?.mapping ?? 'unknown') &&
  (a?.filtering ?? 'unknown') === (b?.filtering ?? 'unknown')

/** A mapping that changes with the destination (address, or address and port): RFC 4787 §4.1 "EDM". */
export const endpointDependent = (m: MappingBehaviour): boolean =>
  m === 'endpoint-dependent' || m === 'address-dependent' || m === 'address-and-port-dependent'

const apdf = (f: FilteringBehaviour): boolean => f === 'address-and-port-dependent'

/** Why theory rules a direct path out (see directImpossible). */
export type DirectImpossible = 'both-endpoint-dependent' | 'endpoint-dependent-vs-port-filtering'

/**
 * Why a direct path between two nodes cannot work whatever either does, or undefined when it may
 * (also whenever a side's behaviour is unknown: then it is tried). Hole punching (RFC 5128 §3.3)
 * needs each side's packets to reach the other's NAT at an endpoint that NAT lets in:
 *  1. both mappings endpoint-dependent: neither side can learn the port the other will use
 *     toward it (the mapping a third party observed is not it), so no packet finds a way in;
 *  2. one mapping endpoint-dependent and the other side's filtering address-and-port-dependent:
 *     the filter lets in only the exact port it sent to, and the EDM side sends from a port
 *     nobody could predict. Address-dependent (or independent) filtering lets it in: the other
 *     side has sent to the EDM side's address, whatever the port.
 * The rule is symmetric in its arguments, so both sides of a pair come to the same answer from
 * the same two behaviours.
 */
export function directImpossible(
  a: NatBehaviour | undefined,
  b: NatBehaviour | undefined,
): DirectImpossible | undefined {
  if (a === undefined || b === undefined) return undefined
  const edmA = endpointDependent(a.mapping)
  const edmB = endpointDependent(b.mapping)
  if (edmA && edmB) return 'both-endpoint-dependent'
  if ((edmA && apdf(b.filtering)) || (edmB && apdf(a.filtering)))
    return 'endpoint-dependent-vs-port-filtering'
  return undefined
}

/** The behaviour that rules out the most: what an unknown side is taken as by verdictPending. */
const WORST: NatBehaviour = {mapping: 'endpoint-dependent', filtering: 'address-and-port-dependent'}

/**
 * Whether a side's behaviour not reported yet (undefined) could still rule a direct path out:
 * a node behind a cone NAT (or none) can reach any peer, so it need not wait for the peer's
 * behaviour before trying; one behind a restricted or symmetric NAT waits (meshd bounds the wait).
 */
export const verdictPending = (a: NatBehaviour | undefined, b: NatBehaviour | undefined): boolean =>
  (a === undefined || b === undefined) && directImpossible(a ?? WORST, b ?? WORST) !== undefined
