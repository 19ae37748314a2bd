// Stand-alone relays (`mesh relay start`, in-process here) with a real controller: HTTP and
// WebSockets on 127.0.0.1, a real SQLite file. The controller's clock is a FakeClock (relay
// liveness ends when the test moves it); the relays' clock is another FakeClock that is never
// moved, so they beat only when the test calls heartbeat().
import {createHash, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {Writable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {NetmapDeltaSchema, NetmapFullSchema, type NatServices} from '../../shared/protocol/netmap.js'
import {RELAY_CLOSE, RELAY_WS_PATH} from '../../shared/relay/frame.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {client, publicKey, type Client} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'
import {startRelay, type RunningRelay} from './main.js'
import {RELAY_KEYS_FILE} from './registry.js'
import {connectRelay, createRelayKey, metricValue, type RelayTestClient} from './testing/harness.js'

const HEARTBEAT_MS = 1_000

let ctl: TestController
let clock: FakeClock
let api: Client
let euKey: string
const relays: RunningRelay[] = []
const clients: RelayTestClient[] = []
const sockets: WsClient[] = []
let seq = 0

const quiet = new Writable({
  write(_c, _e, cb) {
    cb()
  },
})

beforeAll(async () => {
  clock = new FakeClock()
  ctl = await startTestController({clock, relayHeartbeatMs: HEARTBEAT_MS})
  api = client(ctl.url)
  euKey = (await createRelayKey(ctl.url, ctl.adminToken, 'eu')).key
})
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)))
  await Promise.all(sockets.map((s) => s.close()))
  await Promise.all(relays.map((r) => r.close()))
  await ctl?.close()
})

async function relay(opts: {key?: string; region?: string} = {}): Promise<RunningRelay> {
  const r = await startRelay({
    controller: ctl.url,
    relayKey: opts.key ?? euKey,
    listen: '127.0.0.1:0',
    clock: new FakeClock(),
    logDestination: quiet,
    logLevel: 'warn',
    ...(opts.region === undefined ? {} : {region: opts.region}),
  })
  relays.push(r)
  return r
}

async function network(): Promise<{id: string}> {
  const r = await api.req('POST', '/api/v1/networks', {
    token: ctl.adminToken,
    body: {name: `relay-${++seq}`, cidr: `10.${150 + seq}.0.0/24`, joinPolicy: 'open'},
  })
  expect(r.status, r.text).toBe(201)
  return r.body as {id: string}
}

async function join(netId: string): Promise<{id: string; credential: string}> {
  const r = await api.req('POST', '/api/v1/register', {
    token: ctl.adminToken,
    body: {network: netId, publicKey: publicKey(), name: `node-${++seq}`},
  })
  expect(r.status, r.text).toBe(201)
  const b = r.body as {node: {id: string}; credential: string}
  return {id: b.node.id, credential: b.credential}
}

/** A node's relay socket, to a stand-alone relay or (no relay given) the controller's own. */
async function connect(cred: string, r?: RunningRelay): Promise<RelayTestClient> {
  const base = r?.url ?? ctl.url
  const c = await connectRelay(`${base.replace(/^http/, 'ws')}${RELAY_WS_PATH}`, cred)
  clients.push(c)
  return c
}

/**
 * Waits until `cond` holds, checking again on each event that can change it (relay sessions
 * opening, mesh presence arriving); bounded by `ms`.
 */
function until(
  cond: () => boolean,
  what: string,
  on: (recheck: () => void) => () => void,
  ms = 3000,
): Promise<void> {
  if (cond()) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const stop = on(() => {
      if (!cond()) return
      finish()
      resolve()
    })
    const timer = setTimeout(() => {
      finish()
      reject(new Error(`timed out waiting for ${what}`))
    }, ms)
    const finish = () => {
      clearTimeout(timer)
      stop()
    }
  })
}
/** Re-check on each relay session that opens. */
const onConnect =
  (r: {relay: {on(e: 'connect', f: () => void): unknown; off(e: 'connect', f: () => void): unknown}}) =>
  (f: () => void) => {
    r.relay.on('connect', f)
    return () => void r.relay.off('connect', f)
  }

async function fullMap(credential: string): Promise<{nat?: NatServices}> {
  const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
  sockets.push(ws)
  const full = await ws.next<{type: string; nat?: NatServices}>((f) => f.type === 'full', 2000)
  expect(NetmapFullSchema.safeParse(full).success, JSON.stringify(full)).toBe(true)
  await ws.close()
  return full
}

