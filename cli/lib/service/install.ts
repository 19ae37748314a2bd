/**
 * Installs and uninstalls meshd and the controller as system services (systemd on Linux, launchd
 * on macOS) through a ServiceSystem, so the same flow runs on the host, in --dry-run and in tests.
 *
 * Idempotent: a second install finds the unit as it would write it, writes nothing and only
 * makes sure the service is enabled and running. Uninstall removes what install wrote (the unit,
 * and the group or user when install created them; the unit records that) and never the state:
 * /var/lib/mesh holds the node's keys, /var/lib/mesh-controller the database.
 */
import {MeshError} from '../../../shared/errors.js'
import {controllerPlist, daemonPlist, DARWIN_CONTROLLER_USER, plistPath} from './launchd.js'
import {
  CONTROLLER_DATA_DIR,
  CONTROLLER_LABEL,
  CONTROLLER_UNIT,
  CONTROLLER_USER,
  DAEMON_LABEL,
  DAEMON_STATE_DIR,
  DAEMON_UNIT,
  MESH_GROUP,
  privilegedPorts,
  type ControllerServiceOptions,
  type DaemonServiceOptions,
} from './spec.js'
import type {ServiceSystem} from './system.js'
import {
  controllerUnit,
  CREATED_GROUP_KEY,
  CREATED_USER_KEY,
  daemonUnit,
  SYSTEMD_UNIT_DIR,
  unitMarker,
} from './systemd.js'

export type ServiceName = 'meshd' | 'controller'
export type Manager = 'systemd' | 'launchd'

export interface FileChange {
  path: string
  action: 'written' | 'unchanged' | 'removed' | 'absent'
}

export interface InstallResult {
  service: ServiceName
  manager: Manager
  /** The unit file (systemd) or property list (launchd). */
  unitPath: string
  /** Its text, as written (or as it would be, with --dry-run). */
  unit: string
  dryRun: boolean
  files: FileChange[]
  /** Accounts this run created, such as "group mesh" or "user mesh-controller". */
  created: string[]
  /** Commands that changed the system, in the order they ran (or would run, with --dry-run). */
  commands: string[][]
  started: boolean
  warnings: string[]
}

export interface UninstallResult {
  service: ServiceName
  manager: Manager
  unitPath: string
  dryRun: boolean
  /** False when there was no unit: nothing was done. */
  wasInstalled: boolean
  files: FileChange[]
  /** Accounts removed, such as "group mesh". */
  removed: string[]
  /** What uninstall leaves on purpose, with why. */
  kept: string[]
  commands: string[][]
  warnings: string[]
}

interface InstallSteps {
  /** Enable only; do not start (or restart) now. */
  noStart: boolean
  dryRun: boolean
}

/** What the unit is written from (install finds out whether it creates the group itself). */
export type DaemonInstallOptions = Omit<DaemonServiceOptions, 'createdGroup'> & InstallSteps

/** The unit's options but those install works out itself (user created, privileged ports). */
export type ControllerInstallOptions = Omit<ControllerServiceOptions, 'createdUser' | 'privilegedPorts'> &
  InstallSteps

interface Target {
  service: ServiceName
  manager: Manager
  unitPath: string
  /** systemd unit name or launchd label. */
  name: string
}

/**
 * The service manager and unit path for this platform. Where there is none (Linux without
 * systemd as PID 1: containers, WSL without systemd), install hands over the unit it would
 * have written in the error's detail, which the command prints.
 */
