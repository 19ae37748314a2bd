/**
 * The node agent: the desired state of every joined network (record + last netmap), one netmap
 * sync per network, and the reconcile step that turns them into WireGuard config through the
 * driver. Everything the socket API does goes through here.
 *
 * Isolation between networks: each network has its own interface, key and listen port, and an
 * interface only ever holds its own network's peers with one /32 each. WireGuard's cryptokey
 * routing drops any packet whose inner source is not the sending peer's /32, so a node of network
 * A cannot inject traffic into network B through a node that is in both, and meshd never enables
 * forwarding. That is why there is no extra nftables or ip rule guard between networks; the
 * nftables table a network gets under an ACL policy (daemon/firewall) enforces what each peer may
 * reach on this node, not isolation.
 */
import {randomInt} from 'node:crypto'
import dgram from 'node:dgram'
import {lookup} from 'node:dns/promises'
import {existsSync} from 'node:fs'
import {isIP} from 'node:net'
import os from 'node:os'
import type {Logger} from 'pino'
import {delay, systemClock, type Clock, type TimerHandle} from '../shared/clock.js'
import {MeshError} from '../shared/errors.js'
import {cidrContains, parseCidr, parseIPv4, type Cidr} from '../shared/net/ipv4.js'
import {NAME_RE} from '../shared/protocol/control-api.js'
import type {
  BackendKind,
  DownResult,
  IpResult,
  JoinRequest,
  LeaveResult,
  NetworkStatus,
  PeerStatus,
  Status,
  UpResult,
  RotateKeyResult,
  PathState,
} from '../shared/protocol/local-api.js'
import type {NetmapFull, Peer, PeerReport, ServerFrame, UdpService} from '../shared/protocol/netmap.js'
import {PROTOCOL_VERSION} from '../shared/protocol/version.js'
import {deregisterNode, registerNode, rotateNodeKey} from './control-client.js'
import type {Node} from '../shared/protocol/control-api.js'
import {localEndpoints} from './endpoints.js'
import {directOutOfReach, localSubnets, orderCandidates} from './nat/candidates.js'
import {PeerPath} from './nat/path.js'
import {NetcheckService} from './nat/netcheck-service.js'
import {
  directImpossible,
  sameNat,
  UNKNOWN_NAT,
  verdictPending,
  type NatBehaviour,
} from '../shared/nat/behaviour.js'
import type {NetReport} from '../shared/nat/net-report.js'
import {PROBE_PORT, Prober, type UpgradeMessage} from './nat/probe.js'
import {DEFAULT_UPGRADE_TUNING, leads, Upgrader, type UpgradeLink, type UpgradePeer} from './nat/upgrade.js'
import {Firewall} from './firewall/firewall.js'
import {RelayClient} from './relay/client.js'
import {initiationWinner} from './relay/initiation-tie-break.js'
import {HomeRelay, type HysteresisOptions} from './relay/home.js'
import {generateKeyPair} from './keys.js'
import {PeerReporter} from './netmap/peer-report.js'
import {backoffDelay, NetmapSync} from './netmap/sync.js'
import type {StateStore, NetworkRecord} from './state-store.js'
import {
  DEFAULT_MTU,
  PERSISTENT_KEEPALIVE,
  type InterfaceConfig,
  type InterfaceState,
  type PeerConfig,
  type PeerEdit,
  type WireGuardDriver,
} from './wireguard/driver.js'
import {InterfaceSampler} from './wireguard/sampler.js'

export interface BackendOptions {
  driver: WireGuardDriver
  store: StateStore
  log: Logger
  interfacePrefix: string
  /** Report interval to the controller; default 10 s. */
  reportIntervalMs?: number
  /** Backoff cap for netmap reconnects; default 10 s. */
  maxReconnectDelayMs?: number
  /** How long `join` waits for the first netmap before answering; default 5 s. */
  joinWaitMs?: number
  /** Delay before the n-th retry (0-based) of a failed apply; default applyRetryDelay. */
  retryDelayMs?: (attempt: number) => number
  /** Time and timers of the daemon's state machines; the real clock by default. */
  clock?: Clock
  /**
   * The background netcheck that tells this node's NAT behaviour (for tests): by network id; by
   * default the STUN part of `mesh netcheck` (daemon/nat/netcheck-service.ts). false: none.
   */
  natCheck?: ((networkId: string) => Promise<NetReport>) | false
  /**
   * Puts each network's inbound rules (the netmap's `inbound`, issue 10) into nftables; by
   * default with the real `nft` (daemon/main.ts gives test daemons one that finds no nft).
   */
  firewall?: Firewall
  /** Home relay choice (tests): how relays are timed, how often, and the hysteresis. */
  homeRelay?: {
    probe?: (base: string) => Promise<number | undefined>
    intervalMs?: number
    hysteresis?: HysteresisOptions
  }
}

/**
 * Retries of a failed apply (or of the peers WireGuard refused) back off with jitter from ~5 s to
 * at most 5 min: a peer that keeps failing costs a few calls an hour, not one every 5 s forever.
 * A new netmap applies at once regardless.
 */
export const applyRetryDelay = (attempt: number, random = Math.random): number =>
  backoffDelay(attempt, 5_000, 5 * 60_000, random)

/**
 * How often peer paths are re-checked while a network has peers (a dead direct path must be back
 * on the relay within a few seconds), and otherwise.
 */
export const PATH_TICK_FAST_MS = 1_000
export const PATH_TICK_SLOW_MS = 5_000
/** While a direct path looks stalled: its fallback should not wait for a whole tick. */
export const PATH_TICK_URGENT_MS = 250
/** Probes sent through the tunnel per path check (candidates being tried, stalled direct paths). */
const MAX_PROBES_PER_TICK = 64
/** Latency probes per path check, and how old a peer's last measurement may get. */
const MAX_LATENCY_PROBES_PER_TICK = 16
export const LATENCY_EVERY_MS = 30_000
/**
 * How long a reconcile that has just opened the relay socket waits for it (it usually opens in
 * one round trip to the controller, which just sent the netmap).
 */
const RELAY_FIRST_OPEN_WAIT_MS = 300
/** Keepalive of the discovery peer: below 5 s, wireguard-go keeps sending initiations. */
export const DISCOVERY_KEEPALIVE = 4

/**
 * How often the background netcheck runs again (it also runs when the controller observes a new
 * public mapping of this node: it may sit behind another NAT now), and how long a failed one
 * waits before the next try.
 */
export const NAT_CHECK_EVERY_MS = 10 * 60_000
const NAT_CHECK_RETRY_MS = 60_000

/** A peer counts as online after a handshake within this long (WireGuard rekeys every 2 min). */
export const ONLINE_WINDOW_MS = 3 * 60_000
const UAPI_DIR = '/var/run/wireguard'
/** An interface lost again within this long counts as the same crash loop. */
const LOSS_WINDOW_MS = 30_000

interface NetRuntime {
  record: NetworkRecord
  privateKey: string
  credential: string
  netmap: NetmapFull | undefined
  sync: NetmapSync | undefined
  /** The report being built and sent: reports of one network run one after the other. */
  reporting: Promise<void>
  /** What this session already told the controller; reports carry only changes. */
  reporter: PeerReporter
  connected: boolean
  /** A netmap frame is being applied: the controller answers, though `connected` (set after the
   *  session's first frame is applied) may not say so yet. */
  applyingFrame: boolean
  lastError: string | null
  /** Serialises applies of this network: frames, up/down and re-creation never interleave. */
  queue: Promise<unknown>
  retryTimer: TimerHandle | undefined
  /** Applies in a row that failed or left peers unset, for the retry backoff. */
  applyFailures: number
  /** The path to each peer (by public key): which endpoint its WireGuard peer gets. */
  paths: Map<string, PeerPath>
  /** The relay of this network (opened once the netmap names one) and each relayed peer's
   *  local endpoint, by peer id. */
  relay: RelayClient | undefined
  /** The relay socket was opened and no reconcile has waited for it yet (see prepareNat). */
  relayFresh: boolean
  /** Which of the netmap's relays the relay socket goes to (daemon/relay/home.ts). */
  home: HomeRelay | undefined
  shims: Map<string, string>
  /** The controller's discovery port as WireGuard should reach it; undefined when not offered. */
  discoveryEndpoint: string | undefined
  /** Answers `mesh ping` probes on this node's mesh address (started once the address is up). */
  prober: Prober | undefined
  /** Relay -> direct upgrades of this network's peers (started with the prober). */
  upgrader: Upgrader | undefined
  /** Throwaway peers an upgrade opened the NAT with, by public key: kept in the desired config
   *  while they live, so an apply in between does not remove them. */
  punch: Map<string, PeerConfig>
  /**
   * This node's NAT behaviour from the background netcheck (undefined before the first one ends),
   * when the last one ended or failed, the observed mapping it ran under, whether one runs, and
   * the value last reported to the controller (undefined: not on this session yet).
   */
  nat: {
    behaviour: NatBehaviour | undefined
    at: number
    observed: string | undefined
    running: boolean
    failed: boolean
    sent: NatBehaviour | undefined
  }
  /**
   * The nftables table of the network's inbound rules (daemon/firewall): why the last apply
   * failed (null when it did not), and the public keys of the peers withheld from WireGuard
   * while it fails (fail closed: the peers that carry `inbound`). Owned by the apply queue.
   */
  firewall: {error: string | null; withheld: ReadonlySet<string>}
  /** Interface losses in a row (each within LOSS_WINDOW_MS of the last), for the rebuild backoff. */
  losses: number
  lastLossAt: number
  firstMap: {promise: Promise<void>; resolve: () => void}
  /**
   * The interface being created ahead of its first apply (join, up: see startInterface);
   * every apply and removal of the interface waits for it. Undefined once it settled.
   */
  starting: Promise<boolean> | undefined
  /** A join's or up's start-up steps, ms after it began, logged once with its first apply. */
  startup: {why: string; at: number; marks: Record<string, number>} | undefined
}

const deferred = (): {promise: Promise<void>; resolve: () => void} => {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return {promise, resolve}
}

/** The machine's hostname as a valid node name. */
export function defaultNodeName(hostname = os.hostname()): string {
  const name = hostname
    .toLowerCase()
    .split('.')[0]!
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '')
  return NAME_RE.test(name) ? name : 'node'
}

