import {describe, expect, it} from 'vitest'
import {NO_POLICY_CLASS} from '../../shared/policy/index.js'
import {storedNode} from '../testing/nodes.js'
import type {StoredNode} from '../store/store.js'
import {
  classOf,
  diffViews,
  netPolicy,
  OPEN_POLICY,
  peerEntry,
  relayVisibilityOf,
  samePolicy,
  viewOf,
} from './netmap-classes.js'

/** tag:ci may reach tag:web on 443; group:eng (alice) may reach everything. */
const POLICY = `{
  "groups": {"group:eng": ["alice"]},
  "acls": [
    {"src": ["tag:ci"], "dst": ["tag:web:443"], "proto": "tcp"},
    {"src": ["group:eng"], "dst": ["*:*"]},
  ],
}`
const OWNERS = new Map([
  ['u_alice', 'alice'],
  ['u_bob', 'bob'],
  ['u_admin', 'admin'],
])

const node = (id: string, octet: number, over: Partial<StoredNode> = {}): StoredNode =>
  storedNode({id, address: `10.0.0.${octet}`, ownerId: 'u_admin', ...over})
const ci = node('ci', 2, {tags: ['tag:ci']})
const web = node('web', 3, {tags: ['tag:web']})
const db = node('db', 4, {tags: ['tag:db']})
const alice = node('alice', 5, {ownerId: 'u_alice'})
const bob = node('bob', 6, {ownerId: 'u_bob'})
const all = [ci, web, db, alice, bob]
const peers = new Map(all.map((n) => [n.id, JSON.stringify({id: n.id})]))

const views = (document: string | null) => {
  const p = netPolicy(document, OWNERS)
  const classes = new Map(all.map((n) => [n.id, classOf(p, n)]))
  const of = (n: StoredNode) => viewOf(p, classes.get(n.id)!, peers, classes)
  return {p, classes, of}
}

