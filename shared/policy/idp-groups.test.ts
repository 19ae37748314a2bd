// Policy groups that name a group of the OpenID provider (`oidc:NAME` members): parsing, matching
// a node by its owner's groups, the embedded tests, and the compiled classes.
import {describe, expect, it} from 'vitest'
import {canReach, compilePolicy, parsePolicy, runPolicyTests} from './index.js'
import type {Policy, PolicyNode} from './index.js'

function policy(text: string): Policy {
  const r = parsePolicy(text)
  if (!r.ok) throw new Error(JSON.stringify(r.errors))
  return r.policy
}

const node = (
  id: string,
  address: string,
  owner: string | null,
  ownerGroups?: string[],
  tags: string[] = [],
): PolicyNode => ({id, address, owner, tags, ...(ownerGroups ? {ownerGroups} : {})})

const POLICY = `{
  "groups": {
    "group:eng": ["alice", "oidc:Engineering Team"],
    "group:staff": ["group:eng", "oidc:/corp/ops"],
  },
  "acls": [
    {"src": ["group:eng"], "dst": ["tag:db:5432"], "proto": "tcp"},
    {"src": ["group:staff"], "dst": ["tag:web:443"], "proto": "tcp"},
  ],
  TESTS
}`
const P = policy(POLICY.replace('TESTS', ''))

const db = node('db', '10.0.0.1', 'carol', undefined, ['tag:db'])
const web = node('web', '10.0.0.2', null, undefined, ['tag:web'])

describe('oidc: members of policy groups', () => {
  it('keeps the IdP group as the claim spells it, nested groups included, beside the users', () => {
    const eng = P.rules[0]!.src[0]!
    const staff = P.rules[1]!.src[0]!
    expect(eng).toMatchObject({
      kind: 'group',
      users: new Set(['alice']),
      idpGroups: new Set(['Engineering Team']),
    })
    expect(staff).toMatchObject({
      kind: 'group',
      users: new Set(['alice']),
      idpGroups: new Set(['Engineering Team', '/corp/ops']),
    })
    // Policy.groups lists users only: who is in an IdP group is known at login.
    expect([...P.groups.get('group:staff')!]).toEqual(['alice'])
  })

  it.each([
    ['an_empty_name', '"oidc:"', 'bad IdP group "oidc:"'],
    ['a_control_character', '"oidc:a\\u0007b"', 'bad IdP group'],
    ['a_name_too_long', `"oidc:${'x'.repeat(201)}"`, 'bad IdP group'],
  ])('refuses %s', (_name, member, message) => {
    const r = parsePolicy(`{"groups": {"group:x": [${member}]}, "acls": []}`)
    expect(r.ok).toBe(false)
    if (!r.ok)
      expect(r.errors[0]).toMatchObject({
        path: 'groups["group:x"][0]',
        message: expect.stringContaining(message),
      })
  })

  it('refuses an IdP group named in a rule directly, saying to put it in a group', () => {
    const r = parsePolicy(`{"acls": [{"src": ["oidc:eng"], "dst": ["*:*"]}]}`)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.errors[0]!.message).toMatch(/inside a group/)
  })

  it('is no user name, so a tenant whose user list lacks it still accepts it', () => {
    const r = parsePolicy(POLICY.replace('TESTS', ''), {users: ['alice', 'carol']})
    expect(r.ok).toBe(true)
  })

  it("matches the untagged nodes of owners whose provider puts them in the group, by the owner's groups", () => {
    const dora = node('d', '10.0.0.5', 'dora', ['Engineering Team'])
    const olga = node('o', '10.0.0.6', 'olga', ['/corp/ops', 'sales'])
    const nobody = node('n', '10.0.0.7', 'nick', ['engineering team'])
    const tagged = node('t', '10.0.0.8', 'dora', ['Engineering Team'], ['tag:ci'])
    expect(canReach(P, dora, db, 'tcp', 5432)).toBe(true)
    expect(canReach(P, dora, web, 'tcp', 443)).toBe(true)
    expect(canReach(P, olga, db, 'tcp', 5432)).toBe(false)
    expect(canReach(P, olga, web, 'tcp', 443)).toBe(true)
    // Case matters (claims are compared as the provider spells them); tags win over the owner.
    expect(canReach(P, nobody, web, 'tcp', 443)).toBe(false)
    expect(canReach(P, tagged, web, 'tcp', 443)).toBe(false)
    // No groups known: matched by name only.
    expect(canReach(P, node('a', '10.0.0.9', 'alice'), db, 'tcp', 5432)).toBe(true)
  })

  it('gives a node another class when its owner joins or leaves the group, and the same class as others with the same groups', () => {
    const c = compilePolicy(P, [])
    const before = node('d', '10.0.0.5', 'dora', ['sales'])
    const after = node('d', '10.0.0.5', 'dora', ['sales', 'Engineering Team'])
    const peer = node('e', '10.0.0.6', 'erin', ['Engineering Team'])
    const dbClass = c.classOf(db)
    expect(c.sees(c.classOf(before), dbClass)).toBe(false)
    expect(c.sees(c.classOf(after), dbClass)).toBe(true)
    expect(c.classOf(after)).toBe(c.classOf(peer))
  })

  it('runs embedded tests for a member of the IdP group (one in that group only) and names it when they fail', () => {
    const ok = policy(
      POLICY.replace(
        'TESTS',
        `"tests": [
          {"src": "group:eng", "accept": ["tag:db:5432", "tag:web:443"]},
          {"src": "group:staff", "accept": ["tag:web:443"]},
        ],`,
      ),
    )
    expect(runPolicyTests(ok)).toEqual([])
    const bad = policy(
      POLICY.replace('TESTS', `"tests": [{"src": "group:staff", "accept": ["tag:db:5432"]}],`),
    )
    expect(runPolicyTests(bad).map((f) => f.message)).toEqual([
      expect.stringContaining('(from a member of oidc:/corp/ops (of group:staff))'),
    ])
    // `*` stands for a member of each IdP group the policy names, too.
    const star = policy(POLICY.replace('TESTS', `"tests": [{"src": "*", "deny": ["tag:web:443"]}],`))
    expect(runPolicyTests(star)[0]!.message).toMatch(/from (alice's nodes|a member of oidc:)/)
  })
})