/** Whether `address` is a plain IPv4 address inside the network `cidr`. */
export function addressInCidr(address: string, cidr: string): boolean {
  const net = parseCidr(cidr)
  const addr = parseIPv4(address)
  return net !== undefined && addr !== undefined && cidrContains(net, addr)
}

/**
 * The netmap peers that may go on the interface. Each becomes one `address/32` allowed IP, so a
 * peer whose address is not a plain IPv4 inside the network CIDR (it would route foreign
 * traffic into the tunnel), that claims this node's own address or key, or whose address or key an
 * earlier peer already holds (WireGuard would move the /32 to it, or merge the two) is dropped
 * and reported.
 */
export function usablePeers(
  peers: readonly Peer[],
  self: {address: string; publicKey: string; cidr: string},
  onDrop: (peer: Peer, why: string) => void = () => {},
): Peer[] {
  const taken = new Set([self.address])
  const keys = new Set<string>()
  const out: Peer[] = []
  for (const p of peers) {
    if (p.publicKey === self.publicKey) continue // this node itself
    const why = !addressInCidr(p.address, self.cidr)
      ? `address ${p.address} is not inside ${self.cidr}`
      : p.address === self.address
        ? `it claims this node's address ${p.address}`
        : taken.has(p.address)
          ? `another peer already has ${p.address}`
          : keys.has(p.publicKey)
            ? 'another peer already has its public key'
            : undefined
    if (why !== undefined) {
      onDrop(p, why)
      continue
    }
    taken.add(p.address)
    keys.add(p.publicKey)
    out.push(p)
  }
  return out
}

/** A UDP port nobody in this network namespace uses right now. */
async function freeUdpPort(avoid: ReadonlySet<number>): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const sock = dgram.createSocket('udp4')
    const port = await new Promise<number>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, () => resolve(sock.address().port))
    })
    await new Promise<void>((r) => sock.close(() => r()))
    if (!avoid.has(port)) return port
  }
  return 40_000 + randomInt(20_000)
}

/**
 * The endpoint WireGuard uses for a peer, as the path machine may take it: a loopback address that
 * is neither one of this daemon's relay sockets nor a candidate of the peer is a relay socket of
 * an earlier meshd (WireGuard keeps its endpoints across a daemon restart). Its handshake is
 * recent, so it would pass for a live direct path, and the pair would never go back to the relay.
 */
export function liveEndpoint(
  endpoint: string | undefined,
  ownShims: ReadonlySet<string>,
  candidates: readonly string[],
): string | undefined {
  if (endpoint === undefined || ownShims.has(endpoint) || candidates.includes(endpoint)) return endpoint
  return /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):\d+$/.test(endpoint) ? undefined : endpoint
}

export class Backend {
  private readonly nets = new Map<string, NetRuntime>()
  private readonly startedAt = new Date().toISOString()
  private reportTimer: TimerHandle | undefined
  private pathTimer: TimerHandle | undefined
  /** A path check was asked for while one ran: the next follows at once. */
  private pathsSoon = false
  /** The background netcheck (created on first use). */
  private natService: NetcheckService | undefined
  private closed = false
  /** The one reader of every interface: status calls, watchers and reports share its samples. */
  readonly sampler: InterfaceSampler
  /** Who wants to hear that the status may have changed (status watchers). */
  private readonly changeListeners = new Set<() => void>()
  /** Joins run one at a time: two at once could pick the same interface name or port. */
  private joinQueue: Promise<unknown> = Promise.resolve()
  /** Key rotations run one at a time (two at once would race on the stored key). */
  private rotateQueue: Promise<unknown> = Promise.resolve()
  /** Each network's inbound rules in nftables (one table per interface). */
  private readonly firewall: Firewall

  constructor(private readonly opts: BackendOptions) {
    this.firewall = opts.firewall ?? new Firewall()
    this.sampler = new InterfaceSampler({read: (name) => opts.driver.read(name), clock: this.clock})
    this.sampler.on('sample', () => this.changed())
    opts.driver.onLost = (name) => {
      const rt = [...this.nets.values()].find((n) => n.record.interface === name)
      if (!rt || !rt.record.up || this.closed) return
      // The first loss is rebuilt at once; one that keeps dying (a wireguard-go that crashes
      // right after start) is rebuilt after a jittered, capped backoff, not in a tight loop.
      const now = this.clock.now()
      rt.losses = now - rt.lastLossAt < LOSS_WINDOW_MS ? rt.losses + 1 : 0
      rt.lastLossAt = now
      if (rt.losses === 0) {
        void this.reconcile(rt, 'interface lost')
        return
      }
      this.clearRetry(rt)
      rt.retryTimer = this.clock.setTimeout(
        () => void this.reconcile(rt, 'interface lost again'),
        backoffDelay(rt.losses - 1, 500, 30_000),
      )
    }
  }

  get backend(): BackendKind {
    return this.opts.driver.kind
  }

  private get log(): Logger {
    return this.opts.log
  }

  private get clock(): Clock {
    return this.opts.clock ?? systemClock
  }

  private clearRetry(rt: NetRuntime): void {
    if (rt.retryTimer !== undefined) this.clock.clearTimeout(rt.retryTimer)
    rt.retryTimer = undefined
  }

  // -------------------------------------------------------------------------------------------
  // Start-up and shutdown

  /**
   * 1. Load every network from the state dir. 2. Remove interfaces this daemon created earlier
   * and no longer wants (left by a crash, or by a leave the crash interrupted). 3. Rebuild the
   * interfaces of networks that are up from the cached netmap, before any controller answers.
   * 4. Start one netmap sync per network that is up.
   */
  async start(): Promise<void> {
    this.opts.store.init()
    const loaded = this.opts.store.loadNetworks((dir, err) =>
      this.log.error({dir, err: String(err)}, 'skipping a network whose state cannot be read'),
    )
    for (const l of loaded)
      this.nets.set(l.record.id, this.runtime(l.record, l.privateKey, l.credential, l.netmap))
    const wanted = new Set([...this.nets.values()].filter((n) => n.record.up).map((n) => n.record.interface))
    for (const name of this.opts.store.ownedInterfaces()) {
      if (wanted.has(name)) continue
      this.log.info({interface: name}, 'removing an interface this daemon no longer needs')
      await this.opts.driver
        .remove(name)
        .catch((err) => this.log.warn({interface: name, err: String(err)}, 'remove failed'))
      await this.removeFirewall(name)
    }
    this.opts.store.setOwnedInterfaces([...wanted])
    for (const rt of this.nets.values()) {
      if (!rt.record.up) continue
      await this.reconcile(rt, rt.netmap ? 'restored from the cached netmap' : 'start')
      this.startSync(rt)
    }
    this.scheduleReports()
    this.schedulePaths(PATH_TICK_SLOW_MS)
  }

  private scheduleReports(): void {
    if (this.closed) return
    this.reportTimer = this.clock.setTimeout(() => {
      this.reportAll()
      this.scheduleReports()
    }, this.opts.reportIntervalMs ?? 10_000)
  }

  /** Stops syncs and timers; interfaces stay up unless `removeInterfaces`. */
  async close(opts: {removeInterfaces?: boolean} = {}): Promise<void> {
    this.closed = true
    if (this.reportTimer !== undefined) this.clock.clearTimeout(this.reportTimer)
    if (this.pathTimer !== undefined) this.clock.clearTimeout(this.pathTimer)
    for (const rt of this.nets.values()) {
      this.clearRetry(rt)
      this.closeProber(rt)
      await this.closeRelay(rt)
      await rt.sync?.stop()
      rt.sync = undefined
    }
    for (const rt of this.nets.values()) {
      await rt.queue.catch(() => {})
      await rt.starting
    }
    if (opts.removeInterfaces) {
      for (const rt of this.nets.values()) {
        await this.opts.driver.remove(rt.record.interface).catch(() => {})
        await this.removeFirewall(rt.record.interface)
      }
      this.opts.store.setOwnedInterfaces([])
    }
  }

  private runtime(
    record: NetworkRecord,
    privateKey: string,
    credential: string,
    netmap: NetmapFull | undefined,
  ): NetRuntime {
    return {
      record,
      privateKey,
      credential,
      netmap,
      sync: undefined,
      reporting: Promise.resolve(),
      reporter: new PeerReporter(),
      connected: false,
      applyingFrame: false,
      lastError: null,
      queue: Promise.resolve(),
      retryTimer: undefined,
      applyFailures: 0,
      paths: new Map(),
      relay: undefined,
      relayFresh: false,
      home: undefined,
      shims: new Map(),
      discoveryEndpoint: undefined,
      prober: undefined,
      upgrader: undefined,
      punch: new Map(),
      nat: {behaviour: undefined, at: 0, observed: undefined, running: false, failed: false, sent: undefined},
      firewall: {error: null, withheld: new Set()},
      losses: 0,
      lastLossAt: 0,
      firstMap: deferred(),
      starting: undefined,
      startup: undefined,
    }
  }

  // -------------------------------------------------------------------------------------------
  // The socket API's operations

  join(req: JoinRequest): Promise<NetworkStatus> {
    const next = this.joinQueue.then(
      () => this.joinNow(req),
      () => this.joinNow(req),
    )
    this.joinQueue = next.catch(() => {})
    return next
  }

