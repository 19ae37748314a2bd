// Benchmark (not a test): mesh against Nebula in the NAT lab (`mesh lab up --nat`), one run.
//
// Pairs: the 10 pairs of kinds among none, cone, restricted and symmetric, plus udp-blocked with
// cone. One lab (one controller; Nebula's lighthouse + relay runs in the controller's namespace on
// its public address, UDP 4242). Every pair, trial and system gets two fresh node namespaces,
// each behind its own fresh NAT router of its kind, so no conntrack entry or learned mapping of
// an earlier measurement helps a later one. Each mesh pair-trial has a network of its own.
//
// Per pair and system (median of --runs, default 3):
//   first ping   from "both up" to the first echo reply in both directions (the later of the two),
//                pinging every 50 ms from each side (bounded: --first-ping-timeout, 20 s).
//                "Both up" for mesh: both meshd answer on their socket and both `mesh join`
//                (run at the same time) have returned, i.e. both are registered and their
//                WireGuard interface is configured. For Nebula: both nebula processes (started
//                at the same time, certificates made beforehand) have their tun device up.
//   direct at    from "both up" until the path is direct. mesh: both meshd report `path: direct`
//                for each other (`mesh status`, asked on the socket every 250 ms). Nebula (no
//                path field): the routers' counters, read about once a second, show the pair's
//                10/s ping going straight between the two public addresses both ways (>= 5
//                packets/s each way, < 4/s to the relay), twice in a row; resolution about 1 s.
//   path@30s     the path 30 s after "both up" (--window), as above; "down" when a ping fails,
//                "unclear" when Nebula's counters show neither. A ping runs at 10/s from the
//                first reply to the end of the window, for both systems (the traffic the
//                counter-based reading needs). mesh's `direct` is checked on the routers too.
//   from start   (labelled "first ping from start") the first ping measured from the start
//                command instead: mesh from both `mesh join` being run (CLI start, registration,
//                WireGuard start, first netmap applied: all of what "both up" leaves out; the
//                invites are made beforehand); Nebula from both nebula processes being started.
//                "first ping" above stays as it was.
//   mesh's path at first ping (meshd's own view) is recorded to check the relay goal.
// Throughput (one cone<->cone pair per system, iperf3 -t --seconds, default 5): direct, then
// relayed with UDP between the two routers blocked (lab blockUdp), so whatever still answers
// went through the relay. mesh must get there by itself on the same daemons (the time from the
// block to the first reply is printed; if none comes within 20 s both meshd are restarted).
// Nebula is restarted with the block in place: it does not fall back by itself. Relay CPU is
// the relay's CPU during the relayed run: the controller process for mesh, the lighthouse for
// Nebula (utime+stime from /proc/PID/stat).
//
// Pairs overlap: pair k+1 is set up and timed to its first ping while earlier pairs sit in their
// 30 s window (one pair at a time in its timed start-up phase). --serial runs one pair at a time
// (quieter machine, about 35 min).
//
// Needs root, wireguard-go, wg, ip, nft, ping, iperf3, nebula + nebula-cert (Debian `nebula`) and
// a build. Run it with `npm run bench:nat` or
// `bash bench/nat-vs-nebula.sh [--runs 3] [--window 30] [--seconds 5] [--pairs none-cone,...]
//  [--no-nebula] [--no-throughput] [--serial] [--keep-logs] [--json] [--out report.json]`.
// --keep-logs copies the lab's logs (controller, every meshd) to a fresh dir under /tmp first.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = (p) => path.join(root, 'dist', 'cli', 'lib', p)
if (!fs.existsSync(dist('lab/lab.js'))) {
  process.stderr.write('bench: mesh is not built; run bash scripts/build.sh first\n')
  process.exit(78)
}
const {Lab, labPrerequisiteProblem, natPrerequisiteProblem} = await import(dist('lab/lab.js'))
const {blockUdp, routerCounters, packetsOf, publicAddress} = await import(dist('lab/nat.js'))
const {run, runOk, waitFor, have, sleep} = await import(dist('lab/sh.js'))
const {DaemonClient} = await import(dist('daemon-client.js'))

const {values: opts} = parseArgs({
  options: {
    runs: {type: 'string', default: '3'},
    window: {type: 'string', default: '30'},
    seconds: {type: 'string', default: '5'},
    pairs: {type: 'string'},
    'first-ping-timeout': {type: 'string', default: '20'},
    'no-nebula': {type: 'boolean', default: false},
    'no-throughput': {type: 'boolean', default: false},
    serial: {type: 'boolean', default: false},
    'keep-logs': {type: 'boolean', default: false},
    json: {type: 'boolean', default: false},
    out: {type: 'string'},
  },
})
const RUNS = Number(opts.runs)
const WINDOW_MS = Number(opts.window) * 1000
const SECONDS = Number(opts.seconds)
const FIRST_PING_TIMEOUT_S = Number(opts['first-ping-timeout'])
const NEBULA = !opts['no-nebula']

