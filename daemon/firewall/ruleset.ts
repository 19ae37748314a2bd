/**
 * The nftables script that enforces a network's inbound rules (issue 10) on its mesh interface:
 * a pure function of the interface name, this node's address and the peers' `inbound` entries
 * (shared/protocol/netmap.ts PeerSchema). It runs nothing; daemon/firewall/firewall.ts hands the
 * script to `nft -f`.
 *
 * Every value in the script comes from the network and is hostile: the interface name must match
 * InterfaceNameSchema's character set, addresses are parsed to numbers (shared/net/ipv4.ts) and
 * printed back from them, ports and protocols are checked integers and fixed words. No string from
 * the input is ever copied into the script, so nothing a controller sends can add nft syntax.
 *
 * The table, one per interface (`inet mesh_<iface>`), replaced whole in one transaction:
 *
 * 1. `table …` + `delete table …` first: the table now exists for the delete to succeed, and the
 *    delete removes what an earlier script left; nft commits the file atomically, so there is no
 *    moment with the old rules gone and the new ones not yet in (nor one with everything dropped).
 * 2. Sets keep the script O(peers + rules): `allow_all` (peers without `inbound`), `tcp_in` and
 *    `udp_in` (concatenated `ipv4_addr . inet_service` interval sets of peer . port range) and
 *    `icmp_in`. Each packet costs one lookup per set, whatever the number of peers.
 * 3. One base chain on prerouting at priority -150 (mangle; conntrack ran at -200, DNAT runs at
 *    -100) jumps to `from_mesh` for packets that came in on the interface. Prerouting rather than
 *    input: it sees packets this node would forward as well as its own, and sees them before DNAT,
 *    so a port published through DNAT (a container runtime's) is matched as the peer addressed it
 *    and a forward path cannot bypass the rules. Restricted peers may only address this node's
 *    mesh address; peers without `inbound` keep today's "everything" (forwarding included).
 *    Output is not filtered: what this node sends is the receiving peer's rules' business.
 * 4. `from_mesh`: replies (established, related) pass, invalid packets drop, allow-all peers pass,
 *    meshd's own UDP ports (the `mesh ping` / path-probe port: path checks and relay upgrades need
 *    it from every peer) pass, then the per-peer sets, then everything else from the interface is
 *    dropped, IPv6 included (the mesh is IPv4; WireGuard's allowed IPs admit no IPv6 source).
 *
 * Without any peer carrying `inbound` (no ACL policy) there is no table at all: the script only
 * removes a table an earlier policy left, and traffic flows exactly as before policies existed.
 */
import {cidrContains, formatIPv4, parseCidr, parseIPv4} from '../../shared/net/ipv4.js'

/** Interface names as InterfaceNameSchema (shared/protocol/local-api.ts) allows them. */
const IFACE_RE = /^[a-zA-Z0-9_-]{1,15}$/

/** A peer as the ruleset sees it: its mesh address and its `inbound` entry (absent: all). */
export interface FirewallPeer {
  readonly address: string
  readonly inbound?: readonly unknown[] | undefined
}

export interface RulesetInput {
  /** The mesh interface (WireGuard) the rules guard. */
  readonly iface: string
  /** The network's CIDR: every address must lie inside it. */
  readonly cidr: string
  /** This node's mesh address: what restricted peers may address. */
  readonly self: string
  readonly peers: readonly FirewallPeer[]
  /** meshd's own UDP ports on the mesh address, open to every peer (daemon/nat/probe.ts). */
  readonly daemonUdpPorts?: readonly number[]
}

/** A peer left out of the ruleset (its traffic then falls to the final drop); `why` is ours. */
export interface SkippedPeer {
  readonly index: number
  readonly why: string
}

export interface Ruleset {
  /** `inet mesh_<iface>`. */
  readonly table: string
  /** Whether any peer carries `inbound`, i.e. whether the script creates a table. */
  readonly policy: boolean
  /** The whole `nft -f` input: the table replaced (or removed) in one transaction. */
  readonly script: string
  readonly skipped: readonly SkippedPeer[]
}

/** The input cannot make a ruleset (a bad interface name, CIDR or own address). */
export class RulesetInputError extends Error {
  override readonly name = 'RulesetInputError'
}

type Range = readonly [number, number]

/** A port range of a hostile rule: two integers 1..65535, low first; undefined otherwise. */
function portRange(r: unknown): Range | undefined {
  if (!Array.isArray(r) || r.length !== 2) return undefined
  const [lo, hi] = r as unknown[]
  const ok = (p: unknown): p is number => Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535
  return ok(lo) && ok(hi) && lo <= hi ? [lo, hi] : undefined
}

/**
 * Sorted, overlapping and adjacent ranges merged: nft refuses overlapping intervals in one set
 * ("conflicting intervals"), and a policy may well name 22 and 20-30 for one peer.
 */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: [number, number][] = []
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1]
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi)
    else out.push([lo, hi])
  }
  return out
}

