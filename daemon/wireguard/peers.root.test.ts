// The userspace driver against real wireguard-go in a network namespace of this run, checked with
// `wg show` (which reads wireguard-go through its own UAPI code):
// - one peer that WireGuard refuses must not freeze the interface: a peer whose endpoint cannot
//   be taken (999.999.999.999:1, handed to the driver past every validation, as a peer from an
//   old controller or cache could be) is reported as failed, while a peer added later appears in
//   `wg show` and a removed peer disappears;
// - a read over UAPI equals what `ip` + `wg show dump` (the kernel driver's read) report;
// - setPeers, removals, a new private key and listen port set over UAPI take effect;
// - a path-check read, and an apply that changes nothing, spawn nothing once the link is known;
// - a never-handshaken peer removed and added in one transaction initiates again at once (the
//   poke of daemon/backend.ts), where WireGuard itself would wait 5 s.
// Needs root, ip, wg and wireguard-go; skips otherwise.
//
// The namespace has only its loopback: no packet leaves it (the bogus name fails to resolve at
// once, the good peers' endpoints are unroutable there; the poke's peer sends to a socket of this
// test on the namespace's 127.0.0.1).
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {generateKeyPair} from '../keys.js'
import type {InterfaceConfig, InterfaceState, PeerConfig} from './driver.js'
import {KernelDriver} from './kernel.js'
import {UapiClient} from './uapi.js'
import {UserspaceDriver} from './userspace.js'
import {execaRunner, parseDump, type CommandRunner} from './wg-tools.js'

const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const canRun =
  process.getuid?.() === 0 &&
  has('ip', ['-V']) &&
  has('wg', ['--version']) &&
  has('wireguard-go', ['--version'])

const P = `wp${randomBytes(2).toString('hex')}`
const NS = `${P}-ns`
const IFACE = `${P}wg0`

