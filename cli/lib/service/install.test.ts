// The install/uninstall flows against a fake host in a temp root dir: files, accounts, commands.
import fs from 'node:fs'
import {afterEach, describe, expect, it} from 'vitest'
import {isMeshError, type MeshError} from '../../../shared/errors.js'
import {
  installController,
  installDaemon,
  printDaemon,
  uninstallController,
  uninstallDaemon,
  type ControllerInstallOptions,
  type DaemonInstallOptions,
} from './install.js'
import {FakeSystem, type FakeSystemOptions} from './testing/fake-system.js'
import {dryRunSystem} from './system.js'

const ENTRY = ['/usr/local/bin/node', '/opt/mesh/bin/mesh.js']
const DAEMON: DaemonInstallOptions = {
  entry: ENTRY,
  wireguard: 'auto',
  logLevel: 'info',
  noStart: false,
  dryRun: false,
}
const CONTROLLER: ControllerInstallOptions = {
  entry: ENTRY,
  listen: '0.0.0.0:8080',
  logLevel: 'info',
  noStart: false,
  dryRun: false,
}
const UNIT = '/etc/systemd/system/meshd.service'
const CTL_UNIT = '/etc/systemd/system/mesh-controller.service'

const hosts: FakeSystem[] = []
function host(opts: FakeSystemOptions = {}): FakeSystem {
  const h = new FakeSystem(opts)
  hosts.push(h)
  return h
}
afterEach(() => {
  for (const h of hosts.splice(0)) h.cleanup()
})

/** The commands that changed something (what the flow reports), not the queries. */
const changes = (h: FakeSystem): string[] =>
  h.ran.filter((c) => !['getent', 'dscl'].includes(c[0]!) && c[1] !== 'print').map((c) => c.join(' '))

async function failure(p: Promise<unknown>): Promise<MeshError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isMeshError(err)) throw new Error(`expected a MeshError, got ${String(err)}`)
  return err
}

describe('mesh daemon install on a systemd host', () => {
  it('creates the mesh group, writes the unit 0644, then reloads, enables and starts meshd', async () => {
    const h = host()
    const res = await installDaemon(h, DAEMON)
    expect(h.groups.has('mesh')).toBe(true)
    expect(h.files()).toEqual([UNIT])
    expect(fs.statSync(h.at(UNIT)).mode & 0o777).toBe(0o644)
    expect(h.readFile(UNIT)).toBe(res.unit)
    expect(res.unit).toMatch(/^X-Mesh-Created-Group=mesh$/m)
    expect(changes(h)).toEqual([
      'groupadd --system mesh',
      'systemctl daemon-reload',
      'systemctl enable meshd.service',
      'systemctl restart meshd.service',
    ])
    expect(res).toMatchObject({
      service: 'meshd',
      manager: 'systemd',
      unitPath: UNIT,
      files: [{path: UNIT, action: 'written'}],
      created: ['group mesh'],
      started: true,
      dryRun: false,
    })
    expect(res.commands.map((c) => c.join(' '))).toEqual(changes(h))
  })

  it('run twice gives the same unit, writes nothing and only makes sure meshd runs', async () => {
    const h = host()
    await installDaemon(h, DAEMON)
    const first = h.readFile(UNIT)
    const mtime = fs.statSync(h.at(UNIT)).mtimeMs
    h.ran.length = 0
    const again = await installDaemon(h, DAEMON)
    expect(h.readFile(UNIT)).toBe(first) // still records that install created the group
    expect(fs.statSync(h.at(UNIT)).mtimeMs).toBe(mtime)
    expect(again.files).toEqual([{path: UNIT, action: 'unchanged'}])
    expect(again.created).toEqual([])
    expect(changes(h)).toEqual(['systemctl enable meshd.service', 'systemctl start meshd.service'])
  })

  it('rewrites a changed unit and restarts meshd, keeping the record of the group it created', async () => {
    const h = host()
    await installDaemon(h, DAEMON)
    h.ran.length = 0
    const res = await installDaemon(h, {...DAEMON, wireguard: 'userspace'})
    expect(res.files).toEqual([{path: UNIT, action: 'written'}])
    expect(h.readFile(UNIT)).toContain('--wireguard userspace')
    expect(h.readFile(UNIT)).toMatch(/^X-Mesh-Created-Group=mesh$/m)
    expect(changes(h)).toEqual([
      'systemctl daemon-reload',
      'systemctl enable meshd.service',
      'systemctl restart meshd.service',
    ])
  })

  it('uses an existing mesh group and does not claim it', async () => {
    const h = host({groups: ['mesh']})
    const res = await installDaemon(h, DAEMON)
    expect(res.created).toEqual([])
    expect(res.unit).not.toContain('X-Mesh-Created-Group')
    expect(changes(h)[0]).toBe('systemctl daemon-reload')
  })

  it('--no-start enables without starting', async () => {
    const h = host()
    const res = await installDaemon(h, {...DAEMON, noStart: true})
    expect(res.started).toBe(false)
    expect(changes(h).at(-1)).toBe('systemctl enable meshd.service')
  })

  it('refuses without root, before it changes anything: ROOT_REQUIRED', async () => {
    const h = host({root: false})
    const err = await failure(installDaemon(h, DAEMON))
    expect(err.code).toBe('ROOT_REQUIRED')
    expect(err.exit).toBe(77)
    expect(h.files()).toEqual([])
    expect(h.ran).toEqual([])
  })

  it('where systemd is not PID 1, says so and hands over the unit instead of writing it', async () => {
    const h = host({systemd: false})
    const err = await failure(installDaemon(h, DAEMON))
    expect(err.code).toBe('SERVICE_MANAGER_UNAVAILABLE')
    expect(err.exit).toBe(69)
    expect(err.message).toContain('systemd is not running as PID 1')
    expect(err.hint).toContain(UNIT)
    expect(err.detail).toEqual({unitPath: UNIT, unit: printDaemon(h, DAEMON).unit})
    expect(h.files()).toEqual([])
    expect(h.ran).toEqual([])
  })

  it('turns a failing systemctl into SERVICE_COMMAND_FAILED with where to look', async () => {
    const h = host({fail: {'systemctl restart': 'Job for meshd.service failed.'}})
    const err = await failure(installDaemon(h, DAEMON))
    expect(err.code).toBe('SERVICE_COMMAND_FAILED')
    expect(err.exit).toBe(70)
    expect(err.message).toBe(
      '`systemctl restart meshd.service` failed (exit 1): Job for meshd.service failed.',
    )
    expect(err.hint).toBe('see `systemctl status meshd` and `journalctl -u meshd`')
  })

  it('--dry-run changes nothing and reports exactly what install then does', async () => {
    const h = host()
    const dry = dryRunSystem(h)
    const planned = await installDaemon(dry, {...DAEMON, dryRun: true})
    expect(h.files()).toEqual([])
    expect(h.groups.has('mesh')).toBe(false)
    expect(dry.planned.filter((p) => p.kind === 'write')).toEqual([
      {kind: 'write', path: UNIT, mode: 0o644, text: planned.unit},
    ])
    const real = await installDaemon(h, DAEMON)
    expect({...planned, dryRun: false}).toEqual(real)
  })

  it('--dry-run works without root', async () => {
    const h = host({root: false})
    const res = await installDaemon(dryRunSystem(h), {...DAEMON, dryRun: true})
    expect(res.files).toEqual([{path: UNIT, action: 'written'}])
  })
})