/** What one peer is allowed, from its hostile `inbound` entry; a string says why it is unusable. */
function peerGrants(
  inbound: readonly unknown[],
): {all: boolean; tcp: Range[]; udp: Range[]; icmp: boolean} | string {
  const g = {all: false, tcp: [] as Range[], udp: [] as Range[], icmp: false}
  for (const [i, rule] of inbound.entries()) {
    const proto = (rule as {proto?: unknown} | null)?.proto
    if (proto === 'all') g.all = true
    else if (proto === 'icmp') g.icmp = true
    else if (proto === 'tcp' || proto === 'udp') {
      const ports = (rule as {ports?: unknown}).ports
      if (!Array.isArray(ports) || ports.length === 0) return `rule ${i}: ${proto} without ports`
      for (const p of ports) {
        const r = portRange(p)
        if (!r) return `rule ${i}: a port range is not two ports 1-65535, low first`
        g[proto].push(r)
      }
    } else return `rule ${i}: unknown protocol`
  }
  return g
}

const element = (addr: number, [lo, hi]: Range): string =>
  `${formatIPv4(addr)} . ${lo === hi ? String(lo) : `${String(lo)}-${String(hi)}`}`

function set(name: string, type: string, elements: readonly string[], interval = false): string[] {
  return [
    `\tset ${name} {`,
    `\t\ttype ${type}`,
    ...(interval ? ['\t\tflags interval'] : []),
    ...(elements.length === 0 ? [] : [`\t\telements = {`, ...elements.map((e) => `\t\t\t${e},`), `\t\t}`]),
    `\t}`,
  ]
}

/**
 * The nftables script for `input.iface` (see the module comment for its shape). Throws
 * RulesetInputError for a bad interface name, CIDR or own address; a peer with a bad address or
 * rule is left out and listed in `skipped` (fail closed: with a policy its traffic is dropped).
 */
export function buildRuleset(input: RulesetInput): Ruleset {
  if (typeof input.iface !== 'string' || !IFACE_RE.test(input.iface))
    throw new RulesetInputError('the interface name is not 1-15 letters, digits, dashes or underscores')
  const cidr = typeof input.cidr === 'string' ? parseCidr(input.cidr) : undefined
  if (!cidr) throw new RulesetInputError('the network CIDR is not an IPv4 prefix')
  const selfNum = typeof input.self === 'string' ? parseIPv4(input.self) : undefined
  if (selfNum === undefined || !cidrContains(cidr, selfNum))
    throw new RulesetInputError("this node's address is not an IPv4 address inside the network")
  const daemonPorts = (input.daemonUdpPorts ?? []).map((p) => portRange([p, p]))
  if (daemonPorts.some((r) => r === undefined)) throw new RulesetInputError('a daemon port is not 1-65535')

  const table = `inet mesh_${input.iface}`
  const header = [`table ${table}`, `delete table ${table}`]
  const policy = input.peers.some((p) => p.inbound !== undefined)
  if (!policy) return {table, policy, script: `${header.join('\n')}\n`, skipped: []}

  const allowAll: string[] = []
  const tcp: string[] = []
  const udp: string[] = []
  const icmp: string[] = []
  const skipped: SkippedPeer[] = []
  const seen = new Set<number>()
  for (const [index, peer] of input.peers.entries()) {
    const addr = typeof peer.address === 'string' ? parseIPv4(peer.address) : undefined
    if (addr === undefined || !cidrContains(cidr, addr) || addr === selfNum) {
      skipped.push({index, why: 'its address is not an IPv4 address of another node inside the network'})
      continue
    }
    // Two entries for one address: WireGuard would give the /32 to one of them only; nft would
    // refuse the duplicate set element. The first one counts, as in usablePeers (backend.ts).
    if (seen.has(addr)) {
      skipped.push({index, why: 'another peer already has its address'})
      continue
    }
    seen.add(addr)
    if (peer.inbound === undefined) {
      allowAll.push(formatIPv4(addr))
      continue
    }
    const g = Array.isArray(peer.inbound) ? peerGrants(peer.inbound) : 'inbound is not a list'
    if (typeof g === 'string') {
      skipped.push({index, why: g})
      continue
    }
    if (g.all) {
      allowAll.push(formatIPv4(addr))
      continue
    }
    for (const r of mergeRanges(g.tcp)) tcp.push(element(addr, r))
    for (const r of mergeRanges(g.udp)) udp.push(element(addr, r))
    if (g.icmp) icmp.push(formatIPv4(addr))
  }

  const self = formatIPv4(selfNum)
  const ports = mergeRanges(daemonPorts as Range[]).map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`))
  const lines = [
    ...header,
    `table ${table} {`,
    ...set('allow_all', 'ipv4_addr', allowAll),
    ...set('tcp_in', 'ipv4_addr . inet_service', tcp, true),
    ...set('udp_in', 'ipv4_addr . inet_service', udp, true),
    ...set('icmp_in', 'ipv4_addr', icmp),
    `\tchain prerouting {`,
    `\t\ttype filter hook prerouting priority -150; policy accept;`,
    `\t\tiifname "${input.iface}" jump from_mesh`,
    `\t}`,
    `\tchain from_mesh {`,
    `\t\tct state established,related accept`,
    `\t\tct state invalid drop`,
    `\t\tip saddr @allow_all accept`,
    ...(ports.length === 0 ? [] : [`\t\tip daddr ${self} udp dport { ${ports.join(', ')} } accept`]),
    `\t\tip daddr ${self} ip saddr . tcp dport @tcp_in accept`,
    `\t\tip daddr ${self} ip saddr . udp dport @udp_in accept`,
    `\t\tip daddr ${self} ip saddr @icmp_in meta l4proto icmp accept`,
    `\t\tdrop`,
    `\t}`,
    `}`,
  ]
  return {table, policy, script: `${lines.join('\n')}\n`, skipped}
}
