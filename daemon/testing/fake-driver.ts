/**
 * An in-memory WireGuardDriver for tests without root: it keeps interface state the way a real
 * driver would, applies changes through the same pure diff, and records every call so tests can
 * check that only what changed was touched.
 */
import {diffInterface, isEmptyDiff} from '../wireguard/diff.js'
import {MeshError} from '../../shared/errors.js'
import {DEFAULT_MTU} from '../wireguard/driver.js'
import type {
  ApplyResult,
  InterfaceConfig,
  InterfaceState,
  PeerEdit,
  PeerState,
  WireGuardDriver,
} from '../wireguard/driver.js'
import {publicKeyOf} from '../keys.js'

export interface FakeCall {
  op: 'create' | 'apply' | 'remove' | 'setPeers'
  name: string
  added?: string[]
  updated?: string[]
  removed?: string[]
  /** Endpoints set on updated peers, by public key. */
  endpoints?: Record<string, string>
}

export class FakeDriver implements WireGuardDriver {
  readonly kind = 'fake' as const
  onLost?: (name: string) => void
  readonly interfaces = new Map<string, InterfaceState>()
  readonly calls: FakeCall[] = []
  /** Links that exist but are not ours (to test INTERFACE_NAME_TAKEN). */
  readonly foreignLinks = new Set<string>()
  /** Public keys this "WireGuard" refuses to add or change, as wg refuses a bad peer. */
  readonly refuse = new Set<string>()
  /**
   * Runs inside create() before the interface exists (tests of the start-up order): hold it
   * back with a promise, or throw to fail it as a wireguard-go that does not start.
   */
  onCreate?: (name: string) => Promise<void>

  async create(name: string): Promise<boolean> {
    if (this.interfaces.has(name)) return false
    if (this.foreignLinks.has(name))
      throw new MeshError('INTERFACE_NAME_TAKEN', {
        message: `interface ${name} exists and is not a WireGuard interface`,
      })
    await this.onCreate?.(name)
    if (this.interfaces.has(name)) return false
    this.calls.push({op: 'create', name})
    // As a new WireGuard link is: no key, no port, no address, down.
    this.interfaces.set(name, {
      name,
      privateKey: '',
      publicKey: '',
      listenPort: 0,
      addresses: [],
      mtu: DEFAULT_MTU,
      up: false,
      peers: [],
    })
    return true
  }

  async apply(desired: InterfaceConfig): Promise<ApplyResult> {
    const current = this.interfaces.get(desired.name)
    const created = current === undefined
    if (created) this.calls.push({op: 'create', name: desired.name})
    const d = diffInterface(current, desired)
    if (isEmptyDiff(d)) return {changed: false, created, added: 0, updated: 0, removed: 0}
    const old = new Map((current?.peers ?? []).map((p) => [p.publicKey, p]))
    const failed = [...d.add, ...d.update]
      .filter((p) => this.refuse.has(p.publicKey))
      .map((p) => ({publicKey: p.publicKey, error: 'wg: refused by the fake driver'}))
    const refused = new Set(failed.map((f) => f.publicKey))
    const removed = new Set(d.remove)
    const peers: PeerState[] = desired.peers.flatMap((p): PeerState[] => {
      // A peer the diff re-creates (removed and added) starts afresh.
      const prev = removed.has(p.publicKey) ? undefined : old.get(p.publicKey)
      // A refused peer stays as it was: absent when new, unchanged when it existed.
      if (refused.has(p.publicKey)) return prev ? [prev] : []
      const change = d.update.find((u) => u.publicKey === p.publicKey)
      const state: PeerState = {
        publicKey: p.publicKey,
        allowedIps: [...p.allowedIps],
        ...((change?.endpoint ?? prev?.endpoint ?? p.endpoint) !== undefined && {
          endpoint: change?.endpoint ?? prev?.endpoint ?? p.endpoint,
        }),
        ...(p.persistentKeepalive !== undefined && {persistentKeepalive: p.persistentKeepalive}),
        lastHandshakeMs: prev?.lastHandshakeMs ?? 0,
        rxBytes: prev?.rxBytes ?? 0,
        txBytes: prev?.txBytes ?? 0,
      }
      return [state]
    })
    this.interfaces.set(desired.name, {
      name: desired.name,
      privateKey: desired.privateKey,
      publicKey: publicKeyOf(desired.privateKey),
      listenPort: desired.listenPort,
      addresses: [desired.address],
      mtu: desired.mtu,
      up: true,
      peers,
    })
    this.calls.push({
      op: 'apply',
      name: desired.name,
      added: d.add.map((p) => p.publicKey).filter((k) => !refused.has(k)),
      updated: d.update.map((p) => p.publicKey).filter((k) => !refused.has(k)),
      removed: [...d.remove],
      ...(d.update.some((u) => u.endpoint !== undefined) && {
        endpoints: Object.fromEntries(
          d.update.flatMap((u) => (u.endpoint === undefined ? [] : [[u.publicKey, u.endpoint]])),
        ),
      }),
    })
    return {
      changed: true,
      created,
      added: d.add.filter((p) => !refused.has(p.publicKey)).length,
      updated: d.update.filter((p) => !refused.has(p.publicKey)).length,
      removed: d.remove.length,
      failed,
    }
  }

  async setPeers(name: string, edits: readonly PeerEdit[]): Promise<void> {
    const iface = this.interfaces.get(name)
    if (!iface) throw new Error(`wg: no interface ${name}`)
    const peers = new Map(iface.peers.map((p) => [p.publicKey, p]))
    for (const e of edits) {
      if (e.remove) {
        peers.delete(e.publicKey)
        continue
      }
      const prev = peers.get(e.publicKey)
      peers.set(e.publicKey, {
        publicKey: e.publicKey,
        allowedIps: [...(e.allowedIps ?? prev?.allowedIps ?? [])],
        ...((e.endpoint ?? prev?.endpoint) !== undefined && {endpoint: e.endpoint ?? prev?.endpoint}),
        ...((e.persistentKeepalive ?? prev?.persistentKeepalive) !== undefined && {
          persistentKeepalive: e.persistentKeepalive ?? prev?.persistentKeepalive,
        }),
        lastHandshakeMs: prev?.lastHandshakeMs ?? 0,
        rxBytes: prev?.rxBytes ?? 0,
        txBytes: prev?.txBytes ?? 0,
      })
    }
    this.interfaces.set(name, {...iface, peers: [...peers.values()]})
    this.calls.push({
      op: 'setPeers',
      name,
      added: edits.filter((e) => !e.remove).map((e) => e.publicKey),
      removed: edits.filter((e) => e.remove).map((e) => e.publicKey),
    })
  }

  async read(name: string): Promise<InterfaceState | undefined> {
    return this.interfaces.get(name)
  }

  async remove(name: string): Promise<void> {
    if (this.interfaces.delete(name)) this.calls.push({op: 'remove', name})
  }

  async linkExists(name: string): Promise<boolean> {
    return this.interfaces.has(name) || this.foreignLinks.has(name)
  }

  /** Simulates wireguard-go dying: the interface vanishes and the daemon is told. */
  crash(name: string): void {
    this.interfaces.delete(name)
    this.onLost?.(name)
  }

  async close(): Promise<void> {}
}
