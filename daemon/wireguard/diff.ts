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
  const recreate: string[] = []
  for (const want of desired.peers) {
    const cur = curPeers.get(want.publicKey)
    if (!cur) add.push(want)
    else if (spentHandshake(cur, want)) {
      recreate.push(want.publicKey)
      add.push(want)
    } else {
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
    remove: [...[...curPeers.keys()].filter((k) => !wantKeys.has(k)), ...recreate],
  }
}

/**
 * A peer that never completed a handshake and is moved to another endpoint, or given its first
 * one, is removed and added again (it has no session to lose). WireGuard sends a handshake
 * initiation at most once per 5 s (REKEY_TIMEOUT) per peer, and the one a new peer sent at once
 * (persistent keepalive) toward an endpoint that does not answer, or toward none at all, spends
 * that slot: a new endpoint alone does not make WireGuard send, so the peer would stay silent
 * toward it (the relay, say) for up to 5 s. A re-created peer with a keepalive sends an
 * initiation at once. Removes are applied before adds, so the peer comes back in the same apply.
 */
function spentHandshake(cur: PeerState, want: PeerConfig): boolean {
  return (
    cur.lastHandshakeMs === 0 &&
    want.endpoint !== undefined &&
    cur.endpoint !== want.endpoint &&
    (want.persistentKeepalive ?? 0) > 0
  )
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
