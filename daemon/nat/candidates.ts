/**
 * Which of a peer's endpoints to try, best first.
 *
 * A peer reports its interface addresses with its WireGuard port, and the controller adds the
 * public mapping it observed for the peer's WireGuard socket. Order: an address on one of this
 * node's own subnets first (the same LAN: no NAT in between), then the observed public mapping
 * (what works through NATs), then reported addresses that are public (a peer with a public
 * address, no NAT), then other private addresses (reachable only through routing we cannot
 * see). Malformed and unusable endpoints (loopback, link-local, ...) are dropped, duplicates
 * too, and the list is capped: each candidate costs an attempt of several seconds.
 */
import os from 'node:os'
import {formatEndpoint, parseUsableEndpoint, type Endpoint} from '../../shared/net/endpoint.js'
import {cidrContains, parseCidr, parseIPv4, type Cidr} from '../../shared/net/ipv4.js'

export const MAX_CANDIDATES = 4

const PRIVATE: Cidr[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'].map((c) =>
  parseCidr(c)!,
)

const inAny = (cidrs: readonly Cidr[], ep: Endpoint): boolean => {
  if (ep.family !== 4) return false
  const addr = parseIPv4(ep.host)
  return addr !== undefined && cidrs.some((c) => cidrContains(c, addr))
}

/** Whether an endpoint is in a private (RFC 1918 or shared CGN) IPv4 range, or IPv6 ULA. */
export function isPrivateEndpoint(ep: Endpoint): boolean {
  return ep.family === 4 ? inAny(PRIVATE, ep) : /^f[cd]/i.test(ep.host)
}

export interface PeerEndpoints {
  /** What the peer reported: its interface addresses with its WireGuard port. */
  readonly endpoints: readonly string[]
  /** The public mapping of the peer's WireGuard socket, as the controller observed it. */
  readonly observedEndpoint?: string | null | undefined
}

export function orderCandidates(peer: PeerEndpoints, localSubnets: readonly Cidr[]): string[] {
  const sameLan: Endpoint[] = []
  const observed: Endpoint[] = []
  const publicOnes: Endpoint[] = []
  const otherPrivate: Endpoint[] = []
  const obs = parseUsableEndpoint(peer.observedEndpoint)
  if (obs) observed.push(obs)
  for (const text of peer.endpoints) {
    const ep = parseUsableEndpoint(text)
    if (!ep) continue
    if (inAny(localSubnets, ep)) sameLan.push(ep)
    else if (isPrivateEndpoint(ep)) otherPrivate.push(ep)
    else publicOnes.push(ep)
  }
  const out = new Set<string>()
  for (const ep of [...sameLan, ...observed, ...publicOnes, ...otherPrivate]) {
    if (out.size >= MAX_CANDIDATES) break
    out.add(formatEndpoint(ep))
  }
  return [...out]
}

/** What a node knows of the public mapping of a WireGuard port (its own, or a peer's). */
export interface MappingView {
  /**
   * The mapping the controller observed on its discovery port: a string when it saw one, null
   * when it saw none, undefined when it did not say (a controller older than the field).
   */
  readonly observedEndpoint: string | null | undefined
}

/**
 * Why a direct path between this node and a peer is out of reach for now, or undefined when it
 * may be reachable. Each attempt at it costs the switching side what it sends in its window
 * (daemon/nat/upgrade.ts), so a pair that cannot go direct should not try.
 *
 * The controller offers endpoint discovery and observed no public mapping for one side's
 * WireGuard port: that side's UDP does not get out (WireGuard sends a discovery initiation every
 * few seconds, and the first one observed is applied at once), so neither NAT can be punched
 * from it. Only a peer candidate on one of this node's own subnets (one LAN, no NAT in between)
 * is still worth trying, and for a peer without a mapping a public address it reports (a host
 * beside the controller may be observed at an address peers never get, e.g. loopback). Both sides see both mappings in their netmaps (`self` and the peer), so
 * they come to the same answer and the leader never starts an attempt the other side refuses.
 * It is "for now": a mapping observed later (UDP works again, or the first discovery initiation
 * was only late) makes the pair worth trying again.
 */
export function directOutOfReach(opts: {
  /** Whether the controller offers endpoint discovery (without it no mapping is ever observed). */
  readonly discovery: boolean
  readonly self: MappingView
  readonly peer: PeerEndpoints
  readonly localSubnets: readonly Cidr[]
}): 'udp-blocked-here' | 'udp-blocked-at-peer' | undefined {
  if (!opts.discovery) return undefined
  let publicOne = false
  for (const text of opts.peer.endpoints) {
    const ep = parseUsableEndpoint(text)
    if (ep === null) continue
    if (inAny(opts.localSubnets, ep)) return undefined
    if (!isPrivateEndpoint(ep)) publicOne = true
  }
  // null, not undefined: a controller that says it observed nothing (an older one, or one that
  // observed an address it does not pass on, does not send the field).
  if (opts.self.observedEndpoint === null) return 'udp-blocked-here'
  if (!parseUsableEndpoint(opts.peer.observedEndpoint) && !publicOne) return 'udp-blocked-at-peer'
  return undefined
}

/** This machine's IPv4 subnets, except on the interfaces named in `skip` (mesh's own). */
export function localSubnets(skip: ReadonlySet<string>): Cidr[] {
  const out: Cidr[] = []
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (skip.has(name)) continue
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv4' || a.internal || a.cidr === null) continue
      const c = parseCidr(a.cidr, {strict: false})
      if (c) out.push(c)
    }
  }
  return out
}
