// ACL policy change benchmark (not a test): how long a policy set and a policy removal take to
// reach every node of a network of N connected nodes, measured end to end: from the PUT/DELETE
// /api/v1/policy request to the last node's first frame after it, with the controller's CPU.
// One `mesh controller start` (SQLite) in a child process; N simulated nodes (bench/lib/sim-node.mjs,
// the real netmap protocol) in this one. Half the nodes are tag:a, half tag:b; the policy lets
// tag:a reach tag:a on every port and tag:b reach tag:a on 443, so every node sees about half
// the network with inbound rules on some entries; removing it gives every node every peer.
// Run: `bash scripts/build.sh && source scripts/node-env.sh && node bench/policy-change.mjs
// [--nodes 1000] [--repeats 3] [--json]`; --text: the nodes do not take gzipped full maps (as
// meshd before NETMAP_GZIP). CPU profile of the controller: `--prof DIR` (passes
// --cpu-prof to its Node).
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'
import nacl from 'tweetnacl'
import {Agent, request} from 'undici'
import {SimNode, Swarm, endpointOf} from './lib/sim-node.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const ADMIN_PASSWORD = 'bench-admin-password'
const {values: opts} = parseArgs({
  options: {
    nodes: {type: 'string', default: '1000'},
    repeats: {type: 'string', default: '3'},
    prof: {type: 'string'},
    text: {type: 'boolean', default: false},
    json: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log(
    'usage: node bench/policy-change.mjs [--nodes 1000] [--repeats 3] [--text] [--prof DIR] [--json]',
  )
  process.exit(0)
}
const N = Number(opts.nodes)
const REPEATS = Number(opts.repeats)
const POLICY = JSON.stringify({
  acls: [
    {src: ['tag:a'], dst: ['tag:a:*']},
    {src: ['tag:b'], dst: ['tag:a:443'], proto: 'tcp'},
  ],
})
const log = (...a) => !opts.json && console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a)
const publicKey = () => Buffer.from(nacl.box.keyPair().publicKey).toString('base64')
const cpuOf = async (pid) => {
  const {readFile} = await import('node:fs/promises')
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

const agent = new Agent({connections: 32})
async function call(url, method, p, {token, body} = {}) {
  const headers = {}
  if (token) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await request(new URL(p, url), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    dispatcher: agent,
  })
  const text = await res.body.text()
  if (res.statusCode >= 300) throw new Error(`${method} ${p}: ${res.statusCode} ${text.slice(0, 300)}`)
  return text === '' ? {} : JSON.parse(text)
}

const dir = mkdtempSync(path.join(tmpdir(), 'mesh-bench-policy-'))
const child = spawn(
  process.execPath,
  [
    ...(opts.prof ? ['--cpu-prof', '--cpu-prof-dir', opts.prof] : []),
    'bin/mesh.js',
    'controller',
    'start',
    '--data-dir',
    dir,
    '--listen',
    '127.0.0.1:0',
    '--stun-listen',
    '127.0.0.1:0',
    '--discovery-listen',
    '127.0.0.1:0',
  ],
  {cwd: ROOT, env: {...process.env, MESH_ADMIN_PASSWORD: ADMIN_PASSWORD}, stdio: ['ignore', 'pipe', 'pipe']},
)
const nodes = []
const stop = async () => {
  for (const n of nodes) n.ws?.terminate()
  if (child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
  }
  rmSync(dir, {recursive: true, force: true})
}
try {
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('controller: no "listening" in 30 s')), 30_000)
    child.once('exit', (code) => reject(new Error(`controller exited (${code})`)))
    createInterface({input: child.stdout}).on('line', (line) => {
      if (!line.includes('"listening"')) return
      clearTimeout(timer)
      resolve(JSON.parse(line).url)
    })
  })
  const {token} = await call(url, 'POST', '/api/v1/login', {
    body: {username: 'admin', password: ADMIN_PASSWORD},
  })
  const net = await call(url, 'POST', '/api/v1/networks', {token, body: {name: 'bench', cidr: '10.0.0.0/16'}})
  const keys = []
  for (const tag of ['tag:a', 'tag:b'])
    keys.push(
      (
        await call(url, 'POST', `/api/v1/networks/${net.id}/authkeys`, {
          token,
          body: {reusable: true, preApproved: true, tags: [tag]},
        })
      ).key,
    )
  const regs = []
  for (let i = 0; i < N; i += 32)
    regs.push(
      ...(await Promise.all(
        Array.from({length: Math.min(32, N - i)}, (_, k) =>
          call(url, 'POST', '/api/v1/register', {
            body: {
              authKey: keys[(i + k) % 2],
              publicKey: publicKey(),
              name: `node-${i + k}`,
              hostname: 'bench',
              os: 'linux',
              endpoints: [endpointOf(i + k)],
            },
          }),
        ),
      )),
    )
  log(`${N} nodes registered (half tag:a, half tag:b)`)
  const swarm = new Swarm({ids: regs.map((r) => r.node.id), active: 8, gzip: !opts.text})
  const ws = `${url.replace(/^http/, 'ws')}/api/v1/netmap`
  for (let i = 0; i < N; i++) nodes.push(new SimNode(swarm, i, regs[i].credential, ws))
  const deadline = performance.now() + 120_000
  for (let i = 0; i < N; i += 200)
    await Promise.all(nodes.slice(i, i + 200).map((n) => n.connect({deadline})))
  log(`${N} nodes hold a map`)

  /** Times one policy request until every node had a frame after it (bounded: 60 s). */
  const timeChange = async (what, fn) => {
    const frames = nodes.map(() => 0)
    const done = new Array(N).fill(0)
    let left = N
    let resolveAll
    const all = new Promise((r) => (resolveAll = r))
    const t0 = performance.now()
    const types = new Map()
    // Only this listener while timing: parsing 1,000 maps here would time the bench, not the hub.
    nodes.forEach((n, i) =>
      n.ws.removeAllListeners('message').on('message', function onMsg(data) {
        frames[i] += data.length
        const gz = data[0] === 0x1f && data[1] === 0x8b
        const t = `${gz ? 'gzip ' : ''}${
          data
            .subarray(gz ? 15 : 0, (gz ? 15 : 0) + 40)
            .toString()
            .match(/"type":"(\w+)"/)?.[1]
        }`
        types.set(t, (types.get(t) ?? 0) + 1)
        if (done[i] === 0) {
          done[i] = performance.now() - t0
          if (--left === 0) resolveAll()
        }
      }),
    )
    const cpu0 = await cpuOf(child.pid)
    const r0 = performance.now()
    await fn()
    const replyMs = performance.now() - r0
    const timeout = new Promise((_, rej) =>
      setTimeout(() => rej(new Error(`${what}: ${left} nodes had no frame in 60 s`)), 60_000),
    )
    await Promise.race([all, timeout])
    const cpu = (await cpuOf(child.pid)) - cpu0
    for (const n of nodes) n.ws.removeAllListeners('message').on('message', (d) => n.onFrame(d))
    const sorted = [...done].sort((a, b) => a - b)
    const r = {
      what,
      replyMs: Math.round(replyMs),
      p50Ms: Math.round(sorted[Math.floor(N / 2)]),
      lastMs: Math.round(sorted[N - 1]),
      bytesPerNode: Math.round(frames.reduce((a, b) => a + b, 0) / N),
      controllerCpuS: Math.round(cpu * 100) / 100,
      frames: Object.fromEntries(types),
    }
    log(
      `${what}: reply ${r.replyMs} ms, p50 ${r.p50Ms} ms, last node ${r.lastMs} ms, ${r.bytesPerNode} B/node, controller CPU ${r.controllerCpuS} s; frames ${JSON.stringify(r.frames)}`,
    )
    return r
  }
  const results = []
  for (let k = 0; k < REPEATS; k++) {
    results.push(
      await timeChange('set', () => call(url, 'PUT', '/api/v1/policy', {token, body: {document: POLICY}})),
    )
    results.push(await timeChange('remove', () => call(url, 'DELETE', '/api/v1/policy', {token})))
  }
  const summary = {nodes: N, loadAverage: loadavg().map((l) => Math.round(l * 100) / 100), results}
  if (opts.json) console.log(JSON.stringify(summary, null, 2))
  else log(`load average ${summary.loadAverage.join(' ')} (a shared machine: figures are under contention)`)
} finally {
  await stop()
  await agent.close()
}
