/**
 * Parses and validates an ACL policy document: JSON with comments and trailing commas
 * (HuJSON-style, like Tailscale's policy file), read with jsonc-parser so that every error names
 * a line, a column and the JSON path of what is wrong. Pure: no I/O.
 *
 * Steps (the comments below refer to them):
 *   1. bound the text (size) and its nesting (a scan of tokens, before the recursive parser runs);
 *   2. parse to a tree; syntax errors stop here;
 *   3. refuse duplicate keys anywhere (JSON.parse would keep the last one silently);
 *   4. read groups, flatten them (no cycles, bounded depth and size), then hosts; a group member
 *      `oidc:NAME` names a group at the OpenID provider (IDP_GROUP_PREFIX below), kept as it is: who is
 *      in it is known only at each node, from its owner's last login;
 *   5. read acls and tests, resolving every selector against groups and hosts;
 *   6. bound what the result costs downstream (port ranges per protocol, for the firewall).
 * Errors are collected (up to MAX_ERRORS), not stopped at the first, so one `mesh policy check`
 * shows them all.
 */
import {createScanner, parseTree, printParseErrorCode, SyntaxKind} from 'jsonc-parser'
import type {Node, ParseError} from 'jsonc-parser'
import {parseCidr, parseIPv4} from '../net/ipv4.js'
import {TagSchema, UsernameSchema} from '../protocol/control-api.js'
import {formatByteLimit} from '../limits.js'
import {hasNoControlCharacters} from '../text.js'
import {mergeRanges, parsePorts} from './ports.js'
import type {
  DstEntry,
  Policy,
  PolicyError,
  PolicyProto,
  PolicyRule,
  PolicyTest,
  PortRange,
  Selector,
} from './types.js'

/** Bounds on a policy document; each is far above a real policy and keeps a hostile one cheap. */
export const POLICY_LIMITS = {
  /** UTF-8 bytes of the whole text. */
  bytes: 1024 * 1024,
  /** Nesting of objects and arrays (a real policy needs 4: root, acls, rule, dst). */
  depth: 16,
  rules: 1000,
  tests: 1000,
  groups: 1000,
  hosts: 1000,
  /** Items of any one list: src, dst, accept, deny, a group's members. */
  listItems: 1000,
  /** How deep groups may include groups. */
  groupDepth: 100,
  /** The sum over groups of their flattened membership (a chain of groups each including the
   *  last would otherwise grow quadratically). */
  groupMembers: 1_000_000,
  /** Separate port ranges per protocol over the whole policy: the netmap's inbound entry of a
   *  peer carries at most 64 (shared/protocol/netmap.ts InboundRuleSchema), and the ranges one
   *  peer gets are at most the union of the policy's. */
  portRangesPerProto: 64,
  /** Errors reported; the rest are dropped. */
  errors: 100,
} as const

export interface ParsePolicyOptions {
  /**
   * The tenant's user names, when the caller knows them. Then a bare name that is neither a
   * hosts entry nor one of these users is an error ("unknown user or host"), and a hosts name
   * may not be a user's name. Without it, a bare name that is a valid user name is taken as a
   * user (who may not exist yet) and a hosts entry of the same name wins.
   */
  readonly users?: Iterable<string>
}

export type ParsePolicyResult = {ok: true; policy: Policy} | {ok: false; errors: PolicyError[]}

const GROUP = /^group:[a-z0-9][a-z0-9._-]{0,62}$/
/**
 * A group member naming a group at the OpenID provider: `oidc:` and the group as the provider's
 * group claim spells it (case and spaces kept; 1-200 characters without control characters,
 * the claims the controller stores: controller/auth/oidc.ts groupsOf). Any configured issuer's
 * claim counts. Only inside `groups`: a rule names the policy group.
 */
export const IDP_GROUP_PREFIX = 'oidc:'
const IDP_GROUP_MAX = 200
const HOST = /^[a-z0-9][a-z0-9._-]{0,62}$/
const IP_LIKE = /^[0-9./]+$/
const PROTOS: readonly PolicyProto[] = ['tcp', 'udp', 'icmp']
const TOP_KEYS = ['groups', 'hosts', 'acls', 'tests']
const RULE_KEYS = ['src', 'dst', 'proto']
const TEST_KEYS = ['src', 'accept', 'deny', 'proto']

