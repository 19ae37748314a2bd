/**
 * Compiles a policy against one network's nodes into visibility classes for the netmap hub:
 * nodes with the same class see the same peers with the same inbound rules, so the hub encodes
 * one netmap per class instead of one per node.
 *
 * A node's class key is the bitset of the rule entries it matches, in rule order: for each
 * rule one bit "matches some src entry", then one bit per dst entry. Whether a may reach b on
 * proto/port depends only on a's src bits and b's dst bits, so two nodes with one key are
 * interchangeable for every question the hub asks. The key is computed from the node alone,
 * in O(entries) (each distinct selector is evaluated once), so the hub can recompute one
 * node's class when its tags, owner or address change without looking at the others.
 */
import {parseIPv4} from '../net/ipv4.js'
import type {InboundRule} from '../protocol/netmap.js'
import {selectorMatches} from './eval.js'
import {mergeRanges} from './ports.js'
import type {Policy, PolicyNode, PolicyProto, PortRange, Selector} from './types.js'

export interface CompiledPolicy {
  /**
   * The node's visibility class. Nodes with the same class key see the same peers with the
   * same inbound rules. Null policy: one class (`all`) for everyone. Keys are only meaningful
   * to the CompiledPolicy that made them (and to one compiled from the same policy).
   */
  classOf(node: PolicyNode): string
  /** Whether members of class a see members of class b (a may reach b or b may reach a). Symmetric. */
  sees(a: string, b: string): boolean
  /**
   * What members of class `receiver` accept from members of class `sender`, as the netmap's
   * InboundRule[]: undefined = everything (no policy, or a rule for every protocol), [] = only
   * replies. Merged and minimal: tcp, then udp, then icmp; port ranges joined where they
   * overlap or touch. The answer is cached and frozen: the same array for the same pair.
   */
  inbound(receiver: string, sender: string): InboundRule[] | undefined
  /** The classes of the nodes compilePolicy was given: class key → their ids, in the order given. */
  readonly members: ReadonlyMap<string, readonly string[]>
}

/** The one class of a network without a policy. */
export const NO_POLICY_CLASS = 'all'

/** Per class pair answers kept before the caches are dropped and rebuilt (bounds memory). */
const PAIR_CACHE_LIMIT = 1_000_000

interface ClassBits {
  /** Bit r set: the class matches some src entry of rule r. */
  readonly src: Uint32Array
  /** Bit r set: the class matches some dst entry of rule r. */
  readonly dstAny: Uint32Array
  /** The raw key bits, to look up single dst entries. */
  readonly bits: Uint8Array
}

