// Controller scale benchmark (not a test). For each size and each backend — SQLite on one
// controller, and two replicas on one PostgreSQL — it:
//  1. registers N nodes into one network (the join storm; through the replicas alternately),
//  2. restarts the controller(s) and connects all N simulated nodes at once (node i to replica
//     i mod R): the cold start, timed until every node holds its full map,
//  3. lets the nodes report as meshd does (bench/lib/sim-node.mjs) and, while they do, registers
//     one more node through replica 1 and times its `added` delta at every node (on both
//     replicas), a few times: p50/p99, bytes per node, and the controllers' CPU and RSS,
//  4. restarts the controller(s) again with every node connected: all reconnect at once with
//     ?version=N (as meshd does) and the time until every node holds a map again is taken,
// then prints one table with a row per configuration, the issue-9 goals with PASS/FAIL, and
// where the cold-start time goes. Run: `npm run bench:controller -- --nodes 1000` (--help).
import {spawn} from 'node:child_process'
import {mkdtempSync, mkdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'
import {deflateRawSync, gunzipSync} from 'node:zlib'
import nacl from 'tweetnacl'
import {Agent, request} from 'undici'
import {cpuSeconds, cpuWindow, fdLimit, loadAverage, memory, postgresCpuSeconds} from './lib/proc.mjs'
import {SimNode, Swarm, endpointOf, startReporting} from './lib/sim-node.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const ADMIN_PASSWORD = 'bench-admin-password'

const {values: opts} = parseArgs({
  options: {
    nodes: {type: 'string', default: '1000,10000'},
    backends: {type: 'string', default: 'sqlite,postgres'},
    quick: {type: 'boolean', default: false},
    repeats: {type: 'string', default: '5'},
    'active-peers': {type: 'string', default: '8'},
    'latency-churn': {type: 'string', default: '0.1'},
    'report-view': {type: 'string', default: 'active'},
    encoding: {type: 'string', default: 'gzip'},
    settle: {type: 'string', default: '12'},
    'register-concurrency': {type: 'string', default: '32'},
    'connect-limit': {type: 'string', default: '300'},
    'connect-concurrency': {type: 'string', default: '0'},
    'rss-abort': {type: 'string', default: '6144'},
    'no-restart': {type: 'boolean', default: false},
    'time-limit': {type: 'string', default: '3600', short: 't'},
    json: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log(`usage: npm run bench:controller -- [options]
  --nodes N,M              sizes (default 1000,10000; --quick: 300)
  --backends LIST          sqlite,postgres (default both)
  --quick                  300 nodes, 3 repeats, short settle: to try it out
  --repeats R              changes timed per configuration (default 5)
  --active-peers K         peers each node has a handshake with (default 8)
  --report-view active|all what reports list: the peers with a handshake (active: meshd), or
                           every peer of the netmap, as meshd did before 2026-12-03 (all)
  --encoding gzip|text     how nodes ask for full maps: gzipped (gzip: meshd) or as text
  --latency-churn F        share of later reports carrying one moved latency (default 0.1)
  --settle S               seconds of reporting before the changes are timed (default 12)
  --register-concurrency C registrations in flight in the join storm (default 32)
  --connect-concurrency C  sessions opening at a time in the cold start and the reconnect
                           (default 0: all at once, as nodes do after an outage)
  --connect-limit S        seconds a cold start or reconnect may take (default 300)
  --rss-abort MiB          give up a configuration when a controller grows past this (default 6144)
  --no-restart             skip the reconnect after a restart (step 4)
  --time-limit S           the whole run (default 3600)
  --json                   results as JSON`)
  process.exit(0)
}
const SIZES = (opts.quick && opts.nodes === '1000,10000' ? '300' : opts.nodes).split(',').map(Number)
const BACKENDS = opts.backends.split(',')
const REPEATS = opts.quick ? 3 : Number(opts.repeats)
const ACTIVE = Number(opts['active-peers'])
const LATENCY_CHURN = Number(opts['latency-churn'])
const REPORT_VIEW = opts['report-view']
if (!['all', 'active'].includes(REPORT_VIEW)) throw new Error('--report-view is all or active')
const ENCODING = opts.encoding
if (!['gzip', 'text'].includes(ENCODING)) throw new Error('--encoding is gzip or text')
const SETTLE_S = opts.quick ? 4 : Number(opts.settle)
const REG_CONCURRENCY = Number(opts['register-concurrency'])
const CONNECT_LIMIT_S = Number(opts['connect-limit'])
const CONNECT_CONCURRENCY = Number(opts['connect-concurrency'])
const RSS_ABORT_MIB = Number(opts['rss-abort'])
const TIME_LIMIT_S = Number(opts['time-limit'])

// ---------------------------------------------------------------------------------------------
// Small helpers

const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const log = (msg) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${msg}`)
const pct = (sorted, p) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN
const median = (xs) =>
  pct(
    xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b),
    50,
  )
let seq = 0
const name = (prefix) => `${prefix}-${(seq++).toString(36)}`
const publicKey = () => Buffer.from(nacl.box.keyPair().publicKey).toString('base64')

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  return out
}

/** Waits until `cond()` or `ms` pass; polls every `every` ms. Returns whether cond held. */
async function until(cond, ms, every = 20) {
  const end = now() + ms
  while (now() < end) {
    if (cond()) return true
    await sleep(every)
  }
  return cond()
}

// ---------------------------------------------------------------------------------------------
// Controllers under test: the built CLI as child processes. Only these are ever killed, by pid.

const children = new Set()

function killChildren() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}
process.on('exit', killChildren)
for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => {
    killChildren()
    // process.exit runs the exit hooks: the PostgreSQL helper's stops the server, removes its dir.
    process.exit(130)
  })

/** One replica: a `mesh controller start` on a port that stays the same across restarts. */
class Replica {
  constructor(index, dataDir, database) {
    this.index = index
    this.dataDir = dataDir
    this.database = database
    this.listen = '127.0.0.1:0'
    this.url = ''
    this.child = null
    this.peakMiB = 0
    /** Warning and error log lines of all its runs: message -> count. */
    this.warnings = new Map()
  }

  get pid() {
    return this.child?.pid
  }

  async start() {
    const child = spawn(
      process.execPath,
      [
        'bin/mesh.js',
        'controller',
        'start',
        '--data-dir',
        this.dataDir,
        '--listen',
        this.listen,
        '--database',
        this.database,
        // Loopback, and free ports: two replicas on one host must not both want 3478 and 51820.
        '--stun-listen',
        '127.0.0.1:0',
        '--discovery-listen',
        '127.0.0.1:0',
      ],
      {
        cwd: ROOT,
        env: {...process.env, MESH_ADMIN_PASSWORD: ADMIN_PASSWORD},
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    this.child = child
    children.add(child)
    this.exited = new Promise((resolve) => child.once('exit', resolve))
    const tail = []
    createInterface({input: child.stderr}).on('line', (l) => tail.push(l) > 50 && tail.shift())
    this.url = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`replica ${this.index}: no "listening" in 30 s`)),
        30_000,
      )
      child.once('exit', (code, signal) =>
        reject(new Error(`replica ${this.index} exited (${code ?? signal}): ${tail.join('\n')}`)),
      )
      createInterface({input: child.stdout}).on('line', (line) => {
        // Warnings and errors (pino level >= 40) counted by message, for the notes.
        const level = Number(line.match(/"level":(\d+)/)?.[1])
        if (level >= 40) {
          const msg = (line.match(/"msg":"([^"]{0,80})/)?.[1] ?? '?').slice(0, 80)
          this.warnings.set(msg, (this.warnings.get(msg) ?? 0) + 1)
        }
        if (!line.includes('"listening"')) return
        try {
          const {url} = JSON.parse(line)
          if (url) {
            clearTimeout(timer)
            resolve(url)
          }
        } catch {
          // not the JSON line we wait for
        }
      })
    })
    // The same port after a restart: the nodes reconnect to where they were.
    this.listen = new URL(this.url).host
  }

  rss() {
    const m = memory(this.pid)
    this.peakMiB = Math.max(this.peakMiB, m.peakMiB || 0)
    return m
  }

  async stop() {
    const child = this.child
    if (!child) return
    this.rss()
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000)
    await this.exited
    clearTimeout(t)
    children.delete(child)
    this.child = null
  }
}

async function call(agent, url, method, p, {token, body} = {}) {
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
  return JSON.parse(text)
}

/** The controller's own fan-out time (mesh_netmap_fanout_seconds): sum and count, from /metrics. */
async function fanoutSeconds(url) {
  const res = await request(new URL('/metrics', url))
  const text = await res.body.text()
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1] ?? 0)
  return {sum: value('mesh_netmap_fanout_seconds_sum'), count: value('mesh_netmap_fanout_seconds_count')}
}

/** Fails the configuration when a replica grows past --rss-abort (10,000 nodes can need a lot). */
function watchRss(replicas, onAbort) {
  let failure = null
  const timer = setInterval(() => {
    for (const r of replicas) {
      const {rssMiB} = r.rss()
      if (rssMiB > RSS_ABORT_MIB && !failure) {
        failure = `replica ${r.index} RSS ${rssMiB.toFixed(0)} MiB > --rss-abort ${RSS_ABORT_MIB}`
        log(`${failure}: killing it`)
        onAbort(failure)
        r.child?.kill('SIGKILL')
      }
    }
  }, 500)
  return {
    check: () => {
      if (failure) throw new Error(failure)
    },
    stop: () => clearInterval(timer),
  }
}

// ---------------------------------------------------------------------------------------------
// The cold start and the reconnect: all nodes at once

/**
 * Connects every node at the same moment (resuming from its version when `resume`) and waits
 * until each holds a map. Returns the time, the controllers' CPU over it, and what came.
 */
async function connectAll(nodes, replicas, pgDir, {resume}) {
  const failures = nodes[0]?.swarm.failures
  failures?.clear()
  const cpu = cpuWindow([
    ...replicas.map((r) => () => cpuSeconds(r.pid)),
    () => (pgDir ? postgresCpuSeconds(pgDir) : NaN),
    () => process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  ])
  const t0 = now()
  const deadline = t0 + CONNECT_LIMIT_S * 1000
  let done = 0
  const one = (node) =>
    node.connect({version: resume ? node.version : undefined, deadline}).then((r) => {
      if (++done % 1000 === 0)
        log(`  ${done}/${nodes.length} hold a map (${((now() - t0) / 1000).toFixed(1)} s)`)
      return r
    })
  // All at once, or (--connect-concurrency) at most C sessions opening at a time.
  const results =
    CONNECT_CONCURRENCY > 0
      ? await mapLimit(nodes, CONNECT_CONCURRENCY, (node) =>
          one(node).then(
            (value) => ({status: 'fulfilled', value}),
            (reason) => ({status: 'rejected', reason}),
          ),
        )
      : await Promise.allSettled(nodes.map(one))
  const seconds = (now() - t0) / 1000
  const usage = cpu()
  const ok = results.filter((r) => r.status === 'fulfilled').map((r) => r.value)
  const failed = results.filter((r) => r.status === 'rejected')
  return {
    seconds,
    reached: ok.length,
    failed: failed.length,
    firstError: failed[0]?.reason?.message,
    retries: ok.reduce((s, r) => s + r.attempts - 1, 0),
    why: [...(failures ?? [])].map(([k, v]) => `${v}× ${k}`).join(', '),
    full: ok.filter((r) => r.type === 'full').length,
    firstBytes: median(nodes.filter((n) => n.hasMap).map((n) => n.firstFrame.bytes)),
    gzipped: nodes.filter((n) => n.hasMap && n.firstFrame.gzip).length,
    cpuSeconds: usage.slice(0, replicas.length).map((u) => u.cpuSeconds),
    pgCpuSeconds: usage[replicas.length].cpuSeconds,
    clientCpuSeconds: usage[replicas.length + 1].cpuSeconds,
  }
}

/** What one full map costs to make and what compression or a compact encoding would save. */
function fullMapCosts(buf) {
  const text = buf.toString()
  const reps = 5
  let t = now()
  let msg
  for (let i = 0; i < reps; i++) msg = JSON.parse(text)
  const parseMs = (now() - t) / reps
  t = now()
  for (let i = 0; i < reps; i++) JSON.stringify(msg)
  const stringifyMs = (now() - t) / reps
  // Fastest of 3: the first call of each level pays for zlib's set-up.
  const deflate = (level) => {
    let best = Infinity
    let out
    for (let i = 0; i < 3; i++) {
      const t0 = now()
      out = deflateRawSync(buf, {level})
      best = Math.min(best, now() - t0)
    }
    return {bytes: out.length, ms: best}
  }
  const deflate1 = deflate(1)
  const deflate6 = deflate(6)
  // A compact encoding: peers as arrays (no key names), as a proxy for a binary format.
  const peers = msg.peers ?? []
  const compact = JSON.stringify({...msg, peers: peers.map((p) => Object.values(p))})
  return {
    bytes: buf.length,
    peers: peers.length,
    bytesPerPeer: buf.length / Math.max(1, peers.length),
    parseMs,
    stringifyMs,
    deflate1,
    deflate6,
    compactBytes: Buffer.byteLength(compact),
    compactDeflateBytes: deflateRawSync(Buffer.from(compact), {level: 1}).length,
  }
}

// ---------------------------------------------------------------------------------------------
// One configuration: a backend at one size

async function measure(backend, n) {
  const R = backend === 'postgres' ? 2 : 1
  const label = backend === 'postgres' ? 'PostgreSQL ×2' : 'SQLite ×1'
  const dir = mkdtempSync(path.join(tmpdir(), 'mesh-bench-'))
  // An interrupted run (SIGINT, the time limit) leaves no data dir behind either.
  const removeDir = () => rmSync(dir, {recursive: true, force: true})
  process.once('exit', removeDir)
  let pg = null
  const replicas = []
  const nodes = []
  let reporting = null
  let rssWatch = null
  const agents = []
  const result = {n, backend: label, replicas: R, loadStart: loadAverage()}
  try {
    let database
    if (backend === 'postgres') {
      const {startPostgres} = await import('../test/support/postgres.ts')
      pg = await startPostgres({collation: 'C', settings: {max_connections: 200, shared_buffers: "'256MB'"}})
      database = await pg.createDatabase()
    } else {
      database = `sqlite:${path.join(dir, 'r1', 'controller.db')}`
    }
    for (let i = 0; i < R; i++) {
      mkdirSync(path.join(dir, `r${i + 1}`))
      replicas.push(new Replica(i + 1, path.join(dir, `r${i + 1}`), database))
    }
    // One after the other: the first runs the migrations.
    for (const r of replicas) await r.start()
    let swarmRef = null
    rssWatch = watchRss(replicas, (why) => {
      if (swarmRef) swarmRef.aborted = why
    })
    log(`${label} n=${n}: replicas ${replicas.map((r) => `pid ${r.pid} ${r.url}`).join(', ')}`)
    for (const _ of replicas) agents.push(new Agent({connections: REG_CONCURRENCY, keepAliveTimeout: 30_000}))

    const r1 = replicas[0]
    const {token} = await call(agents[0], r1.url, 'POST', '/api/v1/login', {
      body: {username: 'admin', password: ADMIN_PASSWORD},
    })
    const prefix = n + REPEATS + 10 < 65_000 ? 16 : 12
    const net = await call(agents[0], r1.url, 'POST', '/api/v1/networks', {
      token,
      body: {name: name('bench'), cidr: `10.0.0.0/${prefix}`},
    })
    const {key} = await call(agents[0], r1.url, 'POST', `/api/v1/networks/${net.id}/authkeys`, {
      token,
      body: {reusable: true, preApproved: true},
    })
    const register = (i, via) =>
      call(agents[via], replicas[via].url, 'POST', '/api/v1/register', {
        body: {
          authKey: key,
          publicKey: publicKey(),
          name: name('node'),
          hostname: 'bench',
          os: 'linux',
          endpoints: [endpointOf(i)],
        },
      })

    // 1. The join storm, through the replicas alternately. The first half includes JIT warm-up;
    //    the second half's rate is the steady state.
    const regStart = now()
    let halfAt = 0
    let done = 0
    const regs = await mapLimit(Array.from({length: n}), REG_CONCURRENCY, async (_, i) => {
      const r = await register(i, i % R)
      if (++done === Math.floor(n / 2)) halfAt = now()
      if (done % 1000 === 0) log(`  ${done} registered`)
      rssWatch.check()
      return r
    })
    result.regPerSecond = n / ((now() - regStart) / 1000)
    result.regSteadyPerSecond = (n - Math.floor(n / 2)) / ((now() - halfAt) / 1000)
    log(`${label} n=${n}: join storm ${result.regPerSecond.toFixed(0)}/s`)

    const swarm = new Swarm({
      ids: regs.map((r) => r.node.id),
      active: ACTIVE,
      latencyChurn: LATENCY_CHURN,
      view: REPORT_VIEW,
      gzip: ENCODING === 'gzip',
    })
    swarmRef = swarm
    for (let i = 0; i < n; i++) {
      const r = replicas[i % R]
      nodes.push(new SimNode(swarm, i, regs[i].credential, `${r.url.replace(/^http/, 'ws')}/api/v1/netmap`))
    }
    let sample = null
    // The last node: by then the gzipped peer list is ready (the first maps may go as text).
    nodes[n - 1].onFirst = (buf) => (sample = Buffer.from(buf))
    // What the first node got on the wire (gzipped or text), before the sample is inflated.
    let sampleWire = 0

    // 2. Cold start: the controllers restart with the nodes registered; all connect at once.
    for (const r of replicas) await r.stop()
    for (const r of replicas) await r.start()
    for (let i = 0; i < n; i++) nodes[i].base = `${replicas[i % R].url.replace(/^http/, 'ws')}/api/v1/netmap`
    log(
      `${label} n=${n}: cold start, ${n} nodes connect${CONNECT_CONCURRENCY > 0 ? `, ${CONNECT_CONCURRENCY} at a time` : ' at once'}`,
    )
    swarm.reconnect = true
    result.cold = await connectAll(nodes, replicas, pg?.dataDir, {resume: false})
    rssWatch.check()
    log(
      `${label} n=${n}: cold start ${result.cold.seconds.toFixed(1)} s, ${result.cold.reached}/${n} maps, ` +
        `${result.cold.retries} retries${result.cold.why ? ` (${result.cold.why})` : ''}` +
        `${result.cold.firstError ? `, first error: ${result.cold.firstError}` : ''}`,
    )
    if (sample) {
      sampleWire = sample.length
      if (sample[0] === 0x1f && sample[1] === 0x8b) sample = gunzipSync(sample)
      result.fullMap = {...fullMapCosts(sample), wireBytes: sampleWire}
    }
    sample = null
    if (result.cold.reached < n)
      throw new Error(`cold start: only ${result.cold.reached}/${n} nodes got a map`)

    // 3. Nodes report as meshd does; after the settle time, changes are timed while they go on.
    reporting = startReporting(nodes)
    await sleep(SETTLE_S * 1000)
    rssWatch.check()
    const reportsBefore = {...swarm.sent}
    const cpu = cpuWindow([
      ...replicas.map((r) => () => cpuSeconds(r.pid)),
      () => (pg ? postgresCpuSeconds(pg.dataDir) : NaN),
    ])
    const windowStart = now()
    const fanoutBefore = await Promise.all(replicas.map((r) => fanoutSeconds(r.url)))
    const rounds = []
    for (let k = 0; k < REPEATS; k++) {
      const pk = publicKey()
      const needle = Buffer.from(pk)
      for (const node of nodes) {
        node.watch = needle
        node.hit = null
        node.otherFrames = 0
      }
      const t0 = now()
      await call(agents[0], r1.url, 'POST', '/api/v1/register', {
        body: {authKey: key, publicKey: pk, name: name('late'), hostname: 'bench', os: 'linux'},
      })
      const replyMs = now() - t0
      await until(() => nodes.every((s) => s.hit), 30_000)
      const per = replicas.map((_, ri) => {
        const ms = nodes
          .filter((s, i) => i % R === ri && s.hit)
          .map((s) => s.hit.at - t0)
          .sort((a, b) => a - b)
        return {p50: pct(ms, 50), p99: pct(ms, 99), reached: ms.length}
      })
      const hits = nodes.filter((s) => s.hit)
      const ms = hits.map((s) => s.hit.at - t0).sort((a, b) => a - b)
      rounds.push({
        reached: hits.length,
        p50: pct(ms, 50),
        p99: pct(ms, 99),
        max: ms.at(-1),
        bytes: median(hits.map((s) => s.hit.bytes)),
        replyMs,
        per,
        otherFrames: nodes.reduce((s, x) => s + x.otherFrames, 0),
      })
      for (const node of nodes) node.watch = null
      const last = rounds.at(-1)
      log(
        `${label} n=${n} change ${k + 1}: reached ${last.reached}/${n}, p50 ${last.p50?.toFixed(1)} ms, ` +
          `p99 ${last.p99?.toFixed(1)} ms` +
          (R > 1 ? ` (${per.map((p, i) => `r${i + 1} p99 ${p.p99?.toFixed(1)}`).join(', ')})` : '') +
          `, ${last.bytes} B/node, reply ${replyMs.toFixed(1)} ms`,
      )
      rssWatch.check()
      await sleep(1000)
    }
    // The CPU figure covers at least one report interval: every node's periodic report is in it.
    await until(() => false, Math.max(0, 10_500 - (now() - windowStart)), 500)
    const usage = cpu()
    const fanoutAfter = await Promise.all(replicas.map((r) => fanoutSeconds(r.url)))
    // Mean send loop per change and replica, in ms (every fan-out in the window, reports' too).
    result.fanoutMs = fanoutAfter.map((a, i) => {
      const count = a.count - fanoutBefore[i].count
      return count > 0 ? ((a.sum - fanoutBefore[i].sum) * 1000) / count : NaN
    })
    result.window = {
      seconds: usage[0].seconds,
      cpuPercent: usage.slice(0, R).map((u) => u.percent),
      pgCpuPercent: usage[R].percent,
      reportFrames: swarm.sent.frames - reportsBefore.frames,
      reportBytes: swarm.sent.bytes - reportsBefore.bytes,
      reportEntries: swarm.sent.entries - reportsBefore.entries,
    }
    result.rssMiB = replicas.map((r) => r.rss().rssMiB)
    result.peakMiB = replicas.map((r) => r.peakMiB)
    result.p50 = median(rounds.map((r) => r.p50))
    result.p99 = median(rounds.map((r) => r.p99))
    result.worstP99 = Math.max(...rounds.map((r) => r.p99))
    result.perReplicaP99 = replicas.map((_, i) => median(rounds.map((r) => r.per[i].p99)))
    result.deltaBytes = median(rounds.map((r) => r.bytes))
    result.reachedAll = rounds.every((r) => r.reached === n)
    result.otherFrames = rounds.reduce((s, r) => s + r.otherFrames, 0)
    result.replyMs = median(rounds.map((r) => r.replyMs))
    result.reportsTotal = {...swarm.sent}
    result.closes = [...swarm.closes].map(([k, v]) => `${v}× ${k}`).join(', ')
    swarm.reconnect = false

    // 4. Restart with every node connected: all reconnect at once, resuming from their version.
    if (!opts['no-restart']) {
      reporting.stop()
      for (const r of replicas) await r.stop()
      for (const node of nodes) node.close()
      for (const r of replicas) await r.start()
      log(
        `${label} n=${n}: restarted; ${n} nodes reconnect${CONNECT_CONCURRENCY > 0 ? `, ${CONNECT_CONCURRENCY} at a time,` : ' at once'} with ?version`,
      )
      result.restart = await connectAll(nodes, replicas, pg?.dataDir, {resume: true})
      log(
        `${label} n=${n}: reconnect ${result.restart.seconds.toFixed(1)} s, ${result.restart.full} full maps, ` +
          `${result.restart.reached - result.restart.full} deltas`,
      )
      for (const r of replicas) r.rss()
      result.peakMiB = replicas.map((r) => r.peakMiB)
    }
  } catch (err) {
    result.error = err.message.split('\n')[0]
    log(`${label} n=${n}: FAILED: ${err.message}`)
  } finally {
    result.loadEnd = loadAverage()
    result.warnings = replicas
      .map((r) => [...r.warnings].map(([m, c]) => `r${r.index}: ${c}× ${m}`).join(', '))
      .filter(Boolean)
      .join('; ')
    reporting?.stop()
    rssWatch?.stop()
    for (const node of nodes) node.close()
    for (const a of agents) await a.close().catch(() => undefined)
    for (const r of replicas) await r.stop().catch(() => undefined)
    await pg?.stop()
    removeDir()
    process.removeListener('exit', removeDir)
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// The table

const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '–')
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–')
const perReplica = (xs, f) => (xs ?? []).map(f).join(' / ') || '–'

/** Seconds until all held a map; `>S (K maps)` when only K of them got one in S seconds. */
const connectCell = (r, c) =>
  !c ? '–' : c.reached === r.n ? f1(c.seconds) : `>${f0(c.seconds)} (${c.reached} maps)`

function table(results) {
  const cols = [
    ['nodes', (r) => String(r.n)],
    ['backend', (r) => r.backend],
    ['join/s', (r) => f0(r.regSteadyPerSecond)],
    ['p50 ms', (r) => f1(r.p50)],
    ['p99 ms', (r) => f1(r.p99)],
    ['B/node', (r) => f0(r.deltaBytes)],
    ['RSS MiB', (r) => perReplica(r.peakMiB, f0)],
    ['CPU %', (r) => perReplica(r.window?.cpuPercent, f0)],
    // Summed over the server's live processes: a backend that exited in the window takes its
    // time with it, so the figure is a lower bound, and '–' when that makes it negative.
    [
      'PG CPU %',
      (r) => (r.replicas > 1 ? f0(r.window?.pgCpuPercent >= 0 ? r.window.pgCpuPercent : NaN) : ''),
    ],
    ['cold s', (r) => connectCell(r, r.cold)],
    ['restart s', (r) => connectCell(r, r.restart)],
    ['map KB sent', (r) => f0((r.fullMap?.wireBytes ?? r.cold?.firstBytes) / 1024)],
  ]
  const cells = results.map((r) => cols.map(([, f]) => f(r)))
  const widths = cols.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  const line = (c) => c.map((x, i) => (i === 1 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ')
  const out = [line(cols.map(([h]) => h)), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)]
  for (const r of results) if (r.error) out.push(`  ${r.n} ${r.backend}: FAILED: ${r.error}`)
  out.push(
    '',
    'join/s: registrations/s, 2nd half of the storm. p50/p99: one change (a node added through replica 1)',
    'until every node holds its delta, median of the repeats. B/node: that delta frame. RSS: peak per',
    'replica. CPU: % of one core per replica while nodes report and changes are timed. cold s: all',
    'nodes connect (at once, or --connect-concurrency at a time) after the controller(s) start, until',
    'all hold their full map. restart s: controllers restarted with every node connected; all',
    'reconnect the same way with ?version=N.',
  )
  return out.join('\n')
}

function details(results) {
  const out = []
  for (const r of results) {
    if (!r.cold) continue
    out.push(`${r.n} ${r.backend} (load average ${f1(r.loadStart)} → ${f1(r.loadEnd)}):`)
    if (r.replicas > 1 && r.perReplicaP99)
      out.push(
        `  p99 at nodes on replica 1 / 2: ${r.perReplicaP99.map(f1).join(' / ')} ms (change made through 1)`,
      )
    if (r.p99 !== undefined)
      out.push(
        `  worst p99 ${f1(r.worstP99)} ms, register reply ${f1(r.replyMs)} ms, delta reached every node: ${r.reachedAll ? 'yes' : 'NO'}, ` +
          `unrelated frames during the changes: ${r.otherFrames}`,
      )
    if (r.fanoutMs)
      out.push(
        `  controller send loop per change (mesh_netmap_fanout_seconds, mean): ${r.fanoutMs.map(f1).join(' / ')} ms; ` +
          `the rest of p50/p99 is the kernel and the bench client reading ${r.n} sockets on the same cores`,
      )
    if (r.warnings) out.push(`  controller warnings/errors logged: ${r.warnings}`)
    if (r.closes)
      out.push(
        `  sessions closed after their map, from the cold start to the restart (nodes reconnect): ${r.closes}`,
      )
    if (r.window)
      out.push(
        `  reports during the timed window (${f1(r.window.seconds)} s): ${r.window.reportFrames} frames, ` +
          `${f0(r.window.reportBytes / 1024)} KiB, ${r.window.reportEntries} peer entries; ` +
          `in all: ${r.reportsTotal.frames} frames, ${f0(r.reportsTotal.bytes / 1048576)} MiB, ${r.reportsTotal.entries} entries`,
      )
    const c = r.cold
    out.push(
      `  cold start: ${f1(c.seconds)} s for ${c.reached}/${r.n} maps (${c.gzipped} gzipped, ${c.retries} retries${c.why ? `: ${c.why}` : ''}), controller CPU ` +
        `${perReplica(c.cpuSeconds, f1)} s` +
        (r.replicas > 1 ? `, PostgreSQL ${f1(c.pgCpuSeconds)} s` : '') +
        `, bench client ${f1(c.clientCpuSeconds)} s`,
    )
    const m = r.fullMap
    if (m) {
      const totalMiB = (c.firstBytes * r.n) / 1048576
      const cpu = c.cpuSeconds.reduce((a, b) => a + b, 0)
      out.push(
        `    one full map: ${f0(m.bytes / 1024)} KiB, ${m.peers} peers, ${f0(m.bytesPerPeer)} B/peer; ` +
          `${f0(m.wireBytes / 1024)} KiB on the wire (${ENCODING}${ENCODING === 'gzip' ? `, ×${f1(m.bytes / m.wireBytes)} fewer bytes` : ''}); ` +
          `median map sent ${f0(c.firstBytes / 1024)} KiB × ${r.n} nodes ≈ ${f0(totalMiB)} MiB, ${f1(totalMiB / c.seconds)} MiB/s over the cold start`,
      )
      out.push(
        `    controller CPU per map ${f1((cpu * 1000) / r.n)} ms; JSON.stringify of one map ${f1(m.stringifyMs)} ms, ` +
          `JSON.parse ${f1(m.parseMs)} ms (in the bench process)`,
      )
      out.push(
        `    per-message deflate would send ${f0(m.deflate1.bytes / 1024)} KiB (level 1, ${f1(m.deflate1.ms)} ms) or ` +
          `${f0(m.deflate6.bytes / 1024)} KiB (level 6, ${f1(m.deflate6.ms)} ms): ×${f1(m.bytes / m.deflate1.bytes)} / ×${f1(m.bytes / m.deflate6.bytes)} fewer bytes; ` +
          `peers as arrays ${f0(m.compactBytes / 1024)} KiB (${f0(m.compactDeflateBytes / 1024)} KiB deflated)`,
      )
    }
    if (r.restart)
      out.push(
        `  reconnect after a restart: ${f1(r.restart.seconds)} s, ${r.restart.full} full maps and ` +
          `${r.restart.reached - r.restart.full} resumed deltas (median first frame ${f0(r.restart.firstBytes)} B), ` +
          `${r.restart.retries} retries${r.restart.why ? ` (${r.restart.why})` : ''}, controller CPU ${perReplica(r.restart.cpuSeconds, f1)} s`,
      )
  }
  return out.join('\n')
}

/** The issue-9 goals, judged on the largest size measured per backend. */
function goals(results) {
  const out = []
  const verdict = (ok) => (ok === undefined ? 'n/a ' : ok ? 'PASS' : 'FAIL')
  const largest = (b) => results.filter((r) => r.backend === b && !r.error).sort((a, c) => c.n - a.n)[0]
  const sq = largest('SQLite ×1')
  const pgr = largest('PostgreSQL ×2')
  const at = (r) => (r ? ` (at ${r.n} nodes${r.n < 10_000 ? '; the goal is for 10,000' : ''})` : '')
  out.push(
    `${verdict(sq && sq.p99 < 150)}  p99 < 150 ms on SQLite: ${f1(sq?.p99)} ms${at(sq)}`,
    `${verdict(pgr && pgr.p99 < 1000)}  p99 < 1 s across two PostgreSQL replicas: ${f1(pgr?.p99)} ms${at(pgr)}`,
  )
  for (const r of results.filter((x) => x.cold))
    out.push(
      `${verdict(r.cold.reached === r.n && r.cold.seconds < 60)}  all maps within 60 s of a cold start, ${r.n} ${r.backend}: ${f1(r.cold.seconds)} s`,
    )
  for (const r of results.filter((x) => x.peakMiB))
    out.push(
      `${verdict(r.peakMiB.every((m) => m < 1024))}  RSS < 1 GiB per replica, ${r.n} ${r.backend}: ${perReplica(r.peakMiB, f0)} MiB`,
    )
  for (const b of ['SQLite ×1', 'PostgreSQL ×2']) {
    const rs = results
      .filter((r) => r.backend === b && Number.isFinite(r.deltaBytes))
      .sort((a, c) => a.n - c.n)
    if (rs.length < 2) continue
    const [lo, hi] = [rs[0], rs.at(-1)]
    const ratio = hi.deltaBytes / lo.deltaBytes
    out.push(
      `${verdict(ratio < 1.1)}  bytes per node per change flat, ${b}: ${f0(lo.deltaBytes)} B at ${lo.n} → ${f0(hi.deltaBytes)} B at ${hi.n} (×${ratio.toFixed(2)})`,
    )
  }
  return out.join('\n')
}

async function main() {
  const need = Math.max(...SIZES) + 1000
  const limit = fdLimit()
  if (limit < need) {
    console.error(
      `open-file limit is ${limit}, need about ${need}: run it through bench/controller-scale.sh or raise ulimit -n`,
    )
    process.exit(1)
  }
  const deadline = setTimeout(() => {
    console.error(`time limit of ${TIME_LIMIT_S} s reached; stopping`)
    killChildren()
    process.exit(1)
  }, TIME_LIMIT_S * 1000)
  deadline.unref()
  const started = now()
  const results = []
  for (const n of SIZES) for (const b of BACKENDS) results.push(await measure(b, n))
  if (opts.json) {
    console.log(JSON.stringify({node: process.version, seconds: (now() - started) / 1000, results}, null, 2))
    return
  }
  console.log(
    `\ncontroller scale benchmark: ${process.version}, ${((now() - started) / 1000) | 0} s, ` +
      `${ACTIVE} active peers per node, reports every 10 s listing ` +
      `${REPORT_VIEW === 'all' ? 'every peer of the netmap (meshd before 2026-12-03)' : 'the peers with a handshake (as meshd)'}, ${REPEATS} changes per row, ` +
      `full maps asked for as ${ENCODING}, ` +
      `${CONNECT_CONCURRENCY > 0 ? `cold start ${CONNECT_CONCURRENCY} connects at a time` : 'cold start all at once'}, ` +
      `bench client and controllers on one machine (load average at the end ${f1(loadAverage())})\n`,
  )
  console.log(table(results))
  console.log(`\n${details(results)}`)
  console.log(`\ngoals (issue 9):\n${goals(results)}`)
}

await main()
