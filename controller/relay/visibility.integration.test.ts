// A stand-alone relay (`mesh relay start`, in-process) under a tenant's ACL policy, with a real
// controller, real WebSockets and a real SQLite file: it drops packets between nodes that may not
// see each other, as the built-in relay does, learns a policy change at its next heartbeat, lets
// packets through while it has not learnt a network yet, and lets everything through again once
// the policy is removed. The relay's clock is a FakeClock never moved: it beats only when the
// test calls heartbeat().
import {Writable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {RELAY_API} from '../../shared/relay/control.js'
import {RELAY_WS_PATH} from '../../shared/relay/frame.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {client, publicKey, type Client} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {startRelay, type RunningRelay} from './main.js'
import {connectRelay, createRelayKey, metricValue, type RelayTestClient} from './testing/harness.js'
import {waitFor} from '../../shared/testing/wait-for.js'

/** web may reach db on tcp 5432; ci is in no rule: it sees nobody. */
const POLICY = `{"acls": [{"src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp"}]}`
/** POLICY, and ci may reach db too. */
const POLICY_CI = `{"acls": [{"src": ["tag:web", "tag:ci"], "dst": ["tag:db:5432"], "proto": "tcp"}]}`

let ctl: TestController
let api: Client
let relayKey: string
const relays: RunningRelay[] = []
const clients: RelayTestClient[] = []
let seq = 0

const quiet = new Writable({
  write(_c, _e, cb) {
    cb()
  },
})

beforeAll(async () => {
  ctl = await startTestController({relayHeartbeatMs: 1_000})
  api = client(ctl.url)
  relayKey = (await createRelayKey(ctl.url, ctl.adminToken, 'eu')).key
})
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)))
  await Promise.all(relays.map((r) => r.close()))
  await ctl?.close()
})

async function relay(): Promise<RunningRelay> {
  const r = await startRelay({
    controller: ctl.url,
    relayKey,
    listen: '127.0.0.1:0',
    clock: new FakeClock(),
    logDestination: quiet,
    logLevel: 'warn',
  })
  relays.push(r)
  return r
}

async function setPolicy(document: string | null): Promise<void> {
  const r =
    document === null
      ? await api.req('DELETE', '/api/v1/policy', {token: ctl.adminToken})
      : await api.req('PUT', '/api/v1/policy', {token: ctl.adminToken, body: {document}})
  expect(r.status, r.text).toBe(200)
}

/** A network of three tagged nodes (web, db, ci), each with a socket on relay `r` (db on `dbOn`). */
async function threeNodes(r: RunningRelay, dbOn: RunningRelay = r) {
  const n = ++seq
  const net = await api.req('POST', '/api/v1/networks', {
    token: ctl.adminToken,
    body: {name: `vis-${n}`, cidr: `10.${170 + n}.0.0/24`},
  })
  expect(net.status, net.text).toBe(201)
  const networkId = (net.body as {id: string}).id
  const ids = {} as Record<'web' | 'db' | 'ci', string>
  const socks = {} as Record<'web' | 'db' | 'ci', RelayTestClient>
  for (const name of ['web', 'db', 'ci'] as const) {
    const k = await api.req('POST', `/api/v1/networks/${networkId}/authkeys`, {
      token: ctl.adminToken,
      body: {tags: [`tag:${name}`], preApproved: true},
    })
    expect(k.status, k.text).toBe(201)
    const reg = await api.req('POST', '/api/v1/register', {
      body: {authKey: (k.body as {key: string}).key, publicKey: publicKey(), name},
    })
    expect(reg.status, reg.text).toBe(201)
    const b = reg.body as {node: {id: string}; credential: string}
    ids[name] = b.node.id
    const on = name === 'db' ? dbOn : r
    socks[name] = await connectRelay(`${on.url.replace(/^http/, 'ws')}${RELAY_WS_PATH}`, b.credential)
    clients.push(socks[name])
  }
  // The relay attaches a session after the client saw 'open': wait for its 'connect' events.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('three relay sessions')), 3000)
    const check = () => {
      const here = (name: 'web' | 'db' | 'ci') => (name === 'db' ? dbOn : r)
      if (
        (['web', 'db', 'ci'] as const).every((name) => here(name).relay.isConnected(networkId, ids[name]))
      ) {
        clearTimeout(timer)
        r.relay.off('connect', check)
        dbOn.relay.off('connect', check)
        resolve()
      }
    }
    r.relay.on('connect', check)
    if (dbOn !== r) dbOn.relay.on('connect', check)
    check()
  })
  return {networkId, ids, socks}
}

/**
 * Sends `payload` from `from` to `to` through relay `r`; true once it arrives, false once the
 * relay drops it as 'policy' (its 'drop' event), whichever comes first (bounded).
 */
async function passes(
  r: RunningRelay,
  nodes: Awaited<ReturnType<typeof threeNodes>>,
  from: 'web' | 'db' | 'ci',
  to: 'web' | 'db' | 'ci',
  payload: string,
): Promise<boolean> {
  const {ids, socks} = nodes
  let dropped = false
  const onDrop = (d: {nodeId: string; reason: string}) => {
    if (d.nodeId === ids[from] && d.reason === 'policy') dropped = true
  }
  r.relay.on('drop', onDrop)
  try {
    const before = socks[to].frames.length
    socks[from].send(ids[to], payload)
    const arrived = () => socks[to].frames.slice(before).some((f) => f.payload.toString() === payload)
    await waitUntil(() => arrived() || dropped, `${payload} to arrive or be dropped`)
    return arrived()
  } finally {
    r.relay.off('drop', onDrop)
  }
}

