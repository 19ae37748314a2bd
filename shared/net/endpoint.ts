/**
 * WireGuard endpoints ("host:port") from untrusted input: the one strict parser that the
 * controller's schemas and meshd both use. Only IP literals are endpoints: a hostname would make
 * `wg set` resolve it (or fail on it), and one peer's bad endpoint must never fail the call that
 * configures the others.
 *
 *   IPv4: 203.0.113.7:51820   dotted quad, decimal octets 0-255 without leading zeros
 *   IPv6: [2001:db8::1]:51820 in brackets, a valid literal, no zone id (%eth0)
 *   port: 1-65535, decimal, no sign or leading zeros
 */
import {BlockList, isIPv6} from 'node:net'
import {parseIPv4} from './ipv4.js'

/** The longest endpoint text accepted ("[" + 45-character IPv6 + "]:65535" is 53). */
export const ENDPOINT_MAX_LENGTH = 64

export interface Endpoint {
  /** IPv4 dotted quad, or the canonical (lower-case, compressed) IPv6 text without brackets. */
  readonly host: string
  readonly port: number
  readonly family: 4 | 6
}

const PORT_RE = /^[1-9]\d{0,4}$/
const IPV4_RE = /^([0-9.]{7,15}):([^:]*)$/
const IPV6_RE = /^\[([0-9A-Fa-f:.]{2,45})\]:(.*)$/

function parsePort(text: string): number | undefined {
  if (!PORT_RE.test(text)) return undefined
  const port = Number(text)
  return port <= 65535 ? port : undefined
}

/** Canonical text of an IPv6 literal (as the WHATWG URL parser writes it), or undefined. */
function canonicalIPv6(text: string): string | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined
  try {
    const host = new URL(`http://[${text}]/`).hostname
    return host.slice(1, -1)
  } catch {
    return undefined
  }
}

/** Parses "a.b.c.d:port" or "[v6]:port"; null for anything else (hostnames included). */
export function parseEndpoint(text: unknown): Endpoint | null {
  if (typeof text !== 'string' || text.length > ENDPOINT_MAX_LENGTH) return null
  const v6 = IPV6_RE.exec(text)
  if (v6) {
    const host = canonicalIPv6(v6[1] as string)
    const port = parsePort(v6[2] as string)
    return host !== undefined && port !== undefined ? {host, port, family: 6} : null
  }
  const v4 = IPV4_RE.exec(text)
  if (v4) {
    const host = v4[1] as string
    const port = parsePort(v4[2] as string)
    return parseIPv4(host) !== undefined && port !== undefined ? {host, port, family: 4} : null
  }
  return null
}

export function formatEndpoint(ep: Endpoint): string {
  return ep.family === 6 ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`
}

/** Whether `text` is a well-formed endpoint (see parseEndpoint). */
export const isEndpoint = (text: unknown): boolean => parseEndpoint(text) !== null

/**
 * Addresses no peer can be reached at from another machine: WireGuard would send to this
 * machine itself, to a whole link or group, or nowhere. IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d) are checked against the IPv4 rules by BlockList itself.
 */
const UNUSABLE = new BlockList()
UNUSABLE.addSubnet('0.0.0.0', 8, 'ipv4') // "this network", 0.0.0.0 included
UNUSABLE.addSubnet('127.0.0.0', 8, 'ipv4') // loopback
UNUSABLE.addSubnet('169.254.0.0', 16, 'ipv4') // link-local
UNUSABLE.addSubnet('224.0.0.0', 4, 'ipv4') // multicast
UNUSABLE.addAddress('255.255.255.255', 'ipv4') // limited broadcast
UNUSABLE.addSubnet('::', 96, 'ipv6') // unspecified, loopback, deprecated IPv4-compatible
UNUSABLE.addSubnet('fe80::', 10, 'ipv6') // link-local
UNUSABLE.addSubnet('ff00::', 8, 'ipv6') // multicast

/**
 * Whether a peer could use this endpoint as a candidate: not unspecified, loopback, link-local,
 * multicast or broadcast.
 */
export function isUsableCandidate(ep: Endpoint): boolean {
  return !UNUSABLE.check(ep.host, ep.family === 6 ? 'ipv6' : 'ipv4')
}

/** Parses an endpoint a peer can be reached at; null when malformed or unusable. */
export function parseUsableEndpoint(text: unknown): Endpoint | null {
  const ep = parseEndpoint(text)
  return ep !== null && isUsableCandidate(ep) ? ep : null
}

/**
 * The usable endpoints of a list, in canonical text, without duplicates, in their first order;
 * `dropped` counts the ones refused.
 */
export function usableEndpoints(list: readonly unknown[]): {endpoints: string[]; dropped: number} {
  const out = new Set<string>()
  let dropped = 0
  for (const text of list) {
    const ep = parseUsableEndpoint(text)
    if (ep === null) dropped++
    else out.add(formatEndpoint(ep))
  }
  return {endpoints: [...out], dropped}
}
