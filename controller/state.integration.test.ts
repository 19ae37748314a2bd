// The coordinator and its parts composed on a real SQLite file and a FakeClock: node changes reach
// feed subscribers only after the call that made them has returned, in commit order; endpoint
// reports are coalesced per node, the held one applied when the clock reaches the end of the
// window; login limits hold under concurrency; presence ends a quick reconnect online.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {CreateNetworkRequestSchema, RegisterRequestSchema} from '../shared/protocol/control-api.js'
import type {Principal} from './auth/auth.js'
import {ControllerState} from './state.js'
import {SqliteStore} from './store/sqlite/sqlite-store.js'
import type {NodeChange, StoredNode} from './store/store.js'
import {publicKey} from './testing/client.js'
import {FakeClock} from '../shared/testing/fake-clock.js'

const META = {sourceAddress: '127.0.0.1', requestId: null}
const PASSWORD = 'a long enough password'

let dir: string
let store: SqliteStore
let state: ControllerState
let clock: FakeClock
let admin: Principal
let seq = 0

const WINDOW_MS = 300
const nextTurn = () => new Promise((r) => setImmediate(r))

async function registerIn(network: string): Promise<StoredNode> {
  const reg = await state.register(
    RegisterRequestSchema.parse({network, publicKey: publicKey(), name: `n${++seq}`}),
    admin,
    META,
  )
  return (await store.getNode(reg.node.id))!
}

const makeNetwork = (cidr: string) =>
  state.createNetwork(admin, CreateNetworkRequestSchema.parse({name: 'lab', cidr, joinPolicy: 'open'}), META)

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-state-'))
  store = await SqliteStore.open(path.join(dir, 'mesh.db'))
  clock = new FakeClock()
  state = new ControllerState(store, {endpointWindowMs: WINDOW_MS, clock})
  await state.auth.bootstrap(PASSWORD)
  const {token} = await state.auth.login('admin', PASSWORD, META)
  admin = (await state.auth.authenticateUser(token))!
})
afterEach(async () => {
  await state.close()
  await store.close()
  fs.rmSync(dir, {recursive: true, force: true})
})

describe('the change feed, fed by the admin operations', () => {
  it('tells node listeners about a registration after register() has returned, in commit order', async () => {
    await makeNetwork('10.9.0.0/24')
    const seen: NodeChange[] = []
    state.feed.onNodeChange((c) => seen.push(c))
    const first = await registerIn('lab')
    // The HTTP reply is written in this turn: the fan-out must not have run yet.
    expect(seen).toEqual([])
    const second = await registerIn('lab')
    await nextTurn()
    expect(seen.map((c) => [c.nodeId, c.kind])).toEqual([
      [first.id, 'added'],
      [second.id, 'added'],
    ])
    expect(seen[0]!.version).toBeLessThan(seen[1]!.version)
  })
})