function target(sys: ServiceSystem, service: ServiceName, render?: () => string): Target {
  const unitPath = unitPathFor(sys.platform, service)
  if (sys.platform === 'darwin')
    return {
      service,
      manager: 'launchd',
      unitPath,
      name: service === 'meshd' ? DAEMON_LABEL : CONTROLLER_LABEL,
    }
  const name = service === 'meshd' ? DAEMON_UNIT : CONTROLLER_UNIT
  if (sys.platform !== 'linux')
    throw new MeshError('SERVICE_MANAGER_UNAVAILABLE', {
      message: `mesh installs services with systemd (Linux) or launchd (macOS), not on ${sys.platform}`,
      hint: `run \`mesh ${service === 'meshd' ? 'daemon run' : 'controller start'}\` under your own service manager`,
    })
  const foreground = service === 'meshd' ? 'sudo mesh daemon run' : 'mesh controller start'
  if (!sys.systemdBooted())
    throw new MeshError('SERVICE_MANAGER_UNAVAILABLE', {
      message: `systemd is not running as PID 1 here (no /run/systemd/system), so ${name} cannot be ${render ? 'installed' : 'uninstalled'}`,
      hint: render
        ? `the unit is printed on stdout: on a systemd host save it as ${unitPath}; here run \`${foreground}\` under your own supervisor`
        : `nothing to do without systemd; remove ${unitPath} by hand if you copied it there`,
      ...(render && {detail: {unitPath, unit: render()}}),
    })
  return {service, manager: 'systemd', unitPath, name}
}

/** Runs the commands that change the system, recording them; a failure is SERVICE_COMMAND_FAILED. */
class Runner {
  readonly commands: string[][] = []
  constructor(
    private readonly sys: ServiceSystem,
    private readonly t: Target,
  ) {}

  /** Queries (their exit code is the answer): not recorded, never fail. */
  async query(cmd: string, args: string[]): Promise<boolean> {
    return (await this.sys.run(cmd, args)).code === 0
  }

  /** A change that may fail harmlessly (stopping what is not running); true when it succeeded. */
  async attempt(cmd: string, args: string[]): Promise<boolean> {
    this.commands.push([cmd, ...args])
    return (await this.sys.run(cmd, args)).code === 0
  }

  async must(cmd: string, args: string[]): Promise<void> {
    this.commands.push([cmd, ...args])
    const res = await this.sys.run(cmd, args)
    if (res.code === 0) return
    const why = res.stderr.trim().split('\n')[0] ?? ''
    const unit = this.t.name.replace(/\.service$/, '')
    throw new MeshError('SERVICE_COMMAND_FAILED', {
      message: `\`${[cmd, ...args].join(' ')}\` failed (exit ${res.code})${why ? `: ${why}` : ''}`,
      hint:
        this.t.manager === 'systemd'
          ? `see \`systemctl status ${unit}\` and \`journalctl -u ${unit}\``
          : `see \`launchctl print system/${this.t.name}\` and /var/log/${this.t.service === 'meshd' ? 'meshd' : 'mesh-controller'}.log`,
    })
  }
}

function requireRoot(sys: ServiceSystem, verb: string, t: Target): void {
  if (!sys.isRoot())
    throw new MeshError('ROOT_REQUIRED', {
      message: `${verb} ${t.name} needs root: it writes ${t.unitPath} and runs ${t.manager === 'systemd' ? 'systemctl' : 'launchctl'}`,
      hint: `run it with sudo, or see what it would do with --dry-run`,
    })
}

/** Writes the unit when its text differs; reports which. */
function writeUnit(sys: ServiceSystem, t: Target, text: string): FileChange {
  if (sys.readFile(t.unitPath) === text) return {path: t.unitPath, action: 'unchanged'}
  sys.writeFile(t.unitPath, text, 0o644)
  return {path: t.unitPath, action: 'written'}
}

/** Makes the service enabled at boot and, unless noStart, running the unit as written now. */
async function activate(run: Runner, t: Target, changed: boolean, noStart: boolean): Promise<boolean> {
  if (t.manager === 'systemd') {
    if (changed) await run.must('systemctl', ['daemon-reload'])
    await run.must('systemctl', ['enable', t.name])
    if (noStart) return false
    // restart picks up a changed unit (and starts a stopped one); start is a no-op when running.
    await run.must('systemctl', [changed ? 'restart' : 'start', t.name])
    return true
  }
  await run.must('launchctl', ['enable', `system/${t.name}`])
  if (noStart) return false
  const loaded = await run.query('launchctl', ['print', `system/${t.name}`])
  if (loaded && !changed) return true
  if (loaded) await run.attempt('launchctl', ['bootout', `system/${t.name}`])
  await run.must('launchctl', ['bootstrap', 'system', t.unitPath])
  return true
}

