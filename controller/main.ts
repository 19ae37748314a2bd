/**
 * The controller's composition root: options → data dir → store → state → NAT services (STUN,
 * endpoint discovery, relay) → HTTP/WS server, the first-start admin account, the ephemeral-node
 * reaper, and clean shutdown on SIGTERM/SIGINT.
 * `mesh controller start` calls main(); tests call startController() in-process.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {isIP} from 'node:net'
import {pino, type DestinationStream, type Logger} from 'pino'
import {every, systemClock, type Clock} from '../shared/clock.js'
import {KEY_SWEEP_EVERY_MS} from './key-expiry.js'
import {MeshError} from '../shared/errors.js'
import type {NatServices, UdpService} from '../shared/protocol/netmap.js'
import {buildServer, type ControllerServer} from './api/server.js'
import {loadOrCreateDiscoveryKey} from './discovery/key.js'
import {DiscoveryServer} from './discovery/server.js'
import {ControllerMetrics, registerNatMetrics} from './metrics.js'
import {RelayMetrics, type RelayServer} from './relay/server.js'
import {startBuiltInRelay, type BuiltInRelay} from './relay/builtin.js'
import {storeWrites} from './domain/writes.js'
import {PgListener} from './store/postgres/listener.js'
import {StunServer} from './stun/server.js'
import {ControllerState} from './state.js'
import {storageError, StorageFailureLog} from './store/errors.js'
import {SqliteStore} from './store/sqlite/sqlite-store.js'
import {openPostgres} from './store/postgres/open.js'
import {PostgresStore} from './store/postgres/postgres-store.js'
import {backupDatabase, restoreDatabase, type BackupResult} from './store/backup/index.js'
import {describeDatabase, parseDatabase, type DatabaseTarget} from './store/database.js'
import {PgChangeFeed} from './replicas/pg-change-feed.js'
import {SharedPresence} from './replicas/shared-presence.js'
import {PgSingletonLock} from './store/postgres/lock.js'
import {PgLoginLimits} from './store/postgres/login-limits.js'
import {PgPresenceTable} from './store/postgres/presence-table.js'
import type {InProcessPresenceOptions, Presence} from './presence.js'
import type {Store} from './store/store.js'
import type {Migration} from './store/sqlite/migrations.js'
import {loadOidcConfig, parseOidcConfig, type OidcConfigInput} from './auth/oidc-config.js'
import {openSecretsKey} from './auth/secrets-key.js'

export interface ControllerOptions {
  /** Holds the SQLite file (by default) and initial-admin-password; created 0700. */
  readonly dataDir: string
  /** HOST:PORT; port 0 picks a free one. Default 127.0.0.1:8080. */
  readonly listen?: string
  /** `sqlite:PATH` (default sqlite:DATA_DIR/mesh.db) or `postgres://USER:PASSWORD@HOST:PORT/DB`. */
  readonly database?: string
  /** URL put into join strings; default: derived from each request's Host header. */
  readonly publicUrl?: string
  readonly logLevel?: string
  /** Ephemeral nodes offline this long are removed. Default 120 s. */
  readonly ephemeralTimeoutSec?: number
  /** The first-start admin password; default MESH_ADMIN_PASSWORD, else generated. */
  readonly adminPassword?: string
  /** Where the JSON log lines go; default stdout. */
  readonly logDestination?: DestinationStream
  /**
   * The controller's one clock: state, the netmap and event hubs, the connection tracker, the
   * ephemeral reaper and the NAT services' rate limits read time and set timers on it. Default:
   * the system clock; tests pass a FakeClock (shared/testing/fake-clock.ts) and move it.
   */
  readonly clock?: Clock
  /** How often reported connection paths are merged and written (ms; default 1,000; tests). */
  readonly connectionFlushMs?: number
  readonly pingIntervalMs?: number
  /** Failed logins allowed per address and per user name per minute (default 10). */
  readonly loginFailuresPerMinute?: number
  /** Tests play an older binary with fewer migrations. */
  readonly migrations?: readonly Migration[]
  /**
   * STUN (RFC 5389) UDP HOST:PORT, or `off`. Default: the --listen host with port 3478 (port 0,
   * a free port, when the --listen port is 0).
   */
  readonly stunListen?: string
  /** RFC 5780 alternate HOST:PORT: another address and/or port of this host; none by default. */
  readonly stunAlternate?: string
  /**
   * Endpoint-discovery UDP HOST:PORT, or `off`. Default: the --listen host with port 51820
   * (port 0 when the --listen port is 0).
   */
  readonly discoveryListen?: string
  /** Comma-separated addresses or CIDRs of load balancers whose X-Forwarded-For is believed. */
  readonly trustedProxy?: string
  /** How often stand-alone relays heartbeat (ms; default 5,000; tests). */
  readonly relayHeartbeatMs?: number
  /**
   * The URL other relays reach this controller's built-in relay at (http(s)://HOST:PORT, the
   * controller's own listener). Given: the built-in relay is registered in the relays table and
   * accepts mesh links, so the built-in relays of replicas on one PostgreSQL mesh with each other.
   * Default: none, as a single controller had before (its relay dials stand-alone relays only).
   */
  readonly relayUrl?: string
  /** OpenID Connect issuers (issue 10), as an object (tests) ... */
  readonly oidc?: OidcConfigInput
  /** ... or a YAML/JSON file of them (--oidc-config); see controller/auth/oidc-config.ts. */
  readonly oidcConfigFile?: string
  /**
   * The secrets key that seals TOTP secrets at rest (--secrets-key-file): 32 bytes, base64, mode
   * 0600. Default DATA_DIR/secrets.key, made on the first start on SQLite; replicas on one
   * PostgreSQL share one given file. See controller/auth/secrets-key.ts.
   */
  readonly secretsKeyFile?: string
}

