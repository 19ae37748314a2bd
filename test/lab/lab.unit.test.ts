/**
 * The lab's pure parts, no root needed: the state file (atomic write, schema check, listing by
 * creation time), ping output parsing, and the raw HTTP request builders of the e2e tests.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {teardownSync} from '../../cli/lib/lab/lab.js'
import {
  COUNTER_NAMES,
  hostRuleset,
  parseCounters,
  parseNatKinds,
  routerLan,
  routerRuleset,
} from '../../cli/lib/lab/nat.js'
import {listLabs, readState, stateFile, writeState, type LabState} from '../../cli/lib/lab/state.js'
import {chunkedRequest, dechunk, httpRequest, longestGap, pingStats} from './e2e-helpers.js'

const state = (prefix: string, createdAt: string): LabState => ({
  version: 1,
  prefix,
  createdAt,
  runDir: path.join(process.env.MESH_LAB_ROOT!, prefix),
  namespaces: [`${prefix}-sw`],
  switchNs: `${prefix}-sw`,
  nodes: [],
  networks: [],
  procs: [
    {name: 'controller', pid: 4242, startTime: '123', ns: `${prefix}-ctl`, log: '/x.log', argv: ['node']},
  ],
})

describe('lab state file', () => {
  let dir: string
  const saved = process.env.MESH_LAB_ROOT
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-lab-unit-'))
    process.env.MESH_LAB_ROOT = dir
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.MESH_LAB_ROOT
    else process.env.MESH_LAB_ROOT = saved
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('round-trips a state with mode 0600 and leaves no temp file', () => {
    writeState(state('ml0001', '2026-11-22T04:00:00.000Z'))
    expect(readState('ml0001')).toEqual(state('ml0001', '2026-11-22T04:00:00.000Z'))
    expect(fs.statSync(stateFile('ml0001')).mode & 0o777).toBe(0o600)
    expect(fs.readdirSync(path.join(dir, 'ml0001'))).toEqual(['lab.json'])
  })

  it('lists labs oldest first by creation time and ignores foreign or broken entries', () => {
    writeState(state('ml00bb', '2026-11-22T04:00:02.000Z'))
    writeState(state('ml00aa', '2026-11-22T04:00:01.000Z'))
    fs.mkdirSync(path.join(dir, 'ml00cc'))
    fs.writeFileSync(path.join(dir, 'ml00cc', 'lab.json'), '{"version": 1, "prefix": "ml00cc"')
    fs.mkdirSync(path.join(dir, 'not-a-lab'))
    expect(listLabs()).toEqual(['ml00aa', 'ml00bb'])
    expect(readState('ml00cc')).toBeUndefined()
  })

  it('rejects a state whose prefix is not a lab prefix', () => {
    const bad = {...state('ml0001', '2026-11-22T04:00:00.000Z'), prefix: '../etc'}
    fs.mkdirSync(path.join(dir, 'ml0001'))
    fs.writeFileSync(stateFile('ml0001'), JSON.stringify(bad))
    expect(readState('ml0001')).toBeUndefined()
  })
})

describe('teardown with keepLogs', () => {
  it('copies the logs into a fresh 0700 dir, never through a name planted in /tmp', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-lab-unit-'))
    const prefix = `ml${randomBytes(2).toString('hex')}`
    // What another user could have put at the old fixed name beforehand.
    const planted = path.join(os.tmpdir(), `mesh-lab-${prefix}-logs`)
    fs.mkdirSync(planted)
    fs.writeFileSync(path.join(planted, 'theirs'), 'x')
    let logs: string | undefined
    const saved = process.env.MESH_LAB_ROOT
    process.env.MESH_LAB_ROOT = root
    try {
      const runDir = path.join(root, prefix)
      fs.mkdirSync(path.join(runDir, 'logs'), {recursive: true})
      fs.writeFileSync(path.join(runDir, 'logs', 'node1-meshd.log'), 'hello\n')
      logs = teardownSync(
        {...state(prefix, new Date().toISOString()), runDir, namespaces: [], procs: []},
        {
          keepLogs: true,
        },
      ).logs
      expect(logs).toBeDefined()
      expect(logs).not.toBe(planted)
      expect(fs.statSync(logs!).mode & 0o777).toBe(0o700)
      expect(fs.readFileSync(path.join(logs!, 'node1-meshd.log'), 'utf8')).toBe('hello\n')
      expect(fs.readdirSync(planted)).toEqual(['theirs'])
      expect(fs.existsSync(runDir)).toBe(false)
    } finally {
      if (saved === undefined) delete process.env.MESH_LAB_ROOT
      else process.env.MESH_LAB_ROOT = saved
      for (const d of [root, planted, logs]) if (d) fs.rmSync(d, {recursive: true, force: true})
    }
  })
})

describe('ping output', () => {
  const out = [
    '64 bytes from 10.240.0.2: icmp_seq=1 ttl=64 time=0.5 ms',
    '64 bytes from 10.240.0.2: icmp_seq=2 ttl=64 time=0.5 ms',
    '64 bytes from 10.240.0.2: icmp_seq=5 ttl=64 time=0.5 ms',
    '',
    '--- 10.240.0.2 ping statistics ---',
    '6 packets transmitted, 3 received, 50% packet loss, time 2505ms',
  ].join('\n')

  it('reads packets sent and received from the summary', () => {
    expect(pingStats(out)).toEqual({sent: 6, received: 3})
  })

  it('finds the longest run of unanswered sequence numbers, the tail included', () => {
    expect(longestGap(out, 6)).toBe(2)
    expect(longestGap(out, 9)).toBe(4)
  })

  it('throws when there is no summary', () => {
    expect(() => pingStats('connect: Network is unreachable')).toThrow(/no ping summary/)
  })
})

describe('raw HTTP requests', () => {
  it('builds a request with Content-Length, keeping an explicitly declared one', () => {
    expect(httpRequest('POST', '/v1/up', '{}')).toBe(
      'POST /v1/up HTTP/1.1\r\nhost: meshd\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}',
    )
    expect(httpRequest('POST', '/v1/up', '{', {'content-length': '99'})).toContain('content-length: 99\r\n')
  })

  it('chunks a body so that dechunk gives it back', () => {
    const body = 'x'.repeat(150_000)
    const req = chunkedRequest('POST', '/v1/join', body)
    const split = req.indexOf('\r\n\r\n')
    expect(req.slice(0, split)).toContain('transfer-encoding: chunked')
    expect(req.endsWith('0\r\n\r\n')).toBe(true)
    const decoded = dechunk({status: 200, headers: 'transfer-encoding: chunked', body: req.slice(split + 4)})
    expect(decoded).toBe(body)
  })
})

describe('NAT lab rulesets', () => {
  const controller = ['198.51.100.1', '198.51.100.2']
  const ruleset = (kind: 'cone' | 'restricted' | 'symmetric' | 'udp-blocked'): string =>
    routerRuleset({kind, client: '172.16.2.2', controller})

  it('parses --nat kinds and refuses an unknown or empty one with INVALID_ARGUMENT', () => {
    expect(parseNatKinds('none, cone,restricted,symmetric,udp-blocked')).toEqual([
      'none',
      'cone',
      'restricted',
      'symmetric',
      'udp-blocked',
    ])
    expect(() => parseNatKinds('cone,fullcone')).toThrow(expect.objectContaining({code: 'INVALID_ARGUMENT'}))
    expect(() => parseNatKinds(' , ')).toThrow(expect.objectContaining({code: 'INVALID_ARGUMENT'}))
  })

  it('gives node N the private LAN 172.16.N.0/24 and no LAN outside 1..254', () => {
    expect(routerLan(3)).toEqual({cidr: '172.16.3.0/24', gateway: '172.16.3.1', host: '172.16.3.2'})
    expect(() => routerLan(0)).toThrow()
    expect(() => routerLan(255)).toThrow()
  })

  it('makes each kind from its own rules: fully-random only for symmetric, the learned-port DNAT only for cone, the UDP drop only for udp-blocked', () => {
    expect(ruleset('symmetric')).toContain('masquerade fully-random')
    for (const k of ['cone', 'restricted', 'udp-blocked'] as const) {
      expect(ruleset(k)).toContain('masquerade\n')
      expect(ruleset(k)).not.toContain('fully-random')
    }
    expect(ruleset('cone')).toMatch(/udp dport @cone_udp dnat to 172\.16\.2\.2/)
    expect(ruleset('cone')).toMatch(/priority srcnat \+ 10;[^}]*update @cone_udp \{ udp sport/)
    for (const k of ['restricted', 'symmetric', 'udp-blocked'] as const)
      expect(ruleset(k)).not.toContain('cone_udp')
    expect(ruleset('udp-blocked')).toContain('meta l4proto udp counter name udp_out_dropped drop')
    expect(ruleset('restricted')).not.toContain('udp_out_dropped drop')
  })

  it('drops unsolicited WAN input on every router, and on no none host', () => {
    for (const k of ['cone', 'restricted', 'symmetric', 'udp-blocked'] as const) {
      const r = ruleset(k)
      expect(r).toContain('type filter hook forward priority filter; policy drop;')
      expect(r).toMatch(/chain wan_in \{\n\s+ct state established,related goto count_in/)
      expect(r).toMatch(
        /chain input \{\n.*policy accept;\n.*ct state established,related accept\n.*\n.*counter name wan_in_dropped drop\n {2}\}/,
      )
    }
    expect(hostRuleset({controller})).not.toContain('drop;')
    expect(hostRuleset({controller})).not.toContain('wan_in_dropped drop')
  })

  it('declares every named counter and the controller addresses in every table', () => {
    for (const r of [ruleset('cone'), ruleset('symmetric'), hostRuleset({controller})]) {
      for (const c of COUNTER_NAMES) expect(r).toContain(`counter ${c} {}`)
      expect(r).toContain('elements = { 198.51.100.1, 198.51.100.2 }')
    }
  })

  it('reads counters and per-address set counters from `nft -j list table`', () => {
    const json = JSON.stringify({
      nftables: [
        {metainfo: {version: '1.0.6'}},
        {counter: {family: 'ip', name: 'udp_out_other', table: 'natlab', handle: 10, packets: 7, bytes: 560}},
        {counter: {family: 'ip', name: 'someone_elses', table: 'natlab', handle: 11, packets: 1, bytes: 1}},
        {
          set: {
            family: 'ip',
            name: 'udp_out_by_dst',
            table: 'natlab',
            type: 'ipv4_addr',
            elem: [{elem: {val: '198.51.100.12', counter: {packets: 3, bytes: 120}}}],
          },
        },
        {
          set: {
            name: 'wan_in_dropped_by_src',
            elem: [{elem: {val: '198.51.100.3', counter: {packets: 1, bytes: 41}}}, 'garbage'],
          },
        },
      ],
    })
    const c = parseCounters(json, 'cone', 'ml0001-r2')
    expect(c.counters.udp_out_other).toEqual({packets: 7, bytes: 560})
    expect(c.counters.wan_in_dropped).toEqual({packets: 0, bytes: 0})
    expect(Object.keys(c.counters)).toEqual([...COUNTER_NAMES])
    expect(c.udpOutTo).toEqual({'198.51.100.12': {packets: 3, bytes: 120}})
    expect(c.droppedFrom).toEqual({'198.51.100.3': {packets: 1, bytes: 41}})
    expect(c.udpInFrom).toEqual({})
  })
})