/** jsonc-parser's error codes as one-line messages. */
const SYNTAX_MESSAGES: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'bad number',
  PropertyNameExpected: 'expected a key in double quotes',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":"',
  CommaExpected: 'expected ","',
  CloseBraceExpected: 'expected "}"',
  CloseBracketExpected: 'expected "]"',
  EndOfFileExpected: 'unexpected text after the document',
  InvalidCommentToken: 'bad comment',
  UnexpectedEndOfComment: 'comment not closed',
  UnexpectedEndOfString: 'string not closed',
  UnexpectedEndOfNumber: 'number cut short',
  InvalidUnicode: 'bad \\u escape',
  InvalidEscapeCharacter: 'bad escape in string',
  InvalidCharacter: 'control character in string',
}

/** Path segment for a key: `.name` when it reads as an identifier, `["group:eng"]` otherwise. */
const keySegment = (key: string): string =>
  /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`
const join = (path: string, key: string): string =>
  path === '' ? keySegment(key).replace(/^\./, '') : path + keySegment(key)

class TooManyErrors extends Error {}

/** Collects errors with positions; owned by one parsePolicy call. */
class Reporter {
  readonly errors: PolicyError[] = []
  private lineStarts: number[] | undefined
  private last: {line: number; offset: number; column: number} | undefined

  constructor(private readonly text: string) {}

  at(offset: number, path: string, message: string): void {
    const {line, column} = this.position(offset)
    this.errors.push({line, column, path, message})
    if (this.errors.length >= POLICY_LIMITS.errors) throw new TooManyErrors()
  }

  node(node: Node, path: string, message: string): void {
    this.at(node.offset, path, message)
  }

  /** 1-based line and column (in characters, a surrogate pair counting once) of an offset. */
  position(offset: number): {line: number; column: number} {
    this.lineStarts ??= lineStarts(this.text)
    const starts = this.lineStarts
    let lo = 0
    let hi = starts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (starts[mid]! <= offset) lo = mid
      else hi = mid - 1
    }
    // Count on from the last position asked for when it is earlier on the same line: rules are
    // asked for in order, and a minified policy is one long line (quadratic otherwise).
    const last = this.last
    let from = starts[lo]!
    let column = 1
    if (last && last.line === lo && last.offset <= offset) {
      from = last.offset
      column = last.column
    }
    for (let i = from; i < offset; i++) {
      const c = this.text.charCodeAt(i)
      if (c >= 0xdc00 && c <= 0xdfff && i > starts[lo]! && isHighSurrogate(this.text.charCodeAt(i - 1)))
        continue
      column++
    }
    this.last = {line: lo, offset, column}
    return {line: lo + 1, column}
  }
}

const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff

/** Offsets where lines start; a line ends at \n, \r\n or \r, as jsonc-parser counts them. */
function lineStarts(text: string): number[] {
  const starts = [0]
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 10) starts.push(i + 1)
    else if (c === 13) {
      if (text.charCodeAt(i + 1) === 10) i++
      starts.push(i + 1)
    }
  }
  return starts
}

/** Parses and validates a policy document; see the module comment for the steps. */
export function parsePolicy(text: string, opts: ParsePolicyOptions = {}): ParsePolicyResult {
  const report = new Reporter(text)
  try {
    const policy = parseInto(text, report, opts)
    if (report.errors.length === 0 && policy) return {ok: true, policy}
  } catch (err) {
    if (!(err instanceof TooManyErrors)) throw err
  }
  // Reading order; errors at one spot keep the order they were found in (sort is stable).
  const errors = [...report.errors].sort((a, b) => a.line - b.line || a.column - b.column)
  return {ok: false, errors}
}

function parseInto(text: string, report: Reporter, opts: ParsePolicyOptions): Policy | undefined {
  // 1. Size first (a UTF-16 length over the limit is over it in UTF-8 too), then nesting.
  if (text.length > POLICY_LIMITS.bytes || Buffer.byteLength(text, 'utf8') > POLICY_LIMITS.bytes) {
    report.at(0, '', `the policy is larger than ${formatByteLimit(POLICY_LIMITS.bytes)}`)
    return undefined
  }
  if (!checkDepth(text, report)) return undefined

  // 2. Syntax.
  const syntax: ParseError[] = []
  const root = parseTree(text, syntax, {
    allowTrailingComma: true,
    disallowComments: false,
    allowEmptyContent: false,
  })
  // Only the first syntax error: the parser's recovery makes the later ones echoes of it.
  const first = syntax[0]
  if (first) report.at(first.offset, '', SYNTAX_MESSAGES[printParseErrorCode(first.error)] ?? 'syntax error')
  if (syntax.length > 0 || !root) {
    if (!root && syntax.length === 0) report.at(0, '', 'the policy is empty: expected an object')
    return undefined
  }
  if (root.type !== 'object') {
    report.node(root, '', 'the policy must be an object: {"acls": [...]}')
    return undefined
  }

  // 3. Duplicate keys, anywhere.
  checkDuplicates(root, '', report)

  const top = properties(root, '', TOP_KEYS, report)
  const users = opts.users === undefined ? undefined : new Set(opts.users)
  const ctx: Ctx = {report, users, groups: new Map(), hosts: new Map()}

  // 4. Groups, then hosts (selectors in acls and tests refer to both).
  if (top.has('groups')) readGroups(top.get('groups')!, ctx)
  if (top.has('hosts')) readHosts(top.get('hosts')!, ctx)

  // 5. Rules and tests.
  const rules: PolicyRule[] = []
  const acls = top.get('acls')
  if (acls === undefined)
    report.at(root.offset, '', 'missing "acls": a policy without rules would deny everything')
  else if (expectArray(acls, 'acls', POLICY_LIMITS.rules, report)) {
    acls.children!.forEach((item, i) => {
      const rule = readRule(item, i, ctx)
      if (rule) rules.push(rule)
    })
  }
  const tests: PolicyTest[] = []
  const testsNode = top.get('tests')
  if (testsNode && expectArray(testsNode, 'tests', POLICY_LIMITS.tests, report)) {
    testsNode.children!.forEach((item, i) => {
      const test = readTest(item, i, ctx)
      if (test) tests.push(test)
    })
  }

  // 6. Downstream bounds.
  if (acls && report.errors.length === 0) checkPortRanges(rules, acls, report)

  const groups = new Map<string, ReadonlySet<string>>()
  for (const [name, g] of ctx.groups) if (g.flat) groups.set(name, g.flat.users)
  return {rules, tests, groups, hosts: ctx.hosts}
}

/** Step 1: nesting depth by a token scan, so the recursive parser never sees a deep document. */
function checkDepth(text: string, report: Reporter): boolean {
  const scanner = createScanner(text, true)
  let depth = 0
  for (let token = scanner.scan(); token !== SyntaxKind.EOF; token = scanner.scan()) {
    if (token === SyntaxKind.OpenBraceToken || token === SyntaxKind.OpenBracketToken) {
      if (++depth > POLICY_LIMITS.depth) {
        report.at(scanner.getTokenOffset(), '', `nested deeper than ${POLICY_LIMITS.depth} levels`)
        return false
      }
    } else if (token === SyntaxKind.CloseBraceToken || token === SyntaxKind.CloseBracketToken) {
      depth = Math.max(0, depth - 1)
    }
  }
  return true
}

/** Step 3: a key given twice in one object is an error at its second occurrence. */
function checkDuplicates(node: Node, path: string, report: Reporter): void {
  if (node.type === 'object') {
    const seen = new Set<string>()
    for (const prop of node.children ?? []) {
      const [key, value] = prop.children ?? []
      if (!key) continue
      const name = String(key.value)
      if (seen.has(name)) report.node(key, join(path, name), `duplicate key "${name}"`)
      seen.add(name)
      if (value) checkDuplicates(value, join(path, name), report)
    }
  } else if (node.type === 'array') {
    node.children?.forEach((child, i) => checkDuplicates(child, `${path}[${i}]`, report))
  }
}

/** The properties of an object node by key (first occurrence); unknown keys are errors. */
function properties(
  node: Node,
  path: string,
  allowed: readonly string[],
  report: Reporter,
): Map<string, Node> {
  const out = new Map<string, Node>()
  for (const prop of node.children ?? []) {
    const [key, value] = prop.children ?? []
    if (!key || !value) continue
    const name = String(key.value)
    if (!allowed.includes(name)) {
      report.node(key, join(path, name), `unknown key "${name}" (allowed: ${allowed.join(', ')})`)
      continue
    }
    if (!out.has(name)) out.set(name, value)
  }
  return out
}

function expectArray(node: Node, path: string, max: number, report: Reporter): boolean {
  if (node.type !== 'array') {
    report.node(node, path, 'expected an array')
    return false
  }
  if (node.children!.length > max) {
    report.node(node, path, `more than ${max} items`)
    return false
  }
  return true
}

function expectObject(node: Node, path: string, max: number, what: string, report: Reporter): boolean {
  if (node.type !== 'object') {
    report.node(node, path, 'expected an object')
    return false
  }
  if (node.children!.length > max) {
    report.node(node, path, `more than ${max} ${what}`)
    return false
  }
  return true
}

/** The string items of an array node (each non-string one an error); undefined when not an array. */
function stringItems(
  node: Node,
  path: string,
  report: Reporter,
  min = 0,
): {value: string; node: Node; path: string}[] | undefined {
  if (!expectArray(node, path, POLICY_LIMITS.listItems, report)) return undefined
  if (node.children!.length < min) {
    report.node(node, path, 'must not be empty')
    return undefined
  }
  const out: {value: string; node: Node; path: string}[] = []
  node.children!.forEach((child, i) => {
    const p = `${path}[${i}]`
    if (child.type !== 'string') report.node(child, p, 'expected a string')
    else out.push({value: child.value as string, node: child, path: p})
  })
  return out
}

/** A group's members, flattened: user names, and IdP group names (prefix cut off). */
interface FlatGroup {
  readonly users: ReadonlySet<string>
  readonly idp: ReadonlySet<string>
}

interface RawGroup {
  readonly key: Node
  readonly members: {value: string; node: Node; path: string}[]
  /** Set once resolved; undefined while in progress or after an error. */
  flat?: FlatGroup
  state: 'new' | 'visiting' | 'done'
}

interface Ctx {
  readonly report: Reporter
  readonly users: ReadonlySet<string> | undefined
  readonly groups: Map<string, RawGroup>
  readonly hosts: Map<string, {base: number; prefix: number}>
}

/** Step 4: groups, flattened depth-first; a cycle is reported at the member that closes it. */
function readGroups(node: Node, ctx: Ctx): void {
  const {report} = ctx
  if (!expectObject(node, 'groups', POLICY_LIMITS.groups, 'groups', report)) return
  for (const prop of node.children!) {
    const [key, value] = prop.children ?? []
    if (!key || !value) continue
    const name = String(key.value)
    const path = join('groups', name)
    if (!GROUP.test(name)) {
      report.node(key, path, `bad group name "${name}": group:name with lowercase letters, digits, . _ -`)
      continue
    }
    if (ctx.groups.has(name)) continue // duplicate key, reported in step 3
    const members = stringItems(value, path, report)
    if (members) ctx.groups.set(name, {key, members, state: 'new'})
  }
  let budget = POLICY_LIMITS.groupMembers
  const resolve = (name: string, stack: string[]): FlatGroup | undefined => {
    const g = ctx.groups.get(name)!
    if (g.state === 'done') return g.flat
    if (budget < 0) return undefined // over the bound: reported once, at the group that crossed it
    g.state = 'visiting'
    stack.push(name)
    const flat = new Set<string>()
    const idp = new Set<string>()
    let ok = true
    for (const m of g.members) {
      if (m.value.startsWith('group:')) {
        const inner = ctx.groups.get(m.value)
        if (!inner) {
          report.node(m.node, m.path, `unknown group "${m.value}"`)
          ok = false
        } else if (inner.state === 'visiting') {
          const cycle = [...stack.slice(stack.indexOf(m.value)), m.value].join(' → ')
          report.node(m.node, m.path, `group cycle: ${cycle}`)
          ok = false
        } else if (stack.length >= POLICY_LIMITS.groupDepth) {
          report.node(m.node, m.path, `groups nest deeper than ${POLICY_LIMITS.groupDepth} levels`)
          ok = false
        } else {
          const innerFlat = resolve(m.value, stack)
          if (innerFlat) {
            for (const u of innerFlat.users) flat.add(u)
            for (const c of innerFlat.idp) idp.add(c)
          } else ok = false
        }
      } else if (m.value.startsWith(IDP_GROUP_PREFIX)) {
        const claim = m.value.slice(IDP_GROUP_PREFIX.length)
        if (claim.length === 0 || claim.length > IDP_GROUP_MAX || !hasNoControlCharacters(claim)) {
          report.node(
            m.node,
            m.path,
            `bad IdP group "${m.value}": oidc: and the group as the provider's claim names it, 1-${IDP_GROUP_MAX} characters`,
          )
          ok = false
        } else idp.add(claim)
      } else if (!UsernameSchema.safeParse(m.value).success) {
        report.node(
          m.node,
          m.path,
          `bad user name "${m.value}": lowercase letters, digits, . _ -; 1-63 characters`,
        )
        ok = false
      } else if (ctx.users && !ctx.users.has(m.value)) {
        report.node(m.node, m.path, `unknown user "${m.value}"`)
        ok = false
      } else flat.add(m.value)
    }
    stack.pop()
    g.state = 'done'
    budget -= flat.size + idp.size
    if (budget < 0) {
      report.node(
        g.key,
        join('groups', name),
        `groups expand to more than ${POLICY_LIMITS.groupMembers} members in all`,
      )
      return undefined
    }
    if (ok) g.flat = {users: flat, idp}
    return g.flat
  }
  for (const name of ctx.groups.keys()) resolve(name, [])
}