  /**
   * Registers the node and brings the network up. The steps that do not depend on each other
   * overlap (issue 7: one after the other they took 600-900 ms from registration to the first
   * netmap applied): WireGuard starts (startInterface) while the node registers; the netmap
   * session opens as soon as the node is registered, while WireGuard may still be starting; the
   * relay socket opens when the first netmap arrives (onFrame), whatever the interface is
   * doing. The first apply waits for the interface, and puts the firewall in place before any
   * peer, as every apply does. A join that fails after WireGuard was started removes it again.
   */
  private async joinNow(req: JoinRequest): Promise<NetworkStatus> {
    const startedAt = this.clock.now()
    const controller = req.controller.replace(/\/+$/, '')
    // A name nextInterfaceName() picked was just found free: one `ip` spawn less.
    const iface = req.interface ?? (await this.nextInterfaceName())
    if (req.interface !== undefined) await this.checkInterfaceFree(iface)
    const usedPorts = new Set([...this.nets.values()].map((n) => n.record.listenPort))
    if (req.listenPort !== undefined && usedPorts.has(req.listenPort))
      throw new MeshError('INVALID_ARGUMENT', {
        message: `listen port ${req.listenPort} is used by another network`,
      })
    const listenPort = req.listenPort ?? (await freeUdpPort(usedPorts))
    const keys = generateKeyPair()
    const starting = this.startInterface(iface)
    let rt: NetRuntime
    let registeredAt: number
    try {
      const reg = await registerNode(controller, {
        ...(req.invite !== undefined ? {invite: req.invite} : {authKey: req.authKey!}),
        publicKey: keys.publicKey,
        name: req.name ?? defaultNodeName(),
        hostname: os.hostname().slice(0, 253),
        os: `${process.platform}`,
        endpoints: localEndpoints(listenPort, new Set([...this.meshInterfaces(), iface])),
      })
      registeredAt = this.clock.now() - startedAt
      rt = await this.registered(controller, iface, listenPort, keys, reg)
    } catch (err) {
      await this.discardInterface(iface, starting)
      throw err
    }
    rt.starting = starting
    rt.startup = {why: 'join', at: startedAt, marks: {registered: registeredAt}}
    this.nets.set(rt.record.id, rt)
    this.log.info(
      {network: rt.record.name, interface: iface, address: rt.record.address, nodeId: rt.record.nodeId},
      'joined network',
    )
    // The netmap session opens while WireGuard may still be starting; its first frame's apply
    // waits for the interface (reconcile).
    this.startSync(rt)
    await this.interfaceStarted(rt)
    await this.reconcile(rt, 'join')
    // Answer with peers when the controller is quick; a slow one only delays the answer a bit.
    await Promise.race([rt.firstMap.promise, delay(this.clock, this.opts.joinWaitMs ?? 5_000)])
    return this.networkStatus(rt)
  }

  /** A join's registration answered: checked, and the network stored (not yet in `nets`). */
  private async registered(
    controller: string,
    iface: string,
    listenPort: number,
    keys: {publicKey: string; privateKey: string},
    reg: Awaited<ReturnType<typeof registerNode>>,
  ): Promise<NetRuntime> {
    // The network is only known from the reply (an invite names no network), so a second join
    // is caught after registering: the node just registered is removed again with its own
    // credential, so no stray node stays at the controller.
    if (this.nets.has(reg.network.id)) {
      const stray = await deregisterNode(controller, reg.credential).then(
        () => undefined,
        (err: unknown) => (err as Error).message,
      )
      if (stray !== undefined)
        this.log.warn({network: reg.network.name, nodeId: reg.node.id, err: stray}, 'stray node not removed')
      throw new MeshError('ALREADY_JOINED', {
        message:
          `this node already belongs to network ${reg.network.name}` +
          (stray === undefined
            ? ''
            : `; the node registered meanwhile (${reg.node.name}, ${reg.node.id}) could not be removed (${stray}): an admin can remove it`),
      })
    }
    if (!addressInCidr(reg.node.address, reg.network.cidr)) {
      // The interface would get this address with the network's prefix: a route to foreign
      // addresses. The node just registered is removed again, as above.
      await deregisterNode(controller, reg.credential).catch(() => {})
      throw new MeshError('CONTROLLER_UNREACHABLE', {
        message: `the controller gave this node the address ${reg.node.address}, which is not inside its network ${reg.network.cidr}`,
      })
    }
    const record: NetworkRecord = {
      id: reg.network.id,
      name: reg.network.name,
      cidr: reg.network.cidr,
      controller,
      interface: iface,
      nodeId: reg.node.id,
      nodeName: reg.node.name,
      nodeStatus: reg.node.status,
      address: reg.node.address,
      publicKey: keys.publicKey,
      listenPort,
      up: true,
      joinedAt: new Date().toISOString(),
    }
    this.opts.store.createNetwork(record, keys.privateKey, reg.credential)
    return this.runtime(record, keys.privateKey, reg.credential, undefined)
  }

  /**
   * Starts creating a network's interface ahead of its first apply (driver.create: wireguard-go
   * takes 150-300 ms to come up), owned from the start, so that a crash meanwhile leaves an
   * interface the next start removes. It has no key, address or peer and is down: it carries
   * nothing before an apply has put the firewall in place and configured it. Never rejects: a
   * failure is logged, and the first apply, which creates a missing interface itself, tries
   * again and reports it. Resolves true when it made the interface.
   */
  private startInterface(name: string): Promise<boolean> {
    const owned = new Set(this.opts.store.ownedInterfaces())
    if (!owned.has(name)) this.opts.store.setOwnedInterfaces([...owned, name])
    return this.opts.driver.create(name).then(
      (made) => {
        if (made) this.log.debug({interface: name}, 'interface created ahead of its first apply')
        return made
      },
      (err: unknown) => {
        this.log.warn({interface: name, err: String(err)}, 'interface not created ahead of its first apply')
        return false
      },
    )
  }

  /** Waits for the interface being created ahead (startInterface), if any. */
  private async interfaceStarted(rt: NetRuntime): Promise<void> {
    const starting = rt.starting
    if (starting === undefined) return
    await starting
    if (rt.starting === starting) rt.starting = undefined
    this.mark(rt, 'interface')
  }

  /** A join that failed after startInterface: the interface goes again, and is no longer owned. */
  private async discardInterface(name: string, starting: Promise<boolean>): Promise<void> {
    if (await starting)
      await this.opts.driver
        .remove(name)
        .catch((err) => this.log.warn({interface: name, err: String(err)}, 'remove failed'))
    this.sampler.forget(name)
    this.opts.store.setOwnedInterfaces(this.opts.store.ownedInterfaces().filter((n) => n !== name))
  }

  /** Notes when a start-up step of a join or up was reached (the first time only). */
  private mark(rt: NetRuntime, step: string): void {
    const s = rt.startup
    if (s !== undefined && s.marks[step] === undefined) s.marks[step] = this.clock.now() - s.at
  }

  /**
   * Brings networks up again. As in a join, what does not depend on each other overlaps:
   * WireGuard starts (startInterface) while the netmap session opens and the first apply, from
   * the cached netmap, opens the relay socket (prepareNat); that apply waits for the interface
   * and puts the firewall in place before any peer.
   */
  async up(network: string | undefined): Promise<UpResult> {
    const changed: string[] = []
    for (const rt of this.select(network)) {
      if (rt.record.up) continue
      rt.record = {...rt.record, up: true}
      this.opts.store.saveRecord(rt.record)
      rt.startup = {why: 'up', at: this.clock.now(), marks: {}}
      rt.starting ??= this.startInterface(rt.record.interface)
      this.startSync(rt)
      await this.reconcile(rt, 'up')
      changed.push(rt.record.name)
    }
    return {changed}
  }

  async down(network: string | undefined): Promise<DownResult> {
    const changed: string[] = []
    for (const rt of this.select(network)) {
      if (!rt.record.up) continue
      rt.record = {...rt.record, up: false}
      this.opts.store.saveRecord(rt.record)
      await this.stopSync(rt)
      this.closeProber(rt)
      await this.closeRelay(rt)
      rt.paths.clear()
      await this.exclusive(rt, () => this.removeNetInterface(rt))
      changed.push(rt.record.name)
      this.log.info({network: rt.record.name, interface: rt.record.interface}, 'network down')
    }
    return {changed}
  }

  /**
   * Removes the node at the controller with its credential (best effort), then locally. With the
   * controller unreachable the node still leaves here; the reply says `deregistered: false` and
   * the node stays listed at the controller until an admin removes it (or, if ephemeral, the
   * controller reaps it).
   */
  async leave(network: string): Promise<LeaveResult> {
    const rt = this.select(network)[0]!
    // The netmap session first: removing the node revokes it, and that revocation must not race
    // the local removal below.
    await this.stopSync(rt)
    let warning: string | undefined
    try {
      await deregisterNode(rt.record.controller, rt.credential)
    } catch (err) {
      // NODE_CREDENTIAL_INVALID: the controller no longer knows the node, which is the goal.
      if (!(err instanceof MeshError && err.code === 'NODE_CREDENTIAL_INVALID'))
        warning =
          `the controller was not told (${(err as Error).message}); node ${rt.record.nodeName} ` +
          `(${rt.record.nodeId}) stays listed there until an admin removes it`
    }
    await this.forget(rt, warning === undefined ? 'left' : 'left without the controller')
    return {
      left: rt.record.name,
      interface: rt.record.interface,
      deregistered: warning === undefined,
      ...(warning !== undefined && {warning}),
    }
  }

  /**
   * `mesh rotate-key`: per network (every joined one when none is named), one after the other:
   *  1. a new key pair is made here;
   *  2. the interface takes the new private key at once, applied like a netmap frame (serialized
   *     with them): peers' packets under the old key stop being answered from here on;
   *  3. the controller swaps the node's public key (the node credential authenticates; the
   *     private key never leaves this process), refuses the old key from then on and sends peers
   *     the new one as a netmap delta; they keep this node's path (carryRotatedPaths) and their
   *     next packet starts a handshake with the new key, which this side already answers;
   *  4. the new private key is written (0600, atomic), then the record's public key.
   * Address, listen port and peers stay. Interface first, controller second: the other order
   * lets peers initiate to the new key while this side still holds the old one, and WireGuard
   * retries a lost initiation only after 5 s. A refusal at 3 puts the old key back. A crash
   * between 3 and 4 leaves the old key on disk and the new one at the controller: tunnels stay
   * down until `mesh rotate-key` runs again (the credential still works; it makes another key).
   */
  rotateKey(network: string | undefined): Promise<RotateKeyResult> {
    const next = this.rotateQueue.then(
      () => this.rotateNow(network),
      () => this.rotateNow(network),
    )
    this.rotateQueue = next.catch(() => {})
    return next
  }

