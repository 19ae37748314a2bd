// Benchmark (not a test): mesh against a hand-configured wireguard-go tunnel, in one namespace lab.
//
//   1. Time to first ping (median of N): a fresh node's `mesh join` until it pings an existing node,
//      and `mesh up` after `mesh down`, beside a static pair brought up by hand (wireguard-go,
//      `wg genkey`, `wg set`, `ip addr`) until its first ping.
//   2. Throughput: iperf3 for S seconds between two mesh nodes, and between the same two namespaces
//      over a static wireguard-go tunnel, in the same run; prints the ratio (target >= 95 %).
//
// Needs root, wireguard-go, wg, ip, iperf3 and a build (bash scripts/build.sh). Run it with
// `npm run bench:mesh` or `bash bench/mesh-vs-wireguard.sh [--runs 5] [--seconds 10] [--rounds 2] [--json]`.
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = (p) => path.join(root, 'dist', 'cli', 'lib', 'lab', p)
if (!fs.existsSync(dist('lab.js'))) {
  process.stderr.write('bench: mesh is not built; run bash scripts/build.sh first\n')
  process.exit(78)
}
const {Lab, labPrerequisiteProblem} = await import(dist('lab.js'))
const {staticPair} = await import(dist('static-wg.js'))
const {run, runOk, waitFor, have} = await import(dist('sh.js'))

const {values: opts} = parseArgs({
  options: {
    runs: {type: 'string', default: '5'},
    seconds: {type: 'string', default: '10'},
    rounds: {type: 'string', default: '2'},
    json: {type: 'boolean', default: false},
  },
})
const RUNS = Number(opts.runs)
const SECONDS = Number(opts.seconds)
const ROUNDS = Number(opts.rounds)
const NET = 'bench'

const problem = labPrerequisiteProblem() ?? (have('iperf3') ? undefined : 'iperf3 is not installed')
if (problem) {
  process.stderr.write(`bench: cannot run here: ${problem}\n`)
  process.exit(77)
}