function readHosts(node: Node, ctx: Ctx): void {
  const {report} = ctx
  if (!expectObject(node, 'hosts', POLICY_LIMITS.hosts, 'hosts', report)) return
  for (const prop of node.children!) {
    const [key, value] = prop.children ?? []
    if (!key || !value) continue
    const name = String(key.value)
    const path = join('hosts', name)
    if (!HOST.test(name) || IP_LIKE.test(name)) {
      report.node(key, path, `bad host name "${name}": lowercase letters, digits, . _ -, not an address`)
      continue
    }
    if (ctx.users?.has(name)) {
      report.node(key, path, `host name "${name}" is also a user's name`)
      continue
    }
    if (value.type !== 'string') {
      report.node(value, path, 'expected an IPv4 address or CIDR string')
      continue
    }
    const cidr = parseAddressOrCidr(value.value as string)
    if (typeof cidr === 'string') report.node(value, path, cidr)
    else if (!ctx.hosts.has(name)) ctx.hosts.set(name, cidr)
  }
}

/** "10.0.0.9" (a /32) or "10.0.0.0/24" (host bits zero); otherwise a message. */
function parseAddressOrCidr(text: string): {base: number; prefix: number} | string {
  if (text.includes('/')) {
    const c = parseCidr(text)
    if (c) return {base: c.base, prefix: c.prefix}
    const loose = parseCidr(text, {strict: false})
    if (loose) return `bad CIDR "${text}": host bits set (did you mean ${formatLoose(loose)}?)`
    return `bad CIDR "${text}": expected a.b.c.d/n with n 0-32`
  }
  const a = parseIPv4(text)
  return a === undefined ? `bad IPv4 address "${text}"` : {base: a, prefix: 32}
}

