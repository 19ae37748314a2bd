// Config files as users meet them: the built `mesh` run in a directory holding .meshrc.yaml or a
// package.json with a "mesh" key, or pointed at a file with MESH_CONFIG_FILE; `mesh config show`
// names the source of each value, and a flag beats the environment, which beats the file, on a
// real socket (a meshd with the in-memory driver) and a real controller start.
// Needs `bash scripts/build.sh` first.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {execa} from 'execa'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {startTestController} from '../../../controller/testing/test-controller.js'
import {startFakeDaemon, type FakeDaemon} from '../../../daemon/testing/harness.js'
import type {ConfigShowResult} from './show.js'

const meshJs = path.resolve(import.meta.dirname, '../../../bin/mesh.js')
const built = fs.existsSync(path.resolve(import.meta.dirname, '../../../dist/cli/commands/config/show.js'))

/** The environment of each run: none of the test runner's MESH_* settings leak in. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {NO_COLOR: '1'}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('MESH_') && k !== 'CI') env[k] = v
  return {...env, ...extra}
}

async function mesh(cwd: string, args: string[], env: Record<string, string> = {}, input = '') {
  const r = await execa(process.execPath, [meshJs, ...args], {
    cwd,
    input,
    reject: false,
    env: cleanEnv(env),
    extendEnv: false,
    timeout: 60_000,
  })
  return {code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr)}
}

async function show(cwd: string, args: string[] = [], env: Record<string, string> = {}) {
  const r = await mesh(cwd, ['config', 'show', '--json', ...args], env)
  expect(r.code, r.stderr + r.stdout).toBe(0)
  return JSON.parse(r.stdout) as ConfigShowResult
}

const setting = (res: ConfigShowResult, forSection: string, key: string) =>
  res.settings.find((s) => s.for === forSection && s.key === key)

describe.skipIf(!built)('config files and `mesh config show`', () => {
  let dir: string
  let daemon: FakeDaemon
  beforeAll(async () => {
    daemon = await startFakeDaemon()
  })
  afterAll(async () => {
    await daemon?.stop()
    if (daemon) fs.rmSync(daemon.dir, {recursive: true, force: true})
  })
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-config-it-'))
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name)
    fs.writeFileSync(file, text, {mode: 0o644})
    return file
  }

  it('shows built-in defaults with no config file, as before config files existed', async () => {
    const res = await show(dir)
    expect(setting(res, 'cli', 'daemon.socket')).toMatchObject({
      value: '/run/mesh/meshd.sock',
      source: 'default',
      env: 'MESH_SOCKET',
      flag: '--socket',
    })
    expect(setting(res, 'daemon', 'daemon.logLevel')).toMatchObject({value: 'info', source: 'default'})
    expect(setting(res, 'controller', 'controller.listen')).toMatchObject({
      value: '127.0.0.1:8080',
      source: 'default',
    })
    expect(setting(res, 'controller', 'controller.database')).toMatchObject({
      value: null,
      default: 'sqlite:DATA_DIR/mesh.db',
    })
    expect(res.files.every((f) => f.status !== 'loaded')).toBe(true)
  })

  it('reads .meshrc.yaml in the current directory and names it as the source', async () => {
    const rc = write(
      '.meshrc.yaml',
      'cli:\n  controller: https://mesh.example.com\ndaemon:\n  socket: /tmp/rc.sock\n',
    )
    const res = await show(dir, ['--for', 'cli'])
    expect(setting(res, 'cli', 'cli.controller')).toMatchObject({
      value: 'https://mesh.example.com',
      source: `file ${rc} (cli.controller)`,
    })
    expect(setting(res, 'cli', 'daemon.socket')).toMatchObject({
      value: '/tmp/rc.sock',
      source: `file ${rc} (daemon.socket)`,
    })
    expect(res.files).toContainEqual({reader: 'cli', file: rc, role: 'search', status: 'loaded'})
    // The services never read the current directory.
    const svc = await show(dir, ['--for', 'daemon'])
    expect(setting(svc, 'daemon', 'daemon.socket')?.source).toBe('default')
  })

  it('reads the "mesh" key of package.json', async () => {
    const pkg = write(
      'package.json',
      JSON.stringify({name: 'app', mesh: {cli: {controller: 'http://127.0.0.1:9'}}}),
    )
    const res = await show(dir, ['--for', 'cli'])
    expect(setting(res, 'cli', 'cli.controller')).toMatchObject({
      value: 'http://127.0.0.1:9',
      source: `file ${pkg} (mesh.cli.controller)`,
    })
  })

  it('reads only the file MESH_CONFIG_FILE names, for the CLI and the services alike', async () => {
    write('.meshrc.yaml', 'daemon:\n  logLevel: debug\n')
    const named = write('named.yaml', 'daemon:\n  logLevel: warn\n  socket: /tmp/named.sock\n')
    const res = await show(dir, [], {MESH_CONFIG_FILE: named})
    expect(setting(res, 'daemon', 'daemon.logLevel')).toMatchObject({
      value: 'warn',
      source: `file ${named} (daemon.logLevel)`,
    })
    expect(setting(res, 'cli', 'daemon.socket')?.source).toBe(`file ${named} (daemon.socket)`)
    expect(res.files.map((f) => f.file)).toEqual([named, named])
    // --config does the same and beats MESH_CONFIG_FILE.
    const other = write('other.yaml', 'daemon:\n  logLevel: error\n')
    const res2 = await show(dir, ['--config', other], {MESH_CONFIG_FILE: named})
    expect(setting(res2, 'daemon', 'daemon.logLevel')?.value).toBe('error')
  })

  it('lets the environment beat the file', async () => {
    const rc = write('.meshrc.yaml', 'daemon:\n  logLevel: warn\n')
    const res = await show(dir, ['--for', 'daemon'], {MESH_CONFIG_FILE: rc, MESH_LOG_LEVEL: 'debug'})
    expect(setting(res, 'daemon', 'daemon.logLevel')).toMatchObject({
      value: 'debug',
      source: 'env MESH_LOG_LEVEL',
    })
  })

  it('connects to the socket of the flag, else the environment, else the file', async () => {
    const nowhere = path.join(dir, 'nowhere.sock')
    write('.meshrc.yaml', `daemon:\n  socket: ${daemon.socketPath}\n`)
    // file only: reaches meshd
    expect((await mesh(dir, ['status', '--json'])).code).toBe(0)
    // env over file: the environment's socket is tried, and it is not there
    const viaEnv = await mesh(dir, ['status', '--json'], {MESH_SOCKET: nowhere})
    expect(viaEnv.code).toBe(69)
    expect(viaEnv.stdout).toContain(nowhere)
    // flag over env
    const viaFlag = await mesh(dir, ['status', '--json', '--socket', daemon.socketPath], {
      MESH_SOCKET: nowhere,
    })
    expect(viaFlag.code, viaFlag.stdout).toBe(0)
  })

  it('fails every command that reads it on an unknown key or a wrong type, naming file, key and what is allowed', async () => {
    const rc = write('.meshrc.yaml', 'daemon:\n  sockets: /tmp/x.sock\n')
    const r = await mesh(dir, ['status', '--json'])
    expect(r.code).toBe(78)
    const err = (JSON.parse(r.stdout) as {error: {code: string; message: string; hint: string}}).error
    expect(err).toMatchObject({
      code: 'CONFIG_FILE_INVALID',
      message: `${rc}: unknown key daemon.sockets (allowed: socket, stateDir, interfacePrefix, wireguard, logLevel, downOnExit)`,
    })
    expect(err.hint).toContain('mesh config show')
    write('.meshrc.yaml', 'daemon:\n  logLevel: loud\n')
    const human = await mesh(dir, ['config', 'show'])
    expect(human.code).toBe(78)
    expect(human.stderr.replace(/\s+›\s+/g, ' ')).toContain(
      `${rc}: daemon.logLevel: expected one of trace, debug, info, warn, error, fatal`,
    )
  })

  it('stops meshd and the controller before they start on a bad or group-writable file', async () => {
    const bad = write('bad.yaml', 'controller:\n  listen: 8080\n')
    const c = await mesh(dir, ['controller', 'start'], {MESH_CONFIG_FILE: bad})
    expect(c.code).toBe(78)
    expect(c.stderr.replace(/\s+›\s+/g, ' ')).toContain(`${bad}: controller.listen: expected a string`)
    const loose = write('loose.yaml', 'daemon:\n  logLevel: warn\n')
    fs.chmodSync(loose, 0o666)
    const d = await mesh(dir, ['daemon', 'run'], {MESH_CONFIG_FILE: loose})
    expect(d.code).toBe(78)
    expect(d.stderr.replace(/\s+›\s+/g, ' ')).toContain('writable by group or others (mode 0666)')
  })

  it('logs in (and up --auth-key joins) with the controller of the file, the --controller flag beating it', async () => {
    const ctl = await startTestController()
    try {
      const env = {MESH_CONFIG_DIR: path.join(dir, 'cli-config')}
      const login = (args: string[]) =>
        mesh(dir, ['login', '--user', 'admin', '--password-stdin', '--json', ...args], env, ctl.adminPassword)
      write('.meshrc.yaml', `cli:\n  controller: ${ctl.url}\n`)
      const viaFile = await login([])
      expect(viaFile.code, viaFile.stdout + viaFile.stderr).toBe(0)
      expect(JSON.parse(viaFile.stdout)).toMatchObject({controller: ctl.url})
      // An unreachable controller in the file; the flag wins.
      write('.meshrc.yaml', 'cli:\n  controller: http://127.0.0.1:9\n')
      const viaFlag = await login(['--controller', ctl.url])
      expect(viaFlag.code, viaFlag.stdout + viaFlag.stderr).toBe(0)
      // `mesh up --auth-key` takes its controller from the file too: the controller it names
      // answers (and refuses the made-up key); with no controller anywhere the CLI asks for one.
      const up = (socket: string) => [
        'up',
        '--auth-key',
        'meshkey_madeup',
        '--no-wait',
        '--json',
        '--socket',
        socket,
      ]
      write('.meshrc.yaml', `cli:\n  controller: ${ctl.url}\n`)
      const upViaFile = await mesh(dir, up(daemon.socketPath), env)
      expect(JSON.parse(upViaFile.stdout)).toMatchObject({error: {code: 'AUTHKEY_INVALID'}})
      fs.rmSync(path.join(dir, '.meshrc.yaml'))
      const upNowhere = await mesh(dir, up(daemon.socketPath), env)
      expect(upNowhere.code).toBe(64)
      expect(JSON.parse(upNowhere.stdout)).toMatchObject({
        error: {
          message:
            '--auth-key needs --controller URL (or MESH_CONTROLLER, or cli.controller in a config file)',
        },
      })
    } finally {
      await ctl.close()
      fs.rmSync(ctl.dataDir, {recursive: true, force: true})
    }
  })

  it('starts the controller with the settings of its file, a variable beating the file', async () => {
    const fromFile = path.join(dir, 'file-data')
    const fromEnv = path.join(dir, 'env-data')
    const file = write(
      'controller.yaml',
      `controller:\n  dataDir: ${fromFile}\n  listen: 127.0.0.1:0\n  stunListen: "off"\n  discoveryListen: "off"\n`,
    )
    const listening = await startUntilListening(
      dir,
      cleanEnv({MESH_CONFIG_FILE: file, MESH_DATA_DIR: fromEnv, MESH_ADMIN_PASSWORD: 'pw-for-tests'}),
    )
    expect(listening.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(listening.dataDir).toBe(fromEnv)
    expect(fs.existsSync(path.join(fromEnv, 'mesh.db'))).toBe(true)
    expect(fs.existsSync(fromFile)).toBe(false)
  })
})

/** Runs `mesh controller start` until its "listening" log line (at most 30 s), then stops it. */
function startUntilListening(
  cwd: string,
  env: Record<string, string>,
): Promise<{url: string; dataDir: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [meshJs, 'controller', 'start'], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    const timer = setTimeout(() => finish(new Error(`no "listening" line in 30 s: ${out} ${err}`)), 30_000)
    const finish = (result: Error | {url: string; dataDir: string}) => {
      clearTimeout(timer)
      child.kill('SIGTERM')
      child.once('close', () => (result instanceof Error ? reject(result) : resolve(result)))
    }
    child.stderr.on('data', (c: Buffer) => (err += c.toString()))
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      for (const line of out.split('\n')) {
        if (!line.includes('"msg":"listening"')) continue
        const log = JSON.parse(line) as {url: string; dataDir: string}
        finish({url: log.url, dataDir: log.dataDir})
        out = ''
        return
      }
    })
    child.on('error', (e) => finish(e))
  })
}
