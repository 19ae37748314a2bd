// The netmap hub under a tenant's ACL policy (issue 10, "Enforcement"), against a real
// controller, real WebSockets and a real SQLite file: each node's map holds exactly the peers it
// may reach or be reached from, with what it accepts from each; a policy change reaches the
// nodes it affects within a second, as deltas, and nobody else; without a policy the frames are
// what they were before policies existed.
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import zlib from 'node:zlib'
import WebSocket from 'ws'
import {encodeRelayFrame, RELAY_WS_PATH} from '../../shared/relay/frame.js'
import {NetmapDeltaSchema, NetmapFullSchema} from '../../shared/protocol/netmap.js'
import {client, createNetwork, publicKey, type Client, type JoinedNode} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'
import {toPeer} from './netmap.js'
import {waitFor} from '../../shared/testing/wait-for.js'

/** tag:ci may reach tag:web on 443; group:eng (alice) may reach everything. */
const POLICY = `{
  "groups": {"group:eng": ["alice"]},
  "acls": [
    {"src": ["tag:ci"], "dst": ["tag:web:443"], "proto": "tcp"},
    {"src": ["group:eng"], "dst": ["*:*"]},
  ],
}`
/** POLICY, and tag:ci may also reach tag:db on 5432: only ci's and db's views change. */
const POLICY_DB = POLICY.replace(
  `"proto": "tcp"},`,
  `"proto": "tcp"},\n    {"src": ["tag:ci"], "dst": ["tag:db:5432"], "proto": "tcp"},`,
)
const TCP_443 = [{proto: 'tcp', ports: [[443, 443]]}]
const TCP_5432 = [{proto: 'tcp', ports: [[5432, 5432]]}]
/** What a peer entry without `inbound` means: everything is accepted from that peer. */
const ALL = 'all'

interface PeerEntry {
  id: string
  name: string
  inbound?: unknown
}
type Frame = {
  type: string
  version: number
  self?: {id: string}
  peers?: PeerEntry[]
  added?: PeerEntry[]
  changed?: PeerEntry[]
  removed?: string[]
}

let ctl: TestController
let api: Client
const sockets: WsClient[] = []
let seq = 0
const tokens: Record<'alice' | 'bob', string> = {alice: '', bob: ''}

beforeAll(async () => {
  ctl = await startTestController()
  api = client(ctl.url)
  for (const username of ['alice', 'bob'] as const) {
    const password = `${username} password 12345`
    const u = await api.req('POST', '/api/v1/users', {
      token: ctl.adminToken,
      body: {username, password, role: 'admin'},
    })
    expect(u.status, u.text).toBe(201)
    const login = await api.req('POST', '/api/v1/login', {body: {username, password}})
    expect(login.status, login.text).toBe(200)
    tokens[username] = login.body.token as string
  }
})
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()))
  await ctl?.close()
})
beforeEach(async () => {
  await setPolicy(null)
})

async function setPolicy(document: string | null): Promise<void> {
  const r =
    document === null
      ? await api.req('DELETE', '/api/v1/policy', {token: ctl.adminToken})
      : await api.req('PUT', '/api/v1/policy', {token: ctl.adminToken, body: {document}})
  expect(r.status, r.text).toBe(200)
}

