/**
 * coturn's `turnutils_natdiscovery` (RFC 5780 NAT behaviour discovery), the third-party STUN
 * client our STUN server and `mesh netcheck` are checked against: where it is, and its printed
 * verdict parsed into the RFC 4787 names NetReport uses. It is not a STUN client of ours: the
 * tests only run it and read what it prints.
 *
 * What it prints, with `-m -f` (mapping, then filtering):
 *
 *     -= Mapping Behavior Discovery =-
 *     RFC 5780 response 1
 *     0: : IPv4. UDP reflexive addr: 198.51.100.14:1370
 *     0: : IPv4. Local addr: : 172.16.4.2:57168
 *     No NAT! (Endpoint Independent Mapping)          <- only when reflexive = local (needs -L)
 *     NAT with Address and Port Dependent Mapping!
 *     -= Filtering Behavior Discovery =-
 *     STUN receive timeout..
 *     NAT with Address and Port Dependent Filtering!
 *
 * A test with no answer at all (no UDP) prints "STUN receive timeout.." and no verdict; the exit
 * code is 0 either way, so the verdict is read from the text only.
 */
import {accessSync, constants} from 'node:fs'
import path from 'node:path'
import type {FilteringBehaviour, MappingBehaviour} from '../shared/nat/net-report.js'

export const NATDISCOVERY_BIN = 'turnutils_natdiscovery'

/** The binary's path on PATH, or undefined (apt-get install coturn; scripts/setup.sh does it). */
export function findNatdiscovery(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, NATDISCOVERY_BIN)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not in this directory
    }
  }
  return undefined
}

/**
 * Arguments for the mapping and filtering tests against `server` (its primary address; coturn
 * learns the alternate from OTHER-ADDRESS), bound to `local` so that "No NAT!" can be told: bound
 * to the unspecified address coturn compares the reflexive address with 0.0.0.0 and never says it.
 */
export const natdiscoveryArgs = (server: {address: string; port: number}, local: string): string[] => [
  '-m',
  '-f',
  '-L',
  local,
  '-p',
  String(server.port),
  server.address,
]

/** coturn's wording → RFC 4787 names as in NetReport. */
const BEHAVIOUR: Record<string, MappingBehaviour & FilteringBehaviour> = {
  'Endpoint Independent': 'endpoint-independent',
  'Address Dependent': 'address-dependent',
  'Address and Port Dependent': 'address-and-port-dependent',
}

export interface Endpoint {
  address: string
  port: number
}

export interface NatdiscoveryVerdict {
  /** The mapping verdict; undefined when it printed none (no answer to test I). */
  mapping: MappingBehaviour | undefined
  /** The filtering verdict; undefined when it printed none. */
  filtering: FilteringBehaviour | undefined
  /** It said "No NAT!" in the mapping tests: test I's reflexive address is its local one. */
  noNat: boolean
  /** Test I's reflexive (mapped) address and the local address it was sent from. */
  reflexive: Endpoint | undefined
  local: Endpoint | undefined
  /** "STUN receive timeout" lines in each part. */
  timeouts: {mapping: number; filtering: number}
}

const FILTERING_HEADER = '-= Filtering Behavior Discovery =-'

const endpointAfter = (label: string, text: string): Endpoint | undefined => {
  const m = new RegExp(`${label}:(?: :)? (\\d{1,3}(?:\\.\\d{1,3}){3}):(\\d+)`).exec(text)
  return m ? {address: m[1]!, port: Number(m[2])} : undefined
}

/** Parses `turnutils_natdiscovery -m -f` output (stdout and stderr together). */
export function parseNatdiscovery(out: string): NatdiscoveryVerdict {
  const split = out.indexOf(FILTERING_HEADER)
  const mappingPart = split < 0 ? out : out.slice(0, split)
  const filteringPart = split < 0 ? '' : out.slice(split)
  const timeouts = (s: string): number => s.match(/STUN receive timeout/g)?.length ?? 0
  const mapping = /NAT with (.+?) Mapping!/.exec(mappingPart)?.[1]
  const filtering = /NAT with (.+?) Filtering!/.exec(filteringPart)?.[1]
  return {
    mapping: mapping === undefined ? undefined : (BEHAVIOUR[mapping] ?? 'unknown'),
    filtering: filtering === undefined ? undefined : (BEHAVIOUR[filtering] ?? 'unknown'),
    noNat: /No NAT!/.test(mappingPart),
    reflexive: endpointAfter('UDP reflexive addr', mappingPart),
    local: endpointAfter('Local addr', mappingPart),
    timeouts: {mapping: timeouts(mappingPart), filtering: timeouts(filteringPart)},
  }
}