describe('relay keys', () => {
  it('are kept hashed in the database, and a wrong key or region cannot register a relay', async () => {
    const db = (ctl.running.store as unknown as {db: {prepare(sql: string): {all(): unknown[]}}}).db
    const rows = JSON.stringify(db.prepare('SELECT * FROM relay_keys').all())
    expect(rows).not.toContain(euKey)
    expect(rows).toContain('"region":"eu"')
    await expect(relay({key: `mrelay_${randomBytes(32).toString('base64url')}`})).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    })
    await expect(relay({region: 'us'})).rejects.toMatchObject({code: 'CONFIG_INVALID'})
  })

  it('revoked, stops its relays beating and takes them off the list at once', async () => {
    const {id, key} = await createRelayKey(ctl.url, ctl.adminToken, 'eu')
    const r = await relay({key})
    expect(ctl.running.relays.registry.live()).toContainEqual({url: r.url, region: 'eu'})
    const res = await api.req('DELETE', `/api/v1/relay-keys/${id}`, {token: ctl.adminToken})
    expect(res.status, res.text).toBe(200)
    expect((res.body as {revokedAt: string | null}).revokedAt).not.toBeNull()
    await ctl.running.relays.registry.refresh()
    expect(ctl.running.relays.registry.live().some((x) => x.url === r.url)).toBe(false)
    await expect(r.heartbeat()).rejects.toMatchObject({code: 'UNAUTHENTICATED'})
    const audit = await api.req('GET', '/api/v1/audit', {token: ctl.adminToken})
    const actions = (audit.body as {items: {action: string; targetId: string}[]}).items
      .filter((e) => e.targetId === id)
      .map((e) => e.action)
    expect(actions.sort()).toEqual(['relaykey.create', 'relaykey.revoke'])
  })

  it('in a relay-keys.json of an older mesh are imported once at start and keep working', async () => {
    const old = `mrelay_${randomBytes(32).toString('base64url')}`
    const dataDir = fs.mkdtempSync(path.join(ctl.dataDir, '..', 'mesh-relay-import-'))
    const file = path.join(dataDir, RELAY_KEYS_FILE)
    fs.writeFileSync(
      file,
      JSON.stringify([
        {
          id: 'rk_old',
          region: 'eu',
          hash: createHash('sha256').update(old).digest('hex'),
          createdAt: '2026-01-01T00:00:00.000Z',
        },
      ]),
      {mode: 0o600},
    )
    const second = await startTestController({
      clock: new FakeClock(),
      relayHeartbeatMs: HEARTBEAT_MS,
      dataDir,
    })
    try {
      const listed = await api.req('GET', `${second.url}/api/v1/relay-keys`, {token: second.adminToken})
      expect(listed.status, listed.text).toBe(200)
      expect(
        (listed.body as {items: {id: string; region: string; createdBy: string | null}[]}).items,
      ).toEqual([expect.objectContaining({id: 'rk_old', region: 'eu', createdBy: null})])
      const r = await startRelay({
        controller: second.url,
        relayKey: old,
        listen: '127.0.0.1:0',
        clock: new FakeClock(),
        logDestination: quiet,
        logLevel: 'warn',
      })
      relays.push(r)
      expect(second.running.relays.registry.live()).toEqual([{url: r.url, region: 'eu'}])
    } finally {
      await second.close()
      fs.rmSync(dataDir, {recursive: true, force: true})
    }
  })
})