  private async rotateNow(network: string | undefined): Promise<RotateKeyResult> {
    const rotated: RotateKeyResult['rotated'] = []
    for (const rt of this.select(network)) {
      const keys = generateKeyPair() // 1.
      const previous = {privateKey: rt.privateKey, publicKey: rt.record.publicKey}
      rt.privateKey = keys.privateKey
      await this.reconcile(rt, 'key rotated') // 2.
      let node: Node
      try {
        node = await rotateNodeKey(rt.record.controller, rt.credential, keys.publicKey) // 3.
      } catch (err) {
        rt.privateKey = previous.privateKey
        await this.reconcile(rt, 'key rotation refused')
        throw err
      }
      if (this.nets.get(rt.record.id) !== rt) continue // left meanwhile
      const previousPublicKey = previous.publicKey
      this.opts.store.savePrivateKey(rt.record.id, keys.privateKey) // 4.
      rt.record = {...rt.record, publicKey: keys.publicKey}
      this.opts.store.saveRecord(rt.record)
      const keyExpiresAt = node.keyExpiresAt ?? null
      // The controller's delta with the new self follows; until then the map says so already.
      if (rt.netmap)
        rt.netmap = {...rt.netmap, self: {...rt.netmap.self, publicKey: keys.publicKey, keyExpiresAt}}
      this.changed()
      this.log.info({network: rt.record.name, publicKey: keys.publicKey, previousPublicKey}, 'key rotated')
      rotated.push({network: rt.record.name, publicKey: keys.publicKey, previousPublicKey, keyExpiresAt})
    }
    this.changed()
    return {rotated}
  }

  ip(): IpResult {
    return {
      addresses: [...this.nets.values()].map((rt) => ({
        network: rt.record.name,
        interface: rt.record.interface,
        address: this.selfAddress(rt),
        cidr: rt.record.cidr,
      })),
    }
  }

  /** Calls `fn` whenever the status may have changed (many times; callers coalesce). */
  onChange(fn: () => void): () => void {
    this.changeListeners.add(fn)
    return () => this.changeListeners.delete(fn)
  }

  private changed(): void {
    for (const fn of this.changeListeners) fn()
  }

  async status(): Promise<Status> {
    const networks: NetworkStatus[] = []
    for (const rt of this.nets.values()) networks.push(await this.networkStatus(rt))
    return {
      protocolVersion: PROTOCOL_VERSION,
      backend: this.backend,
      pid: process.pid,
      startedAt: this.startedAt,
      networks,
    }
  }

  // -------------------------------------------------------------------------------------------
  // Netmap frames and reconcile

  private startSync(rt: NetRuntime): void {
    // Checked here, after the caller's awaits: a down or leave that ran meanwhile wins.
    if (rt.sync || this.closed || !rt.record.up || this.nets.get(rt.record.id) !== rt) return
    const sync = new NetmapSync({
      controller: rt.record.controller,
      credential: rt.credential,
      version: () => rt.netmap?.version,
      onFrame: (frame) => this.onFrame(rt, frame),
      onState: ({connected, error}) => {
        const was = rt.connected
        rt.connected = connected
        if (error !== null || connected) rt.lastError = error
        if (connected !== was) this.changed()
        if (connected && !was) {
          this.log.info({network: rt.record.name}, 'controller connected')
          rt.reporter.reset()
          this.report(rt)
        } else if (!connected && was)
          this.log.warn({network: rt.record.name, error}, 'controller disconnected')
      },
      onRevoked: (reason) => void this.forget(rt, `revoked: ${reason}`).catch(() => {}),
      log: this.log.child({network: rt.record.name}),
      ...(this.opts.maxReconnectDelayMs !== undefined && {maxDelayMs: this.opts.maxReconnectDelayMs}),
    })
    rt.sync = sync
    sync.start()
  }

  private async stopSync(rt: NetRuntime): Promise<void> {
    const sync = rt.sync
    rt.sync = undefined
    rt.connected = false
    await sync?.stop()
  }

  private async onFrame(rt: NetRuntime, frame: ServerFrame): Promise<void> {
    if (frame.type === 'revoked') {
      await this.forget(rt, `revoked: ${frame.reason}`)
      return
    }
    const previous = rt.netmap
    if (frame.type === 'full') {
      rt.netmap = frame
    } else {
      if (!rt.netmap) {
        // A delta with nothing to apply it to: ask for a full map on the next connection.
        this.log.warn({network: rt.record.name}, 'delta without a base netmap; reconnecting')
        rt.sync?.reconnectNow()
        return
      }
      const peers = new Map(rt.netmap.peers.map((p) => [p.id, p]))
      for (const p of [...(frame.added ?? []), ...(frame.changed ?? [])]) peers.set(p.id, p)
      for (const id of frame.removed ?? []) peers.delete(id)
      rt.netmap = {
        ...rt.netmap,
        version: frame.version,
        self: frame.self ?? rt.netmap.self,
        peers: [...peers.values()],
        ...(frame.nat !== undefined ? {nat: frame.nat} : {}),
      }
    }
    this.carryRotatedPaths(rt, previous)
    const self = rt.netmap.self
    // The interface gets this node's address with the network's prefix: one outside the CIDR
    // would route foreign addresses into the mesh. Such an address is not taken (selfAddress()
    // ignores it too); the rest of the map, each peer checked on its own, still applies, so
    // later deltas build on what the controller sent.
    let address = self.address
    if (!addressInCidr(address, rt.record.cidr)) {
      this.log.error(
        {network: rt.record.name, address, cidr: rt.record.cidr},
        "ignoring this node's netmap address: it is outside the network's CIDR",
      )
      address = rt.record.address
    }
    if (
      address !== rt.record.address ||
      self.status !== rt.record.nodeStatus ||
      self.name !== rt.record.nodeName
    ) {
      rt.record = {...rt.record, address, nodeStatus: self.status, nodeName: self.name}
      this.opts.store.saveRecord(rt.record)
    }
    this.opts.store.saveNetmap(rt.record.id, rt.netmap)
    this.mark(rt, 'netmap')
    // Now, not when this frame's apply gets its turn (a join's waits for WireGuard to start).
    this.ensureRelay(rt)
    rt.applyingFrame = true
    try {
      await this.reconcile(rt, frame.type === 'full' ? 'full netmap' : 'netmap delta')
    } finally {
      rt.applyingFrame = false
    }
    // The first netmap names the STUN server; a new observed mapping may mean another NAT.
    if (rt.record.up) this.checkNat(rt)
    rt.firstMap.resolve()
  }

  /**
   * A peer that rotated its key (`mesh rotate-key`: same node id, new public key) keeps its
   * path: WireGuard gets the new key at the endpoint that worked, and its next packet starts a
   * handshake there, instead of the new key starting over as a stranger (relay first, then an
   * upgrade) and losing seconds of traffic.
   */
  private carryRotatedPaths(rt: NetRuntime, previous: NetmapFull | undefined): void {
    if (!previous || !rt.netmap) return
    const before = new Map(previous.peers.map((p) => [p.id, p.publicKey]))
    for (const p of rt.netmap.peers) {
      const old = before.get(p.id)
      if (old === undefined || old === p.publicKey) continue
      const path = rt.paths.get(old)
      if (!path || rt.paths.has(p.publicKey)) continue
      rt.paths.delete(old)
      rt.paths.set(p.publicKey, path)
      path.keyRotated(this.clock.now())
      this.log.info({network: rt.record.name, peer: p.name}, 'peer rotated its key; path kept')
    }
  }

  /** The interface config this network should have now. */
  desiredConfig(rt: NetRuntime): InterfaceConfig {
    const cidr = parseCidr(rt.record.cidr)
    const self = rt.netmap?.self
    const active = (self?.status ?? rt.record.nodeStatus) === 'active'
    return {
      name: rt.record.interface,
      privateKey: rt.privateKey,
      listenPort: rt.record.listenPort,
      address: `${this.selfAddress(rt)}/${cidr?.prefix ?? 32}`,
      mtu: DEFAULT_MTU,
      // A pending or disabled node gets no peers, whatever the map says.
      peers: !active ? [] : [...this.meshPeerConfigs(rt), ...this.discoveryPeer(rt), ...rt.punch.values()],
    }
  }

  /** One WireGuard peer per usable netmap peer, pointed where its path says. */
  private meshPeerConfigs(rt: NetRuntime): PeerConfig[] {
    // A peer waiting for the relay to open stays off WireGuard until then (see PeerPath).
    return this.usablePeers(rt)
      .filter((p) => rt.paths.get(p.publicKey)?.awaitingRelay !== true)
      .map((p) => ({
        publicKey: p.publicKey,
        allowedIps: [`${p.address}/32`],
        // The path decides (see updatePaths); undefined leaves WireGuard's own choice.
        endpoint: rt.paths.get(p.publicKey)?.current.endpoint,
        persistentKeepalive: PERSISTENT_KEEPALIVE,
      }))
  }

  /**
   * The controller's endpoint-discovery key as a peer with no allowed IPs and a keepalive under
   * 5 s: WireGuard itself then sends handshake initiations from its own port, and the controller
   * learns the public mapping of that port (no traffic can flow: nothing is routed to it).
   */
  private discoveryPeer(rt: NetRuntime): PeerConfig[] {
    const d = rt.netmap?.nat?.discovery
    if (!d || rt.discoveryEndpoint === undefined) return []
    if (rt.netmap!.peers.some((p) => p.publicKey === d.publicKey)) return []
    return [
      {
        publicKey: d.publicKey,
        allowedIps: [],
        endpoint: rt.discoveryEndpoint,
        persistentKeepalive: DISCOVERY_KEEPALIVE,
      },
    ]
  }

  /**
   * Where a controller UDP service is, as an IP endpoint: its host, or the host of the network's
   * controller URL; a DNS name is looked up (the first address). Undefined when it cannot be.
   */
  private async serviceEndpoint(rt: NetRuntime, svc: UdpService): Promise<string | undefined> {
    let host = svc.host
    if (host === undefined) {
      try {
        host = new URL(rt.record.controller).hostname.replace(/^\[|\]$/g, '')
      } catch {
        return undefined
      }
    }
    let ip = host
    if (isIP(host) === 0) {
      ip = await lookup(host)
        .then((r) => r.address)
        .catch(() => '')
      if (ip === '') return undefined
    }
    return isIP(ip) === 6 ? `[${ip}]:${svc.port}` : `${ip}:${svc.port}`
  }