const KINDS = ['none', 'cone', 'restricted', 'symmetric']
const ALL_PAIRS = [...KINDS.flatMap((a, i) => KINDS.slice(i).map((b) => [a, b])), ['udp-blocked', 'cone']]
const PAIRS = opts.pairs
  ? opts.pairs.split(',').map((p) => {
      const pair = p.trim().split(/-(?=none|cone|restricted|symmetric|udp-blocked)/)
      if (pair.length !== 2) throw new Error(`--pairs: ${p} is not KIND-KIND`)
      return pair
    })
  : ALL_PAIRS
/** The path theory allows (test/e2e/nat.root.test.ts). */
const expectedPath = (a, b) => {
  const k = [a, b].sort().join('+')
  return k === 'symmetric+symmetric' ||
    k === 'restricted+symmetric' ||
    a === 'udp-blocked' ||
    b === 'udp-blocked'
    ? 'relay'
    : 'direct'
}
const pairName = ([a, b]) => `${a}-${b}`

const problem =
  labPrerequisiteProblem() ??
  natPrerequisiteProblem() ??
  (have('iperf3') ? undefined : 'iperf3 is not installed') ??
  (have('stdbuf') ? undefined : 'stdbuf (coreutils) is not installed') ??
  (!NEBULA || (have('nebula') && have('nebula-cert'))
    ? undefined
    : 'nebula is not installed (apt-get install nebula, or --no-nebula)')
if (problem) {
  process.stderr.write(`bench: cannot run here: ${problem}\n`)
  process.exit(77)
}

const benchT0 = performance.now()
const say = (line) => {
  if (!opts.json) process.stderr.write(`[${((performance.now() - benchT0) / 1000).toFixed(0)}s] ${line}\n`)
}
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
/** The most frequent value (ties: the first seen). */
const mode = (xs) => {
  const n = new Map()
  for (const x of xs) n.set(x, (n.get(x) ?? 0) + 1)
  return [...n.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null
}
const CLK_TCK = Number((await runOk('getconf', ['CLK_TCK'])).trim()) || 100
/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}

// ---------------------------------------------------------------------------------------------
// Pingers (the same for both systems)

/** Children this process started directly (pingers); killed by pid at exit. */
const children = new Set()
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL')
})

/**
 * Pings `address` from namespace `ns` every 50 ms until the first echo reply; resolves with the
 * reply's wall-clock time (ping -D), or null when none came within `timeoutS`.
 */
function firstReply(ns, address, timeoutS) {
  return new Promise((resolve) => {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'stdbuf',
        '-oL',
        'ping',
        '-n',
        '-D',
        '-i',
        '0.05',
        '-w',
        String(timeoutS),
        address,
      ],
      {stdio: ['ignore', 'pipe', 'ignore']},
    )
    children.add(child)
    let buf = ''
    let done = false
    const finish = (v) => {
      if (done) return
      done = true
      child.kill('SIGTERM')
      children.delete(child)
      resolve(v)
    }
    child.stdout.on('data', (d) => {
      buf += d.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const m = /^\[(\d+\.\d+)\].*bytes from/.exec(line)
        if (m) finish(Number(m[1]) * 1000)
      }
    })
    child.on('exit', () => finish(null))
    child.on('error', () => finish(null))
  })
}

/** A ping every 100 ms from `ns` for at most `seconds` (traffic for the window); stop() ends it. */
function backgroundPing(ns, address, seconds) {
  const child = spawn(
    'ip',
    ['netns', 'exec', ns, 'ping', '-n', '-q', '-i', '0.1', '-w', String(Math.ceil(seconds)), address],
    {stdio: 'ignore'},
  )
  children.add(child)
  child.on('error', () => undefined)
  child.on('exit', () => children.delete(child))
  return {stop: () => child.kill('SIGTERM')}
}

/** First echo reply both ways, from both sides at once; ms after t0 (wall clock), or null. */
async function firstPingBothWays(a, aAddr, b, bAddr, t0Wall) {
  const [ab, ba] = await Promise.all([
    firstReply(a.ns, bAddr, FIRST_PING_TIMEOUT_S),
    firstReply(b.ns, aAddr, FIRST_PING_TIMEOUT_S),
  ])
  if (ab === null || ba === null) return null
  return Math.max(ab, ba) - t0Wall
}

// ---------------------------------------------------------------------------------------------
// Paths on the wire: the routers' per-address UDP counters

/**
 * Samples the UDP packets each side's router (or `none` node) sent to the other's public
 * address and to the controller's (where Nebula's lighthouse relays), as rates per second
 * since the latest sample at least 0.9 s older. direct(): both directions at >= 5/s straight
 * to the other side and < 4/s to the relay (the 10/s ping goes straight); relayed(): each side
 * at >= 5/s to the relay and not both >= 5/s straight. Handshakes and punches are fewer.
 */