describe('endpoint telemetry', () => {
  it('applies at most one endpoint change per node per window, the latest report last, unaudited', async () => {
    await makeNetwork('10.9.1.0/24')
    const node = await registerIn('lab')
    await nextTurn()
    const seen: NodeChange[] = []
    state.feed.onNodeChange((c) => seen.push(c))
    const reports = Array.from({length: 200}, (_, i) => [`198.51.100.${(i % 2) + 1}:51820`])
    await Promise.all(reports.map((e) => state.telemetry.reportEndpoints(node, e)))
    await state.telemetry.reportEndpoints(node, ['203.0.113.5:51820'])
    await nextTurn()
    expect(seen).toHaveLength(1)
    await clock.advanceAsync(WINDOW_MS)
    await nextTurn()
    expect(seen).toHaveLength(2)
    expect(seen[1]!.node?.endpoints).toEqual(['203.0.113.5:51820'])
    expect((await store.getNode(node.id))!.endpoints).toEqual(['203.0.113.5:51820'])
    const audit = await state.listAudit(admin, {}, {limit: 500})
    expect(audit.items.map((e) => e.action)).not.toContain('node.endpoints')
  })

  it('applies a held endpoint report exactly when the clock reaches the end of the window, not before', async () => {
    await makeNetwork('10.9.4.0/24')
    const node = await registerIn('lab')
    await nextTurn()
    const seen: NodeChange[] = []
    state.feed.onNodeChange((c) => seen.push(c))
    await state.telemetry.reportEndpoints(node, ['198.51.100.1:51820'])
    clock.advance(100)
    // Inside the window: held, and a later report replaces it (latest wins).
    await state.telemetry.reportEndpoints(node, ['198.51.100.2:51820'])
    await state.telemetry.reportEndpoints(node, ['198.51.100.3:51820'])
    await clock.advanceAsync(WINDOW_MS - 100 - 1)
    await nextTurn()
    expect(seen.map((c) => c.node?.endpoints)).toEqual([['198.51.100.1:51820']])
    expect((await store.getNode(node.id))!.endpoints).toEqual(['198.51.100.1:51820'])
    await clock.advanceAsync(1)
    await nextTurn()
    expect(seen.map((c) => c.node?.endpoints)).toEqual([['198.51.100.1:51820'], ['198.51.100.3:51820']])
    // The window restarts with that write: the next report waits a whole window again.
    await state.telemetry.reportEndpoints(node, ['198.51.100.4:51820'])
    await clock.advanceAsync(WINDOW_MS - 1)
    await nextTurn()
    expect(seen).toHaveLength(2)
    await clock.advanceAsync(1)
    await nextTurn()
    expect(seen.at(-1)!.node?.endpoints).toEqual(['198.51.100.4:51820'])
    // A report after a quiet window is applied at once.
    await clock.advanceAsync(WINDOW_MS)
    await state.telemetry.reportEndpoints(node, ['198.51.100.5:51820'])
    await nextTurn()
    expect(seen.at(-1)!.node?.endpoints).toEqual(['198.51.100.5:51820'])
    expect(clock.pending()).toBe(0)
  })

  it('coalesces observed endpoints per window and never writes a repeat of the stored value', async () => {
    await makeNetwork('10.9.5.0/24')
    const node = await registerIn('lab')
    await nextTurn()
    const seen: NodeChange[] = []
    state.feed.onNodeChange((c) => seen.push(c))
    await state.telemetry.reportObservedEndpoint(node, '203.0.113.10:41641')
    await state.telemetry.reportObservedEndpoint(node, '203.0.113.10:41641')
    await state.telemetry.reportObservedEndpoint(node, '203.0.113.11:41641')
    await clock.advanceAsync(WINDOW_MS - 1)
    await nextTurn()
    expect(seen.map((c) => c.node?.observedEndpoint)).toEqual(['203.0.113.10:41641'])
    await clock.advanceAsync(1)
    await nextTurn()
    expect(seen.map((c) => c.node?.observedEndpoint)).toEqual(['203.0.113.10:41641', '203.0.113.11:41641'])
    expect((await store.getNode(node.id))!.observedEndpoint).toBe('203.0.113.11:41641')
    // Long after: the value already stored costs no timer and no write.
    await clock.advanceAsync(10 * WINDOW_MS)
    await state.telemetry.reportObservedEndpoint(node, '203.0.113.11:41641')
    await nextTurn()
    expect([seen.length, clock.pending()]).toEqual([2, 0])
  })

  it('stores NAT behaviour at most once per window however a node flaps, the latest report last', async () => {
    await makeNetwork('10.9.6.0/24')
    const node = await registerIn('lab')
    await nextTurn()
    const seen: NodeChange[] = []
    state.feed.onNodeChange((c) => seen.push(c))
    const SYM = {mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent'} as const
    const CONE = {mapping: 'endpoint-independent', filtering: 'endpoint-independent'} as const
    // The first is written at once; the flapping inside the window costs nothing until it ends.
    for (const nat of [SYM, CONE, SYM, CONE, SYM, CONE]) await state.telemetry.reportNat(node, nat)
    await nextTurn()
    expect(seen.map((c) => c.node?.nat)).toEqual([SYM])
    await clock.advanceAsync(WINDOW_MS)
    await nextTurn()
    expect(seen.map((c) => c.node?.nat)).toEqual([SYM, CONE])
    // Flapping back to where it was within the next window: no write at all.
    for (const nat of [SYM, CONE, SYM, CONE]) await state.telemetry.reportNat(node, nat)
    await clock.advanceAsync(WINDOW_MS)
    await nextTurn()
    expect([seen.length, clock.pending()]).toEqual([2, 0])
    expect((await store.getNode(node.id))!.nat).toEqual(CONE)
    // A repeat of the stored value long after costs no timer and no write.
    await clock.advanceAsync(10 * WINDOW_MS)
    await state.telemetry.reportNat(node, CONE)
    await nextTurn()
    expect([seen.length, clock.pending()]).toEqual([2, 0])
  })

  it('writes a pending endpoint report on close, so nothing a node said is lost', async () => {
    await makeNetwork('10.9.2.0/24')
    const node = await registerIn('lab')
    await state.telemetry.reportEndpoints(node, ['198.51.100.7:51820'])
    await state.telemetry.reportEndpoints(node, ['198.51.100.8:51820'])
    expect((await store.getNode(node.id))!.endpoints).toEqual(['198.51.100.7:51820'])
    await state.close()
    expect((await store.getNode(node.id))!.endpoints).toEqual(['198.51.100.8:51820'])
  })
})

describe('auth: login limits', () => {
  it('lets no more concurrent wrong guesses through than the login limit allows', async () => {
    // Guesses sent at once all arrive before the first slow password check has finished.
    const guesses = await Promise.allSettled(
      Array.from({length: 30}, (_, i) => state.auth.login('admin', `wrong-${i}`, META)),
    )
    const codes = guesses.map((g) => (g.status === 'rejected' ? (g.reason as {code: string}).code : 'OK'))
    expect(codes.filter((c) => c === 'INVALID_CREDENTIALS')).toHaveLength(10)
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(20)
  })

  it('does not count a successful login against the limit', async () => {
    for (let i = 0; i < 9; i++) await expect(state.auth.login('admin', 'wrong', META)).rejects.toThrow()
    // One more than the limit in total, but the successes must not use it up.
    for (let i = 0; i < 3; i++) await expect(state.auth.login('admin', PASSWORD, META)).resolves.toBeTruthy()
    await expect(state.auth.login('admin', 'wrong', META)).rejects.toMatchObject({
      code: 'INVALID_CREDENTIALS',
    })
    await expect(state.auth.login('admin', 'wrong', META)).rejects.toMatchObject({code: 'RATE_LIMITED'})
  })
})

describe('presence with telemetry', () => {
  it("writes a node's held endpoint report when its last session closes, before it goes offline", async () => {
    const net = await makeNetwork('10.9.6.0/24')
    const node = await registerIn('lab')
    await state.presence.connected(node, net.tenantId)
    await state.telemetry.reportEndpoints(node, ['198.51.100.9:51820'])
    await state.telemetry.reportEndpoints(node, ['198.51.100.10:51820'])
    const atOffline: string[][] = []
    state.presence.onChange((e) => {
      if (e.kind === 'offline') void store.getNode(node.id).then((n) => atOffline.push(n!.endpoints))
    })
    await state.presence.disconnected(node, net.tenantId)
    await nextTurn()
    expect(atOffline).toEqual([['198.51.100.10:51820']])
    // Settled: no timer is left for the window.
    expect(clock.pending()).toBe(0)
  })

  it('ends a quick reconnect with the node online, its last presence event online', async () => {
    const net = await makeNetwork('10.9.3.0/24')
    const node = await registerIn('lab')
    const events: string[] = []
    state.presence.onChange((e) => events.push(`${e.kind}:${e.node.online}`))
    await state.presence.connected(node, net.tenantId)
    // The old socket's close and the new socket's open overlap.
    await Promise.all([
      state.presence.disconnected(node, net.tenantId),
      state.presence.connected(node, net.tenantId),
    ])
    expect(state.presence.isOnline(node.id)).toBe(true)
    expect(events.at(-1)).toBe('online:true')
    await state.presence.disconnected(node, net.tenantId)
    expect([state.presence.isOnline(node.id), events.at(-1)]).toEqual([false, 'offline:false'])
  })
})