const formatLoose = (c: {base: number; prefix: number}): string =>
  `${[c.base >>> 24, (c.base >>> 16) & 255, (c.base >>> 8) & 255, c.base & 255].join('.')}/${c.prefix}`

/** Resolves a selector's text (a src, or a dst before its `:ports`); a string is an error message. */
function resolveSelector(text: string, ctx: Ctx): Selector | string {
  if (text === '*') return {kind: 'all', text}
  if (text.startsWith('group:')) {
    const g = ctx.groups.get(text)
    if (!g) return `unknown group "${text}"`
    // A group that failed to resolve was reported where it is defined; match nobody meanwhile.
    return {kind: 'group', text, users: g.flat?.users ?? new Set(), idpGroups: g.flat?.idp ?? new Set()}
  }
  if (text.startsWith(IDP_GROUP_PREFIX)) {
    return `an IdP group is named inside a group: "groups": {"group:NAME": ["${text}"]}, then "group:NAME" here`
  }
  if (text.startsWith('tag:')) {
    if (!TagSchema.safeParse(text).success)
      return `bad tag "${text}": tag:name with lowercase letters, digits and -, 1-62 characters`
    return {kind: 'tag', text, tag: text}
  }
  if (IP_LIKE.test(text)) {
    const c = parseAddressOrCidr(text)
    return typeof c === 'string' ? c : {kind: 'cidr', text, ...c}
  }
  const host = ctx.hosts.get(text)
  if (host) return {kind: 'cidr', text, ...host}
  if (ctx.users) {
    if (ctx.users.has(text)) return {kind: 'user', text, user: text}
    return `unknown user or host "${text}"`
  }
  if (UsernameSchema.safeParse(text).success) return {kind: 'user', text, user: text}
  return `unknown host "${text}" (and not a valid user name)`
}

