// Builds dist/mesh: one file for linux-x64 that runs mesh (the CLI, meshd, the controller on
// SQLite, the lab) on a machine with no Node and no node_modules. `npm run build:binary` runs
// scripts/build.sh first.
//
// Node's single-executable applications (SEA): a copy of the pinned Node binary, stripped of its
// symbols, with a blob injected by postject that holds scripts/sea-launcher.cjs as the main
// script and the app as one asset (see the launcher for how it is unpacked and checked). The app
// is what `mesh` needs at run time and nothing else: bin/mesh.js, the esbuild bundle in
// dist/bundle/ (every dependency inside but the two below), the lab's two helper scripts, and
// better-sqlite3's JavaScript with its linux-x64 addon only (the other seven prebuilds are 13 MB).
// No source maps, tests, TypeScript sources or dev dependencies.
import {execFileSync} from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'

const root = path.resolve(import.meta.dirname, '..')
const out = path.join(root, 'dist', 'mesh')
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'

if (process.platform !== 'linux' || process.arch !== 'x64')
  throw new Error(`the single binary is built for linux-x64, not ${process.platform}-${process.arch}`)

/** Every file under dir (relative to root), sorted, for a reproducible payload. */
function walk(rel) {
  const abs = path.join(root, rel)
  if (fs.statSync(abs).isFile()) return [rel]
  return fs
    .readdirSync(abs, {withFileTypes: true})
    .flatMap((e) => walk(path.join(rel, e.name)))
    .sort()
}

const bs = 'node_modules/better-sqlite3'
const files = [
  'package.json',
  'bin/mesh.js',
  'dist/shared/node-version.js',
  ...walk('dist/bundle'),
  'dist/cli/lib/lab/forwarder.js',
  'dist/cli/lib/lab/udp-probe.js',
  `${bs}/package.json`,
  `${bs}/LICENSE`,
  ...walk(`${bs}/lib`),
  `${bs}/prebuilds/linux-x64.node`,
].filter((f) => !f.endsWith('.map'))

// The launcher reaches the ESM app through this one CommonJS file: a SEA's main script can
// require() built-ins only, and a real file on disk may import().
const extra = {'sea-import.cjs': Buffer.from("'use strict'\nmodule.exports = (url) => import(url)\n")}

const header = []
const bodies = []
for (const f of files) {
  const data = fs.readFileSync(path.join(root, f))
  header.push([f, fs.statSync(path.join(root, f)).mode & 0o777, data.length])
  bodies.push(data)
}
for (const [f, data] of Object.entries(extra)) {
  header.push([f, 0o644, data.length])
  bodies.push(data)
}
const headerBuf = Buffer.from(JSON.stringify(header))
const len = Buffer.alloc(4)
len.writeUInt32LE(headerBuf.length)
const plain = Buffer.concat([len, headerBuf, ...bodies])
const t0 = performance.now()
// Brotli 9: 2.3 MB in ≈ 2 s. Quality 11 saves 0.2 MB (of a 111 MB file) for 30 s of build;
// gzip -9 would be 2.7 MB. First-run decompression is ≈ 60 ms either way.
const packed = zlib.brotliCompressSync(plain, {
  params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: 9,
    [zlib.constants.BROTLI_PARAM_SIZE_HINT]: plain.length,
  },
})
const sha = crypto.createHash('sha256').update(packed).digest('hex')

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-sea-'))
try {
  fs.writeFileSync(path.join(work, 'app.br'), packed)
  fs.writeFileSync(path.join(work, 'app.sha256'), `${sha}\n`)
  const config = {
    main: path.join(root, 'scripts', 'sea-launcher.cjs'),
    output: path.join(work, 'sea.blob'),
    disableExperimentalSEAWarning: true,
    // V8 code cache of the launcher; no startup snapshot (oclif loads commands with import(),
    // which a snapshot cannot hold).
    useCodeCache: true,
    useSnapshot: false,
    assets: {'app.br': path.join(work, 'app.br'), 'app.sha256': path.join(work, 'app.sha256')},
  }
  fs.writeFileSync(path.join(work, 'sea.json'), JSON.stringify(config))
  execFileSync(process.execPath, ['--experimental-sea-config', path.join(work, 'sea.json')], {
    stdio: 'ignore',
  })
  const exe = path.join(work, 'mesh')
  fs.copyFileSync(process.execPath, exe)
  fs.chmodSync(exe, 0o755)
  // Node's symbols: 18 MB of the 127 MB, only for debuggers.
  try {
    execFileSync('strip', ['--strip-all', exe], {stdio: 'ignore'})
  } catch {
    console.warn('build-binary: strip (binutils) is not installed; the binary keeps its symbols')
  }
  execFileSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'postject', 'dist', 'cli.js'),
      exe,
      'NODE_SEA_BLOB',
      config.output,
      '--sentinel-fuse',
      SEA_FUSE,
    ],
    {stdio: 'ignore'},
  )
  // Renamed into place: a test or user running dist/mesh never sees half a binary.
  fs.copyFileSync(exe, `${out}.tmp`)
  fs.renameSync(`${out}.tmp`, out)
} finally {
  fs.rmSync(work, {recursive: true, force: true})
}
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`
console.log(
  `dist/mesh: ${mb(fs.statSync(out).size)} (app ${files.length + 1} files, ${mb(plain.length)}, brotli ${mb(packed.length)} in ${Math.round(performance.now() - t0)} ms; sha256 ${sha.slice(0, 16)}…)`,
)