const groupExists = (run: Runner, sys: ServiceSystem, group: string): Promise<boolean> =>
  sys.platform === 'darwin'
    ? run.query('dscl', ['.', '-read', `/Groups/${group}`])
    : run.query('getent', ['group', group])

/** Unit path of a service on this platform (a launchd property list on macOS). */
export function unitPathFor(platform: NodeJS.Platform, service: ServiceName): string {
  if (platform === 'darwin') return plistPath(service === 'meshd' ? DAEMON_LABEL : CONTROLLER_LABEL)
  return `${SYSTEMD_UNIT_DIR}/${service === 'meshd' ? DAEMON_UNIT : CONTROLLER_UNIT}`
}

export interface PrintedUnit {
  unitPath: string
  unit: string
}

function daemonText(platform: NodeJS.Platform, opts: DaemonPrintOptions, createdGroup: boolean): string {
  const o = {entry: opts.entry, wireguard: opts.wireguard, logLevel: opts.logLevel, createdGroup}
  return platform === 'darwin' ? daemonPlist(o) : daemonUnit(o)
}

export type DaemonPrintOptions = Pick<DaemonInstallOptions, 'entry' | 'wireguard' | 'logLevel'>

/** `mesh daemon install --print`: the unit install would write, on any host, touching nothing. */
export function printDaemon(sys: ServiceSystem, opts: DaemonPrintOptions): PrintedUnit {
  const unitPath = unitPathFor(sys.platform, 'meshd')
  const createdGroup = unitMarker(sys.readFile(unitPath), CREATED_GROUP_KEY) === MESH_GROUP
  return {unitPath, unit: daemonText(sys.platform, opts, createdGroup)}
}

/** `mesh daemon install`. */
export async function installDaemon(sys: ServiceSystem, opts: DaemonInstallOptions): Promise<InstallResult> {
  const unitOf = (createdGroup: boolean): string => daemonText(sys.platform, opts, createdGroup)
  const t = target(sys, 'meshd', () => unitOf(false))
  if (!opts.dryRun) requireRoot(sys, 'installing', t)
  const run = new Runner(sys, t)
  const created: string[] = []

  // 1. The group whose members may use the socket. Whether install made it is recorded in the
  //    unit (systemd), and carried over when a later install finds it already there.
  let createdGroup = unitMarker(sys.readFile(t.unitPath), CREATED_GROUP_KEY) === MESH_GROUP
  if (!(await groupExists(run, sys, MESH_GROUP))) {
    if (sys.platform === 'darwin')
      await run.must('dseditgroup', ['-o', 'create', '-r', 'mesh socket users', MESH_GROUP])
    else await run.must('groupadd', ['--system', MESH_GROUP])
    created.push(`group ${MESH_GROUP}`)
    createdGroup = true
  }

  // 2. The unit, then 3. enabled and running.
  const text = unitOf(createdGroup)
  const file = writeUnit(sys, t, text)
  const started = await activate(run, t, file.action === 'written', opts.noStart)
  return {
    service: 'meshd',
    manager: t.manager,
    unitPath: t.unitPath,
    unit: text,
    dryRun: opts.dryRun,
    files: [file],
    created,
    commands: run.commands,
    started,
    warnings: [],
  }
}

/** The result of an uninstall with no unit to remove: success, nothing done, on any host. */
function notInstalled(
  sys: ServiceSystem,
  service: ServiceName,
  kept: string[],
  dryRun: boolean,
): UninstallResult | undefined {
  const unitPath = unitPathFor(sys.platform, service)
  if (sys.readFile(unitPath) !== undefined) return undefined
  return {
    service,
    manager: sys.platform === 'darwin' ? 'launchd' : 'systemd',
    unitPath,
    dryRun,
    wasInstalled: false,
    files: [{path: unitPath, action: 'absent'}],
    removed: [],
    kept,
    commands: [],
    warnings: [],
  }
}

