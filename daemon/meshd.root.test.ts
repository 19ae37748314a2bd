// Two real meshd processes (wireguard-go) in two network namespaces join one controller network
// and ping each other over their mesh addresses; then the data plane survives a daemon restart,
// a wireguard-go crash and a controller outage. Needs root, ip and wireguard-go; skips otherwise.
//
// Lab: namespace <p>-hub holds a bridge (198.51.100.1/24) and the controller; <p>-a and <p>-b are
// nodes on 198.51.100.2 and .3, each with a veth to the bridge. Nothing touches the root namespace
// except the unix sockets of the daemons (files under a temp dir).
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {StatusSchema, type Status} from '../shared/protocol/local-api.js'
import {tempDir, waitFor} from './testing/harness.js'

const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const root = path.resolve(import.meta.dirname, '..')
const meshJs = path.join(root, 'bin', 'mesh.js')
const canRun =
  process.getuid?.() === 0 &&
  has('ip', ['-V']) &&
  has('wg', ['--version']) &&
  has('wireguard-go', ['--version']) &&
  fs.existsSync(path.join(root, 'dist', 'daemon', 'main.js')) &&
  fs.existsSync(path.join(root, 'dist', 'cli', 'commands', 'controller', 'start.js'))

const P = `md${randomBytes(2).toString('hex')}`
const NS = {hub: `${P}-hub`, a: `${P}-a`, b: `${P}-b`, c: `${P}-c`}
const UNDERLAY = {hub: '198.51.100.1', a: '198.51.100.2', b: '198.51.100.3', c: '198.51.100.4'}
type NodeName = 'a' | 'b' | 'c'