  /**
   * Before paths are updated: the discovery peer's endpoint, the relay client when the netmap
   * names a relay, and a local relay endpoint for every peer (relay first: a new peer is reached
   * through the relay at once, and a direct path that dies falls back to it within seconds).
   */
  private async prepareNat(rt: NetRuntime): Promise<void> {
    const nat = rt.netmap?.nat
    rt.discoveryEndpoint = nat?.discovery ? await this.serviceEndpoint(rt, nat.discovery.service) : undefined
    // A stop (or down) that ran meanwhile closed the relay: never open a new one after it.
    if (this.closed || !rt.record.up) return
    const relays = nat?.relays ?? []
    if (relays.length === 0) {
      if (rt.relay) await this.closeRelay(rt)
      return
    }
    const relay = this.ensureRelay(rt)
    if (!relay) return
    const peers = this.usablePeers(rt)
    const wanted = new Set(peers.map((p) => p.id))
    for (const id of [...rt.shims.keys()]) {
      if (wanted.has(id)) continue
      rt.shims.delete(id)
      await rt.relay?.release(id).catch(() => {})
    }
    // A socket opened since the last reconcile (by this one, or by the netmap frame this one
    // applies): its peers go onto WireGuard through the relay in this apply. Without the wait
    // they stay off WireGuard (awaiting the relay) until a second reconcile, queued behind this
    // one, adds them: one `wg show` and one `wg set` more before a new node's first packet,
    // 40-130 ms on a loaded 2-core machine (traced in the NAT lab). Bounded, and only for a new
    // socket: a relay that is down never slows later reconciles.
    const fresh = rt.relayFresh
    rt.relayFresh = false
    if (fresh && peers.length > 0 && rt.relay === relay) {
      let timer: TimerHandle | undefined
      // Settles on a failed attempt too: the clock's timers do not keep the process alive, so
      // waiting on an open that never comes (the controller is down at start) would let meshd
      // exit with nothing left to run.
      await Promise.race([
        relay.whenAttemptSettles(),
        new Promise<void>((resolve) => (timer = this.clock.setTimeout(resolve, RELAY_FIRST_OPEN_WAIT_MS))),
      ])
      if (timer !== undefined) this.clock.clearTimeout(timer)
    }
    for (const p of peers) {
      if (this.closed || rt.relay !== relay) return
      if (rt.shims.has(p.id)) continue
      const shim = await relay.shimFor(p.id).catch((err: unknown) => {
        this.log.warn({network: rt.record.name, peer: p.id, err: String(err)}, 'no relay endpoint for a peer')
        return undefined
      })
      if (shim && rt.relay === relay) rt.shims.set(p.id, shim.endpoint)
    }
  }

  /**
   * The network's relay socket: opened as soon as the netmap names a relay, also before the first
   * peer (like a home DERP connection), so a peer that joins later goes through it at once,
   * without waiting for a WebSocket to connect and authenticate first; pointed at the home relay
   * (measured among the netmap's relays; the socket follows it when it moves). Synchronous, so a
   * netmap frame opens it on arrival, before its apply gets its turn. Undefined when the netmap
   * names no relay, or the network is down or gone (a stop or down never sees a new one after it).
   */
  private ensureRelay(rt: NetRuntime): RelayClient | undefined {
    if (this.closed || !rt.record.up || this.nets.get(rt.record.id) !== rt) return undefined
    const relays = rt.netmap?.nat?.relays ?? []
    if (relays.length === 0) return undefined
    if (!rt.home) {
      const home = new HomeRelay({
        clock: this.clock,
        ...this.opts.homeRelay,
        onChange: (base, info) => {
          if (rt.home !== home) return
          this.log.info({network: rt.record.name, relay: base, region: info.region}, 'home relay')
          rt.relay?.retarget(base)
        },
      })
      rt.home = home
    }
    rt.home.setRelays(relays, rt.record.controller)
    const homeUrl = rt.home.current ?? rt.record.controller
    if (!rt.relay) {
      const relay = new RelayClient({
        controller: homeUrl,
        credential: rt.credential,
        selfId: rt.record.nodeId,
        wireGuardPort: rt.record.listenPort,
      })
      rt.relay = relay
      rt.relayFresh = true
      // Relayed peers look for a direct path as soon as the relay goes away (the controller
      // died, say), not at the next path check: nothing else carries them meanwhile.
      relay.on('close', ({code, reason, reconnectInMs}) => {
        if (rt.relay !== relay) return
        this.log.info({network: rt.record.name, code, reason, reconnectInMs}, 'relay socket closed')
        this.checkPathsSoon()
        // The home relay may be gone: measure again, and move if another answers.
        rt.home?.measureSoon()
      })
      relay.on('open', () => {
        if (rt.relay !== relay) return
        this.mark(rt, 'relay')
        this.log.info({network: rt.record.name}, 'relay socket open')
      })
      // Peers go through the relay as soon as it is open, not at the next path check.
      void relay.whenOpen().then(
        () => {
          if (rt.relay === relay) void this.reconcile(rt, 'relay open').catch(() => {})
        },
        () => {},
      )
    }
    rt.relay.retarget(homeUrl)
    return rt.relay
  }

  /**
   * The echo service of `mesh ping` on this node's mesh address, (re)started when the address
   * changed. Binding fails while the address is not on a link yet (and always with the fake
   * driver): logged at debug, tried again after the next apply.
   */
  private async ensureProber(rt: NetRuntime): Promise<void> {
    const address = this.selfAddress(rt)
    if (rt.prober?.address === address) return
    this.closeProber(rt)
    const prober = await Prober.start({
      address,
      log: this.log.child({network: rt.record.name}),
      onControl: (msg, from) => this.onUpgradeMessage(rt, msg, from.address),
    }).catch((err: unknown) => {
      this.log.debug({network: rt.record.name, err: String(err)}, 'ping responder not started')
      return undefined
    })
    // A down, leave or stop that ran meanwhile wins.
    if (!rt.record.up || this.closed || !this.nets.has(rt.record.id)) prober?.close()
    else if (prober) {
      rt.prober = prober
      rt.upgrader = new Upgrader(this.upgradeLink(rt))
    }
  }

  private closeProber(rt: NetRuntime): void {
    rt.upgrader?.close()
    rt.upgrader = undefined
    rt.prober?.close()
    rt.prober = undefined
    rt.punch.clear()
  }

  /** What an upgrade of this network's peers works with (daemon/nat/upgrade.ts). */
  private upgradeLink(rt: NetRuntime): UpgradeLink {
    const driver = this.opts.driver
    const iface = (): string => rt.record.interface
    return {
      clock: this.clock,
      read: async (key) => {
        const st = await this.sampler.get(iface(), {fresh: true})
        const p = st?.peers.find((x) => x.publicKey === key)
        return (
          p && {
            endpoint: p.endpoint,
            lastHandshakeMs: p.lastHandshakeMs,
            rxBytes: p.rxBytes,
            txBytes: p.txBytes,
          }
        )
      },
      setEndpoint: (key, endpoint) => driver.setPeers(iface(), [{publicKey: key, endpoint}]),
      openNat: async (targets) => {
        // Random keys nobody holds: WireGuard sends one handshake initiation to each target from
        // its own port, which opens this node's NAT toward it; nothing is ever routed to them.
        const peers: PeerConfig[] = targets.map((endpoint) => ({
          publicKey: generateKeyPair().publicKey,
          allowedIps: [],
          endpoint,
          persistentKeepalive: 1,
        }))
        for (const p of peers) rt.punch.set(p.publicKey, p)
        const close = async (): Promise<void> => {
          for (const p of peers) rt.punch.delete(p.publicKey)
          await driver.setPeers(
            iface(),
            peers.map((p) => ({publicKey: p.publicKey, remove: true})),
          )
        }
        try {
          await driver.setPeers(
            iface(),
            peers.map((p) => ({publicKey: p.publicKey, endpoint: p.endpoint, persistentKeepalive: 1})),
          )
        } catch (err) {
          await close().catch(() => {})
          throw err
        }
        return close
      },
      shim: (id) => {
        const endpoint = rt.shims.get(id)
        const relay = rt.relay
        if (endpoint === undefined || !relay?.connected) return undefined
        return {endpoint, setMode: (mode, hold) => void relay.setMode(id, mode, hold)}
      },
      ping: (address, timeoutMs) => rt.prober?.ping(address, {timeoutMs}) ?? Promise.resolve(null),
      send: (address, msg) => rt.prober?.sendControl(address, msg),
      log: this.log.child({network: rt.record.name}),
    }
  }

  /** A peer as an upgrade sees it: its candidates in this node's order. */
  private upgradePeer(p: Peer, subnets: readonly Cidr[]): UpgradePeer {
    return {id: p.id, publicKey: p.publicKey, address: p.address, candidates: orderCandidates(p, subnets)}
  }

  /** An upgrade message from the tunnel: only from a peer of this network, to its own path. */
  private onUpgradeMessage(rt: NetRuntime, msg: UpgradeMessage, from: string): void {
    const peer = this.usablePeers(rt, true).find((p) => p.address === from)
    const path = peer && rt.paths.get(peer.publicKey)
    if (!peer || !path || !rt.upgrader) return
    void rt.upgrader
      .onMessage(this.upgradePeer(peer, localSubnets(this.meshInterfaces())), path, msg)
      .then((res) => {
        if (res === 'direct') this.report(rt)
      })
  }

  private async closeRelay(rt: NetRuntime): Promise<void> {
    const relay = rt.relay
    rt.relay = undefined
    rt.relayFresh = false
    rt.home?.close()
    rt.home = undefined
    rt.shims.clear()
    await relay?.close().catch(() => {})
  }

  /**
   * Makes WireGuard send a handshake initiation at once to relayed peers whose first handshake
   * is overdue (PathDecision.poke): each is removed and added again in one transaction, since a
   * new peer is the only one WireGuard lets initiate within 5 s of its last initiation. Its fresh
   * initiation is answered from whatever state the other side is stuck in (both waiting as
   * responders after an initiation race, say). Runs in the network's apply queue.
   */
  private async pokePeers(rt: NetRuntime, peers: readonly Peer[]): Promise<void> {
    if (peers.length === 0 || !rt.record.up || this.closed) return
    const configs = new Map(this.meshPeerConfigs(rt).map((c) => [c.publicKey, c]))
    const edits: PeerEdit[] = []
    const poked: string[] = []
    for (const p of peers) {
      const c = configs.get(p.publicKey)
      if (c?.endpoint === undefined) continue
      edits.push(
        {publicKey: c.publicKey, remove: true},
        {
          publicKey: c.publicKey,
          allowedIps: c.allowedIps,
          endpoint: c.endpoint,
          persistentKeepalive: c.persistentKeepalive ?? 0,
        },
      )
      poked.push(p.name)
    }
    if (edits.length === 0) return
    try {
      await this.opts.driver.setPeers(rt.record.interface, edits)
      this.log.info(
        {network: rt.record.name, peers: poked},
        'relayed handshake overdue: WireGuard peer re-created to initiate at once',
      )
    } catch (err) {
      this.log.warn({network: rt.record.name, peers: poked, err: String(err)}, 'poke failed')
    }
    this.sampler.invalidate(rt.record.interface)
  }

