// Unit contents: what each directive promises, ExecStart quoting, and agreement with the paths
// and error hints the rest of mesh uses.
import {afterEach, describe, expect, it, vi} from 'vitest'
import {ERRORS} from '../../../shared/errors.js'
import {defaultDaemonStateDir, defaultSocketPath} from '../../../shared/paths.js'
import {
  CONTROLLER_DATA_DIR,
  DAEMON_SOCKET,
  DAEMON_STATE_DIR,
  DAEMON_UNIT,
  MESH_GROUP,
  privilegedPorts,
  type ControllerServiceOptions,
} from './spec.js'
import {controllerUnit, daemonUnit, protectHome, systemdQuote, unitMarker} from './systemd.js'

afterEach(() => vi.unstubAllEnvs())

const ENTRY = ['/usr/bin/node', '/opt/mesh/bin/mesh.js']
const daemon = daemonUnit({entry: ENTRY, wireguard: 'auto', logLevel: 'info', createdGroup: false})
const controller = (o: Partial<ControllerServiceOptions> = {}): string =>
  controllerUnit({
    entry: ENTRY,
    listen: '0.0.0.0:8080',
    logLevel: 'info',
    privilegedPorts: [],
    createdUser: false,
    ...o,
  })

/** Directive values of a unit, comments dropped: `KEY -> [values]`. */
function directives(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z-]+)=(.*)$/.exec(line)
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!])
  }
  return out
}

describe('the meshd unit', () => {
  const d = directives(daemon)
  it.each([
    ['Restart', 'on-failure'],
    ['KillMode', 'process'],
    ['CapabilityBoundingSet', 'CAP_NET_ADMIN'],
    ['SupplementaryGroups', MESH_GROUP],
    ['RuntimeDirectory', 'mesh wireguard'],
    ['RuntimeDirectoryPreserve', 'yes'],
    ['StateDirectory', 'mesh'],
    ['StateDirectoryMode', '0700'],
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'true'],
    ['DevicePolicy', 'closed'],
    ['DeviceAllow', '/dev/net/tun rw'],
    ['NoNewPrivileges', 'yes'],
    ['WantedBy', 'multi-user.target'],
  ])('sets %s=%s', (key, value) => {
    expect(d.get(key)).toEqual([value])
  })

  it('runs as root: no User=, no ambient capabilities, nothing it would need to create', () => {
    expect(d.has('User')).toBe(false)
    expect(d.has('AmbientCapabilities')).toBe(false)
    expect(d.has('MemoryDenyWriteExecute')).toBe(false) // V8's JIT
  })

  it('runs `mesh daemon run` of the installing mesh with the fixed socket and state dir', () => {
    expect(d.get('ExecStart')).toEqual([
      '/usr/bin/node /opt/mesh/bin/mesh.js daemon run --socket /run/mesh/meshd.sock --state-dir /var/lib/mesh --wireguard auto --log-level info',
    ])
  })

  it('puts the socket where RuntimeDirectory= and the CLI default agree, and the state in StateDirectory=', () => {
    vi.stubEnv('MESH_SOCKET', undefined)
    vi.stubEnv('MESH_STATE_DIR', undefined)
    expect(defaultSocketPath()).toBe(DAEMON_SOCKET)
    expect(defaultDaemonStateDir()).toBe(DAEMON_STATE_DIR)
    expect(DAEMON_SOCKET).toBe(`/run/${d.get('RuntimeDirectory')![0]!.split(' ')[0]}/meshd.sock`)
    expect(DAEMON_STATE_DIR).toBe(`/var/lib/${d.get('StateDirectory')![0]}`)
  })

  it('gives the single executable a private cache to unpack into, which ProtectHome would otherwise hide', () => {
    expect(d.get('CacheDirectory')).toEqual(['mesh'])
    expect(d.get('CacheDirectoryMode')).toEqual(['0700'])
    expect(daemon).toMatch(/^ProtectHome=/m)
  })

  it('records a group install created, and only then', () => {
    expect(unitMarker(daemon, 'X-Mesh-Created-Group')).toBeUndefined()
    const ours = daemonUnit({entry: ENTRY, wireguard: 'auto', logLevel: 'info', createdGroup: true})
    expect(unitMarker(ours, 'X-Mesh-Created-Group')).toBe('mesh')
  })
})

