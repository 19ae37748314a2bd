// Controller scale benchmark (not a test): registers N nodes into one network, holds N netmap
// WebSockets, then times how long one new node's `added` delta takes to reach every connected
// node, the delta's size, registrations per second and the controller's peak RSS; the same run
// first measures a smaller baseline so the scaling is visible. Run: `npm run bench:controller -- --nodes 5000`.
import {spawn} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'
import nacl from 'tweetnacl'
import {Agent, request} from 'undici'
import WebSocket from 'ws'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const ADMIN_PASSWORD = 'bench-admin-password'

const {values: opts} = parseArgs({
  options: {
    nodes: {type: 'string', default: '5000'},
    baseline: {type: 'string', default: '500'},
    repeats: {type: 'string', default: '5'},
    'register-concurrency': {type: 'string', default: '32'},
    'connect-concurrency': {type: 'string', default: '100'},
    'time-limit': {type: 'string', default: '570', short: 't'},
    json: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log(`usage: npm run bench:controller -- [--nodes N] [--baseline N|0] [--repeats R]
  [--register-concurrency C] [--connect-concurrency C] [--time-limit SECONDS] [--json]`)
  process.exit(0)
}
const NODES = Number(opts.nodes)
const BASELINE = Number(opts.baseline)
const REPEATS = Number(opts.repeats)
const REG_CONCURRENCY = Number(opts['register-concurrency'])
const CONNECT_CONCURRENCY = Number(opts['connect-concurrency'])
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
    [...xs].sort((a, b) => a - b),
    50,
  )
let seq = 0
const name = (prefix) => `${prefix}-${(seq++).toString(36)}`
const publicKey = () => Buffer.from(nacl.box.keyPair().publicKey).toString('base64')

function fdLimit() {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))
  return Number(line?.split(/\s+/)[3])
}

function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))?.[1] ?? NaN)
  return {rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024}
}

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

// ---------------------------------------------------------------------------------------------
// The controller under test: the built CLI as a child process

/** Only the controller processes this script started; killed by pid at exit. */
const children = new Set()

async function startController(dataDir) {
  const child = spawn(
    process.execPath,
    [
      'bin/mesh.js',
      'controller',
      'start',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--database',
      `sqlite:${path.join(dataDir, 'controller.db')}`,
    ],
    {
      cwd: ROOT,
      env: {...process.env, MESH_ADMIN_PASSWORD: ADMIN_PASSWORD},
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  children.add(child)
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const tail = []
  createInterface({input: child.stderr}).on('line', (l) => tail.push(l) > 50 && tail.shift())
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('controller did not log "listening" in 20 s')), 20_000)
    child.once('exit', (code, signal) =>
      reject(new Error(`controller exited (${code ?? signal}): ${tail.join('\n')}`)),
    )
    createInterface({input: child.stdout}).on('line', (line) => {
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
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(t)
    children.delete(child)
  }
  return {url, pid: child.pid, stop}
}

function killChildren() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}
process.on('exit', killChildren)
for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => {
    killChildren()
    process.exit(130)
  })

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

// ---------------------------------------------------------------------------------------------
// One measurement at one size