function wireWatch(lab, a, b) {
  const ctl = lab.state.controller.underlay
  const samples = []
  const window = () => {
    const last = samples.at(-1)
    if (!last) return undefined
    const base = samples.findLast((s) => s.t <= last.t - 900)
    if (!base) return undefined
    const per = (k) => Math.round(((last[k] - base[k]) * 10_000) / (last.t - base.t)) / 10
    return {ab: per('ab'), ba: per('ba'), ar: per('ar'), br: per('br')}
  }
  return {
    async sample() {
      const t = performance.now()
      const [ca, cb] = await Promise.all([routerCounters(lab, a), routerCounters(lab, b)])
      samples.push({
        t: (t + performance.now()) / 2,
        ab: packetsOf(ca.udpOutTo, publicAddress(b)),
        ba: packetsOf(cb.udpOutTo, publicAddress(a)),
        ar: packetsOf(ca.udpOutTo, ctl),
        br: packetsOf(cb.udpOutTo, ctl),
      })
      if (samples.length > 50) samples.shift()
    },
    /** Packets per second lately (straight a->b, b->a; to the relay from a, from b). */
    window,
    direct() {
      const w = window()
      return w !== undefined && w.ab >= 5 && w.ba >= 5 && w.ar < 4 && w.br < 4
    },
    relayed() {
      const w = window()
      return w !== undefined && w.ar >= 5 && w.br >= 5 && (w.ab < 5 || w.ba < 5)
    },
  }
}

// ---------------------------------------------------------------------------------------------
// mesh

const daemon = (node) => new DaemonClient({socketPath: node.socket, timeoutMs: 3000})
/** The path `from`'s meshd shows for `to` in `net` (undefined when it does not answer). */
async function meshPath(from, to, net) {
  try {
    const st = await daemon(from).status()
    return st.networks.find((n) => n.name === net)?.peers.find((p) => p.name === to.name)?.path
  } catch {
    return undefined
  }
}
const bothPaths = async (a, b, net) => {
  const [x, y] = await Promise.all([meshPath(a, b, net), meshPath(b, a, net)])
  return x === y ? (x ?? 'unknown') : `${x ?? '?'}/${y ?? '?'}`
}

let netSeq = 0
/** The timed start-up of one mesh pair: fresh nodes, joins, first ping. */
/** Untimed: the pair's network, and two fresh nodes behind their routers with meshd running. */
async function meshPrepare(lab, [ka, kb]) {
  const seq = ++netSeq
  const net = `p${seq}`
  await lab.createNetwork(net, `10.250.${seq}.0/24`)
  const [a, b] = await Promise.all([lab.addNode({nat: ka}), lab.addNode({nat: kb})])
  return {a, b, net}
}

/** Timed: both join at once ("both up" when both have returned), then the first ping. */
async function meshStart(lab, {a, b, net}) {
  const [ja, jb] = await Promise.all([lab.invite(net), lab.invite(net)])
  const tStart = performance.now()
  await Promise.all([lab.join(a, net, {joinString: ja}), lab.join(b, net, {joinString: jb})])
  const t0 = performance.now()
  const t0Wall = Date.now()
  const firstPingMs = await firstPingBothWays(a, a.addresses[net], b, b.addresses[net], t0Wall)
  const pathAtFirstPing = firstPingMs === null ? null : await bothPaths(a, b, net)
  const fromStartMs = firstPingMs === null ? null : firstPingMs + (t0 - tStart)
  return {a, b, net, t0, firstPingMs, fromStartMs, pathAtFirstPing}
}

/** The window of one mesh pair: direct-at, path at the end; then its daemons stop. */
async function meshWindow(lab, s) {
  const {a, b, net, t0} = s
  const end = t0 + WINDOW_MS
  const bg = backgroundPing(a.ns, b.addresses[net], (end - performance.now()) / 1000 + 5)
  let directAtMs = null
  try {
    for (let i = 0; i < 1000 && performance.now() < end; i++) {
      if (directAtMs === null && (await bothPaths(a, b, net)) === 'direct')
        directAtMs = performance.now() - t0
      await sleep(Math.min(250, Math.max(0, end - performance.now())))
    }
    let pathAtEnd = await bothPaths(a, b, net)
    // Cross-check on the wire: UDP straight between the two public addresses in the last second.
    const wire = wireWatch(lab, a, b)
    await wire.sample()
    await sleep(1000)
    await wire.sample()
    const wireAtEnd = wire.window()
    if (!(await lab.ping(a, b.addresses[net], 1))) pathAtEnd = `down (${pathAtEnd})`
    return {
      firstPingMs: s.firstPingMs,
      fromStartMs: s.fromStartMs,
      pathAtFirstPing: s.pathAtFirstPing,
      directAtMs,
      pathAtEnd,
      wireAtEnd,
    }
  } finally {
    bg.stop()
    await Promise.all([lab.stopDaemon(a), lab.stopDaemon(b)])
  }
}

// ---------------------------------------------------------------------------------------------
// Nebula

const NEB_PORT = 4242
const NEB_LH_IP = '10.251.0.1'
let nebSeq = 0
let nebDir
let lighthouse