  /**
   * Feeds each peer's path with what WireGuard shows now and the peer's candidates, and drops the
   * paths of peers that are gone. Returns whether a path wants an endpoint WireGuard does not have.
   */
  private updatePaths(
    rt: NetRuntime,
    state: InterfaceState | undefined,
    probe: Peer[] = [],
    peers: readonly Peer[] = this.usablePeers(rt),
    pokes: Peer[] = [],
  ): boolean {
    const now = this.clock.now()
    const relayUp = rt.relay?.connected === true
    const relayExpected = (rt.netmap?.nat?.relays?.length ?? 0) > 0
    const live = new Map((state?.peers ?? []).map((p) => [p.publicKey, p]))
    const subnets = localSubnets(this.meshInterfaces())
    const discovery = rt.discoveryEndpoint !== undefined && rt.netmap?.nat?.discovery != null
    const self = {observedEndpoint: rt.netmap?.self.observedEndpoint}
    // NAT behaviour is only ever reported where the controller offers STUN: without it nothing
    // is waited for.
    const natReported = rt.netmap?.nat?.stun != null
    const ownNat = rt.nat.behaviour
    const keep = new Set<string>()
    const ownShims = new Set(rt.shims.values())
    let wantsChange = false
    for (const p of peers) {
      keep.add(p.publicKey)
      let path = rt.paths.get(p.publicKey)
      if (!path) rt.paths.set(p.publicKey, (path = new PeerPath()))
      const l = live.get(p.publicKey)
      const before = path.current
      const candidates = orderCandidates(p, subnets)
      const outOfReach = directOutOfReach({discovery, self, peer: p, localSubnets: subnets})
      if (outOfReach !== path.directOutOfReach)
        this.log.debug(
          {network: rt.record.name, peer: p.name, why: outOfReach, candidates},
          outOfReach
            ? 'direct path out of reach: staying on the relay, no upgrade attempts'
            : 'direct path within reach',
        )
      const impossible = directImpossible(ownNat, p.nat)
      if (impossible !== path.natImpossible)
        this.log.info(
          {network: rt.record.name, peer: p.name, why: impossible, nat: ownNat, peerNat: p.nat},
          impossible
            ? 'NAT behaviour rules a direct path out: staying on the relay, re-checking rarely'
            : 'NAT behaviour allows a direct path',
        )
      const d = path.update({
        candidates,
        relay: relayUp ? rt.shims.get(p.id) : undefined,
        relayReconnecting: !relayUp && rt.relay !== undefined ? rt.shims.get(p.id) : undefined,
        directOutOfReach: outOfReach,
        natImpossible: impossible,
        natPending: natReported && verdictPending(ownNat, p.nat),
        // Only a peer not on WireGuard yet, while the controller (home of the relay) answers, waits
        // (also during the session's first netmap, which arrives before `connected` is set): for
        // the relay socket, or for its own relay endpoint when it came in a netmap delta while
        // this reconcile prepared the others' (the delta's own reconcile, queued, opens it). Sent
        // toward a candidate meanwhile, its first initiation would be spent where it goes
        // nowhere (traced in the NAT lab: 240 ms lost before the first initiation left).
        relayExpected:
          relayExpected &&
          (!relayUp || !rt.shims.has(p.id)) &&
          l === undefined &&
          (rt.connected || rt.applyingFrame),
        wg: l && {
          endpoint: liveEndpoint(l.endpoint, ownShims, candidates),
          lastHandshakeMs: l.lastHandshakeMs,
          rxBytes: l.rxBytes,
          txBytes: l.txBytes,
        },
        now,
      })
      if (d.probe) probe.push(p)
      // The side that wins initiation races pokes first; the other joins from the second poke.
      if (d.poke !== undefined && (d.poke > 1 || initiationWinner(rt.record.nodeId, p.id))) pokes.push(p)
      if (d.state !== before.state) {
        this.changed()
        this.log.info(
          {
            network: rt.record.name,
            peer: p.name,
            from: before.state,
            to: d.state,
            endpoint: d.endpoint ?? l?.endpoint,
            candidates,
            wg: l?.endpoint,
            rx: l?.rxBytes,
            handshake: l?.lastHandshakeMs,
          },
          'peer path changed',
        )
      }
      if (d.endpoint !== undefined && d.endpoint !== l?.endpoint) wantsChange = true
    }
    for (const key of rt.paths.keys()) if (!keep.has(key)) rt.paths.delete(key)
    return wantsChange
  }

  /**
   * Re-checks the paths of every network that is up, every PATH_TICK_FAST_MS while it has peers
   * (a stalled direct path is caught within seconds), slowly otherwise. Runs without a
   * controller: paths are data plane.
   */
  private schedulePaths(ms: number): void {
    if (this.closed) return
    this.pathTimer = this.clock.setTimeout(() => {
      this.pathTimer = undefined
      void this.checkPaths().then((next) => {
        const soon = this.pathsSoon
        this.pathsSoon = false
        this.schedulePaths(soon ? 0 : next)
      })
    }, ms)
  }

  /**
   * Runs the next path check now instead of at its tick (the timer goes on from there); while
   * one runs, the next starts right after it. Never two at once.
   */
  private checkPathsSoon(): void {
    if (this.closed) return
    if (this.pathTimer === undefined) {
      this.pathsSoon = true
      return
    }
    this.clock.clearTimeout(this.pathTimer)
    this.schedulePaths(0)
  }

  /**
   * One round of path checks (the timer runs it; tests call it after moving a fake clock):
   * paths updated from WireGuard, probes to peers that need one, the upgrades this node leads,
   * latency samples. Returns when the next check is due: urgent while a direct path looks
   * stalled, fast while a network has peers, slow otherwise.
   */
  async checkPaths(): Promise<number> {
    let next = PATH_TICK_SLOW_MS
    for (const rt of [...this.nets.values()]) {
      if (rt.record.up) this.checkNat(rt)
      if (!rt.record.up || rt.paths.size === 0) continue
      next = Math.min(next, PATH_TICK_FAST_MS)
      // Fresh: a stalled direct path is judged on counters of this very tick.
      const state = await this.sampler.get(rt.record.interface, {fresh: true})
      if (!state) continue
      const needsRelay = [...rt.paths.values()].some(
        (p) => p.current.state === 'waiting' && rt.netmap?.nat?.relays?.length,
      )
      const peers = this.usablePeers(rt, true)
      const stalled: Peer[] = []
      const pokes: Peer[] = []
      if (this.updatePaths(rt, state, stalled, peers, pokes) || needsRelay)
        await this.reconcile(rt, 'path change').catch(() => {})
      if (pokes.length > 0) await this.exclusive(rt, () => this.pokePeers(rt, pokes)).catch(() => {})
      if (stalled.some((p) => rt.paths.get(p.publicKey)?.current.state === 'direct'))
        next = PATH_TICK_URGENT_MS
      this.probePeers(rt, peers, stalled)
      this.startUpgrades(rt, peers)
    }
    return next
  }

  /**
   * Sends one probe through the tunnel to each peer whose path is trying a candidate or whose
   * direct path went quiet while packets went out (their answers are the traffic that proves or
   * clears the path, also for an idle pair), and latency samples to online peers measured longer
   * than LATENCY_EVERY_MS ago. Bounded per tick; fire and forget, the next check reads the result.
   */
  private probePeers(rt: NetRuntime, peers: readonly Peer[], stalled: readonly Peer[]): void {
    const prober = rt.prober
    if (!prober) return
    let sent = 0
    const now = this.clock.now()
    const probing = peers.filter((p) => rt.paths.get(p.publicKey)?.current.state === 'probing')
    for (const p of [...stalled, ...probing]) {
      if (sent++ >= MAX_PROBES_PER_TICK) break
      const path = rt.paths.get(p.publicKey)
      void prober
        .ping(p.address, {timeoutMs: PATH_TICK_FAST_MS})
        .then((ms) => ms !== null && path?.noteLatency(ms, this.clock.now()))
    }
    let sampled = 0
    for (const p of peers) {
      if (sampled >= MAX_LATENCY_PROBES_PER_TICK) break
      const path = rt.paths.get(p.publicKey)
      const state = path?.current.state
      if (!path || (state !== 'direct' && state !== 'relay')) continue
      if (path.latency.at !== 0 && now - path.latency.at < LATENCY_EVERY_MS) continue
      sampled++
      // Marked as measured now, so a peer that never answers is retried later, not every tick.
      path.latencyAsked(now)
      void prober.ping(p.address, {timeoutMs: 2_000}).then((ms) => {
        if (ms !== null) path.noteLatency(ms, this.clock.now())
      })
    }
  }

  /**
   * Runs the background netcheck when it is due: never run (or the last failed a while ago),
   * NAT_CHECK_EVERY_MS after the last, or at once when the controller observed a new public
   * mapping for this node. Its result (mapping and filtering) goes to the controller in the next
   * report and into every peer's path (directImpossible). One at a time per network.
   */
  private checkNat(rt: NetRuntime): void {
    const run = this.opts.natCheck ?? ((id: string) => this.netcheckService.report(id))
    if (run === false || rt.nat.running || this.closed) return
    if (rt.netmap?.nat?.stun == null) return
    const now = this.clock.now()
    const observed = rt.netmap.self.observedEndpoint
    // The first mapping observed is adopted as the one the last check ran under (it arrives a
    // moment after a node joins: no reason to check again); a different one later is a move.
    if (typeof observed === 'string' && typeof rt.nat.observed !== 'string') rt.nat.observed = observed
    const due =
      rt.nat.at === 0 ||
      now - rt.nat.at >= (rt.nat.failed ? NAT_CHECK_RETRY_MS : NAT_CHECK_EVERY_MS) ||
      (typeof observed === 'string' && observed !== rt.nat.observed)
    if (!due) return
    rt.nat.running = true
    if (typeof observed === 'string') rt.nat.observed = observed
    void run(rt.record.id)
      .then(
        (r) => {
          rt.nat.failed = false
          return {mapping: r.mapping, filtering: r.filtering}
        },
        (err: unknown) => {
          this.log.debug({network: rt.record.name, err: (err as Error).message}, 'background netcheck failed')
          rt.nat.failed = true
          // Known to be unknown: new paths need not wait for it.
          return rt.nat.behaviour ?? UNKNOWN_NAT
        },
      )
      .then((nat) => {
        rt.nat.running = false
        rt.nat.at = Math.max(1, this.clock.now())
        const before = rt.nat.behaviour
        rt.nat.behaviour = nat
        if (before !== undefined && sameNat(before, nat)) return
        this.log.info({network: rt.record.name, nat, before}, 'NAT behaviour measured')
        this.changed()
        this.report(rt)
        this.checkPathsSoon()
      })
  }