async function measure(n) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'mesh-bench-'))
  const ctl = await startController(dataDir)
  const agent = new Agent({connections: REG_CONCURRENCY, keepAliveTimeout: 30_000})
  const sockets = []
  try {
    log(`n=${n}: controller pid ${ctl.pid} at ${ctl.url}`)
    const {token} = await call(agent, ctl.url, 'POST', '/api/v1/login', {
      body: {username: 'admin', password: ADMIN_PASSWORD},
    })
    const prefix = n + REPEATS + 10 < 65_000 ? 16 : 12
    const net = await call(agent, ctl.url, 'POST', '/api/v1/networks', {
      token,
      body: {name: name('bench'), cidr: `10.0.0.0/${prefix}`},
    })
    const {key} = await call(agent, ctl.url, 'POST', `/api/v1/networks/${net.id}/authkeys`, {
      token,
      body: {reusable: true, preApproved: true},
    })
    const register = () =>
      call(agent, ctl.url, 'POST', '/api/v1/register', {
        body: {authKey: key, publicKey: publicKey(), name: name('node'), hostname: 'bench', os: 'linux'},
      })

    // 1. Registrations, bounded concurrency.
    // The first half includes JIT warm-up; the second half's rate is the steady state.
    const regStart = now()
    let halfAt = 0
    let done = 0
    const nodes = await mapLimit(Array.from({length: n}), REG_CONCURRENCY, async () => {
      const r = await register()
      if (++done === Math.floor(n / 2)) halfAt = now()
      if (done % 1000 === 0) log(`n=${n}: ${done} registered`)
      return r
    })
    const regSeconds = (now() - regStart) / 1000
    const steadyPerSecond = (n - Math.floor(n / 2)) / ((now() - halfAt) / 1000)
    log(`n=${n}: ${n} registrations in ${regSeconds.toFixed(1)} s`)

    // 2. One netmap WebSocket per node; each waits for its full map.
    const wsUrl = `${ctl.url.replace(/^http/, 'ws')}/api/v1/netmap`
    const connStart = now()
    const fullSizes = []
    let connected = 0
    await mapLimit(nodes, CONNECT_CONCURRENCY, (node) => {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl, {
          headers: {authorization: `Bearer ${node.credential}`},
          perMessageDeflate: false,
          maxPayload: 512 * 1024 * 1024,
        })
        const rec = {ws, frames: []}
        const timer = setTimeout(() => reject(new Error('no full netmap within 60 s')), 60_000)
        ws.once('message', (data) => {
          clearTimeout(timer)
          // Only the head is looked at: parsing n full maps of n peers would time the client.
          const head = data.subarray(0, 200).toString()
          if (!/"type"\s*:\s*"full"/.test(head) && JSON.parse(data.toString()).type !== 'full')
            return reject(new Error(`first frame is not a full netmap: ${head}`))
          fullSizes.push(data.length)
          ws.on('message', (frame) =>
            rec.frames.push({at: now(), bytes: frame.length, text: frame.toString()}),
          )
          sockets.push(rec)
          if (++connected % 1000 === 0) log(`n=${n}: ${connected} netmaps connected`)
          resolve()
        })
        ws.once('error', (err) => {
          clearTimeout(timer)
          reject(err)
        })
        ws.once('close', (code) => {
          clearTimeout(timer)
          reject(new Error(`netmap closed with ${code} before the full map`))
        })
      })
    })
    const connectSeconds = (now() - connStart) / 1000
    log(`n=${n}: ${sockets.length} netmaps connected in ${connectSeconds.toFixed(1)} s`)
    await sleep(1000)
    for (const s of sockets) s.frames.length = 0

    // 3. One more node registers; time its `added` delta at every connected node.
    const rounds = []
    for (let r = 0; r < REPEATS; r++) {
      const pk = publicKey()
      const t0 = now()
      const reg = await call(agent, ctl.url, 'POST', '/api/v1/register', {
        body: {authKey: key, publicKey: pk, name: name('late'), hostname: 'bench', os: 'linux'},
      })
      const tReply = now() - t0
      const deadline = now() + 30_000
      const arrivals = new Array(sockets.length).fill(undefined)
      while (now() < deadline) {
        let missing = 0
        sockets.forEach((s, i) => {
          if (arrivals[i]) return
          for (const f of s.frames) {
            if (!f.text.includes(pk)) continue
            const msg = JSON.parse(f.text)
            if (msg.type === 'delta' && msg.added?.some((p) => p.publicKey === pk)) {
              arrivals[i] = {ms: f.at - t0, bytes: f.bytes}
              break
            }
          }
          if (!arrivals[i]) missing++
        })
        if (missing === 0) break
        await sleep(20)
      }
      const got = arrivals.filter(Boolean)
      const ms = got.map((a) => a.ms).sort((a, b) => a - b)
      const otherFrames = sockets.reduce(
        (sum, s) => sum + s.frames.filter((f) => !f.text.includes(pk)).length,
        0,
      )
      rounds.push({
        reached: got.length,
        p50: pct(ms, 50),
        p99: pct(ms, 99),
        max: ms.at(-1),
        replyMs: tReply,
        bytes: median(got.map((a) => a.bytes)),
        otherFrames,
        nodeId: reg.node.id,
      })
      const last = rounds.at(-1)
      log(
        `n=${n} repeat ${r + 1}: reached ${last.reached}/${sockets.length}, p50 ${last.p50?.toFixed(1)} ms, ` +
          `p99 ${last.p99?.toFixed(1)} ms, max ${last.max?.toFixed(1)} ms, ${last.bytes} B/node, reply ${tReply.toFixed(1)} ms`,
      )
      for (const s of sockets) s.frames.length = 0
      await sleep(500)
    }
    const mem = memory(ctl.pid)
    return {
      n,
      regPerSecond: n / regSeconds,
      steadyPerSecond,
      regSeconds,
      connectSeconds,
      fullMapBytes: median(fullSizes),
      p50: median(rounds.map((r) => r.p50)),
      p99: median(rounds.map((r) => r.p99)),
      worstP99: Math.max(...rounds.map((r) => r.p99)),
      deltaBytes: median(rounds.map((r) => r.bytes)),
      reachedAll: rounds.every((r) => r.reached === sockets.length),
      otherFrames: rounds.reduce((s, r) => s + r.otherFrames, 0),
      replyMs: median(rounds.map((r) => r.replyMs)),
      peakRssMiB: mem.peakMiB,
      rssMiB: mem.rssMiB,
    }
  } finally {
    for (const s of sockets) s.ws.terminate()
    await agent.close().catch(() => undefined)
    await ctl.stop()
    rmSync(dataDir, {recursive: true, force: true})
  }
}