const nebFirewall = {
  outbound: [{port: 'any', proto: 'any', host: 'any'}],
  inbound: [{port: 'any', proto: 'any', host: 'any'}],
}

/** A Nebula certificate and key for `name` at `ip`; file paths. */
async function nebCert(name, ip) {
  const crt = path.join(nebDir, `${name}.crt`)
  const key = path.join(nebDir, `${name}.key`)
  await runOk('nebula-cert', [
    'sign',
    '-ca-crt',
    path.join(nebDir, 'ca.crt'),
    '-ca-key',
    path.join(nebDir, 'ca.key'),
    '-name',
    name,
    '-ip',
    `${ip}/16`,
    '-out-crt',
    crt,
    '-out-key',
    key,
  ])
  return {ca: path.join(nebDir, 'ca.crt'), cert: crt, key}
}

/** Writes a Nebula config (JSON is YAML) and returns its path. */
function nebConfig(name, cfg) {
  const file = path.join(nebDir, `${name}.yml`)
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2), {mode: 0o600})
  return file
}

/** The controller's namespace as a lab "node" for startHelper (name and ns are all it uses). */
const controllerHost = (lab) => ({name: 'controller', ns: lab.state.controller.ns})

async function startLighthouse(lab) {
  nebDir = path.join(lab.runDir, 'nebula')
  fs.mkdirSync(nebDir, {recursive: true, mode: 0o700})
  await runOk('nebula-cert', [
    'ca',
    '-name',
    `mesh bench ${lab.prefix}`,
    '-out-crt',
    path.join(nebDir, 'ca.crt'),
    '-out-key',
    path.join(nebDir, 'ca.key'),
  ])
  const pki = await nebCert('lighthouse', NEB_LH_IP)
  const c = lab.state.controller
  const config = nebConfig('lighthouse', {
    pki,
    static_host_map: {},
    lighthouse: {am_lighthouse: true},
    listen: {host: c.underlay, port: NEB_PORT},
    punchy: {punch: true, respond: true},
    relay: {am_relay: true, use_relays: false},
    tun: {dev: 'nebula-lh', mtu: 1300},
    logging: {level: 'info'},
    firewall: nebFirewall,
  })
  lighthouse = lab.startHelper(controllerHost(lab), 'nebula-lighthouse', ['nebula', '-config', config])
  await waitFor(
    'the Nebula lighthouse to listen',
    async () =>
      (await run('ss', ['-Hunl', `sport = :${NEB_PORT}`], {ns: c.ns, timeoutMs: 3000})).stdout.includes(
        String(NEB_PORT),
      ),
    {timeoutMs: 10_000, intervalMs: 50},
  )
}

/** Creates one Nebula node's config (certificate included); returns what startNebula needs. */
async function nebNode(lab, kind) {
  const seq = ++nebSeq
  if (seq > 250) throw new Error('out of Nebula addresses')
  const node = await lab.addNode({nat: kind, daemon: false})
  const ip = `10.251.1.${seq}`
  const name = `neb-${node.name}`
  const pki = await nebCert(name, ip)
  const config = nebConfig(name, {
    pki,
    static_host_map: {[NEB_LH_IP]: [`${lab.state.controller.underlay}:${NEB_PORT}`]},
    lighthouse: {am_lighthouse: false, interval: 60, hosts: [NEB_LH_IP]},
    listen: {host: '0.0.0.0', port: NEB_PORT},
    punchy: {punch: true, respond: true},
    relay: {relays: [NEB_LH_IP], use_relays: true},
    tun: {dev: 'nebula1', mtu: 1300},
    logging: {level: 'info'},
    firewall: nebFirewall,
  })
  return {node, ip, config}
}

const startNebula = (lab, n) => lab.startHelper(n.node, 'nebula', ['nebula', '-config', n.config])
const stopNebula = (lab, n) => lab.stopHelper(n.node, 'nebula')
const tunUp = async (n) => {
  const r = await run('ip', ['-o', 'addr', 'show', 'dev', 'nebula1'], {ns: n.node.ns, timeoutMs: 3000})
  return r.code === 0 && r.stdout.includes(n.ip)
}

/** Starts both, returns when both tun devices are up (that instant is "both up"). */
async function startNebulaPair(lab, na, nb) {
  startNebula(lab, na)
  startNebula(lab, nb)
  await waitFor(
    'both nebula tun devices up',
    async () => (await Promise.all([tunUp(na), tunUp(nb)])).every(Boolean),
    {timeoutMs: 15_000, intervalMs: 10},
  )
}

/** Untimed: two fresh nodes behind their routers, with certificates and configs. */
async function nebulaPrepare(lab, [ka, kb]) {
  const [na, nb] = await Promise.all([nebNode(lab, ka), nebNode(lab, kb)])
  return {na, nb}
}

async function nebulaStart(lab, {na, nb}) {
  const tStart = performance.now()
  await startNebulaPair(lab, na, nb)
  const t0 = performance.now()
  const t0Wall = Date.now()
  const firstPingMs = await firstPingBothWays(na.node, na.ip, nb.node, nb.ip, t0Wall)
  const fromStartMs = firstPingMs === null ? null : firstPingMs + (t0 - tStart)
  return {na, nb, t0, firstPingMs, fromStartMs}
}

