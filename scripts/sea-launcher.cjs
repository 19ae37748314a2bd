'use strict'
/* eslint-disable @typescript-eslint/no-require-imports -- a single-executable application's main script is CommonJS */
// The single binary's main script (Node's single-executable applications; built by
// scripts/build-binary.mjs). The binary carries the app (bin/mesh.js, the bundled CLI in
// dist/bundle/, better-sqlite3 with its linux-x64 addon) as one brotli-compressed asset. oclif
// finds commands on disk and Node loads native addons from files, so the launcher unpacks the
// app once into a cache directory keyed by the payload's SHA-256 and runs it from there:
//
//   ~/.cache/mesh/app/<sha256>/   (or under $MESH_CACHE_DIR, systemd's $CACHE_DIRECTORY or
//                                  $XDG_CACHE_HOME/mesh; see cacheRoot())
//
// Safety of that directory, since whatever is in it runs (as root for meshd):
// - mesh/app and each app dir are made 0700 by this user; every ancestor must belong to root or
//   to this user and not be writable by others (unless sticky, like /tmp), else it refuses:
//   nobody else can have planted or changed a file in it, nor swapped it between check and use.
// - The payload is checked against the SHA-256 the build recorded before a byte is written.
// - It is unpacked into a fresh private temporary directory beside the final one and renamed
//   into place in one step: a run sees a complete app or none; a second run racing the first
//   keeps whichever rename won and removes its own copy.
// The first run costs ≈ 0.2 s more; later runs only stat the path.
//
// `BINARY --mesh-internal-node-script FILE ARGS...` runs one of the app's Node scripts (the lab's
// forwarder and UDP probe) with this binary as Node (cli/lib/self.ts builds that command line).
// crypto, zlib and os load only on the first run (unpack) or without $HOME: every later start
// pays for fs, path, sea, module and url only.
const fs = require('node:fs')
const path = require('node:path')
const sea = require('node:sea')
const {createRequire} = require('node:module')
const {pathToFileURL} = require('node:url')

const NODE_SCRIPT_FLAG = '--mesh-internal-node-script'

const fail = (message) => {
  process.stderr.write(`mesh: ${message} (SINGLE_BINARY_CACHE)\n`)
  process.exit(70)
}

/**
 * MESH_CACHE_DIR, else systemd's CacheDirectory= ($CACHE_DIRECTORY: a service with
 * ProtectHome= cannot use ~), else $XDG_CACHE_HOME/mesh, else ~/.cache/mesh; then app/ in it.
 */
function cacheRoot() {
  const abs = (p) => (p && path.isAbsolute(p) ? p : undefined)
  const dir =
    abs(process.env.MESH_CACHE_DIR) ??
    abs(process.env.CACHE_DIRECTORY?.split(':')[0]) ??
    (abs(process.env.XDG_CACHE_HOME) && path.join(process.env.XDG_CACHE_HOME, 'mesh')) ??
    path.join(abs(process.env.HOME) ?? require('node:os').userInfo().homedir, '.cache', 'mesh')
  return path.join(dir, 'app')
}

const uid = process.geteuid()

/** dir and every ancestor: a real directory of root or ours, not writable by others unless sticky. */
function checkChain(dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = fs.lstatSync(d)
    if (!st.isDirectory()) fail(`${d} is not a directory (a symlink?); refusing to run code from under it`)
    if (st.uid !== 0 && st.uid !== uid) fail(`${d} belongs to uid ${st.uid}, not to you or root`)
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
      fail(`${d} is writable by others (mode ${(st.mode & 0o7777).toString(8)})`)
    if (path.dirname(d) === d) return
  }
}

/** The cache root: made 0700 by us, or already ours and private; its real path, checked. */
function privateRoot(root) {
  fs.mkdirSync(root, {recursive: true, mode: 0o700})
  // Symlinks above it (/home -> /data/home) are resolved once; the checked chain is the real one.
  const real = fs.realpathSync(root)
  const st = fs.lstatSync(real)
  if (st.isDirectory() && st.uid === uid && (st.mode & 0o077) !== 0) fs.chmodSync(real, 0o700)
  checkChain(real)
  return real
}

/** The payload (brotli of: u32 LE header length, header JSON [[path, mode, size]...], bytes). */
function unpack(into) {
  const crypto = require('node:crypto')
  const zlib = require('node:zlib')
  const raw = Buffer.from(sea.getRawAsset('app.br'))
  const want = sea.getAsset('app.sha256', 'utf8').trim()
  const got = crypto.createHash('sha256').update(raw).digest('hex')
  if (got !== want) fail(`the embedded app is damaged (sha256 ${got}, expected ${want})`)
  const buf = zlib.brotliDecompressSync(raw)
  const headerLen = buf.readUInt32LE(0)
  const entries = JSON.parse(buf.subarray(4, 4 + headerLen).toString('utf8'))
  let off = 4 + headerLen
  for (const [rel, mode, size] of entries) {
    const file = path.join(into, rel)
    if (path.relative(into, file).startsWith('..')) fail(`bad path in the embedded app: ${rel}`)
    fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700})
    fs.writeFileSync(file, buf.subarray(off, off + size), {mode: mode & 0o700, flag: 'wx'})
    off += size
  }
  return want
}

function appDir() {
  const key = sea.getAsset('app.sha256', 'utf8').trim()
  const root = privateRoot(cacheRoot())
  const dir = path.join(root, key)
  if (!fs.existsSync(dir)) {
    // What a run killed half-way through its unpack left behind (older than ten minutes).
    for (const name of fs.readdirSync(root)) {
      const p = path.join(root, name)
      if (name.startsWith('.unpack-') && Date.now() - fs.lstatSync(p).mtimeMs > 600_000)
        fs.rmSync(p, {recursive: true, force: true})
    }
    const tmp = fs.mkdtempSync(path.join(root, `.unpack-${key.slice(0, 12)}-`))
    try {
      unpack(tmp)
      try {
        fs.renameSync(tmp, dir)
      } catch (err) {
        // Another run put the same app there first: keep it.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err
      }
    } finally {
      fs.rmSync(tmp, {recursive: true, force: true})
    }
  }
  const st = fs.lstatSync(dir)
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0)
    fail(`${dir} is not a private directory of yours; remove it and run again`)
  return fs.realpathSync(dir)
}

let dir
try {
  dir = appDir()
} catch (err) {
  fail(`cannot prepare the app in ${cacheRoot()}: ${err.message}`)
}
const load = createRequire(path.join(dir, 'package.json'))('./sea-import.cjs')
const args = process.argv.slice(2)
let entry = path.join(dir, 'bin', 'mesh.js')
if (args[0] === NODE_SCRIPT_FLAG) {
  entry = fs.realpathSync(path.resolve(args[1] ?? ''))
  if (path.relative(dir, entry).startsWith('..')) fail(`${args[1]} is not a script of this mesh`)
  args.splice(0, 2)
}
process.argv = [process.execPath, entry, ...args]
load(pathToFileURL(entry).href).catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
