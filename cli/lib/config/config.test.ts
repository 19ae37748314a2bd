// The settings table, the file schema and the resolution flag > env > file > default.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {MeshError} from '../../../shared/errors.js'
import {checkOwnership, loadConfigFiles, validate} from './files.js'
import {resolveSettings} from './resolve.js'
import {SETTINGS, keyOf, settingOf, settingsOf} from './settings.js'

const logLevel = settingOf('daemon.logLevel')
const layer = (file: string, data: unknown) => validate(file, data)

const failure = (fn: () => unknown): MeshError => {
  try {
    fn()
  } catch (err) {
    if (err instanceof MeshError) return err
    throw err
  }
  throw new Error('expected a MeshError')
}
const asyncFailure = async (p: Promise<unknown>): Promise<MeshError> => {
  try {
    await p
  } catch (err) {
    if (err instanceof MeshError) return err
    throw err
  }
  throw new Error('expected a MeshError')
}

describe('the settings table', () => {
  it('names every environment variable MESH_ + the flag in upper case, keeping the four older names', () => {
    for (const s of SETTINGS) expect(s.env).toBe(`MESH_${s.flag.replaceAll('-', '_').toUpperCase()}`)
    expect(settingOf('daemon.socket').env).toBe('MESH_SOCKET')
    expect(settingOf('daemon.stateDir').env).toBe('MESH_STATE_DIR')
    expect(settingOf('controller.dataDir').env).toBe('MESH_DATA_DIR')
    expect(settingOf('cli.controller').env).toBe('MESH_CONTROLLER')
  })

  it('has unique keys and one flag per setting within a section', () => {
    expect(new Set(SETTINGS.map(keyOf)).size).toBe(SETTINGS.length)
    for (const section of ['cli', 'daemon', 'controller'] as const) {
      const flags = settingsOf(section).map((s) => s.flag)
      expect(new Set(flags).size).toBe(flags.length)
    }
  })

  it('accepts every default through its own schema', () => {
    for (const s of SETTINGS) {
      const d = s.default()
      if (d !== undefined) expect(s.schema.safeParse(d).success, keyOf(s)).toBe(true)
    }
  })
})

describe('resolveSettings', () => {
  const file = layer('/etc/mesh/config.yaml', {daemon: {logLevel: 'warn'}})
  const env = {MESH_LOG_LEVEL: 'debug'}
  const resolve = (input: Parameters<typeof resolveSettings>[1]) => resolveSettings([logLevel], input)[0]

  it('takes the flag over the environment, the file and the default', () => {
    expect(resolve({flags: {'log-level': 'error'}, env, layers: [file]})).toEqual({
      key: 'daemon.logLevel',
      value: 'error',
      source: 'flag --log-level',
    })
  })

  it('takes the environment over the file and the default', () => {
    expect(resolve({flags: {}, env, layers: [file]})).toMatchObject({
      value: 'debug',
      source: 'env MESH_LOG_LEVEL',
    })
  })

  it('takes the file over the default, naming the file and the key', () => {
    expect(resolve({flags: {}, env: {}, layers: [file]})).toMatchObject({
      value: 'warn',
      source: 'file /etc/mesh/config.yaml (daemon.logLevel)',
    })
  })

  it('falls back to the built-in default, and treats an empty variable as unset', () => {
    expect(resolve({flags: {}, env: {MESH_LOG_LEVEL: '  '}, layers: []})).toEqual({
      key: 'daemon.logLevel',
      value: 'info',
      source: 'default',
    })
  })

  it('takes the first file that sets a key, and the next one for keys the first leaves out', () => {
    const user = layer('/home/u/package.json', {daemon: {socket: '/tmp/user.sock'}})
    const system = layer('/etc/mesh/config.yaml', {daemon: {socket: '/tmp/sys.sock', logLevel: 'warn'}})
    const [socket, level] = resolveSettings([settingOf('daemon.socket'), logLevel], {
      env: {},
      layers: [user, system],
    })
    expect(socket).toMatchObject({
      value: '/tmp/user.sock',
      source: 'file /home/u/package.json (mesh.daemon.socket)',
    })
    expect(level).toMatchObject({value: 'warn', source: 'file /etc/mesh/config.yaml (daemon.logLevel)'})
  })

  it('keeps a false flag (--no-down-on-exit) over a true file value', () => {
    const [r] = resolveSettings([settingOf('daemon.downOnExit')], {
      flags: {'down-on-exit': false},
      env: {},
      layers: [layer('/c.yaml', {daemon: {downOnExit: true}})],
    })
    expect(r).toMatchObject({value: false, source: 'flag --down-on-exit'})
  })

  it('converts environment text to booleans and integers', () => {
    const [down, timeout] = resolveSettings(
      [settingOf('daemon.downOnExit'), settingOf('controller.ephemeralTimeout')],
      {env: {MESH_DOWN_ON_EXIT: 'yes', MESH_EPHEMERAL_TIMEOUT: '30'}},
    )
    expect(down?.value).toBe(true)
    expect(timeout?.value).toBe(30)
  })

  it('refuses a bad environment value with CONFIG_INVALID naming the variable and what is allowed', () => {
    const err = failure(() => resolveSettings([logLevel], {env: {MESH_LOG_LEVEL: 'loud'}}))
    expect(err.code).toBe('CONFIG_INVALID')
    expect(err.message).toBe('MESH_LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal')
    const timeout = failure(() =>
      resolveSettings([settingOf('controller.ephemeralTimeout')], {env: {MESH_EPHEMERAL_TIMEOUT: '0'}}),
    )
    expect(timeout.message).toBe('MESH_EPHEMERAL_TIMEOUT: expected at least 1 (seconds)')
  })
})