async function nebulaWindow(lab, s) {
  const {na, nb, t0} = s
  const end = t0 + WINDOW_MS
  const bg = backgroundPing(na.node.ns, nb.ip, (end - performance.now()) / 1000 + 5)
  const wire = wireWatch(lab, na.node, nb.node)
  let directAtMs = null
  const trace = []
  try {
    // Counters every second (each read is two nft processes) until direct is seen twice in a
    // row (so a burst of handshakes cannot pass), then only near the end of the window.
    for (let i = 0; i < 1000 && performance.now() < end; i++) {
      const left = end - performance.now()
      if (directAtMs === null || left < 2500) {
        await wire.sample()
        const w = wire.window()
        if (w) trace.push([Math.round(performance.now() - t0), w.ab, w.ba, w.ar, w.br, wire.direct()])
        if (directAtMs === null && trace.length >= 2 && trace.at(-1)[5] && trace.at(-2)[5])
          directAtMs = trace.at(-2)[0]
      }
      await sleep(Math.min(1000, Math.max(0, end - performance.now())))
    }
    await wire.sample()
    let pathAtEnd = wire.direct() ? 'direct' : wire.relayed() ? 'relay' : 'unclear'
    if (!(await lab.ping(na.node, nb.ip, 1))) pathAtEnd = 'down'
    return {firstPingMs: s.firstPingMs, fromStartMs: s.fromStartMs, directAtMs, pathAtEnd, trace}
  } finally {
    bg.stop()
    await Promise.all([stopNebula(lab, na), stopNebula(lab, nb)])
  }
}

// ---------------------------------------------------------------------------------------------
// Throughput

/** iperf3 client in `from` against a server started in `to`; bits per second received. */
async function iperf(lab, from, to, address, label) {
  const name = `iperf3-${label}`
  lab.startHelper(to, name, ['iperf3', '-s', '-B', address, '-1'])
  try {
    await waitFor(
      `iperf3 server on ${address}`,
      async () =>
        (await run('ss', ['-Htln', `src ${address}`], {ns: to.ns, timeoutMs: 3000})).stdout.includes('5201'),
      {timeoutMs: 5000, intervalMs: 50},
    )
    const out = await runOk('iperf3', ['-c', address, '-t', String(SECONDS), '-J'], {
      ns: from.ns,
      timeoutMs: (SECONDS + 20) * 1000,
    })
    return JSON.parse(out).end.sum_received.bits_per_second
  } finally {
    await lab.stopHelper(to, name)
  }
}

/** Runs `f` and returns its result with the CPU share (of one core) `pid` used meanwhile. */
async function withCpu(pid, f) {
  const c0 = cpuSeconds(pid)
  const w0 = performance.now()
  const value = await f()
  return {value, cpu: (cpuSeconds(pid) - c0) / ((performance.now() - w0) / 1000)}
}

const blockBetween = async (lab, a, b) => {
  await blockUdp(lab, a, b)
  await blockUdp(lab, b, a)
}

async function meshThroughput(lab) {
  const net = 'tput'
  await lab.createNetwork(net, '10.249.0.0/24')
  const [a, b] = await Promise.all([lab.addNode({nat: 'cone'}), lab.addNode({nat: 'cone'})])
  await Promise.all([lab.join(a, net), lab.join(b, net)])
  const bAddr = b.addresses[net]
  await waitFor('mesh throughput pair direct', async () => (await bothPaths(a, b, net)) === 'direct', {
    timeoutMs: 40_000,
    intervalMs: 250,
  })
  const direct = await iperf(lab, a, b, bAddr, 'mesh-direct')
  say(`mesh direct: ${(direct / 1e6).toFixed(0)} Mbit/s`)
  // With UDP between the two routers blocked, any echo reply came through the relay.
  await blockBetween(lab, a, b)
  const t0Wall = Date.now()
  const back = await firstReply(a.ns, bAddr, 20)
  let fallbackMs = back === null ? null : back - t0Wall
  let relayPair = 'cone-cone, UDP blocked'
  let [ra, rb, rAddr] = [a, b, bAddr]
  if (back === null) {
    // Not through the relay by itself: measure the relay on a pair theory keeps there instead.
    say(
      'mesh did not reach the peer through the relay within 20 s; measuring the relay on symmetric-symmetric',
    )
    await Promise.all([lab.stopDaemon(a), lab.stopDaemon(b)])
    await lab.createNetwork('tput2', '10.249.1.0/24')
    ;[ra, rb] = await Promise.all([lab.addNode({nat: 'symmetric'}), lab.addNode({nat: 'symmetric'})])
    await Promise.all([lab.join(ra, 'tput2'), lab.join(rb, 'tput2')])
    rAddr = rb.addresses.tput2
    await waitFor('mesh symmetric pair through the relay', () => lab.ping(ra, rAddr, 1), {
      timeoutMs: 40_000,
      intervalMs: 100,
    })
    relayPair = 'symmetric-symmetric (the blocked cone pair never got through)'
  } else say(`mesh back through the relay ${fallbackMs.toFixed(0)} ms after the block`)
  const pathOnRelay = await bothPaths(ra, rb, ra === a ? net : 'tput2')
  const ctl = lab.proc('controller').pid
  const relay = await withCpu(ctl, () => iperf(lab, ra, rb, rAddr, 'mesh-relay'))
  say(
    `mesh relay: ${(relay.value / 1e6).toFixed(0)} Mbit/s, controller CPU ${(relay.cpu * 100).toFixed(0)} %`,
  )
  await Promise.all([lab.stopDaemon(ra), lab.stopDaemon(rb)])
  return {directBps: direct, relayBps: relay.value, relayCpu: relay.cpu, fallbackMs, pathOnRelay, relayPair}
}

