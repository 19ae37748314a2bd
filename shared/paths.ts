/**
 * Default locations of sockets, state and config per platform. Nothing else in mesh calls
 * os.homedir() or hard-codes these paths.
 */
import os from 'node:os'
import path from 'node:path'

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0

/** meshd's unix socket: flag > MESH_SOCKET > this. */
export const defaultSocketPath = (): string => process.env.MESH_SOCKET ?? '/run/mesh/meshd.sock'

/** meshd's state dir (keys, credentials, cached netmaps). */
export const defaultDaemonStateDir = (): string => process.env.MESH_STATE_DIR ?? '/var/lib/mesh'

/** The controller's data dir (SQLite file, initial admin password). */
export function defaultControllerDataDir(): string {
  if (process.env.MESH_DATA_DIR) return process.env.MESH_DATA_DIR
  if (isRoot()) return '/var/lib/mesh-controller'
  const base = process.env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share')
  return path.join(base, 'mesh', 'controller')
}

/** The CLI's config dir (login token, mode 0600). */
export function cliConfigDir(): string {
  if (process.env.MESH_CONFIG_DIR) return process.env.MESH_CONFIG_DIR
  const base = process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config')
  return path.join(base, 'mesh')
}
