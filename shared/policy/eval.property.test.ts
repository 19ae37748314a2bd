// Property tests of the evaluator: the compiled classes, sees and inbound agree with canReach
// computed naively, over random small policies (written as text, so the parser is exercised too)
// and random nodes drawn from a small universe where collisions are likely.
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {canReach, compilePolicy, parsePolicy, runPolicyTests} from './index.js'
import type {Policy, PolicyNode, PolicyProto} from './index.js'
import type {InboundRule} from '../protocol/netmap.js'

const USERS = ['alice', 'bob', 'carol', 'dave']
const TAGS = ['tag:a', 'tag:b', 'tag:c']
const HEADER = `"groups": {"group:g1": ["alice", "bob"], "group:g2": ["carol", "group:g1"], "group:none": []},
  "hosts": {"h1": "10.0.0.0/30", "h2": "10.0.0.5"},`
const SELECTORS = [
  '*',
  'alice',
  'bob',
  'carol',
  'group:g1',
  'group:g2',
  'group:none',
  'tag:a',
  'tag:b',
  'tag:c',
  'h1',
  'h2',
  '10.0.0.0/29',
  '10.0.0.4/31',
  '10.0.0.3',
]
const PORTS = ['*', '22', '80,443', '1000-2000', '22-80', '53', '443-1000']
const PROTOS: PolicyProto[] = ['tcp', 'udp', 'icmp']
const SAMPLE_PORTS = [1, 21, 22, 23, 53, 79, 80, 81, 443, 444, 999, 1000, 1500, 2000, 2001, 65535]

interface RuleSpec {
  src: string[]
  dst: [string, string][]
  proto: PolicyProto | undefined
}

const ruleArb: fc.Arbitrary<RuleSpec> = fc
  .record({
    src: fc.array(fc.constantFrom(...SELECTORS), {minLength: 1, maxLength: 3}),
    dst: fc.array(fc.tuple(fc.constantFrom(...SELECTORS), fc.constantFrom(...PORTS)), {minLength: 1, maxLength: 3}),
    proto: fc.constantFrom<PolicyProto | undefined>(undefined, 'tcp', 'udp', 'icmp'),
  })
  // Without a protocol, and for icmp, ports must be *.
  .map((r) => ({...r, dst: r.dst.map(([s, p]): [string, string] => [s, r.proto === 'tcp' || r.proto === 'udp' ? p : '*'])}))

const ruleText = (r: RuleSpec): string =>
  JSON.stringify({src: r.src, dst: r.dst.map(([s, p]) => `${s}:${p}`), ...(r.proto ? {proto: r.proto} : {})})

const policyText = (rules: readonly RuleSpec[], tests = ''): string =>
  `{${HEADER}\n "acls": [${rules.map(ruleText).join(',\n')}],${tests ? `\n "tests": [${tests}],` : ''}}`

function mustParse(text: string): Policy {
  const r = parsePolicy(text)
  if (!r.ok) throw new Error(`${text}\n${JSON.stringify(r.errors)}`)
  return r.policy
}

const policyArb = fc.array(ruleArb, {maxLength: 6}).map((rules) => ({rules, policy: mustParse(policyText(rules))}))

let nextId = 0
const nodeArb: fc.Arbitrary<PolicyNode> = fc
  .record({
    host: fc.integer({min: 0, max: 7}),
    owner: fc.constantFrom<string | null>(null, ...USERS),
    tags: fc.subarray(TAGS),
  })
  .map(({host, owner, tags}) => ({id: `n${nextId++}`, address: `10.0.0.${host}`, owner, tags}))

const nodesArb = fc.array(nodeArb, {minLength: 1, maxLength: 8})

/** Whether an InboundRule[] (undefined = everything) lets proto/port in. */
function admits(rules: InboundRule[] | undefined, proto: PolicyProto, port: number): boolean {
  if (rules === undefined) return true
  return rules.some((r) =>
    r.proto === 'all' ? true : r.proto !== proto ? false : r.proto === 'icmp' || r.ports.some(([lo, hi]) => port >= lo && port <= hi),
  )
}

const reachesSomehow = (p: Policy, a: PolicyNode, b: PolicyNode): boolean => PROTOS.some((proto) => canReach(p, a, b, proto))

const RUNS = {numRuns: 300}

