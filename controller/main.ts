/**
 * The controller's composition root: options → data dir → store → state → HTTP/WS server, the
 * first-start admin account, the ephemeral-node reaper, and clean shutdown on SIGTERM/SIGINT.
 * `mesh controller start` calls main(); tests call startController() in-process.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {pino, type DestinationStream, type Logger} from 'pino'
import {MeshError} from '../shared/errors.js'
import {buildServer, type ControllerServer} from './api/server.js'
import {ControllerMetrics} from './metrics.js'
import {ControllerState} from './state.js'
import {storageError, StorageFailureLog} from './store/sqlite/errors.js'
import {SqliteStore} from './store/sqlite/sqlite-store.js'
import type {Store} from './store/store.js'
import type {Migration} from './store/sqlite/migrations.js'

export interface ControllerOptions {
  /** Holds the SQLite file (by default) and initial-admin-password; created 0700. */
  readonly dataDir: string
  /** HOST:PORT; port 0 picks a free one. Default 127.0.0.1:8080. */
  readonly listen?: string
  /** `sqlite:PATH`; default sqlite:DATA_DIR/mesh.db. */
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
  /** Injected clock (tests). */
  readonly now?: () => Date
  readonly pingIntervalMs?: number
  /** Failed logins allowed per address and per user name per minute (default 10). */
  readonly loginFailuresPerMinute?: number
  /** Tests play an older binary with fewer migrations. */
  readonly migrations?: readonly Migration[]
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
  close(): Promise<void>
}

export const INITIAL_PASSWORD_FILE = 'initial-admin-password'

export function parseListen(text: string): {host: string; port: number} {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) {
    throw new MeshError('CONFIG_INVALID', {
      message: `--listen: expected HOST:PORT such as 127.0.0.1:8080, got ${JSON.stringify(text)}`,
      hint: 'give an address and a port; port 0 picks a free one',
    })
  }
  return {host: m[1]!.replace(/^\[|\]$/g, ''), port}
}

export function parseDatabase(url: string | undefined, dataDir: string): string {
  if (url === undefined) return path.join(dataDir, 'mesh.db')
  if (url.startsWith('sqlite:') && url.length > 'sqlite:'.length) {
    return path.resolve(url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, ''))
  }
  throw new MeshError('DATABASE_UNSUPPORTED', {
    message: `unsupported database URL ${JSON.stringify(url.replace(/\/\/[^@/]*@/, '//***@'))}`,
  })
}

/** Validates --public-url: an http(s) URL without query or fragment; no trailing slash. */
export function parsePublicUrl(text: string | undefined): string | undefined {
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
      message: `--public-url: expected an http(s) URL such as https://mesh.example.com, got ${JSON.stringify(text)}`,
      hint: 'give the URL nodes use to reach this controller',
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
  const dbPath = parseDatabase(opts.database, dataDir)
  const publicUrl = parsePublicUrl(opts.publicUrl)
  const logger = pino(
    {level: opts.logLevel ?? 'info', base: {pid: process.pid, component: 'controller'}},
    opts.logDestination ?? pino.destination({fd: 1, sync: true}),
  )
  prepareDataDir(dataDir)
  fs.mkdirSync(path.dirname(dbPath), {recursive: true, mode: 0o700})

  const store: Store = await SqliteStore.open(dbPath, {migrations: opts.migrations})
  let server: ControllerServer | undefined
  try {
    const state = new ControllerState(store, {
      now: opts.now,
      loginFailuresPerMinute: opts.loginFailuresPerMinute,
      log: logger.child({component: 'state'}),
    })
    const createdAdminPassword = await bootstrapAdmin(state, dataDir, opts.adminPassword, logger)
    const metrics = new ControllerMetrics()
    server = await buildServer({
      state,
      metrics,
      logger,
      publicUrl,
      pingIntervalMs: opts.pingIntervalMs,
    })
    try {
      await server.app.listen({host, port})
    } catch (err) {
      throw new MeshError('LISTEN_FAILED', {
        message: `could not listen on ${host}:${port}: ${(err as Error).message}`,
        cause: err,
      })
    }
    const addr = server.app.server.address()
    const boundPort = typeof addr === 'object' && addr ? addr.port : port
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`
    logger.info({url, dataDir, database: dbPath}, 'listening')

    const timeoutMs = (opts.ephemeralTimeoutSec ?? 120) * 1000
    const sweepStorageLog = new StorageFailureLog(logger.child({component: 'storage'}))
    const reaper = setInterval(
      () => {
        state.reapEphemeral(timeoutMs).catch((err: unknown) => {
          const storage = storageError(err)
          if (storage) sweepStorageLog.report(storage, 'ephemeral sweep')
          else logger.warn({err}, 'ephemeral sweep failed')
        })
      },
      Math.max(250, Math.min(timeoutMs / 4, 10_000)),
    )
    reaper.unref()

    const srv = server
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
      close: () =>
        (closing ??= (async () => {
          clearInterval(reaper)
          await srv.close()
          await state.close()
          await store.close()
          logger.info('stopped')
        })()),
    }
  } catch (err) {
    await server?.close().catch(() => undefined)
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
  const created = await state.bootstrap(chosen)
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
      // A stuck close must not keep the process alive forever.
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
