// `mesh rotate-key` and key expiry as meshd lives them (issue 10): two daemons with the in-memory
// WireGuard driver against a real controller (in-process, real SQLite file, real HTTP and
// WebSocket). The new private key is made and kept on the node; the peer's interface swaps the
// public key; address and peers stay. An expired node keeps its state and comes back once an admin
// extends it.
import fs from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {DaemonClient} from '../cli/lib/daemon-client.js'
import {decodeJoinString} from '../shared/invite.js'
import {publicKeyOf} from './keys.js'
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

describe('meshd key rotation and expiry against a real controller', () => {
  let ctl: TestController
  const daemons: FakeDaemon[] = []
  const dirs: string[] = []
  let a: FakeDaemon
  let b: FakeDaemon
  let bClient: DaemonClient
  let bNode: {id: string; address: string; publicKey: string; networkId: string}

  beforeAll(async () => {
    const ctlDir = tempDir('mesh-ctl-')
    dirs.push(ctlDir)
    ctl = await startTestController({dataDir: ctlDir})
    await api(ctl, 'POST', '/api/v1/networks', {name: 'lab', cidr: '10.66.0.0/24'})
    for (const name of ['alpha', 'bravo']) {
      const d = await startFakeDaemon()
      daemons.push(d)
      dirs.push(d.dir)
      const r = await api<{joinString: string}>(ctl, 'POST', '/api/v1/networks/lab/invites', {maxUses: 1})
      const inv = decodeJoinString(r.joinString)!
      const joined = await new DaemonClient({socketPath: d.socketPath}).join({
        controller: inv.controller,
        invite: inv.code,
        name,
      })
      if (name === 'bravo')
        bNode = {
          id: joined.nodeId,
          address: joined.address,
          publicKey: joined.publicKey,
          networkId: joined.id,
        }
    }
    ;[a, b] = daemons as [FakeDaemon, FakeDaemon]
    bClient = new DaemonClient({socketPath: b.socketPath})
    await waitFor('alpha has bravo', () =>
      a.fake.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === bNode.publicKey),
    )
  })
  afterAll(async () => {
    for (const d of daemons) await d.stop().catch(() => {})
    await ctl?.close()
    for (const dir of dirs) fs.rmSync(dir, {recursive: true, force: true})
  })

  it('rotates the key: new private key on disk (0600), the interface and the peer swap the public key, address kept', async () => {
    const res = await bClient.rotateKey({network: 'lab'})
    expect(res.rotated).toHaveLength(1)
    const r = res.rotated[0]!
    expect(r).toMatchObject({network: 'lab', previousPublicKey: bNode.publicKey})
    expect(r.publicKey).not.toBe(bNode.publicKey)
    expect(r.keyExpiresAt).not.toBeNull()
    // The private key lives here only: on disk 0600, matching the public key the controller has.
    const keyFile = `${b.stateDir}/networks/${bNode.networkId}/private.key`
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600)
    expect(publicKeyOf(fs.readFileSync(keyFile, 'utf8').trim())).toBe(r.publicKey)
    expect(b.fake.interfaces.get('tmesh0')!.publicKey).toBe(r.publicKey)
    const atController = await api<{publicKey: string; address: string}>(
      ctl,
      'GET',
      `/api/v1/nodes/${bNode.id}`,
    )
    expect(atController).toMatchObject({publicKey: r.publicKey, address: bNode.address})
    // The peer swaps the key by a delta: same address, new key, old one gone.
    const peer = await waitFor('alpha has bravo under its new key', () =>
      a.fake.interfaces.get('tmesh0')?.peers.find((p) => p.publicKey === r.publicKey),
    )
    expect(peer.allowedIps).toEqual([`${bNode.address}/32`])
    expect(a.fake.interfaces.get('tmesh0')!.peers.some((p) => p.publicKey === bNode.publicKey)).toBe(false)
    const st = (await bClient.status()).networks[0]!
    expect(st).toMatchObject({publicKey: r.publicKey, address: bNode.address})
    expect(st.peers.map((p) => p.name)).toEqual(['alpha'])
    bNode = {...bNode, publicKey: r.publicKey}
  })

  it('keeps an expired node and its state, says why in status, and lets it back in once extended', async () => {
    await api(ctl, 'POST', `/api/v1/nodes/${bNode.id}/expire`)
    await waitFor('alpha drops bravo', () =>
      a.fake.interfaces.get('tmesh0')?.peers.every((p) => p.publicKey !== bNode.publicKey),
    )
    const st = await waitFor('bravo says its key expired', async () => {
      const n = (await bClient.status()).networks[0]
      return n?.lastError?.includes('NODE_KEY_EXPIRED') ? n : undefined
    })
    expect(st).toMatchObject({name: 'lab', connected: false})
    await expect(bClient.rotateKey({network: 'lab'})).rejects.toMatchObject({code: 'NODE_KEY_EXPIRED'})
    await api(ctl, 'POST', `/api/v1/nodes/${bNode.id}/extend`, {by: 30 * 86_400})
    await waitFor('bravo reconnected', async () => (await bClient.status()).networks[0]?.connected, 10_000)
    await waitFor('alpha has bravo again', () =>
      a.fake.interfaces.get('tmesh0')?.peers.some((p) => p.publicKey === bNode.publicKey),
    )
  })
})