/** `mesh daemon uninstall`. */
export async function uninstallDaemon(
  sys: ServiceSystem,
  opts: {keepGroup: boolean; dryRun: boolean},
): Promise<UninstallResult> {
  const kept = [`${DAEMON_STATE_DIR} (this node's keys and credentials; remove it to forget the node)`]
  const none = notInstalled(sys, 'meshd', kept, opts.dryRun)
  if (none) return none
  const t = target(sys, 'meshd')
  if (!opts.dryRun) requireRoot(sys, 'uninstalling', t)
  const run = new Runner(sys, t)
  const existing = sys.readFile(t.unitPath)
  const base = {service: 'meshd' as const, manager: t.manager, unitPath: t.unitPath, dryRun: opts.dryRun}

  await stopAndRemove(run, sys, t)
  const removed: string[] = []
  const warnings: string[] = []
  const createdGroup = unitMarker(existing, CREATED_GROUP_KEY) === MESH_GROUP
  if (createdGroup && !opts.keepGroup) {
    if (await run.attempt('groupdel', [MESH_GROUP])) removed.push(`group ${MESH_GROUP}`)
    else
      warnings.push(
        `could not remove the group ${MESH_GROUP} (\`groupdel ${MESH_GROUP}\` failed); remove it by hand`,
      )
  } else {
    kept.push(
      `group ${MESH_GROUP} (${
        opts.keepGroup ? '--keep-group' : 'install did not create it'
      }; members keep their membership)`,
    )
  }
  kept.push(
    'WireGuard interfaces meshd set up (KillMode=process leaves wireguard-go running; run `mesh down` before uninstalling to remove them)',
  )
  return {
    ...base,
    wasInstalled: true,
    files: [{path: t.unitPath, action: 'removed'}],
    removed,
    kept,
    commands: run.commands,
    warnings,
  }
}

/** Stops and disables the service, removes its unit and has the manager forget it. */
async function stopAndRemove(run: Runner, sys: ServiceSystem, t: Target): Promise<void> {
  if (t.manager === 'systemd') {
    await run.must('systemctl', ['disable', '--now', t.name])
    sys.removeFile(t.unitPath)
    await run.must('systemctl', ['daemon-reload'])
    // Forget a failed state so `systemctl list-units --failed` does not list a removed unit.
    await run.attempt('systemctl', ['reset-failed', t.name])
    return
  }
  await run.attempt('launchctl', ['bootout', `system/${t.name}`])
  sys.removeFile(t.unitPath)
}

/** The first of these paths a user outside owner and group could not read, if any. */
function unreadable(paths: readonly string[], readableByOthers: (p: string) => boolean): string | undefined {
  for (const p of paths) {
    const parts = p.split('/').filter(Boolean)
    for (let i = 1; i <= parts.length; i++) {
      const prefix = `/${parts.slice(0, i).join('/')}`
      if (!readableByOthers(prefix)) return prefix
    }
  }
  return undefined
}

export type ControllerPrintOptions = Omit<ControllerInstallOptions, 'noStart' | 'dryRun'>

function controllerText(
  platform: NodeJS.Platform,
  opts: ControllerPrintOptions,
  createdUser: boolean,
): string {
  const o = {
    entry: opts.entry,
    listen: opts.listen,
    publicUrl: opts.publicUrl,
    stunListen: opts.stunListen,
    stunAlternate: opts.stunAlternate,
    discoveryListen: opts.discoveryListen,
    logLevel: opts.logLevel,
    privilegedPorts: privilegedPorts(opts),
    createdUser,
  }
  return platform === 'darwin' ? controllerPlist(o) : controllerUnit(o)
}

/** `mesh controller install --print`. */
export function printController(sys: ServiceSystem, opts: ControllerPrintOptions): PrintedUnit {
  const unitPath = unitPathFor(sys.platform, 'controller')
  const createdUser = unitMarker(sys.readFile(unitPath), CREATED_USER_KEY) === CONTROLLER_USER
  return {unitPath, unit: controllerText(sys.platform, opts, createdUser)}
}

