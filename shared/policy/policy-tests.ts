/**
 * Runs a policy's embedded tests abstractly, without a network's nodes: each test selector
 * stands for every hypothetical node it could match, and a test passes only when it holds for
 * all of them.
 *
 * What a test selector stands for:
 *   user      the user's untagged nodes, at any address
 *   group     each member's untagged nodes, at any address (a group without members fails the test);
 *             for an `oidc:NAME` member, the untagged nodes of a user no rule names by name who is
 *             in that IdP group only (who is in it is known only at login: a test holds for any)
 *   tag:x     nodes carrying only tag:x, at any address (a node with more tags may be allowed more)
 *   address   a device at that address (every address of a CIDR or hosts range) with no user or tag
 *   *         every node: a node no rule names, each user, each IdP group (as above) and each tag
 *             the policy names, any address
 * `accept` holds when every such src reaches every such dst on every port listed; `deny` when none
 * reaches any on any port listed. Quantifying over addresses matters: a rule naming the mesh CIDR
 * matches alice's node wherever IPAM put it, so "alice cannot reach tag:db" must see that rule.
 *
 * Algorithm, per test entry and per (src identity, dst identity) pair:
 *   1. keep the rules whose protocol covers the test's, and for each the set of src addresses
 *      (and per dst entry, dst addresses) at which it matches those identities;
 *   2. cut the src and dst address ranges at every boundary of those sets: within one piece the
 *      same rules apply, so one representative address per piece decides it;
 *   3. per pair of pieces, join the allowed ports of the rules that apply and compare with the
 *      ports the test lists.
 * The work is bounded (TEST_WORK_LIMIT); a test past it fails saying so instead of running long.
 */
import {inIdpGroup, ruleCoversProto} from './eval.js'
import {IDP_GROUP_PREFIX} from './parse.js'
import {firstCommonPort, firstUncoveredPort, formatPorts, mergeRanges} from './ports.js'
import type {DstEntry, Policy, PolicyProto, PolicyRule, PolicyTest, PortRange, Selector} from './types.js'

/** One test that does not hold, with what was expected and (for deny) the rule that allowed it. */
export interface PolicyTestFailure {
  /** Index in `tests`, and where the test starts. */
  readonly test: number
  readonly line: number
  readonly column: number
  readonly expected: 'accept' | 'deny'
  /** The test's src and the accept/deny entry, as written ("alice", "tag:db:5432"). */
  readonly src: string
  readonly dst: string
  readonly proto: PolicyProto
  /** A port that fails (absent for icmp). */
  readonly port?: number
  /** For a deny that does not hold: the rule that allows it. */
  readonly rule?: {readonly index: number; readonly line: number}
  /** One line: `tests[1] (line 14): tag:ci must not reach tag:db:5432 over tcp, but acls[0] (line 5) allows port 5432`. */
  readonly message: string
}

/** Pieces × rules examined per test entry before giving up on it. */
export const TEST_WORK_LIMIT = 2_000_000

const FULL: Interval = [0, 0xffffffff]
type Interval = readonly [number, number]

/** An identity: a node without its address. */
interface Identity {
  readonly owner: string | null
  readonly tags: readonly string[]
  /** IdP groups (for a hypothetical member of one; owner null then). */
  readonly groups: readonly string[]
  /** How a message names it when it is not the test's selector itself ("bob (of group:eng)"). */
  readonly label: string
}

/** Runs every embedded test; an empty result means they all hold. */
export function runPolicyTests(policy: Policy): PolicyTestFailure[] {
  const failures: PolicyTestFailure[] = []
  for (const test of policy.tests) {
    for (const [expected, entries] of [
      ['accept', test.accept],
      ['deny', test.deny],
    ] as const) {
      for (const entry of entries) {
        const f = checkEntry(policy, test, entry, expected)
        if (f) failures.push(f)
      }
    }
  }
  return failures
}

