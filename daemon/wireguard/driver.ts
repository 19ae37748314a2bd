/**
 * The WireGuard driver: makes one interface match a desired config. Implementations: kernel
 * (ip/wg via execa), userspace (supervised wireguard-go, configured over its UAPI socket), fake
 * (in memory, for tests). Semantics are REPLACE: peers that `desired` does not list are removed.
 */
import type {BackendKind} from '../../shared/protocol/local-api.js'

export interface PeerConfig {
  readonly publicKey: string
  /** CIDRs; for mesh peers one address/32. */
  readonly allowedIps: readonly string[]
  /** host:port to send to; undefined leaves WireGuard's endpoint as it is (or learnt from the peer). */
  readonly endpoint?: string | undefined
  readonly persistentKeepalive?: number
}

/** One peer of setPeers(): its key and only what should change. */
export interface PeerEdit {
  readonly publicKey: string
  readonly remove?: boolean
  readonly endpoint?: string
  readonly allowedIps?: readonly string[]
  readonly persistentKeepalive?: number
}

export interface InterfaceConfig {
  readonly name: string
  /** base64; never logged. */
  readonly privateKey: string
  readonly listenPort: number
  /** The node's address with the network's prefix length (e.g. 10.20.0.5/24): the route to the
   *  network CIDR comes with it. */
  readonly address: string
  readonly mtu: number
  readonly peers: readonly PeerConfig[]
}

export interface PeerState extends PeerConfig {
  /** The endpoint WireGuard uses now, null when unknown. */
  readonly endpoint?: string
  /** Milliseconds since the epoch; 0 = never. */
  readonly lastHandshakeMs: number
  readonly rxBytes: number
  readonly txBytes: number
}

/** What the interface is now: config and live stats together, as `wg show dump` gives them. */
export interface InterfaceState {
  readonly name: string
  readonly publicKey: string
  /** Present only so apply() can tell whether the key must change; never logged. */
  readonly privateKey: string
  readonly listenPort: number
  readonly addresses: readonly string[]
  readonly mtu: number
  readonly up: boolean
  readonly peers: readonly PeerState[]
}

/**
 * The WireGuard part of an interface (no link: addresses, MTU, up), as `wg show IF dump` and a
 * UAPI `get` both give it. Keys base64; `privateKey` is '' or '(none)' when none is set.
 */
export interface WgDevice {
  readonly privateKey: string
  readonly publicKey: string
  readonly listenPort: number
  readonly peers: readonly PeerState[]
}

/**
 * One WireGuard transaction, whichever way it travels (`wg set` or a UAPI `set`): the device's
 * settings, then each peer in order. Keys base64.
 */
export interface WgSet {
  /** Never logged and never in an error message. */
  readonly privateKey?: string
  readonly listenPort?: number
  readonly peers?: readonly PeerEdit[]
}

/** A peer WireGuard refused to take, and why (the tool's own message). */
export interface PeerFailure {
  readonly publicKey: string
  readonly error: string
}

export interface ApplyResult {
  /** False is the normal no-op: the interface already matched. */
  readonly changed: boolean
  readonly created: boolean
  /** Peers added and changed (those in `failed` not counted), and removed. */
  readonly added: number
  readonly updated: number
  readonly removed: number
  /**
   * Peers that could not be set while the rest of the config applied (one peer never holds back
   * the others). Absent or empty when all went through; the daemon retries these with backoff.
   */
  readonly failed?: readonly PeerFailure[]
}

export interface WireGuardDriver {
  readonly kind: BackendKind
  /** Converges the interface to `desired`, creating it when missing. */
  apply(desired: InterfaceConfig): Promise<ApplyResult>
  /**
   * Creates the interface when it is missing: the link and its WireGuard device, without key,
   * address or peers, and down, so it carries nothing until apply() configures it. Lets the
   * daemon start WireGuard (a wireguard-go takes 150-300 ms to come up) while it still waits for
   * the controller. True when this call made it; false when a WireGuard interface of that name
   * was there already. INTERFACE_NAME_TAKEN when a link of another kind has the name.
   */
  create(name: string): Promise<boolean>
  /** Undefined when the interface does not exist. */
  read(name: string): Promise<InterfaceState | undefined>
  /**
   * Changes single peers at once, outside apply() (an upgrade's switch cannot wait for a whole
   * apply): each peer is added when missing, otherwise only the fields given change. A peer with
   * `remove` is removed. The caller keeps its desired config in step, or the next apply undoes this.
   */
  setPeers(name: string, peers: readonly PeerEdit[]): Promise<void>
  /** Removes the interface; a missing one is not an error. */
  remove(name: string): Promise<void>
  /** Whether an interface (of any kind) with this name exists in this network namespace. */
  linkExists(name: string): Promise<boolean>
  /**
   * Called when an interface disappears behind the driver's back (wireguard-go died). The
   * daemon re-applies the network's config, which recreates it.
   */
  onLost?: (name: string) => void
  /** Stops supervising; interfaces stay up (the daemon removes them first when told to). */
  close(): Promise<void>
}

/** Persistent keepalive for every mesh peer: beats the 30 s UDP mapping timeout of NATs. */
export const PERSISTENT_KEEPALIVE = 25
export const DEFAULT_MTU = 1420