/** `mesh controller install`. */
export async function installController(
  sys: ServiceSystem,
  opts: ControllerInstallOptions,
): Promise<InstallResult> {
  privilegedPorts(opts) // a malformed HOST:PORT fails here, before anything changes
  const unitOf = (createdUser: boolean): string => controllerText(sys.platform, opts, createdUser)
  const t = target(sys, 'controller', () => unitOf(false))
  if (!opts.dryRun) requireRoot(sys, 'installing', t)
  const run = new Runner(sys, t)
  const created: string[] = []
  const warnings: string[] = []
  const user = sys.platform === 'darwin' ? DARWIN_CONTROLLER_USER : CONTROLLER_USER

  // 1. Its own user (Linux), with a user-private group, no home of its own and no login shell.
  let createdUser = unitMarker(sys.readFile(t.unitPath), CREATED_USER_KEY) === CONTROLLER_USER
  if (sys.platform === 'darwin') {
    // launchd makes no directories: hand the data dir to the user it runs as.
    await run.must('install', ['-d', '-m', '0700', '-o', user, '-g', user, CONTROLLER_DATA_DIR])
  } else if (!(await run.query('getent', ['passwd', CONTROLLER_USER]))) {
    await run.must('useradd', [
      '--system',
      '--user-group',
      '--home-dir',
      CONTROLLER_DATA_DIR,
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      '--comment',
      'mesh controller',
      CONTROLLER_USER,
    ])
    created.push(`user ${CONTROLLER_USER}`)
    createdUser = true
  }

  // 2. It runs as that user, so the program must be readable by it.
  const blocked = sys.platform === 'linux' && unreadable(opts.entry, (p) => sys.readableByOthers(p))
  if (blocked)
    warnings.push(
      `${user} cannot read ${blocked}, on the way to ${opts.entry.join(' ')}: the service will fail to start; install mesh where other users can read it (such as /opt/mesh)`,
    )

  // 3. The unit, then 4. enabled and running.
  const text = unitOf(createdUser)
  const file = writeUnit(sys, t, text)
  const started = await activate(run, t, file.action === 'written', opts.noStart)
  return {
    service: 'controller',
    manager: t.manager,
    unitPath: t.unitPath,
    unit: text,
    dryRun: opts.dryRun,
    files: [file],
    created,
    commands: run.commands,
    started,
    warnings,
  }
}

/** `mesh controller uninstall`. */
export async function uninstallController(
  sys: ServiceSystem,
  opts: {keepUser: boolean; dryRun: boolean},
): Promise<UninstallResult> {
  const kept = [`${CONTROLLER_DATA_DIR} (the database; remove it to delete every network, node and user)`]
  const none = notInstalled(sys, 'controller', kept, opts.dryRun)
  if (none) return none
  const t = target(sys, 'controller')
  if (!opts.dryRun) requireRoot(sys, 'uninstalling', t)
  const run = new Runner(sys, t)
  const existing = sys.readFile(t.unitPath)
  const base = {service: 'controller' as const, manager: t.manager, unitPath: t.unitPath, dryRun: opts.dryRun}

  await stopAndRemove(run, sys, t)
  const removed: string[] = []
  const warnings: string[] = []
  if (unitMarker(existing, CREATED_USER_KEY) === CONTROLLER_USER && !opts.keepUser) {
    if (await run.attempt('userdel', [CONTROLLER_USER])) removed.push(`user ${CONTROLLER_USER}`)
    else
      warnings.push(
        `could not remove the user ${CONTROLLER_USER} (\`userdel ${CONTROLLER_USER}\` failed); remove it by hand`,
      )
  } else if (t.manager === 'systemd') {
    kept.push(`user ${CONTROLLER_USER} (${opts.keepUser ? '--keep-user' : 'install did not create it'})`)
  }
  return {
    ...base,
    wasInstalled: true,
    files: [{path: t.unitPath, action: 'removed'}],
    removed,
    kept,
    commands: run.commands,
    warnings,
  }
}