/** The identities and address range a test selector stands for (see the module comment). */
function expand(policy: Policy, sel: Selector): {ids: Identity[]; range: Interval} {
  const anonymous: Identity = {owner: null, tags: [], groups: [], label: ''}
  const idpMember = (g: string, of: string): Identity => ({
    owner: null,
    tags: [],
    groups: [g],
    label: `a member of ${IDP_GROUP_PREFIX}${g}${of}`,
  })
  switch (sel.kind) {
    case 'user':
      return {ids: [{owner: sel.user, tags: [], groups: [], label: ''}], range: FULL}
    case 'group':
      return {
        ids: [
          ...[...sel.users]
            .sort()
            .map((u) => ({owner: u, tags: [], groups: [], label: `${u} (of ${sel.text})`})),
          ...[...sel.idpGroups].sort().map((g) => idpMember(g, ` (of ${sel.text})`)),
        ],
        range: FULL,
      }
    case 'tag':
      return {ids: [{owner: null, tags: [sel.tag], groups: [], label: ''}], range: FULL}
    case 'cidr':
      return {ids: [anonymous], range: cidrInterval(sel)}
    case 'all': {
      const users = new Set<string>()
      const idp = new Set<string>()
      const tags = new Set<string>()
      const note = (s: Selector): void => {
        if (s.kind === 'user') users.add(s.user)
        else if (s.kind === 'group') {
          for (const u of s.users) users.add(u)
          for (const g of s.idpGroups) idp.add(g)
        } else if (s.kind === 'tag') tags.add(s.tag)
      }
      for (const r of policy.rules) {
        r.src.forEach(note)
        r.dst.forEach((d) => note(d.selector))
      }
      return {
        ids: [
          {owner: null, tags: [], groups: [], label: 'a node no rule names'},
          ...[...users].sort().map((u) => ({owner: u, tags: [], groups: [], label: `${u}'s nodes`})),
          ...[...idp].sort().map((g) => idpMember(g, '')),
          ...[...tags].sort().map((t) => ({owner: null, tags: [t], groups: [], label: `${t} nodes`})),
        ],
        range: FULL,
      }
    }
  }
}

const cidrInterval = (c: {base: number; prefix: number}): Interval => [
  c.base,
  c.base + 2 ** (32 - c.prefix) - 1,
]

/** Addresses within `range` at which a selector matches a node of this identity (a list of intervals). */
function matchAddresses(sel: Selector, id: Identity, range: Interval): Interval[] {
  const whole = (): Interval[] => [range]
  switch (sel.kind) {
    case 'all':
      return whole()
    case 'user':
      return id.tags.length === 0 && id.owner === sel.user ? whole() : []
    case 'group':
      return id.tags.length === 0 &&
        ((id.owner !== null && sel.users.has(id.owner)) || inIdpGroup(sel.idpGroups, id.groups))
        ? whole()
        : []
    case 'tag':
      return id.tags.includes(sel.tag) ? whole() : []
    case 'cidr': {
      const [lo, hi] = cidrInterval(sel)
      const a = Math.max(lo, range[0])
      const b = Math.min(hi, range[1])
      return a <= b ? [[a, b]] : []
    }
  }
}

const inIntervals = (x: number, set: readonly Interval[]): boolean =>
  set.some(([lo, hi]) => x >= lo && x <= hi)

const covers = (set: readonly Interval[], range: Interval): boolean =>
  set.some(([lo, hi]) => lo <= range[0] && hi >= range[1])

/** Step 2: the start of each piece of `range` cut at every boundary of the sets. */
function pieces(range: Interval, sets: readonly (readonly Interval[])[]): number[] {
  const cuts = new Set<number>([range[0]])
  for (const set of sets) {
    for (const [lo, hi] of set) {
      if (lo > range[0]) cuts.add(lo)
      if (hi < range[1]) cuts.add(hi + 1)
    }
  }
  return [...cuts].sort((a, b) => a - b)
}

interface ApplicableRule {
  readonly rule: PolicyRule
  readonly srcAt: Interval[]
  readonly dst: {readonly at: Interval[]; readonly ports: readonly PortRange[]}[]
}

