// Benchmark (not a test): what one read of a wireguard-go interface costs meshd, the old way and
// the new, in the same run (issue 7).
//
//   spawn: `ip -j addr show` + `wg show IF dump`, two processes per read: what every path check
//          (about once a second per network with peers) did before (the kernel driver still does).
//   uapi:  UserspaceDriver.read(): one get over wireguard-go's UAPI socket, the link part from its
//          cache: what a path check does now.
//
// One wireguard-go interface with --peers peers (default 50) in a network namespace this run
// creates (per-run prefix, removed after, also on failure). The bench runs itself inside that
// namespace, so `ip` and `wg` are spawned directly, as meshd spawns them. Reads run sequentially,
// the two ways alternating in --rounds rounds. Per read: wall time (median and mean), meshd's CPU
// (process.cpuUsage: user + system of this process), its children's (cutime + cstime of
// /proc/self/stat: the reaped ip and wg), wireguard-go's (it serves both ways), and the largest
// event-loop delay seen (spawning forks on the main thread).
//
// Needs root, ip, wg, wireguard-go and a build (bash scripts/build.sh).
//   bash bench/wg-read.sh [--reads 200] [--peers 50] [--rounds 4] [--json]
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {monitorEventLoopDelay} from 'node:perf_hooks'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'
import {cpuSeconds, loadAverage} from './lib/proc.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = (p) => path.join(root, 'dist', 'daemon', p)

const {values: opts} = parseArgs({
  options: {
    reads: {type: 'string', default: '200'},
    peers: {type: 'string', default: '50'},
    rounds: {type: 'string', default: '4'},
    json: {type: 'boolean', default: false},
    // Internal: the half that runs inside the namespace.
    child: {type: 'string'},
  },
})
const READS = Number(opts.reads)
const PEERS = Number(opts.peers)
const ROUNDS = Math.max(1, Number(opts.rounds))
if (!(READS >= ROUNDS && PEERS >= 0 && PEERS <= 250)) {
  process.stderr.write('bench: --reads must be at least --rounds, --peers 0..250\n')
  process.exit(64)
}

const ok = (cmd, args) => spawnSync(cmd, args, {stdio: 'ignore'}).status === 0

if (opts.child === undefined) await parent()
else await child(opts.child)

/** Outside: checks, the namespace, the child run, cleanup. */
async function parent() {
  if (!fs.existsSync(dist('wireguard/userspace.js'))) {
    process.stderr.write('bench: mesh is not built; run bash scripts/build.sh first\n')
    process.exit(78)
  }
  const missing = ['ip', 'wg', 'wireguard-go'].find((c) => !ok(c, c === 'ip' ? ['-V'] : ['--version']))
  if (process.getuid?.() !== 0 || missing) {
    process.stderr.write(`bench: cannot run here: ${missing ? `${missing} is missing` : 'needs root'}\n`)
    process.exit(77)
  }
  const prefix = `wr${randomBytes(2).toString('hex')}`
  const ns = `${prefix}-ns`
  const iface = `${prefix}wg0`
  const cleanup = () => {
    for (const pid of wireguardGoPids(iface)) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // gone
      }
    }
    spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
    fs.rmSync(`/var/run/wireguard/${iface}.sock`, {force: true})
  }
  process.on('SIGINT', () => {
    cleanup()
    process.exit(130)
  })
  try {
    if (spawnSync('ip', ['netns', 'add', ns], {stdio: 'inherit'}).status !== 0)
      throw new Error('ip netns add failed')
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], {stdio: 'inherit'})
    const args = [fileURLToPath(import.meta.url), '--child', iface, '--reads', String(READS)]
    args.push('--peers', String(PEERS), '--rounds', String(ROUNDS), ...(opts.json ? ['--json'] : []))
    const res = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...args], {
      stdio: 'inherit',
      timeout: 10 * 60_000,
    })
    process.exitCode = res.status ?? 1
  } finally {
    cleanup()
  }
}

/** The wireguard-go processes serving `iface` (argv names it): ours, the name is per run. */
function wireguardGoPids(iface) {
  const pids = []
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')
      if (argv.some((a) => a.endsWith('wireguard-go')) && argv.includes(iface)) pids.push(Number(d))
    } catch {
      // gone
    }
  }
  return pids
}

/** CPU seconds of this process's reaped children (cutime + cstime, fields 16 and 17). */
function childrenCpuSeconds() {
  const text = fs.readFileSync('/proc/self/stat', 'utf8')
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return (Number(f[13]) + Number(f[14])) / 100
}