describe('the config file schema', () => {
  it('accepts an empty file and every section', () => {
    expect(layer('/c.yaml', {}).data).toEqual({})
    const full = {
      cli: {controller: 'https://mesh.example.com'},
      daemon: {socket: '/run/m.sock', stateDir: '/var/lib/m', interfacePrefix: 'm', wireguard: 'kernel'},
      controller: {listen: '0.0.0.0:8080', ephemeralTimeout: 60, stunListen: 'off', logLevel: 'silent'},
    }
    expect(layer('/c.yaml', full).data).toEqual(full)
  })

  it('refuses an unknown key, naming the file, the key and the keys allowed', () => {
    const err = failure(() => layer('/etc/mesh/config.yaml', {daemon: {foo: 1}}))
    expect(err.code).toBe('CONFIG_FILE_INVALID')
    expect(err.message).toBe(
      '/etc/mesh/config.yaml: unknown key daemon.foo (allowed: socket, stateDir, interfacePrefix, wireguard, logLevel, downOnExit)',
    )
    expect(err.hint).toContain('mesh config show')
  })

  it('refuses an unknown section, naming the sections allowed', () => {
    expect(failure(() => layer('/c.yaml', {deamon: {}})).message).toBe(
      '/c.yaml: unknown key deamon (allowed: cli, daemon, controller)',
    )
  })

  it('refuses a wrong type, naming the file, the key and what is allowed', () => {
    expect(failure(() => layer('/c.yaml', {daemon: {logLevel: 'loud'}})).message).toBe(
      '/c.yaml: daemon.logLevel: expected one of trace, debug, info, warn, error, fatal',
    )
    expect(failure(() => layer('/c.yaml', {daemon: {downOnExit: 'yes'}})).message).toBe(
      '/c.yaml: daemon.downOnExit: expected true or false',
    )
    expect(failure(() => layer('/c.yaml', {controller: {ephemeralTimeout: 1.5}})).message).toBe(
      '/c.yaml: controller.ephemeralTimeout: expected a whole number of seconds',
    )
    expect(failure(() => layer('/c.yaml', {daemon: {socket: null}})).message).toBe(
      '/c.yaml: daemon.socket: expected a string',
    )
    expect(failure(() => layer('/c.yaml', {daemon: 'x'})).message).toBe(
      '/c.yaml: daemon: expected a mapping of settings (socket, stateDir, interfacePrefix, wireguard, logLevel, downOnExit)',
    )
    expect(failure(() => layer('/c.yaml', ['x'])).message).toBe(
      '/c.yaml: expected a mapping of sections (cli, daemon, controller)',
    )
  })

  it('names keys of package.json under "mesh", and lists up to three problems at once', () => {
    const err = failure(() =>
      layer('/p/package.json', {cli: {controller: 'ftp://x'}, daemon: {foo: 1, wireguard: 'fast'}}),
    )
    expect(err.message).toBe(
      '/p/package.json: mesh.cli.controller: expected an http:// or https:// URL; mesh.daemon.wireguard: expected one of auto, kernel, userspace; unknown key mesh.daemon.foo (allowed: socket, stateDir, interfacePrefix, wireguard, logLevel, downOnExit)',
    )
  })
})

