/**
 * The NAT lab: each node behind its own NAT router namespace. A router has `eth0` on the lab's
 * "internet" (the switch, 198.51.100.0/24) and `lan0` on the node's private LAN (172.16.N.0/24);
 * one nftables table (`ip natlab`) per router makes it behave as one kind of NAT, drops
 * unsolicited inbound traffic as home routers do, and counts packets by path so tests can tell
 * a direct path from a relayed one. A `none` node has no router: its own namespace gets the same
 * table, without NAT and without the inbound drop, so counters and blocks work the same there.
 */
import {MeshError} from '../../../shared/errors.js'
import type {LabNode} from './state.js'
import {run, runOk} from './sh.js'

export const NAT_KINDS = ['none', 'cone', 'restricted', 'symmetric', 'udp-blocked'] as const
export type NatKind = (typeof NAT_KINDS)[number]

/** What each kind is, for help texts and the README. */
export const NAT_KIND_HELP: Record<NatKind, string> = {
  none: 'a public address, no NAT',
  cone: 'endpoint-independent mapping and filtering (full cone)',
  restricted: 'Linux masquerade: endpoint-independent mapping, address-and-port-dependent filtering',
  symmetric: 'masquerade fully-random: a new mapping per destination',
  'udp-blocked': 'no UDP gets out, only TCP (and ICMP)',
}

/** The nftables table every router (and every `none` node) gets. */
export const NAT_TABLE = 'natlab'
/** How long the cone router keeps a learned mapping after the client's last outbound packet. */
export const CONE_MAPPING_TIMEOUT_S = 120

/**
 * Named counters on every router (and `none` node). "out" is LAN -> internet, "in" internet ->
 * LAN; on a `none` node out/in are the node's own output/input on eth0.
 */
export const COUNTER_NAMES = [
  /** UDP to the controller's addresses (either of them, any port). */
  'udp_out_controller',
  /** UDP to any other internet address: other routers, `none` nodes, the stranger. */
  'udp_out_other',
  /** TCP to the controller (API, netmap, relay). */
  'tcp_out_controller',
  /** UDP from the controller let in (replies, or cone's endpoint-independent filtering). */
  'udp_in_controller',
  /** UDP from any other internet address let in. */
  'udp_in_other',
  /** UDP the `udp-blocked` router refused to forward. */
  'udp_out_dropped',
  /** Unsolicited inbound traffic dropped on the WAN side (forwarded or to the router itself). */
  'wan_in_dropped',
  /** UDP dropped by blockUdp() rules, both directions. */
  'udp_blocked',
] as const
export type CounterName = (typeof COUNTER_NAMES)[number]

export interface PacketCount {
  packets: number
  bytes: number
}

export interface RouterCounters {
  kind: NatKind
  /** The namespace the table lives in (the router's, or the node's own for `none`). */
  ns: string
  counters: Record<CounterName, PacketCount>
  /** UDP out by destination address (every destination, the controller's included). */
  udpOutTo: Record<string, PacketCount>
  /** UDP let in by source address. */
  udpInFrom: Record<string, PacketCount>
  /** Unsolicited inbound packets (any protocol) dropped on the WAN side, by source address. */
  droppedFrom: Record<string, PacketCount>
}

/** Parses `--nat none,cone,...`; a MeshError naming the bad kind otherwise. */
export function parseNatKinds(text: string): NatKind[] {
  const kinds = text
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean)
  if (kinds.length === 0)
    throw new MeshError('INVALID_ARGUMENT', {message: '--nat needs at least one kind', hint: natHint()})
  for (const k of kinds) {
    if (!(NAT_KINDS as readonly string[]).includes(k))
      throw new MeshError('INVALID_ARGUMENT', {
        message: `unknown NAT kind ${JSON.stringify(k)}`,
        hint: natHint(),
      })
  }
  return kinds as NatKind[]
}

const natHint = (): string => `kinds: ${NAT_KINDS.join(', ')} (one per node, comma-separated)`

/** The private LAN behind node N's router. */
export function routerLan(index: number): {cidr: string; gateway: string; host: string} {
  if (!Number.isInteger(index) || index < 1 || index > 254) throw new Error(`no LAN for node index ${index}`)
  return {cidr: `172.16.${index}.0/24`, gateway: `172.16.${index}.1`, host: `172.16.${index}.2`}
}

export const WAN_IF = 'eth0'
export const LAN_IF = 'lan0'

const counterDecls = (): string => COUNTER_NAMES.map((c) => `  counter ${c} {}`).join('\n')

const commonSets = (controller: readonly string[]): string =>
  [
    `  set controller { type ipv4_addr; elements = { ${controller.join(', ')} } }`,
    // blockUdp() adds addresses here; their UDP is dropped both ways.
    `  set blocked { type ipv4_addr; }`,
    `  set udp_out_by_dst { type ipv4_addr; size 4096; flags dynamic; counter; }`,
    `  set udp_in_by_src { type ipv4_addr; size 4096; flags dynamic; counter; }`,
    `  set wan_in_dropped_by_src { type ipv4_addr; size 4096; flags dynamic; counter; }`,
  ].join('\n')

