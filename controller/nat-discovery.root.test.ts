// Endpoint discovery end to end, with a mapping peers can use: `mesh controller start` (built,
// defaults only) runs in a namespace at 198.51.100.1; a WireGuard handshake initiation from a
// registered node's key arrives on its discovery port from 198.51.100.7:41641 in another
// namespace, and that address:port reaches the node's peers as its observedEndpoint in a netmap
// delta. Loopback (controller/nat.integration.test.ts) cannot show this: peers never get a
// loopback mapping. Needs root and ip; skips otherwise.
//
// Lab: <p>-c (controller) and <p>-n (sender) joined by a veth pair, 198.51.100.0/24. Nothing is
// added to the root namespace: this process reaches the API through the lab's unix-socket
// forwarder (dist/cli/lib/lab/forwarder.js) run in <p>-c.
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {NatServices, Peer} from '../shared/protocol/netmap.js'
import {buildInitiation, tai64nFromUnixMs, x25519KeyPairFromPrivate} from './discovery/noise.js'
import {publicKey} from './testing/client.js'
import {connectWs, type WsClient} from './testing/ws-client.js'

const root = path.resolve(import.meta.dirname, '..')
const forwarderJs = path.join(root, 'dist', 'cli', 'lib', 'lab', 'forwarder.js')
const meshJs = path.join(root, 'bin', 'mesh.js')
const canRun =
  process.platform === 'linux' &&
  process.getuid?.() === 0 &&
  spawnSync('ip', ['-V'], {stdio: 'ignore'}).status === 0 &&
  fs.existsSync(forwarderJs) &&
  fs.existsSync(path.join(root, 'dist', 'controller', 'main.js'))

const P = `cw${randomBytes(2).toString('hex')}`
const NS = {ctl: `${P}-c`, sender: `${P}-n`}
const ADDR = {ctl: '198.51.100.1', sender: '198.51.100.7'}
const SENDER_PORT = 41641
const PASSWORD = `pw-${randomBytes(12).toString('base64url')}`

