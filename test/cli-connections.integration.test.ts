/**
 * `mesh node show` with connections, and `mesh topology`: the BUILT CLI against a real
 * controller on a temp SQLite file, after two nodes reported their paths over the netmap
 * WebSocket; and the CLI's client of the admin event stream against the same controller.
 * Needs `bash scripts/build.sh` first (the test fails with that hint otherwise).
 */
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'
import {client, publicKey} from '../controller/testing/client.js'
import {startTestController, type TestController} from '../controller/testing/test-controller.js'
import {connectWs, type WsClient} from '../controller/testing/ws-client.js'
import {NodeDetailSchema} from '../shared/protocol/control-api.js'
import {ROOT, json, mesh} from './cli-runner.js'

describe('mesh node show: connections', () => {
  let ctl: TestController
  let tmp: string
  let configDir: string
  const sockets: WsClient[] = []
  const ids: Record<string, string> = {}
  const run = (args: string[], input?: string) => mesh(args, {configDir, input})

  beforeAll(async () => {
    if (!existsSync(path.join(ROOT, 'dist/cli/commands/node/show.js'))) {
      throw new Error('the CLI is not built: run `bash scripts/build.sh` first')
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'mesh-cli-conn-'))
    configDir = path.join(tmp, 'config')
    ctl = await startTestController({dataDir: path.join(tmp, 'controller'), connectionFlushMs: 20})
    const api = client(ctl.url)
    const net = await api.req('POST', '/api/v1/networks', {
      token: ctl.adminToken,
      body: {name: 'lab', cidr: '10.98.0.0/24', joinPolicy: 'open'},
    })
    expect(net.status, net.text).toBe(201)
    const creds: Record<string, string> = {}
    for (const name of ['alpha', 'beta', 'gamma', 'delta']) {
      const r = await api.req('POST', '/api/v1/register', {
        token: ctl.adminToken,
        body: {network: (net.body as {id: string}).id, publicKey: publicKey(), name},
      })
      expect(r.status, r.text).toBe(201)
      ids[name] = (r.body as {node: {id: string}}).node.id
      creds[name] = (r.body as {credential: string}).credential
    }
    // alpha reaches beta directly and gamma through the relay; delta is not connected.
    const ws = await connectWs(`${ctl.url}/api/v1/netmap`, creds.alpha!)
    sockets.push(ws)
    await ws.next((f: {type: string}) => f.type === 'full')
    ws.ws.send(
      JSON.stringify({
        type: 'report',
        reset: true,
        peers: [
          {id: ids.beta, online: true, endpoint: '198.51.100.21:51820', path: 'direct', latencyMs: 3.25},
          {id: ids.gamma, online: true, endpoint: '127.0.0.1:40001', path: 'relay', latencyMs: 41},
          {id: ids.delta, online: false, endpoint: null, path: 'none'},
        ],
      }),
    )
    const hub = ctl.running.server.netmap
    // delta is offline: the hub keeps only live links.
    await vi.waitFor(() => expect(hub.peerLinks((net.body as {id: string}).id, ids.alpha!).size).toBe(2), {
      timeout: 5000,
      interval: 10,
    })
    await ctl.running.state.connections.flush()
    const login = await run(
      ['login', '--controller', ctl.url, '--user', 'admin', '--password-stdin'],
      `${ctl.adminPassword}\n`,
    )
    expect(login.code, login.stderr).toBe(0)
  })

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.close()))
    await ctl?.close()
    if (tmp) await fs.rm(tmp, {recursive: true, force: true})
  })

  it('lists each peer with its path, latency, endpoint and since, lowest latency first', async () => {
    const r = await run(['node', 'show', 'alpha', '--network', 'lab'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^name:\s+alpha$/m)
    const lines = r.stdout.split('\n')
    const head = lines.findIndex((l) => l.startsWith('PEER'))
    expect(lines[head]).toMatch(/^PEER\s+PATH\s+LATENCY\s+ENDPOINT\s+SINCE$/)
    expect(lines[head + 1]).toMatch(
      /^beta\s+direct\s+3\.3 ms\s+198\.51\.100\.21:51820\s+\d{4}-\d\d-\d\d \d\d:\d\dZ$/,
    )
    expect(lines[head + 2]).toMatch(/^gamma\s+relay\s+41 ms\s+-\s+\d{4}-/)
    expect(r.stdout).not.toContain('delta')
  })

  it('has the connections in --json, seen from the node shown', async () => {
    const detail = json(NodeDetailSchema, await run(['node', 'show', ids.beta!, '--json']))
    expect(detail.id).toBe(ids.beta)
    expect(detail.connections).toEqual([
      {
        peer: {id: ids.alpha, name: 'alpha'},
        path: 'direct',
        latencyMs: 3.25,
        // beta did not report: the endpoint beta's WireGuard uses for alpha is unknown.
        endpoint: null,
        since: expect.any(String),
      },
    ])
    const none = json(NodeDetailSchema, await run(['node', 'show', 'delta', '--network', 'lab', '--json']))
    expect(none.connections).toEqual([])
    const text = await run(['node', 'show', 'delta', '--network', 'lab'])
    expect(text.stdout).toContain('No connections reported.')
  })

  it('prints the network as a graph once with `mesh topology --json` (nodes, direct and relayed edges)', async () => {
    const r = await run(['topology', 'lab', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const g = JSON.parse(r.stdout) as {
      network: {name: string}
      nodes: {name: string}[]
      edges: {a: string; b: string; path: string; latencyMs: number | null}[]
    }
    expect(g.network.name).toBe('lab')
    expect(g.nodes.map((n) => n.name)).toEqual(['alpha', 'beta', 'delta', 'gamma'])
    const pair = (x: string, y: string) => [ids[x]!, ids[y]!].sort().join(' ')
    expect(g.edges.map((e) => `${[e.a, e.b].sort().join(' ')} ${e.path}`).sort()).toEqual(
      [`${pair('alpha', 'beta')} direct`, `${pair('alpha', 'gamma')} relay`].sort(),
    )
    // Not on a terminal, and without --json: plain lines, printed once.
    const text = await run(['topology'])
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/^lab: 4 nodes \(\d online\), 1 direct, 1 relayed paths$/m)
    expect(text.stdout).toMatch(/ alpha 10\.98\.0\.\d+\s+direct: beta\s+relay: gamma$/m)
  })

  it('follows the admin event stream: a snapshot first, then a node that registers', async () => {
    const {watchAdminEvents} = await import('../cli/lib/controller-events.js')
    const snapshots: string[][] = []
    const added: string[] = []
    let gotSnapshot: () => void = () => undefined
    const snap = new Promise<void>((r) => (gotSnapshot = r))
    let gotAdded: () => void = () => undefined
    const add = new Promise<void>((r) => (gotAdded = r))
    const w = watchAdminEvents(
      {controller: ctl.url, token: ctl.adminToken},
      {
        onSnapshot: (nodes) => {
          snapshots.push(nodes.map((n) => n.name).sort())
          gotSnapshot()
        },
        onEvent: (ev) => {
          if (ev.type === 'node_added') {
            added.push(ev.node.name)
            gotAdded()
          }
        },
      },
    )
    try {
      await snap
      expect(snapshots[0]).toEqual(['alpha', 'beta', 'delta', 'gamma'])
      const net = await client(ctl.url).req('GET', '/api/v1/networks/lab', {token: ctl.adminToken})
      const r = await client(ctl.url).req('POST', '/api/v1/register', {
        token: ctl.adminToken,
        body: {network: (net.body as {id: string}).id, publicKey: publicKey(), name: 'echo'},
      })
      expect(r.status, r.text).toBe(201)
      await add
      expect(added).toEqual(['echo'])
    } finally {
      w.close()
      await w.ended
    }
  })

  it('ends the event stream with UNAUTHENTICATED for a token the controller refuses', async () => {
    const {watchAdminEvents} = await import('../cli/lib/controller-events.js')
    const w = watchAdminEvents(
      {controller: ctl.url, token: 'not-a-token'},
      {onSnapshot: () => {}, onEvent: () => {}},
    )
    const err = (await w.ended.catch((e: unknown) => e)) as {code?: string}
    expect(err?.code).toBe('UNAUTHENTICATED')
  })
})
