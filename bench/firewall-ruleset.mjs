// Inbound-rules benchmark (not a test): how long buildRuleset takes and how big the script is for
// N peers, and how long `nft -f` takes to replace the whole table in a throwaway network namespace
// (created and deleted here; nothing touches the root namespace's ruleset). Each peer gets three
// tcp ranges, one udp port and ICMP; every fifth peer has no `inbound` (allow all).
// Run: `bash scripts/build.sh && node bench/firewall-ruleset.mjs [--peers 100,1000,5000] [--runs 5]`.
// The nft rows need root, ip and nft; they are skipped otherwise. On a shared machine the wall
// times swing with the other workers' load: read them as orders of magnitude.
import {spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import path from 'node:path'
import {performance} from 'node:perf_hooks'
import {parseArgs} from 'node:util'

const ROOT = path.resolve(import.meta.dirname, '..')
const {buildRuleset} = await import(path.join(ROOT, 'dist', 'daemon', 'firewall', 'ruleset.js'))
const {values: opts} = parseArgs({
  options: {peers: {type: 'string', default: '100,1000,5000'}, runs: {type: 'string', default: '5'}},
})
const runs = Number(opts.runs)

const input = (n) => ({
  iface: 'bench0',
  cidr: '10.64.0.0/10',
  self: '10.64.0.1',
  daemonUdpPorts: [41820],
  peers: Array.from({length: n}, (_, i) => {
    const a = 0x0a400002 + i
    const address = [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join('.')
    if (i % 5 === 0) return {address}
    return {
      address,
      inbound: [
        {
          proto: 'tcp',
          ports: [
            [22, 22],
            [443, 443],
            [8000, 8100],
          ],
        },
        {proto: 'udp', ports: [[53, 53]]},
        {proto: 'icmp'},
      ],
    }
  }),
})

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const canNft =
  process.getuid?.() === 0 &&
  spawnSync('nft', ['--version'], {stdio: 'ignore'}).status === 0 &&
  spawnSync('ip', ['-V'], {stdio: 'ignore'}).status === 0
const ns = `fwb${randomBytes(2).toString('hex')}`
if (canNft) spawnSync('ip', ['netns', 'add', ns])
try {
  console.log('peers\tbuild ms\tscript KiB\tnft -f ms (replace)')
  for (const n of opts.peers.split(',').map(Number)) {
    const inp = input(n)
    const builds = []
    let script = ''
    for (let r = 0; r < runs; r++) {
      const t = performance.now()
      script = buildRuleset(inp).script
      builds.push(performance.now() - t)
    }
    let nftMs = 'skipped'
    if (canNft) {
      const times = []
      for (let r = 0; r < runs; r++) {
        const t = performance.now()
        const res = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {input: script, timeout: 60_000})
        times.push(performance.now() - t)
        if (res.status !== 0) throw new Error(`nft failed: ${res.stderr}`)
      }
      nftMs = median(times).toFixed(1)
    }
    console.log(`${n}\t${median(builds).toFixed(2)}\t${(script.length / 1024).toFixed(1)}\t${nftMs}`)
  }
} finally {
  if (canNft) spawnSync('ip', ['netns', 'del', ns])
}
