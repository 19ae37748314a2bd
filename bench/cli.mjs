// CLI start-up benchmark (not a test): the median wall time of `mesh --version`, `mesh --help`
// and `mesh status --json` against a running meshd, each beside the median of `node -e 0`
// measured right before it, for the bundled CLI (bin/mesh.js → dist/bundle/), the unbundled tsc output
// (MESH_NO_BUNDLE=1) and, when built, the single binary (dist/mesh). hyperfine when installed
// (scripts/setup.sh installs it), else a loop of our own; user+system CPU beside the wall time,
// because on a shared machine the wall time swings with the other workers' load.
// Run: `npm run bench:cli [-- --runs 20] [--json]`. meshd (status) needs root; without root that
// row is skipped.
import {spawn, spawnSync} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {parseArgs} from 'node:util'

const ROOT = path.resolve(import.meta.dirname, '..')
const {values: opts} = parseArgs({
  options: {
    runs: {type: 'string', default: '15'},
    warmup: {type: 'string', default: '3'},
    json: {type: 'boolean', default: false},
    'no-binary': {type: 'boolean', default: false},
    'no-unbundled': {type: 'boolean', default: false},
    'no-hyperfine': {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log(
    'usage: npm run bench:cli -- [--runs N (15)] [--warmup N (3)] [--no-binary] [--no-unbundled] [--no-hyperfine] [--json]',
  )
  process.exit(0)
}
const runs = Math.max(10, Number(opts.runs))
const warmup = Math.max(0, Number(opts.warmup))
const node = process.execPath
const meshJs = path.join(ROOT, 'bin', 'mesh.js')
const binary = path.join(ROOT, 'dist', 'mesh')
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-bench-cli-'))
const hyperfine = opts['no-hyperfine']
  ? ''
  : spawnSync('sh', ['-c', 'command -v hyperfine'], {encoding: 'utf8'}).stdout.trim()

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** {median, mean, cpu} in ms for argv, with env added to ours. */
function measure(argv, env = {}) {
  if (hyperfine) {
    const out = path.join(tmp, 'hf.json')
    const quoted = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ')
    const r = spawnSync(
      hyperfine,
      ['-N', '--style', 'none', '-w', String(warmup), '-r', String(runs), '--export-json', out, quoted],
      {env: {...process.env, ...env}, encoding: 'utf8'},
    )
    if (r.status !== 0) throw new Error(`hyperfine failed for ${quoted}:\n${r.stderr}`)
    const res = JSON.parse(fs.readFileSync(out, 'utf8')).results[0]
    return {median: res.median * 1000, mean: res.mean * 1000, cpu: (res.user + res.system) * 1000}
  }
  // Our own loop: wall time only (Node has no per-child CPU figures).
  const times = []
  for (let i = 0; i < warmup + runs; i++) {
    const t = performance.now()
    const r = spawnSync(argv[0], argv.slice(1), {env: {...process.env, ...env}, stdio: 'ignore'})
    const ms = performance.now() - t
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}`)
    if (i >= warmup) times.push(ms)
  }
  return {median: median(times), mean: times.reduce((a, b) => a + b, 0) / times.length, cpu: NaN}
}

/** A meshd with no networks, in a namespace of its own, for `status --json`. */
async function startMeshd() {
  if (process.getuid?.() !== 0) return undefined
  const ns = `mbench${process.pid % 100000}`
  spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
  if (spawnSync('ip', ['netns', 'add', ns]).status !== 0) return undefined
  const socket = path.join(tmp, 'meshd.sock')
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      node,
      meshJs,
      'daemon',
      'run',
      '--socket',
      socket,
      '--state-dir',
      path.join(tmp, 'state'),
      '--interface-prefix',
      'mbench',
      '--log-level',
      'warn',
    ],
    {stdio: 'ignore'},
  )
  const stop = () => {
    child.kill('SIGTERM')
    spawnSync('ip', ['netns', 'del', ns], {stdio: 'ignore'})
  }
  for (let i = 0; i < 300 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50))
  if (!fs.existsSync(socket)) {
    stop()
    throw new Error('meshd did not open its socket within 15 s')
  }
  return {socket, stop}
}

const meshd = await startMeshd()
const rows = []
try {
  const variants = [['bundled', [node, meshJs], {}]]
  if (!opts['no-unbundled']) variants.push(['unbundled', [node, meshJs], {MESH_NO_BUNDLE: '1'}])
  if (!opts['no-binary'] && fs.existsSync(binary)) {
    // The binary's own cache, already unpacked: what every run after the first costs.
    const env = {XDG_CACHE_HOME: path.join(tmp, 'cache')}
    spawnSync(binary, ['--version'], {env: {...process.env, ...env}, stdio: 'ignore'})
    variants.push(['binary', [binary], env])
  }
  for (const [variant, argv, env] of variants) {
    const cmds = [['--version'], ['--help']]
    if (meshd) cmds.push(['status', '--json', '--socket', meshd.socket])
    for (const args of cmds) {
      // node -e 0 right before each command, so both see the same load.
      const base = measure([node, '-e', '0'])
      const r = measure([...argv, ...args], env)
      rows.push({variant, command: `mesh ${args.slice(0, 2).join(' ')}`, ...r, node: base.median})
    }
  }
} finally {
  meshd?.stop()
  fs.rmSync(tmp, {recursive: true, force: true})
}

if (opts.json) {
  console.log(
    JSON.stringify({runs, tool: hyperfine ? 'hyperfine' : 'loop', loadavg: os.loadavg(), rows}, null, 2),
  )
} else {
  const f = (x) => (Number.isFinite(x) ? `${x.toFixed(0)} ms` : '-')
  console.log(
    `mesh CLI start-up: median of ${runs} runs (${hyperfine ? 'hyperfine' : 'own loop'}), ${os.cpus().length} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}${meshd ? '' : '; status skipped (meshd needs root)'}`,
  )
  console.log(
    `${'variant'.padEnd(10)} ${'command'.padEnd(20)} ${'median'.padStart(8)} ${'mean'.padStart(8)} ${'cpu'.padStart(8)} ${'node -e 0'.padStart(10)}`,
  )
  for (const r of rows)
    console.log(
      `${r.variant.padEnd(10)} ${r.command.padEnd(20)} ${f(r.median).padStart(8)} ${f(r.mean).padStart(8)} ${f(r.cpu).padStart(8)} ${f(r.node).padStart(10)}`,
    )
}
