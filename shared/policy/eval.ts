/**
 * Evaluating a policy against concrete nodes: which nodes a selector matches, and canReach, the
 * reference semantics that the compiler and the embedded tests must agree with (the property
 * tests compare them).
 */
import {parseIPv4, prefixMask} from '../net/ipv4.js'
import {portInRanges} from './ports.js'
import type {Policy, PolicyNode, PolicyProto, PolicyRule, Selector} from './types.js'

/**
 * Whether a selector matches a node. A tagged node is matched by its tags (and by `*` and by
 * addresses) only, never through its owner's name or groups (policy or IdP): a server someone
 * tagged is not "theirs" (Tailscale's rule). IdP groups are the owner's at their last login. A node whose address does not parse is matched by no address.
 */
export function selectorMatches(sel: Selector, node: PolicyNode, address = parseIPv4(node.address)): boolean {
  switch (sel.kind) {
    case 'all':
      return true
    case 'user':
      return node.tags.length === 0 && node.owner === sel.user
    case 'group':
      return (
        node.tags.length === 0 &&
        node.owner !== null &&
        (sel.users.has(node.owner) || inIdpGroup(sel.idpGroups, node.ownerGroups))
      )
    case 'tag':
      return node.tags.includes(sel.tag)
    case 'cidr':
      return address !== undefined && (address & prefixMask(sel.prefix)) >>> 0 === sel.base
  }
}

/** Whether any of the owner's IdP groups is one the policy group names (`oidc:NAME` members). */
export function inIdpGroup(named: ReadonlySet<string>, ownerGroups: readonly string[] | undefined): boolean {
  if (named.size === 0 || ownerGroups === undefined) return false
  for (const g of ownerGroups) if (named.has(g)) return true
  return false
}

/** Whether a rule's protocol covers `proto` (a rule without one covers every protocol). */
export const ruleCoversProto = (rule: PolicyRule, proto: PolicyProto): boolean =>
  rule.proto === null || rule.proto === proto

/**
 * The first rule that lets `src` open a connection to `dst` with proto/port, or undefined.
 * `port` is ignored for icmp; omitted for tcp/udp it means "on some port".
 */
export function allowingRule(
  policy: Policy,
  src: PolicyNode,
  dst: PolicyNode,
  proto: PolicyProto,
  port?: number,
): PolicyRule | undefined {
  const srcAddr = parseIPv4(src.address)
  const dstAddr = parseIPv4(dst.address)
  for (const rule of policy.rules) {
    if (!ruleCoversProto(rule, proto)) continue
    if (!rule.src.some((s) => selectorMatches(s, src, srcAddr))) continue
    for (const d of rule.dst) {
      if (proto !== 'icmp' && port !== undefined && !portInRanges(port, d.ports)) continue
      if (selectorMatches(d.selector, dst, dstAddr)) return rule
    }
  }
  return undefined
}

/**
 * Whether `src` may open a connection to `dst` on proto/port under the policy (default deny:
 * only what a rule allows; replies to an allowed connection always flow back and are not asked
 * about here). `port` is ignored for icmp; omitted for tcp/udp it means "on some port".
 */
export const canReach = (
  policy: Policy,
  src: PolicyNode,
  dst: PolicyNode,
  proto: PolicyProto,
  port?: number,
): boolean => allowingRule(policy, src, dst, proto, port) !== undefined
