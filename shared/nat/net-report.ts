/**
 * NetReport: what `mesh netcheck` learned about this host's path to the internet (daemon/nat/
 * netcheck.ts fills it in), with the RFC 4787 names for NAT behaviour and a one-line verdict of
 * what it means for direct connections between peers.
 */

import {z} from 'zod'

export const NetEndpointSchema = z.object({
  address: z.string().min(1).max(64),
  port: z.number().int().min(0).max(65535),
})
export type NetEndpoint = z.infer<typeof NetEndpointSchema>

/**
 * RFC 4787 §4.1 mapping behaviour. `endpoint-dependent` when the mapping changed with the
 * destination but the server could not tell whether by address or by port too; `unknown` when the
 * STUN server has no alternate to compare with (or a test got no answer).
 */
export const MappingBehaviourSchema = z.enum([
  'endpoint-independent',
  'address-dependent',
  'address-and-port-dependent',
  'endpoint-dependent',
  'unknown',
])
export type MappingBehaviour = z.infer<typeof MappingBehaviourSchema>

/** RFC 4787 §5 filtering behaviour, from the RFC 5780 §4.4 CHANGE-REQUEST tests. */
export const FilteringBehaviourSchema = z.enum([
  'endpoint-independent',
  'address-dependent',
  'address-and-port-dependent',
  'unknown',
])
export type FilteringBehaviour = z.infer<typeof FilteringBehaviourSchema>

/**
 * Which peers this host can reach directly: `all` that can send UDP, `most` (not peers behind an
 * endpoint-dependent-mapping NAT), `limited` (only peers without NAT or behind a NAT that lets in
 * any sender), `relay-only`, or `unknown`.
 */
export const DirectOutlookSchema = z.enum(['all', 'most', 'limited', 'relay-only', 'unknown'])
export type DirectOutlook = z.infer<typeof DirectOutlookSchema>

export const NetReportSchema = z.object({
  /** A STUN Binding request got an answer. */
  udp: z.boolean(),
  /** Our address:port as the STUN server saw it (the NAT's mapping); null without UDP. */
  publicEndpoint: NetEndpointSchema.nullable(),
  /** The local socket the mapping was measured from. */
  localEndpoint: NetEndpointSchema.nullable(),
  /** False when the public endpoint is one of our own addresses; null when unknown. */
  behindNat: z.boolean().nullable(),
  mapping: MappingBehaviourSchema,
  filtering: FilteringBehaviourSchema,
  /** The NAT kept our local port as the public port; null when unknown. */
  portPreserved: z.boolean().nullable(),
  /** Round trip of the first answered Binding request, ms. */
  latencyMs: z.number().nonnegative().nullable(),
  /** The STUN server asked, and its RFC 5780 OTHER-ADDRESS when it has one. */
  server: NetEndpointSchema,
  otherAddress: NetEndpointSchema.nullable(),
  direct: DirectOutlookSchema,
  /** One line for people, e.g. "direct connections work with most peers (…)". */
  verdict: z.string().max(200),
  /** How long the checks took, ms. */
  durationMs: z.number().nonnegative(),
})
export type NetReport = z.infer<typeof NetReportSchema>

/**
 * What a host's UDP, mapping and filtering mean for direct paths (hole punching, RFC 5128):
 *  1. no UDP: only the relay works;
 *  2. endpoint-independent mapping (or no NAT): a peer learns one stable endpoint of ours. With
 *     filtering that ignores the sender's port (endpoint-independent or address-dependent) even a
 *     peer whose NAT picks a new port per destination gets in; with port-dependent filtering it
 *     does not, so peers behind endpoint-dependent mapping need the relay;
 *  3. endpoint-dependent mapping: the endpoint a peer learns is not the one we use towards it, so
 *     only peers that accept any sender (no NAT, or a cone NAT) get a direct path.
 */
export function directOutlook(r: {
  udp: boolean
  behindNat: boolean | null
  mapping: MappingBehaviour
  filtering: FilteringBehaviour
}): {direct: DirectOutlook; verdict: string} {
  if (!r.udp) return {direct: 'relay-only', verdict: 'UDP blocked: relay only'}
  const independent = r.mapping === 'endpoint-independent' || r.behindNat === false
  if (independent) {
    if (r.filtering === 'endpoint-independent' || r.filtering === 'address-dependent') {
      return {direct: 'all', verdict: 'direct connections work with every peer that can send UDP'}
    }
    return {
      direct: 'most',
      verdict: 'direct connections work with most peers (peers behind a symmetric NAT go through the relay)',
    }
  }
  if (r.mapping === 'unknown') {
    return {
      direct: 'unknown',
      verdict: 'UDP works; NAT behaviour unknown (the STUN server has no alternate address): direct may work',
    }
  }
  return {
    direct: 'limited',
    verdict: 'direct only with peers that have no NAT or a cone NAT; otherwise relay',
  }
}
