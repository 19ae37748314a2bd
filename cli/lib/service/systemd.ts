/**
 * systemd units for meshd and the controller, as text. Pure: the install flow decides where they
 * go and what runs; every directive here carries the reason it is there.
 */
import {
  assertPrintable,
  CONTROLLER_DATA_DIR,
  CONTROLLER_USER,
  DAEMON_SOCKET,
  DAEMON_STATE_DIR,
  MESH_GROUP,
  type ControllerServiceOptions,
  type DaemonServiceOptions,
} from './spec.js'

/** Where units go: the admin's directory, which outranks /usr/lib/systemd/system. */
export const SYSTEMD_UNIT_DIR = '/etc/systemd/system'
/** Marker keys (systemd ignores X- keys) recording what install created, so uninstall removes only that. */
export const CREATED_GROUP_KEY = 'X-Mesh-Created-Group'
export const CREATED_USER_KEY = 'X-Mesh-Created-User'

/**
 * Quotes one argument for ExecStart= (systemd.service(5) "Command lines"): `%` is a specifier
 * and `$` a variable even inside quotes, so both are doubled; anything beyond a plain word is
 * double-quoted with `\` and `"` escaped. Control characters (a line feed ends the directive) are
 * refused, so a unit printed on a terminal is plain text.
 */
