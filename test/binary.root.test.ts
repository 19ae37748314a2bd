/**
 * The single binary (npm run build:binary → dist/mesh) on a machine without Node: built here,
 * then run with a PATH that has every system tool but no node, and a fresh HOME (so its first
 * run unpacks the app into an empty cache). It must print its version, run the controller on
 * SQLite, run meshd, and build a lab whose controller and daemons are the binary itself.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {Lab, projectRoot} from '../cli/lib/lab/lab.js'
import {run, runSync, waitFor, type RunResult} from '../cli/lib/lab/sh.js'
import type {LabSummary} from '../cli/lib/lab/up.js'
import {labSkipReason} from './lab/skip.js'

const skip = process.arch !== 'x64' ? 'the binary is built for linux-x64' : labSkipReason()
const binary = path.join(projectRoot(), 'dist', 'mesh')
const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as {version: string}

/** A bin dir with every program of the system dirs except Node and its tools. */
function pathWithoutNode(dir: string): string {
  fs.mkdirSync(dir, {recursive: true})
  for (const sys of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!fs.existsSync(sys)) continue
    for (const name of fs.readdirSync(sys)) {
      if (/^(node|nodejs|npm|npx|corepack)$/.test(name) || fs.existsSync(path.join(dir, name))) continue
      fs.symlinkSync(path.join(sys, name), path.join(dir, name))
    }
  }
  return dir
}

