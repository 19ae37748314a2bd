import {describe, expect, it} from 'vitest'
import type {Connection, Node} from '../../../shared/protocol/control-api.js'
import type {AdminEvent} from '../../../shared/protocol/netmap.js'
import {applyAdminEvent, buildTopology, summarise} from './model.js'

const node = (id: string, extra: Partial<Node> = {}): Node => ({
  id,
  networkId: 'net1',
  name: id,
  hostname: id,
  os: 'linux',
  publicKey: Buffer.alloc(32, id.charCodeAt(0)).toString('base64'),
  address: `10.9.0.${id.charCodeAt(0) % 200}`,
  status: 'active',
  online: true,
  lastSeen: null,
  endpoints: [],
  tags: [],
  ephemeral: false,
  createdAt: '2026-12-03T00:00:00Z',
  ...extra,
})

const conn = (a: string, b: string, path: 'direct' | 'relay'): Connection => ({
  a: {id: a, name: a},
  b: {id: b, name: b},
  path,
  latencyMs: 2,
  endpoints: {a: null, b: null},
  since: '2026-12-03T00:00:00Z',
  updatedAt: '2026-12-03T00:00:00Z',
})

const change = (a: string, b: string, to: 'direct' | 'relay' | 'none', networkId = 'net1'): AdminEvent => ({
  type: 'connection_changed',
  at: '2026-12-03T00:00:01Z',
  networkId,
  a: {id: a, name: a},
  b: {id: b, name: b},
  from: 'relay',
  to,
  latencyMs: to === 'none' ? null : 1,
})

describe('topology model', () => {
  it("keeps only the network's nodes and the pairs between them, one edge per pair", () => {
    const t = buildTopology(
      'net1',
      [node('a'), node('b'), node('c'), node('x', {networkId: 'net2'})],
      [conn('a', 'b', 'direct'), conn('b', 'a', 'direct'), conn('a', 'x', 'relay'), conn('b', 'c', 'relay')],
    )
    expect(t.nodes.map((n) => n.id)).toEqual(['a', 'b', 'c'])
    expect(t.edges).toEqual([
      {a: 'a', b: 'b', path: 'direct', latencyMs: 2},
      {a: 'b', b: 'c', path: 'relay', latencyMs: 2},
    ])
  })

  it('follows connection changes: a pair upgrades, and a pair that ends loses its edge', () => {
    let t = buildTopology('net1', [node('a'), node('b'), node('c')], [conn('b', 'c', 'relay')])
    t = applyAdminEvent(t, change('c', 'b', 'direct'))
    expect(t.edges).toEqual([{a: 'b', b: 'c', path: 'direct', latencyMs: 1}])
    t = applyAdminEvent(t, change('b', 'c', 'none'))
    expect(t.edges).toEqual([])
    expect(applyAdminEvent(t, change('a', 'b', 'direct', 'net2'))).toBe(t)
  })

  it('adds, updates, marks offline and removes nodes (with their edges)', () => {
    let t = buildTopology('net1', [node('a'), node('b')], [conn('a', 'b', 'direct')])
    const at = '2026-12-03T00:00:02Z'
    t = applyAdminEvent(t, {type: 'node_added', at, networkId: 'net1', node: node('c')})
    t = applyAdminEvent(t, {type: 'node_offline', at, networkId: 'net1', node: node('b')})
    t = applyAdminEvent(t, {type: 'node_changed', at, networkId: 'net1', node: node('a', {name: 'alpha'})})
    expect(t.nodes.map((n) => `${n.name}:${n.online}`)).toEqual(['alpha:true', 'b:false', 'c:true'])
    t = applyAdminEvent(t, {type: 'node_removed', at, networkId: 'net1', node: node('b')})
    expect(t.nodes.map((n) => n.id)).toEqual(['a', 'c'])
    expect(t.edges).toEqual([])
  })

  it('summarises each node with the peers it reaches directly and through the relay', () => {
    const t = buildTopology(
      'net1',
      [node('a'), node('b'), node('c')],
      [conn('a', 'b', 'direct'), conn('a', 'c', 'relay')],
    )
    const s = summarise(t)
    expect(s.map((x) => [x.node.id, x.direct.map((n) => n.id), x.relay.map((n) => n.id)])).toEqual([
      ['a', ['b'], ['c']],
      ['b', ['a'], []],
      ['c', [], ['a']],
    ])
  })
})