describe('policy evaluator properties', () => {
  it('without a policy, everyone sees everyone and accepts everything', () => {
    fc.assert(
      fc.property(nodesArb, (nodes) => {
        const c = compilePolicy(null, nodes)
        const classes = new Set(nodes.map((n) => c.classOf(n)))
        expect(classes.size).toBe(1)
        for (const a of nodes) for (const b of nodes) {
          expect(c.sees(c.classOf(a), c.classOf(b))).toBe(true)
          expect(c.inbound(c.classOf(a), c.classOf(b))).toBeUndefined()
        }
      }),
      RUNS,
    )
  })

  it('sees(classOf(a), classOf(b)) is "a may reach b or b may reach a" on some protocol and port', () => {
    fc.assert(
      fc.property(policyArb, nodesArb, ({policy}, nodes) => {
        const c = compilePolicy(policy, nodes)
        for (const a of nodes) {
          for (const b of nodes) {
            const want = reachesSomehow(policy, a, b) || reachesSomehow(policy, b, a)
            expect(c.sees(c.classOf(a), c.classOf(b))).toBe(want)
          }
        }
      }),
      RUNS,
    )
  })

  it('inbound(receiver, sender) admits exactly what canReach(sender, receiver) allows, merged and minimal', () => {
    fc.assert(
      fc.property(policyArb, nodesArb, fc.integer({min: 1, max: 65535}), ({policy}, nodes, extraPort) => {
        const c = compilePolicy(policy, nodes)
        for (const s of nodes) {
          for (const r of nodes) {
            const rules = c.inbound(c.classOf(r), c.classOf(s))
            for (const proto of PROTOS) {
              for (const port of [...SAMPLE_PORTS, extraPort]) {
                // Plain comparison in the hot loop (expect() per sample is slow); report on a miss.
                if (admits(rules, proto, port) !== canReach(policy, s, r, proto, port)) {
                  expect({s, r, proto, port, rules}).toEqual('inbound to agree with canReach')
                }
              }
            }
            if (rules === undefined) continue
            // Minimal: one entry per protocol, never `all` (that is undefined), ranges sorted,
            // disjoint and not touching.
            const protos = rules.map((x) => x.proto)
            expect(new Set(protos).size).toBe(protos.length)
            expect(protos).not.toContain('all')
            for (const x of rules) {
              if (x.proto !== 'tcp' && x.proto !== 'udp') continue
              for (let i = 1; i < x.ports.length; i++) expect(x.ports[i]![0]).toBeGreaterThan(x.ports[i - 1]![1] + 1)
            }
          }
        }
      }),
      RUNS,
    )
  })

  it('nodes of one class are interchangeable: same reach to and from every other node', () => {
    fc.assert(
      fc.property(policyArb, nodesArb, ({policy}, nodes) => {
        const c = compilePolicy(policy, nodes)
        for (const [, ids] of c.members) {
          const [first, ...rest] = ids.map((id) => nodes.find((n) => n.id === id)!)
          for (const other of rest) {
            for (const x of nodes) {
              for (const proto of PROTOS) {
                for (const port of [22, 80, 1500]) {
                  expect(canReach(policy, other, x, proto, port)).toBe(canReach(policy, first!, x, proto, port))
                  expect(canReach(policy, x, other, proto, port)).toBe(canReach(policy, x, first!, proto, port))
                }
              }
            }
          }
        }
      }),
      RUNS,
    )
  })

  it('a tagged node is never matched through its owner: changing its owner changes nothing', () => {
    fc.assert(
      fc.property(policyArb, nodeArb, nodesArb, fc.constantFrom<string | null>(null, ...USERS), ({policy}, n, others, owner) => {
        fc.pre(n.tags.length > 0)
        const moved = {...n, owner}
        const c = compilePolicy(policy, [])
        expect(c.classOf(moved)).toBe(c.classOf(n))
        for (const x of others) {
          for (const proto of PROTOS) {
            expect(canReach(policy, moved, x, proto)).toBe(canReach(policy, n, x, proto))
            expect(canReach(policy, x, moved, proto)).toBe(canReach(policy, x, n, proto))
          }
        }
      }),
      RUNS,
    )
  })

  it('adding a rule never takes reachability away', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, {maxLength: 5}), ruleArb, fc.nat(5), nodesArb, (rules, extra, at, nodes) => {
        const before = mustParse(policyText(rules))
        const withExtra = [...rules]
        withExtra.splice(Math.min(at, rules.length), 0, extra)
        const after = mustParse(policyText(withExtra))
        for (const a of nodes) {
          for (const b of nodes) {
            for (const proto of PROTOS) {
              for (const port of [22, 53, 443, 1500, 9999]) {
                if (canReach(before, a, b, proto, port)) expect(canReach(after, a, b, proto, port)).toBe(true)
              }
            }
          }
        }
      }),
      RUNS,
    )
  })

  describe('the embedded tests are sound for every node they stand for', () => {
    /** Whether a concrete node is one of the hypothetical nodes a test selector stands for (policy-tests.ts). */
    function standsFor(policy: Policy, sel: string, n: PolicyNode): boolean {
      if (sel === '*') return true
      if (sel.startsWith('tag:')) return n.tags.length === 1 && n.tags[0] === sel
      if (sel.startsWith('group:')) return n.tags.length === 0 && n.owner !== null && policy.groups.get(sel)!.has(n.owner)
      if (USERS.includes(sel)) return n.tags.length === 0 && n.owner === sel
      // An address, a CIDR or a hosts name: a device with no user and no tag inside it.
      const probe = mustParse(policyText([{src: [sel], dst: [['*', '*']], proto: undefined}]))
      return n.owner === null && n.tags.length === 0 && canReach(probe, n, n, 'icmp')
    }

    it('a passing accept means every such src reaches every such dst; a passing deny, none does', () => {
      const testArb = fc.record({
        src: fc.constantFrom(...SELECTORS),
        dst: fc.constantFrom(...SELECTORS),
        ports: fc.constantFrom('22', '53', '80,443', '1000-1200', '*'),
        proto: fc.constantFrom<PolicyProto>('tcp', 'udp', 'icmp'),
        kind: fc.constantFrom('accept', 'deny'),
      })
      fc.assert(
        fc.property(fc.array(ruleArb, {maxLength: 5}), testArb, nodesArb, nodesArb, (rules, t, srcs, dsts) => {
          const ports = t.proto === 'icmp' ? '*' : t.ports
          const testText = JSON.stringify({src: t.src, [t.kind]: [`${t.dst}:${ports}`], proto: t.proto})
          const policy = mustParse(policyText(rules, testText))
          if (runPolicyTests(policy).length > 0) return // only passing tests promise anything
          const portList = ports === '*' ? [1, 22, 80, 1100, 65535] : ports.split(',').flatMap((p) => p.split('-').map(Number))
          for (const s of srcs.filter((n) => standsFor(policy, t.src, n))) {
            for (const d of dsts.filter((n) => standsFor(policy, t.dst, n))) {
              for (const port of portList) {
                expect(canReach(policy, s, d, t.proto, port)).toBe(t.kind === 'accept')
              }
            }
          }
        }),
        {numRuns: 1000},
      )
    })
  })
})
