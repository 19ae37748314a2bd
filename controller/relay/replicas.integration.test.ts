// Relays across two controller replicas on one real PostgreSQL (in-process, each with its own
// pool, listener and built-in relay at its own --relay-url on 127.0.0.1): relay keys, the relay
// list and the relay-mesh token are the database's, so a key made through one replica registers
// a relay through the other, both list it, nodes homed on the two built-in relays reach each
// other over the mesh, and a relay that stops beating leaves both lists within its TTL. Both
// replicas share one FakeClock (one time for the TTLs they write); stand-alone relays get
// another, never moved, so they beat only when the test says.
import {Writable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../test/support/postgres.js'
import {freePort} from '../../test/support/process.js'
import {RELAY_WS_PATH} from '../../shared/relay/frame.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {client, createNetwork, joinNode} from '../testing/client.js'
import {startReplicas, type TestReplicas} from '../testing/replicas.js'
import type {TestController} from '../testing/test-controller.js'
import {connectWs, type WsClient} from '../testing/ws-client.js'
import type {NatServices} from '../../shared/protocol/netmap.js'
import {startRelay, type RunningRelay} from './main.js'
import {connectRelay, createRelayKey, type RelayTestClient} from './testing/harness.js'

const skip = postgresSkipReason()
const HEARTBEAT_MS = 1_000

const quiet = new Writable({
  write(_c, _e, cb) {
    cb()
  },
})

/**
 * Waits until `cond` holds, checking again on each event `on` subscribes to (relay-list changes,
 * mesh presence); bounded by `ms`.
 */
function until(
  cond: () => boolean,
  what: string,
  on: (f: () => void) => () => void,
  ms = 5000,
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

describe.skipIf(skip !== undefined)(
  `relays across two controller replicas on PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let server: PostgresServer
    let replicas: TestReplicas | undefined
    let clock: FakeClock
    let r1: TestController
    let r2: TestController
    const relays: RunningRelay[] = []
    const nodes: RelayTestClient[] = []
    const sockets: WsClient[] = []
    let relayKey: string

    /** Re-check on every relay-list change and every mesh presence message, on either replica. */
    const onLists = (f: () => void) => {
      const offs = [r1, r2].flatMap((r) => [
        r.running.relays.registry.subscribe(f),
        r.running.relays.mesh.onPresenceChange(f),
      ])
      return () => offs.forEach((off) => off())
    }

    beforeAll(async () => {
      server = await startPostgres()
      clock = new FakeClock()
      replicas = await startReplicas(server, async () => {
        // A port free now: the replica's --relay-url must name it before it listens.
        const port = await freePort()
        return {
          clock,
          listen: `127.0.0.1:${port}`,
          relayUrl: `http://127.0.0.1:${port}`,
          stunListen: 'off',
          discoveryListen: 'off',
          relayHeartbeatMs: HEARTBEAT_MS,
        }
      })
      ;({r1, r2} = replicas)
    })
    afterAll(async () => {
      await Promise.all(nodes.map((c) => c.close().catch(() => undefined)))
      await Promise.all(sockets.map((s) => s.close()))
      await Promise.all(relays.map((r) => r.close()))
      await replicas?.close()
      await server?.stop()
    })

    async function fullMapRelays(ctl: TestController, credential: string) {
      const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
      try {
        return (await ws.next<{type: string; nat?: NatServices}>((f) => f.type === 'full', 5000)).nat?.relays
      } finally {
        await ws.close()
      }
    }

    it("registers each replica's built-in relay at its --relay-url, seen by both, under one mesh token", async () => {
      const both = () =>
        [r1, r2].every(
          (r) =>
            r.running.relays.registry
              .relays()
              .filter((x) => x.kind === 'builtin')
              .map((x) => x.url)
              .sort()
              .join(' ') === [r1.url, r2.url].sort().join(' '),
        )
      await until(both, 'both built-in relays listed on both replicas', onLists)
      expect(r1.running.relays.registry.meshToken).toBe(r2.running.relays.registry.meshToken)
      expect(r1.running.relays.registry.meshToken).toMatch(/^mmesh_/)
    })

    it('accepts a relay key created through replica 1 for a relay registering through replica 2, and both list it', async () => {
      // A node connected to replica 1 is told of the relay when it registers through replica 2.
      const netA = await createNetwork(r1, {name: 'relay-list', cidr: '10.81.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r1, netA.id, 'a')
      const watch = await connectWs(`${r1.url}/api/v1/netmap`, a.credential)
      sockets.push(watch)
      await watch.next<{type: string}>((f) => f.type === 'full', 5000)
      relayKey = (await createRelayKey(r1.url, r1.adminToken, 'eu')).key
      // The key is in the database: replica 2 lists it too.
      const listed = await client(r2.url).req('GET', '/api/v1/relay-keys', {token: r2.adminToken})
      expect(listed.status, listed.text).toBe(200)
      expect((listed.body as {items: {region: string}[]}).items.map((k) => k.region)).toEqual(['eu'])
      const relay = await startRelay({
        controller: r2.url,
        relayKey,
        listen: '127.0.0.1:0',
        clock: new FakeClock(),
        logDestination: quiet,
        logLevel: 'warn',
      })
      relays.push(relay)
      const entry = {url: relay.url, region: 'eu'}
      expect(r2.running.relays.registry.live()).toEqual([entry])
      // Replica 1 hears of it through mesh_relays, without waiting for a beat.
      await until(
        () => r1.running.relays.registry.live().some((x) => x.url === relay.url),
        'replica 1 to list the relay',
        onLists,
      )
      const delta = await watch.next<{type: string; nat?: NatServices}>(
        (f) => f.type === 'delta' && (f.nat?.relays ?? []).some((x) => x.url === relay.url),
        5000,
      )
      expect(delta.nat?.relays).toEqual([{region: 'default'}, entry])
      for (const ctl of [r1, r2]) {
        const list = await fullMapRelays(ctl, a.credential)
        expect(list).toEqual([{region: 'default'}, entry])
      }
    })

    it("carries relay frames between nodes homed on different replicas' built-in relays", async () => {
      const netB = await createNetwork(r2, {name: 'relay-mesh', cidr: '10.82.0.0/24', joinPolicy: 'open'})
      const a = await joinNode(r1, netB.id, 'a')
      const b = await joinNode(r2, netB.id, 'b')
      const ra = await connectRelay(`${r1.url.replace(/^http/, 'ws')}${RELAY_WS_PATH}`, a.credential)
      const rb = await connectRelay(`${r2.url.replace(/^http/, 'ws')}${RELAY_WS_PATH}`, b.credential)
      nodes.push(ra, rb)
      const m1 = r1.running.relays.mesh
      const m2 = r2.running.relays.mesh
      await until(
        () => m1.knows(netB.id, b.node.id) && m2.knows(netB.id, a.node.id),
        'presence of each node on the other replica',
        onLists,
      )
      ra.send(b.node.id, 'a on replica 1 to b on replica 2')
      const atB = await rb.next(2000)
      expect([atB.peerId, atB.payload.toString()]).toEqual([a.node.id, 'a on replica 1 to b on replica 2'])
      rb.send(a.node.id, 'b on replica 2 to a on replica 1')
      const atA = await ra.next(2000)
      expect([atA.peerId, atA.payload.toString()]).toEqual([b.node.id, 'b on replica 2 to a on replica 1'])
    })

    it('drops a relay that stops heart-beating from both replicas within its TTL', async () => {
      const relay = relays[0]!
      await relay.close()
      const gone = () =>
        [r1, r2].every((r) => !r.running.relays.registry.live().some((x) => x.url === relay.url))
      expect(gone()).toBe(false)
      // Just short of the TTL (3 beats) it is still listed; past it, both replicas drop it.
      await clock.advanceAsync(3 * HEARTBEAT_MS - 100)
      await Promise.all([r1, r2].map((r) => r.running.relays.registry.idle()))
      expect(gone()).toBe(false)
      await clock.advanceAsync(HEARTBEAT_MS + 100)
      await Promise.all([r1, r2].map((r) => r.running.relays.registry.idle()))
      await until(gone, 'the relay to leave both lists', onLists)
      const netC = await createNetwork(r1, {name: 'relay-gone', cidr: '10.83.0.0/24', joinPolicy: 'open'})
      const c = await joinNode(r2, netC.id, 'c')
      expect(await fullMapRelays(r1, c.credential)).toEqual([{region: 'default'}])
    })
  },
)