describe('checkOwnership (what meshd and the controller accept)', () => {
  it('accepts a file only its owner, root or the service user, can write', () => {
    expect(() => checkOwnership('/c.yaml', {mode: 0o100644, uid: 0}, 0)).not.toThrow()
    expect(() => checkOwnership('/c.yaml', {mode: 0o100600, uid: 1000}, 1000)).not.toThrow()
  })

  it('refuses a group- or world-writable file, saying how to fix it', () => {
    const err = failure(() => checkOwnership('/c.yaml', {mode: 0o100664, uid: 0}, 0))
    expect(err.code).toBe('CONFIG_FILE_INVALID')
    expect(err.message).toBe(
      '/c.yaml: writable by group or others (mode 0664); meshd and the controller refuse it',
    )
    expect(err.hint).toBe('make it writable by its owner only: `chmod go-w /c.yaml`')
    expect(failure(() => checkOwnership('/c.yaml', {mode: 0o100646, uid: 0}, 0)).code).toBe(
      'CONFIG_FILE_INVALID',
    )
  })

  it("refuses a file owned by another user than root or the service's", () => {
    expect(failure(() => checkOwnership('/c.yaml', {mode: 0o100644, uid: 1000}, 0)).message).toBe(
      '/c.yaml: owned by uid 1000, neither root nor the user running this (uid 0); meshd and the controller refuse it',
    )
  })
})