/** A dst (or a test's accept/deny) entry "selector:ports", split at the last colon. */
function readDst(
  item: {value: string; node: Node; path: string},
  proto: PolicyProto | null,
  ctx: Ctx,
): DstEntry | undefined {
  const {value, node, path} = item
  const colon = value.lastIndexOf(':')
  const selText = colon < 0 ? value : value.slice(0, colon)
  if (colon < 0 || selText === 'tag' || selText === 'group') {
    ctx.report.node(node, path, `missing ":ports" in "${value}" (e.g. "${value}:22" or "${value}:*")`)
    return undefined
  }
  const sel = resolveSelector(selText, ctx)
  if (typeof sel === 'string') {
    ctx.report.node(node, path, sel)
    return undefined
  }
  const ports = parsePorts(value.slice(colon + 1))
  if (!ports.ok) {
    ctx.report.node(node, path, ports.message)
    return undefined
  }
  const all = ports.ports.length === 1 && ports.ports[0]![0] === 1 && ports.ports[0]![1] === 65535
  if (!all && proto === null) {
    ctx.report.node(node, path, 'ports need a protocol: add "proto": "tcp" or "udp", or use :*')
    return undefined
  }
  if (!all && proto === 'icmp') {
    ctx.report.node(node, path, 'icmp has no ports: use :*')
    return undefined
  }
  return {selector: sel, ports: ports.ports}
}