async function nebulaThroughput(lab) {
  const [na, nb] = await Promise.all([nebNode(lab, 'cone'), nebNode(lab, 'cone')])
  await startNebulaPair(lab, na, nb)
  const bg = backgroundPing(na.node.ns, nb.ip, 45)
  const wire = wireWatch(lab, na.node, nb.node)
  let directOk = true
  try {
    await waitFor(
      'nebula throughput pair direct',
      async () => {
        await wire.sample()
        return wire.direct()
      },
      {timeoutMs: 40_000, intervalMs: 250},
    )
  } catch {
    directOk = false
  } finally {
    bg.stop()
  }
  const direct = await iperf(lab, na.node, nb.node, nb.ip, 'neb-direct')
  say(`nebula ${directOk ? 'direct' : '(not direct within 40 s)'}: ${(direct / 1e6).toFixed(0)} Mbit/s`)
  await Promise.all([stopNebula(lab, na), stopNebula(lab, nb)])
  await blockBetween(lab, na.node, nb.node)
  await startNebulaPair(lab, na, nb)
  await waitFor('nebula relayed ping', () => lab.ping(na.node, nb.ip, 1), {
    timeoutMs: 30_000,
    intervalMs: 100,
  })
  const relay = await withCpu(lighthouse.pid, () => iperf(lab, na.node, nb.node, nb.ip, 'neb-relay'))
  say(
    `nebula relay: ${(relay.value / 1e6).toFixed(0)} Mbit/s, lighthouse CPU ${(relay.cpu * 100).toFixed(0)} %`,
  )
  await Promise.all([stopNebula(lab, na), stopNebula(lab, nb)])
  return {directBps: direct, directReached: directOk, relayBps: relay.value, relayCpu: relay.cpu}
}

// ---------------------------------------------------------------------------------------------
// The run

const systems = [
  {
    name: 'mesh',
    prepare: meshPrepare,
    start: meshStart,
    window: meshWindow,
    stop: (lab, {a, b}) => Promise.all([lab.stopDaemon(a), lab.stopDaemon(b)]),
  },
  ...(NEBULA
    ? [
        {
          name: 'nebula',
          prepare: nebulaPrepare,
          start: nebulaStart,
          window: nebulaWindow,
          stop: (lab, {na, nb}) => Promise.all([stopNebula(lab, na), stopNebula(lab, nb)]),
        },
      ]
    : []),
]
/** results[system][pair] = [trial, ...] */
const results = Object.fromEntries(
  systems.map((s) => [s.name, Object.fromEntries(PAIRS.map((p) => [pairName(p), []]))]),
)
const throughput = {}