describe('loadConfigFiles', () => {
  let dir: string
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-config-'))
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))
  const write = (name: string, text: string, mode = 0o644): string => {
    const file = path.join(dir, name)
    fs.mkdirSync(path.dirname(file), {recursive: true})
    fs.writeFileSync(file, text)
    fs.chmodSync(file, mode)
    return file
  }
  const noSystem = (): string => path.join(dir, 'etc', 'absent.yaml')

  it('finds .meshrc.yaml in the current directory for the CLI, then reads the system file below it', async () => {
    const rc = write('.meshrc.yaml', 'cli:\n  controller: https://a.example\n')
    const sys = write('etc/config.yaml', 'daemon:\n  socket: /tmp/sys.sock\n')
    const got = await loadConfigFiles('cli', {cwd: dir, systemFile: sys})
    expect(got.layers.map((l) => l.file)).toEqual([rc, sys])
    expect(got.files).toEqual([
      {file: rc, role: 'search', status: 'loaded'},
      {file: sys, role: 'system', status: 'loaded'},
    ])
  })

  it('finds the "mesh" key of package.json, and no config in a package.json without it', async () => {
    write('package.json', JSON.stringify({name: 'x'}))
    expect((await loadConfigFiles('cli', {cwd: dir, systemFile: noSystem()})).layers).toEqual([])
    write('package.json', JSON.stringify({name: 'x', mesh: {daemon: {logLevel: 'warn'}}}))
    const [l] = (await loadConfigFiles('cli', {cwd: dir, systemFile: noSystem()})).layers
    expect(l).toMatchObject({keyPrefix: 'mesh.', data: {daemon: {logLevel: 'warn'}}})
  })

  it('loads mesh.config.mjs', async () => {
    write('mesh.config.mjs', "export default {cli: {controller: 'http://127.0.0.1:9'}}\n")
    const [l] = (await loadConfigFiles('cli', {cwd: dir, systemFile: noSystem()})).layers
    expect(l?.data).toEqual({cli: {controller: 'http://127.0.0.1:9'}})
  })

  it('never searches the current directory for a service', async () => {
    write('.meshrc.yaml', 'daemon:\n  logLevel: debug\n')
    expect((await loadConfigFiles('service', {cwd: dir, systemFile: noSystem()})).layers).toEqual([])
  })

  it('reads only the explicit file when one is named, and fails when it does not exist', async () => {
    write('.meshrc.yaml', 'daemon:\n  logLevel: debug\n')
    const mine = write('mine.yml', 'daemon:\n  logLevel: warn\n')
    const got = await loadConfigFiles('cli', {cwd: dir, explicit: 'mine.yml', systemFile: noSystem()})
    expect(got.layers.map((l) => l.file)).toEqual([mine])
    const err = await asyncFailure(loadConfigFiles('service', {cwd: dir, explicit: 'nope.yaml'}))
    expect(err).toMatchObject({
      code: 'CONFIG_FILE_INVALID',
      message: `${path.join(dir, 'nope.yaml')}: no such file`,
    })
  })

  it('reports a YAML syntax error as the file and the parser reason on one line', async () => {
    const bad = write('.meshrc.yaml', 'daemon:\n  logLevel: [\n')
    const err = await asyncFailure(loadConfigFiles('cli', {cwd: dir, systemFile: noSystem()}))
    expect(err.code).toBe('CONFIG_FILE_INVALID')
    expect(err.message).toMatch(new RegExp(`^${bad}: cannot parse: [^\\n]+ \\(line \\d+\\)$`))
    const sys = write('etc/config.yaml', 'daemon: {\n')
    const err2 = await asyncFailure(loadConfigFiles('service', {systemFile: sys}))
    expect(err2.message).toMatch(new RegExp(`^${sys}: cannot parse: [^\\n]+$`))
  })

  it('reports a JSON syntax error as the file and the parser reason', async () => {
    const bad = write('.meshrc.json', '{"daemon": ')
    const err = await asyncFailure(loadConfigFiles('cli', {cwd: dir, systemFile: noSystem()}))
    expect(err.message).toMatch(new RegExp(`^${bad}: cannot parse: [^\\n]+$`))
  })

  it('refuses a group-writable system file, for a service and the CLI alike', async () => {
    const sys = write('etc/config.yaml', 'daemon:\n  logLevel: warn\n', 0o664)
    const err = await asyncFailure(loadConfigFiles('service', {systemFile: sys}))
    expect(err.message).toContain('writable by group or others (mode 0664)')
    const cliErr = await asyncFailure(loadConfigFiles('cli', {cwd: dir, systemFile: sys}))
    expect(cliErr.message).toContain('writable by group or others (mode 0664)')
    // A file named explicitly to the CLI is the user's own choice: no such rule.
    expect((await loadConfigFiles('cli', {explicit: sys})).layers).toHaveLength(1)
  })

  it('refuses JavaScript config files for a service', async () => {
    const js = write('svc.js', 'module.exports = {}\n')
    const err = await asyncFailure(loadConfigFiles('service', {explicit: js}))
    expect(err.message).toBe(
      `${js}: meshd and the controller read YAML or JSON config files only (.yaml, .yml, .json)`,
    )
  })

  it('treats an empty or comment-only file as setting nothing', async () => {
    const sys = write('etc/config.yaml', '# nothing yet\n\n  # daemon:\n')
    const [l] = (await loadConfigFiles('service', {systemFile: sys})).layers
    expect(l?.data).toEqual({})
    write('.meshrc.yml', '# cli:\n#   controller: https://x\n')
    const [cli] = (await loadConfigFiles('cli', {cwd: dir, systemFile: sys})).layers
    expect(cli).toMatchObject({file: sys, data: {}})
    const empty = write('etc/empty.yaml', '')
    expect((await loadConfigFiles('cli', {explicit: empty})).layers[0]?.data).toEqual({})
  })
})
