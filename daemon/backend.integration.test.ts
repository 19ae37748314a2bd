// meshd with the in-memory WireGuard driver against a real controller (in-process, real SQLite
// file, real HTTP and WebSocket): join, netmap applied as a diff, revocation, restart from the
// cached netmap while the controller is down, and resume when it returns.
import fs from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {DaemonClient} from '../cli/lib/daemon-client.js'
import {decodeJoinString} from '../shared/invite.js'
import {cidrContains, parseCidr, parseIPv4} from '../shared/net/ipv4.js'
import {FakeDriver} from './testing/fake-driver.js'
import {startFakeDaemon, tempDir, waitFor, type FakeDaemon} from './testing/harness.js'

async function api<T>(ctl: TestController, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${ctl.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ctl.adminToken}`,
      ...(body !== undefined && {'content-type': 'application/json'}),
    },
    ...(body !== undefined && {body: JSON.stringify(body)}),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return JSON.parse(text) as T
}

async function invite(ctl: TestController, network: string): Promise<{controller: string; code: string}> {
  const r = await api<{joinString: string}>(ctl, 'POST', `/api/v1/networks/${network}/invites`, {maxUses: 1})
  return decodeJoinString(r.joinString)!
}

describe('meshd against a real controller', () => {
  let ctl: TestController
  const daemons: FakeDaemon[] = []
  const dirs: string[] = []
  const start = async (opts: Parameters<typeof startFakeDaemon>[0] = {}) => {
    const d = await startFakeDaemon(opts)
    daemons.push(d)
    if (!dirs.includes(d.dir)) dirs.push(d.dir)
    return d
  }

  const ctlDir = tempDir('mesh-ctl-')
  beforeAll(async () => {
    dirs.push(ctlDir)
    ctl = await startTestController({dataDir: ctlDir})
    await api(ctl, 'POST', '/api/v1/networks', {name: 'lab', cidr: '10.77.0.0/24'})
    await api(ctl, 'POST', '/api/v1/networks', {name: 'other', cidr: '10.88.0.0/24'})
  })
  afterAll(async () => {
    for (const d of daemons) await d.stop().catch(() => {})
    await ctl?.close()
    for (const dir of dirs) fs.rmSync(dir, {recursive: true, force: true})
  })

  let a: FakeDaemon
  let b: FakeDaemon
  let aClient: DaemonClient
  let bClient: DaemonClient

  it('joins with an invite: the interface gets an address of the network CIDR and the state is on disk', async () => {
    a = await start()
    aClient = new DaemonClient({socketPath: a.socketPath})
    const inv = await invite(ctl, 'lab')
    const res = await aClient.join({controller: inv.controller, invite: inv.code, name: 'alpha'})
    expect(res).toMatchObject({
      name: 'lab',
      nodeName: 'alpha',
      interface: 'tmesh0',
      up: true,
      nodeStatus: 'active',
    })
    expect(cidrContains(parseCidr('10.77.0.0/24')!, parseIPv4(res.address)!)).toBe(true)
    const iface = a.fake.interfaces.get('tmesh0')!
    expect(iface.addresses).toEqual([`${res.address}/24`])
    expect(iface.publicKey).toBe(res.publicKey)
    expect(iface.listenPort).toBe(res.listenPort)
    expect(iface.mtu).toBe(1420)
    // The private key is on disk 0600 and is not the public key the controller knows.
    const keyFile = `${a.stateDir}/networks/${res.id}/private.key`
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600)
    expect(fs.statSync(`${a.stateDir}/networks/${res.id}/credential`).mode & 0o777).toBe(0o600)
    expect(fs.statSync(a.stateDir).mode & 0o777).toBe(0o700)
    await waitFor('a connected', async () => (await aClient.status()).networks[0]?.connected)
  })

  it('applies a new peer from the netmap within a second, touching only that peer', async () => {
    b = await start()
    bClient = new DaemonClient({socketPath: b.socketPath})
    const inv = await invite(ctl, 'lab')
    const callsBefore = a.fake.calls.length
    const t0 = Date.now()
    const bRes = await bClient.join({controller: inv.controller, invite: inv.code, name: 'bravo'})
    const peer = await waitFor('bravo on alpha', () =>
      a.fake.interfaces.get('tmesh0')?.peers.find((p) => p.publicKey === bRes.publicKey),
    )
    expect(Date.now() - t0).toBeLessThan(3000)
    expect(peer.allowedIps).toEqual([`${bRes.address}/32`])
    expect(peer.persistentKeepalive).toBe(25)
    const applies = a.fake.calls.slice(callsBefore).filter((c) => c.op === 'apply')
    expect(applies[0]).toEqual({
      op: 'apply',
      name: 'tmesh0',
      added: [bRes.publicKey],
      updated: [],
      removed: [],
    })
    // Then at most the move of that peer to its relay endpoint once the relay socket is open.
    for (const c of applies.slice(1))
      expect(c).toMatchObject({
        added: [],
        updated: [bRes.publicKey],
        removed: [],
        endpoints: {[bRes.publicKey]: expect.stringMatching(/^127\.0\.0\.1:\d+$/)},
      })
    // bravo got alpha in its full map.
    const bStatus = (await bClient.status()).networks[0]!
    expect(bStatus.peers.map((p) => p.name)).toEqual(['alpha'])
    expect(bStatus.peers[0]!.online).toBe(false)
  })

  it('reports endpoints and peer stats so the controller shows the node online', async () => {
    const nodes = await waitFor('alpha online at the controller', async () => {
      const r = await api<{items: {name: string; online: boolean}[]}>(
        ctl,
        'GET',
        '/api/v1/networks/lab/nodes',
      )
      return r.items.find((n) => n.name === 'alpha')?.online ? r.items : undefined
    })
    expect(nodes.map((n) => n.name).sort()).toEqual(['alpha', 'bravo'])
  })

  it('keeps networks apart: a second network gets its own interface, key and port', async () => {
    const inv = await invite(ctl, 'other')
    const res = await aClient.join({controller: inv.controller, invite: inv.code, name: 'alpha'})
    const st = await aClient.status()
    const lab = st.networks.find((n) => n.name === 'lab')!
    expect(res.interface).toBe('tmesh1')
    expect(res.publicKey).not.toBe(lab.publicKey)
    expect(res.listenPort).not.toBe(lab.listenPort)
    // No mesh peers there: only the controller's discovery key, which routes nothing.
    expect(a.fake.interfaces.get('tmesh1')!.peers.filter((p) => p.allowedIps.length > 0)).toEqual([])
    const ip = await aClient.ip()
    expect(ip.addresses.map((x) => x.network).sort()).toEqual(['lab', 'other'])
  })

  it('refuses to join a network twice and removes the node it registered meanwhile', async () => {
    const names = async () =>
      (await api<{items: {name: string}[]}>(ctl, 'GET', '/api/v1/networks/other/nodes')).items.map(
        (n) => n.name,
      )
    const before = await names()
    const inv = await invite(ctl, 'other')
    const err = await aClient
      .join({controller: inv.controller, invite: inv.code, name: 'alpha2'})
      .catch((e) => e)
    expect(err.code).toBe('ALREADY_JOINED')
    expect(await names()).toEqual(before)
    expect(before).not.toContain('alpha2')
  })

  it('passes controller errors through with their code (a used invite)', async () => {
    const inv = await invite(ctl, 'lab')
    const c = new DaemonClient({socketPath: (await start()).socketPath})
    await c.join({controller: inv.controller, invite: inv.code, name: 'charlie'})
    const err = await c.join({controller: inv.controller, invite: inv.code, name: 'charlie2'}).catch((e) => e)
    expect(['INVITE_USED_UP', 'ALREADY_JOINED']).toContain(err.code)
  })

  it('joins unattended with an auth key', async () => {
    const key = await api<{key: string}>(ctl, 'POST', '/api/v1/networks/lab/authkeys', {reusable: true})
    const f = await start()
    const res = await new DaemonClient({socketPath: f.socketPath}).join({
      controller: ctl.url,
      authKey: key.key,
      name: 'foxtrot',
    })
    expect(res).toMatchObject({name: 'lab', nodeName: 'foxtrot', nodeStatus: 'active'})
    await waitFor('foxtrot on alpha', () =>
      a.fake.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === res.publicKey),
    )
  })

  it('rebuilds an interface that vanished behind its back (wireguard-go died)', async () => {
    const peers = a.fake.interfaces.get('tmesh0')!.peers.length
    a.fake.crash('tmesh0')
    const iface = await waitFor('tmesh0 rebuilt', () => a.fake.interfaces.get('tmesh0'))
    expect(iface.peers.length).toBe(peers)
  })

  it('down removes the interface and keeps the network; up brings it back with its peers', async () => {
    expect(await aClient.down({network: 'other'})).toEqual({changed: ['other']})
    expect(a.fake.interfaces.has('tmesh1')).toBe(false)
    expect(await aClient.down({network: 'other'})).toEqual({changed: []})
    expect((await aClient.status()).networks.find((n) => n.name === 'other')).toMatchObject({
      up: false,
      connected: false,
    })
    expect(await aClient.up({network: 'other'})).toEqual({changed: ['other']})
    expect(a.fake.interfaces.has('tmesh1')).toBe(true)
  })

  it('leave forgets the network: interface, keys and cache are gone', async () => {
    const st = await aClient.status()
    const other = st.networks.find((n) => n.name === 'other')!
    expect(await aClient.leave({network: 'other'})).toEqual({
      left: 'other',
      interface: 'tmesh1',
      deregistered: true,
    })
    expect(a.fake.interfaces.has('tmesh1')).toBe(false)
    const gone = await fetch(`${ctl.url}/api/v1/nodes/${other.nodeId}`, {
      headers: {authorization: `Bearer ${ctl.adminToken}`},
    })
    expect(gone.status).toBe(404)
    expect(fs.existsSync(`${a.stateDir}/networks/${other.id}`)).toBe(false)
    expect((await aClient.status()).networks.map((n) => n.name)).toEqual(['lab'])
  })

  it("leave removes the node at the controller: it is gone from the node list and from peers' interfaces", async () => {
    const g = await start()
    const gClient = new DaemonClient({socketPath: g.socketPath})
    const inv = await invite(ctl, 'lab')
    const res = await gClient.join({controller: inv.controller, invite: inv.code, name: 'golf'})
    await waitFor('golf on alpha', () =>
      a.fake.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === res.publicKey),
    )
    expect(await gClient.leave({network: 'lab'})).toMatchObject({left: 'lab', deregistered: true})
    await waitFor('golf gone from alpha', () =>
      a.fake.interfaces.get('tmesh0')!.peers.every((p) => p.publicKey !== res.publicKey),
    )
    const listed = await api<{items: {id: string}[]}>(ctl, 'GET', '/api/v1/networks/lab/nodes?limit=500')
    expect(listed.items.map((n) => n.id)).not.toContain(res.nodeId)
    expect(g.fake.interfaces.size).toBe(0)
    const audit = await api<{items: {action: string; actor: string}[]}>(
      ctl,
      'GET',
      `/api/v1/audit?actor=node:${res.nodeId}`,
    )
    expect(audit.items.map((e) => e.action)).toContain('node.leave')
  })

  it('a node removed at the controller is revoked: its daemon tears the interface down, peers drop it', async () => {
    const c = await start()
    const cClient = new DaemonClient({socketPath: c.socketPath})
    const inv = await invite(ctl, 'lab')
    const res = await cClient.join({controller: inv.controller, invite: inv.code, name: 'delta'})
    await waitFor('delta on alpha', () =>
      a.fake.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === res.publicKey),
    )
    await api(ctl, 'DELETE', `/api/v1/nodes/${res.nodeId}`)
    await waitFor('delta gone from alpha', () =>
      a.fake.interfaces.get('tmesh0')!.peers.every((p) => p.publicKey !== res.publicKey),
    )
    await waitFor('delta forgot the network', async () => (await cClient.status()).networks.length === 0)
    expect(c.fake.interfaces.size).toBe(0)
    expect(fs.readdirSync(`${c.stateDir}/networks`)).toEqual([])
  })

  it('restarts from the cached netmap while the controller is down, then resumes when it returns', async () => {
    const before = (await aClient.status()).networks[0]!
    const peersBefore = a.fake.interfaces
      .get('tmesh0')!
      .peers.map((p) => p.publicKey)
      .sort()
    expect(peersBefore.length).toBeGreaterThan(0)
    const port = new URL(ctl.url).port
    await a.stop()
    await ctl.close()
    // A reboot: the interfaces are gone, and the daemon starts with the controller unreachable.
    const fresh = new FakeDriver()
    a = await start({dir: a.dir, driver: fresh})
    aClient = new DaemonClient({socketPath: a.socketPath})
    const iface = fresh.interfaces.get('tmesh0')!
    expect(iface.peers.map((p) => p.publicKey).sort()).toEqual(peersBefore)
    expect(iface.addresses).toEqual([`${before.address}/24`])
    const st = (await aClient.status()).networks[0]!
    expect(st).toMatchObject({connected: false, netmapVersion: before.netmapVersion, address: before.address})
    expect(st.lastError).toMatch(/controller/)

    // The controller returns on the same address: the daemon reconnects by itself (backoff capped
    // at 500 ms in tests) and receives what changed while it was away.
    ctl = await startTestController({dataDir: ctlDir, listen: `127.0.0.1:${port}`})
    await waitFor('alpha reconnected', async () => (await aClient.status()).networks[0]?.connected, 10_000)
    const e = await start()
    const inv = await invite(ctl, 'lab')
    const eRes = await new DaemonClient({socketPath: e.socketPath}).join({
      controller: inv.controller,
      invite: inv.code,
      name: 'echo',
    })
    await waitFor('echo on alpha', () =>
      fresh.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === eRes.publicKey),
    )
  })
})

describe('meshd leaving while the controller is down', () => {
  it('still leaves locally and answers deregistered: false with a warning', async () => {
    const dir = tempDir('mesh-ctl-')
    const ctl = await startTestController({dataDir: dir})
    const d = await startFakeDaemon()
    try {
      await api(ctl, 'POST', '/api/v1/networks', {name: 'gone', cidr: '10.79.0.0/24'})
      const inv = await invite(ctl, 'gone')
      const client = new DaemonClient({socketPath: d.socketPath})
      const res = await client.join({controller: inv.controller, invite: inv.code, name: 'hotel'})
      await ctl.close()
      const left = await client.leave({network: 'gone'})
      expect(left).toMatchObject({left: 'gone', interface: res.interface, deregistered: false})
      expect(left.warning).toMatch(/controller was not told.*stays listed/)
      expect(d.fake.interfaces.size).toBe(0)
      expect((await client.status()).networks).toEqual([])
      expect(fs.readdirSync(`${d.stateDir}/networks`)).toEqual([])
    } finally {
      await d.stop()
      await ctl.close()
      fs.rmSync(dir, {recursive: true, force: true})
      fs.rmSync(d.dir, {recursive: true, force: true})
    }
  })
})
