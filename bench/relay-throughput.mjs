// Benchmark (not a test): relayed against direct throughput in one NAT lab, for A/B runs.
//
// One lab, one controller; a cone-cone pair (direct) and a symmetric-symmetric pair (relayed:
// theory keeps it on the relay). iperf3 TCP for --seconds on each, alternating which goes
// first, --rounds times. Per iperf3: bits/s received, TCP retransmits, and the CPU (share of one
// core) of the controller (relay), of each meshd and each wireguard-go of the pair meanwhile.
//
// `MESH_ROOT=/path/to/other/worktree node bench/relay-throughput.mjs` measures that build (its
// dist/), so two builds can be measured alternately in one session: same machine, same load.
// Needs root, wireguard-go, wg, ip, nft, iperf3 and a build. Prints one JSON line per round with
// --json, else a table. NODE_OPTIONS reaches the controller and the daemons (e.g. --cpu-prof).
// Flags: [--seconds 8] [--rounds 3] [--json] [--keep-logs]
import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'
import os from 'node:os'

const root = process.env.MESH_ROOT ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = (p) => path.join(root, 'dist', 'cli', 'lib', p)
if (!fs.existsSync(dist('lab/lab.js'))) {
  process.stderr.write(`bench: ${root} is not built; run bash scripts/build.sh there first\n`)
  process.exit(78)
}
const {Lab} = await import(dist('lab/lab.js'))
const {run, runOk, waitFor} = await import(dist('lab/sh.js'))
const {DaemonClient} = await import(dist('daemon-client.js'))

const {values: opts} = parseArgs({
  options: {
    seconds: {type: 'string', default: '8'},
    rounds: {type: 'string', default: '3'},
    json: {type: 'boolean', default: false},
    'keep-logs': {type: 'boolean', default: false},
  },
})
const SECONDS = Number(opts.seconds)
const ROUNDS = Number(opts.rounds)
const say = (s) => process.stderr.write(`${s}\n`)
const CLK_TCK = Number((await runOk('getconf', ['CLK_TCK'])).trim()) || 100

function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return NaN
  }
}

/** The wireguard-go processes in a namespace. */
async function wgGoPids(ns) {
  const out = (await run('ip', ['netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean)
  return out.filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('wireguard-go')
    } catch {
      return false
    }
  })
}

const daemon = (node) => new DaemonClient({socketPath: node.socket, timeoutMs: 3000})
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

/** UDP RcvbufErrors (receive-queue overflows) in a namespace. */
async function udpRcvbufErrors(ns) {
  const lines = (await runOk('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'])).split('\n')
  const [names, values] = lines.filter((l) => l.startsWith('Udp:')).map((l) => l.split(/\s+/))
  return Number(values[names.indexOf('RcvbufErrors')])
}

/** iperf3 from `a` to `b` with the CPU of `pids` meanwhile, and UDP overflows on both sides. */
async function iperf(lab, a, b, address, label, pids) {
  const name = `iperf3-${label}`
  lab.startHelper(b, name, ['iperf3', '-s', '-B', address, '-1'])
  try {
    await waitFor(
      `iperf3 server on ${address}`,
      async () =>
        (await run('ss', ['-Htln', `src ${address}`], {ns: b.ns, timeoutMs: 3000})).stdout.includes('5201'),
      {timeoutMs: 5000, intervalMs: 50},
    )
    const u0 = await Promise.all([udpRcvbufErrors(a.ns), udpRcvbufErrors(b.ns)])
    const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]))
    const w0 = performance.now()
    // Round trips under load: a ping beside the stream (5 a second, from its second second).
    const pinger = run(
      'ping',
      ['-n', '-q', '-c', String(Math.max(1, (SECONDS - 2) * 5)), '-i', '0.2', address],
      {
        ns: a.ns,
        timeoutMs: (SECONDS + 20) * 1000,
      },
    )
    const out = await runOk('iperf3', ['-c', address, '-t', String(SECONDS), '-J'], {
      ns: a.ns,
      timeoutMs: (SECONDS + 20) * 1000,
    })
    const rtt = /= [\d.]+\/([\d.]+)\/([\d.]+)/.exec((await pinger).stdout)
    const wall = (performance.now() - w0) / 1000
    const cpu = Object.fromEntries(
      Object.entries(pids).map(([k, p]) => [k, Math.round(((cpuSeconds(p) - c0[k]) / wall) * 100)]),
    )
    const u1 = await Promise.all([udpRcvbufErrors(a.ns), udpRcvbufErrors(b.ns)])
    const j = JSON.parse(out)
    return {
      mbps: Math.round(j.end.sum_received.bits_per_second / 1e6),
      retransmits: j.end.sum_sent.retransmits,
      intervals: j.intervals.map((i) => Math.round(i.sum.bits_per_second / 1e6)),
      cpu,
      udpOverflows: [u1[0] - u0[0], u1[1] - u0[1]],
      rttAvgMs: rtt ? Number(rtt[1]) : null,
      rttMaxMs: rtt ? Number(rtt[2]) : null,
    }
  } finally {
    await lab.stopHelper(b, name)
  }
}

