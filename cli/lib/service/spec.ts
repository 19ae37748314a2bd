/**
 * What the installed services are called and where their files live: the constants the unit,
 * the plist, the install flow and the DAEMON_UNREACHABLE hint must agree on, and the options
 * `mesh daemon install` and `mesh controller install` take.
 */
import {MeshError} from '../../../shared/errors.js'

/** systemd unit (and launchd job) name of meshd; DAEMON_UNREACHABLE's hint names it. */
export const DAEMON_UNIT = 'meshd.service'
export const CONTROLLER_UNIT = 'mesh-controller.service'
export const DAEMON_LABEL = 'mesh.meshd'
export const CONTROLLER_LABEL = 'mesh.controller'

/** Members of this group may use meshd's socket (0660 root:mesh); install creates it. */
export const MESH_GROUP = 'mesh'
/** The controller's own system user (and its user-private group). */
export const CONTROLLER_USER = 'mesh-controller'

/**
 * The paths the services use, fixed rather than taken from the environment: an installing shell
 * with MESH_SOCKET set (the lab sets it) must not move the socket of the system's meshd. They are
 * shared/paths.ts's defaults (a test holds them equal).
 */
export const DAEMON_SOCKET = '/run/mesh/meshd.sock'
export const DAEMON_STATE_DIR = '/var/lib/mesh'
export const CONTROLLER_DATA_DIR = '/var/lib/mesh-controller'

export type WireguardBackend = 'auto' | 'kernel' | 'userspace'

export interface DaemonServiceOptions {
  /** argv prefix that starts this mesh (entry.ts meshEntry()). */
  entry: readonly string[]
  /** Passed to meshd only when given to install: otherwise /etc/mesh/config.yaml (or the default) decides. */
  wireguard?: WireguardBackend | undefined
  logLevel?: string | undefined
  /** True when install created MESH_GROUP, so uninstall may remove it. */
  createdGroup: boolean
}

export interface ControllerServiceOptions {
  entry: readonly string[]
  listen: string
  publicUrl?: string | undefined
  stunListen?: string | undefined
  stunAlternate?: string | undefined
  discoveryListen?: string | undefined
  /** Passed to the controller only when given to install (else /etc/mesh/config.yaml decides). */
  logLevel?: string | undefined
  /** Ports below 1024 it binds: only then does it get CAP_NET_BIND_SERVICE. */
  privilegedPorts: number[]
  /** True when install created CONTROLLER_USER, so uninstall may remove it. */
  createdUser: boolean
}

/** The controller's defaults for STUN and discovery when only --listen is given. */
const DEFAULT_STUN_PORT = 3478
const DEFAULT_DISCOVERY_PORT = 51820

/**
 * The port of a HOST:PORT flag value (the same shape `mesh controller start` accepts; checked
 * here too so a typo fails install instead of a service that restarts forever).
 */
export function portOf(flag: string, value: string): number {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535)
    throw new MeshError('INVALID_ARGUMENT', {
      message: `${flag}: expected HOST:PORT such as 0.0.0.0:8080, got ${JSON.stringify(value)}`,
    })
  return port
}

/**
 * Ports below 1024 the controller will bind with these flags, sorted. Port 0 (a free port) is
 * not privileged; `off` binds nothing; an absent UDP flag means the --listen host with the
 * controller's default port (0 when --listen's port is 0).
 */
export function privilegedPorts(opts: {
  listen: string
  stunListen?: string | undefined
  stunAlternate?: string | undefined
  discoveryListen?: string | undefined
}): number[] {
  const listenPort = portOf('--listen', opts.listen)
  const udp = (flag: string, value: string | undefined, fallback: number): number | undefined => {
    if (value === 'off') return undefined
    if (value === undefined) return listenPort === 0 ? 0 : fallback
    return portOf(flag, value)
  }
  const ports = [
    listenPort,
    udp('--stun-listen', opts.stunListen, DEFAULT_STUN_PORT),
    opts.stunAlternate === undefined ? undefined : portOf('--stun-alternate', opts.stunAlternate),
    udp('--discovery-listen', opts.discoveryListen, DEFAULT_DISCOVERY_PORT),
  ]
  return [...new Set(ports.filter((p): p is number => p !== undefined && p > 0 && p < 1024))].sort(
    (a, b) => a - b,
  )
}

/** Refuses control characters in a value bound for a unit or plist (INVALID_ARGUMENT). */
export function assertPrintable(value: string): void {
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new MeshError('INVALID_ARGUMENT', {
      message: `a service command line cannot hold control characters: ${JSON.stringify(value)}`,
    })
}