/** Inside the namespace: the interface, the reads, the figures. */
async function child(iface) {
  const {UserspaceDriver} = await import(dist('wireguard/userspace.js'))
  const {KernelDriver} = await import(dist('wireguard/kernel.js'))
  const {generateKeyPair} = await import(dist('keys.js'))
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-bench-wgread-'))
  const driver = new UserspaceDriver({logDir, pollMs: 3_600_000})
  const spawnRead = new KernelDriver() // its read() is the old one: ip -j addr + wg show dump
  try {
    const peers = Array.from({length: PEERS}, (_, i) => ({
      publicKey: generateKeyPair().publicKey,
      allowedIps: [`10.240.${i >> 8}.${(i & 255) + 1}/32`],
      endpoint: `203.0.113.${(i % 250) + 1}:51820`,
      persistentKeepalive: 25,
    }))
    const res = await driver.apply({
      name: iface,
      privateKey: generateKeyPair().privateKey,
      listenPort: 51820,
      address: '10.240.255.1/16',
      mtu: 1420,
      peers,
    })
    if (res.failed?.length) throw new Error(`peers refused: ${JSON.stringify(res.failed)}`)
    const [wgPid] = wireguardGoPids(iface)
    const ways = {
      spawn: {read: () => spawnRead.read(iface), ms: [], cpu: 0, children: 0, wg: 0, loopMax: 0},
      uapi: {read: () => driver.read(iface), ms: [], cpu: 0, children: 0, wg: 0, loopMax: 0},
    }
    // Same answer both ways (peer count), and warm caches, before anything is measured.
    for (const w of Object.values(ways)) {
      for (let i = 0; i < 5; i++) {
        const st = await w.read()
        if (st?.peers.length !== PEERS) throw new Error(`read ${st?.peers.length} peers, want ${PEERS}`)
      }
    }
    const perRound = Math.floor(READS / ROUNDS)
    for (let r = 0; r < ROUNDS; r++) {
      for (const w of r % 2 ? [ways.uapi, ways.spawn] : [ways.spawn, ways.uapi]) {
        const loop = monitorEventLoopDelay({resolution: 1})
        loop.enable()
        const cpu0 = process.cpuUsage()
        const ch0 = childrenCpuSeconds()
        const wg0 = cpuSeconds(wgPid)
        for (let i = 0; i < perRound; i++) {
          const t0 = performance.now()
          await w.read()
          w.ms.push(performance.now() - t0)
        }
        const cpu = process.cpuUsage(cpu0)
        w.cpu += (cpu.user + cpu.system) / 1e6
        w.children += childrenCpuSeconds() - ch0
        w.wg += cpuSeconds(wgPid) - wg0
        loop.disable()
        w.loopMax = Math.max(w.loopMax, loop.max / 1e6)
      }
    }
    const summary = (w) => {
      const n = w.ms.length
      const s = [...w.ms].sort((a, b) => a - b)
      return {
        reads: n,
        wallMsMedian: s[Math.floor(n / 2)],
        wallMsMean: w.ms.reduce((a, b) => a + b, 0) / n,
        cpuMsPerRead: (1000 * w.cpu) / n,
        childrenCpuMsPerRead: (1000 * w.children) / n,
        meshdTotalCpuMsPerRead: (1000 * (w.cpu + w.children)) / n,
        wireguardGoCpuMsPerRead: (1000 * w.wg) / n,
        eventLoopDelayMaxMs: w.loopMax,
      }
    }
    const spawn = summary(ways.spawn)
    const uapi = summary(ways.uapi)
    const result = {
      peers: PEERS,
      rounds: ROUNDS,
      conditions: {loadAverage1m: loadAverage(), cpus: os.cpus().length},
      spawn,
      uapi,
      ratio: {
        wallMedian: spawn.wallMsMedian / uapi.wallMsMedian,
        meshdCpu: spawn.meshdTotalCpuMsPerRead / uapi.meshdTotalCpuMsPerRead,
      },
    }
    if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
    else {
      const f = (x) => x.toFixed(3).padStart(9)
      const row = (name, x) =>
        `${name.padEnd(6)}${f(x.wallMsMedian)}${f(x.wallMsMean)}${f(x.cpuMsPerRead)}${f(x.childrenCpuMsPerRead)}` +
        `${f(x.meshdTotalCpuMsPerRead)}${f(x.wireguardGoCpuMsPerRead)}${f(x.eventLoopDelayMaxMs)}`
      process.stdout.write(
        [
          `wg-read: one wireguard-go interface, ${PEERS} peers, ${spawn.reads} reads each way in ${ROUNDS} alternating rounds`,
          `conditions: load ${result.conditions.loadAverage1m} on ${result.conditions.cpus} CPUs (shared machine: figures under contention)`,
          'ms/read  wall-med wall-mean meshd-cpu children meshd-all  wg-go-cpu loop-max',
          row('spawn', spawn),
          row('uapi', uapi),
          `ratio spawn/uapi: wall (median) ${result.ratio.wallMedian.toFixed(1)}x, meshd CPU (self + children) ${result.ratio.meshdCpu.toFixed(1)}x`,
          '',
        ].join('\n'),
      )
    }
  } finally {
    await driver.remove(iface).catch(() => {})
    await driver.close()
    fs.rmSync(logDir, {recursive: true, force: true})
  }
}