/** The counting chains: the per-address updates sit in rules of their own (a full set fails the rule). */
const countingChains = (udpBlocked: boolean): string =>
  [
    `  chain count_out {`,
    ...(udpBlocked ? [`    meta l4proto udp counter name udp_out_dropped drop`] : []),
    `    meta l4proto udp update @udp_out_by_dst { ip daddr }`,
    `    meta l4proto udp ip daddr @controller counter name udp_out_controller accept`,
    `    meta l4proto udp counter name udp_out_other accept`,
    `    meta l4proto tcp ip daddr @controller counter name tcp_out_controller accept`,
    `    accept`,
    `  }`,
    `  chain count_in {`,
    `    meta l4proto udp update @udp_in_by_src { ip saddr }`,
    `    meta l4proto udp ip saddr @controller counter name udp_in_controller accept`,
    `    meta l4proto udp counter name udp_in_other accept`,
    `    accept`,
    `  }`,
  ].join('\n')

/**
 * The ruleset of a NAT router (pure; `nft -f -` input). `client` is the node's LAN address,
 * `controller` the controller's addresses.
 */
export function routerRuleset(opts: {
  kind: Exclude<NatKind, 'none'>
  client: string
  controller: readonly string[]
}): string {
  const {kind, client} = opts
  const cone = kind === 'cone'
  const masquerade = kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade'
  return [
    `table ip ${NAT_TABLE} {`,
    counterDecls(),
    commonSets(opts.controller),
    ...(cone
      ? [
          // Post-NAT source ports the client used: inbound UDP to them, from anyone, goes to it.
          `  set cone_udp { type inet_service; size 65536; flags dynamic,timeout; timeout ${CONE_MAPPING_TIMEOUT_S}s; }`,
        ]
      : []),
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    ...(cone ? [`    iifname "${WAN_IF}" udp dport @cone_udp dnat to ${client}`] : []),
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    oifname "${WAN_IF}" ${masquerade}`,
    `  }`,
    ...(cone
      ? [
          // After srcnat the packet carries its translated source port: learn (refresh) it.
          `  chain learn {`,
          `    type filter hook postrouting priority srcnat + 10; policy accept;`,
          `    oifname "${WAN_IF}" meta l4proto udp update @cone_udp { udp sport timeout ${CONE_MAPPING_TIMEOUT_S}s }`,
          `  }`,
        ]
      : []),
    countingChains(kind === 'udp-blocked'),
    `  chain wan_in {`,
    `    ct state established,related goto count_in`,
    ...(cone ? [`    ct status dnat goto count_in`] : []),
    `    update @wan_in_dropped_by_src { ip saddr }`,
    `    counter name wan_in_dropped drop`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy drop;`,
    `    meta l4proto udp ip daddr @blocked counter name udp_blocked drop`,
    `    meta l4proto udp ip saddr @blocked counter name udp_blocked drop`,
    `    iifname "${LAN_IF}" oifname "${WAN_IF}" goto count_out`,
    `    iifname "${WAN_IF}" oifname "${LAN_IF}" goto wan_in`,
    `  }`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname "${WAN_IF}" ct state established,related accept`,
    `    iifname "${WAN_IF}" update @wan_in_dropped_by_src { ip saddr }`,
    `    iifname "${WAN_IF}" counter name wan_in_dropped drop`,
    `  }`,
    `}`,
    '',
  ].join('\n')
}

/** The table of a `none` node, in its own namespace: counting and blocks only. */
export function hostRuleset(opts: {controller: readonly string[]}): string {
  return [
    `table ip ${NAT_TABLE} {`,
    counterDecls(),
    commonSets(opts.controller),
    countingChains(false),
    `  chain output {`,
    `    type filter hook output priority filter; policy accept;`,
    `    oifname "${WAN_IF}" meta l4proto udp ip daddr @blocked counter name udp_blocked drop`,
    `    oifname "${WAN_IF}" goto count_out`,
    `  }`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname "${WAN_IF}" meta l4proto udp ip saddr @blocked counter name udp_blocked drop`,
    `    iifname "${WAN_IF}" goto count_in`,
    `  }`,
    `}`,
    '',
  ].join('\n')
}

/** Loads a ruleset into a namespace. */
export async function loadRuleset(ns: string, ruleset: string): Promise<void> {
  await runOk('nft', ['-f', '-'], {ns, input: ruleset, timeoutMs: 10_000})
}

/** Where a node's NAT table lives: its router's namespace, or its own for `none`. */
export function natNamespace(node: LabNode): string {
  if (!node.nat) throw new Error(`${node.name} was not built with --nat: it has no counters`)
  return node.router?.ns ?? node.ns
}

/** The address the internet sees a node at: its router's WAN address, or its own. */
export const publicAddress = (node: LabNode): string => node.router?.wan ?? node.underlay

