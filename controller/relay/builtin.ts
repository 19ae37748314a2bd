/**
 * The controller's own relay, and what makes stand-alone relays part of it: the registry of
 * relays that heartbeat (listed in full netmaps' nat.relays after the built-in one) and the mesh
 * links the built-in relay dials to each of them (controller/relay/mesh.ts).
 */
import {every, type Clock} from '../../shared/clock.js'
import type {NatServices} from '../../shared/protocol/netmap.js'
import {RelayMesh} from './mesh.js'
import {RelayKeyFile, RelayRegistry} from './registry.js'
import {RelayServer, type RelayIdentity, type RelayLog, type RelayMetrics, type Subscribe} from './server.js'

export interface BuiltInRelayOptions {
  readonly dataDir: string
  readonly clock: Clock
  /** The node a credential belongs to, active or not; undefined when the credential is not valid. */
  readonly authenticate: (
    credential: string,
  ) => Promise<{nodeId: string; networkId: string; active: boolean} | undefined>
  /** Nodes that stopped being active. */
  readonly removals: Subscribe<RelayIdentity>
  readonly metrics: RelayMetrics
  readonly log: RelayLog
  /** Its `relays` is replaced (a new array) whenever the live relays change. */
  readonly nat: NatServices
  readonly heartbeatMs?: number | undefined
}

export interface BuiltInRelay {
  readonly relay: RelayServer
  readonly registry: RelayRegistry
  readonly mesh: RelayMesh
  /** Calls `fn` after the live relays (and so nat.relays) changed. */
  onRelaysChanged(fn: () => void): void
  /** The relay itself is closed by the HTTP server; this closes the rest. */
  close(): Promise<void>
}

export function startBuiltInRelay(opts: BuiltInRelayOptions): BuiltInRelay {
  const own = opts.nat.relays ?? []
  const changed: (() => void)[] = []
  const registry = new RelayRegistry({
    keys: new RelayKeyFile(opts.dataDir),
    clock: opts.clock,
    authenticateNode: opts.authenticate,
    heartbeatMs: opts.heartbeatMs,
    onChange: (live) => {
      opts.nat.relays = [...own, ...live].slice(0, 16)
      mesh.setPeers(live as {url: string}[], registry.meshToken)
      for (const fn of changed) fn()
    },
  })
  const mesh = new RelayMesh({selfUrl: undefined, acceptTokens: () => [registry.meshToken], log: opts.log})
  const offRemovals = opts.removals((r) => registry.nodeGone(r))
  const relay = new RelayServer({
    authenticate: async (credential) => {
      const n = await opts.authenticate(credential)
      return n?.active ? {nodeId: n.nodeId, networkId: n.networkId} : undefined
    },
    removals: opts.removals,
    forward: mesh.forward,
    metrics: opts.metrics,
    log: opts.log,
    now: () => opts.clock.now(),
  })
  mesh.attach(relay)
  // Links that dropped are dialed again at the next beat.
  const stopRedial = every(opts.clock, registry.heartbeatMs, () =>
    mesh.setPeers(registry.live() as {url: string}[], registry.meshToken),
  )
  return {
    relay,
    registry,
    mesh,
    onRelaysChanged: (fn) => void changed.push(fn),
    close: async () => {
      stopRedial()
      offRemovals()
      registry.close()
      await mesh.close()
    },
  }
}
