import {describe, expect, it} from 'vitest'
import {formatPolicyError, parsePolicy, POLICY_LIMITS} from './index.js'
import type {PolicyError} from './index.js'

/** The errors of a text that must not parse. */
function errorsOf(text: string, opts?: Parameters<typeof parsePolicy>[1]): PolicyError[] {
  const r = parsePolicy(text, opts)
  if (r.ok) throw new Error('expected the policy to be refused')
  return r.errors
}

const EXAMPLE = `{
  // who is who
  "groups": {"group:eng": ["alice", "bob"], "group:ops": ["carol", "group:eng"]},
  "hosts": {"db-subnet": "10.20.0.0/24", "printer": "10.20.0.9"},
  "acls": [
    {"src": ["group:eng", "tag:ci"], "dst": ["tag:db:5432", "tag:web:80,443", "db-subnet:*", "alice:22", "*:8000-8100"], "proto": "tcp"},
    {"src": ["*"], "dst": ["tag:dns:53"], "proto": "udp"},
    /* alice administers everything */
    {"src": ["alice"], "dst": ["*:*"]},
  ],
  "tests": [
    {"src": "bob", "accept": ["tag:db:5432"], "deny": ["tag:db:22"]},
    {"src": "tag:ci", "accept": ["tag:db:5432"], "proto": "tcp"},
  ],
}`

