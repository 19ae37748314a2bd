// `POST /v1/netcheck` end to end on loopback: meshd (in-memory WireGuard) takes a netmap naming
// the controller's STUN server and relay from a stand-in controller, and the typed client gets
// the NetReport of a real StunServer plus the relay's reachability and latency.
import fs from 'node:fs'
import net from 'node:net'
import {afterEach, describe, expect, it} from 'vitest'
import {DaemonClient} from '../../cli/lib/daemon-client.js'
import {StunServer} from '../../controller/stun/server.js'
import {isMeshError} from '../../shared/errors.js'
import {nodeUdpBind} from '../../shared/net/udp.js'
import {NetcheckResultSchema} from '../../shared/protocol/local-api.js'
import type {NatServices} from '../../shared/protocol/netmap.js'
import {seedNetwork, startFakeDaemon, tempDir, waitFor, type FakeDaemon} from '../testing/harness.js'
import {startNetmapController, type NetmapController} from '../testing/netmap-controller.js'
import {NetcheckService} from './netcheck-service.js'

async function canBind(address: string): Promise<boolean> {
  try {
    ;(await nodeUdpBind({address, port: 0})).close()
    return true
  } catch {
    return false
  }
}

const errorCode = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'no error',
    (e: unknown) => (isMeshError(e) ? e.code : String(e)),
  )

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const {port} = s.address() as net.AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

const cleanup: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

async function startStun(): Promise<{stun: StunServer; port: number; twoAddresses: boolean}> {
  const twoAddresses = await canBind('127.0.0.2')
  const stun = new StunServer({
    primary: {address: '127.0.0.1', port: 0},
    alternate: twoAddresses ? {address: '127.0.0.2', port: 0} : {port: 0},
  })
  const {primary} = await stun.start()
  cleanup.push(() => stun.close())
  return {stun, port: primary.port, twoAddresses}
}

/** meshd joined to network "lab" whose controller `ctl` sends a netmap with `nat`. */
async function daemonWithNat(nat: NatServices | undefined): Promise<{d: FakeDaemon; ctl: NetmapController}> {
  const dir = tempDir()
  let publicKey = ''
  const ctl = await startNetmapController(() => ({
    type: 'full',
    version: 1,
    network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
    self: {id: 'n1', name: 'alpha', publicKey, address: '10.9.0.2', status: 'active'},
    peers: [],
    ...(nat !== undefined && {nat}),
  }))
  publicKey = seedNetwork(dir, {controller: ctl.url}).keys.publicKey
  const d = await startFakeDaemon({dir})
  cleanup.push(async () => {
    await d.stop()
    await ctl.close()
    fs.rmSync(dir, {recursive: true, force: true})
  })
  await waitFor('the netmap', async () => (await d.backend.status()).networks[0]?.netmapVersion === 1)
  return {d, ctl}
}

describe('POST /v1/netcheck', () => {
  it("reports UDP, the public address, mapping and filtering from the netmap's STUN server (host = the controller's) and the controller relay's latency", async () => {
    const {stun, port, twoAddresses} = await startStun()
    const {d, ctl} = await daemonWithNat({stun: {primary: {port}}, relays: [{region: 'home'}]})
    const r = await new DaemonClient({socketPath: d.socketPath}).netcheck({})
    expect(NetcheckResultSchema.parse(r)).toEqual(r)
    expect(r).toMatchObject({
      network: 'lab',
      controller: ctl.url,
      udp: true,
      server: {address: '127.0.0.1', port},
      publicEndpoint: {address: '127.0.0.1'},
      behindNat: false,
      mapping: 'endpoint-independent',
      portPreserved: true,
      direct: 'all',
      relays: [{region: 'home', url: `${ctl.url}/healthz`, reachable: true, error: null}],
    })
    if (twoAddresses) expect(r.filtering).toBe('endpoint-independent')
    expect(r.relays[0]!.latencyMs).toBeGreaterThanOrEqual(0)
    expect(r.relays[0]!.latencyMs).toBeLessThan(3000)
    // Two GETs on one connection: one pays for TCP, the other is one round trip.
    expect(ctl.healthzHits()).toBe(2)
    expect(stun.stats().answered).toBeGreaterThan(0)
  })

  it('reports an unreachable relay and still completes the check', async () => {
    const {port} = await startStun()
    const dead = `http://127.0.0.1:${await closedPort()}`
    const {d} = await daemonWithNat({
      stun: {primary: {host: '127.0.0.1', port}},
      relays: [{region: 'gone', url: dead.replace('http:', 'ws:')}],
    })
    const r = await new DaemonClient({socketPath: d.socketPath}).netcheck({network: 'lab'})
    expect(r.udp).toBe(true)
    expect(r.relays).toEqual([
      // The only relay is the home relay, reachable or not.
      {
        region: 'gone',
        url: `${dead}/healthz`,
        reachable: false,
        latencyMs: null,
        error: 'ECONNREFUSED',
        home: true,
      },
    ])
  })

  it('refuses with NETCHECK_UNAVAILABLE when the netmap names no STUN server', async () => {
    const {d} = await daemonWithNat({stun: null, relays: []})
    expect(await errorCode(new DaemonClient({socketPath: d.socketPath}).netcheck({}))).toBe(
      'NETCHECK_UNAVAILABLE',
    )
  })

  it('refuses with NETWORK_NOT_JOINED with no network joined, or an unknown one named', async () => {
    const dir = tempDir()
    const d = await startFakeDaemon({dir})
    cleanup.push(async () => {
      await d.stop()
      fs.rmSync(dir, {recursive: true, force: true})
    })
    const c = new DaemonClient({socketPath: d.socketPath})
    expect(await errorCode(c.netcheck({}))).toBe('NETWORK_NOT_JOINED')
    expect(await errorCode(c.netcheck({network: 'nope'}))).toBe('NETWORK_NOT_JOINED')
  })
})

describe('NetcheckService', () => {
  const target = (host: string | undefined, port: number) => () => ({
    network: 'lab',
    controller: 'https://ctl.example:8443',
    nat: {stun: {primary: {...(host !== undefined && {host}), port}}},
  })

  it('resolves a STUN host name with the resolver and checks the address it gives', async () => {
    const {port} = await startStun()
    const asked: string[] = []
    const svc = new NetcheckService({
      target: target('stun.example', port),
      lookup: async (h) => (asked.push(h), '127.0.0.1'),
      netcheck: {bindAddress: '127.0.0.1'},
    })
    const r = await svc.run(undefined)
    expect(asked).toEqual(['stun.example'])
    expect(r).toMatchObject({udp: true, server: {address: '127.0.0.1', port}, relays: []})
  })

  it("takes the controller URL's host when the netmap gives none", async () => {
    const asked: string[] = []
    const svc = new NetcheckService({
      target: target(undefined, 3478),
      lookup: async (h) => {
        asked.push(h)
        throw Object.assign(new Error('getaddrinfo ENOTFOUND'), {code: 'ENOTFOUND'})
      },
    })
    const err = await svc.run(undefined).catch((e: unknown) => e)
    expect(asked).toEqual(['ctl.example'])
    expect(err).toMatchObject({code: 'NETCHECK_UNAVAILABLE'})
    expect((err as Error).message).toContain('cannot resolve the STUN server ctl.example: ENOTFOUND')
  })
})