const waitUntil = (cond: () => boolean, what: string, ms = 3000): Promise<true> => waitFor(what, cond, ms, 5)

describe('a stand-alone relay under an ACL policy', () => {
  it('drops packets between nodes that may not see each other and learns a change at its next heartbeat', async () => {
    const r = await relay()
    await setPolicy(null)
    const nodes = await threeNodes(r)
    const {networkId} = nodes
    // No policy: every pair of the network.
    expect(await passes(r, nodes, 'ci', 'db', 'open 1')).toBe(true)
    await r.visibility.idle()

    await setPolicy(POLICY)
    const beat = await r.heartbeat()
    expect(beat.visibility?.tenants.length).toBe(1)
    await r.visibility.idle()
    expect(await passes(r, nodes, 'ci', 'db', 'ci to db')).toBe(false)
    expect(await passes(r, nodes, 'db', 'ci', 'db to ci')).toBe(false)
    expect(await passes(r, nodes, 'web', 'db', 'web to db')).toBe(true)
    // Visibility is symmetric: db sees web (ports are the receiving node's firewall's business).
    expect(await passes(r, nodes, 'db', 'web', 'db to web')).toBe(true)
    expect(await metricValue(r.relay.metrics.dropped, {network: networkId, reason: 'policy'})).toBe(2)

    // ci may now reach db: once the relay has beaten.
    await setPolicy(POLICY_CI)
    await r.heartbeat()
    await r.visibility.idle()
    expect(await passes(r, nodes, 'ci', 'db', 'ci to db, allowed')).toBe(true)
    expect(await passes(r, nodes, 'ci', 'web', 'ci to web')).toBe(false)

    // No policy again: everything passes.
    await setPolicy(null)
    await r.heartbeat()
    await r.visibility.idle()
    expect(await passes(r, nodes, 'ci', 'web', 'ci to web, open')).toBe(true)
  })

  it('lets packets through until it has learnt a network, then applies what it learnt', async () => {
    const r = await relay()
    await setPolicy(POLICY)
    const nodes = await threeNodes(r)
    // The first packet of the network starts the fetch and goes through: the relay does not know yet.
    expect(r.visibility.size).toBe(0)
    expect(await passes(r, nodes, 'ci', 'db', 'before the answer')).toBe(true)
    await r.visibility.idle()
    expect(await passes(r, nodes, 'ci', 'db', 'after the answer')).toBe(false)
    await setPolicy(null)
  })

  it('drops a packet the policy forbids before it crosses the relay mesh, and forwards the allowed ones', async () => {
    const r1 = await relay()
    const r2 = await relay()
    // Each beats again, so both hear of the other and one dials.
    await r1.heartbeat()
    await r2.heartbeat()
    await setPolicy(POLICY)
    const nodes = await threeNodes(r1, r2)
    const {networkId, ids} = nodes
    await waitUntil(
      () => r1.mesh.knows(networkId, ids.db) && r2.mesh.knows(networkId, ids.web),
      'mesh presence',
    )
    // Learnt before the test sends: the first packets of a network would go through (see above).
    r1.visibility.allowed(networkId, ids.web, ids.db)
    r2.visibility.allowed(networkId, ids.web, ids.db)
    await Promise.all([r1.visibility.idle(), r2.visibility.idle()])
    expect(await passes(r1, nodes, 'web', 'db', 'web on r1 to db on r2')).toBe(true)
    expect(await passes(r1, nodes, 'ci', 'db', 'ci on r1 to db on r2')).toBe(false)
    // And the other way: db on r2 is refused at r2.
    expect(await passes(r2, nodes, 'db', 'ci', 'db on r2 to ci on r1')).toBe(false)
    expect(await passes(r2, nodes, 'db', 'web', 'db on r2 to web on r1')).toBe(true)

    // A relay that has not learnt the network forwards; the receiving relay, which has, drops.
    const fresh = await threeNodes(r1, r2)
    await waitUntil(() => r1.mesh.knows(fresh.networkId, fresh.ids.db), 'mesh presence')
    r2.visibility.allowed(fresh.networkId, fresh.ids.web, fresh.ids.db)
    await r2.visibility.idle()
    fresh.socks.ci.send(fresh.ids.db, 'ci on r1 to db on r2, r1 unaware')
    await waitFor(
      'r2 to drop the forwarded packet',
      async () =>
        (await metricValue(r2.relay.metrics.dropped, {network: fresh.networkId, reason: 'policy'})) >= 1,
      3000,
      5,
    )
    expect(fresh.socks.db.frames).toEqual([])
    await setPolicy(null)
  })

  it('answers visibility only to a relay key, and validates the request', async () => {
    const ask = (auth: string | undefined, body: unknown) =>
      fetch(`${ctl.url}${RELAY_API.visibility}`, {
        method: 'POST',
        headers: {'content-type': 'application/json', ...(auth ? {authorization: `Bearer ${auth}`} : {})},
        body: JSON.stringify(body),
      })
    expect((await ask(undefined, {networkId: 'x'})).status).toBe(401)
    expect((await ask(ctl.adminToken, {networkId: 'x'})).status).toBe(401)
    expect((await ask(relayKey, {networkId: ''})).status).toBe(400)
    const gone = await ask(relayKey, {networkId: 'no-such-network'})
    expect(gone.status).toBe(200)
    expect(await gone.json()).toEqual({mode: 'unknown', networkId: 'no-such-network', tenantId: null})
  })
})
