// One peer that WireGuard refuses must not freeze the interface: with real wireguard-go in a
// network namespace of this run, a peer whose endpoint `wg` cannot take (999.999.999.999:1,
// handed to the driver past every validation, as a peer from an old controller or cache could
// be) is reported as failed, while a peer added later appears in `wg show` and a removed peer
// disappears. Needs root, ip, wg and wireguard-go; skips otherwise.
//
// The namespace has only its loopback: no packet leaves it (the bogus name fails to resolve at
// once, the good peers' endpoints are unroutable there).
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {generateKeyPair} from '../keys.js'
import type {InterfaceConfig, PeerConfig} from './driver.js'
import {UserspaceDriver} from './userspace.js'
import {execaRunner, type CommandRunner} from './wg-tools.js'

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

describe.skipIf(!canRun)('the userspace driver with a peer wg refuses (real wireguard-go)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-wgpeers-'))
  /** ip and wg run inside the namespace. */
  const runner: CommandRunner = (cmd, args, opts) =>
    execaRunner('ip', ['netns', 'exec', NS, cmd, ...args], opts)
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
})
