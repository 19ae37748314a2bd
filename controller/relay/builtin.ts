/**
 * The controller's own relay, and what makes the other relays part of it: the registry of
 * relays that heartbeat (stand-alone ones are listed in full netmaps' nat.relays after the
 * built-in one) and the mesh links the built-in relay holds (controller/relay/mesh.ts).
 *
 * Replicas: each replica's built-in relay, when it has a URL (--relay-url), is registered in the
 * relays table like a relay that beats, and accepts mesh links on RELAY_MESH_WS_PATH. Links:
 * the built-in relay dials every stand-alone relay (as before) and, of two built-in relays, the
 * one whose URL sorts first dials the other; a built-in relay without a URL dials every built-in
 * relay that has one. Every link presents the deployment's one mesh token (a settings row), so
 * nodes homed on different replicas' built-in relays reach each other through the relay path.
 */
import {every, type Clock} from '../../shared/clock.js'
import type {NatServices} from '../../shared/protocol/netmap.js'
import {RELAY_VISIBILITY_LIMITS, type RelayVisibility} from '../../shared/relay/control.js'
import {netPolicy, relayVisibilityOf} from '../api/netmap-classes.js'
import type {ChangeFeed} from '../change-feed.js'
import type {Writes} from '../domain/writes.js'
import type {NetmapSource} from '../netmap-source.js'
import type {NodeChange, RelayRecord, Store} from '../store/store.js'
import {RelayMesh} from './mesh.js'
import {importRelayKeyFile, RelayRegistry, type OwnRelay} from './registry.js'
import {RelayServer, type RelayIdentity, type RelayLog, type RelayMetrics, type Subscribe} from './server.js'

export interface BuiltInRelayOptions {
  readonly dataDir: string
  readonly clock: Clock
  readonly store: Pick<Store, 'relayKeyByHash' | 'liveRelays'>
  readonly writes: Pick<
    Writes,
    'relayHeartbeat' | 'sweepRelays' | 'leaveRelays' | 'relayMeshSecret' | 'importRelayKeys'
  >
  /** The node a credential belongs to, active or not; undefined when the credential is not valid. */
  readonly authenticate: (
    credential: string,
  ) => Promise<{nodeId: string; networkId: string; active: boolean} | undefined>
  /** Nodes that stopped being active. */
  readonly removals: Subscribe<RelayIdentity>
  readonly metrics: RelayMetrics
  readonly log: RelayLog & {info?(obj: object, msg: string): void}
  /** Its `relays` is replaced (a new array) whenever the live relays change. */
  readonly nat: NatServices
  readonly heartbeatMs?: number | undefined
  /** This replica's built-in relay as other relays dial it (--relay-url); none: not registered. */
  readonly own?: OwnRelay | undefined
  /** Whether the ACL policy lets two nodes of a network see each other (RelayServerOptions.allowed). */
  readonly allowed?: ((networkId: string, srcNodeId: string, dstNodeId: string) => boolean) | undefined
  /**
   * Whether a node is an active node of a network that has no relay socket yet but will connect
   * (RelayServerOptions.expected): packets for it are held briefly instead of dropped.
   */
  readonly expected?: ((networkId: string, nodeId: string) => boolean) | undefined
  /** Where stand-alone relays' visibility answers come from, and the changes that make them stale. */
  readonly visibility?:
    | {
        readonly source: Pick<NetmapSource, 'netmapSnapshot'>
        readonly feed: Pick<ChangeFeed, 'onNodeChange' | 'onPolicyChange'>
      }
    | undefined
}

/** What a stand-alone relay is told about `networkId` (RELAY_API.visibility), from one store read. */
export async function readRelayVisibility(
  source: Pick<NetmapSource, 'netmapSnapshot'>,
  networkId: string,
): Promise<RelayVisibility> {
  const snap = await source.netmapSnapshot(networkId)
  if (!snap) return {mode: 'unknown', networkId, tenantId: null}
  const tenantId = snap.network.tenantId
  const p = netPolicy(snap.policy, snap.owners, snap.ownerGroups)
  if (p.open) return {mode: 'open', networkId, tenantId}
  const v = relayVisibilityOf(p, snap.nodes, RELAY_VISIBILITY_LIMITS)
  return v ? {mode: 'policy', networkId, tenantId, ...v} : {mode: 'unknown', networkId, tenantId}
}