describe('mesh daemon uninstall on a systemd host', () => {
  it('stops, disables and removes the unit, and the group install created', async () => {
    const h = host()
    await installDaemon(h, DAEMON)
    h.ran.length = 0
    const res = await uninstallDaemon(h, {keepGroup: false, dryRun: false})
    expect(h.files()).toEqual([])
    expect(h.groups.has('mesh')).toBe(false)
    expect(changes(h)).toEqual([
      'systemctl disable --now meshd.service',
      'systemctl daemon-reload',
      'systemctl reset-failed meshd.service',
      'groupdel mesh',
    ])
    expect(res).toMatchObject({
      wasInstalled: true,
      files: [{path: UNIT, action: 'removed'}],
      removed: ['group mesh'],
    })
    expect(res.kept[0]).toMatch(/^\/var\/lib\/mesh /)
  })

  it('keeps a group it did not create, and one it did with --keep-group', async () => {
    const theirs = host({groups: ['mesh']})
    await installDaemon(theirs, DAEMON)
    const a = await uninstallDaemon(theirs, {keepGroup: false, dryRun: false})
    expect(theirs.groups.has('mesh')).toBe(true)
    expect(a.kept).toContainEqual(expect.stringContaining('group mesh (install did not create it'))

    const ours = host()
    await installDaemon(ours, DAEMON)
    const b = await uninstallDaemon(ours, {keepGroup: true, dryRun: false})
    expect(ours.groups.has('mesh')).toBe(true)
    expect(b.kept).toContainEqual(expect.stringContaining('group mesh (--keep-group'))
  })

  it('with nothing installed does nothing and succeeds', async () => {
    const h = host({groups: ['mesh']})
    const res = await uninstallDaemon(h, {keepGroup: false, dryRun: false})
    expect(res).toMatchObject({wasInstalled: false, files: [{path: UNIT, action: 'absent'}], commands: []})
    expect(h.ran).toEqual([])
    expect(h.groups.has('mesh')).toBe(true)
  })

  it('with nothing installed succeeds even where systemd is not PID 1', async () => {
    const h = host({systemd: false, root: false})
    const res = await uninstallDaemon(h, {keepGroup: false, dryRun: false})
    expect(res.wasInstalled).toBe(false)
  })

  it('--dry-run lists the removal and changes nothing', async () => {
    const h = host()
    await installDaemon(h, DAEMON)
    const dry = dryRunSystem(h)
    const res = await uninstallDaemon(dry, {keepGroup: false, dryRun: true})
    expect(h.files()).toEqual([UNIT])
    expect(h.groups.has('mesh')).toBe(true)
    expect(dry.planned).toContainEqual({kind: 'remove', path: UNIT})
    expect(res.commands.at(-1)).toEqual(['groupdel', 'mesh'])
  })

  it('warns, not fails, when the group cannot be removed', async () => {
    const h = host({fail: {groupdel: "groupdel: cannot remove the primary group of user 'x'"}})
    await installDaemon(h, DAEMON)
    const res = await uninstallDaemon(h, {keepGroup: false, dryRun: false})
    expect(res.removed).toEqual([])
    expect(res.warnings).toEqual([expect.stringContaining('could not remove the group mesh')])
    expect(h.files()).toEqual([])
  })
})