const lab = await Lab.create({teardownOnExit: true})
try {
  say(
    `bench: lab ${lab.prefix}; ${PAIRS.length} pairs x ${RUNS} runs x ${systems.map((s) => s.name).join(' + ')}`,
  )
  await lab.startController()
  if (NEBULA) await startLighthouse(lab)
  for (let r = 1; r <= RUNS; r++) {
    // Alternate which system goes first, so neither always meets the quieter machine.
    const order = r % 2 ? systems : [...systems].reverse()
    for (const sys of order) {
      // Every pair's nodes first (untimed, four at a time), so the timed phases run back to back.
      const prepared = []
      for (let i = 0; i < PAIRS.length; i += 4)
        prepared.push(
          ...(await Promise.all(
            PAIRS.slice(i, i + 4).map((p) =>
              sys.prepare(lab, p).catch((err) => ({error: err.message.split('\n')[0]})),
            ),
          )),
        )
      say(`${sys.name} run ${r}: ${PAIRS.length} pairs of nodes ready`)
      const windows = []
      for (const [k, pair] of PAIRS.entries()) {
        const name = pairName(pair)
        const record = (v) => {
          results[sys.name][name].push(v)
          const f = (x) => (x === null || x === undefined ? '-' : `${x.toFixed(0)} ms`)
          say(
            `${sys.name} ${name} run ${r}: first ping ${f(v.firstPingMs)} (from start ${f(v.fromStartMs)})${v.pathAtFirstPing ? ` (${v.pathAtFirstPing})` : ''}, direct at ${f(v.directAtMs)}, path@${WINDOW_MS / 1000}s ${v.pathAtEnd}${v.error ? `, error: ${v.error}` : ''}`,
          )
        }
        let started
        try {
          if (prepared[k].error) throw new Error(prepared[k].error)
          started = await sys.start(lab, prepared[k])
        } catch (err) {
          record({firstPingMs: null, directAtMs: null, pathAtEnd: 'error', error: err.message.split('\n')[0]})
          if (!prepared[k].error) await sys.stop(lab, prepared[k]).catch(() => undefined)
          continue
        }
        const w = sys
          .window(lab, started)
          .catch((err) => ({
            firstPingMs: started.firstPingMs,
            fromStartMs: started.fromStartMs,
            directAtMs: null,
            pathAtEnd: 'error',
            error: err.message.split('\n')[0],
          }))
          .then(record)
        if (opts.serial) await w
        else windows.push(w)
      }
      await Promise.all(windows)
    }
  }
  if (!opts['no-throughput']) {
    say('throughput: mesh')
    throughput.mesh = await meshThroughput(lab).catch((err) => ({error: err.message.split('\n')[0]}))
    if (NEBULA) {
      say('throughput: nebula')
      throughput.nebula = await nebulaThroughput(lab).catch((err) => ({error: err.message.split('\n')[0]}))
    }
  }
} finally {
  const {logs} = lab.teardownSync({keepLogs: opts['keep-logs']})
  if (logs) say(`lab logs kept in ${logs}`)
}
const runSeconds = (performance.now() - benchT0) / 1000

// ---------------------------------------------------------------------------------------------
// Report

const summary = {}
for (const sys of systems) {
  summary[sys.name] = {}
  for (const pair of PAIRS) {
    const trials = results[sys.name][pairName(pair)]
    summary[sys.name][pairName(pair)] = {
      firstPingMs: median(trials.map((t) => t.firstPingMs)),
      fromStartMs: median(trials.map((t) => t.fromStartMs)),
      directAtMs: median(trials.map((t) => t.directAtMs)),
      directRuns: trials.filter((t) => t.directAtMs !== null).length,
      pathAtEnd: mode(trials.map((t) => t.pathAtEnd)),
      pathsAtEnd: trials.map((t) => t.pathAtEnd),
      runs: trials.length,
    }
  }
}

const goals = []
{
  // 1. First ping no slower than Nebula for any pair (medians; a pair Nebula never connects counts as met).
  if (NEBULA) {
    const slower = PAIRS.map(pairName).filter((p) => {
      const m = summary.mesh[p].firstPingMs
      const n = summary.nebula[p].firstPingMs
      return n !== null && (m === null || m > n)
    })
    goals.push({
      goal: 'first ping no slower than Nebula, every pair (medians)',
      pass: slower.length === 0,
      detail: slower.length ? `slower: ${slower.join(', ')}` : 'all pairs',
    })
  }
  // 1b. The same, timed from the start command (join / process start): what "both up" leaves out.
  if (NEBULA) {
    const slower = PAIRS.map(pairName).filter((p) => {
      const m = summary.mesh[p].fromStartMs
      const n = summary.nebula[p].fromStartMs
      return n !== null && (m === null || m > n)
    })
    goals.push({
      goal: 'first ping from start no slower than Nebula, every pair (medians; informational)',
      pass: slower.length === 0,
      detail: slower.length ? `slower: ${slower.join(', ')}` : 'all pairs',
    })
  }
  // 2. First ping under 0.5 s wherever mesh was not direct yet at its first ping.
  const notDirect = PAIRS.map(pairName).flatMap((p) =>
    results.mesh[p].filter((t) => t.pathAtFirstPing !== 'direct').map((t) => ({p, t})),
  )
  const slow = notDirect.filter(({t}) => t.firstPingMs === null || t.firstPingMs >= 500)
  goals.push({
    goal: 'first ping < 0.5 s through the relay where direct is not ready (every run)',
    pass: slow.length === 0,
    detail: `${notDirect.length - slow.length}/${notDirect.length} runs${slow.length ? `; slow: ${[...new Set(slow.map(({p}) => p))].join(', ')}` : ''}`,
  })
  // 3. Every direct-capable pair direct within the window, every run.
  const capable = PAIRS.filter((p) => expectedPath(...p) === 'direct').map(pairName)
  const notYet = capable.filter((p) =>
    results.mesh[p].some((t) => t.directAtMs === null || t.directAtMs > 30_000),
  )
  goals.push({
    goal: 'every direct-capable pair direct within 30 s (every run)',
    pass: notYet.length === 0,
    detail: notYet.length ? `not direct: ${notYet.join(', ')}` : `${capable.length} pairs`,
  })
  // 4. Relay throughput >= 90 % of direct.
  if (throughput.mesh && !throughput.mesh.error) {
    const ratio = throughput.mesh.relayBps / throughput.mesh.directBps
    goals.push({
      goal: 'relay throughput >= 90 % of direct',
      pass: ratio >= 0.9,
      detail: `${(ratio * 100).toFixed(0)} %`,
    })
  } else if (throughput.mesh?.error) {
    goals.push({goal: 'relay throughput >= 90 % of direct', pass: false, detail: throughput.mesh.error})
  }
}