function readProto(node: Node | undefined, path: string, report: Reporter): PolicyProto | null | undefined {
  if (node === undefined) return null
  if (node.type !== 'string' || !PROTOS.includes(node.value as PolicyProto)) {
    report.node(
      node,
      `${path}.proto`,
      `proto must be one of ${PROTOS.join(', ')} (omit it for every protocol)`,
    )
    return undefined
  }
  return node.value as PolicyProto
}

function readRule(node: Node, index: number, ctx: Ctx): PolicyRule | undefined {
  const {report} = ctx
  const path = `acls[${index}]`
  if (node.type !== 'object') {
    report.node(node, path, 'expected an object {"src": [...], "dst": [...]}')
    return undefined
  }
  const props = properties(node, path, RULE_KEYS, report)
  const proto = readProto(props.get('proto'), path, report)
  const src: Selector[] = []
  const dst: DstEntry[] = []
  let ok = proto !== undefined
  for (const key of ['src', 'dst'] as const) {
    const value = props.get(key)
    if (!value) {
      report.node(node, path, `missing "${key}"`)
      ok = false
      continue
    }
    const items = stringItems(value, `${path}.${key}`, report, 1)
    if (!items) {
      ok = false
      continue
    }
    for (const item of items) {
      if (key === 'src') {
        const sel = resolveSelector(item.value, ctx)
        if (typeof sel === 'string') {
          report.node(item.node, item.path, sel)
          ok = false
        } else src.push(sel)
      } else if (proto !== undefined) {
        const d = readDst(item, proto, ctx)
        if (d) dst.push(d)
        else ok = false
      }
    }
  }
  if (!ok || proto === undefined) return undefined
  const {line, column} = report.position(node.offset)
  return {index, line, column, src, dst, proto}
}

