// The inbound rules with real nftables between two real wireguard-go nodes in network namespaces
// of this run: node B's table lets A in on tcp 8080 only, then also ICMP, then everything; B's own
// connections to A and their replies always pass; the table goes with the interface. Also checks
// every golden script of ruleset.test.ts with `nft -c`. Needs root, ip, wg, wireguard-go, nft and
// ping; skips otherwise.
//
// Lab: namespaces <p>-a and <p>-b joined by one veth pair (198.51.100.1 and .2, TEST-NET-2), mesh
// addresses 10.99.0.1 (A) and 10.99.0.2 (B). Nothing touches the root namespace; no packet leaves
// the two namespaces. A "dropped" connect is a connect with a 1 s bound, not a sleep.
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {InboundRule} from '../../shared/protocol/netmap.js'
import {StatusSchema, type Status} from '../../shared/protocol/local-api.js'
import {seedNetwork, waitFor} from '../testing/harness.js'
import {generateKeyPair} from '../keys.js'
import {PROBE_PORT} from '../nat/probe.js'
import {UserspaceDriver} from '../wireguard/userspace.js'
import {execaRunner, type CommandRunner} from '../wireguard/wg-tools.js'
import {execa} from 'execa'
import {Firewall, type NftRunner} from './firewall.js'
import {GOLDEN_CASES} from './testdata/cases.js'

const has = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0
const canRun =
  process.getuid?.() === 0 &&
  has('ip', ['-V']) &&
  has('wg', ['--version']) &&
  has('wireguard-go', ['--version']) &&
  has('nft', ['--version']) &&
  has('ping', ['-V'])

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const P = `fw${randomBytes(2).toString('hex')}`
const NS = {a: `${P}-a`, b: `${P}-b`}
/** Distinct names: wireguard-go's UAPI sockets of all namespaces share one directory. */
const IFACE = {a: `${P}wa`, b: `${P}wb`}
const UNDERLAY = {a: '198.51.100.1', b: '198.51.100.2'}
const MESH = {a: '10.99.0.1', b: '10.99.0.2'}
const CIDR = '10.99.0.0/24'
type Node = 'a' | 'b'