describe('mesh controller install and uninstall on a systemd host', () => {
  it('creates the mesh-controller system user without login, then writes and starts the unit', async () => {
    const h = host()
    const res = await installController(h, CONTROLLER)
    expect(changes(h)).toEqual([
      'useradd --system --user-group --home-dir /var/lib/mesh-controller --no-create-home --shell /usr/sbin/nologin --comment mesh controller mesh-controller',
      'systemctl daemon-reload',
      'systemctl enable mesh-controller.service',
      'systemctl restart mesh-controller.service',
    ])
    expect(h.files()).toEqual([CTL_UNIT])
    expect(res.unit).toMatch(/^User=mesh-controller$/m)
    expect(res.unit).toMatch(/^X-Mesh-Created-User=mesh-controller$/m)
    expect(res.created).toEqual(['user mesh-controller'])
    expect(res.warnings).toEqual([])
  })

  it('is idempotent', async () => {
    const h = host()
    const first = await installController(h, CONTROLLER)
    h.ran.length = 0
    const again = await installController(h, CONTROLLER)
    expect(again.unit).toBe(first.unit)
    expect(again.files).toEqual([{path: CTL_UNIT, action: 'unchanged'}])
    expect(changes(h)).toEqual([
      'systemctl enable mesh-controller.service',
      'systemctl start mesh-controller.service',
    ])
  })

  it('warns when its user could not read the program (mesh under /root)', async () => {
    const h = host({private: ['/root']})
    const res = await installController(h, {
      ...CONTROLLER,
      entry: ['/root/.cache/node/bin/node', '/opt/mesh/bin/mesh.js'],
    })
    expect(res.warnings).toEqual([
      expect.stringMatching(
        /^mesh-controller cannot read \/root, on the way to \/root\/\.cache\/node\/bin\/node /,
      ),
    ])
  })

  it('fails on a malformed --listen before changing anything', async () => {
    const h = host()
    const err = await failure(installController(h, {...CONTROLLER, listen: '8080'}))
    expect(err.code).toBe('INVALID_ARGUMENT')
    expect(h.ran).toEqual([])
  })

  it('uninstall removes the unit and the user it created, and keeps the database', async () => {
    const h = host()
    await installController(h, CONTROLLER)
    h.ran.length = 0
    const res = await uninstallController(h, {keepUser: false, dryRun: false})
    expect(changes(h)).toEqual([
      'systemctl disable --now mesh-controller.service',
      'systemctl daemon-reload',
      'systemctl reset-failed mesh-controller.service',
      'userdel mesh-controller',
    ])
    expect(h.users.has('mesh-controller')).toBe(false)
    expect(res.kept[0]).toMatch(/^\/var\/lib\/mesh-controller /)
  })

  it('uninstall --keep-user keeps the user', async () => {
    const h = host()
    await installController(h, CONTROLLER)
    await uninstallController(h, {keepUser: true, dryRun: false})
    expect(h.users.has('mesh-controller')).toBe(true)
  })
})

describe('on macOS', () => {
  it('daemon install creates the group with dseditgroup, writes the plist and bootstraps it', async () => {
    const h = host({platform: 'darwin'})
    const res = await installDaemon(h, DAEMON)
    expect(h.files()).toEqual(['/Library/LaunchDaemons/mesh.meshd.plist'])
    expect(res.manager).toBe('launchd')
    expect(changes(h)).toEqual([
      'dseditgroup -o create -r mesh socket users mesh',
      'launchctl enable system/mesh.meshd',
      'launchctl bootstrap system /Library/LaunchDaemons/mesh.meshd.plist',
    ])
    h.ran.length = 0
    await installDaemon(h, DAEMON)
    expect(changes(h)).toEqual(['launchctl enable system/mesh.meshd'])
  })

  it('controller install hands the data dir to nobody; uninstall boots the job out', async () => {
    const h = host({platform: 'darwin'})
    await installController(h, CONTROLLER)
    expect(changes(h)[0]).toBe('install -d -m 0700 -o nobody -g nobody /var/lib/mesh-controller')
    h.ran.length = 0
    const res = await uninstallController(h, {keepUser: false, dryRun: false})
    expect(changes(h)).toEqual(['launchctl bootout system/mesh.controller'])
    expect(h.files()).toEqual([])
    expect(res.removed).toEqual([])
  })
})

it('refuses platforms without systemd or launchd', async () => {
  const h = host({platform: 'win32'})
  const err = await failure(installDaemon(h, DAEMON))
  expect(err.code).toBe('SERVICE_MANAGER_UNAVAILABLE')
  expect(err.message).toContain('not on win32')
})