describe('the controller unit', () => {
  it('runs as its own user with its data dir as StateDirectory and no capabilities', () => {
    const d = directives(controller())
    expect(d.get('User')).toEqual(['mesh-controller'])
    expect(d.get('StateDirectory')).toEqual(['mesh-controller'])
    expect(`/var/lib/${d.get('StateDirectory')![0]}`).toBe(CONTROLLER_DATA_DIR)
    expect(d.get('CapabilityBoundingSet')).toEqual([''])
    expect(d.has('AmbientCapabilities')).toBe(false)
    expect(d.get('NoNewPrivileges')).toEqual(['yes'])
    expect(d.get('Restart')).toEqual(['on-failure'])
    expect(d.has('KillMode')).toBe(false)
    expect(d.get('ExecStart')![0]).toContain(
      'controller start --data-dir /var/lib/mesh-controller --listen 0.0.0.0:8080',
    )
  })

  it('gets CAP_NET_BIND_SERVICE, and only it, for a port below 1024', () => {
    const d = directives(controller({listen: '0.0.0.0:443', privilegedPorts: [443]}))
    expect(d.get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE'])
    expect(d.get('AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE'])
  })

  it.each([
    ['the defaults', {listen: '127.0.0.1:8080'}, []],
    ['HTTPS on 443', {listen: '0.0.0.0:443'}, [443]],
    [
      'STUN on 478 and discovery off',
      {listen: '0.0.0.0:8080', stunListen: '0.0.0.0:478', discoveryListen: 'off'},
      [478],
    ],
    ['port 0 everywhere (free ports)', {listen: '127.0.0.1:0'}, []],
    ['an alternate STUN port 80', {listen: '[::]:8443', stunAlternate: '198.51.100.2:80'}, [80]],
  ])('privileged ports with %s', (_name, flags, ports) => {
    expect(privilegedPorts(flags)).toEqual(ports)
  })
})

describe('ExecStart quoting', () => {
  it.each([
    ['/usr/bin/node', '/usr/bin/node'],
    ['/opt/my mesh/bin/mesh.js', '"/opt/my mesh/bin/mesh.js"'],
    ['https://ctl.example/?a=1&b=2', '"https://ctl.example/?a=1&b=2"'],
    ['50%', '50%%'],
    ['$HOME', '$$HOME'],
    ['say "hi"\\', '"say \\"hi\\"\\\\"'],
  ])('%s -> %s', (arg, quoted) => {
    expect(systemdQuote(arg)).toBe(quoted)
  })

  it('refuses control characters, which would end the directive or drive a terminal', () => {
    expect(() => systemdQuote('a\nExecStartPre=/bin/sh')).toThrow(/control characters/)
    expect(() => systemdQuote('\u001b[31m')).toThrow(/control characters/)
  })
})

it('ProtectHome= is read-only, not true, when the program lives under a home directory', () => {
  expect(protectHome(['/usr/bin/node', '/opt/mesh/bin/mesh.js'])).toBe('true')
  expect(protectHome(['/root/.cache/mesh/node/24/bin/node', '/opt/mesh/bin/mesh.js'])).toBe('read-only')
  expect(protectHome(['/home/ann/mesh/dist/mesh'])).toBe('read-only')
  expect(protectHome(['/homework/mesh'])).toBe('true')
})

describe('error hints match what install sets up', () => {
  it('DAEMON_UNREACHABLE names the unit and the install command', () => {
    expect(ERRORS.DAEMON_UNREACHABLE.hint).toContain(
      `systemctl start ${DAEMON_UNIT.replace(/\.service$/, '')}`,
    )
    expect(ERRORS.DAEMON_UNREACHABLE.hint).toContain('sudo mesh daemon install')
  })
  it('SOCKET_PERMISSION_DENIED names the group install creates', () => {
    expect(ERRORS.SOCKET_PERMISSION_DENIED.hint).toContain(`\`${MESH_GROUP}\` group`)
  })
})
