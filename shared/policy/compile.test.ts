import {describe, expect, it} from 'vitest'
import {compilePolicy, NO_POLICY_CLASS, parsePolicy} from './index.js'
import type {Policy, PolicyNode} from './index.js'

function policy(text: string): Policy {
  const r = parsePolicy(text)
  if (!r.ok) throw new Error(JSON.stringify(r.errors))
  return r.policy
}

const node = (id: string, address: string, owner: string | null, tags: string[] = []): PolicyNode => ({
  id,
  address,
  owner,
  tags,
})
const alice = node('a', '100.64.0.1', 'alice')
const alice2 = node('a2', '100.64.0.9', 'alice')
const bob = node('b', '100.64.0.2', 'bob')
const db = node('db', '100.64.0.3', 'alice', ['tag:db'])
const printer = node('p', '100.64.0.4', null)

const POLICY = policy(`{
  "acls": [
    {"src": ["alice"], "dst": ["tag:db:5432", "tag:db:5433-5440", "tag:db:22"], "proto": "tcp"},
    {"src": ["alice"], "dst": ["tag:db:5430-5432"], "proto": "tcp"},
    {"src": ["alice"], "dst": ["tag:db:*"], "proto": "icmp"},
    {"src": ["bob"], "dst": ["alice:*"]},
  ],
}`)

describe('compilePolicy', () => {
  it('without a policy puts every node in one class that sees and accepts everything', () => {
    const c = compilePolicy(null, [alice, bob])
    expect(c.classOf(alice)).toBe(NO_POLICY_CLASS)
    expect(c.members).toEqual(new Map([[NO_POLICY_CLASS, ['a', 'b']]]))
    expect(c.sees(NO_POLICY_CLASS, NO_POLICY_CLASS)).toBe(true)
    expect(c.inbound(NO_POLICY_CLASS, NO_POLICY_CLASS)).toBeUndefined()
  })

  it('gives nodes that match the same rule entries the same class, whatever their address', () => {
    const c = compilePolicy(POLICY, [alice, alice2, bob, db, printer])
    expect(c.classOf(alice)).toBe(c.classOf(alice2))
    expect([...c.members.values()]).toEqual([['a', 'a2'], ['b'], ['db'], ['p']])
  })

  it('merges the port ranges a receiver accepts from a sender, tcp then icmp', () => {
    const c = compilePolicy(POLICY, [])
    expect(c.inbound(c.classOf(db), c.classOf(alice))).toEqual([
      {
        proto: 'tcp',
        ports: [
          [22, 22],
          [5430, 5440],
        ],
      },
      {proto: 'icmp'},
    ])
  })

  it('answers undefined (everything) for a rule without a protocol, [] for replies only', () => {
    const c = compilePolicy(POLICY, [])
    expect(c.inbound(c.classOf(alice), c.classOf(bob))).toBeUndefined()
    expect(c.inbound(c.classOf(bob), c.classOf(alice))).toEqual([])
    expect(c.sees(c.classOf(alice), c.classOf(bob))).toBe(true)
    expect(c.sees(c.classOf(bob), c.classOf(alice))).toBe(true)
  })

  it('hides nodes no rule connects, the owner of a tagged node included', () => {
    const c = compilePolicy(POLICY, [])
    expect(c.sees(c.classOf(printer), c.classOf(alice))).toBe(false)
    expect(c.sees(c.classOf(bob), c.classOf(db))).toBe(false) // db is alice's, but tagged
  })

  it('returns the same frozen answer for the same pair', () => {
    const c = compilePolicy(POLICY, [])
    const first = c.inbound(c.classOf(db), c.classOf(alice))!
    expect(c.inbound(c.classOf(db), c.classOf(alice))).toBe(first)
    expect(Object.isFrozen(first) && Object.isFrozen(first[0])).toBe(true)
  })

  it('refuses a class key it did not make', () => {
    const c = compilePolicy(POLICY, [])
    expect(() => c.sees('p0', c.classOf(alice))).toThrow(/not a class key of this policy/)
    expect(() => c.sees(NO_POLICY_CLASS, c.classOf(alice))).toThrow(/not a class key/)
  })

  it('matches no address for a node whose address does not parse', () => {
    const p = policy('{"acls": [{"src": ["100.64.0.0/10"], "dst": ["*:*"]}]}')
    const c = compilePolicy(p, [])
    expect(c.classOf(node('x', 'fd00::1', 'alice'))).not.toBe(c.classOf(alice))
  })
})