function readTest(node: Node, index: number, ctx: Ctx): PolicyTest | undefined {
  const {report} = ctx
  const path = `tests[${index}]`
  if (node.type !== 'object') {
    report.node(node, path, 'expected an object {"src": "...", "accept": [...], "deny": [...]}')
    return undefined
  }
  const props = properties(node, path, TEST_KEYS, report)
  const protoOrNull = readProto(props.get('proto'), path, report)
  if (protoOrNull === undefined) return undefined
  const proto = protoOrNull ?? 'tcp'
  let ok = true
  const srcNode = props.get('src')
  let src: Selector | undefined
  if (!srcNode) {
    report.node(node, path, 'missing "src"')
    ok = false
  } else if (srcNode.type !== 'string') {
    report.node(srcNode, `${path}.src`, 'expected a string (one user, group, tag, host or address)')
    ok = false
  } else {
    const sel = resolveSelector(srcNode.value as string, ctx)
    if (typeof sel === 'string') {
      report.node(srcNode, `${path}.src`, sel)
      ok = false
    } else src = sel
  }
  const lists: Record<'accept' | 'deny', DstEntry[]> = {accept: [], deny: []}
  for (const key of ['accept', 'deny'] as const) {
    const value = props.get(key)
    if (!value) continue
    const items = stringItems(value, `${path}.${key}`, report)
    if (!items) {
      ok = false
      continue
    }
    for (const item of items) {
      const d = readDst(item, proto, ctx)
      if (d) lists[key].push(d)
      else ok = false
    }
  }
  if (!props.has('accept') && !props.has('deny')) {
    report.node(node, path, 'a test needs "accept" or "deny" (or both)')
    ok = false
  }
  if (!ok || !src) return undefined
  const {line, column} = report.position(node.offset)
  return {index, line, column, src, accept: lists.accept, deny: lists.deny, proto}
}

/** Step 6: the union of each protocol's port ranges over all rules stays within what a peer entry carries. */
function checkPortRanges(rules: readonly PolicyRule[], acls: Node, report: Reporter): void {
  for (const proto of ['tcp', 'udp'] as const) {
    // The common case in one merge; the walk below only runs to find where it went over.
    const all = rules.filter((r) => r.proto === proto).flatMap((r) => r.dst.flatMap((d) => d.ports))
    if (mergeRanges(all).length <= POLICY_LIMITS.portRangesPerProto) continue
    let union: PortRange[] = []
    for (const rule of rules) {
      if (rule.proto !== proto) continue
      for (let j = 0; j < rule.dst.length; j++) {
        union = mergeRanges([...union, ...rule.dst[j]!.ports])
        if (union.length > POLICY_LIMITS.portRangesPerProto) {
          const dstNode = acls.children![rule.index]!.children!.find((p) => p.children?.[0]?.value === 'dst')!
          report.node(
            dstNode.children![1]!.children![j]!,
            `acls[${rule.index}].dst[${j}]`,
            `the policy names more than ${POLICY_LIMITS.portRangesPerProto} separate ${proto} port ranges, more than a node's firewall takes per peer: join neighbouring ports into ranges`,
          )
          return
        }
      }
    }
  }
}