  private get netcheckService(): NetcheckService {
    return (this.natService ??= new NetcheckService({target: (ref) => this.netcheckTarget(ref)}))
  }

  /** Starts the due upgrades of the relayed peers this node leads (the Upgrader bounds how many). */
  private startUpgrades(rt: NetRuntime, peers: readonly Peer[]): void {
    const upgrader = rt.upgrader
    if (!upgrader) return
    const now = this.clock.now()
    let subnets: Cidr[] | undefined
    for (const p of peers) {
      if (upgrader.active >= DEFAULT_UPGRADE_TUNING.maxConcurrent) break
      const path = rt.paths.get(p.publicKey)
      if (!path?.upgradeDue(now) || !leads(rt.record.publicKey, p.publicKey)) continue
      subnets ??= localSubnets(this.meshInterfaces())
      void upgrader.lead(this.upgradePeer(p, subnets), path).then((res) => {
        if (res === 'direct') this.report(rt)
      })
    }
  }

  /**
   * The usable peers but those the firewall withholds (see applyFirewall). `quiet`: the path
   * ticks ask every second; the applies already said which peers are dropped.
   */
  private usablePeers(rt: NetRuntime, quiet = false): Peer[] {
    const peers = usablePeers(
      rt.netmap?.peers ?? [],
      {address: this.selfAddress(rt), publicKey: rt.record.publicKey, cidr: rt.record.cidr},
      quiet
        ? () => {}
        : (p, why) => this.log.warn({network: rt.record.name, peer: p.id, why}, 'ignoring a netmap peer'),
    )
    const withheld = rt.firewall.withheld
    return withheld.size === 0 ? peers : peers.filter((p) => !withheld.has(p.publicKey))
  }

  /** The netmap's address for this node, unless it lies outside the CIDR (a stale or bad cache). */
  private selfAddress(rt: NetRuntime): string {
    const fromMap = rt.netmap?.self.address
    return fromMap !== undefined && addressInCidr(fromMap, rt.record.cidr) ? fromMap : rt.record.address
  }

  private exclusive<T>(rt: NetRuntime, fn: () => Promise<T>): Promise<T> {
    const next = rt.queue.then(fn, fn)
    rt.queue = next.catch(() => {})
    return next
  }

  /**
   * Applies the desired config: the inbound rules first (applyFirewall), then WireGuard. A
   * failure of either, or peers WireGuard refused (the rest applied), is kept in status, logged
   * with the peer's key, and retried after applyRetryDelay.
   */
  private reconcile(rt: NetRuntime, why: string): Promise<void> {
    return this.exclusive(rt, async () => {
      if (!rt.record.up || this.closed || !this.nets.has(rt.record.id)) return
      this.clearRetry(rt)
      // Side by side: a new network's first netmap opens the relay socket (a round trip to the
      // controller) while the read may spawn `ip` (the link cache is empty after the interface
      // was made); one after the other they kept a new peer off WireGuard 50-120 ms longer.
      // The interface being created ahead (join, up) is waited for here, and the inbound rules
      // go into nftables meanwhile (`iifname` matches by name, so the table may come before the
      // interface): all three before WireGuard, so no peer is ever on the interface ahead of its
      // rules.
      const [current] = await Promise.all([
        this.interfaceStarted(rt).then(() => this.sampler.get(rt.record.interface, {fresh: true})),
        this.prepareNat(rt),
        this.applyFirewall(rt),
      ])
      const pokes: Peer[] = []
      this.updatePaths(rt, current, [], undefined, pokes)
      const desired = this.desiredConfig(rt)
      // Whether this apply carries a netmap's peers (for the start-up timeline).
      const withNetmap = rt.netmap !== undefined
      const owned = new Set(this.opts.store.ownedInterfaces())
      if (!owned.has(desired.name)) this.opts.store.setOwnedInterfaces([...owned, desired.name])
      let failure: string | undefined
      try {
        const res = await this.opts.driver.apply(desired)
        this.sampler.invalidate(desired.name)
        const failed = res.failed ?? []
        if (res.changed) {
          this.changed()
          this.log.info(
            {
              network: rt.record.name,
              interface: desired.name,
              why,
              ...res,
              failed: failed.length,
              peers: desired.peers.length,
            },
            'WireGuard interface updated',
          )
          this.report(rt)
        }
        for (const f of failed)
          this.log.error(
            {network: rt.record.name, interface: desired.name, peer: f.publicKey, err: f.error},
            'WireGuard refused a peer; the others are applied',
          )
        if (failed.length > 0)
          failure = `WireGuard: ${failed.length} peer(s) not applied, first ${failed[0]!.publicKey}: ${failed[0]!.error}`
      } catch (err) {
        failure = `WireGuard: ${(err as Error).message}`
        this.log.error(
          {network: rt.record.name, interface: desired.name, err: (err as Error).message},
          'apply failed',
        )
      }
      if (failure === undefined) {
        if (withNetmap) this.startupApplied(rt)
        if (rt.lastError?.startsWith('WireGuard:')) rt.lastError = null
        await this.pokePeers(rt, pokes)
        await this.ensureProber(rt)
        if (rt.firewall.error === null) {
          rt.applyFailures = 0
          return
        }
      } else rt.lastError = failure
      const delay = (this.opts.retryDelayMs ?? applyRetryDelay)(rt.applyFailures++)
      rt.retryTimer = this.clock.setTimeout(() => void this.reconcile(rt, 'retry'), delay)
    })
  }

  /**
   * Puts the network's inbound rules into nftables (daemon/firewall), before WireGuard gets its
   * peers: `iifname` matches by name, so the table may come before the interface, and a peer is
   * never on the interface ahead of its rules. nft runs only when the rules changed.
   *
   * Fails closed: while nft fails (or is not installed) with a policy, the peers that carry
   * `inbound` are withheld from WireGuard, whose rules could otherwise not be enforced (an older
   * table, if any, stays as it was: each script is one transaction); peers without `inbound`
   * are unaffected, as are other networks. The failure is in status and retried with the apply
   * backoff.
   */
  private async applyFirewall(rt: NetRuntime): Promise<void> {
    const name = rt.record.interface
    // Not the method below: it leaves out the peers withheld by the previous failure.
    const peers = usablePeers(rt.netmap?.peers ?? [], {
      address: this.selfAddress(rt),
      publicKey: rt.record.publicKey,
      cidr: rt.record.cidr,
    })
    const was = rt.firewall.error
    try {
      const res = await this.firewall.apply({
        iface: name,
        cidr: rt.record.cidr,
        self: this.selfAddress(rt),
        peers,
        daemonUdpPorts: [PROBE_PORT],
      })
      for (const s of res.ruleset.skipped)
        this.log.warn(
          {network: rt.record.name, peer: peers[s.index]?.id, why: s.why},
          'inbound rules of a peer not usable; its traffic is dropped',
        )
      if (res.warning !== undefined)
        this.log.warn(
          {network: rt.record.name, interface: name, err: res.warning},
          'no inbound rules, but an earlier table could not be removed',
        )
      if (res.changed)
        this.log.info(
          {network: rt.record.name, interface: name, table: res.ruleset.table, policy: res.ruleset.policy},
          res.ruleset.policy ? 'inbound rules applied' : 'no inbound rules: table removed',
        )
      rt.firewall = {error: null, withheld: new Set()}
    } catch (err) {
      const restricted = peers.filter((p) => p.inbound !== undefined)
      const error =
        `firewall: ${(err as Error).message}; ${restricted.length} peer(s) with inbound rules ` +
        'withheld from WireGuard until it works'
      if (error !== was)
        this.log.error(
          {
            network: rt.record.name,
            interface: name,
            err: (err as Error).message,
            withheld: restricted.length,
          },
          'inbound rules not applied; peers with rules withheld (fail closed)',
        )
      rt.firewall = {error, withheld: new Set(restricted.map((p) => p.publicKey))}
    }
    if (rt.firewall.error !== was) this.changed()
  }

  /**
   * Logs a join's or up's start-up timeline once its first apply with a netmap (the cached one,
   * for an up) went through: each step in ms after the join or up began. `interface`: WireGuard
   * created; `registered` (join): the controller answered; `netmap`: the first frame in;
   * `relay`: the relay socket open; `applied`: now.
   */
  private startupApplied(rt: NetRuntime): void {
    const s = rt.startup
    if (s === undefined || rt.netmap === undefined) return
    this.mark(rt, 'applied')
    rt.startup = undefined
    this.log.info(
      {network: rt.record.name, why: s.why, ms: s.marks, peers: rt.netmap.peers.length},
      'start-up timeline',
    )
  }

  /** Removes an interface's inbound-rules table; a failure is logged, never thrown. */
  private async removeFirewall(name: string): Promise<void> {
    await this.firewall
      .remove(name)
      .catch((err) => this.log.warn({interface: name, err: String(err)}, 'removing the inbound rules failed'))
  }

  /** A network's interface goes, also one still being created ahead (startInterface). */
  private async removeNetInterface(rt: NetRuntime): Promise<void> {
    await this.interfaceStarted(rt)
    rt.startup = undefined
    await this.removeInterface(rt.record.interface)
  }

  private async removeInterface(name: string): Promise<void> {
    await this.opts.driver.remove(name)
    await this.removeFirewall(name)
    this.sampler.forget(name)
    this.changed()
    this.opts.store.setOwnedInterfaces(this.opts.store.ownedInterfaces().filter((n) => n !== name))
  }

