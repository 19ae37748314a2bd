// Node reports at the scale: a meshd in a 2,000-peer network against a real controller.
// Reports used to carry every peer's stats every 10 s; above ~1,500 peers a report passed the
// controller's frame limit, the socket closed with 1009, and the daemon reconnected and reported
// again, in a loop.
import fs from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {DaemonClient} from '../cli/lib/daemon-client.js'
import {client, publicKey} from '../controller/testing/client.js'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {decodeJoinString} from '../shared/invite.js'
import type {PeerReport} from '../shared/protocol/netmap.js'
import {connectWs} from '../controller/testing/ws-client.js'
import {recordPairWrites} from '../controller/testing/store-spy.js'
import {PeerReporter} from './netmap/peer-report.js'
import type {PeerState} from './wireguard/driver.js'
import {startFakeDaemon, waitFor, type FakeDaemon} from './testing/harness.js'

const PEERS = 2000

/** A counter's value from the controller's /metrics text. */
async function metric(ctl: TestController, line: string): Promise<number> {
  const text = await (await fetch(`${ctl.url}/metrics`)).text()
  const m = text.split('\n').find((l) => l.startsWith(line + ' '))
  return m === undefined ? 0 : Number(m.slice(line.length + 1))
}

describe('node reports in a 2,000-peer network', () => {
  let ctl: TestController
  let d: FakeDaemon
  let networkId: string
  /** Node id -> credential of every registered peer. */
  const creds = new Map<string, string>()

  beforeAll(async () => {
    ctl = await startTestController()
    const api = client(ctl.url)
    const net = await api.req('POST', '/api/v1/networks', {
      token: ctl.adminToken,
      body: {name: 'big', cidr: '10.60.0.0/20', joinPolicy: 'open'},
    })
    expect(net.status, net.text).toBe(201)
    networkId = (net.body as {id: string}).id
    for (let i = 0; i < PEERS; i += 50) {
      await Promise.all(
        Array.from({length: Math.min(50, PEERS - i)}, async (_, j) => {
          const r = await api.req('POST', '/api/v1/register', {
            token: ctl.adminToken,
            body: {network: networkId, publicKey: publicKey(), name: `p${i + j}`},
          })
          expect(r.status, r.text).toBe(201)
          creds.set((r.body as {node: {id: string}}).node.id, (r.body as {credential: string}).credential)
        }),
      )
    }
    d = await startFakeDaemon({reportIntervalMs: 100})
  }, 120_000)
  afterAll(async () => {
    await d?.stop().catch(() => {})
    if (d) fs.rmSync(d.dir, {recursive: true, force: true})
    await ctl?.close()
  })

  it('sends every peer in frames the controller keeps, without the session ever closing, then only changes', async () => {
    const inv = await client(ctl.url).req('POST', `/api/v1/networks/${networkId}/invites`, {
      token: ctl.adminToken,
      body: {maxUses: 1},
    })
    const join = decodeJoinString((inv.body as {joinString: string}).joinString)!
    const res = await new DaemonClient({socketPath: d.socketPath}).join({
      controller: join.controller,
      invite: join.code,
      name: 'watcher',
    })
    const iface = res.interface
    const self = res.nodeId
    // Every mesh peer (the controller's discovery key, which routes nothing, aside).
    await waitFor(
      'all peers on the interface',
      () => d.fake.interfaces.get(iface)?.peers.filter((p) => p.allowedIps.length > 0).length === PEERS,
    )
    /** What WireGuard would show for peer i after `patch`. */
    const setPeer = (i: number, patch: Partial<PeerState>) => {
      const s = d.fake.interfaces.get(iface)!
      d.fake.interfaces.set(iface, {...s, peers: s.peers.map((p, j) => (j === i ? {...p, ...patch} : p))})
    }
    // Every peer handshakes and gets an endpoint, as a busy network would.
    const now = Date.now()
    const s0 = d.fake.interfaces.get(iface)!
    d.fake.interfaces.set(iface, {
      ...s0,
      peers: s0.peers.map((p, i) => ({
        ...p,
        lastHandshakeMs: now,
        endpoint: `198.51.100.${(i % 250) + 1}:${40000 + i}`,
      })),
    })
    const hub = ctl.running.server.netmap
    await waitFor(
      'the controller to hold every peer as online',
      () => {
        const links = hub.peerLinks(networkId, self)
        return links.size === PEERS && [...links.values()].every((l) => l.online && l.endpoint !== null)
      },
      30_000,
    )
    // One session all along: one full map sent, no frame refused or dropped.
    expect(await metric(ctl, 'mesh_netmap_frames_total{type="full"}')).toBe(1)
    expect(await metric(ctl, 'mesh_netmap_client_frames_dropped_total')).toBe(0)
    expect(hub.connections).toBe(1)

    // Then only changes: one peer's new endpoint is one entry, whatever the number of reports.
    const before = await metric(ctl, 'mesh_netmap_reported_peers_total')
    expect(before).toBeGreaterThanOrEqual(PEERS)
    setPeer(7, {endpoint: '203.0.113.9:41000'})
    const movedId = [...hub.peerLinks(networkId, self).keys()].find(
      (id) => hub.peerLinks(networkId, self).get(id)?.endpoint === '198.51.100.8:40007',
    )!
    await waitFor(
      'the moved endpoint',
      () => hub.peerLinks(networkId, self).get(movedId)?.endpoint === '203.0.113.9:41000',
    )
    // A second change later: reports in between (every 100 ms) carried no peers at all.
    setPeer(9, {lastHandshakeMs: 0})
    const goneId = [...hub.peerLinks(networkId, self).entries()].find(
      ([, l]) => l.endpoint === '198.51.100.10:40009',
    )![0]
    // Gone offline: the controller no longer holds a link for it (only live links are kept).
    await waitFor('the peer gone offline', () => !hub.peerLinks(networkId, self).has(goneId))
    expect(hub.peerLinks(networkId, self).size).toBe(PEERS - 1)
    expect((await metric(ctl, 'mesh_netmap_reported_peers_total')) - before).toBe(2)
    expect(await metric(ctl, 'mesh_netmap_frames_total{type="full"}')).toBe(1)
  })

  it('keeps path and latency reports of 2,000 peers bounded: jitter sends no entry and writes no row', async () => {
    const [reporterId, credential] = [...creds][0]!
    const peerIds = [...creds.keys()].filter((id) => id !== reporterId)
    const ws = await connectWs(`${ctl.url}/api/v1/netmap`, credential)
    try {
      await ws.next((f: {type: string}) => f.type === 'full')
      const store = ctl.running.store
      // Rows of the pairs the reporter reports, written (the watcher daemon above reports too).
      const reported = new Set(peerIds)
      let written = 0
      recordPairWrites(store, (w) => {
        if (
          (w.nodeA === reporterId && reported.has(w.nodeB)) ||
          (w.nodeB === reporterId && reported.has(w.nodeA))
        )
          written++
      })
      const reporter = new PeerReporter()
      const view = (jitter: number): PeerReport[] =>
        peerIds.map((id, i) => ({
          id,
          online: true,
          endpoint: i % 4 === 0 ? '127.0.0.1:40001' : `198.51.100.${(i % 250) + 1}:${40000 + i}`,
          path: i % 4 === 0 ? 'relay' : 'direct',
          latencyMs: 20 + (i % 40) + jitter,
        }))
      const send = (peers: PeerReport[]) => {
        const frames = reporter.frames([], peers)
        for (const f of frames) ws.ws.send(JSON.stringify(f))
        return frames
      }
      const first = send(view(0))
      expect(first.flatMap((f) => f.peers ?? [])).toHaveLength(peerIds.length)
      const links = () => ctl.running.server.netmap.peerLinks(networkId, reporterId)
      await waitFor(
        'every path reported',
        () => [...links().values()].filter((l) => l.path).length === peerIds.length,
      )
      await ctl.running.state.connections.flush()
      expect(written).toBe(peerIds.length)
      const listed = await client(ctl.url).req(
        'GET',
        `/api/v1/networks/${networkId}/connections?node=${reporterId}&limit=500`,
        {
          token: ctl.adminToken,
        },
      )
      expect(listed.status, listed.text).toBe(200)
      expect((listed.body as {items: {path: string}[]}).items.filter((c) => c.path === 'relay')).toHaveLength(
        125,
      )

      // Jitter on every peer: each report is one heartbeat frame, and nothing is written.
      written = 0
      for (const jitter of [2, -3, 4.5, -1]) expect(send(view(jitter))).toEqual([{type: 'report'}])
      // One real change after them: once it is written, everything before it was merged.
      const moved = view(0)
      moved[1] = {...moved[1]!, path: 'relay', endpoint: '127.0.0.1:40002'}
      expect(send(moved).flatMap((f) => f.peers ?? [])).toHaveLength(1)
      await waitFor('the moved path', () => links().get(peerIds[1]!)?.path === 'relay')
      await ctl.running.state.connections.flush()
      expect(written).toBe(1)
    } finally {
      await ws.close()
    }
  })
})