const lab = await Lab.create({teardownOnExit: true})
const rows = []
try {
  say(`bench: lab ${lab.prefix}, build ${root}`)
  await lab.startController()
  await lab.createNetwork('d', '10.248.0.0/24')
  await lab.createNetwork('r', '10.248.1.0/24')
  const [a, b, c, d] = await Promise.all([
    lab.addNode({nat: 'cone'}),
    lab.addNode({nat: 'cone'}),
    lab.addNode({nat: 'symmetric'}),
    lab.addNode({nat: 'symmetric'}),
  ])
  await Promise.all([lab.join(a, 'd'), lab.join(b, 'd'), lab.join(c, 'r'), lab.join(d, 'r')])
  await waitFor('direct pair direct', async () => (await bothPaths(a, b, 'd')) === 'direct', {
    timeoutMs: 40_000,
    intervalMs: 250,
  })
  await waitFor('relay pair pings', () => lab.ping(c, d.addresses.r, 1), {timeoutMs: 40_000, intervalMs: 100})
  const relayPath = await bothPaths(c, d, 'r')
  say(`bench: relay pair path ${relayPath}`)
  const ctl = lab.proc('controller').pid
  const pidsOf = async (x, y) => {
    const [wx, wy] = await Promise.all([wgGoPids(x.ns), wgGoPids(y.ns)])
    return {
      relay: ctl,
      meshdA: lab.proc(`${x.name}/meshd`).pid,
      meshdB: lab.proc(`${y.name}/meshd`).pid,
      ...(wx[0] && {wgA: wx[0]}),
      ...(wy[0] && {wgB: wy[0]}),
    }
  }
  const directPids = await pidsOf(a, b)
  const relayPids = await pidsOf(c, d)
  for (let r = 1; r <= ROUNDS; r++) {
    const load = os.loadavg()[0].toFixed(1)
    const runDirect = () => iperf(lab, a, b, b.addresses.d, `d${r}`, directPids)
    const runRelay = () => iperf(lab, c, d, d.addresses.r, `r${r}`, relayPids)
    let direct, relay
    if (r % 2) {
      direct = await runDirect()
      relay = await runRelay()
    } else {
      relay = await runRelay()
      direct = await runDirect()
    }
    const row = {round: r, load, direct, relay, ratio: +(relay.mbps / direct.mbps).toFixed(2)}
    rows.push(row)
    if (opts.json) process.stdout.write(`${JSON.stringify(row)}\n`)
    say(
      `round ${r} (load ${load}): direct ${direct.mbps} Mbit/s (retr ${direct.retransmits}), relay ${relay.mbps} Mbit/s (retr ${relay.retransmits}), ratio ${row.ratio}; relay CPU ${JSON.stringify(relay.cpu)}, UDP overflows ${relay.udpOverflows} (direct ${direct.udpOverflows}), ping under load avg/max ${relay.rttAvgMs}/${relay.rttMaxMs} ms (direct ${direct.rttAvgMs}/${direct.rttMaxMs}); relay intervals ${relay.intervals.join(' ')}`,
    )
  }
} finally {
  lab.teardownSync({keepLogs: opts['keep-logs']})
}
