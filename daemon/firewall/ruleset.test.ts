import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import {describe, expect, it} from 'vitest'
import {formatIPv4, parseIPv4} from '../../shared/net/ipv4.js'
import {
  buildRuleset,
  mergeRanges,
  RulesetInputError,
  type FirewallPeer,
  type RulesetInput,
} from './ruleset.js'
import {base, GOLDEN_CASES} from './testdata/cases.js'

/** Golden scripts live in testdata/<case>.nft; `UPDATE_GOLDEN=1` rewrites them. */
const golden = (name: string, script: string): void => {
  const file = path.join(import.meta.dirname, 'testdata', `${name}.nft`)
  if (process.env.UPDATE_GOLDEN === '1') fs.writeFileSync(file, script)
  expect(script).toBe(fs.readFileSync(file, 'utf8'))
}

describe('buildRuleset', () => {
  it.each(Object.entries(GOLDEN_CASES))('writes the golden script for %s', (name, input) => {
    golden(name, buildRuleset(input).script)
  })

  it('creates no table without any inbound field: it only removes one an earlier policy left', () => {
    const r = buildRuleset(GOLDEN_CASES.no_policy!)
    expect(r.policy).toBe(false)
    expect(r.script).toBe('table inet mesh_mesh0\ndelete table inet mesh_mesh0\n')
  })

  it('replaces the whole table in one script: create, delete, then the new table', () => {
    const lines = buildRuleset(GOLDEN_CASES.icmp!).script.split('\n')
    expect(lines.slice(0, 3)).toEqual([
      'table inet mesh_mesh0',
      'delete table inet mesh_mesh0',
      'table inet mesh_mesh0 {',
    ])
  })

  it('drops everything else from the interface only when a policy exists', () => {
    expect(buildRuleset(GOLDEN_CASES.only_replies!).script).toContain('\t\tdrop\n')
    expect(buildRuleset(GOLDEN_CASES.no_policy!).script).not.toContain('drop')
  })

  it('grows by one line per set element, not per rule, for thousands of peers', () => {
    const peers = (n: number): FirewallPeer[] =>
      Array.from({length: n}, (_, i) => ({
        address: formatIPv4(parseIPv4('10.8.0.2')! + i),
        inbound: [{proto: 'tcp', ports: [[22, 22]]}],
      }))
    const input = (n: number): RulesetInput => ({
      iface: 'm',
      cidr: '10.8.0.0/16',
      self: '10.8.255.1',
      peers: peers(n),
    })
    const small = buildRuleset(input(10)).script.split('\n').length
    const r = buildRuleset(input(4000))
    expect(r.skipped).toEqual([])
    const big = r.script.split('\n').length
    expect(big - small).toBe(3990)
  })

  it('skips a peer with a bad address or a bad rule and keeps the others', () => {
    const r = buildRuleset(
      base([
        {address: '10.7.0.2', inbound: [{proto: 'tcp', ports: [[22, 22]]}]},
        {address: '10.9.0.3', inbound: [{proto: 'all'}]}, // outside the network
        {address: '10.7.0.1'}, // this node
        {address: '10.7.0.2'}, // a second entry for .2
        {address: '10.7.0.4', inbound: [{proto: 'tcp', ports: [[0, 22]]}]},
        {address: '10.7.0.5', inbound: [{proto: 'sctp'}]},
        {address: '10.7.0.6', inbound: [{proto: 'udp', ports: []}]},
        {address: '10.7.0.7', inbound: [{proto: 'tcp', ports: [[30, 20]]}]},
        {address: '10.7.0.8', inbound: [{proto: 'tcp', ports: [[22.5, 23]]}]},
      ]),
    )
    expect(r.skipped.map((s) => s.index)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(r.script).toContain('10.7.0.2 . 22,')
    expect(r.script).not.toMatch(/10\.7\.0\.[4-8]|10\.9/)
  })

  it.each([
    ['an interface name with a quote', {iface: 'wg0" accept'}],
    ['an interface name too long', {iface: 'a'.repeat(16)}],
    ['an empty interface name', {iface: ''}],
    ['a CIDR with host bits', {cidr: '10.7.0.1/24'}],
    ['an own address outside the network', {self: '10.8.0.1'}],
    ['an own address with a suffix', {self: '10.7.0.1; flush ruleset'}],
    ['a daemon port out of range', {daemonUdpPorts: [70000]}],
  ])('refuses %s', (_name, patch) => {
    expect(() => buildRuleset({...GOLDEN_CASES.icmp!, ...patch})).toThrow(RulesetInputError)
  })
})

describe('mergeRanges', () => {
  it('merges overlapping and adjacent ranges and keeps gaps', () => {
    expect(
      mergeRanges([
        [20, 30],
        [22, 22],
        [31, 40],
        [50, 60],
        [1, 1],
      ]),
    ).toEqual([
      [1, 1],
      [20, 40],
      [50, 60],
    ])
  })
})

/**
 * Every line the builder can write, as a pattern with no room for anything a hostile value could
 * bring in: names from a fixed set, addresses as dotted quads, ports as digits.
 */
const IP = String.raw`(?:\d{1,3}\.){3}\d{1,3}`
const PORTS = String.raw`\d{1,5}(?:-\d{1,5})?`
const LINE = new RegExp(
  '^(?:' +
    [
      String.raw`table inet mesh_[A-Za-z0-9_-]{1,15}(?: \{)?`,
      String.raw`delete table inet mesh_[A-Za-z0-9_-]{1,15}`,
      String.raw`\tset (?:allow_all|tcp_in|udp_in|icmp_in) \{`,
      String.raw`\t\ttype ipv4_addr(?: \. inet_service)?`,
      String.raw`\t\tflags interval`,
      String.raw`\t\telements = \{`,
      String.raw`\t\t\t${IP}(?: \. ${PORTS})?,`,
      String.raw`\t\t\}`,
      String.raw`\t\}`,
      String.raw`\}`,
      String.raw`\tchain (?:prerouting|from_mesh) \{`,
      String.raw`\t\ttype filter hook prerouting priority -150; policy accept;`,
      String.raw`\t\tiifname "[A-Za-z0-9_-]{1,15}" jump from_mesh`,
      String.raw`\t\tct state established,related accept`,
      String.raw`\t\tct state invalid drop`,
      String.raw`\t\tip saddr @allow_all accept`,
      String.raw`\t\tip daddr ${IP} udp dport \{ ${PORTS}(?:, ${PORTS})* \} accept`,
      String.raw`\t\tip daddr ${IP} ip saddr \. (?:tcp|udp) dport @(?:tcp|udp)_in accept`,
      String.raw`\t\tip daddr ${IP} ip saddr @icmp_in meta l4proto icmp accept`,
      String.raw`\t\tdrop`,
      '',
    ].join('|') +
    ')$',
)

/** Strings a controller could send: nft syntax, quotes, newlines, braces, unicode. */
const hostile = fc.oneof(
  fc.string(),
  fc.constantFrom(
    '10.7.0.9"',
    '10.7.0.9 }',
    '10.7.0.9\nflush ruleset',
    '10.7.0.9 . 22',
    '010.7.0.9',
    ' 10.7.0.9',
  ),
  fc.ipV4(),
  fc.integer({min: 2, max: 254}).map((n) => `10.7.0.${n}`),
)
const hostileValue = fc.oneof(hostile, fc.integer(), fc.double(), fc.constant(null), fc.array(fc.anything()))
const hostileRule = fc.oneof(
  fc.record({proto: fc.constantFrom('all', 'icmp', 'tcp', 'udp')}),
  fc.record({
    proto: fc.oneof(fc.constantFrom('tcp', 'udp'), hostile),
    ports: fc.array(
      fc.oneof(fc.tuple(hostileValue, hostileValue), fc.tuple(fc.integer(), fc.integer()), fc.anything()),
    ),
  }),
  fc.anything(),
)
const hostilePeer = fc.record(
  {address: hostile, inbound: fc.oneof(fc.array(hostileRule, {maxLength: 5}), fc.constant(undefined))},
  {requiredKeys: ['address']},
)

describe('buildRuleset with hostile input', () => {
  it('writes only lines of its own grammar, whatever the peers carry', () => {
    fc.assert(
      fc.property(fc.array(hostilePeer, {maxLength: 12}), (peers) => {
        const r = buildRuleset({...base([]), peers: peers as FirewallPeer[]})
        for (const line of r.script.split('\n')) expect(line).toMatch(LINE)
        // Every address in the script is one of the input's valid ones, printed canonically.
        for (const m of r.script.matchAll(new RegExp(IP, 'g')))
          expect(['10.7.0.1', ...peers.map((p) => p.address)]).toContain(m[0])
      }),
      {numRuns: 500},
    )
  })

  it('refuses any interface name outside the safe character set', () => {
    fc.assert(
      fc.property(fc.string({maxLength: 20}), (iface) => {
        let script: string | undefined
        try {
          script = buildRuleset({...GOLDEN_CASES.icmp!, iface}).script
        } catch (err) {
          expect(err).toBeInstanceOf(RulesetInputError)
          return
        }
        expect(iface).toMatch(/^[a-zA-Z0-9_-]{1,15}$/)
        for (const line of script.split('\n')) expect(line).toMatch(LINE)
      }),
      {numRuns: 500},
    )
  })
})
