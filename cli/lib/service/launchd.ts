/**
 * launchd property lists for meshd and the controller on macOS, as text: the launchd.plist(5)
 * counterparts of the systemd units (KeepAlive on failure = Restart=on-failure,
 * AbandonProcessGroup = KillMode=process).
 */
import {
  assertPrintable,
  CONTROLLER_DATA_DIR,
  CONTROLLER_LABEL,
  DAEMON_LABEL,
  DAEMON_SOCKET,
  DAEMON_STATE_DIR,
  type ControllerServiceOptions,
  type DaemonServiceOptions,
} from './spec.js'

/** System-wide daemons: started at boot, as root unless UserName says otherwise. */
export const LAUNCHD_DIR = '/Library/LaunchDaemons'
/**
 * The user the controller runs as on macOS. mesh does not create accounts there (that takes a
 * free UID from dscl and differs between releases), so it uses the system's unprivileged
 * `nobody`, which owns nothing but the data dir install hands it.
 */
export const DARWIN_CONTROLLER_USER = 'nobody'

export const plistPath = (label: string): string => `${LAUNCHD_DIR}/${label}.plist`

const xml = (text: string): string => {
  assertPrintable(text)
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
}

type PlistValue = string | number | boolean | readonly string[] | {readonly [k: string]: PlistValue}

function render(value: PlistValue, indent: string): string {
  if (typeof value === 'string') return `${indent}<string>${xml(value)}</string>`
  if (typeof value === 'number') return `${indent}<integer>${value}</integer>`
  if (typeof value === 'boolean') return `${indent}<${value}/>`
  if (Array.isArray(value))
    return [
      `${indent}<array>`,
      ...value.map((v: string) => render(v, `${indent}  `)),
      `${indent}</array>`,
    ].join('\n')
  return [
    `${indent}<dict>`,
    ...Object.entries(value).flatMap(([k, v]) => [
      `${indent}  <key>${xml(k)}</key>`,
      render(v, `${indent}  `),
    ]),
    `${indent}</dict>`,
  ].join('\n')
}

function plist(root: {readonly [k: string]: PlistValue}): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    render(root, ''),
    '</plist>',
    '',
  ].join('\n')
}

export function daemonPlist(opts: DaemonServiceOptions): string {
  return plist({
    Label: DAEMON_LABEL,
    ProgramArguments: [
      ...opts.entry,
      'daemon',
      'run',
      '--socket',
      DAEMON_SOCKET,
      '--state-dir',
      DAEMON_STATE_DIR,
      ...(opts.wireguard === undefined ? [] : ['--wireguard', opts.wireguard]),
      ...(opts.logLevel === undefined ? [] : ['--log-level', opts.logLevel]),
    ],
    RunAtLoad: true,
    // Restart when it exits with an error or a signal, not after a clean stop.
    KeepAlive: {SuccessfulExit: false},
    ThrottleInterval: 5,
    // launchd kills the job's process group when it exits; wireguard-go must outlive meshd.
    AbandonProcessGroup: true,
    StandardOutPath: '/var/log/meshd.log',
    StandardErrorPath: '/var/log/meshd.log',
  })
}

export function controllerPlist(opts: ControllerServiceOptions): string {
  return plist({
    Label: CONTROLLER_LABEL,
    ProgramArguments: [
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
    ],
    UserName: DARWIN_CONTROLLER_USER,
    GroupName: DARWIN_CONTROLLER_USER,
    Umask: 0o077,
    RunAtLoad: true,
    KeepAlive: {SuccessfulExit: false},
    ThrottleInterval: 5,
    StandardOutPath: '/var/log/mesh-controller.log',
    StandardErrorPath: '/var/log/mesh-controller.log',
  })
}
