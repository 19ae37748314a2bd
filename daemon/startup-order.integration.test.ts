// The start-up of a join and an up overlaps what does not depend on each other (issue 7): WireGuard
// starts (driver.create) while the node registers and while the netmap session opens; the first
// apply waits for it. Checked with the in-memory driver, whose create() a test holds back or
// fails, against a real controller (in-process, real SQLite, HTTP and WebSocket): the order, and
// that every failure leaves no interface behind.
import fs from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {DaemonClient} from '../cli/lib/daemon-client.js'
import {decodeJoinString} from '../shared/invite.js'
import {StateStore} from './state-store.js'
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

/** A create() that waits until the test lets it go on (or fail). */
function heldCreate(driver: FakeDriver): {entered: Promise<string>; release: (err?: Error) => void} {
  let entered!: (name: string) => void
  let release!: (err?: Error) => void
  const enteredP = new Promise<string>((r) => (entered = r))
  const gate = new Promise<void>((resolve, reject) => (release = (err) => (err ? reject(err) : resolve())))
  driver.onCreate = async (name) => {
    driver.onCreate = undefined
    entered(name)
    await gate
  }
  return {entered: enteredP, release}
}

describe('start-up order of join and up', () => {
  let ctl: TestController
  const daemons: FakeDaemon[] = []
  const dirs: string[] = []
  const start = async (driver = new FakeDriver()): Promise<FakeDaemon & {client: DaemonClient}> => {
    const d = await startFakeDaemon({driver})
    daemons.push(d)
    dirs.push(d.dir)
    return Object.assign(d, {client: new DaemonClient({socketPath: d.socketPath})})
  }
  const ctlDir = tempDir('mesh-ctl-')
  let first: FakeDaemon & {client: DaemonClient}
  let firstKey: string

  beforeAll(async () => {
    dirs.push(ctlDir)
    ctl = await startTestController({dataDir: ctlDir})
    await api(ctl, 'POST', '/api/v1/networks', {name: 'lab', cidr: '10.66.0.0/24'})
    first = await start()
    const inv = await invite(ctl, 'lab')
    firstKey = (await first.client.join({controller: inv.controller, invite: inv.code, name: 'first'}))
      .publicKey
  })
  afterAll(async () => {
    for (const d of daemons) await d.stop().catch(() => {})
    await ctl?.close()
    for (const dir of dirs) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('receives the netmap while WireGuard is still starting, and puts its peers on in the first apply', async () => {
    const driver = new FakeDriver()
    const d = await start(driver)
    const held = heldCreate(driver)
    const inv = await invite(ctl, 'lab')
    const joining = d.client.join({controller: inv.controller, invite: inv.code, name: 'second'})
    expect(await held.entered).toBe('tmesh0')
    // Registered and the netmap in, while the interface does not exist yet.
    const net = await waitFor('the netmap', async () => {
      const n = (await d.backend.status()).networks[0]
      return n?.netmapVersion != null && n
    })
    expect(net.peers.map((p) => p.publicKey)).toContain(firstKey)
    expect(driver.interfaces.has('tmesh0')).toBe(false)
    expect(driver.calls).toEqual([])
    held.release()
    const res = await joining
    expect(res.peers.map((p) => p.publicKey)).toContain(firstKey)
    // One create and one apply that brings the interface up with the peer already on it.
    const ops = driver.calls.filter((c) => c.op === 'create' || c.op === 'apply')
    expect(ops[0]).toEqual({op: 'create', name: 'tmesh0'})
    expect(ops[1]).toMatchObject({op: 'apply', name: 'tmesh0'})
    expect(ops[1]!.added).toContain(firstKey)
    const iface = driver.interfaces.get('tmesh0')!
    expect(iface.up).toBe(true)
    expect(iface.publicKey).toBe(res.publicKey)
  })

  it('removes the interface it started when the registration fails (a used invite)', async () => {
    const driver = new FakeDriver()
    const d = await start(driver)
    const inv = await invite(ctl, 'lab')
    await d.client.join({controller: inv.controller, invite: inv.code, name: 'third'})
    const held = heldCreate(driver)
    const joining = d.client.join({controller: inv.controller, invite: inv.code, name: 'third-again'})
    const refusal = joining.then(
      () => undefined,
      (e: {code?: string}) => e,
    )
    // The second join's interface, held past the refusal.
    expect(await held.entered).toBe('tmesh1')
    held.release()
    expect((await refusal)?.code).toBe('INVITE_USED_UP')
    expect([...driver.interfaces.keys()]).toEqual(['tmesh0'])
    expect(driver.calls.filter((c) => c.name === 'tmesh1').map((c) => c.op)).toEqual(['create', 'remove'])
    expect((await d.client.status()).networks.map((n) => n.interface)).toEqual(['tmesh0'])
    expect(new StateStore(d.stateDir).ownedInterfaces()).toEqual(['tmesh0'])
  })

  it('removes the interface it started when the controller refuses the invite while WireGuard starts', async () => {
    const driver = new FakeDriver()
    const d = await start(driver)
    const held = heldCreate(driver)
    const joining = d.client.join({controller: ctl.url, invite: 'not-an-invite-code', name: 'fourth'})
    const refusal = joining.then(
      () => undefined,
      (e: unknown) => e,
    )
    // The controller refuses the invite while create() is still held.
    expect(await held.entered).toBe('tmesh0')
    held.release()
    expect(await refusal).toBeInstanceOf(Error)
    expect(driver.interfaces.size).toBe(0)
    expect(driver.calls.map((c) => c.op)).toEqual(['create', 'remove'])
    expect((await d.client.status()).networks).toEqual([])
    // Owned while it was being made (a crash then leaves it to the next start), no longer now.
    expect(new StateStore(d.stateDir).ownedInterfaces()).toEqual([])
  })

  it('removes the interface of a second join of the same network', async () => {
    const inv = await invite(ctl, 'lab')
    const err = await first.client
      .join({controller: inv.controller, invite: inv.code, name: 'first-again'})
      .catch((e: unknown) => e)
    expect((err as {code?: string}).code).toBe('ALREADY_JOINED')
    expect([...first.fake.interfaces.keys()]).toEqual(['tmesh0'])
    const made = first.fake.calls.filter((c) => c.name === 'tmesh1').map((c) => c.op)
    expect(made).toEqual(['create', 'remove'])
  })

  it('still joins when WireGuard does not start ahead: the first apply creates it', async () => {
    const driver = new FakeDriver()
    const d = await start(driver)
    const held = heldCreate(driver)
    const inv = await invite(ctl, 'lab')
    const joining = d.client.join({controller: inv.controller, invite: inv.code, name: 'fifth'})
    await held.entered
    held.release(new Error('wireguard-go did not bring up tmesh0'))
    const res = await joining
    expect(res.up).toBe(true)
    const iface = await waitFor('tmesh0 configured', () => driver.interfaces.get('tmesh0'))
    expect(iface.publicKey).toBe(res.publicKey)
    await waitFor('the first node on it', () =>
      driver.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === firstKey),
    )
  })

  it('up starts WireGuard while its netmap session opens; a down meanwhile removes it once made', async () => {
    const driver = new FakeDriver()
    const d = await start(driver)
    const inv = await invite(ctl, 'lab')
    await d.client.join({controller: inv.controller, invite: inv.code, name: 'sixth'})
    await d.client.down({network: 'lab'})
    expect(driver.interfaces.has('tmesh0')).toBe(false)

    // up, held in create(): a down meanwhile waits for it and removes what it made.
    const held = heldCreate(driver)
    const up = d.backend.up('lab')
    expect(await held.entered).toBe('tmesh0')
    const down = d.backend.down('lab')
    held.release()
    expect(await up).toEqual({changed: ['lab']})
    expect(await down).toEqual({changed: ['lab']})
    expect(driver.interfaces.has('tmesh0')).toBe(false)

    // up again, undisturbed: the interface comes back with its peers.
    expect(await d.client.up({network: 'lab'})).toEqual({changed: ['lab']})
    await waitFor('the first node back on tmesh0', () =>
      driver.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === firstKey),
    )
  })
})