function sh(args: string[]): string {
  const r = spawnSync('ip', args, {encoding: 'utf8', timeout: 20_000})
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr || r.error}`)
  return r.stdout
}

/** Pids of the wireguard-go processes of this run (argv names our interface). */
function ourWireguardGo(): number[] {
  const pids: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')
      if (argv.some((a) => a.endsWith('wireguard-go')) && argv.includes(IFACE)) pids.push(Number(d))
    } catch {
      // gone
    }
  }
  return pids
}

describe.skipIf(!canRun)('the userspace driver (real wireguard-go)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-wgpeers-'))
  /** Every command the drivers spawned, in order (the tool's name). */
  const spawned: string[] = []
  /** ip and wg run inside the namespace. */
  const runner: CommandRunner = (cmd, args, opts) => {
    spawned.push(cmd)
    return execaRunner('ip', ['netns', 'exec', NS, cmd, ...args], opts)
  }
  let driver: UserspaceDriver

  beforeAll(() => {
    sh(['netns', 'add', NS])
    sh(['-n', NS, 'link', 'set', 'lo', 'up'])
    // wireguard-go itself is started in the namespace through this wrapper.
    const binary = path.join(dir, 'wireguard-go-in-ns')
    fs.writeFileSync(binary, `#!/bin/sh\nexec ip netns exec ${NS} wireguard-go "$@"\n`, {mode: 0o755})
    driver = new UserspaceDriver({logDir: path.join(dir, 'log'), binary, pollMs: 60_000, runner})
  })

  afterAll(async () => {
    await driver?.remove(IFACE).catch(() => {})
    await driver?.close()
    for (const pid of ourWireguardGo()) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // already gone
      }
    }
    spawnSync('ip', ['netns', 'del', NS], {stdio: 'ignore'})
    fs.rmSync(`/var/run/wireguard/${IFACE}.sock`, {force: true})
    fs.rmSync(dir, {recursive: true, force: true})
  })

  const peer = (n: number, endpoint = `203.0.113.${n}:51820`): PeerConfig => ({
    publicKey: generateKeyPair().publicKey,
    allowedIps: [`10.77.0.${n}/32`],
    endpoint,
    persistentKeepalive: 0,
  })
  const config = (...peers: PeerConfig[]): InterfaceConfig => ({
    name: IFACE,
    privateKey: generateKeyPair().privateKey,
    listenPort: 51820, // the namespace is this run's own: the port is free
    address: '10.77.0.1/24',
    mtu: 1420,
    peers,
  })
  /** `wg show IF peers` in the namespace, sorted. */
  const wgPeers = (): string[] =>
    sh(['netns', 'exec', NS, 'wg', 'show', IFACE, 'peers']).split('\n').filter(Boolean).sort()

  it('adds a later peer and removes a removed one while another peer keeps failing', async () => {
    const a = peer(2)
    const bad = peer(3, '999.999.999.999:1')
    const c = peer(4)
    const base = config(a, bad)
    const first = await driver.apply(base)
    expect(first.created).toBe(true)
    expect(first.failed?.map((f) => f.publicKey)).toEqual([bad.publicKey])
    expect(first.failed?.[0]?.error).toContain('999.999.999.999:1')
    expect(wgPeers()).toEqual([a.publicKey].sort())

    // A peer added later appears although the bad one is still wanted and still failing.
    const added = await driver.apply({...base, peers: [a, bad, c]})
    expect(added.failed?.map((f) => f.publicKey)).toEqual([bad.publicKey])
    expect(wgPeers()).toEqual([a.publicKey, c.publicKey].sort())

    // A removed peer disappears (removals go first, in a call of their own).
    const removed = await driver.apply({...base, peers: [bad, c]})
    expect(removed.removed).toBe(1)
    expect(removed.failed?.map((f) => f.publicKey)).toEqual([bad.publicKey])
    expect(wgPeers()).toEqual([c.publicKey])
    expect(sh(['netns', 'exec', NS, 'wg', 'show', IFACE, 'endpoints'])).toContain('203.0.113.4:51820')
  })

  /** `wg show IF dump` in the namespace, peers sorted by key. */
  const wgDump = () => {
    const d = parseDump(sh(['netns', 'exec', NS, 'wg', 'show', IFACE, 'dump']))!
    return {...d, peers: [...d.peers].sort((x, y) => x.publicKey.localeCompare(y.publicKey))}
  }
  const sorted = (st: InterfaceState | undefined) =>
    st && {...st, peers: [...st.peers].sort((x, y) => x.publicKey.localeCompare(y.publicKey))}

  it('reads over UAPI exactly what ip and `wg show dump` report', async () => {
    const v6: PeerConfig = {
      publicKey: generateKeyPair().publicKey,
      allowedIps: ['10.77.0.6/32', 'fd00:77::6/128'],
      endpoint: '[2001:db8::6]:51820',
      persistentKeepalive: 0,
    }
    const noEndpoint: PeerConfig = {
      publicKey: generateKeyPair().publicKey,
      allowedIps: ['10.77.0.7/32', '10.78.0.0/16'],
      persistentKeepalive: 25,
    }
    const res = await driver.apply(config({...peer(5), persistentKeepalive: 25}, v6, noEndpoint))
    expect(res.failed).toEqual([])
    const uapi = sorted(await driver.read(IFACE))
    const spawnedRead = sorted(await new KernelDriver(runner).read(IFACE))
    expect(uapi).toEqual(spawnedRead)
    expect(uapi?.peers).toHaveLength(3)
    expect(uapi?.peers.find((p) => p.publicKey === v6.publicKey)).toMatchObject({
      endpoint: '[2001:db8::6]:51820',
      allowedIps: ['10.77.0.6/32', 'fd00:77::6/128'],
      lastHandshakeMs: 0,
    })
    expect(uapi?.peers.find((p) => p.publicKey === noEndpoint.publicKey)).toMatchObject({
      persistentKeepalive: 25,
      lastHandshakeMs: 0,
    })
    expect(uapi?.peers.find((p) => p.publicKey === noEndpoint.publicKey)?.endpoint).toBeUndefined()
    expect(uapi).toMatchObject({addresses: ['10.77.0.1/24'], mtu: 1420, up: true})
    // The client alone gives what parseDump makes of `wg show dump` (whose public key is wg's
    // own derivation from the private key: ours must agree).
    const got = await new UapiClient().get(IFACE)
    expect(
      got && {...got, peers: [...got.peers].sort((x, y) => x.publicKey.localeCompare(y.publicKey))},
    ).toEqual(wgDump())
  })

  it('reads peers on a path check without spawning anything once the link is known', async () => {
    await driver.read(IFACE) // the link may have changed with the last apply: one `ip` call
    spawned.length = 0
    for (let i = 0; i < 5; i++) expect(await driver.read(IFACE)).toBeDefined()
    expect(spawned).toEqual([])
  })

  it('tells an apply that changes nothing from the cached link and one UAPI read, spawning nothing', async () => {
    const c = config(peer(13))
    await driver.apply(c)
    await driver.read(IFACE) // the apply changed the link (new address): one `ip` call refills it
    spawned.length = 0
    expect(await driver.apply(c)).toMatchObject({changed: false})
    expect(spawned).toEqual([])
    // One that changes something reads the link with `ip` and converges from that.
    expect(await driver.apply({...c, mtu: 1380})).toMatchObject({changed: true})
    expect(spawned).toContain('ip')
    expect((await driver.read(IFACE))?.mtu).toBe(1380)
  })

  it('sets, changes and removes peers over UAPI as `wg show` sees it', async () => {
    const base = config(peer(8), peer(9))
    await driver.apply(base)
    const [p8, p9] = base.peers as [PeerConfig, PeerConfig]
    const p10 = peer(10)
    spawned.length = 0
    await driver.setPeers(IFACE, [
      {
        publicKey: p10.publicKey,
        allowedIps: p10.allowedIps,
        endpoint: '[2001:db8::10]:4000',
        persistentKeepalive: 1,
      },
      {publicKey: p8.publicKey, endpoint: '203.0.113.88:1234'},
      {publicKey: p9.publicKey, remove: true},
    ])
    expect(spawned).toEqual([])
    const dump = wgDump()
    expect(dump.peers.map((p) => p.publicKey).sort()).toEqual([p8.publicKey, p10.publicKey].sort())
    expect(dump.peers.find((p) => p.publicKey === p8.publicKey)).toMatchObject({
      endpoint: '203.0.113.88:1234',
      allowedIps: p8.allowedIps,
    })
    expect(dump.peers.find((p) => p.publicKey === p10.publicKey)).toMatchObject({
      endpoint: '[2001:db8::10]:4000',
      allowedIps: ['10.77.0.10/32'],
      persistentKeepalive: 1,
    })

    // The next apply converges back: p10 removed, p9 added again, p8's endpoint restored.
    const back = await driver.apply(base)
    expect(back).toMatchObject({removed: 1, added: 1, updated: 1, failed: []})
    expect(
      wgDump()
        .peers.map((p) => `${p.publicKey} ${p.endpoint}`)
        .sort(),
    ).toEqual([`${p8.publicKey} ${p8.endpoint}`, `${p9.publicKey} ${p9.endpoint}`].sort())
  })

  /**
   * A UDP socket on 127.0.0.1 inside the namespace (a node child process): each datagram that
   * arrives, in order. next() waits for the next one, at most 3 s.
   */
  async function udpSink(): Promise<{port: number; next: () => Promise<Buffer>; close: () => void}> {
    const script =
      "const s=require('node:dgram').createSocket('udp4');" +
      "s.on('message',(m)=>process.stdout.write(m.toString('hex')+'\\n'));" +
      "s.bind(0,'127.0.0.1',()=>process.stdout.write('port '+s.address().port+'\\n'))"
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    const lines: string[] = []
    let wake: (() => void) | undefined
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const parts = buf.split('\n')
      buf = parts.pop()!
      lines.push(...parts)
      wake?.()
    })
    const line = async (): Promise<string> => {
      const deadline = Date.now() + 3_000
      while (lines.length === 0) {
        if (Date.now() >= deadline) throw new Error('udp sink: nothing arrived within 3 s')
        await new Promise<void>((r) => {
          wake = r
          setTimeout(r, deadline - Date.now()).unref()
        })
      }
      return lines.shift()!
    }
    const port = Number((await line()).replace('port ', ''))
    return {port, next: async () => Buffer.from(await line(), 'hex'), close: () => void child.kill()}
  }

  it('makes a never-handshaken peer initiate again at once when it is removed and added in one transaction (a poke)', async () => {
    const sink = await udpSink()
    try {
      const p = {...peer(12, `127.0.0.1:${sink.port}`), persistentKeepalive: 25}
      await driver.apply(config(p))
      // A new peer with a keepalive initiates at once; nobody answers.
      const first = await sink.next()
      expect([first[0], first.length]).toEqual([1, 148])
      const poked = Date.now()
      await driver.setPeers(IFACE, [
        {publicKey: p.publicKey, remove: true},
        {publicKey: p.publicKey, allowedIps: p.allowedIps, endpoint: p.endpoint, persistentKeepalive: 25},
      ])
      // WireGuard's own retry would come REKEY_TIMEOUT (5 s) after the first: this is the new peer's.
      const second = await sink.next()
      expect([second[0], second.length]).toEqual([1, 148])
      expect(Date.now() - poked).toBeLessThan(2_000)
      // A new ephemeral key (bytes 8-39): a new initiation, not the first one again.
      expect(second.subarray(8, 40).equals(first.subarray(8, 40))).toBe(false)
      expect(wgPeers()).toEqual([p.publicKey])
    } finally {
      sink.close()
    }
  })

  it('sets a new private key and listen port over UAPI, with no key file and no wg', async () => {
    const next = {...config(peer(11)), listenPort: 51821}
    const me = generateKeyPair()
    spawned.length = 0
    const before = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('meshd-key-'))
    await driver.apply({...next, privateKey: me.privateKey})
    expect(spawned).not.toContain('wg')
    expect(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('meshd-key-'))).toEqual(before)
    expect(sh(['netns', 'exec', NS, 'wg', 'show', IFACE, 'public-key']).trim()).toBe(me.publicKey)
    expect(sh(['netns', 'exec', NS, 'wg', 'show', IFACE, 'listen-port']).trim()).toBe('51821')
    expect(wgDump().privateKey).toBe(me.privateKey)
    expect((await driver.read(IFACE))?.publicKey).toBe(me.publicKey)
  })
})
