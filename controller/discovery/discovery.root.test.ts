// Endpoint discovery against a real wireguard-go: a node namespace runs wireguard-go with the
// controller's discovery key as a peer (no allowed IPs, persistent-keepalive 1, endpoint = the
// controller namespace's UDP port), exactly as meshd will; the controller namespace receives the
// handshake initiations WireGuard sends from its own listen port. Needs root, ip, wg and
// wireguard-go; skips otherwise.
//
// Lab: <p>-n (node, 198.51.100.2/24) and <p>-c (controller, 198.51.100.1/24) joined by a veth
// pair. Nothing is added to the root namespace. Node (this process) cannot enter a namespace, so
// the receiving side is a child `node` started with `ip netns exec`, which prints JSON lines; the
// server case runs the built DiscoveryServer (dist/, from `npm run build`) in that child.
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {createInterface} from 'node:readline'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {InitiationDecoder, tai64nToUnixMs} from './noise.js'

const root = path.resolve(import.meta.dirname, '..', '..')
const distServer = path.join(root, 'dist', 'controller', 'discovery', 'server.js')
const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const canRun =
  process.platform === 'linux' &&
  process.getuid?.() === 0 &&
  has('ip', ['-V']) &&
  has('wg', ['--version']) &&
  has('wireguard-go', ['--version']) &&
  fs.existsSync('/dev/net/tun')

const P = `dd${randomBytes(2).toString('hex')}`
const NS = {node: `${P}-n`, ctl: `${P}-c`}
const ADDR = {node: '198.51.100.2', ctl: '198.51.100.1'}
const WG_IF = `${P}wg`
const LISTEN_PORT = 40_000 + (randomBytes(2).readUInt16BE() % 20_000)

function sh(args: string[], ns?: string): string {
  const argv = ns ? ['netns', 'exec', ns, ...args] : args.slice(1)
  const r = spawnSync(ns ? 'ip' : args[0]!, argv, {encoding: 'utf8', timeout: 20_000})
  if (r.status !== 0) throw new Error(`${args.join(' ')} (ns ${ns ?? '-'}): ${r.stderr || String(r.error)}`)
  return r.stdout.trim()
}

function privateKey(): string {
  const jwk = generateKeyPairSync('x25519').privateKey.export({format: 'jwk'})
  return Buffer.from(jwk.d!, 'base64url').toString('base64')
}

/** A child in a namespace whose stdout is JSON lines; `next` waits (bounded) for a matching one. */
class LineChild {
  readonly lines: unknown[] = []
  readonly proc: ChildProcess
  #waiters = new Set<() => void>()
  stderr = ''