/** Compiles `policy` (null: no policy, everyone sees everyone) against a network's nodes. */
export function compilePolicy(policy: Policy | null, nodes: readonly PolicyNode[]): CompiledPolicy {
  if (policy === null) {
    return {
      classOf: () => NO_POLICY_CLASS,
      sees: () => true,
      inbound: () => undefined,
      members: new Map(nodes.length ? [[NO_POLICY_CLASS, nodes.map((n) => n.id)]] : []),
    }
  }

  // Layout of the key: rule r's src bit at srcBit[r], its dst entry j at dstBit[r] + j.
  const srcBit: number[] = []
  const dstBit: number[] = []
  let width = 0
  for (const rule of policy.rules) {
    srcBit.push(width++)
    dstBit.push(width)
    width += rule.dst.length
  }
  // Each distinct selector is evaluated once per node; `uses` lists the bits it feeds.
  const selectors: Selector[] = []
  const uses: number[][] = []
  const indexOf = new Map<string, number>()
  const use = (sel: Selector, bit: number): void => {
    // Same text, same meaning within one policy (groups and hosts are resolved per policy).
    let i = indexOf.get(sel.text)
    if (i === undefined) {
      i = selectors.push(sel) - 1
      uses.push([])
      indexOf.set(sel.text, i)
    }
    uses[i]!.push(bit)
  }
  policy.rules.forEach((rule, r) => {
    for (const s of rule.src) use(s, srcBit[r]!)
    rule.dst.forEach((d, j) => use(d.selector, dstBit[r]! + j))
  })
  const words = Math.ceil(policy.rules.length / 32) || 1
  const hexLength = Math.ceil(width / 4) || 1

  const classOf = (node: PolicyNode): string => {
    const address = parseIPv4(node.address)
    const bits = new Uint8Array(hexLength)
    for (let i = 0; i < selectors.length; i++) {
      if (!selectorMatches(selectors[i]!, node, address)) continue
      for (const bit of uses[i]!) bits[bit >> 2]! |= 1 << (bit & 3)
    }
    let key = 'p'
    for (const nibble of bits) key += nibble.toString(16)
    return key
  }

  const decoded = new Map<string, ClassBits>()
  const decode = (key: string): ClassBits => {
    let c = decoded.get(key)
    if (c) return c
    if (key.length !== hexLength + 1 || key[0] !== 'p') throw new Error(`not a class key of this policy: ${key}`)
    const bits = new Uint8Array(hexLength)
    for (let i = 0; i < hexLength; i++) bits[i] = parseInt(key[i + 1]!, 16)
    const has = (bit: number): boolean => (bits[bit >> 2]! & (1 << (bit & 3))) !== 0
    const src = new Uint32Array(words)
    const dstAny = new Uint32Array(words)
    policy.rules.forEach((rule, r) => {
      if (has(srcBit[r]!)) src[r >> 5]! |= 1 << (r & 31)
      for (let j = 0; j < rule.dst.length; j++) {
        if (has(dstBit[r]! + j)) {
          dstAny[r >> 5]! |= 1 << (r & 31)
          break
        }
      }
    })
    c = {src, dstAny, bits}
    decoded.set(key, c)
    return c
  }
  const intersects = (a: Uint32Array, b: Uint32Array): boolean => {
    for (let i = 0; i < a.length; i++) if ((a[i]! & b[i]!) !== 0) return true
    return false
  }

  // owned by this CompiledPolicy; cleared whole when past PAIR_CACHE_LIMIT
  const seesCache = new Map<string, boolean>()
  const inboundCache = new Map<string, InboundRule[] | undefined>()

  const sees = (a: string, b: string): boolean => {
    const pair = a < b ? `${a}|${b}` : `${b}|${a}`
    let v = seesCache.get(pair)
    if (v === undefined) {
      const ca = decode(a)
      const cb = decode(b)
      v = intersects(ca.src, cb.dstAny) || intersects(cb.src, ca.dstAny)
      if (seesCache.size >= PAIR_CACHE_LIMIT) seesCache.clear()
      seesCache.set(pair, v)
    }
    return v
  }

  const inbound = (receiver: string, sender: string): InboundRule[] | undefined => {
    const pair = `${receiver}|${sender}`
    if (inboundCache.has(pair)) return inboundCache.get(pair)
    const rc = decode(receiver)
    const sc = decode(sender)
    const ports: Record<'tcp' | 'udp', PortRange[]> = {tcp: [], udp: []}
    let icmp = false
    let all = false
    policy.rules.forEach((rule, r) => {
      if (all || (sc.src[r >> 5]! & (1 << (r & 31))) === 0) return
      for (let j = 0; j < rule.dst.length; j++) {
        const bit = dstBit[r]! + j
        if ((rc.bits[bit >> 2]! & (1 << (bit & 3))) === 0) continue
        if (rule.proto === null) all = true
        else if (rule.proto === 'icmp') icmp = true
        else ports[rule.proto].push(...rule.dst[j]!.ports)
      }
    })
    let result: InboundRule[] | undefined
    if (all) result = undefined
    else {
      result = []
      for (const proto of ['tcp', 'udp'] as const satisfies readonly PolicyProto[]) {
        if (ports[proto].length === 0) continue
        const merged = mergeRanges(ports[proto])
        result.push(Object.freeze({proto, ports: merged.map(([lo, hi]) => Object.freeze([lo, hi]) as [number, number])}))
      }
      if (icmp) result.push(Object.freeze({proto: 'icmp' as const}))
      Object.freeze(result)
    }
    if (inboundCache.size >= PAIR_CACHE_LIMIT) inboundCache.clear()
    inboundCache.set(pair, result)
    return result
  }

  const members = new Map<string, string[]>()
  for (const node of nodes) {
    const key = classOf(node)
    const list = members.get(key)
    if (list) list.push(node.id)
    else members.set(key, [node.id])
  }
  return {classOf, sees, inbound, members}
}