/** Whether a node change may move a node into another class, or in or out of the active ones. */
export function classMayMove(c: NodeChange): boolean {
  const a = c.before
  const b = c.node
  if (!a || !b) return true
  return a.status !== b.status || a.ownerId !== b.ownerId || a.tags.join('\n') !== b.tags.join('\n')
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

/** Which relays the built-in relay at `own` dials (see the module comment). */
export function meshDialTargets(relays: readonly RelayRecord[], own: string | undefined): {url: string}[] {
  return relays
    .filter((r) =>
      r.kind === 'standalone' ? r.url !== own : own === undefined ? true : r.url !== own && own < r.url,
    )
    .map((r) => ({url: r.url}))
}

export async function startBuiltInRelay(opts: BuiltInRelayOptions): Promise<BuiltInRelay> {
  const own = opts.nat.relays ?? []
  const changed: (() => void)[] = []
  const imported = await importRelayKeyFile(opts.dataDir, opts.writes, opts.clock)
  if (imported.length > 0)
    opts.log.info?.({imported}, 'imported relay keys from relay-keys.json into the database')
  const ownUrl = opts.own?.url
  const registry: RelayRegistry = new RelayRegistry({
    store: opts.store,
    writes: opts.writes,
    clock: opts.clock,
    authenticateNode: opts.authenticate,
    heartbeatMs: opts.heartbeatMs,
    own: opts.own,
    log: opts.log,
    visibility: opts.visibility && ((networkId) => readRelayVisibility(opts.visibility!.source, networkId)),
    onChange: (all) => {
      const before = JSON.stringify(opts.nat.relays)
      const next = [...own, ...registry.live()].slice(0, 16)
      if (JSON.stringify(next) !== before) {
        opts.nat.relays = next
        for (const fn of changed) fn()
      }
      mesh.setPeers(meshDialTargets(all, ownUrl), registry.meshToken)
    },
  })
  const mesh = new RelayMesh({selfUrl: undefined, acceptTokens: () => [registry.meshToken], log: opts.log})
  const offRemovals = opts.removals((r) => registry.nodeGone(r))
  const offPolicies =
    opts.visibility?.feed.onPolicyChange((t) => registry.policyChanged(t)) ?? (() => undefined)
  const offNodes =
    opts.visibility?.feed.onNodeChange((c) => {
      if (classMayMove(c)) registry.networkChanged(c.networkId)
    }) ?? (() => undefined)
  const relay = new RelayServer({
    authenticate: async (credential) => {
      const n = await opts.authenticate(credential)
      return n?.active ? {nodeId: n.nodeId, networkId: n.networkId} : undefined
    },
    removals: opts.removals,
    forward: mesh.forward,
    ...(opts.allowed ? {allowed: opts.allowed} : {}),
    ...(opts.expected ? {expected: opts.expected} : {}),
    metrics: opts.metrics,
    log: opts.log,
    clock: opts.clock,
  })
  mesh.attach(relay)
  try {
    await registry.start()
  } catch (err) {
    offRemovals()
    offPolicies()
    offNodes()
    await registry.close()
    await mesh.close()
    await relay.close()
    throw err
  }
  // Links that dropped are dialed again at the next beat.
  const stopRedial = every(opts.clock, registry.heartbeatMs, () =>
    mesh.setPeers(meshDialTargets(registry.relays(), ownUrl), registry.meshToken),
  )
  return {
    relay,
    registry,
    mesh,
    onRelaysChanged: (fn) => void changed.push(fn),
    close: async () => {
      stopRedial()
      offRemovals()
      offPolicies()
      offNodes()
      await registry.close()
      await mesh.close()
    },
  }
}