  /** Leave or revocation: interface down, sync stopped, keys, credential and cache deleted. */
  private async forget(rt: NetRuntime, why: string): Promise<void> {
    if (!this.nets.has(rt.record.id)) return
    this.nets.delete(rt.record.id)
    this.clearRetry(rt)
    // stop() waits for the frame being applied, which may be this very 'revoked' frame: do not
    // await it here.
    const sync = rt.sync
    rt.sync = undefined
    void sync?.stop()
    this.closeProber(rt)
    await this.closeRelay(rt)
    await this.exclusive(rt, () => this.removeNetInterface(rt))
    this.opts.store.deleteNetwork(rt.record.id)
    rt.firstMap.resolve()
    this.log.info({network: rt.record.name, interface: rt.record.interface, why}, 'network forgotten')
  }

  // -------------------------------------------------------------------------------------------
  // Reports to the controller

  private reportAll(): void {
    for (const rt of this.nets.values()) this.report(rt)
  }

  /**
   * Tells the controller what changed in this node's view: its endpoints and, per peer, whether
   * they handshook recently and the endpoint in use (see PeerReporter). Every report interval, on
   * (re)connect, and whenever the interface config changed. Reports of one network never overlap,
   * so each builds on what the previous one sent.
   */
  private report(rt: NetRuntime): void {
    if (!rt.sync?.connected) return
    rt.reporting = rt.reporting
      .then(async () => {
        if (!rt.sync?.connected) return
        const endpoints = localEndpoints(rt.record.listenPort, this.meshInterfaces())
        const state = rt.record.up ? await this.sampler.get(rt.record.interface) : undefined
        const ids = new Map((rt.netmap?.peers ?? []).map((p) => [p.publicKey, p.id]))
        const relayed = new Set(rt.shims.values())
        const now = this.clock.now()
        const peers: PeerReport[] = []
        for (const p of state?.peers ?? []) {
          const id = ids.get(p.publicKey)
          if (id === undefined) continue
          const online = p.lastHandshakeMs > 0 && now - p.lastHandshakeMs < ONLINE_WINDOW_MS
          const latencyMs = rt.paths.get(p.publicKey)?.latency.ms
          peers.push({
            id,
            online,
            endpoint: p.endpoint !== undefined && p.endpoint.length <= 64 ? p.endpoint : null,
            // Where WireGuard sends now: a relay socket, or the peer's own address.
            path: !online || p.endpoint === undefined ? 'none' : relayed.has(p.endpoint) ? 'relay' : 'direct',
            ...(latencyMs !== undefined && {latencyMs}),
          })
        }
        const frames = rt.reporter.frames(endpoints, peers)
        // This node's NAT behaviour: on a new session (reset) and when it changed.
        const nat = rt.nat.behaviour
        if (nat !== undefined && (frames[0]!.reset === true || !sameNat(rt.nat.sent, nat))) {
          frames[0]!.nat = nat
          rt.nat.sent = nat
        }
        for (const frame of frames) {
          if (rt.sync?.send(frame)) continue
          rt.reporter.reset()
          return
        }
      })
      .catch((err) => this.log.debug({err: String(err)}, 'report failed'))
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  private meshInterfaces(): Set<string> {
    return new Set([...this.nets.values()].map((n) => n.record.interface))
  }

  /** Networks named by name or id; all when undefined. */
  private select(ref: string | undefined): NetRuntime[] {
    const all = [...this.nets.values()]
    if (ref === undefined) return all
    const byId = all.filter((n) => n.record.id === ref)
    if (byId.length > 0) return byId
    const byName = all.filter((n) => n.record.name === ref)
    if (byName.length > 1)
      throw new MeshError('INVALID_ARGUMENT', {
        message: `several joined networks are called ${ref}`,
        hint: 'name the network by its id (see `mesh status --json`)',
      })
    if (byName.length === 0)
      throw new MeshError('NETWORK_NOT_JOINED', {message: `not a member of network ${ref}`})
    return byName
  }

  private async nextInterfaceName(): Promise<string> {
    for (let i = 0; i < 100; i++) {
      const name = `${this.opts.interfacePrefix}${i}`
      if (await this.interfaceNameUsed(name)) continue
      return name
    }
    throw new MeshError('INTERFACE_NAME_TAKEN', {message: 'no free interface name; pass --interface'})
  }

  /**
   * Taken when another network has it, when a link of that name exists here, or when a
   * wireguard-go of another network namespace has it (their UAPI sockets share one directory).
   */
  private async interfaceNameUsed(name: string): Promise<boolean> {
    return (
      [...this.nets.values()].some((n) => n.record.interface === name) ||
      (await this.opts.driver.linkExists(name)) ||
      (this.opts.driver.kind === 'userspace' && existsSync(`${UAPI_DIR}/${name}.sock`))
    )
  }

  private async checkInterfaceFree(name: string): Promise<void> {
    if (await this.interfaceNameUsed(name))
      throw new MeshError('INTERFACE_NAME_TAKEN', {message: `the interface name ${name} is already used`})
  }

  /**
   * The path as the user should see it: the path's state, except that WireGuard already sending
   * to the relay (it followed the peer's relayed packets) is the relay, even before the next
   * path check notices.
   */
  private effectivePath(
    rt: NetRuntime,
    publicKey: string,
    peerId: string,
    live: string | undefined,
  ): PathState {
    const state = rt.paths.get(publicKey)?.current.state ?? 'idle'
    return state === 'direct' && live !== undefined && live === rt.shims.get(peerId) ? 'relay' : state
  }

  private async networkStatus(rt: NetRuntime): Promise<NetworkStatus> {
    const state = rt.record.up ? await this.sampler.get(rt.record.interface) : undefined
    const live = new Map((state?.peers ?? []).map((p) => [p.publicKey, p]))
    const byKey = new Map((rt.netmap?.peers ?? []).map((p) => [p.publicKey, p]))
    const now = this.clock.now()
    const peers: PeerStatus[] = this.meshPeerConfigs(rt).map((cfg) => {
      const peer = byKey.get(cfg.publicKey)!
      const l = live.get(cfg.publicKey)
      const hs = l?.lastHandshakeMs ?? 0
      const rates = this.sampler.rates(rt.record.interface, cfg.publicKey)
      const path = rt.paths.get(cfg.publicKey)
      const blocked = path?.natImpossible ?? path?.directOutOfReach
      return {
        id: peer.id,
        name: peer.name,
        address: peer.address,
        publicKey: peer.publicKey,
        endpoint: l?.endpoint ?? cfg.endpoint ?? null,
        path: this.effectivePath(rt, cfg.publicKey, peer.id, l?.endpoint),
        latencyMs: rt.paths.get(cfg.publicKey)?.latency.ms ?? null,
        lastHandshake: hs > 0 ? new Date(hs).toISOString() : null,
        rxBytes: l?.rxBytes ?? 0,
        txBytes: l?.txBytes ?? 0,
        rxBytesPerSecond: rates.rxBytesPerSecond,
        txBytesPerSecond: rates.txBytesPerSecond,
        online: hs > 0 && now - hs < ONLINE_WINDOW_MS,
        ...(peer.nat !== undefined && {nat: peer.nat}),
        ...(blocked !== undefined && {directBlocked: blocked}),
        ...(path !== undefined && {upgradeAttempts: path.upgradeAttempts}),
      }
    })
    return {
      id: rt.record.id,
      name: rt.record.name,
      cidr: rt.record.cidr,
      controller: rt.record.controller,
      interface: rt.record.interface,
      nodeId: rt.record.nodeId,
      nodeName: rt.record.nodeName,
      nodeStatus: rt.record.nodeStatus,
      address: this.selfAddress(rt),
      publicKey: rt.record.publicKey,
      listenPort: rt.record.listenPort,
      up: rt.record.up,
      connected: rt.connected,
      netmapVersion: rt.netmap?.version ?? null,
      // One line for the user: the controller or WireGuard problem, and the firewall's.
      lastError: [rt.lastError, rt.firewall.error].filter((e) => e !== null).join('; ') || null,
      ...(rt.nat.behaviour !== undefined && {nat: rt.nat.behaviour}),
      peers,
      ...(rt.netmap?.self.keyExpiresAt !== undefined && {keyExpiresAt: rt.netmap.self.keyExpiresAt}),
    }
  }

  // -------------------------------------------------------------------------------------------
  // NAT diagnostics (`mesh netcheck`, `mesh ping`): read-only views for daemon/nat/*-service.ts

  /**
   * The network `mesh netcheck` checks: the one named, else the first joined network whose netmap
   * names a STUN server (else the first joined). NETWORK_NOT_JOINED when there is none.
   */
  netcheckTarget(ref: string | undefined): {
    network: string
    controller: string
    nat: NetmapFull['nat']
    /** The base URL of the home relay, when one is chosen. */
    homeRelay?: string
  } {
    const nets = this.select(ref)
    if (nets.length === 0) throw new MeshError('NETWORK_NOT_JOINED', {message: 'no network joined'})
    const rt = nets.find((n) => n.netmap?.nat?.stun) ?? nets[0]!
    return {
      network: rt.record.name,
      controller: rt.record.controller,
      nat: rt.netmap?.nat,
      ...(rt.home?.current === undefined ? {} : {homeRelay: rt.home.current}),
    }
  }

  /**
   * The peer `mesh ping` pings (by name, node id or mesh address) with its network, as `status`
   * reports them (path, endpoint). PEER_NOT_FOUND when no joined network (or the one named) has
   * it; INVALID_ARGUMENT when several do.
   */
  async pingTarget(
    ref: string | undefined,
    peer: string,
  ): Promise<{network: NetworkStatus; peer: PeerStatus}> {
    const nets = this.select(ref)
    if (nets.length === 0) throw new MeshError('NETWORK_NOT_JOINED', {message: 'no network joined'})
    const found: {network: NetworkStatus; peer: PeerStatus}[] = []
    for (const rt of nets) {
      const st = await this.networkStatus(rt)
      for (const p of st.peers)
        if (p.name === peer || p.id === peer || p.address === peer) found.push({network: st, peer: p})
    }
    if (found.length === 0)
      throw new MeshError('PEER_NOT_FOUND', {
        message: `no peer ${peer} in ${ref === undefined ? 'any joined network' : `network ${ref}`}`,
      })
    if (found.length > 1)
      throw new MeshError('INVALID_ARGUMENT', {
        message: `several peers match ${peer} (in ${[...new Set(found.map((f) => f.network.name))].join(', ')})`,
        hint: 'name the network with --network, or the peer by its node id',
      })
    return found[0]!
  }
}