describe('netmap visibility classes', () => {
  it('without a policy puts every node in one class that sees every peer as its plain JSON', () => {
    const {classes, of} = views(null)
    expect(new Set(classes.values())).toEqual(new Set([NO_POLICY_CLASS]))
    expect(of(ci)).toEqual(peers)
  })

  it('gives each class exactly the peers it may reach or be reached from, with what it accepts from each', () => {
    const {of} = views(POLICY)
    const tcp443 = [{proto: 'tcp', ports: [[443, 443]]}]
    // ci reaches web; alice (eng) reaches ci; ci reaches nobody else and nobody else reaches it.
    expect(Object.fromEntries([...of(ci)].map(([id, j]) => [id, JSON.parse(j)]))).toEqual({
      web: {id: 'web', inbound: []},
      alice: {id: 'alice'},
    })
    expect(Object.fromEntries([...of(web)].map(([id, j]) => [id, JSON.parse(j)]))).toEqual({
      ci: {id: 'ci', inbound: tcp443},
      alice: {id: 'alice'},
    })
    expect([...of(db).keys()]).toEqual(['alice'])
    expect([...of(bob).keys()]).toEqual(['alice'])
    // alice sees everyone (itself too: the hub leaves a node's own entry out) and accepts only
    // replies from them.
    const aliceView = of(alice)
    expect([...aliceView.keys()]).toEqual(['ci', 'web', 'db', 'alice', 'bob'])
    expect(JSON.parse(aliceView.get('bob')!)).toEqual({id: 'bob', inbound: []})
  })

  it('classes an owner the hub has no name for as owned by nobody', () => {
    const p = netPolicy(POLICY, new Map())
    const anon = classOf(p, alice)
    expect(anon).toBe(classOf(p, bob))
    expect(anon).not.toBe(classOf(netPolicy(POLICY, OWNERS), alice))
  })

  it('sees no peer at all under a stored policy that does not parse', () => {
    const {p, of} = views('{"acls": [')
    expect(p.unparsable).toBe(true)
    expect(of(alice).size).toBe(0)
  })

  it('splices inbound rules into a peer entry and leaves it alone when everything is accepted', () => {
    expect(peerEntry('{"id":"a"}', undefined)).toBe('{"id":"a"}')
    expect(peerEntry('{"id":"a"}', [])).toBe('{"id":"a","inbound":[]}')
    expect(JSON.parse(peerEntry('{"id":"a","x":1}', [{proto: 'icmp'}]))).toEqual({
      id: 'a',
      x: 1,
      inbound: [{proto: 'icmp'}],
    })
  })

  it('tells two policies apart by document and by owner names', () => {
    expect(samePolicy(OPEN_POLICY, netPolicy(null, OWNERS))).toBe(true)
    expect(samePolicy(netPolicy(POLICY, OWNERS), netPolicy(POLICY, new Map(OWNERS)))).toBe(true)
    expect(samePolicy(netPolicy(POLICY, OWNERS), OPEN_POLICY)).toBe(false)
    expect(samePolicy(netPolicy(POLICY, OWNERS), netPolicy(POLICY, new Map([['u_alice', 'alicia']])))).toBe(
      false,
    )
  })

  it.each([
    ['nothing_changed', {a: '1', b: '2'}, {a: '1', b: '2'}, [], []],
    ['one_entry_changed', {a: '1', b: '2'}, {a: '1', b: '3'}, ['b'], []],
    ['one_peer_added', {a: '1'}, {a: '1', b: '2'}, ['b'], []],
    ['one_peer_gone', {a: '1', b: '2'}, {b: '2'}, [], ['a']],
    ['all_new', {a: '1'}, {b: '2'}, ['b'], ['a']],
  ])('diffs two views: %s', (_name, before, after, changed, removed) => {
    const d = diffViews(new Map(Object.entries(before)), new Map(Object.entries(after)))
    expect(d.changed.map((c) => c.id)).toEqual(changed)
    expect(d.removed).toEqual(removed)
  })

  it('tells a stand-alone relay the active nodes by class and which classes see which, or nothing when open or too big', () => {
    const limits = {nodes: 100, pairs: 100}
    expect(relayVisibilityOf(OPEN_POLICY, all, limits)).toBeNull()
    const p = netPolicy(POLICY, OWNERS)
    const pending = node('pending', 7, {tags: ['tag:ci'], status: 'pending'})
    const v = relayVisibilityOf(p, [...all, pending], limits)!
    const classIndex = (id: string) => v.classes.findIndex((c) => c.includes(id))
    expect(v.classes.flat().sort()).toEqual(['alice', 'bob', 'ci', 'db', 'web'])
    const sees = (a: string, b: string) => v.sees[classIndex(a)]!.includes(classIndex(b))
    // The same relation the hub uses for views, both ways.
    for (const a of all)
      for (const b of all)
        if (a !== b)
          expect(sees(a.id, b.id), `${a.id} ${b.id}`).toBe(p.compiled.sees(classOf(p, a), classOf(p, b)))
    expect(sees('ci', 'web')).toBe(true)
    expect(sees('ci', 'db')).toBe(false)
    expect(relayVisibilityOf(p, all, {nodes: 4, pairs: 100})).toBeNull()
    expect(relayVisibilityOf(p, all, {nodes: 100, pairs: 2})).toBeNull()
  })
})

describe('IdP groups of owners (oidc: members of policy groups)', () => {
  const IDP = POLICY.replace('"group:eng": ["alice"]', '"group:eng": ["oidc:eng"]')

  it("puts a node in its owner's IdP group's class, and tells a reload apart when the groups changed", () => {
    const inEng = netPolicy(IDP, OWNERS, new Map([['u_bob', ['eng']]]))
    const notInEng = netPolicy(IDP, OWNERS, new Map([['u_bob', ['sales']]]))
    const classes = (p: typeof inEng) => new Map(all.map((n) => [n.id, classOf(p, n)]))
    // bob (in eng) may reach every node (his own view lists him too: the hub leaves self out);
    // out of eng, nobody.
    expect([...viewOf(inEng, classOf(inEng, bob), peers, classes(inEng)).keys()]).toEqual([
      'ci',
      'web',
      'db',
      'alice',
      'bob',
    ])
    expect(viewOf(notInEng, classOf(notInEng, bob), peers, classes(notInEng)).size).toBe(0)
    expect(samePolicy(inEng, notInEng)).toBe(false)
    expect(samePolicy(inEng, netPolicy(IDP, OWNERS, new Map([['u_bob', ['eng']]])))).toBe(true)
    expect(samePolicy(inEng, netPolicy(IDP, OWNERS))).toBe(false)
  })
})