function sh(cmd: string, args: string[], ns?: string): string {
  const r = spawnSync(ns ? 'ip' : cmd, ns ? ['netns', 'exec', ns, cmd, ...args] : args, {
    encoding: 'utf8',
    timeout: 20_000,
  })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (ns ${ns ?? '-'}): ${r.stderr || r.error}`)
  return r.stdout
}

/**
 * Listens on the given TCP ports and echoes UDP on PROBE_PORT (`listen p…`), asks that echo once
 * with a bound (`udp host ms`), or connects once with a bound (`connect host port ms`).
 */
const TCP_TOOL = `
import net from 'node:net'
import dgram from 'node:dgram'
const [mode, ...rest] = process.argv.slice(2)
if (mode === 'listen') {
  // 'ready' once every TCP port listens and the UDP port is bound: no fixed wait.
  let pending = rest.length + 1
  const up = () => { if (--pending === 0) console.log('ready') }
  for (const port of rest) net.createServer((s) => s.end('hi')).listen(Number(port), '0.0.0.0', up)
  const u = dgram.createSocket('udp4')
  u.on('message', (m, r) => u.send(m, r.port, r.address))
  u.bind(${PROBE_PORT}, up)
} else if (mode === 'udp') {
  const [host, ms] = rest
  const u = dgram.createSocket('udp4')
  const t = setTimeout(() => { console.log('timeout'); process.exit(0) }, Number(ms))
  u.on('message', () => { clearTimeout(t); console.log('answered'); process.exit(0) })
  u.bind(0, () => u.send('probe', ${PROBE_PORT}, host))
} else {
  const [host, port, ms] = rest
  const s = net.connect({host, port: Number(port)})
  const t = setTimeout(() => { console.log('timeout'); process.exit(0) }, Number(ms))
  s.on('data', (d) => { clearTimeout(t); console.log(String(d) === 'hi' ? 'connected' : 'garbled'); process.exit(0) })
  s.on('error', (e) => { clearTimeout(t); console.log(e.code); process.exit(0) })
}
`

/** Pids of wireguard-go processes serving this run's interfaces (names start with `prefix`). */
function ourWireguardGo(prefix = P): number[] {
  const pids: number[] = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')
      if (argv.some((a) => a.endsWith('wireguard-go')) && argv.some((a) => a.startsWith(prefix)))
        pids.push(Number(d))
    } catch {
      // gone
    }
  }
  return pids
}

/**
 * Starts the test tool's listeners in namespace `ns` (node b offers 8080 and 22, node a 9000, for
 * b's own connections) and resolves once it says ready; rejects if it exits first.
 */
async function startListeners(tool: string, ns: string, node: 'a' | 'b'): Promise<ChildProcess> {
  const p = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, tool, 'listen', ...(node === 'b' ? ['8080', '22'] : ['9000'])],
    {stdio: ['ignore', 'pipe', 'ignore']},
  )
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve())
    p.once('exit', (code) => reject(new Error(`listener in ${node} exited ${code}`)))
  })
  return p
}

describe.skipIf(!canRun)('inbound rules in nftables between two wireguard-go nodes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-firewall-'))
  const tool = path.join(dir, 'tcp-tool.mjs')
  const procs: ChildProcess[] = []
  const drivers: Partial<Record<Node, UserspaceDriver>> = {}
  const keys = {a: generateKeyPair(), b: generateKeyPair()}
  /** nft inside B (through `ip netns exec`, still no shell). */
  const nftInB: NftRunner = async (args, opts) => {
    const res = await execa('ip', ['netns', 'exec', NS.b, 'nft', ...args], {
      reject: false,
      timeout: opts.timeoutMs,
      input: opts.input,
    })
    return {exitCode: res.exitCode ?? 1, stderr: String(res.stderr ?? '').trim()}
  }
  const firewall = new Firewall({run: nftInB})

  const runner =
    (ns: string): CommandRunner =>
    (cmd, args, opts) =>
      execaRunner('ip', ['netns', 'exec', ns, cmd, ...args], opts)

  const connect = (from: Node, to: string, port: number): string =>
    sh(process.execPath, [tool, 'connect', to, String(port), '1000'], NS[from]).trim()
  const probe = (from: Node, to: string): string =>
    sh(process.execPath, [tool, 'udp', to, '1000'], NS[from]).trim()
  const ping = (from: Node, to: string): boolean =>
    spawnSync('ip', ['netns', 'exec', NS[from], 'ping', '-c', '1', '-W', '1', to], {
      stdio: 'ignore',
      timeout: 10_000,
    }).status === 0

  const rulesOfB = (inboundOfA: InboundRule[] | undefined) =>
    firewall.apply({
      iface: IFACE.b,
      cidr: CIDR,
      self: MESH.b,
      peers: [{address: MESH.a, inbound: inboundOfA}],
      daemonUdpPorts: [PROBE_PORT],
    })

  beforeAll(async () => {
    fs.writeFileSync(tool, TCP_TOOL)
    for (const n of ['a', 'b'] as const) {
      sh('ip', ['netns', 'add', NS[n]])
      sh('ip', ['link', 'set', 'lo', 'up'], NS[n])
    }
    sh('ip', [
      'link',
      'add',
      `${P}va`,
      'netns',
      NS.a,
      'type',
      'veth',
      'peer',
      'name',
      `${P}vb`,
      'netns',
      NS.b,
    ])
    for (const n of ['a', 'b'] as const) {
      sh('ip', ['addr', 'add', `${UNDERLAY[n]}/24`, 'dev', `${P}v${n}`], NS[n])
      sh('ip', ['link', 'set', `${P}v${n}`, 'up'], NS[n])
    }
    for (const n of ['a', 'b'] as const) {
      const other: Node = n === 'a' ? 'b' : 'a'
      const binary = path.join(dir, `wireguard-go-${n}`)
      fs.writeFileSync(binary, `#!/bin/sh\nexec ip netns exec ${NS[n]} wireguard-go "$@"\n`, {mode: 0o755})
      drivers[n] = new UserspaceDriver({
        logDir: path.join(dir, `log-${n}`),
        binary,
        pollMs: 60_000,
        runner: runner(NS[n]),
      })
      const res = await drivers[n].apply({
        name: IFACE[n],
        privateKey: keys[n].privateKey,
        listenPort: 51820,
        address: `${MESH[n]}/24`,
        mtu: 1420,
        peers: [
          {
            publicKey: keys[other].publicKey,
            allowedIps: [`${MESH[other]}/32`],
            endpoint: `${UNDERLAY[other]}:51820`,
            persistentKeepalive: 0,
          },
        ],
      })
      expect(res.failed ?? []).toEqual([])
      procs.push(await startListeners(tool, NS[n], n))
    }
    // The tunnel works before any rule: the first handshake is not what the tests measure.
    await waitFor('the tunnel up', () => ping('b', MESH.a), 10_000, 50)
  })

  afterAll(async () => {
    for (const p of procs) if (p.pid !== undefined && p.exitCode === null) p.kill('SIGTERM')
    for (const n of ['a', 'b'] as const) {
      await drivers[n]?.remove(IFACE[n]).catch(() => {})
      await drivers[n]?.close()
    }
    for (const pid of ourWireguardGo()) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // already gone
      }
    }
    for (const n of ['a', 'b'] as const) {
      spawnSync('ip', ['netns', 'del', NS[n]], {stdio: 'ignore'})
      fs.rmSync(`/var/run/wireguard/${IFACE[n]}.sock`, {force: true})
    }
    fs.rmSync(dir, {recursive: true, force: true})
  })

  it('accepts every golden script in an nft syntax check', () => {
    for (const name of Object.keys(GOLDEN_CASES)) {
      const file = path.join(import.meta.dirname, 'testdata', `${name}.nft`)
      const r = spawnSync('ip', ['netns', 'exec', NS.b, 'nft', '-c', '-f', file], {
        encoding: 'utf8',
        timeout: 20_000,
      })
      expect({name, stderr: r.stderr, status: r.status}).toEqual({name, stderr: '', status: 0})
    }
  })

  it('without rules lets A reach every port of B, and creates no table', async () => {
    await rulesOfB(undefined)
    expect(sh('nft', ['list', 'tables'], NS.b)).not.toContain('mesh_')
    expect(connect('a', MESH.b, 22)).toBe('connected')
    expect(ping('a', MESH.b)).toBe(true)
  })

  it('with tcp 8080 for A: A reaches 8080 only, no ICMP, and B still reaches A with replies', async () => {
    expect((await rulesOfB([{proto: 'tcp', ports: [[8080, 8080]]}])).changed).toBe(true)
    expect(sh('nft', ['list', 'tables'], NS.b)).toContain(`table inet mesh_${IFACE.b}`)
    expect(connect('a', MESH.b, 8080)).toBe('connected')
    expect(connect('a', MESH.b, 22)).toBe('timeout')
    expect(ping('a', MESH.b)).toBe(false)
    // meshd's path probes (and upgrades) from A still get in and answered.
    expect(probe('a', MESH.b)).toBe('answered')
    // B's own connection and ping: the replies come back in through the table.
    expect(connect('b', MESH.a, 9000)).toBe('connected')
    expect(ping('b', MESH.a)).toBe(true)
  })

  it('lets ICMP from A in once the rules allow it, and still not port 22', async () => {
    await rulesOfB([{proto: 'tcp', ports: [[8080, 8080]]}, {proto: 'icmp'}])
    expect(ping('a', MESH.b)).toBe(true)
    expect(connect('a', MESH.b, 22)).toBe('timeout')
  })

  it('lets A reach port 22 once its rules become all', async () => {
    await rulesOfB([{proto: 'all'}])
    expect(connect('a', MESH.b, 22)).toBe('connected')
  })

  it('with [] for A lets only replies in', async () => {
    await rulesOfB([])
    expect(connect('a', MESH.b, 8080)).toBe('timeout')
    expect(connect('b', MESH.a, 9000)).toBe('connected')
    expect(probe('a', MESH.b)).toBe('answered')
  })

  it('removes the table with the interface', async () => {
    await drivers.b!.remove(IFACE.b)
    await firewall.remove(IFACE.b)
    expect(sh('nft', ['list', 'tables'], NS.b)).not.toContain('mesh_')
    // A missing table is fine.
    await new Firewall({run: nftInB}).remove(IFACE.b)
  })
})

