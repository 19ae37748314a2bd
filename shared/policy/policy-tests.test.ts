import {describe, expect, it} from 'vitest'
import {parsePolicy, runPolicyTests, TEST_WORK_LIMIT} from './index.js'
import type {Policy} from './index.js'

const POLICY = `{
  "groups": {"group:eng": ["alice", "bob"], "group:empty": []},
  "hosts": {"db-subnet": "10.20.0.0/24", "printer": "10.20.0.9"},
  "acls": [
    {"src": ["group:eng", "tag:ci"], "dst": ["tag:db:5432", "tag:web:80,443"], "proto": "tcp"},
    {"src": ["*"], "dst": ["tag:dns:53"], "proto": "udp"},
    {"src": ["alice"], "dst": ["*:*"]},
    {"src": ["bob"], "dst": ["db-subnet:22"], "proto": "tcp"},
    {"src": ["tag:ci"], "dst": ["tag:web:*"], "proto": "icmp"},
  ],
  "tests": [
TESTS
  ],
}`

function withTests(tests: string): Policy {
  const r = parsePolicy(POLICY.replace('TESTS', tests))
  if (!r.ok) throw new Error(JSON.stringify(r.errors))
  return r.policy
}

const messages = (tests: string): string[] => runPolicyTests(withTests(tests)).map((f) => f.message)

describe('runPolicyTests', () => {
  it.each([
    ['a_user_reaches_a_port_a_rule_names', '{"src": "bob", "accept": ["tag:db:5432", "tag:web:80,443"]}'],
    ['every_member_of_a_group', '{"src": "group:eng", "accept": ["tag:db:5432", "tag:web:443"]}'],
    [
      'a_rule_for_every_protocol_covers_all_ports',
      '{"src": "alice", "accept": ["tag:db:*", "printer:1-65535"], "proto": "udp"}',
    ],
    ['everyone_reaches_dns', '{"src": "*", "accept": ["tag:dns:53"], "proto": "udp"}'],
    ['a_tag_is_not_its_owner', '{"src": "tag:ci", "deny": ["tag:db:22", "printer:22"]}'],
    ['icmp_by_protocol', '{"src": "tag:ci", "accept": ["tag:web:*"], "deny": ["tag:db:*"], "proto": "icmp"}'],
    [
      'an_address_inside_a_hosts_range',
      '{"src": "bob", "accept": ["10.20.0.7:22", "printer:22"], "deny": ["10.20.1.1:22"]}',
    ],
    [
      'an_address_as_src_has_no_user',
      '{"src": "10.1.1.1", "deny": ["tag:db:5432"], "accept": ["tag:dns:53"], "proto": "udp"}',
    ],
  ])('passes: %s', (_name, test) => {
    expect(messages(test)).toEqual([])
  })

  it.each([
    [
      'an_accept_no_rule_allows',
      '{"src": "bob", "accept": ["tag:db:5432,5433"]}',
      ['tests[0] (line 12): bob must reach tag:db:5432-5433 over tcp, but no rule allows tcp port 5433'],
    ],
    [
      'a_deny_a_rule_allows',
      '{"src": "tag:ci", "deny": ["tag:db:5432"], "proto": "tcp"}',
      [
        'tests[0] (line 12): tag:ci must not reach tag:db:5432 over tcp, but acls[0] (line 5) allows port 5432',
      ],
    ],
    [
      'a_group_member_names_the_member',
      '{"src": "group:eng", "accept": ["tag:web:22"]}',
      [
        'tests[0] (line 12): group:eng must reach tag:web:22 over tcp, but no rule allows tcp port 22 (from bob (of group:eng) to tag:web at 0.0.0.0)',
      ],
    ],
    [
      'a_deny_that_holds_only_outside_a_cidr_names_the_address',
      '{"src": "bob", "deny": ["tag:db:22"]}',
      [
        'tests[0] (line 12): bob must not reach tag:db:22 over tcp, but acls[3] (line 8) allows port 22 (to tag:db at 10.20.0.0)',
      ],
    ],
    [
      'everyone_names_who_gets_through',
      '{"src": "*", "deny": ["tag:db:22"]}',
      [
        "tests[0] (line 12): * must not reach tag:db:22 over tcp, but acls[2] (line 7) allows port 22 (from alice's nodes)",
      ],
    ],
    [
      'an_empty_group_proves_nothing',
      '{"src": "group:empty", "deny": ["tag:db:22"]}',
      [
        'tests[0] (line 12): group:empty must not reach tag:db:22 over tcp, but group:empty has no members, so the test proves nothing',
      ],
    ],
    [
      'icmp_has_no_port',
      '{"src": "bob", "accept": ["tag:web:*"], "proto": "icmp"}',
      ['tests[0] (line 12): bob must reach tag:web:* over icmp, but no rule allows icmp'],
    ],
    [
      'each_entry_fails_on_its_own',
      '{"src": "bob", "accept": ["tag:db:5432", "tag:db:5433"], "deny": ["tag:web:80", "tag:web:8080"]},\n{"src": "carol", "accept": ["tag:dns:53"]}',
      [
        'tests[0] (line 12): bob must reach tag:db:5433 over tcp, but no rule allows tcp port 5433',
        'tests[0] (line 12): bob must not reach tag:web:80 over tcp, but acls[0] (line 5) allows port 80',
        'tests[1] (line 13): carol must reach tag:dns:53 over tcp, but no rule allows tcp port 53',
      ],
    ],
  ])('fails: %s', (_name, test, want) => {
    expect(messages(test)).toEqual(want)
  })

  it('fails a group test at the first member for whom it does not hold', () => {
    const [f] = runPolicyTests(withTests('{"src": "group:eng", "deny": ["printer:22"]}'))
    expect(f).toMatchObject({
      test: 0,
      line: 12,
      column: 1,
      expected: 'deny',
      src: 'group:eng',
      dst: 'printer:22',
      proto: 'tcp',
      port: 22,
    })
    expect(f!.rule).toEqual({index: 2, line: 7})
    expect(f!.message).toBe(
      'tests[0] (line 12): group:eng must not reach printer:22 over tcp, but acls[2] (line 7) allows port 22 (from alice (of group:eng))',
    )
  })

  it('gives up on a test past the work bound instead of running long', () => {
    // 600 rules with distinct /32 src and dst addresses cut both ranges into 1,201 pieces each;
    // two rules for the two halves of the address space make every pair pass without either
    // covering it alone, so all 1.4 million pairs would be examined.
    const rules = Array.from({length: 600}, (_, i) => {
      const a = `10.${i >> 8}.${i & 255}.1`
      return `{"src": ["${a}"], "dst": ["${a.replace(/1$/, '2')}:22"], "proto": "tcp"}`
    })
    rules.unshift(
      '{"src": ["0.0.0.0/1"], "dst": ["*:22"], "proto": "tcp"}',
      '{"src": ["128.0.0.0/1"], "dst": ["*:22"], "proto": "tcp"}',
    )
    const r = parsePolicy(`{"acls": [${rules.join(',')}], "tests": [{"src": "*", "accept": ["*:22"]}]}`)
    if (!r.ok) throw new Error(JSON.stringify(r.errors))
    const started = performance.now()
    const [f] = runPolicyTests(r.policy)
    expect(f!.message).toBe(
      `tests[0] (line 1): * must reach *:22 over tcp, but the test is too costly to evaluate (over ${TEST_WORK_LIMIT} steps): split it`,
    )
    expect(performance.now() - started).toBeLessThan(10_000) // a bound on runaway, not a benchmark
  })
})