const report = {
  prefix: lab.prefix,
  runs: RUNS,
  windowS: WINDOW_MS / 1000,
  iperfSeconds: SECONDS,
  overlapped: !opts.serial,
  runSeconds,
  summary,
  trials: results,
  throughput,
  goals,
}

if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(report, null, 2) + '\n')
if (opts.json) {
  process.stdout.write(JSON.stringify(report, null, 2) + '\n')
} else {
  const ms = (x) =>
    x === null || x === undefined ? '-' : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${x.toFixed(0)} ms`
  const direct = (s) =>
    s.directAtMs === null
      ? 'never'
      : `${ms(s.directAtMs)}${s.directRuns < s.runs ? ` (${s.directRuns}/${s.runs})` : ''}`
  // Each run's path ("down (probing)" shortened to "down"; the JSON has it whole), with counts.
  const pathCell = (s) => {
    const n = new Map()
    for (const p of s.pathsAtEnd.map((x) => x.replace(/ \(.*\)$/, ''))) n.set(p, (n.get(p) ?? 0) + 1)
    const e = [...n.entries()].sort((x, y) => y[1] - x[1])
    return e.length === 1 ? e[0][0] : e.map(([p, c]) => `${p} ${c}/${s.runs}`).join(', ')
  }
  const at = `path@${WINDOW_MS / 1000}s`
  const header = ['pair (theory)', 'mesh first ping', 'mesh from start', 'mesh direct at', `mesh ${at}`]
  if (NEBULA) header.push('nebula first ping', 'nebula from start', 'nebula direct at', `nebula ${at}`)
  const rows = PAIRS.map((p) => {
    const n = pairName(p)
    const m = summary.mesh[n]
    const row = [`${n} (${expectedPath(...p)})`, ms(m.firstPingMs), ms(m.fromStartMs), direct(m), pathCell(m)]
    if (NEBULA) {
      const nb = summary.nebula[n]
      row.push(ms(nb.firstPingMs), ms(nb.fromStartMs), direct(nb), pathCell(nb))
    }
    return row
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  const out = [
    `NAT traversal, mesh vs Nebula (median of ${RUNS}; times from both up; path@${WINDOW_MS / 1000}s; ${opts.serial ? 'pairs one at a time' : 'windows overlapped'}):`,
    line(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(line),
    '"from start": the first ping timed from the start command instead of from both up (mesh: both `mesh join` run, CLI start included; nebula: both processes started).',
    '',
  ]
  if (Object.keys(throughput).length) {
    out.push(
      `throughput (iperf3 -t ${SECONDS}; direct: a cone-cone pair; relay: the same pair with UDP between its routers blocked):`,
    )
    const mbps = (x) => `${(x / 1e6).toFixed(0)} Mbit/s`
    for (const [sys, t] of Object.entries(throughput)) {
      if (t.error) {
        out.push(`  ${sys.padEnd(7)} error: ${t.error}`)
        continue
      }
      const who = sys === 'mesh' ? 'controller' : 'lighthouse'
      out.push(
        `  ${sys.padEnd(7)} direct ${mbps(t.directBps)}${t.directReached === false ? ' (never went direct)' : ''}, relay ${mbps(t.relayBps)}, ratio ${((t.relayBps / t.directBps) * 100).toFixed(0)} %, relay CPU (${who}) ${(t.relayCpu * 100).toFixed(0)} % of a core${t.fallbackMs !== undefined ? (t.fallbackMs === null ? `; no ping through the relay within 20 s of the block, relay measured on ${t.relayPair}` : `; pinging through the relay ${ms(t.fallbackMs)} after the block (meshd says ${t.pathOnRelay})`) : ''}${sys === 'nebula' ? '; Nebula restarted with the block in place' : ''}`,
      )
    }
    out.push('')
  }
  // meshd's word checked on the wire: a `direct` pair must send its ping straight between the routers.
  const unproven = PAIRS.map(pairName).flatMap((p) =>
    results.mesh[p]
      .filter((t) => t.pathAtEnd === 'direct' && t.wireAtEnd && (t.wireAtEnd.ab < 5 || t.wireAtEnd.ba < 5))
      .map((t) => `${p} (${t.wireAtEnd.ab}/${t.wireAtEnd.ba} packets/s straight)`),
  )
  if (unproven.length) out.push(`mesh said direct but the routers did not see it: ${unproven.join(', ')}`, '')
  out.push('goals (mesh):')
  for (const g of goals) out.push(`  ${g.pass ? 'PASS' : 'FAIL'}  ${g.goal}: ${g.detail}`)
  out.push(`run time ${(runSeconds / 60).toFixed(1)} min`, '')
  process.stdout.write(out.join('\n'))
}