/** Messages a raw socket receives, and a wait for the n-th one (on its 'message' event, bounded). */
function inbox<T>(s: WebSocket, decode: (d: WebSocket.RawData) => T) {
  const got: T[] = []
  const waiters: (() => void)[] = []
  s.on('message', (d) => {
    got.push(decode(d))
    for (const w of waiters.splice(0)) w()
  })
  const count = (n: number, ms = 2000): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${got.length} of ${n} messages within ${ms} ms`)), ms)
      const check = () => {
        if (got.length >= n) {
          clearTimeout(timer)
          resolve()
        } else waiters.push(check)
      }
      check()
    })
  return {got, count}
}

/** The hub's own state, which tells no event: polled, bounded by `ms`. */
const waitUntil = (check: () => boolean, ms = 1000): Promise<true> => waitFor("the hub's state", check, ms, 5)

/** Registers a node: tagged through an admin's auth key, or owned by the user whose token registers it. */
async function join(networkId: string, name: string, by: {tags: string[]} | {user: 'alice' | 'bob'}) {
  if ('user' in by) {
    const r = await api.req('POST', '/api/v1/register', {
      token: tokens[by.user],
      body: {network: networkId, publicKey: publicKey(), name},
    })
    expect(r.status, r.text).toBe(201)
    return r.body as JoinedNode
  }
  const k = await api.req('POST', `/api/v1/networks/${networkId}/authkeys`, {
    token: ctl.adminToken,
    body: {tags: by.tags, preApproved: true},
  })
  expect(k.status, k.text).toBe(201)
  const r = await api.req('POST', '/api/v1/register', {
    body: {authKey: k.body.key, publicKey: publicKey(), name},
  })
  expect(r.status, r.text).toBe(201)
  return r.body as JoinedNode
}

async function open(credential: string, version?: number): Promise<WsClient> {
  const ws = await connectWs(
    `${ctl.url}/api/v1/netmap${version === undefined ? '' : `?version=${version}`}`,
    credential,
  )
  sockets.push(ws)
  return ws
}

/** The peers a node holds after every frame it got so far (full maps replace, deltas apply). */
function held(ws: WsClient): Map<string, PeerEntry> {
  let peers = new Map<string, PeerEntry>()
  for (const raw of ws.frames) {
    const f = raw as Frame
    if (f.type === 'full') {
      expect(NetmapFullSchema.safeParse(f).success, JSON.stringify(f)).toBe(true)
      peers = new Map((f.peers ?? []).filter((p) => p.id !== f.self?.id).map((p) => [p.id, p]))
    } else if (f.type === 'delta') {
      expect(NetmapDeltaSchema.safeParse(f).success, JSON.stringify(f)).toBe(true)
      for (const p of [...(f.added ?? []), ...(f.changed ?? [])]) peers.set(p.id, p)
      for (const id of f.removed ?? []) peers.delete(id)
    }
  }
  return peers
}

/** Peer name -> what the node accepts from it (ALL when the entry has no `inbound`). */
function seen(ws: WsClient): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const p of [...held(ws).values()].sort((a, b) => a.name.localeCompare(b.name)))
    out[p.name] = p.inbound ?? ALL
  return out
}

/** Waits (up to a second) until the node holds exactly `expected`, then checks it. */
async function expectSeen(ws: WsClient, expected: Record<string, unknown>, ms = 1000): Promise<void> {
  await ws
    .until(() => JSON.stringify(seen(ws)) === JSON.stringify(sortKeys(expected)), ms)
    .catch(() => undefined)
  expect(seen(ws)).toEqual(expected)
}
const sortKeys = (o: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)))

/** ci, web, db (tagged), alice's and bob's laptops in a new open network, each with a session. */
async function fiveNodes() {
  const n = ++seq
  const net = await createNetwork(ctl, {name: `acl-${n}`, cidr: `10.${60 + n}.0.0/24`, joinPolicy: 'open'})
  const nodes = {
    ci: await join(net.id, 'ci', {tags: ['tag:ci']}),
    web: await join(net.id, 'web', {tags: ['tag:web']}),
    db: await join(net.id, 'db', {tags: ['tag:db']}),
    alice: await join(net.id, 'alice', {user: 'alice'}),
    bob: await join(net.id, 'bob', {user: 'bob'}),
  }
  const ws = {} as Record<keyof typeof nodes, WsClient>
  for (const [name, node] of Object.entries(nodes) as [keyof typeof nodes, JoinedNode][]) {
    ws[name] = await open(node.credential)
    await ws[name].next((f) => f.type === 'full', 2000)
  }
  return {net, nodes, ws}
}

/** The views under POLICY. */
const UNDER_POLICY = {
  ci: {alice: ALL, web: []},
  web: {alice: ALL, ci: TCP_443},
  db: {alice: ALL},
  alice: {bob: [], ci: [], db: [], web: []},
  bob: {alice: ALL},
}
const OPEN_VIEW = (self: string) =>
  Object.fromEntries(['alice', 'bob', 'ci', 'db', 'web'].filter((n) => n !== self).map((n) => [n, ALL]))

/**
 * Renames `marker` and waits until each of `sockets` holds the new name: every frame the hub
 * sent them before is in by then (one socket delivers in order). Returns the new name.
 */
async function barrier(marker: JoinedNode, sockets: WsClient[]): Promise<string> {
  const name = `marker-${++seq}`
  const r = await api.req('PATCH', `/api/v1/nodes/${marker.node.id}`, {token: ctl.adminToken, body: {name}})
  expect(r.status, r.text).toBe(200)
  for (const ws of sockets) await ws.until(() => [...held(ws).values()].some((p) => p.name === name), 1000)
  return name
}

describe('netmap hub under an ACL policy', () => {
  it('gives each node exactly the peers it may reach or be reached from, with what it accepts from each', async () => {
    await setPolicy(POLICY)
    const {ws} = await fiveNodes()
    for (const [name, expected] of Object.entries(UNDER_POLICY))
      expect(seen(ws[name as keyof typeof ws]), name).toEqual(expected)
  })

  it('tells the nodes a policy change affects within a second, as deltas, and nobody else', async () => {
    const {nodes, ws} = await fiveNodes()
    for (const name of Object.keys(ws)) expect(seen(ws[name as keyof typeof ws])).toEqual(OPEN_VIEW(name))

    // 1. A policy where there was none: every view changes, each by one delta.
    const full = (w: WsClient) => w.frames.filter((f) => (f as Frame).type === 'full').length
    await setPolicy(POLICY)
    for (const [name, expected] of Object.entries(UNDER_POLICY))
      await expectSeen(ws[name as keyof typeof ws], expected)
    for (const w of Object.values(ws)) expect(full(w)).toBe(1)

    // 2. A rule for ci -> db: ci and db hear of it; web, alice and bob get nothing.
    const counts = Object.fromEntries(Object.entries(ws).map(([n, w]) => [n, w.frames.length]))
    await setPolicy(POLICY_DB)
    await expectSeen(ws.ci, {alice: ALL, db: [], web: []})
    await expectSeen(ws.db, {alice: ALL, ci: TCP_5432})
    expect(ws.ci.frames.length).toBe(counts.ci! + 1)
    expect(ws.db.frames.length).toBe(counts.db! + 1)
    // Everyone sees alice: once her rename is in, anything sent before it is in too.
    await barrier(nodes.alice, [ws.ci, ws.web, ws.db, ws.bob])
    for (const name of ['web', 'bob'] as const) expect(ws[name].frames.length, name).toBe(counts[name]! + 1)
    // Its own rename (self) is a frame of its own socket, not ordered with the others' frames.
    await ws.alice.until(() => ws.alice.frames.length > counts.alice!, 1000)
    expect(ws.alice.frames.length).toBe(counts.alice! + 1)
    const back = await api.req('PATCH', `/api/v1/nodes/${nodes.alice.node.id}`, {
      token: ctl.adminToken,
      body: {name: 'alice'},
    })
    expect(back.status, back.text).toBe(200)

    // 3. No policy again: every node sees every peer, accepting everything.
    await setPolicy(null)
    for (const name of Object.keys(ws)) await expectSeen(ws[name as keyof typeof ws], OPEN_VIEW(name))
    for (const w of Object.values(ws)) expect(full(w)).toBe(1)
  })

  it('sends a node change only to the classes that see the node, each with its own inbound rules', async () => {
    await setPolicy(POLICY)
    const {nodes, ws} = await fiveNodes()
    const counts = Object.fromEntries(Object.entries(ws).map(([n, w]) => [n, w.frames.length]))
    const r = await api.req('PATCH', `/api/v1/nodes/${nodes.web.node.id}`, {
      token: ctl.adminToken,
      body: {name: 'web-2'},
    })
    expect(r.status, r.text).toBe(200)
    await expectSeen(ws.ci, {alice: ALL, 'web-2': []})
    await expectSeen(ws.alice, {bob: [], ci: [], db: [], 'web-2': []})
    await barrier(nodes.alice, [ws.db, ws.bob])
    // db and bob do not see web: only the marker reached them.
    expect(ws.db.frames.length).toBe(counts.db! + 1)
    expect(ws.bob.frames.length).toBe(counts.bob! + 1)
    for (const w of [ws.db, ws.bob]) expect(JSON.stringify(w.frames)).not.toContain(nodes.web.node.id)
  })

  it('moves a node whose tags change to its new class: it gets a full map, the others a delta', async () => {
    await setPolicy(POLICY)
    const {net, nodes, ws} = await fiveNodes()
    // Tags have no API yet: the change is written as the store's change log would have it.
    const {store, state} = ctl.running
    const before = await store.getNode(nodes.bob.node.id)
    const version = await store.write((tx) => tx.bumpNetmap(net.id, nodes.bob.node.id, 'changed'))
    const after = {...before!, tags: ['tag:web']}
    const fullsBefore = ws.bob.frames.filter((f) => (f as Frame).type === 'full').length
    state.feed.publish({
      networkId: net.id,
      tenantId: (await store.getNetwork(net.id))!.tenantId,
      version,
      nodeId: after.id,
      kind: 'changed',
      node: after,
      before: before!,
    })
    // bob is tag:web now: ci reaches it on 443, alice reaches it; db does not see it either way.
    await expectSeen(ws.bob, {alice: ALL, ci: TCP_443})
    expect(ws.bob.frames.filter((f) => (f as Frame).type === 'full').length).toBe(fullsBefore + 1)
    await expectSeen(ws.ci, {alice: ALL, bob: [], web: []})
    const added = ws.ci.frames.at(-1) as Frame
    expect(added.added?.map((p) => p.id)).toEqual([nodes.bob.node.id])
    await expectSeen(ws.alice, {bob: [], ci: [], db: [], web: []})
    await barrier(nodes.alice, [ws.db])
    expect(JSON.stringify(ws.db.frames)).not.toContain(nodes.bob.node.id)
  })

  it('resumes a node from before a policy change with a full map of what it sees now', async () => {
    const {nodes, ws} = await fiveNodes()
    const version = (ws.ci.frames[0] as Frame).version
    await ws.ci.close()
    await setPolicy(POLICY)
    await expectSeen(ws.web, UNDER_POLICY.web)
    const again = await open(nodes.ci.credential, version)
    const first = await again.next<Frame>(() => true, 2000)
    expect(first.type).toBe('full')
    expect(seen(again)).toEqual(UNDER_POLICY.ci)
    // A resume from a version after the change gets a delta, still only of peers it sees: a
    // change of web (which it sees) moves it past the change; bob's rename (it does not see bob)
    // reaches it as a removal of an id, never as an entry.
    await barrier(nodes.web, [again])
    const v3 = (again.frames.at(-1) as Frame).version
    await again.close()
    await barrier(nodes.bob, [ws.alice])
    const third = await open(nodes.ci.credential, v3)
    const delta = await third.next<Frame>(() => true, 2000)
    expect(delta.type).toBe('delta')
    expect(delta.changed ?? []).toEqual([])
    expect(delta.removed).toEqual([nodes.bob.node.id])
  })

  it('ignores what a node reports about peers it does not see, and the relay drops packets between them', async () => {
    await setPolicy(POLICY)
    const {net, nodes, ws} = await fiveNodes()
    // ci reports db (invisible to it) and web (visible) online.
    ws.ci.ws.send(
      JSON.stringify({
        type: 'report',
        peers: [
          {id: nodes.db.node.id, online: true, endpoint: null},
          {id: nodes.web.node.id, online: true, endpoint: null},
        ],
      }),
    )
    const hub = ctl.running.server.netmap
    await waitUntil(() => hub.peerLinks(net.id, nodes.ci.node.id).size > 0)
    expect([...hub.peerLinks(net.id, nodes.ci.node.id).keys()]).toEqual([nodes.web.node.id])
    expect(hub.relayAllowed(net.id, nodes.ci.node.id, nodes.db.node.id)).toBe(false)
    expect(hub.relayAllowed(net.id, nodes.ci.node.id, nodes.web.node.id)).toBe(true)

    // Over the relay: ci -> db is dropped as 'policy'; ci -> web arrives.
    const relay = (credential: string) =>
      new Promise<WebSocket>((resolve, reject) => {
        const s = new WebSocket(`${ctl.url.replace(/^http/, 'ws')}${RELAY_WS_PATH}`, {
          headers: {authorization: `Bearer ${credential}`},
        })
        s.once('open', () => resolve(s))
        s.once('error', reject)
      })
    const [rCi, rDb, rWeb] = await Promise.all([
      relay(nodes.ci.credential),
      relay(nodes.db.credential),
      relay(nodes.web.credential),
    ])
    try {
      const atDb = inbox(rDb, (d) => d as Buffer)
      const atWeb = inbox(rWeb, (d) => d as Buffer)
      const drops: string[] = []
      const relayServer = ctl.running.relay
      relayServer.on('drop', (d) => drops.push(d.reason))
      // The relay attaches a session after the client saw 'open': wait for its 'connect' event.
      if (!relayServer.isConnected(net.id, nodes.web.node.id))
        await new Promise<void>((resolve) => {
          const on = (id: {nodeId: string}) => {
            if (id.nodeId !== nodes.web.node.id) return
            relayServer.off('connect', on)
            resolve()
          }
          relayServer.on('connect', on)
        })
      rCi.send(encodeRelayFrame(nodes.db.node.id, Buffer.from('to db')))
      rCi.send(encodeRelayFrame(nodes.web.node.id, Buffer.from('to web')))
      await atWeb.count(1)
      expect(drops).toEqual(['policy'])
      expect(atDb.got).toEqual([])
    } finally {
      for (const s of [rCi, rDb, rWeb]) s.terminate()
    }
  })

  // Deletes alice: after every other test that registers a node with her token.
  it('takes a deleted user out of the policy: the nodes it owned, given to a user the policy does not name, lose what its name gave them', async () => {
    await setPolicy(POLICY)
    const {ws} = await fiveNodes()
    const users = await api.req('GET', '/api/v1/users?limit=100', {token: ctl.adminToken})
    const aliceUser = (users.body.items as {id: string; username: string}[]).find(
      (u) => u.username === 'alice',
    )!
    // A user who owns nodes is deleted only with a choice for them (USER_HAS_NODES otherwise).
    const heir = await api.req('POST', '/api/v1/users', {
      token: ctl.adminToken,
      body: {username: `heir-${++seq}`, password: 'heir-password-1', role: 'member'},
    })
    expect(heir.status, heir.text).toBe(201)
    const del = await api.req(
      'DELETE',
      `/api/v1/users/${aliceUser.id}?nodes=reassign&to=${heir.body.id as string}`,
      {token: ctl.adminToken},
    )
    expect(del.status, del.text).toBe(200)
    // Alice's laptop is owned by nobody the policy names: it sees no one, and no one sees it.
    await expectSeen(ws.alice, {})
    await expectSeen(ws.ci, {web: []})
    await expectSeen(ws.bob, {})
  })

  it('sends frames byte for byte as before policies existed when the tenant has none', async () => {
    const n = ++seq
    const net = await createNetwork(ctl, {name: `acl-${n}`, cidr: `10.${60 + n}.0.0/24`, joinPolicy: 'open'})
    const a = await join(net.id, 'a', {tags: ['tag:ci']})
    const b = await join(net.id, 'b', {user: 'bob'})
    const s = new WebSocket(`${ctl.url.replace(/^http/, 'ws')}/api/v1/netmap`, {
      headers: {authorization: `Bearer ${a.credential}`},
    })
    const {got: raw, count} = inbox(s, (d) => String(d))
    try {
      await count(1)
      const r = await api.req('PATCH', `/api/v1/nodes/${b.node.id}`, {
        token: ctl.adminToken,
        body: {name: 'b-2'},
      })
      expect(r.status, r.text).toBe(200)
      await count(2)
      const {store} = ctl.running
      const stored = (await store.getNode(b.node.id))!
      const version = await store.netmapVersion(net.id)
      // The delta as the hub wrote it before classes existed: the peer's own JSON, no inbound.
      expect(raw[1]).toBe(
        `{"type":"delta","version":${version},"changed":[${JSON.stringify(toPeer(stored))}]}`,
      )
      const full = JSON.parse(raw[0]!) as Frame
      expect(JSON.stringify(full.peers)).toBe(
        `[${JSON.stringify(toPeer((await store.getNode(b.node.id))!)).replace('"b-2"', '"b"')}]`,
      )
    } finally {
      s.terminate()
    }
  })

  it('after a policy is removed, gives a node that takes gzip one gzipped full map, and a text node a delta without its own entry', async () => {
    // tag:a reaches tag:a, tag:b reaches tag:a on 443: a b node sees the 20 a nodes only, and
    // after the removal every peer: a delta of 39 entries, its own entry among them.
    await setPolicy(
      `{"acls": [{"src": ["tag:a"], "dst": ["tag:a:*"]}, {"src": ["tag:b"], "dst": ["tag:a:443"], "proto": "tcp"}]}`,
    )
    const n = ++seq
    const net = await createNetwork(ctl, {name: `acl-${n}`, cidr: `10.${60 + n}.0.0/24`, joinPolicy: 'open'})
    const nodes: JoinedNode[] = []
    for (let i = 0; i < 40; i++)
      nodes.push(await join(net.id, `n${i}`, {tags: [i % 2 === 0 ? 'tag:a' : 'tag:b']}))
    const [gz, text] = [nodes[1]!, nodes[3]!]
    const s = new WebSocket(`${ctl.url.replace(/^http/, 'ws')}/api/v1/netmap?encoding=gzip`, {
      headers: {authorization: `Bearer ${gz.credential}`},
    })
    const {got, count} = inbox(s, (d) => {
      const buf = d as Buffer
      const gzipped = buf[0] === 0x1f && buf[1] === 0x8b
      return {gzipped, frame: JSON.parse((gzipped ? zlib.gunzipSync(buf) : buf).toString()) as Frame}
    })
    try {
      const ws = await open(text.credential)
      await ws.next((f) => f.type === 'full', 2000)
      await count(1)
      expect(Object.keys(seen(ws))).toHaveLength(20)
      const before = ws.frames.length
      await setPolicy(null)
      await count(2)
      expect(got[1]!.gzipped).toBe(true)
      expect(got[1]!.frame.type).toBe('full')
      expect(got[1]!.frame.peers).toHaveLength(40)
      await ws.until(() => ws.frames.length > before, 1000)
      const delta = ws.frames[before] as Frame
      expect(delta.type).toBe('delta')
      const ids = (delta.changed ?? []).map((p) => p.id)
      expect(ids).toHaveLength(39)
      expect(ids).not.toContain(text.node.id)
      expect(Object.values(seen(ws)).every((v) => v === ALL)).toBe(true)
      expect(Object.keys(seen(ws))).toHaveLength(39)
    } finally {
      s.terminate()
    }
  })
})
