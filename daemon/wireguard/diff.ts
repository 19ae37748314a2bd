/**
 * The pure heart of the driver: what must change to turn the current interface into the desired
 * one. Only what differs is touched, so a netmap delta for one peer costs one `wg set` call and
 * never disturbs the sessions of the others.
 */
import type {InterfaceConfig, InterfaceState, PeerConfig, PeerState} from './driver.js'

export interface PeerChange {
  readonly publicKey: string
  /** Only the fields that must change; absent means keep. */
  readonly allowedIps?: readonly string[]
  readonly endpoint?: string
  readonly persistentKeepalive?: number
}

export interface InterfaceDiff {
  readonly privateKey: boolean
  readonly listenPort: boolean
  /** Addresses to add and to delete on the link. */
  readonly addAddresses: readonly string[]
  readonly delAddresses: readonly string[]
  readonly mtu: boolean
  readonly up: boolean
  readonly add: readonly PeerConfig[]
  readonly update: readonly PeerChange[]
  /** Public keys. */
  readonly remove: readonly string[]
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',')

function peerChange(cur: PeerState, want: PeerConfig): PeerChange | undefined {
  let allowedIps: readonly string[] | undefined
  let endpoint: string | undefined
  let persistentKeepalive: number | undefined
  if (!sameSet(cur.allowedIps, want.allowedIps)) allowedIps = want.allowedIps
  // Which endpoint a peer should have is the path's decision (daemon/nat/path.ts), which adopts
  // wherever WireGuard roamed; the diff only applies it.
  if (want.endpoint !== undefined && cur.endpoint !== want.endpoint) endpoint = want.endpoint
  if ((want.persistentKeepalive ?? 0) !== (cur.persistentKeepalive ?? 0))
    persistentKeepalive = want.persistentKeepalive ?? 0
  if (allowedIps === undefined && endpoint === undefined && persistentKeepalive === undefined)
    return undefined
  return {
    publicKey: want.publicKey,
    ...(allowedIps !== undefined && {allowedIps}),
    ...(endpoint !== undefined && {endpoint}),
    ...(persistentKeepalive !== undefined && {persistentKeepalive}),
  }
}

/** `current` undefined means the interface does not exist: everything is added. */
export function diffInterface(current: InterfaceState | undefined, desired: InterfaceConfig): InterfaceDiff {
  const curPeers = new Map((current?.peers ?? []).map((p) => [p.publicKey, p]))
  const wantKeys = new Set(desired.peers.map((p) => p.publicKey))
  const add: PeerConfig[] = []
  const update: PeerChange[] = []
  for (const want of desired.peers) {
    const cur = curPeers.get(want.publicKey)
    if (!cur) add.push(want)
    else {
      const change = peerChange(cur, want)
      if (change) update.push(change)
    }
  }
  const curAddrs = current?.addresses ?? []
  return {
    privateKey: current?.privateKey !== desired.privateKey,
    listenPort: current?.listenPort !== desired.listenPort,
    addAddresses: curAddrs.includes(desired.address) ? [] : [desired.address],
    delAddresses: curAddrs.filter((a) => a !== desired.address),
    mtu: current?.mtu !== desired.mtu,
    up: current?.up !== true,
    add,
    update,
    remove: [...curPeers.keys()].filter((k) => !wantKeys.has(k)),
  }
}

export const isEmptyDiff = (d: InterfaceDiff): boolean =>
  !d.privateKey &&
  !d.listenPort &&
  !d.mtu &&
  !d.up &&
  d.addAddresses.length === 0 &&
  d.delAddresses.length === 0 &&
  d.add.length === 0 &&
  d.update.length === 0 &&
  d.remove.length === 0
