// Peer paths in meshd against a real controller, on a fake clock: which endpoint each WireGuard
// peer gets is the path's decision (daemon/nat/path.ts), no longer a guess in the diff.
import fs from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {DaemonClient} from '../cli/lib/daemon-client.js'
import {client, publicKey} from '../controller/testing/client.js'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {decodeJoinString} from '../shared/invite.js'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {DEFAULT_TUNING} from './nat/path.js'
import {initiationWinner} from './relay/initiation-tie-break.js'
import {startFakeDaemon, waitFor, type FakeDaemon} from './testing/harness.js'
import type {PeerState} from './wireguard/driver.js'

const FIRST = '198.51.100.21:51820'
const {maxPokes} = DEFAULT_TUNING
const SECOND = '203.0.113.21:40001'

describe('peer paths', () => {
  let ctl: TestController
  let d: FakeDaemon
  const clock = new FakeClock(Date.now())
  let iface: string
  let peerKey: string

  beforeAll(async () => {
    ctl = await startTestController()
    const api = client(ctl.url)
    const net = await api.req('POST', '/api/v1/networks', {
      token: ctl.adminToken,
      body: {name: 'paths', cidr: '10.61.0.0/24', joinPolicy: 'open'},
    })
    const networkId = (net.body as {id: string}).id
    peerKey = publicKey()
    const reg = await api.req('POST', '/api/v1/register', {
      token: ctl.adminToken,
      body: {network: networkId, publicKey: peerKey, name: 'far', endpoints: [FIRST, SECOND]},
    })
    expect(reg.status, reg.text).toBe(201)
    d = await startFakeDaemon({clock})
    const inv = await api.req('POST', `/api/v1/networks/${networkId}/invites`, {
      token: ctl.adminToken,
      body: {maxUses: 1},
    })
    const join = decodeJoinString((inv.body as {joinString: string}).joinString)!
    const res = await new DaemonClient({socketPath: d.socketPath}).join({
      controller: join.controller,
      invite: join.code,
      name: 'near',
    })
    iface = res.interface
  })
  afterAll(async () => {
    await d?.stop().catch(() => {})
    if (d) fs.rmSync(d.dir, {recursive: true, force: true})
    await ctl?.close()
  })

  const peer = (): PeerState | undefined =>
    d.fake.interfaces.get(iface)?.peers.find((p) => p.publicKey === peerKey)
  const setPeer = (patch: Partial<PeerState>) => {
    const s = d.fake.interfaces.get(iface)!
    d.fake.interfaces.set(iface, {
      ...s,
      peers: s.peers.map((p) => (p.publicKey === peerKey ? {...p, ...patch} : p)),
    })
  }
  /** Moves the fake clock in 1 s steps, checking the paths after each as the timer would. */
  const pass = async (ms: number) => {
    for (let t = 0; t < ms; t += 1_000) {
      clock.advance(1_000)
      await d.backend.checkPaths()
    }
  }
  const status = async () =>
    (await new DaemonClient({socketPath: d.socketPath}).status()).networks[0]!.peers.find(
      (p) => p.name === 'far',
    )!

  const RELAYED = /^127\.0\.0\.1:\d+$/

  it('reaches a new peer through the relay at once, although it has direct candidates', async () => {
    await waitFor('the peer on the relay', () => RELAYED.test(peer()?.endpoint ?? ''))
    expect((await status()).path).toBe('relay')
    // Candidates are never forced on WireGuard while relayed: upgrades switch in a coordinated
    // way (daemon/nat/upgrade.ts), not by the path tick.
    await pass(10_000)
    expect(peer()?.endpoint).toMatch(RELAYED)
    expect(
      d.fake.calls.some((c) => c.endpoints?.[peerKey] === FIRST || c.endpoints?.[peerKey] === SECOND),
    ).toBe(false)
  })

  it('re-creates a relayed peer whose first handshake is overdue so that WireGuard initiates at once, a bounded number of times', async () => {
    // The first test spent 10 s with the peer on the relay and never a handshake (nobody runs it).
    const pokes = d.fake.calls.filter(
      (c) => c.op === 'setPeers' && c.removed?.includes(peerKey) && c.added?.includes(peerKey),
    )
    const st = (await new DaemonClient({socketPath: d.socketPath}).status()).networks[0]!
    const farId = st.peers.find((p) => p.name === 'far')!.id
    // The side that wins initiation races pokes from the first overdue check, the other from the
    // second (both would re-create at once otherwise).
    expect(pokes.length).toBe(initiationWinner(st.nodeId, farId) ? maxPokes : maxPokes - 1)
    expect(peer()?.endpoint).toMatch(RELAYED)
    const before = d.fake.calls.length
    await pass(10_000)
    expect(d.fake.calls.slice(before).filter((c) => c.removed?.includes(peerKey))).toEqual([])
  })

  it('adopts the direct address WireGuard roamed to while relayed (the other side switched), touching nothing', async () => {
    const roamed = '203.0.113.99:61000'
    setPeer({endpoint: roamed, lastHandshakeMs: clock.now(), rxBytes: (peer()?.rxBytes ?? 0) + 500})
    const applies = d.fake.calls.length
    await pass(10_000)
    expect((await status()).endpoint).toBe(roamed)
    expect((await status()).path).toBe('direct')
    expect(peer()?.endpoint).toBe(roamed)
    expect(d.fake.calls.slice(applies).filter((c) => c.updated?.includes(peerKey))).toEqual([])
  })

  it('falls back to the relay within a few seconds when packets go out and nothing comes back', async () => {
    const start = clock.now()
    let tx = peer()?.txBytes ?? 0
    for (let i = 0; i < 10 && (await status()).path !== 'relay'; i++) {
      tx += 148
      setPeer({txBytes: tx})
      await pass(1_000)
    }
    expect((await status()).path).toBe('relay')
    expect(clock.now() - start).toBeLessThanOrEqual(DEFAULT_TUNING.deadMs + 1_000)
    expect(peer()?.endpoint).toMatch(RELAYED)
  })
})