export function systemdQuote(arg: string): string {
  assertPrintable(arg)
  const escaped = arg.replaceAll('%', '%%').replaceAll('$', '$$$$')
  if (/^[A-Za-z0-9_@%$+=:,./-]+$/.test(escaped)) return escaped
  return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`
}

const HOME_DIRS = ['/home', '/root', '/run/user']

/**
 * ProtectHome= for a unit whose program lives at these paths: `true` hides /home, /root and
 * /run/user, which would hide a mesh installed there (a checkout in /root, Node fetched into
 * ~/.cache) and the service would fail with 203/EXEC; then it can only be read-only.
 */
export function protectHome(entry: readonly string[]): 'true' | 'read-only' {
  const underHome = entry.some((p) => HOME_DIRS.some((d) => p === d || p.startsWith(`${d}/`)))
  return underHome ? 'read-only' : 'true'
}

const execStart = (argv: readonly string[]): string => argv.map(systemdQuote).join(' ')

/** The hardening both units share; each line is a sandbox wall neither program needs to cross. */
function sandbox(entry: readonly string[]): string[] {
  const home = protectHome(entry)
  return [
    '# The whole file system is read-only but for the directories systemd makes for the unit.',
    'ProtectSystem=strict',
    home === 'true'
      ? 'ProtectHome=true'
      : '# read-only, not true: this mesh (or its Node) lives under a home directory.\nProtectHome=read-only',
    'PrivateTmp=yes',
    'ProtectKernelTunables=yes',
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'SystemCallArchitectures=native',
    "# No MemoryDenyWriteExecute=: V8's JIT needs writable, executable memory.",
  ]
}

/**
 * meshd: root with one capability. It must outlive restarts of itself without dropping tunnels,
 * so wireguard-go (its child) stays up when meshd stops.
 */
export function daemonUnit(opts: DaemonServiceOptions): string {
  const argv = [
    ...opts.entry,
    'daemon',
    'run',
    '--socket',
    DAEMON_SOCKET,
    '--state-dir',
    DAEMON_STATE_DIR,
    ...(opts.wireguard === undefined ? [] : ['--wireguard', opts.wireguard]),
    ...(opts.logLevel === undefined ? [] : ['--log-level', opts.logLevel]),
  ]
  return `${[
    '# meshd, the mesh node daemon. Written by `mesh daemon install`; `mesh daemon uninstall` removes it.',
    '[Unit]',
    'Description=mesh node daemon (WireGuard mesh VPN)',
    "# No Documentation=man:meshd(8): mesh's man pages ship in its package, not in man's path,",
    '# and systemd-analyze verify fails on a page man cannot find. See `mesh daemon run --help`.',
    '# Like tailscaled: up before the network is, so tunnels come back early; meshd retries its',
    '# controllers by itself and serves the last netmap from its state dir meanwhile.',
    'Wants=network-pre.target',
    'After=network-pre.target',
    ...(opts.createdGroup ? [`${CREATED_GROUP_KEY}=${MESH_GROUP}`] : []),
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${execStart(argv)}`,
    'Restart=on-failure',
    'RestartSec=5s',
    '# Stop (and restart) meshd alone: wireguard-go, its child, carries the tunnels of the',
    '# userspace backend and must live on; the next meshd adopts the interfaces it finds.',
    'KillMode=process',
    '# meshd runs as root (it owns the keys and the interfaces) but holds one capability:',
    '# CAP_NET_ADMIN creates WireGuard links (kernel and wireguard-go tun), sets their keys,',
    '# addresses, MTU and routes over netlink. Not CAP_NET_RAW: no raw or packet sockets. Not',
    '# CAP_NET_BIND_SERVICE: every port it binds is above 1024 (41820, ephemeral, WireGuard).',
    '# Not CAP_CHOWN: the group below lets it hand the socket to `mesh` as the owner may.',
    'CapabilityBoundingSet=CAP_NET_ADMIN',
    `# Member of \`${MESH_GROUP}\`, so it may chgrp its socket to the group whose members may use it.`,
    `SupplementaryGroups=${MESH_GROUP}`,
    '# The socket lives in /run/mesh (0755, socket 0660 root:mesh). /run/wireguard is',
    "# wireguard-go's UAPI directory (/var/run/wireguard), which must stay writable. Both are",
    '# kept when meshd stops: with KillMode=process a running wireguard-go still uses its socket.',
    'RuntimeDirectory=mesh wireguard',
    'RuntimeDirectoryMode=0755',
    'RuntimeDirectoryPreserve=yes',
    '# /var/lib/mesh: keys (0600), credentials, last netmaps.',
    'StateDirectory=mesh',
    'StateDirectoryMode=0700',
    '# Where the single-executable mesh unpacks itself (CACHE_DIRECTORY); ProtectHome hides ~/.cache.',
    'CacheDirectory=mesh',
    'CacheDirectoryMode=0700',
    'UMask=0077',
    '# Only the tun device beyond the basic pseudo-devices (wireguard-go opens /dev/net/tun).',
    'DevicePolicy=closed',
    'DeviceAllow=/dev/net/tun rw',
    '# netlink configures links and routes; unix for the local API; inet for WireGuard, STUN,',
    '# the controller and relays.',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'NoNewPrivileges=yes',
    ...sandbox(opts.entry),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ].join('\n')}\n`
}

/** The controller: its own unprivileged user, its database in its StateDirectory. */
export function controllerUnit(opts: ControllerServiceOptions): string {
  const argv = [
    ...opts.entry,
    'controller',
    'start',
    '--data-dir',
    CONTROLLER_DATA_DIR,
    '--listen',
    opts.listen,
    ...(opts.publicUrl === undefined ? [] : ['--public-url', opts.publicUrl]),
    ...(opts.stunListen === undefined ? [] : ['--stun-listen', opts.stunListen]),
    ...(opts.stunAlternate === undefined ? [] : ['--stun-alternate', opts.stunAlternate]),
    ...(opts.discoveryListen === undefined ? [] : ['--discovery-listen', opts.discoveryListen]),
    ...(opts.logLevel === undefined ? [] : ['--log-level', opts.logLevel]),
  ]
  const caps = opts.privilegedPorts.length > 0
  return `${[
    '# The mesh controller. Written by `mesh controller install`; `mesh controller uninstall` removes it.',
    '[Unit]',
    'Description=mesh controller (API, relay, STUN, endpoint discovery)',
    "# See `mesh controller start --help` (no Documentation=: the man page is not in man's path).",
    '# It binds the addresses it is given, which must exist first.',
    'Wants=network-online.target',
    'After=network-online.target',
    ...(opts.createdUser ? [`${CREATED_USER_KEY}=${CONTROLLER_USER}`] : []),
    '',
    '[Service]',
    'Type=exec',
    `User=${CONTROLLER_USER}`,
    `Group=${CONTROLLER_USER}`,
    `ExecStart=${execStart(argv)}`,
    'Restart=on-failure',
    'RestartSec=5s',
    `# ${CONTROLLER_DATA_DIR}: the SQLite database, discovery key and initial admin password.`,
    `# systemd creates it owned by ${CONTROLLER_USER} (and fixes the owner of older files).`,
    `StateDirectory=${CONTROLLER_DATA_DIR.slice('/var/lib/'.length)}`,
    'StateDirectoryMode=0700',
    '# Where the single-executable mesh unpacks itself (CACHE_DIRECTORY); ProtectHome hides ~/.cache.',
    'CacheDirectory=mesh-controller',
    'CacheDirectoryMode=0700',
    'UMask=0077',
    '# No LimitNOFILE=: Node raises its soft limit to the hard one (524288 under systemd), room',
    '# for a WebSocket per node.',
    ...(caps
      ? [
          `# CAP_NET_BIND_SERVICE only because it binds port${opts.privilegedPorts.length > 1 ? 's' : ''} ${opts.privilegedPorts.join(', ')} (below 1024).`,
          'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
          'AmbientCapabilities=CAP_NET_BIND_SERVICE',
        ]
      : ['# No capabilities: every port it binds is 1024 or above.', 'CapabilityBoundingSet=']),
    'NoNewPrivileges=yes',
    'PrivateDevices=yes',
    '# inet for its listeners; unix and netlink for Node itself (interface list, DNS).',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    ...sandbox(opts.entry),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ].join('\n')}\n`
}

/** The value of a marker key in a unit's text, undefined when absent. */
export function unitMarker(text: string | undefined, key: string): string | undefined {
  if (text === undefined) return undefined
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(text)
  return m?.[1]?.trim()
}