/**
 * A stand-in controller for the daemon test: one port per node (`node=port` arguments), any HTTP
 * request answered 200 `{}`, and a WebSocket that sends the node the last full map it was given.
 * Frames come in on stdin as JSON lines `{node, frame}`: a full map is kept and sent, a delta is
 * only sent. Test-only.
 */
const CONTROLLER = `
import http from 'node:http'
import readline from 'node:readline'
import {createRequire} from 'node:module'
const [pkg, ...pairs] = process.argv.slice(2)
const {WebSocketServer} = createRequire(pkg)('ws')
const full = {}
const socks = {}
let listening = 0
for (const pair of pairs) {
  const [node, port] = pair.split('=')
  socks[node] = new Set()
  const server = http.createServer((req, res) => { req.resume(); res.writeHead(200, {'content-type': 'application/json'}).end('{}') })
  new WebSocketServer({server}).on('connection', (ws) => {
    socks[node].add(ws)
    ws.on('close', () => socks[node].delete(ws))
    if (full[node]) ws.send(JSON.stringify(full[node]))
  })
  server.listen(Number(port), '0.0.0.0', () => { if (++listening === pairs.length) console.log('ready') })
}
readline.createInterface({input: process.stdin}).on('line', (line) => {
  const {node, frame} = JSON.parse(line)
  if (frame.type === 'full') full[node] = frame
  for (const ws of socks[node]) ws.send(JSON.stringify(frame))
})
`