export interface RunningController {
  readonly url: string
  readonly dataDir: string
  readonly dbPath: string
  /** Set when this start created the admin account with a password it chose or was given. */
  readonly createdAdminPassword: string | undefined
  readonly logger: Logger
  readonly server: ControllerServer
  readonly state: ControllerState
  readonly store: Store
  readonly relay: RelayServer
  /** The built-in relay's registry of relays and its mesh links. */
  readonly relays: BuiltInRelay
  /** Absent when --stun-listen is off. */
  readonly stun: StunServer | undefined
  /** Absent when --discovery-listen is off. */
  readonly discovery: DiscoveryServer | undefined
  /** What full netmaps tell nodes about these services. */
  readonly nat: NatServices
  close(): Promise<void>
}

export const INITIAL_PASSWORD_FILE = 'initial-admin-password'

/** How often the ephemeral reaper looks: a quarter of the timeout, within 250 ms..10 s. */
export const ephemeralSweepMs = (timeoutMs: number): number => Math.max(250, Math.min(timeoutMs / 4, 10_000))

export function parseListen(
  text: string,
  flag = '--listen',
  example = '127.0.0.1:8080',
): {host: string; port: number} {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${flag}: expected HOST:PORT such as ${example}, got ${JSON.stringify(text)}`,
      hint: 'give an address and a port; port 0 picks a free one',
    })
  }
  return {host: m[1]!.replace(/^\[|\]$/g, ''), port}
}

export const DEFAULT_STUN_PORT = 3478
export const DEFAULT_DISCOVERY_PORT = 51820
const UNSPECIFIED_HOSTS = new Set(['0.0.0.0', '::'])

/**
 * A UDP service's address: `off` (undefined), the given HOST:PORT (HOST an IP address), or by
 * default the --listen host with `defaultPort` (0 when the --listen port is 0, so test
 * controllers never collide on a fixed port).
 */
export function parseUdpService(
  text: string | undefined,
  flag: string,
  listen: {host: string; port: number},
  defaultPort: number,
): {host: string; port: number} | undefined {
  if (text === 'off') return undefined
  const given = text !== undefined
  const at = given
    ? parseListen(text, flag, `0.0.0.0:${defaultPort}`)
    : {
        host: listen.host === 'localhost' ? '127.0.0.1' : listen.host,
        port: listen.port === 0 ? 0 : defaultPort,
      }
  if (isIP(at.host) === 0) {
    throw new MeshError('CONFIG_INVALID', {
      message: given
        ? `${flag}: the host must be an IP address, got ${JSON.stringify(at.host)}`
        : `${flag} defaults to the --listen host, which is not an IP address (${JSON.stringify(at.host)})`,
      hint: `give ${flag} IP:PORT, or ${flag} off`,
    })
  }
  return at
}

/** A UDP service as the netmap names it: no host when bound to every address (nodes use the controller URL's). */
const udpService = (address: string, port: number): UdpService =>
  UNSPECIFIED_HOSTS.has(address) ? {port} : {host: address, port}

/** The RFC 5780 alternate for StunServer: what differs from the primary (address and/or port). */
function stunAlternate(
  text: string | undefined,
  primary: {host: string; port: number},
): {address?: string; port?: number} | undefined {
  if (text === undefined) return undefined
  const alt = parseUdpService(text, '--stun-alternate', primary, DEFAULT_STUN_PORT)!
  const address = alt.host !== primary.host ? alt.host : undefined
  // Port 0 is a free port, so always a different one.
  const port = alt.port === 0 || alt.port !== primary.port ? alt.port : undefined
  if (address === undefined && port === undefined) {
    throw new MeshError('CONFIG_INVALID', {
      message: '--stun-alternate: give another address and/or port than --stun-listen',
    })
  }
  return {...(address === undefined ? {} : {address}), ...(port === undefined ? {} : {port})}
}

export {parseDatabase} from './store/database.js'

const dbPathOf = (t: DatabaseTarget): string => (t.kind === 'sqlite' ? t.path : '')

/**
 * This process's name among controller replicas: the application_name of its PostgreSQL
 * connections and the last word of the NOTIFYs its writes cause (no spaces; at most 63 bytes).
 */
export const replicaName = (): string =>
  `mc-${os
    .hostname()
    .replace(/[^A-Za-z0-9.-]/g, '')
    .slice(0, 32)}-${process.pid}-${randomBytes(3).toString('hex')}`

/**
 * The parts that make a controller one replica among several on one PostgreSQL: the store on a
 * pool named after the replica, the change feed and presence shared through NOTIFY and the
 * presence table, the failed-login limits in tables, and the advisory-lock singleton for the
 * reaper and the presence sweep.
 */
async function openReplicaParts(url: string, clock: Clock, logger: Logger, loginFailuresPerMinute: number) {
  const replica = replicaName()
  const log = logger.child({component: 'replicas', replica})
  const pool = await openPostgres(url, {applicationName: replica, log})
  const store = new PostgresStore(pool)
  const lock = new PgSingletonLock(pool)
  const feed = new PgChangeFeed({url, replica, store, clock, log})
  let shared: SharedPresence | undefined
  let relayListener: PgListener | undefined
  try {
    await feed.start()
  } catch (err) {
    await feed.close()
    await store.close()
    throw err
  }
  log.info({}, 'controller replica on PostgreSQL')
  return {
    replica,
    store,
    lock,
    feed,
    loginLimits: new PgLoginLimits(pool, {clock, max: loginFailuresPerMinute}),
    presence: (deps: InProcessPresenceOptions): Presence =>
      (shared = new SharedPresence({
        url,
        replica,
        table: new PgPresenceTable(pool),
        store,
        writes: deps.writes,
        lock,
        clock,
        log,
        ...(deps.beforeOffline ? {beforeOffline: deps.beforeOffline} : {}),
      })),
    start: async () => {
      await shared?.start()
    },
    /**
     * Runs `fn` when another replica changed the relay list (mesh_relays, migration 0007), and
     * after the notification connection (re)connects, since NOTIFY is lost while it is down.
     */
    watchRelays: async (fn: () => void) => {
      relayListener = new PgListener({
        url,
        channels: ['mesh_relays'],
        clock,
        log,
        onNotification: () => fn(),
        onConnected: () => fn(),
      })
      await relayListener.start()
    },
    close: async () => {
      await relayListener?.close()
      await shared?.close()
      await feed.close()
    },
  }
}

/** `mesh controller backup`: an online, consistent backup of the controller's database. */
export async function backupController(opts: {
  dataDir: string
  database?: string | undefined
  file: string
}): Promise<BackupResult> {
  return backupDatabase(parseDatabase(opts.database, path.resolve(opts.dataDir)), path.resolve(opts.file))
}

/** `mesh controller restore`: a backup into an empty database. */
export async function restoreController(opts: {
  dataDir: string
  database?: string | undefined
  file: string
}): Promise<{rows: number; schema: string; source: string; database: string}> {
  const target = parseDatabase(opts.database, path.resolve(opts.dataDir))
  if (target.kind === 'sqlite') fs.mkdirSync(path.dirname(target.path), {recursive: true, mode: 0o700})
  const r = await restoreDatabase(target, path.resolve(opts.file))
  return {...r, database: describeDatabase(target)}
}

/**
 * --trusted-proxy: comma-separated IPv4/IPv6 addresses or CIDRs of the load balancers in front
 * of this controller. Refused: anything else, and catch-alls (0.0.0.0/0, ::/0) that would let
 * any client forge its address.
 */
export function parseTrustedProxies(text: string | undefined): string[] {
  if (text === undefined || text.trim() === '') return []
  return text.split(',').map((raw) => {
    const item = raw.trim()
    const [addr, prefix, extra] = item.split('/')
    const family = isIP(addr ?? '')
    const bits = prefix === undefined ? undefined : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN
    const max = family === 6 ? 128 : 32
    if (family === 0 || extra !== undefined || (bits !== undefined && (!(bits >= 1) || bits > max))) {
      throw new MeshError('CONFIG_INVALID', {
        message: `--trusted-proxy: expected addresses or CIDRs of your load balancers (e.g. 10.0.0.5,10.1.0.0/24), got ${JSON.stringify(item)}`,
        hint: 'list only the load balancers; never 0.0.0.0/0',
      })
    }
    return item
  })
}

/** Validates --public-url (or `flag`): an http(s) URL without query or fragment; no trailing slash. */
export function parsePublicUrl(text: string | undefined, flag = '--public-url'): string | undefined {
  if (text === undefined) return undefined
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {
    url = undefined
  }
  if (
    !url ||
    !/^https?:$/.test(url.protocol) ||
    url.search !== '' ||
    url.hash !== '' ||
    url.username !== ''
  ) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${flag}: expected an http(s) URL such as https://mesh.example.com, got ${JSON.stringify(text)}`,
      hint:
        flag === '--public-url'
          ? 'give the URL nodes use to reach this controller'
          : "give the URL other relays reach this controller's own listener at",
    })
  }
  return url.href.replace(/\/+$/, '')
}

