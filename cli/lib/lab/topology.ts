/**
 * The lab's underlay: one "switch" namespace holding a bridge, and host namespaces each plugged
 * into it by a veth pair created directly inside the namespaces. Nothing is ever created in, or
 * addressed in, the root namespace; lab addresses are TEST-NET-2 (198.51.100.0/24).
 */
import fs from 'node:fs'
import {run, runOk, runSync} from './sh.js'

export const UNDERLAY_PREFIX_LEN = 24
export const CONTROLLER_UNDERLAY = '198.51.100.1'
/** The controller namespace's second address (STUN RFC 5780 behaviour tests). */
export const CONTROLLER_ALTERNATE = '198.51.100.2'
/** A host on the internet that is neither controller nor node (NAT labs: unsolicited traffic). */
export const STRANGER_UNDERLAY = '198.51.100.3'
/** node1 is .11, node2 .12, ... (a NAT node's router WAN address takes its slot). */
export const nodeUnderlay = (index: number): string => `198.51.100.${10 + index}`
export const MAX_NODES = 200

/** Creates the switch namespace with its bridge `br0`. */
export async function createSwitch(ns: string): Promise<void> {
  await runOk('ip', ['netns', 'add', ns])
  await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  await runOk('ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge'])
  await runOk('ip', ['-n', ns, 'link', 'set', 'br0', 'up'])
}

/**
 * Creates host namespace `ns` and plugs it into the switch: `eth0` inside the host with
 * `address`/24, its peer `port` on the bridge. `port` must be unique in the switch namespace.
 */
export async function attachHost(opts: {
  switchNs: string
  ns: string
  port: string
  address: string
}): Promise<void> {
  const {switchNs, ns, port, address} = opts
  if (port.length > 15) throw new Error(`interface name ${port} is longer than 15 characters`)
  await runOk('ip', ['netns', 'add', ns])
  await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  await runOk('ip', [
    '-n',
    ns,
    'link',
    'add',
    'eth0',
    'type',
    'veth',
    'peer',
    'name',
    port,
    'netns',
    switchNs,
  ])
  await runOk('ip', ['-n', switchNs, 'link', 'set', port, 'master', 'br0', 'up'])
  await runOk('ip', ['-n', ns, 'addr', 'add', `${address}/${UNDERLAY_PREFIX_LEN}`, 'dev', 'eth0'])
  await runOk('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
}

/** Adds a further address to a host's eth0. */
export async function addAddress(ns: string, address: string): Promise<void> {
  await runOk('ip', ['-n', ns, 'addr', 'add', `${address}/${UNDERLAY_PREFIX_LEN}`, 'dev', 'eth0'])
}

/**
 * Turns `routerNs` (already on the switch) into the gateway of a private LAN: creates host
 * namespace `ns` with `eth0` = `host`/24 whose default route is `gateway` on the router's `lanIf`.
 */
export async function attachBehindRouter(opts: {
  routerNs: string
  ns: string
  lanIf: string
  cidr: string
  gateway: string
  host: string
}): Promise<void> {
  const {routerNs, ns, lanIf, gateway, host} = opts
  const len = opts.cidr.split('/')[1]
  await runOk('ip', ['netns', 'add', ns])
  await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  await runOk('ip', [
    '-n',
    routerNs,
    'link',
    'add',
    lanIf,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    ns,
  ])
  await runOk('ip', ['-n', routerNs, 'addr', 'add', `${gateway}/${len}`, 'dev', lanIf])
  await runOk('ip', ['-n', routerNs, 'link', 'set', lanIf, 'up'])
  await runOk('ip', ['-n', ns, 'addr', 'add', `${host}/${len}`, 'dev', 'eth0'])
  await runOk('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
  await runOk('ip', ['-n', ns, 'route', 'add', 'default', 'via', gateway])
  await runOk('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], {ns: routerNs})
}

export const namespaceExists = (ns: string): boolean => fs.existsSync(`/run/netns/${ns}`)

/** Pids of every process inside a namespace (all started by the lab: the namespace is its own). */
export function namespacePids(ns: string): number[] {
  const r = runSync('ip', ['netns', 'pids', ns], {timeoutMs: 5000})
  if (r.code !== 0) return []
  return r.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid)
}

/**
 * Deletes a namespace for good: first kills what still runs in it (wireguard-go daemonizes, and
 * a namespace lives on while any process is inside), then removes it, which removes its veth
 * ends and tun devices with it.
 */
export function deleteNamespaceSync(ns: string): void {
  if (!namespaceExists(ns)) return
  for (const pid of namespacePids(ns)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  runSync('ip', ['netns', 'del', ns], {timeoutMs: 5000})
}

/** Round-trip check of the underlay, used by the lab's self-test. */
export async function underlayPing(fromNs: string, address: string): Promise<boolean> {
  return (await run('ping', ['-c', '1', '-W', '1', address], {ns: fromNs, timeoutMs: 3000})).code === 0
}