function sh(cmd: string, args: string[], opts: {ns?: string; input?: string} = {}): string {
  const argv = opts.ns ? ['ip', ['netns', 'exec', opts.ns, cmd, ...args]] : [cmd, args]
  const r = spawnSync(argv[0] as string, argv[1] as string[], {
    encoding: 'utf8',
    timeout: 20_000,
    ...(opts.input !== undefined && {input: opts.input}),
  })
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} (ns ${opts.ns ?? '-'}): ${r.stderr || r.error}`)
  return r.stdout
}
const shOk = (cmd: string, args: string[], ns?: string): boolean =>
  spawnSync(ns ? 'ip' : cmd, ns ? ['netns', 'exec', ns, cmd, ...args] : args, {
    stdio: 'ignore',
    timeout: 20_000,
  }).status === 0

/** Pids of wireguard-go processes serving one of our interfaces (prefix P). */
function ourWireguardGo(): number[] {
  const pids: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')
      if (argv[0]?.endsWith('wireguard-go') && argv.some((a) => a.startsWith(P))) pids.push(Number(d))
    } catch {
      // gone
    }
  }
  return pids
}

describe.skipIf(!canRun)('meshd with wireguard-go in network namespaces', () => {
  const dir = tempDir('meshd-root-')
  const procs: ChildProcess[] = []
  const logs: Record<string, string> = {}
  let controllerUrl = ''
  let controller: ChildProcess | undefined
  let token = ''
  const daemons: Partial<Record<NodeName, ChildProcess>> = {}
  const sock = {a: path.join(dir, 'a.sock'), b: path.join(dir, 'b.sock'), c: path.join(dir, 'c.sock')}
  const password = `pw-${randomBytes(9).toString('base64url')}`

  function startLogged(name: string, ns: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    const logFile = path.join(dir, `${name}.log`)
    logs[name] = logFile
    const out = fs.openSync(logFile, 'a')
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, meshJs, ...args], {
      stdio: ['ignore', out, out],
      env: {...process.env, ...env},
    })
    fs.closeSync(out)
    procs.push(p)
    return p
  }

  const logTail = (name: string): string => {
    try {
      return fs.readFileSync(logs[name]!, 'utf8').split('\n').slice(-15).join('\n')
    } catch {
      return ''
    }
  }

  async function startDaemon(node: NodeName): Promise<void> {
    const p = startLogged(`meshd-${node}`, NS[node], [
      'daemon',
      'run',
      '--socket',
      sock[node],
      '--state-dir',
      path.join(dir, `state-${node}`),
      '--interface-prefix',
      `${P}${node}`,
      '--log-level',
      'debug',
    ])
    daemons[node] = p
    await waitFor(
      `meshd ${node} to answer`,
      () => {
        if (p.exitCode !== null) throw new Error(`meshd ${node} exited: ${logTail(`meshd-${node}`)}`)
        return status(node).then(() => true)
      },
      20_000,
      100,
    )
  }

  async function stopDaemon(node: NodeName): Promise<void> {
    const p = daemons[node]
    if (!p || p.exitCode !== null) return
    p.kill('SIGTERM')
    await waitFor(`meshd ${node} to exit`, () => p.exitCode !== null, 10_000)
  }

  function mesh(node: NodeName, args: string[]): {code: number; stdout: string; stderr: string} {
    const r = spawnSync(process.execPath, [meshJs, ...args, '--socket', sock[node]], {
      encoding: 'utf8',
      timeout: 60_000,
    })
    return {code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr}
  }

  async function status(node: NodeName): Promise<Status> {
    const r = mesh(node, ['status', '--json'])
    if (r.code !== 0) throw new Error(`mesh status (${node}) exit ${r.code}: ${r.stdout}${r.stderr}`)
    return StatusSchema.parse(JSON.parse(r.stdout))
  }

  /** Controller API from inside the hub namespace (the root namespace has no route to it). */
  function api<T>(method: string, urlPath: string, body?: unknown): T {
    const out = sh(
      'curl',
      [
        '-sS',
        '-X',
        method,
        '-H',
        'content-type: application/json',
        ...(token ? ['-H', `authorization: Bearer ${token}`] : []),
        ...(body !== undefined ? ['--data-binary', '@-'] : []),
        `${controllerUrl}${urlPath}`,
      ],
      {ns: NS.hub, ...(body !== undefined && {input: JSON.stringify(body)})},
    )
    return JSON.parse(out) as T
  }

  let controllerRuns = 0
  async function startController(port = 0): Promise<void> {
    const name = `controller-${++controllerRuns}`
    controller = startLogged(
      name,
      NS.hub,
      ['controller', 'start', '--listen', `${UNDERLAY.hub}:${port}`, '--data-dir', path.join(dir, 'ctl')],
      {MESH_ADMIN_PASSWORD: password},
    )
    controllerUrl = await waitFor(
      'the controller to listen',
      () => {
        if (controller!.exitCode !== null) throw new Error(`controller exited: ${logTail(name)}`)
        for (const line of fs.readFileSync(logs[name]!, 'utf8').split('\n')) {
          if (!line.startsWith('{')) continue
          const j = JSON.parse(line) as {msg?: string; url?: string; pid?: number}
          if (j.msg === 'listening' && j.url) return j.url
        }
        return undefined
      },
      20_000,
      50,
    )
    token = ''
    token = api<{token: string}>('POST', '/api/v1/login', {username: 'admin', password}).token
  }

  beforeAll(async () => {
    fs.chmodSync(dir, 0o700)
    for (const ns of Object.values(NS)) sh('ip', ['netns', 'add', ns])
    sh('ip', ['link', 'set', 'lo', 'up'], {ns: NS.hub})
    sh('ip', ['link', 'add', 'br0', 'type', 'bridge'], {ns: NS.hub})
    sh('ip', ['addr', 'add', `${UNDERLAY.hub}/24`, 'dev', 'br0'], {ns: NS.hub})
    sh('ip', ['link', 'set', 'br0', 'up'], {ns: NS.hub})
    for (const node of ['a', 'b', 'c'] as const) {
      const ns = NS[node]
      sh('ip', ['link', 'set', 'lo', 'up'], {ns})
      // Created inside the node namespace, so no link ever appears in the root namespace.
      sh('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `v${node}`, 'netns', NS.hub], {ns})
      sh('ip', ['addr', 'add', `${UNDERLAY[node]}/24`, 'dev', 'eth0'], {ns})
      sh('ip', ['link', 'set', 'eth0', 'up'], {ns})
      sh('ip', ['link', 'set', `v${node}`, 'master', 'br0', 'up'], {ns: NS.hub})
    }
    await startController()
    api('POST', '/api/v1/networks', {name: 'roottest', cidr: '10.99.0.0/24'})
    api('POST', '/api/v1/networks', {name: 'isolated', cidr: '10.98.0.0/24'})
    await startDaemon('a')
    await startDaemon('b')
    await startDaemon('c')
  })

  afterAll(async () => {
    // 1. daemons and controller by pid; 2. wireguard-go of our interfaces by pid; 3. namespaces;
    // 4. leftover UAPI sockets of our prefix; 5. the temp dir. Each step runs even if one fails.
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM')
    await waitFor('processes to exit', () => procs.every((p) => p.exitCode !== null), 5_000).catch(() => {
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
    })
    for (const pid of ourWireguardGo()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    for (const ns of Object.values(NS)) shOk('ip', ['netns', 'del', ns])
    try {
      for (const f of fs.readdirSync('/var/run/wireguard'))
        if (f.startsWith(P)) fs.rmSync(path.join('/var/run/wireguard', f), {force: true})
    } catch {
      // no UAPI dir
    }
    if (process.env.MESH_KEEP_TEST_LOGS === '1') console.log(`logs kept in ${dir}`)
    else fs.rmSync(dir, {recursive: true, force: true})
  })

  const addr: Partial<Record<NodeName, string>> = {}
  const iface: Partial<Record<NodeName, string>> = {}

  it('joins both nodes with invites and picks the userspace backend here', async () => {
    for (const node of ['a', 'b'] as const) {
      const inv = api<{joinString: string}>('POST', '/api/v1/networks/roottest/invites', {})
      const r = mesh(node, ['join', inv.joinString, '--name', `node-${node}`, '--json'])
      expect(r.code, r.stdout + r.stderr + logTail(`meshd-${node}`)).toBe(0)
      const res = JSON.parse(r.stdout) as {address: string; interface: string}
      addr[node] = res.address
      iface[node] = res.interface
      expect(res.interface).toBe(`${P}${node}0`)
    }
    const st = await status('a')
    expect(['kernel', 'userspace']).toContain(st.backend)
    // The interface is really there, with the address and the network's prefix length.
    const ipAddr = sh('ip', ['-br', 'addr', 'show', 'dev', iface.a!], {ns: NS.a})
    expect(ipAddr).toContain(`${addr.a}/24`)
    expect(sh('ip', ['link', 'show', 'dev', iface.a!], {ns: NS.a})).toContain('mtu 1420')
  })

  it("shows the other node as a WireGuard peer in `wg show` within a second of the controller's change", async () => {
    const bKey = (await status('b')).networks[0]!.publicKey
    await waitFor(
      'b in a wg show',
      () => sh('wg', ['show', iface.a!, 'peers'], {ns: NS.a}).includes(bKey),
      1000,
    )
    const dump = sh('wg', ['show', iface.a!, 'dump'], {ns: NS.a})
    const line = dump
      .split('\n')
      .find((l) => l.startsWith(bKey))!
      .split('\t')
    expect(line[3]).toBe(`${addr.b}/32`)
    // b's own address, or (relay first) meshd's local socket for the controller's relay.
    expect(line[2]).toMatch(/^(198\.51\.100\.3|127\.0\.0\.1):\d+$/)
    expect(line[7]).toBe('25')
  })

  it('pings between the namespaces over the mesh addresses', () => {
    expect(shOk('ping', ['-c', '3', '-i', '0.2', '-W', '2', addr.b!], NS.a)).toBe(true)
    expect(shOk('ping', ['-c', '3', '-i', '0.2', '-W', '2', addr.a!], NS.b)).toBe(true)
  })

  it('keeps networks apart: a second network on a gets its own interface, key and port, and b cannot reach it', async () => {
    // a joins "isolated" too; c is only in "isolated"; b is only in "roottest".
    const join = (node: NodeName, name: string) => {
      const inv = api<{joinString: string}>('POST', '/api/v1/networks/isolated/invites', {})
      const r = mesh(node, ['join', inv.joinString, '--name', name, '--json'])
      expect(r.code, r.stdout + r.stderr).toBe(0)
      return JSON.parse(r.stdout) as {
        address: string
        interface: string
        publicKey: string
        listenPort: number
      }
    }
    const a2 = join('a', 'node-a')
    const c = join('c', 'node-c')
    const a1 = (await status('a')).networks.find((n) => n.name === 'roottest')!
    expect(a2.interface).toBe(`${P}a1`)
    expect(a2.publicKey).not.toBe(a1.publicKey)
    expect(a2.listenPort).not.toBe(a1.listenPort)
    await waitFor(
      'a <-> c over isolated',
      () => shOk('ping', ['-c', '1', '-W', '1', c.address], NS.a),
      10_000,
      100,
    )
    // Each interface holds only its own network's peers.
    const cKey = (await status('c')).networks[0]!.publicKey
    expect(sh('wg', ['show', iface.a!, 'peers'], {ns: NS.a})).not.toContain(cKey)
    // Its only mesh peer is c (the controller's discovery key, with no allowed IPs, aside).
    const meshPeers = sh('wg', ['show', a2.interface, 'allowed-ips'], {ns: NS.a})
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.trim().endsWith('(none)'))
      .map((l) => l.split('\t')[0])
    expect(meshPeers).toEqual([cKey])
    // b has no route to the other network; even when b forces one through its mesh interface,
    // WireGuard has no peer for those addresses and drops the packets.
    expect(shOk('ping', ['-c', '1', '-W', '1', c.address], NS.b)).toBe(false)
    sh('ip', ['route', 'add', '10.98.0.0/24', 'dev', iface.b!], {ns: NS.b})
    expect(shOk('ping', ['-c', '2', '-i', '0.2', '-W', '1', c.address], NS.b)).toBe(false)
    expect(shOk('ping', ['-c', '2', '-i', '0.2', '-W', '1', a2.address], NS.b)).toBe(false)
    sh('ip', ['route', 'del', '10.98.0.0/24', 'dev', iface.b!], {ns: NS.b})
    expect(mesh('a', ['leave', 'isolated']).code).toBe(0)
  })

  it('reports handshakes and traffic in status', async () => {
    const st = await waitFor('a to see b online', async () => {
      const s = await status('a')
      return s.networks[0]!.peers[0]?.online ? s : undefined
    })
    const peer = st.networks[0]!.peers[0]!
    expect(peer).toMatchObject({name: 'node-b', address: addr.b, online: true})
    expect(peer.rxBytes).toBeGreaterThan(0)
    expect(peer.txBytes).toBeGreaterThan(0)
    const text = mesh('a', ['status'])
    expect(text.stdout).toContain('node-b')
    expect(text.stdout).toContain('online')
    expect(mesh('a', ['ip']).stdout.trim()).toBe(addr.a)
  })

  it('keeps the tunnel through a daemon restart (interfaces stay up) and adopts it again', async () => {
    await stopDaemon('a')
    expect(shOk('ip', ['link', 'show', 'dev', iface.a!], NS.a)).toBe(true)
    expect(shOk('ping', ['-c', '1', '-W', '2', addr.b!], NS.a)).toBe(true)
    await startDaemon('a')
    await waitFor('a connected again', async () => (await status('a')).networks[0]?.connected, 15_000, 100)
    expect(shOk('ping', ['-c', '1', '-W', '2', addr.b!], NS.a)).toBe(true)
  })

  it('restarts wireguard-go when it dies and restores the tunnel', async () => {
    const pids = ourWireguardGo().filter((pid) =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(iface.b!),
    )
    expect(pids.length).toBe(1)
    process.kill(pids[0]!, 'SIGKILL')
    await waitFor('b interface back', () => shOk('wg', ['show', iface.b!, 'peers'], NS.b), 10_000, 100)
    await waitFor('ping b -> a again', () => shOk('ping', ['-c', '1', '-W', '1', addr.a!], NS.b), 15_000, 200)
  })

  it('keeps tunnels working with the controller down, also across a daemon restart from the cache', async () => {
    const port = new URL(controllerUrl).port
    // The relay lives in the controller: what must survive it is the direct tunnel, which the
    // pair upgrades to within seconds of being relayed (e.g. after the wireguard-go restart above).
    for (const n of ['a', 'b'] as const)
      await waitFor(
        `${n} direct`,
        async () => (await status(n)).networks[0]?.peers[0]?.path === 'direct',
        30_000,
        200,
      )
    controller!.kill('SIGTERM')
    await waitFor('controller to exit', () => controller!.exitCode !== null, 10_000)
    expect(shOk('ping', ['-c', '1', '-W', '2', addr.b!], NS.a)).toBe(true)
    await stopDaemon('b')
    sh('ip', ['link', 'del', 'dev', iface.b!], {ns: NS.b}) // as after a reboot
    await startDaemon('b')
    expect((await status('b')).networks[0]).toMatchObject({connected: false, address: addr.b})
    await waitFor(
      'ping a -> b from the cache',
      () => shOk('ping', ['-c', '1', '-W', '1', addr.b!], NS.a),
      15_000,
      200,
    )
    await startController(Number(port))
    await waitFor('b reconnected', async () => (await status('b')).networks[0]?.connected, 15_000, 200)
  })

  it('down removes the interface, is idempotent, and up restores the tunnel', async () => {
    expect(mesh('a', ['down']).code).toBe(0)
    expect(shOk('ip', ['link', 'show', 'dev', iface.a!], NS.a)).toBe(false)
    const again = mesh('a', ['down'])
    expect(again.code).toBe(0)
    expect(again.stderr).toContain('already down')
    expect(mesh('a', ['up']).code).toBe(0)
    await waitFor('ping after up', () => shOk('ping', ['-c', '1', '-W', '1', addr.b!], NS.a), 15_000, 200)
  })

  it('leave removes the interface and the peer disappears from the other node', async () => {
    const aKey = (await status('a')).networks[0]!.publicKey
    // Leave is local; the admin removes the node at the controller, which updates b.
    const aId = (await status('a')).networks[0]!.nodeId
    expect(mesh('a', ['leave', 'roottest']).code).toBe(0)
    expect(shOk('ip', ['link', 'show', 'dev', iface.a!], NS.a)).toBe(false)
    api('DELETE', `/api/v1/nodes/${aId}`)
    await waitFor(
      'a gone from b',
      () => !sh('wg', ['show', iface.b!, 'peers'], {ns: NS.b}).includes(aKey),
      2000,
    )
  })

  it('tells the user when meshd is not running (exit 69)', async () => {
    await stopDaemon('a')
    const r = mesh('a', ['status'])
    expect(r.code).toBe(69)
    expect(r.stderr).toContain(sock.a)
  })
})