describe('a stand-alone relay', () => {
  it('lets a node authenticated through it reach another node of its network, and no one else', async () => {
    const r = await relay()
    const net = await network()
    const other = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const c = await join(other.id)
    const ra = await connect(a.credential, r)
    const rb = await connect(b.credential, r)
    const rc = await connect(c.credential, r)
    await until(() => r.relay.connections === 3, 'three relay sessions', onConnect(r))
    ra.send(b.id, 'hello b')
    const got = await rb.next(2000)
    expect([got.peerId, got.payload.toString()]).toEqual([a.id, 'hello b'])
    rb.send(a.id, 'hello a')
    expect((await ra.next(2000)).payload.toString()).toBe('hello a')
    // A node of another network gets nothing through, and nothing reaches it.
    rc.send(b.id, 'from another network')
    ra.send(c.id, 'to another network')
    ra.send(b.id, 'marker')
    expect((await rb.next(2000)).payload.toString()).toBe('marker')
    expect(rc.frames).toEqual([])
    expect(await metricValue(r.relay.metrics.dropped, {network: other.id, reason: 'foreign'})).toBe(1)
    // An unknown credential is refused.
    const bad = await connect(`mnode_${randomBytes(32).toString('base64url')}`, r)
    expect((await bad.closed).code).toBe(RELAY_CLOSE.UNAUTHENTICATED)
    // Answers are cached: reconnecting within the cache window costs the controller no call.
    const calls = r.auth.calls
    await ra.close()
    await connect(a.credential, r)
    expect(r.auth.calls).toBe(calls)
  })

  it('closes a removed node at its next heartbeat and refuses its credential after', async () => {
    const r = await relay()
    const net = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    await connect(a.credential, r)
    const rb = await connect(b.credential, r)
    await until(() => r.relay.isConnected(net.id, b.id), 'b on the relay', onConnect(r))
    const del = await api.req('DELETE', `/api/v1/nodes/${b.id}`, {token: ctl.adminToken})
    expect(del.status, del.text).toBeLessThan(300)
    const beat = await r.heartbeat()
    expect(beat.gone).toContainEqual({nodeId: b.id, networkId: net.id})
    expect((await rb.closed).code).toBe(RELAY_CLOSE.REVOKED)
    const again = await connect(b.credential, r)
    expect((await again.closed).code).toBe(RELAY_CLOSE.UNAUTHENTICATED)
  })

  it('is listed with its region in full netmaps while it heartbeats, and not once it stops', async () => {
    const r = await relay()
    const net = await network()
    const a = await join(net.id)
    const before = await fullMap(a.credential)
    expect(before.nat?.relays).toContainEqual({url: r.url, region: 'eu'})
    expect(before.nat?.relays?.[0]).toEqual({region: 'default'})
    await r.close()
    // Other relays of earlier tests stop beating too: only the built-in relay stays.
    await Promise.all(relays.map((x) => x.close()))
    clock.advance(4 * HEARTBEAT_MS)
    const after = await fullMap(a.credential)
    expect(after.nat?.relays).toEqual([{region: 'default'}])
  })

  it('forwards to the relay a peer is homed on: two stand-alone relays, and one and the controller', async () => {
    const r1 = await relay()
    const r2 = await relay()
    // Each beat again, so both hear of the other; the one whose URL sorts first dials.
    await r1.heartbeat()
    await r2.heartbeat()
    const net = await network()
    const other = await network()
    const a = await join(net.id)
    const b = await join(net.id)
    const c = await join(net.id)
    const x = await join(other.id)
    const ra = await connect(a.credential, r1)
    const rb = await connect(b.credential, r2)
    const rc = await connect(c.credential) // the controller's built-in relay
    const rx = await connect(x.credential, r2)
    await until(
      () =>
        r1.mesh.knows(net.id, b.id) &&
        r1.mesh.knows(net.id, c.id) &&
        r2.mesh.knows(net.id, a.id) &&
        r2.mesh.knows(net.id, c.id),
      'presence over the mesh',
      (f) => {
        const offs = [r1.mesh.onPresenceChange(f), r2.mesh.onPresenceChange(f)]
        return () => offs.forEach((off) => off())
      },
    )
    ra.send(b.id, 'a on r1 to b on r2')
    const atB = await rb.next(2000)
    expect([atB.peerId, atB.payload.toString()]).toEqual([a.id, 'a on r1 to b on r2'])
    rb.send(a.id, 'b on r2 to a on r1')
    expect((await ra.next(2000)).payload.toString()).toBe('b on r2 to a on r1')
    rc.send(b.id, 'c on the controller to b on r2')
    const fromC = await rb.next(2000)
    expect([fromC.peerId, fromC.payload.toString()]).toEqual([c.id, 'c on the controller to b on r2'])
    ra.send(c.id, 'a on r1 to c on the controller')
    expect((await rc.next(2000)).payload.toString()).toBe('a on r1 to c on the controller')
    // The mesh keeps networks apart: x (another network, on r2) reaches no one, even by id.
    rx.send(a.id, 'x to a')
    ra.send(x.id, 'a to x')
    ra.send(b.id, 'marker')
    expect((await rb.next(2000)).payload.toString()).toBe('marker')
    expect(rx.frames).toEqual([])
    expect(ra.frames.map((f) => f.payload.toString())).toEqual(['b on r2 to a on r1'])
  })

  it('is announced to connected nodes when it registers and when it goes (a delta with nat)', async () => {
    const net = await network()
    const a = await join(net.id)
    const ws = await connectWs(`${ctl.url}/api/v1/netmap`, a.credential)
    sockets.push(ws)
    await ws.next((f) => f.type === 'full', 2000)
    const r = await relay()
    type D = {type: string; nat?: NatServices; changed?: unknown}
    const listed = (d: D) =>
      d.type === 'delta' && (d.nat?.relays ?? []).some((x) => x.url === r.url && x.region === 'eu')
    const added = await ws.next<D>(listed, 2000)
    expect(NetmapDeltaSchema.safeParse(added).success, JSON.stringify(added)).toBe(true)
    expect(added.changed).toBeUndefined()
    await r.close()
    clock.advance(4 * HEARTBEAT_MS)
    const gone = await ws.next<D>((d) => d.type === 'delta' && d.nat !== undefined, 2000)
    expect(gone.nat?.relays?.some((x) => x.url === r.url)).toBe(false)
  })
})