  constructor(ns: string, args: string[]) {
    this.proc = spawn('ip', ['netns', 'exec', ns, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
    createInterface({input: this.proc.stdout!}).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l))
      } catch {
        this.stderr += `${l}\n`
      }
      for (const w of this.#waiters) w()
    })
    this.proc.stderr!.on('data', (b: Buffer) => (this.stderr = (this.stderr + b.toString()).slice(-4000)))
    this.proc.on('exit', () => {
      for (const w of this.#waiters) w()
    })
  }

  async waitFor<T>(what: string, pick: (lines: unknown[]) => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const v = pick(this.lines)
      if (v !== undefined) return v
      if (this.proc.exitCode !== null) throw new Error(`child exited before ${what}: ${this.stderr}`)
      const left = deadline - Date.now()
      if (left <= 0)
        throw new Error(`timed out waiting for ${what}; got ${this.lines.length} lines; ${this.stderr}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left)
        function done(): void {
          clearTimeout(t)
          waiters.delete(done)
          resolve()
        }
        const waiters = this.#waiters
        waiters.add(done)
      })
    }
  }

  kill(): void {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null || !this.proc.pid) return
    try {
      process.kill(this.proc.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

describe.skipIf(!canRun)('endpoint discovery with a real wireguard-go', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'discovery-root-'))
  const children: LineChild[] = []
  let wgGo: ChildProcess | undefined
  const nodePrivate = privateKey()
  let nodePublic = ''

  beforeAll(async () => {
    sh(['ip', 'netns', 'add', NS.node])
    sh(['ip', 'netns', 'add', NS.ctl])
    sh([
      'ip',
      '-n',
      NS.node,
      'link',
      'add',
      `${P}n`,
      'type',
      'veth',
      'peer',
      'name',
      `${P}c`,
      'netns',
      NS.ctl,
    ])
    for (const [ns, ifname, addr] of [
      [NS.node, `${P}n`, ADDR.node],
      [NS.ctl, `${P}c`, ADDR.ctl],
    ] as const) {
      sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
      sh(['ip', '-n', ns, 'addr', 'add', `${addr}/24`, 'dev', ifname])
      sh(['ip', '-n', ns, 'link', 'set', ifname, 'up'])
    }
    const log = fs.openSync(path.join(dir, 'wireguard-go.log'), 'a')
    wgGo = spawn('ip', ['netns', 'exec', NS.node, 'wireguard-go', '-f', WG_IF], {
      stdio: ['ignore', log, log],
      env: {...process.env, WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'error'},
    })
    fs.closeSync(log)
    const deadline = Date.now() + 10_000
    while (!has('ip', ['-n', NS.node, 'link', 'show', WG_IF])) {
      if (Date.now() > deadline || wgGo.exitCode !== null) throw new Error('wireguard-go did not come up')
      await new Promise((r) => setTimeout(r, 50))
    }
    const keyFile = path.join(dir, 'node.key')
    fs.writeFileSync(keyFile, `${nodePrivate}\n`, {mode: 0o600})
    sh(['wg', 'set', WG_IF, 'private-key', keyFile, 'listen-port', String(LISTEN_PORT)], NS.node)
    sh(['ip', '-n', NS.node, 'link', 'set', WG_IF, 'up'])
    nodePublic = sh(['wg', 'show', WG_IF, 'public-key'], NS.node)
  })

  afterAll(() => {
    for (const c of children) c.kill()
    spawnSync('ip', ['-n', NS.node, 'link', 'del', WG_IF], {stdio: 'ignore'})
    if (wgGo?.pid && wgGo.exitCode === null && wgGo.signalCode === null) {
      try {
        process.kill(wgGo.pid, 'SIGKILL')
      } catch {
        // exited when its link went away
      }
    }
    for (const ns of [NS.node, NS.ctl]) spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
    fs.rmSync(dir, {recursive: true, force: true})
  })

  /** Points the node's WireGuard at a discovery key on the controller namespace's port. */
  function addDiscoveryPeer(discoveryPublic: string, port: number): void {
    sh(
      [
        'wg',
        'set',
        WG_IF,
        'peer',
        discoveryPublic,
        'endpoint',
        `${ADDR.ctl}:${port}`,
        'persistent-keepalive',
        '1',
      ],
      NS.node,
    )
  }

  function removePeer(discoveryPublic: string): void {
    sh(['wg', 'set', WG_IF, 'peer', discoveryPublic, 'remove'], NS.node)
  }

  it("decodes wireguard-go's initiations to the node's real public key, from its listen port", async () => {
    const responderPrivate = privateKey()
    const decoder = new InitiationDecoder(responderPrivate)
    const port = 30_000 + (randomBytes(2).readUInt16BE() % 9_000)
    const receiver = new LineChild(NS.ctl, [
      process.execPath,
      '-e',
      `const s = require('node:dgram').createSocket('udp4')
       s.on('message', (m, r) => console.log(JSON.stringify({hex: m.toString('hex'), address: r.address, port: r.port, at: Date.now()})))
       s.bind(${port}, '${ADDR.ctl}', () => console.log(JSON.stringify({bound: true})))`,
    ])
    children.push(receiver)
    await receiver.waitFor(
      'the receiver to bind',
      (ls) => ls.find((l) => (l as {bound?: boolean}).bound),
      10_000,
    )
    addDiscoveryPeer(decoder.publicKey, port)
    try {
      type Datagram = {hex: string; address: string; port: number; at: number}
      // The first right after `wg set`, the next ≈ 5 s later (REKEY_TIMEOUT, no reply ever comes).
      const got = await receiver.waitFor(
        'two initiations',
        (ls) => {
          const d = ls.filter((l): l is Datagram => typeof (l as Datagram).hex === 'string')
          return d.length >= 2 ? d : undefined
        },
        20_000,
      )
      const decoded = got.map((g) => {
        expect(g).toMatchObject({address: ADDR.node, port: LISTEN_PORT})
        const r = decoder.decode(Buffer.from(g.hex, 'hex'), (k) => k)
        if (!r.ok) throw new Error(`decode failed: ${r.reason}`)
        expect(r.initiation.initiatorStatic).toBe(nodePublic)
        expect(Math.abs(g.at - tai64nToUnixMs(r.initiation.timestamp))).toBeLessThan(1_000)
        return r.initiation
      })
      expect(decoded[1]!.timestamp).toBeGreaterThan(decoded[0]!.timestamp)
      expect(decoded[1]!.ephemeral).not.toBe(decoded[0]!.ephemeral)
    } finally {
      removePeer(decoder.publicKey)
      receiver.kill()
    }
  })
  it.skipIf(!fs.existsSync(distServer))(
    "the controller's DiscoveryServer observes the node's key and real listen port, and never answers",
    async () => {
      const discoveryPrivate = privateKey()
      const port = 30_000 + (randomBytes(2).readUInt16BE() % 9_000)
      const script = `
        const {DiscoveryServer} = await import(process.env.DIST_SERVER)
        const server = new DiscoveryServer({
          host: process.env.HOST, port: Number(process.env.PORT), privateKey: process.env.DISCOVERY_PRIVATE,
          lookupNode: (k) => (k === process.env.NODE_PUBLIC ? {nodeId: 'node-a'} : undefined),
          onObserved: (o) => console.log(JSON.stringify({observed: o, stats: server.stats()})),
        })
        console.log(JSON.stringify({listening: await server.listen(), publicKey: server.publicKey}))`
      const child = new LineChild(NS.ctl, [
        'env',
        `DIST_SERVER=${distServer}`,
        `HOST=${ADDR.ctl}`,
        `PORT=${port}`,
        `DISCOVERY_PRIVATE=${discoveryPrivate}`,
        `NODE_PUBLIC=${nodePublic}`,
        process.execPath,
        '--input-type=module',
        '-e',
        script,
      ])
      children.push(child)
      type Listening = {listening: {port: number}; publicKey: string}
      const {publicKey} = await child.waitFor(
        'the server to listen',
        (ls) => ls.find((l): l is Listening => (l as Listening).listening !== undefined),
        10_000,
      )
      addDiscoveryPeer(publicKey, port)
      try {
        type Observed = {
          observed: {nodeId: string; publicKey: string; endpoint: string}
          stats: {received: number}
        }
        const seen = await child.waitFor(
          'two observations',
          (ls) => {
            const o = ls.filter((l): l is Observed => (l as Observed).observed !== undefined)
            return o.length >= 2 ? o : undefined
          },
          20_000,
        )
        for (const o of seen)
          expect(o.observed).toEqual({
            nodeId: 'node-a',
            publicKey: nodePublic,
            endpoint: `${ADDR.node}:${LISTEN_PORT}`,
            at: expect.any(Number),
          })
        expect(seen[1]!.stats.received).toBe(2) // nothing dropped: each initiation observed once
        // No reply ever goes back, so WireGuard never completes a handshake with the discovery key.
        expect(sh(['wg', 'show', WG_IF, 'latest-handshakes'], NS.node)).toBe(`${publicKey}\t0`)
      } finally {
        removePeer(publicKey)
        child.kill()
      }
    },
  )
})