function prepareDataDir(dir: string): void {
  fs.mkdirSync(dir, {recursive: true, mode: 0o700})
  fs.chmodSync(dir, 0o700)
}

export async function startController(opts: ControllerOptions): Promise<RunningController> {
  const dataDir = path.resolve(opts.dataDir)
  const {host, port} = parseListen(opts.listen ?? '127.0.0.1:8080')
  const database = parseDatabase(opts.database, dataDir)
  /** The SQLite file, or the PostgreSQL URL without its password. */
  const dbPath = describeDatabase(database)
  const publicUrl = parsePublicUrl(opts.publicUrl)
  const relayUrl = parsePublicUrl(opts.relayUrl, '--relay-url')
  const trustedProxies = parseTrustedProxies(opts.trustedProxy)
  const logger = pino(
    {level: opts.logLevel ?? 'info', base: {pid: process.pid, component: 'controller'}},
    opts.logDestination ?? pino.destination({fd: 1, sync: true}),
  )
  prepareDataDir(dataDir)
  if (database.kind === 'sqlite') fs.mkdirSync(path.dirname(database.path), {recursive: true, mode: 0o700})

  const stunAt = parseUdpService(opts.stunListen, '--stun-listen', {host, port}, DEFAULT_STUN_PORT)
  const stunAlt = stunAt === undefined ? undefined : stunAlternate(opts.stunAlternate, stunAt)
  const discoveryAt = parseUdpService(
    opts.discoveryListen,
    '--discovery-listen',
    {host, port},
    DEFAULT_DISCOVERY_PORT,
  )

  const clock = opts.clock ?? systemClock
  const replicas =
    database.kind === 'postgres'
      ? await openReplicaParts(database.url, clock, logger, opts.loginFailuresPerMinute ?? 10)
      : undefined
  const store: Store =
    replicas?.store ?? (await SqliteStore.open(dbPathOf(database), {migrations: opts.migrations}))
  let server: ControllerServer | undefined
  let relay: RelayServer | undefined
  let relayHub: BuiltInRelay | undefined
  let stun: StunServer | undefined
  let discovery: DiscoveryServer | undefined
  try {
    const oidc =
      opts.oidcConfigFile !== undefined
        ? await loadOidcConfig(opts.oidcConfigFile)
        : opts.oidc && parseOidcConfig(opts.oidc, 'oidc')
    const secrets = await openSecretsKey({
      dataDir,
      file: opts.secretsKeyFile,
      backend: database.kind,
      writes: storeWrites(store),
      log: logger.child({component: 'secrets'}),
    })
    const state = new ControllerState(store, {
      clock,
      oidc,
      secrets,
      connectionFlushMs: opts.connectionFlushMs,
      loginFailuresPerMinute: opts.loginFailuresPerMinute,
      log: logger.child({component: 'state'}),
      ...(replicas
        ? {
            replica: replicas.replica,
            feed: replicas.feed,
            presence: replicas.presence,
            lock: replicas.lock,
            loginLimits: replicas.loginLimits,
          }
        : {}),
    })
    await replicas?.start()
    const createdAdminPassword = await bootstrapAdmin(state, dataDir, opts.adminPassword, logger)
    const metrics = new ControllerMetrics()
    const nat: NatServices = {stun: null, discovery: null, relays: [{region: 'default'}]}

    // ---- NAT traversal: STUN, endpoint discovery, and the relay (served by the HTTP server).
    if (stunAt) {
      stun = new StunServer({
        clock,
        primary: {address: stunAt.host, port: stunAt.port},
        ...(stunAlt ? {alternate: stunAlt} : {}),
      })
      const bound = await stun.start()
      nat.stun = {
        primary: udpService(bound.primary.address, bound.primary.port),
        ...(bound.other ? {alternate: udpService(bound.other.address, bound.other.port)} : {}),
      }
      logger.info({stun: bound.all}, 'STUN listening')
    }
    if (discoveryAt) {
      const key = loadOrCreateDiscoveryKey(dataDir)
      await state.telemetry.indexNodeKeys()
      const discoveryLog = logger.child({component: 'discovery'})
      const observedLog = new StorageFailureLog(discoveryLog, undefined, () => clock.now())
      discovery = new DiscoveryServer({
        now: () => clock.now(),
        host: discoveryAt.host,
        port: discoveryAt.port,
        privateKey: key.privateKey,
        lookupNode: (publicKey) => {
          const nodeId = state.telemetry.activeNodeByPublicKey(publicKey)
          return nodeId === undefined ? undefined : {nodeId}
        },
        onObserved: (o) => {
          state.telemetry.reportObservedEndpoint({id: o.nodeId}, o.endpoint).catch((err: unknown) => {
            const storage = storageError(err)
            if (storage) observedLog.report(storage, 'observed endpoint')
            else if (!(err instanceof MeshError && err.code === 'NOT_FOUND'))
              discoveryLog.warn({err, nodeId: o.nodeId}, 'observed endpoint update failed')
          })
        },
        onError: (err) => discoveryLog.warn({err}, 'discovery socket error'),
      })
      let bound: {address: string; port: number}
      try {
        bound = await discovery.listen()
      } catch (err) {
        throw new MeshError('LISTEN_FAILED', {
          message: `could not bind the discovery socket ${discoveryAt.host}:${discoveryAt.port}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          hint: 'pick a free UDP port (and an address of this host) with --discovery-listen, or --discovery-listen off',
          cause: err,
        })
      }
      nat.discovery = {publicKey: key.publicKey, service: udpService(bound.address, bound.port)}
      logger.info({discovery: bound, publicKey: key.publicKey}, 'endpoint discovery listening')
    }
    const stunStats = stun?.stats.bind(stun)
    const discoveryStats = discovery?.stats.bind(discovery)
    registerNatMetrics(metrics.registry, {
      ...(stunStats ? {stun: stunStats} : {}),
      ...(discoveryStats ? {discovery: discoveryStats} : {}),
    })
    // The built-in relay, the registry of stand-alone relays and the mesh between them. A node
    // removed (or no longer active) loses its relay socket at once, on every relay.
    relayHub = await startBuiltInRelay({
      dataDir,
      clock,
      store,
      writes: storeWrites(store),
      own: relayUrl === undefined ? undefined : {url: relayUrl, region: 'default'},
      authenticate: async (credential) => {
        const n = await state.auth.authenticateNode(credential)
        return n && {nodeId: n.id, networkId: n.networkId, active: n.status === 'active'}
      },
      removals: (fn) =>
        state.feed.onNodeChange((c) => {
          if (c.node?.status !== 'active') fn({nodeId: c.nodeId, networkId: c.networkId})
        }),
      metrics: new RelayMetrics(metrics.registry),
      log: logger.child({component: 'relay'}),
      nat,
      heartbeatMs: opts.relayHeartbeatMs,
      // The netmap hub knows who sees whom (issue 10). A network it holds no cache of (no netmap
      // session of it on this replica) is let through: the receiver's WireGuard has no entry for
      // a sender it does not see and drops whatever arrives from it.
      allowed: (networkId, src, dst) => server?.netmap.relayAllowed(networkId, src, dst) ?? true,
      // A node the hub knows as active in the sender's network but not connected to the relay
      // yet (both nodes came up at once): its first packets are held briefly, not dropped.
      expected: (networkId, nodeId) => server?.netmap.relayExpected(networkId, nodeId) ?? false,
      // Stand-alone relays learn the same from RELAY_API.visibility (registry.ts).
      visibility: {source: state.netmap, feed: state.feed},
    })
    relay = relayHub.relay

    server = await buildServer({
      state,
      metrics,
      logger,
      publicUrl,
      pingIntervalMs: opts.pingIntervalMs,
      relay,
      nat,
      trustedProxies,
      relays: relayHub.registry,
      relayMesh: relayUrl === undefined ? undefined : relayHub.mesh,
    })
    try {
      await server.app.listen({host, port})
    } catch (err) {
      throw new MeshError('LISTEN_FAILED', {
        message: `could not listen on ${host}:${port}: ${(err as Error).message}`,
        cause: err,
      })
    }
    // Connected nodes hear of stand-alone relays that come and go (a delta with `nat`).
    const hub = server.netmap
    relayHub.onRelaysChanged(() => hub.announceNat())
    const registry = relayHub.registry
    await replicas?.watchRelays(() => void registry.refresh())
    const addr = server.app.server.address()
    const boundPort = typeof addr === 'object' && addr ? addr.port : port
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`
    logger.info({url, dataDir, database: dbPath}, 'listening')

    const timeoutMs = (opts.ephemeralTimeoutSec ?? 120) * 1000
    const sweepStorageLog = new StorageFailureLog(logger.child({component: 'storage'}), undefined, () =>
      clock.now(),
    )
    const stopReaper = every(clock, ephemeralSweepMs(timeoutMs), () => {
      state.reaper.sweep(timeoutMs).catch((err: unknown) => {
        const storage = storageError(err)
        if (storage) sweepStorageLog.report(storage, 'ephemeral sweep')
        else logger.warn({err}, 'ephemeral sweep failed')
      })
    })

    // Node keys that expired are disabled, coming expiries announced (controller/key-expiry.ts).
    const stopKeySweep = every(clock, KEY_SWEEP_EVERY_MS, () => {
      state.keyExpiry.sweep().catch((err: unknown) => {
        const storage = storageError(err)
        if (storage) sweepStorageLog.report(storage, 'key-expiry sweep')
        else logger.warn({err}, 'key-expiry sweep failed')
      })
    })

    const srv = server
    const stunServer = stun
    const discoveryServer = discovery
    let closing: Promise<void> | undefined
    return {
      url,
      dataDir,
      dbPath,
      createdAdminPassword,
      logger,
      server: srv,
      state,
      store,
      relay,
      relays: relayHub,
      stun,
      discovery,
      nat,
      close: () =>
        (closing ??= (async () => {
          stopReaper()
          stopKeySweep()
          await relayHub?.close()
          await srv.close()
          stunServer?.close()
          await discoveryServer?.close()
          await state.close()
          await replicas?.close()
          await store.close()
          logger.info('stopped')
        })()),
    }
  } catch (err) {
    if (server) await server.close().catch(() => undefined)
    else await relay?.close().catch(() => undefined)
    await relayHub?.close().catch(() => undefined)
    stun?.close()
    await discovery?.close().catch(() => undefined)
    await replicas?.close().catch(() => undefined)
    await store.close()
    throw err
  }
}

/**
 * First start (no tenant yet): tenant `default` with superuser owner `admin`. The password is
 * the one given, else MESH_ADMIN_PASSWORD, else generated — a generated one is printed once to
 * stderr and written 0600 to DATA_DIR/initial-admin-password.
 */
async function bootstrapAdmin(
  state: ControllerState,
  dataDir: string,
  given: string | undefined,
  logger: Logger,
): Promise<string | undefined> {
  const fromEnv = process.env.MESH_ADMIN_PASSWORD
  const password = given ?? (fromEnv && fromEnv.length > 0 ? fromEnv : undefined)
  const chosen = password ?? randomBytes(18).toString('base64url')
  const created = await state.auth.bootstrap(chosen)
  if (!created) return undefined
  logger.info({tenant: 'default', username: 'admin'}, 'created the first tenant and its admin account')
  if (password === undefined) {
    const file = path.join(dataDir, INITIAL_PASSWORD_FILE)
    fs.writeFileSync(file, `${chosen}\n`, {mode: 0o600})
    fs.chmodSync(file, 0o600)
    process.stderr.write(
      `mesh controller: created user "admin" with password ${chosen}\n` +
        `  (shown once; also saved in ${file}, mode 0600 — delete it once you have logged in)\n`,
    )
  }
  return chosen
}

/** `mesh controller start`: run until SIGTERM/SIGINT, then shut down cleanly and exit 0. */
export async function main(opts: ControllerOptions): Promise<void> {
  const ctl = await startController(opts)
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      ctl.logger.info({signal}, 'shutting down')
      // A stuck close must not keep the process alive forever. Real time, not the clock: this
      // bounds real I/O (sockets, SQLite) at the end of the process, and only main() sets it.
      setTimeout(() => process.exit(1), 15_000).unref()
      ctl.close().then(
        () => resolve(),
        (err: unknown) => {
          ctl.logger.error({err}, 'shutdown failed')
          process.exit(1)
        },
      )
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
  process.exit(0)
}