describe.skipIf(skip !== undefined)(`the single binary${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-binary-'))
  const home = path.join(tmp, 'home')
  const env = {PATH: pathWithoutNode(path.join(tmp, 'bin')), HOME: home}
  const mesh = (args: string[], extra: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<RunResult> =>
    run(binary, args, {env: {...env, ...extra}, timeoutMs})
  const children: ChildProcess[] = []
  const namespaces: string[] = []
  const labs: string[] = []

  beforeAll(async () => {
    fs.mkdirSync(home, {mode: 0o700})
    const built = await run(process.execPath, [path.join(projectRoot(), 'scripts', 'build-binary.mjs')], {
      timeoutMs: 240_000,
    })
    expect(built.code, built.stderr).toBe(0)
  }, 300_000)

  afterAll(() => {
    for (const prefix of labs) Lab.open(prefix)?.teardownSync()
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const ns of namespaces) runSync('ip', ['netns', 'del', ns])
    fs.rmSync(tmp, {recursive: true, force: true})
  })

  /** Starts the binary in the background; resolves once its output contains `ready`. */
  async function start(args: string[], ready: string, extra: NodeJS.ProcessEnv = {}, ns?: string) {
    const argv = ns ? ['ip', 'netns', 'exec', ns, binary, ...args] : [binary, ...args]
    const child = spawn(argv[0]!, argv.slice(1), {env: {...env, ...extra}, stdio: ['ignore', 'pipe', 'pipe']})
    children.push(child)
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    await waitFor(
      `"${ready}" from mesh ${args.slice(0, 2).join(' ')}`,
      () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}:\n${out}`)
        return out.includes(ready)
      },
      {timeoutMs: 30_000, intervalMs: 50},
    )
    return {child, output: () => out}
  }

  it('runs where no node is on PATH, unpacking itself once into a private cache', async () => {
    expect(runSync('sh', ['-c', 'command -v node'], {env}).code).not.toBe(0)
    const v = await mesh(['--version'])
    expect(v.code, v.stderr).toBe(0)
    expect(v.stdout).toMatch(new RegExp(`^mesh/${pkg.version.replaceAll('.', '\\.')} linux-x64 node-v24\\.`))
    const cache = path.join(home, '.cache', 'mesh', 'app')
    expect(fs.statSync(cache).mode & 0o777).toBe(0o700)
    const [dir, ...others] = fs.readdirSync(cache)
    expect(others).toEqual([])
    expect(dir).toMatch(/^[0-9a-f]{64}$/)
    expect(fs.statSync(path.join(cache, dir!)).mode & 0o777).toBe(0o700)
    // No Node of the machine's was used: the cache holds a native addon, not node_modules.
    expect(fs.existsSync(path.join(cache, dir!, 'node_modules', '@oclif'))).toBe(false)
  })

  it('unpacks once when several first runs race (into MESH_CACHE_DIR), leaving no temporary directory', async () => {
    const cacheDir = path.join(tmp, 'race-cache')
    const runs = await Promise.all(
      Array.from({length: 4}, () => mesh(['--version'], {MESH_CACHE_DIR: cacheDir})),
    )
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    expect(fs.readdirSync(path.join(cacheDir, 'app'))).toHaveLength(1)
  })

  it('refuses a cache directory that others may write to, and scripts from outside the app', async () => {
    const openHome = path.join(tmp, 'open-home')
    fs.mkdirSync(path.join(openHome, '.cache', 'mesh'), {recursive: true})
    fs.chmodSync(path.join(openHome, '.cache', 'mesh'), 0o777)
    const r = await mesh(['--version'], {HOME: openHome})
    expect(r.code).toBe(70)
    expect(r.stderr).toMatch(/writable by others.*SINGLE_BINARY_CACHE/)

    const script = path.join(tmp, 'outside.mjs')
    fs.writeFileSync(script, 'console.log("ran")\n')
    const s = await mesh(['--mesh-internal-node-script', script])
    expect(s.code).toBe(70)
    expect(s.stdout).not.toContain('ran')
  })

  it('runs the controller on SQLite, and the CLI logs in to it', async () => {
    const dataDir = path.join(tmp, 'controller')
    const password = 'binary-test-password'
    const ctl = await start(
      [
        'controller',
        'start',
        '--data-dir',
        dataDir,
        '--listen',
        '127.0.0.1:0',
        '--stun-listen',
        'off',
        '--discovery-listen',
        'off',
      ],
      '"listening"',
      {MESH_ADMIN_PASSWORD: password},
    )
    const url = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(ctl.output())?.[1]
    expect(url, ctl.output()).toBeDefined()
    expect(fs.existsSync(path.join(dataDir, 'mesh.db'))).toBe(true)
    const login = await run(binary, ['login', '--controller', url!, '--user', 'admin', '--password-stdin'], {
      env,
      input: password,
      timeoutMs: 30_000,
    })
    expect(login.code, login.stdout + login.stderr).toBe(0)
    const who = await mesh(['whoami', '--json'])
    expect(who.code, who.stderr).toBe(0)
    expect(JSON.parse(who.stdout)).toMatchObject({user: {username: 'admin'}})
    ctl.child.kill('SIGTERM')
  })

  it('runs meshd, and mesh status reaches it', async () => {
    const ns = `mbin${process.pid % 100000}`
    runSync('ip', ['netns', 'del', ns])
    expect(runSync('ip', ['netns', 'add', ns]).code).toBe(0)
    namespaces.push(ns)
    const socket = path.join(tmp, 'meshd.sock')
    const d = await start(
      [
        'daemon',
        'run',
        '--socket',
        socket,
        '--state-dir',
        path.join(tmp, 'meshd'),
        '--interface-prefix',
        'mbin',
      ],
      'meshd starting',
      {},
      ns,
    )
    await waitFor('meshd socket', () => fs.existsSync(socket), {timeoutMs: 30_000, intervalMs: 50})
    const st = await mesh(['status', '--json', '--socket', socket])
    expect(st.code, st.stderr + d.output()).toBe(0)
    expect(JSON.parse(st.stdout)).toMatchObject({protocolVersion: 1, networks: []})
    d.child.kill('SIGTERM')
  })

  it('builds a lab whose controller and daemons are the binary itself, and removes it', async () => {
    const up = await mesh(['lab', 'up', '--nodes', '2', '--json'], {}, 120_000)
    const summary = JSON.parse(up.stdout || '{}') as LabSummary
    if (summary.prefix) labs.push(summary.prefix)
    expect(up.code, up.stderr).toBe(0)
    expect(summary.pinged).toEqual(['node1', 'node2'])
    const lab = Lab.open(summary.prefix)!
    for (const name of ['controller', 'forwarder', 'node1/meshd', 'node2/meshd']) {
      const exe = fs.readlinkSync(`/proc/${lab.proc(name)!.pid}/exe`)
      expect(exe, name).toBe(fs.realpathSync(binary))
    }
    const st = await mesh(['lab', 'exec', '--lab', summary.prefix, 'node2', '--', 'mesh', 'status', '--json'])
    expect(st.code, st.stderr).toBe(0)
    expect(JSON.parse(st.stdout)).toMatchObject({networks: [{name: 'lab', up: true}]})
    const down = await mesh(['lab', 'down', '--lab', summary.prefix])
    expect(down.code, down.stderr).toBe(0)
    expect(Lab.open(summary.prefix)).toBeUndefined()
  })
})
