/**
 * meshd's composition root: options -> logger, state store, WireGuard driver, Backend, socket
 * API; then it runs until SIGTERM/SIGINT. `mesh daemon run` calls main(); tests call
 * startDaemon() with a fake driver and stop it through the returned handle.
 */
import {systemClock, type Clock} from '../shared/clock.js'
import path from 'node:path'
import {pino, type Logger} from 'pino'
import {MeshError} from '../shared/errors.js'
import {defaultDaemonStateDir, defaultSocketPath} from '../shared/paths.js'
import {handlers} from './api/routes.js'
import {claimSocketPath, serveApi} from './api/server.js'
import {StatusWatch} from './api/watch.js'
import {Backend} from './backend.js'
import {absentNft, Firewall} from './firewall/firewall.js'
import {NETMAP_WRITE_MS, StateStore} from './state-store.js'
import type {WireGuardDriver} from './wireguard/driver.js'
import {selectDriver, type BackendChoice} from './wireguard/select.js'

export interface DaemonOptions {
  socket?: string
  stateDir?: string
  /** Prefix of the interfaces meshd names itself (mesh0, mesh1, ...); at most 12 characters. */
  interfacePrefix?: string
  wireguard?: BackendChoice
  logLevel?: string
  /** Remove the WireGuard interfaces on SIGTERM/SIGINT instead of leaving them up. */
  downOnExit?: boolean
  /** Tests: a driver instead of the real backend selection (and no root check). */
  driver?: WireGuardDriver
  /**
   * Tests: what puts inbound rules into nftables. Default: the real `nft`, or, with a test
   * `driver`, one that behaves as if nft were not installed (nothing runs on the test machine).
   */
  firewall?: Firewall
  logger?: Logger
  reportIntervalMs?: number
  maxReconnectDelayMs?: number
  /** Tests: the delay before the n-th retry of a failed apply (default applyRetryDelay). */
  retryDelayMs?: (attempt: number) => number
  /** Tests: a FakeClock for the daemon's state machines (paths, reports, retries). */
  clock?: Clock
}

export interface DaemonHandle {
  readonly socketPath: string
  readonly stateDir: string
  readonly backend: Backend
  readonly driver: WireGuardDriver
  readonly log: Logger
  stop(opts?: {removeInterfaces?: boolean}): Promise<void>
}

const PREFIX_RE = /^[a-zA-Z][a-zA-Z0-9_-]{0,11}$/

export async function startDaemon(opts: DaemonOptions = {}): Promise<DaemonHandle> {
  if (!opts.driver && process.getuid?.() !== 0)
    throw new MeshError('ROOT_REQUIRED', {
      message: 'meshd must run as root (it creates WireGuard interfaces)',
    })
  const interfacePrefix = opts.interfacePrefix ?? 'mesh'
  if (!PREFIX_RE.test(interfacePrefix))
    throw new MeshError('INVALID_ARGUMENT', {
      message:
        'the interface prefix must be 1-12 letters, digits, dashes or underscores, starting with a letter',
    })
  const socketPath = path.resolve(opts.socket ?? defaultSocketPath())
  const stateDir = path.resolve(opts.stateDir ?? defaultDaemonStateDir())
  const log =
    opts.logger ??
    pino({
      name: 'meshd',
      level: opts.logLevel ?? 'info',
      // Defence in depth: nothing logs these on purpose.
      redact: {paths: ['privateKey', '*.privateKey', 'credential', '*.credential'], censor: '[secret]'},
    })
  // Before any state or interface is touched: a second meshd must not fight the running one.
  await claimSocketPath(socketPath)
  const store = new StateStore(stateDir, {
    netmapWriteMs: NETMAP_WRITE_MS,
    ...(opts.clock !== undefined && {clock: opts.clock}),
    onWriteError: (err, file) => log.warn({file, err: String(err)}, 'writing the netmap cache failed'),
  })
  const driver =
    opts.driver ??
    (await selectDriver(opts.wireguard ?? 'auto', {
      logDir: path.join(stateDir, 'log'),
      log: (level, msg, extra) => log[level](extra ?? {}, msg),
    }))
  log.info({backend: driver.kind, stateDir, interfacePrefix}, 'meshd starting')
  const backend = new Backend({
    driver,
    store,
    log,
    interfacePrefix,
    firewall: opts.firewall ?? new Firewall(opts.driver ? {run: absentNft} : {}),
    ...(opts.reportIntervalMs !== undefined && {reportIntervalMs: opts.reportIntervalMs}),
    ...(opts.maxReconnectDelayMs !== undefined && {maxReconnectDelayMs: opts.maxReconnectDelayMs}),
    ...(opts.retryDelayMs !== undefined && {retryDelayMs: opts.retryDelayMs}),
    ...(opts.clock !== undefined && {clock: opts.clock}),
  })
  try {
    await backend.start()
  } catch (err) {
    await backend.close()
    await driver.close()
    throw err
  }
  let api
  try {
    const watch = new StatusWatch({source: backend, clock: opts.clock ?? systemClock, log})
    api = await serveApi({socketPath, handlers: handlers(backend), log, watch})
  } catch (err) {
    await backend.close()
    await driver.close()
    throw err
  }
  let stopped: Promise<void> | undefined
  return {
    socketPath,
    stateDir,
    backend,
    driver,
    log,
    stop: (stopOpts = {}) =>
      (stopped ??= (async () => {
        await api.close()
        await backend.close({removeInterfaces: stopOpts.removeInterfaces ?? opts.downOnExit ?? false})
        // The netmap cache is written coalesced (daemon/state-store.ts): the last one goes now.
        await store.flush()
        await driver.close()
        log.info({}, 'meshd stopped')
      })()),
  }
}

/** Runs meshd in the foreground until SIGTERM or SIGINT. */
export async function main(opts: DaemonOptions = {}): Promise<void> {
  const daemon = await startDaemon(opts)
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      daemon.log.info({signal}, 'stopping')
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      const exitSoon = (): void => {
        // Everything is closed; should a handle still hold the event loop open (a socket that
        // raced the stop), say so and exit rather than linger as a half-stopped daemon.
        setTimeout(() => {
          daemon.log.warn({}, 'handles still open 3 s after stopping; exiting')
          process.exit(0)
        }, 3_000).unref()
        resolve()
      }
      void daemon.stop().then(exitSoon, (err: unknown) => {
        daemon.log.error({err: String(err)}, 'stop failed')
        exitSoon()
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}