function checkEntry(
  policy: Policy,
  test: PolicyTest,
  entry: DstEntry,
  expected: 'accept' | 'deny',
): PolicyTestFailure | undefined {
  const src = expand(policy, test.src)
  const dst = expand(policy, entry.selector)
  const proto = test.proto
  // icmp has no ports: ask about "port 1" so port arithmetic stays uniform (icmp rules have :*).
  const want: readonly PortRange[] = proto === 'icmp' ? [[1, 1]] : entry.ports
  const dstText = `${entry.selector.text}:${formatPorts(entry.ports)}`
  const fail = (port: number | undefined, detail: string, rule?: PolicyRule): PolicyTestFailure => {
    const verb = expected === 'accept' ? 'must reach' : 'must not reach'
    const where = proto === 'icmp' ? 'icmp' : port === undefined ? proto : `${proto} port ${port}`
    return {
      test: test.index,
      line: test.line,
      column: test.column,
      expected,
      src: test.src.text,
      dst: dstText,
      proto,
      ...(proto === 'icmp' || port === undefined ? {} : {port}),
      ...(rule ? {rule: {index: rule.index, line: rule.line}} : {}),
      message: `tests[${test.index}] (line ${test.line}): ${test.src.text} ${verb} ${dstText} over ${proto}, but ${detail.replace('%w', where)}`,
    }
  }
  if (src.ids.length === 0 || dst.ids.length === 0) {
    const empty = src.ids.length === 0 ? test.src.text : entry.selector.text
    return fail(undefined, `${empty} has no members, so the test proves nothing`)
  }
  let work = 0
  for (const sid of src.ids) {
    for (const did of dst.ids) {
      // 1. The rules that can apply to this pair of identities, and where.
      const applicable: ApplicableRule[] = []
      for (const rule of policy.rules) {
        if (!ruleCoversProto(rule, proto)) continue
        const srcAt = rule.src.flatMap((s) => matchAddresses(s, sid, src.range))
        if (srcAt.length === 0) continue
        const dsts = rule.dst
          .map((d) => ({at: matchAddresses(d.selector, did, dst.range), ports: d.ports}))
          .filter((d) => d.at.length > 0 && firstCommonPort(d.ports, want) !== undefined)
        if (dsts.length > 0) applicable.push({rule, srcAt, dst: dsts})
      }
      // Shortcut for accept: rules that apply over both whole ranges may already allow every
      // port wanted (the common case, and what makes `*` over many identities cheap).
      if (expected === 'accept') {
        const everywhere = applicable
          .filter((a) => covers(a.srcAt, src.range))
          .flatMap((a) => a.dst.filter((d) => covers(d.at, dst.range)).flatMap((d) => d.ports))
        if (firstUncoveredPort(mergeRanges(everywhere), want) === undefined) continue
      }
      // 2. Pieces of the src and dst ranges.
      const xs = pieces(
        src.range,
        applicable.map((a) => a.srcAt),
      )
      const ys = pieces(
        dst.range,
        applicable.flatMap((a) => a.dst.map((d) => d.at)),
      )
      // 3. Each pair of pieces.
      for (const x of xs) {
        const active = applicable.filter((a) => inIntervals(x, a.srcAt))
        for (const y of ys) {
          work += active.length + 1
          if (work > TEST_WORK_LIMIT) {
            return fail(
              undefined,
              `the test is too costly to evaluate (over ${TEST_WORK_LIMIT} steps): split it`,
            )
          }
          // Name the addresses only where the answer depends on them.
          const who = (xMatters: boolean, yMatters: boolean): string =>
            describe(
              sid,
              did,
              {...(xMatters ? {x} : {}), ...(yMatters ? {y} : {})},
              test.src.text,
              entry.selector.text,
            )
          if (expected === 'accept') {
            const allowed = mergeRanges(
              active.flatMap((a) => a.dst.filter((d) => inIntervals(y, d.at)).flatMap((d) => d.ports)),
            )
            const missing = firstUncoveredPort(allowed, want)
            if (missing !== undefined) {
              return fail(
                proto === 'icmp' ? undefined : missing,
                `no rule allows %w${who(xs.length > 1, ys.length > 1)}`,
              )
            }
          } else {
            for (const a of active) {
              for (const d of a.dst) {
                if (!inIntervals(y, d.at)) continue
                const port = firstCommonPort(d.ports, want)
                if (port !== undefined) {
                  const on = proto === 'icmp' ? '' : ` port ${port}`
                  return fail(
                    proto === 'icmp' ? undefined : port,
                    `acls[${a.rule.index}] (line ${a.rule.line}) allows${on}${who(!covers(a.srcAt, src.range), !covers(d.at, dst.range))}`,
                    a.rule,
                  )
                }
              }
            }
          }
        }
      }
    }
  }
  return undefined
}

const formatAddress = (v: number): string => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')

/**
 * " (from bob (of group:eng) to tag:db at 10.0.0.0)": which of the hypothetical nodes a failure
 * is about, said only where that is not the test's selector itself: a group member, an identity
 * `*` stands for, or an address when the policy treats addresses of the range differently.
 */
function describe(
  sid: Identity,
  did: Identity,
  at: {x?: number; y?: number},
  srcText: string,
  dstText: string,
): string {
  const side = (word: string, id: Identity, text: string, addr: number | undefined): string | undefined =>
    id.label === '' && addr === undefined
      ? undefined
      : `${word} ${id.label || text}${addr === undefined ? '' : ` at ${formatAddress(addr)}`}`
  const parts = [side('from', sid, srcText, at.x), side('to', did, dstText, at.y)].filter(
    (p) => p !== undefined,
  )
  return parts.length ? ` (${parts.join(' ')})` : ''
}