const say = (line) => {
  if (!opts.json) process.stderr.write(`${line}\n`)
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const pingUntil = (lab, from, address, what) =>
  waitFor(what, () => lab.ping(from, address, 1), {timeoutMs: 20_000, intervalMs: 10})

/** iperf3 client in `from` against a server started in `to`; bits per second received. */
async function iperf(lab, from, to, address, label) {
  const name = `iperf3-${label}`
  lab.startHelper(to, name, ['iperf3', '-s', '-B', address, '-1'])
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
  await lab.stopHelper(to, name)
  const res = JSON.parse(out)
  return res.end.sum_received.bits_per_second
}

const lab = await Lab.create({teardownOnExit: true})
const results = {prefix: lab.prefix, runs: RUNS, seconds: SECONDS, rounds: ROUNDS}
try {
  say(`bench: lab ${lab.prefix}: controller and two nodes`)
  await lab.startController()
  await lab.createNetwork(NET, '10.243.0.0/24')
  const a = await lab.addNode()
  const b = await lab.addNode()
  await lab.join(a, NET)
  await lab.join(b, NET)
  await lab.waitAllPairsPing(NET, [a, b], 30_000)

  // 1a. mesh join -> first ping, a fresh node each time (its meshd already running).
  const joinMs = []
  for (let i = 0; i < RUNS; i++) {
    const n = await lab.addNode()
    const invite = await lab.invite(NET)
    const t0 = performance.now()
    const r = await lab.mesh(n, ['join', invite, '--name', `${n.name}`])
    if (r.code !== 0) throw new Error(`mesh join failed: ${r.stderr}`)
    await pingUntil(lab, n, a.addresses[NET], `${n.name} first ping`)
    joinMs.push(performance.now() - t0)
    say(`bench: join -> first ping #${i + 1}: ${joinMs.at(-1).toFixed(0)} ms`)
    await lab.stopDaemon(n)
  }

  // What part of those figures is only the CLI starting (Node + oclif): `mesh status` round trips.
  const cliMs = []
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now()
    const r = await lab.mesh(a, ['status', '--json'])
    if (r.code !== 0) throw new Error(`mesh status failed: ${r.stderr}`)
    cliMs.push(performance.now() - t0)
  }

  // 1b. mesh up (after mesh down) -> first ping, on node b.
  const upMs = []
  for (let i = 0; i < RUNS; i++) {
    const down = await lab.mesh(b, ['down', NET])
    if (down.code !== 0) throw new Error(`mesh down failed: ${down.stderr}`)
    await waitFor('ping to fail after mesh down', async () => !(await lab.ping(b, a.addresses[NET], 1)), {
      timeoutMs: 10_000,
    })
    const t0 = performance.now()
    const up = await lab.mesh(b, ['up', NET])
    if (up.code !== 0) throw new Error(`mesh up failed: ${up.stderr}`)
    await pingUntil(lab, b, a.addresses[NET], 'first ping after mesh up')
    upMs.push(performance.now() - t0)
    say(`bench: up -> first ping #${i + 1}: ${upMs.at(-1).toFixed(0)} ms`)
  }

  // 1c. static wireguard-go pair by hand -> first ping, between the same two namespaces.
  const staticMs = []
  for (let i = 1; i <= RUNS; i++) {
    const t0 = performance.now()
    const pair = await staticPair(lab, a, b, i)
    await pingUntil(lab, a, pair.addresses[1], 'first ping over the static pair')
    staticMs.push(performance.now() - t0)
    say(`bench: static wireguard-go -> first ping #${i}: ${staticMs.at(-1).toFixed(0)} ms`)
    for (const [k, n] of [a, b].entries()) await lab.stopHelper(n, `wireguard-go-${pair.ifaces[k]}`)
  }

  // 2. Throughput: the same two namespaces, over mesh and over a static tunnel, alternating.
  const tunnel = await staticPair(lab, a, b, 0)
  await pingUntil(lab, a, tunnel.addresses[1], 'static tunnel up')
  const meshBps = []
  const staticBps = []
  for (let r = 0; r < ROUNDS; r++) {
    staticBps.push(await iperf(lab, a, b, tunnel.addresses[1], `static${r}`))
    say(`bench: iperf3 static wireguard-go: ${(staticBps.at(-1) / 1e6).toFixed(0)} Mbit/s`)
    meshBps.push(await iperf(lab, a, b, b.addresses[NET], `mesh${r}`))
    say(`bench: iperf3 mesh: ${(meshBps.at(-1) / 1e6).toFixed(0)} Mbit/s`)
  }

  Object.assign(results, {
    timeToFirstPingMs: {
      meshJoin: {median: median(joinMs), samples: joinMs},
      meshUp: {median: median(upMs), samples: upMs},
      meshCliRoundTrip: {median: median(cliMs), samples: cliMs},
      staticWireguardGo: {median: median(staticMs), samples: staticMs},
    },
    throughputMbps: {
      mesh: median(meshBps) / 1e6,
      staticWireguardGo: median(staticBps) / 1e6,
      samples: {mesh: meshBps.map((x) => x / 1e6), staticWireguardGo: staticBps.map((x) => x / 1e6)},
    },
    throughputRatio: median(meshBps) / median(staticBps),
  })
} finally {
  lab.teardownSync()
}

if (opts.json) {
  process.stdout.write(JSON.stringify(results, null, 2) + '\n')
} else {
  const t = results.timeToFirstPingMs
  const f = (x) => `${x.toFixed(0)} ms`
  process.stdout.write(
    [
      `time to first ping (median of ${RUNS}):`,
      `  mesh join            ${f(t.meshJoin.median)}   (${t.meshJoin.samples.map((x) => x.toFixed(0)).join(', ')})`,
      `  mesh up              ${f(t.meshUp.median)}   (${t.meshUp.samples.map((x) => x.toFixed(0)).join(', ')})`,
      `  (mesh CLI start-up + one socket call: ${f(t.meshCliRoundTrip.median)}, included in both mesh figures)`,
      `  static wireguard-go  ${f(t.staticWireguardGo.median)}   (${t.staticWireguardGo.samples.map((x) => x.toFixed(0)).join(', ')})`,
      `throughput (iperf3, ${SECONDS} s, median of ${ROUNDS}):`,
      `  mesh                 ${results.throughputMbps.mesh.toFixed(0)} Mbit/s`,
      `  static wireguard-go  ${results.throughputMbps.staticWireguardGo.toFixed(0)} Mbit/s`,
      `  ratio                ${(results.throughputRatio * 100).toFixed(1)} % (target >= 95 %)`,
      '',
    ].join('\n'),
  )
}
