// meshd puts the netmap's inbound rules into nftables before WireGuard gets the peers, re-applies
// them when a delta changes a peer's `inbound`, fails closed when nft fails (peers with rules are
// withheld from WireGuard, the others stay, status says why), and removes the table with the
// interface. The in-memory driver, a recording nft (nothing runs on this machine), state in a temp
// dir and a stand-in controller on a real WebSocket.
import fs from 'node:fs'
import {afterAll, describe, expect, it} from 'vitest'
import type {WebSocket} from 'ws'
import {FakeDriver} from '../testing/fake-driver.js'
import {
  netmapPeer,
  seedNetwork,
  standInController,
  startFakeDaemon,
  tempDir,
  waitFor,
} from '../testing/harness.js'
import {Firewall, type NftResult} from './firewall.js'

const peer = netmapPeer

describe('inbound rules from the netmap', () => {
  const dir = tempDir()
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('applies them before WireGuard, follows deltas, fails closed while nft fails, and removes them on down', async () => {
    const {wss, port} = await standInController()
    const {keys: me} = seedNetwork(dir, {controller: `http://127.0.0.1:${port}`})
    const open = peer('open')
    const web = peer('web', {inbound: [{proto: 'tcp', ports: [[8080, 8080]]}]})
    let client: WebSocket | undefined
    wss.on('connection', (ws) => {
      client = ws
      ws.send(
        JSON.stringify({
          type: 'full',
          version: 1,
          network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
          self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'},
          peers: [open, web],
        }),
      )
    })
    /** What nft got, with the WireGuard peers the fake driver held at that moment. */
    const calls: {script: string; wgPeers: string[]}[] = []
    let answer: NftResult = {exitCode: 0, stderr: ''}
    const fake = new FakeDriver()
    const wgPeers = (): string[] =>
      (fake.interfaces.get('tmesh0')?.peers ?? []).map((p) => p.publicKey).sort()
    const firewall = new Firewall({
      run: (_args, {input}) => {
        calls.push({script: input, wgPeers: wgPeers()})
        return Promise.resolve(answer)
      },
    })
    const d = await startFakeDaemon({dir, driver: fake, firewall, retryDelayMs: () => 20})
    const net = async () => (await d.backend.status()).networks[0]!
    try {
      await waitFor('the full map applied', async () => (await net()).netmapVersion === 1)
      const withTable = calls.filter((c) => c.script.includes('chain from_mesh'))
      expect(withTable).toHaveLength(1)
      expect(withTable[0]!.script).toContain(`${open.address},`) // allow_all
      expect(withTable[0]!.script).toContain(`${web.address} . 8080,`)
      // The rules were in before the restricted peer was on WireGuard.
      expect(withTable[0]!.wgPeers).not.toContain(web.publicKey)
      expect(wgPeers()).toEqual([open.publicKey, web.publicKey].sort())

      // A delta that changes only the rules re-applies them; the same rules again run nothing.
      const before = calls.length
      client!.send(
        JSON.stringify({type: 'delta', version: 2, changed: [{...web, inbound: [{proto: 'all'}]}]}),
      )
      await waitFor('the delta applied', async () => (await net()).netmapVersion === 2)
      expect(calls).toHaveLength(before + 1)
      expect(calls.at(-1)!.script).not.toContain(' . 8080')
      client!.send(
        JSON.stringify({type: 'delta', version: 3, changed: [{...web, inbound: [{proto: 'all'}]}]}),
      )
      await waitFor('the same rules again', async () => (await net()).netmapVersion === 3)
      expect(calls).toHaveLength(before + 1)

      // nft fails: the peer with rules leaves WireGuard, the other stays; status says why.
      answer = {exitCode: 1, stderr: 'Error: Could not process rule: Operation not permitted'}
      client!.send(
        JSON.stringify({type: 'delta', version: 4, changed: [{...web, inbound: [{proto: 'icmp'}]}]}),
      )
      await waitFor('the peer with rules withheld', () => wgPeers().length === 1 && wgPeers())
      expect(wgPeers()).toEqual([open.publicKey])
      const failed = await net()
      expect(failed.lastError).toContain(
        'firewall: nft: Error: Could not process rule: Operation not permitted',
      )
      expect(failed.lastError).toContain('1 peer(s) with inbound rules withheld')
      expect(failed.peers.map((p) => p.id)).toEqual(['open'])

      // nft works again: the retry puts the rules in, then the peer back.
      answer = {exitCode: 0, stderr: ''}
      await waitFor('the peer back', () => wgPeers().length === 2)
      expect((await net()).lastError).toBeNull()
      expect(calls.at(-1)!.script).toContain('elements = {\n\t\t\t10.9.0.4,\n\t\t}\n\t}\n\tchain') // icmp_in

      // A policy removed removes the table.
      client!.send(JSON.stringify({type: 'delta', version: 5, changed: [{...web, inbound: undefined}]}))
      await waitFor('the policy gone', async () => (await net()).netmapVersion === 5)
      expect(calls.at(-1)!.script).toBe('table inet mesh_tmesh0\ndelete table inet mesh_tmesh0\n')

      // Down with a policy: the table goes with the interface.
      client!.send(JSON.stringify({type: 'delta', version: 6, changed: [{...web, inbound: []}]}))
      await waitFor('the policy back', async () => (await net()).netmapVersion === 6)
      expect(calls.at(-1)!.script).toContain('chain from_mesh')
      await d.backend.down(undefined)
      expect(calls.at(-1)!.script).toBe('table inet mesh_tmesh0\ndelete table inet mesh_tmesh0\n')
      expect(fake.interfaces.has('tmesh0')).toBe(false)
    } finally {
      await d.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
    }
  })

  it('with a policy and no nft keeps the peers without rules and withholds the others', async () => {
    const dir2 = tempDir()
    const {wss, port} = await standInController()
    const {keys: me} = seedNetwork(dir2, {controller: `http://127.0.0.1:${port}`})
    const open = peer('open')
    const shut = peer('shut', {inbound: []})
    wss.on('connection', (ws) =>
      ws.send(
        JSON.stringify({
          type: 'full',
          version: 1,
          network: {id: 'net1', name: 'lab', cidr: '10.9.0.0/24'},
          self: {id: 'n1', name: 'alpha', publicKey: me.publicKey, address: '10.9.0.2', status: 'active'},
          peers: [open, shut],
        }),
      ),
    )
    // No firewall option: a fake driver gets the nft-is-missing firewall (see daemon/main.ts).
    const d = await startFakeDaemon({dir: dir2, retryDelayMs: () => 60_000})
    try {
      await waitFor(
        'the full map applied',
        async () => (await d.backend.status()).networks[0]?.netmapVersion === 1,
      )
      expect((d.fake.interfaces.get('tmesh0')?.peers ?? []).map((p) => p.publicKey)).toEqual([open.publicKey])
      expect((await d.backend.status()).networks[0]!.lastError).toBe(
        'firewall: nftables (the nft command) is not installed; 1 peer(s) with inbound rules withheld from WireGuard until it works',
      )
    } finally {
      await d.stop()
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
      fs.rmSync(dir2, {recursive: true, force: true})
    }
  })
})