// ---------------------------------------------------------------------------------------------

function table(results) {
  const rows = [
    ['nodes', (r) => String(r.n)],
    ['registrations/s, all', (r) => r.regPerSecond.toFixed(0)],
    ['registrations/s, 2nd half', (r) => r.steadyPerSecond.toFixed(0)],
    ['netmap connect, all (s)', (r) => r.connectSeconds.toFixed(1)],
    ['full netmap frame (B)', (r) => String(r.fullMapBytes)],
    ['added delta p50 (ms)', (r) => r.p50.toFixed(1)],
    ['added delta p99 (ms)', (r) => r.p99.toFixed(1)],
    ['added delta worst p99 (ms)', (r) => r.worstP99.toFixed(1)],
    ['delta frame per node (B)', (r) => String(r.deltaBytes)],
    ['delta reached every node', (r) => (r.reachedAll ? 'yes' : 'NO')],
    ['unrelated frames in window', (r) => String(r.otherFrames)],
    ['register reply (ms)', (r) => r.replyMs.toFixed(1)],
    ['controller peak RSS (MiB)', (r) => r.peakRssMiB.toFixed(0)],
  ]
  const w = Math.max(...rows.map(([l]) => l.length))
  const lines = rows.map(
    ([label, f]) => `${label.padEnd(w)}  ${results.map((r) => f(r).padStart(10)).join('  ')}`,
  )
  if (results.length === 2) {
    const [b, big] = results
    const k = big.n / b.n
    lines.push('', `scaling ×${k.toFixed(1)} nodes:`)
    lines.push(`  registrations/s (2nd half) ×${(big.steadyPerSecond / b.steadyPerSecond).toFixed(2)}`)
    lines.push(`  delta p50 ×${(big.p50 / b.p50).toFixed(2)}, p99 ×${(big.p99 / b.p99).toFixed(2)}`)
    lines.push(`  delta bytes per node ×${(big.deltaBytes / b.deltaBytes).toFixed(2)} (O(1) expected: ≈1)`)
    lines.push(
      `  full netmap bytes ×${(big.fullMapBytes / b.fullMapBytes).toFixed(2)} (O(n) expected: ≈${k.toFixed(1)})`,
    )
    lines.push(`  peak RSS ×${(big.peakRssMiB / b.peakRssMiB).toFixed(2)}`)
  }
  return lines.join('\n')
}

async function main() {
  const need = NODES + 1000
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
  for (const n of BASELINE > 0 && BASELINE < NODES ? [BASELINE, NODES] : [NODES])
    results.push(await measure(n))
  if (opts.json) {
    console.log(JSON.stringify({node: process.version, seconds: (now() - started) / 1000, results}, null, 2))
    return
  }
  console.log(`\ncontroller scale benchmark (${process.version}, ${((now() - started) / 1000) | 0} s)\n`)
  console.log(table(results))
}

await main()