describe.skipIf(!canRun || !fs.existsSync(path.join(ROOT, 'dist', 'daemon', 'main.js')))(
  'meshd enforcing the netmap inbound rules (real daemons, wireguard-go, nftables)',
  () => {
    const Q = `fd${randomBytes(2).toString('hex')}`
    const NSD = {a: `${Q}-a`, b: `${Q}-b`}
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-firewall-d-'))
    const tool = path.join(dir, 'tcp-tool.mjs')
    const procs: ChildProcess[] = []
    const daemons: Partial<Record<Node, ChildProcess>> = {}
    let controller: ChildProcess | undefined
    const sock = {a: path.join(dir, 'a.sock'), b: path.join(dir, 'b.sock')}
    const ports = {a: 7101, b: 7102}
    const pub: Partial<Record<Node, string>> = {}

    const mesh = (node: Node, args: string[]) =>
      spawnSync(process.execPath, [path.join(ROOT, 'bin', 'mesh.js'), ...args, '--socket', sock[node]], {
        encoding: 'utf8',
        timeout: 60_000,
      })
    const status = (node: Node): Status => {
      const r = mesh(node, ['status', '--json'])
      if (r.status !== 0) throw new Error(`mesh status ${node}: ${r.stdout}${r.stderr}`)
      return StatusSchema.parse(JSON.parse(r.stdout))
    }
    const connect = (from: Node, to: string, port: number): string =>
      sh(process.execPath, [tool, 'connect', to, String(port), '1000'], NSD[from]).trim()
    const tables = (): string => sh('nft', ['list', 'tables'], NSD.b)
    const push = (node: Node, frame: unknown): void => {
      controller!.stdin!.write(`${JSON.stringify({node, frame})}\n`)
    }
    const peerEntry = (node: Node, inbound?: InboundRule[]) => ({
      id: `node-${node}`,
      name: `node-${node}`,
      publicKey: pub[node]!,
      address: MESH[node],
      endpoints: [`${UNDERLAY[node]}:51999`],
      hostname: node,
      os: 'linux',
      tags: [],
      ...(inbound !== undefined && {inbound}),
    })

    /** The full map of `n`: its one peer with `inbound` (what `n` accepts from it). */
    const fullMap = (n: Node, version: number, inbound?: InboundRule[]) => ({
      type: 'full',
      version,
      network: {id: 'net1', name: 'lab', cidr: CIDR},
      self: {id: `node-${n}`, name: `node-${n}`, publicKey: pub[n], address: MESH[n], status: 'active'},
      peers: [peerEntry(n === 'a' ? 'b' : 'a', inbound)],
    })

    beforeAll(async () => {
      fs.writeFileSync(tool, TCP_TOOL)
      fs.writeFileSync(path.join(dir, 'controller.mjs'), CONTROLLER)
      for (const n of ['a', 'b'] as const) {
        sh('ip', ['netns', 'add', NSD[n]])
        sh('ip', ['link', 'set', 'lo', 'up'], NSD[n])
      }
      sh('ip', [
        'link',
        'add',
        `${Q}va`,
        'netns',
        NSD.a,
        'type',
        'veth',
        'peer',
        'name',
        `${Q}vb`,
        'netns',
        NSD.b,
      ])
      for (const n of ['a', 'b'] as const) {
        sh('ip', ['addr', 'add', `${UNDERLAY[n]}/24`, 'dev', `${Q}v${n}`], NSD[n])
        sh('ip', ['link', 'set', `${Q}v${n}`, 'up'], NSD[n])
      }
      // The controller runs in A's namespace; B reaches it over the veth.
      controller = spawn(
        'ip',
        [
          'netns',
          'exec',
          NSD.a,
          process.execPath,
          path.join(dir, 'controller.mjs'),
          path.join(ROOT, 'package.json'),
          `a=${ports.a}`,
          `b=${ports.b}`,
        ],
        {stdio: ['pipe', 'pipe', 'inherit']},
      )
      procs.push(controller)
      await new Promise<void>((resolve, reject) => {
        controller!.stdout!.once('data', () => resolve())
        controller!.once('exit', (code) => reject(new Error(`controller exited ${code}`)))
      })
      for (const n of ['a', 'b'] as const) {
        const {keys: k} = seedNetwork(path.join(dir, n), {
          controller: `http://${UNDERLAY.a}:${ports[n]}`,
          cidr: CIDR,
          address: MESH[n],
          interface: `${Q}${n}0`,
          nodeId: `node-${n}`,
          nodeName: `node-${n}`,
        })
        pub[n] = k.publicKey
      }
      for (const n of ['a', 'b'] as const) {
        // B lets A in on tcp 8080 only; A accepts everything from B.
        push(n, fullMap(n, 1, n === 'b' ? [{proto: 'tcp', ports: [[8080, 8080]]}] : undefined))
        const log = fs.openSync(path.join(dir, `meshd-${n}.log`), 'a')
        const d = spawn(
          'ip',
          [
            'netns',
            'exec',
            NSD[n],
            process.execPath,
            path.join(ROOT, 'bin', 'mesh.js'),
            'daemon',
            'run',
            '--socket',
            sock[n],
            '--state-dir',
            path.join(dir, n, 'state'),
            '--interface-prefix',
            `${Q}${n}`,
            '--log-level',
            'debug',
          ],
          {stdio: ['ignore', log, log]},
        )
        fs.closeSync(log)
        procs.push(d)
        daemons[n] = d
        procs.push(await startListeners(tool, NSD[n], n))
      }
      for (const n of ['a', 'b'] as const)
        await waitFor(
          `meshd ${n} with its peer`,
          () => status(n).networks[0]?.peers.length === 1,
          30_000,
          100,
        )
    })

    afterAll(async () => {
      for (const n of ['a', 'b'] as const) {
        const d = daemons[n]
        if (d && d.exitCode === null) {
          d.kill('SIGTERM')
          await waitFor(`meshd ${n} to exit`, () => d.exitCode !== null, 10_000).catch(() =>
            d.kill('SIGKILL'),
          )
        }
      }
      for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM')
      for (const pid of ourWireguardGo(Q)) {
        try {
          process.kill(pid, 'SIGTERM')
        } catch {
          // already gone
        }
      }
      for (const n of ['a', 'b'] as const) {
        spawnSync('ip', ['netns', 'del', NSD[n]], {stdio: 'ignore'})
        fs.rmSync(`/var/run/wireguard/${Q}${n}0.sock`, {force: true})
      }
      fs.rmSync(dir, {recursive: true, force: true})
    })

    it('puts the rules of B into nftables: A reaches 8080, not 22; B reaches A', async () => {
      await waitFor('the table in B', () => tables().includes(`mesh_${Q}b0`), 10_000, 50)
      expect(status('b').networks[0]!.lastError).toBeNull()
      // The first connection also carries the first handshake: a few bounded tries.
      await waitFor('A to reach B:8080', () => connect('a', MESH.b, 8080) === 'connected', 15_000, 0)
      expect(connect('a', MESH.b, 22)).toBe('timeout')
      expect(connect('b', MESH.a, 9000)).toBe('connected')
    })

    it('follows a delta that changes the rules to all, then to no policy (no table)', async () => {
      push('b', {type: 'delta', version: 2, changed: [peerEntry('a', [{proto: 'all'}])]})
      await waitFor('A to reach B:22', () => connect('a', MESH.b, 22) === 'connected', 15_000, 0)
      push('b', {type: 'delta', version: 3, changed: [peerEntry('a')]})
      await waitFor('the table gone', () => !tables().includes('mesh_'), 10_000, 50)
      expect(connect('a', MESH.b, 22)).toBe('connected')
    })

    it('removes the table on `mesh down` and puts it back on `mesh up`', async () => {
      // A full map, which the stand-in also keeps for the reconnect after `mesh up`.
      push('b', fullMap('b', 4, []))
      await waitFor('the table back', () => tables().includes(`mesh_${Q}b0`), 10_000, 50)
      await waitFor('A shut out', () => connect('a', MESH.b, 8080) === 'timeout', 15_000, 0)
      expect(mesh('b', ['down']).status).toBe(0)
      expect(tables()).not.toContain('mesh_')
      expect(mesh('b', ['up']).status).toBe(0)
      await waitFor('the table after up', () => tables().includes(`mesh_${Q}b0`), 10_000, 50)
      expect(connect('a', MESH.b, 8080)).toBe('timeout')
      expect(connect('b', MESH.a, 9000)).toBe('connected')
    })
  },
)