function ip(args: string[]): void {
  const r = spawnSync('ip', args, {encoding: 'utf8', timeout: 20_000})
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr || String(r.error)}`)
}

const children: ChildProcess[] = []
let dir = ''
let sock = ''

function start(ns: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {...process.env, ...env},
  })
  let stderr = ''
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)))
  child.on('exit', (code) => {
    if (code !== 0 && code !== null) console.error(`child ${args[0]} exited ${code}: ${stderr}`)
  })
  children.push(child)
  return child
}

/** One HTTP request to the controller through the forwarder's unix socket. */
function request(
  method: string,
  urlPath: string,
  opts: {token?: string; body?: unknown} = {},
): Promise<{status: number; body: unknown}> {
  return new Promise((resolve, reject) => {
    const data = opts.body === undefined ? undefined : JSON.stringify(opts.body)
    const req = http.request(
      {
        socketPath: sock,
        method,
        path: urlPath,
        headers: {
          host: `${ADDR.ctl}:8080`,
          ...(data ? {'content-type': 'application/json'} : {}),
          ...(opts.token ? {authorization: `Bearer ${opts.token}`} : {}),
        },
        timeout: 5000,
      },
      (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString()))
        res.on('end', () => resolve({status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined}))
      },
    )
    req.on('error', reject)
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.end(data)
  })
}

/** Waits (bounded: 15 s) for the controller to answer /healthz through the forwarder. */
async function controllerUp(): Promise<void> {
  const deadline = Date.now() + 15_000
  for (let i = 0; ; i++) {
    const ok = await request('GET', '/healthz').then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) return
    if (Date.now() > deadline) throw new Error('the controller did not come up')
    await new Promise((r) => setTimeout(r, Math.min(50 * (i + 1), 500)))
  }
}

function x25519Private(): string {
  const jwk = generateKeyPairSync('x25519').privateKey.export({format: 'jwk'})
  return Buffer.from(jwk.d!, 'base64url').toString('base64')
}

describe.skipIf(!canRun)('endpoint discovery through a real `mesh controller start`', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-natdisc-'))
    sock = path.join(dir, 'api.sock')
    ip(['netns', 'add', NS.ctl])
    ip(['netns', 'add', NS.sender])
    ip(['link', 'add', `${P}c`, 'netns', NS.ctl, 'type', 'veth', 'peer', 'name', `${P}n`, 'netns', NS.sender])
    ip(['-n', NS.ctl, 'addr', 'add', `${ADDR.ctl}/24`, 'dev', `${P}c`])
    ip(['-n', NS.sender, 'addr', 'add', `${ADDR.sender}/24`, 'dev', `${P}n`])
    for (const [ns, dev] of [
      [NS.ctl, `${P}c`],
      [NS.sender, `${P}n`],
    ] as const) {
      ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      ip(['-n', ns, 'link', 'set', dev, 'up'])
    }
    start(
      NS.ctl,
      [meshJs, 'controller', 'start', '--listen', `${ADDR.ctl}:8080`, '--data-dir', path.join(dir, 'ctl')],
      {MESH_ADMIN_PASSWORD: PASSWORD},
    )
    start(NS.ctl, [forwarderJs, sock, ADDR.ctl, '8080'])
    await controllerUp()
  }, 30_000)

  afterAll(() => {
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) c.kill('SIGKILL')
    for (const ns of [NS.ctl, NS.sender]) spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  it("sends a node's observed public mapping to its peers, with the controller's default STUN and discovery ports in the full map", async () => {
    const login = await request('POST', '/api/v1/login', {body: {username: 'admin', password: PASSWORD}})
    expect(login.status).toBe(200)
    const token = (login.body as {token: string}).token
    const net = await request('POST', '/api/v1/networks', {
      token,
      body: {name: 'disc', cidr: '10.77.0.0/24', joinPolicy: 'open'},
    })
    expect(net.status).toBe(201)
    const nodePrivate = x25519Private()
    const nodePublic = x25519KeyPairFromPrivate(nodePrivate).publicKey.toString('base64')
    const join = async (key: string, name: string) => {
      const r = await request('POST', '/api/v1/register', {
        token,
        body: {network: (net.body as {id: string}).id, publicKey: key, name},
      })
      expect(r.status).toBe(201)
      return r.body as {node: {id: string}; credential: string}
    }
    const a = await join(publicKey(), 'a')
    const b = await join(nodePublic, 'b')

    const ws: WsClient = await connectWs(`ws+unix://${sock}:/api/v1/netmap`, a.credential)
    try {
      const full = await ws.next<{type: string; nat?: NatServices}>((f) => f.type === 'full', 5000)
      expect(full.nat?.stun?.primary).toEqual({host: ADDR.ctl, port: 3478})
      expect(full.nat?.discovery?.service).toEqual({host: ADDR.ctl, port: 51820})
      const discoveryKey = full.nat!.discovery!.publicKey

      // What WireGuard in node B would send to the discovery peer, from B's namespace.
      const initiation = buildInitiation({
        responderPublic: discoveryKey,
        initiatorPrivate: nodePrivate,
        ephemeralPrivate: x25519Private(),
        senderIndex: 1,
        timestamp: tai64nFromUnixMs(Date.now()),
      })
      const sender = start(NS.sender, [
        '-e',
        `const s = require('node:dgram').createSocket('udp4');
         s.bind(${SENDER_PORT}, '${ADDR.sender}', () =>
           s.send(Buffer.from(process.argv[1], 'hex'), 51820, '${ADDR.ctl}', (err) => { s.close(); process.exit(err ? 1 : 0) }))`,
        initiation.toString('hex'),
      ])
      const delta = await ws.next<{type: string; changed?: Peer[]}>(
        (f) =>
          f.type === 'delta' &&
          (f.changed ?? []).some((p) => p.id === b.node.id && p.observedEndpoint !== undefined),
        2000,
      )
      expect(delta.changed!.find((p) => p.id === b.node.id)?.observedEndpoint).toBe(
        `${ADDR.sender}:${SENDER_PORT}`,
      )
      expect(sender.exitCode === null || sender.exitCode === 0).toBe(true)
    } finally {
      await ws.close()
    }
  })
})