interface NftObject {
  counter?: {name: string; packets: number; bytes: number}
  set?: {name: string; elem?: unknown[]}
}

const count = (x: unknown): PacketCount => {
  const c = (x as {counter?: {packets?: unknown; bytes?: unknown}} | undefined)?.counter
  return {packets: Number(c?.packets ?? 0), bytes: Number(c?.bytes ?? 0)}
}

/** Parses `nft -j list table ip natlab` into counters (exported for the unit test). */
export function parseCounters(json: string, kind: NatKind, ns: string): RouterCounters {
  const doc = JSON.parse(json) as {nftables?: NftObject[]}
  const counters = Object.fromEntries(COUNTER_NAMES.map((c) => [c, {packets: 0, bytes: 0}])) as Record<
    CounterName,
    PacketCount
  >
  const sets: Record<string, Record<string, PacketCount>> = {
    udp_out_by_dst: {},
    udp_in_by_src: {},
    wan_in_dropped_by_src: {},
  }
  for (const o of doc.nftables ?? []) {
    if (o.counter && (COUNTER_NAMES as readonly string[]).includes(o.counter.name))
      counters[o.counter.name as CounterName] = {packets: o.counter.packets, bytes: o.counter.bytes}
    const target = o.set ? sets[o.set.name] : undefined
    if (!target) continue
    for (const e of o.set!.elem ?? []) {
      // With counters an element is {elem: {val: "1.2.3.4", counter: {...}}}.
      const inner = (e as {elem?: {val?: unknown}}).elem
      if (inner && typeof inner.val === 'string') target[inner.val] = count(inner)
    }
  }
  return {
    kind,
    ns,
    counters,
    udpOutTo: sets.udp_out_by_dst!,
    udpInFrom: sets.udp_in_by_src!,
    droppedFrom: sets.wan_in_dropped_by_src!,
  }
}

/** What the lab needs to find a node by name (the Lab class). */
export interface NodeLookup {
  node(name: string): LabNode
}

const resolve = (lab: NodeLookup, node: LabNode | string): LabNode =>
  typeof node === 'string' ? lab.node(node) : node

/** A node's router counters (or its own, for `none`), read now. `node`: a node or its name. */
export async function routerCounters(lab: NodeLookup, node: LabNode | string): Promise<RouterCounters> {
  const n = resolve(lab, node)
  const ns = natNamespace(n)
  const out = await runOk('nft', ['-j', 'list', 'table', 'ip', NAT_TABLE], {ns, timeoutMs: 10_000})
  return parseCounters(out, n.nat!, ns)
}

/** A node (or its name), whose public address is meant, or a dotted IPv4 address. */
export type UdpTarget = LabNode | string

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

const targetAddress = (lab: NodeLookup, t: UdpTarget): string => {
  if (typeof t === 'string' && IPV4_RE.test(t)) return t
  return publicAddress(resolve(lab, t))
}

/**
 * Drops all UDP between `node` (at its router, or on the node itself for `none`) and `target`
 * (another node's public address, or any address), both directions, established flows
 * included, until unblockUdp(). Counted in `udp_blocked`. Idempotent.
 */
export async function blockUdp(lab: NodeLookup, node: LabNode | string, target: UdpTarget): Promise<void> {
  const n = resolve(lab, node)
  await runOk('nft', ['add', 'element', 'ip', NAT_TABLE, 'blocked', `{ ${targetAddress(lab, target)} }`], {
    ns: natNamespace(n),
    timeoutMs: 10_000,
  })
}

/** Lifts blockUdp(). Idempotent. */
export async function unblockUdp(lab: NodeLookup, node: LabNode | string, target: UdpTarget): Promise<void> {
  const n = resolve(lab, node)
  const ns = natNamespace(n)
  const addr = targetAddress(lab, target)
  const r = await run('nft', ['delete', 'element', 'ip', NAT_TABLE, 'blocked', `{ ${addr} }`], {
    ns,
    timeoutMs: 10_000,
  })
  if (r.code !== 0 && !/No such file or directory/i.test(r.stderr))
    throw new Error(`nft delete element blocked { ${addr} } in ${ns}: ${r.stderr.trim()}`)
}

/** Packets from `from` so far in one of a RouterCounters' per-address maps (0 when none). */
export const packetsOf = (m: Record<string, PacketCount>, from: string): number => m[from]?.packets ?? 0

/** The addresses whose UDP is blocked at a node's router. */
export async function blockedUdp(lab: NodeLookup, node: LabNode | string): Promise<string[]> {
  const out = await runOk('nft', ['-j', 'list', 'set', 'ip', NAT_TABLE, 'blocked'], {
    ns: natNamespace(resolve(lab, node)),
    timeoutMs: 10_000,
  })
  const doc = JSON.parse(out) as {nftables?: NftObject[]}
  const set = doc.nftables?.find((o) => o.set)?.set
  return (set?.elem ?? []).filter((e): e is string => typeof e === 'string')
}