describe('parsePolicy', () => {
  it('reads the documented example, comments and trailing commas included', () => {
    const r = parsePolicy(EXAMPLE)
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.policy.rules).toHaveLength(3)
    expect(r.policy.rules[0]!.line).toBe(6)
    expect(r.policy.rules[0]!.dst.map((d) => [d.selector.kind, d.ports])).toEqual([
      ['tag', [[5432, 5432]]],
      [
        'tag',
        [
          [80, 80],
          [443, 443],
        ],
      ],
      ['cidr', [[1, 65535]]],
      ['user', [[22, 22]]],
      ['all', [[8000, 8100]]],
    ])
    expect(r.policy.rules[2]!.proto).toBeNull()
    expect([...r.policy.groups.get('group:ops')!].sort()).toEqual(['alice', 'bob', 'carol'])
    expect(r.policy.hosts.get('printer')).toEqual({base: 0x0a140009, prefix: 32})
    expect(r.policy.tests.map((t) => t.proto)).toEqual(['tcp', 'tcp'])
  })

  it('accepts a policy with acls only, and an empty acls list (deny everything)', () => {
    expect(parsePolicy('{"acls": []}').ok).toBe(true)
    expect(parsePolicy('{"acls": [{"src": ["10.0.0.0/8"], "dst": ["10.1.2.3:*"]}]}').ok).toBe(true)
  })

  // Each case: the text, then [line, column, path, message] of every error, in reading order.
  it.each<[string, string, [number, number, string, string][]]>([
    ['syntax_error_only_the_first', '{\n  "acls": [}\n', [[2, 12, '', 'expected a value']]],
    ['empty_text', '', [[1, 1, '', 'expected a value']]],
    ['not_an_object', '[1]', [[1, 1, '', 'the policy must be an object: {"acls": [...]}']]],
    ['missing_acls', '{"tests": []}', [[1, 1, '', 'missing "acls": a policy without rules would deny everything']]],
    [
      'unknown_top_level_key',
      '{"acls": [],\n "tagOwners": {}}',
      [[2, 2, 'tagOwners', 'unknown key "tagOwners" (allowed: groups, hosts, acls, tests)']],
    ],
    [
      'unknown_rule_key',
      '{"acls": [\n  {"action": "accept", "src": ["*"], "dst": ["*:*"]}]}',
      [[2, 4, 'acls[0].action', 'unknown key "action" (allowed: src, dst, proto)']],
    ],
    [
      'duplicate_key',
      '{"acls": [\n  {"src": ["*"], "dst": ["*:*"], "src": ["alice"]}]}',
      [[2, 34, 'acls[0].src', 'duplicate key "src"']],
    ],
    [
      'duplicate_top_level_key',
      '{"acls": [],\n"acls": []}',
      [[2, 1, 'acls', 'duplicate key "acls"']],
    ],
    [
      'unknown_group',
      '{"acls": [\n  {"src": ["group:nope"], "dst": ["*:*"]}]}',
      [[2, 12, 'acls[0].src[0]', 'unknown group "group:nope"']],
    ],
    [
      'unknown_group_in_group',
      '{"groups": {"group:a": ["group:b"]}, "acls": []}',
      [[1, 25, 'groups["group:a"][0]', 'unknown group "group:b"']],
    ],
    [
      'group_cycle',
      '{"groups": {\n  "group:a": ["group:b"],\n  "group:b": ["carol", "group:a"]},\n "acls": []}',
      [[3, 24, 'groups["group:b"][1]', 'group cycle: group:a → group:b → group:a']],
    ],
    [
      'group_includes_itself',
      '{"groups": {"group:a": ["group:a"]}, "acls": []}',
      [[1, 25, 'groups["group:a"][0]', 'group cycle: group:a → group:a']],
    ],
    [
      'bad_group_name',
      '{"groups": {"eng": ["alice"]}, "acls": []}',
      [[1, 13, 'groups.eng', 'bad group name "eng": group:name with lowercase letters, digits, . _ -']],
    ],
    [
      'bad_user_name',
      '{"groups": {"group:a": ["Alice"]}, "acls": []}',
      [[1, 25, 'groups["group:a"][0]', 'bad user name "Alice": lowercase letters, digits, . _ -; 1-63 characters']],
    ],
    [
      'unknown_host_that_is_no_user_name',
      '{"acls": [{"src": ["Printer"], "dst": ["*:*"]}]}',
      [[1, 20, 'acls[0].src[0]', 'unknown host "Printer" (and not a valid user name)']],
    ],
    [
      'port_zero',
      '{"acls": [{"src": ["*"], "dst": ["tag:db:0"], "proto": "tcp"}]}',
      [[1, 34, 'acls[0].dst[0]', 'port 0 is out of range 1-65535']],
    ],
    [
      'port_too_big',
      '{"acls": [{"src": ["*"], "dst": ["tag:db:22,65536"], "proto": "tcp"}]}',
      [[1, 34, 'acls[0].dst[0]', 'port 65536 is out of range 1-65535']],
    ],
    [
      'port_range_backwards',
      '{"acls": [{"src": ["*"], "dst": ["tag:db:90-80"], "proto": "tcp"}]}',
      [[1, 34, 'acls[0].dst[0]', 'port range 90-80 goes from high to low']],
    ],
    [
      'port_not_a_number',
      '{"acls": [{"src": ["*"], "dst": ["tag:db:ssh"], "proto": "tcp"}]}',
      [[1, 34, 'acls[0].dst[0]', 'bad port "ssh": use N, N-M or * (ports 1-65535)']],
    ],
    [
      'missing_ports',
      '{"acls": [{"src": ["*"], "dst": ["tag:db"], "proto": "tcp"}]}',
      [[1, 34, 'acls[0].dst[0]', 'missing ":ports" in "tag:db" (e.g. "tag:db:22" or "tag:db:*")']],
    ],
    [
      'ports_without_proto',
      '{"acls": [{"src": ["*"], "dst": ["tag:db:22"]}]}',
      [[1, 34, 'acls[0].dst[0]', 'ports need a protocol: add "proto": "tcp" or "udp", or use :*']],
    ],
    [
      'icmp_with_ports',
      '{"acls": [{"src": ["*"], "dst": ["tag:db:22"], "proto": "icmp"}]}',
      [[1, 34, 'acls[0].dst[0]', 'icmp has no ports: use :*']],
    ],
    [
      'bad_proto',
      '{"acls": [{"src": ["*"], "dst": ["*:*"], "proto": "sctp"}]}',
      [[1, 51, 'acls[0].proto', 'proto must be one of tcp, udp, icmp (omit it for every protocol)']],
    ],
    [
      'bad_cidr_host_bits',
      '{"hosts": {"lan": "10.0.0.1/24"}, "acls": []}',
      [[1, 19, 'hosts.lan', 'bad CIDR "10.0.0.1/24": host bits set (did you mean 10.0.0.0/24?)']],
    ],
    [
      'bad_cidr_prefix',
      '{"acls": [{"src": ["10.0.0.0/33"], "dst": ["*:*"]}]}',
      [[1, 20, 'acls[0].src[0]', 'bad CIDR "10.0.0.0/33": expected a.b.c.d/n with n 0-32']],
    ],
    [
      'bad_address',
      '{"acls": [{"src": ["*"], "dst": ["10.0.0.256:*"]}]}',
      [[1, 34, 'acls[0].dst[0]', 'bad IPv4 address "10.0.0.256"']],
    ],
    [
      'bad_tag',
      '{"acls": [{"src": ["tag:Web"], "dst": ["*:*"]}]}',
      [[1, 20, 'acls[0].src[0]', 'bad tag "tag:Web": tag:name with lowercase letters, digits and -, 1-62 characters']],
    ],
    [
      'empty_src',
      '{"acls": [{"src": [], "dst": ["*:*"]}]}',
      [[1, 19, 'acls[0].src', 'must not be empty']],
    ],
    ['missing_dst', '{"acls": [{"src": ["*"]}]}', [[1, 11, 'acls[0]', 'missing "dst"']]],
    [
      'test_without_expectations',
      '{"acls": [], "tests": [{"src": "alice"}]}',
      [[1, 24, 'tests[0]', 'a test needs "accept" or "deny" (or both)']],
    ],
    [
      'test_src_is_a_list',
      '{"acls": [], "tests": [{"src": ["alice"], "deny": ["*:22"]}]}',
      [[1, 32, 'tests[0].src', 'expected a string (one user, group, tag, host or address)']],
    ],
    [
      'errors_in_reading_order',
      '{"acls": [{"src": ["group:x"], "dst": ["*:0"], "proto": "tcp"}], "junk": 1}',
      [
        [1, 20, 'acls[0].src[0]', 'unknown group "group:x"'],
        [1, 40, 'acls[0].dst[0]', 'port 0 is out of range 1-65535'],
        [1, 66, 'junk', 'unknown key "junk" (allowed: groups, hosts, acls, tests)'],
      ],
    ],
  ])('%s', (_name, text, want) => {
    expect(errorsOf(text).map((e) => [e.line, e.column, e.path, e.message])).toEqual(want)
  })

  it('counts columns in characters: a surrogate pair before the error is one column', () => {
    const [e] = errorsOf('{"acls": [], /* 😀 */ "x": 1}')
    expect([e!.line, e!.column]).toEqual([1, 22])
  })

  it('counts lines ended by \\r\\n and by \\r', () => {
    const [e] = errorsOf('{\r\n"acls": [],\r"x": 1}')
    expect([e!.line, e!.column]).toEqual([3, 1])
  })

  describe('with the tenant\'s users known', () => {
    const users = ['alice', 'bob']
    it('refuses a name that is neither a user nor a host', () => {
      expect(errorsOf('{"acls": [{"src": ["printr"], "dst": ["*:*"]}]}', {users})).toEqual([
        {line: 1, column: 20, path: 'acls[0].src[0]', message: 'unknown user or host "printr"'},
      ])
    })
    it('refuses an unknown user in a group', () => {
      expect(errorsOf('{"groups": {"group:a": ["alice", "zed"]}, "acls": []}', {users})[0]!.message).toBe(
        'unknown user "zed"',
      )
    })
    it('refuses a host named like a user', () => {
      expect(errorsOf('{"hosts": {"bob": "10.0.0.1"}, "acls": []}', {users})[0]!.message).toBe(
        'host name "bob" is also a user\'s name',
      )
    })
    it('accepts known users and hosts', () => {
      expect(parsePolicy('{"hosts": {"nas": "10.0.0.1"}, "acls": [{"src": ["alice"], "dst": ["nas:*"]}]}', {users}).ok).toBe(
        true,
      )
    })
  })

  describe('limits', () => {
    it('refuses a text over 1 MiB before parsing it', () => {
      const text = `{"acls": []}${' '.repeat(POLICY_LIMITS.bytes)}`
      expect(errorsOf(text)).toEqual([{line: 1, column: 1, path: '', message: 'the policy is larger than 1 MiB'}])
    })
    it('counts UTF-8 bytes, not characters', () => {
      const text = `{"acls": []} // ${'é'.repeat(POLICY_LIMITS.bytes / 2)}`
      expect(text.length).toBeLessThan(POLICY_LIMITS.bytes)
      expect(errorsOf(text)[0]!.message).toBe('the policy is larger than 1 MiB')
    })
    it('refuses deep nesting with a token scan, without recursing into it', () => {
      const text = '['.repeat(100_000) + ']'.repeat(100_000)
      expect(errorsOf(text)).toEqual([{line: 1, column: 17, path: '', message: 'nested deeper than 16 levels'}])
    })
    it('refuses more than 1,000 rules', () => {
      const rules = Array.from({length: POLICY_LIMITS.rules + 1}, () => '{"src": ["*"], "dst": ["*:*"]}')
      expect(errorsOf(`{"acls": [${rules.join(',')}]}`)).toEqual([
        {line: 1, column: 10, path: 'acls', message: 'more than 1000 items'},
      ])
    })
    it('refuses a list of more than 1,000 entries', () => {
      const src = Array.from({length: POLICY_LIMITS.listItems + 1}, (_, i) => `"u${i}"`)
      expect(errorsOf(`{"acls": [{"src": [${src.join(',')}], "dst": ["*:*"]}]}`)[0]).toMatchObject({
        path: 'acls[0].src',
        message: 'more than 1000 items',
      })
    })
    it('refuses groups nested deeper than 100', () => {
      const groups = Array.from({length: 102}, (_, i) => `"group:g${i}": [${i < 101 ? `"group:g${i + 1}"` : '"alice"'}]`)
      const errs = errorsOf(`{"groups": {${groups.join(',\n')}}, "acls": []}`)
      expect(errs.map((e) => [e.line, e.path, e.message])).toEqual([
        [100, 'groups["group:g99"][0]', 'groups nest deeper than 100 levels'],
      ])
    })
    it('refuses groups whose flattened membership passes the bound', () => {
      // A chain of 1,000 groups, each the previous one plus 3 users: 70 KB of text that would
      // flatten to 1.5 million memberships (quadratic) without the bound.
      const groups = Array.from({length: 1000}, (_, i) => {
        const users = [0, 1, 2].map((j) => `"u${i}-${j}"`)
        return `"group:g${i}": [${i > 0 ? `"group:g${i - 1}",` : ''}${users.join(',')}]`
      })
      const errs = errorsOf(`{"groups": {${groups.join(',\n')}}, "acls": []}`)
      // 3 × (1 + 2 + … + 816) passes 1,000,000 at the 816th group.
      expect(errs.map((e) => [e.line, e.column, e.path, e.message])).toEqual([
        [816, 1, 'groups["group:g815"]', 'groups expand to more than 1000000 members in all'],
      ])
    })
    it('refuses more than 64 separate port ranges per protocol over the whole policy', () => {
      const ports = Array.from({length: 65}, (_, i) => `${1000 + 2 * i}`)
      const rules = [
        `{"src": ["*"], "dst": ["tag:a:${ports.slice(0, 40).join(',')}"], "proto": "tcp"}`,
        `{"src": ["*"], "dst": ["tag:b:${ports.slice(40).join(',')}"], "proto": "tcp"}`,
      ]
      expect(errorsOf(`{"acls": [\n${rules.join(',\n')}]}`)).toEqual([
        {
          line: 3,
          column: 24,
          path: 'acls[1].dst[0]',
          message:
            'the policy names more than 64 separate tcp port ranges, more than a node\'s firewall takes per peer: join neighbouring ports into ranges',
        },
      ])
    })
    it('reports at most 100 errors', () => {
      const src = Array.from({length: 300}, (_, i) => `"group:x${i}"`)
      expect(errorsOf(`{"acls": [{"src": [${src.join(',')}], "dst": ["*:*"]}]}`)).toHaveLength(POLICY_LIMITS.errors)
    })
  })

  it('formats an error as one line', () => {
    expect(formatPolicyError({line: 3, column: 12, path: 'acls[0].dst[1]', message: 'port 0 is out of range 1-65535'})).toBe(
      'line 3, column 12, acls[0].dst[1]: port 0 is out of range 1-65535',
    )
    expect(formatPolicyError({line: 1, column: 1, path: '', message: 'expected a value'})).toBe(
      'line 1, column 1: expected a value',
    )
  })
})
