/**
 * The stand-alone relay (`mesh relay start`) and relay keys (`mesh relay key create`): the single
 * entry point the CLI imports for relays (test/architecture.unit.test.ts).
 *
 * Why its own entry and not controller/main.ts: a relay process needs the relay code and HTTP,
 * not the store, PostgreSQL, SQLite or the controller's state; importing controller/main.ts
 * would load all of them (and better-sqlite3's native module) into every relay.
 *
 * A stand-alone relay runs THE SAME RelayServer as the controller hosts, with:
 * - authenticate: the controller's answer to "whose credential is this" (node-auth.ts, cached);
 * - removals: the `gone` list of each heartbeat answer (at most one beat late);
 * - forward: the relay mesh (mesh.ts), whose peers and token come with each heartbeat answer;
 * - allowed: who may see whom under the ACL policy (visibility.ts), fetched from the controller
 *   and fetched again when a heartbeat answer says it changed.
 * It serves RELAY_WS_PATH (nodes), RELAY_MESH_WS_PATH (other relays), GET /healthz (what
 * `mesh netcheck` and meshd's home-relay probe time) and GET /metrics (Prometheus).
 */
import http, {type IncomingMessage, type ServerResponse} from 'node:http'
import {isIP} from 'node:net'
import type {Duplex} from 'node:stream'
import {pino, type DestinationStream, type Logger} from 'pino'
import {Registry} from 'prom-client'
import {every, systemClock, type Clock} from '../../shared/clock.js'
import {MeshError} from '../../shared/errors.js'
import {
  RELAY_API,
  RELAY_MESH_WS_PATH,
  RelayHeartbeatResponseSchema,
  type RelayHeartbeatResponse,
} from '../../shared/relay/control.js'
import {RELAY_WS_PATH} from '../../shared/relay/frame.js'
import {RelayMesh} from './mesh.js'
import {ControllerNodeAuth} from './node-auth.js'
import {RelayMetrics, RelayServer, type RelayIdentity} from './server.js'
import {RelayVisibilityCache} from './visibility.js'

export interface RelayOptions {
  /** The controller's base URL (http or https). */
  readonly controller: string
  /** A key from `mesh relay key create` (or MESH_RELAY_KEY). */
  readonly relayKey: string
  /** HOST:PORT; port 0 picks a free one. Default 127.0.0.1:8081. */
  readonly listen?: string
  /** Checked against the key's region when given. */
  readonly region?: string
  /** The URL nodes and other relays reach this relay at; default http://LISTEN. */
  readonly publicUrl?: string
  readonly logLevel?: string
  readonly logDestination?: DestinationStream
  /** Heartbeat timers run on it; default the system clock. */
  readonly clock?: Clock
  /** Sockets that do not answer a ping within this interval are dropped (default 30 s). */
  readonly pingIntervalMs?: number
}

export interface RunningRelay {
  /** The URL it registered with (public URL, else its listen address). */
  readonly url: string
  readonly region: string
  readonly relay: RelayServer
  readonly mesh: RelayMesh
  readonly auth: ControllerNodeAuth
  /** Who may see whom (ACL policy), as far as this relay learnt it. */
  readonly visibility: RelayVisibilityCache
  readonly logger: Logger
  /** Beats now (tests; the timer beats by itself). */
  heartbeat(): Promise<RelayHeartbeatResponse>
  /** Stops beating and closes every socket (the controller drops it after its liveness window). */
  close(): Promise<void>
}

/** A visibility answer at RELAY_VISIBILITY_LIMITS is about 12 MB of JSON; more is refused. */
const VISIBILITY_MAX_BYTES = 16 * 1024 * 1024

/** The body as JSON, read only up to `max` bytes (more: an error; not JSON: undefined). */
async function readJsonLimited(res: Response, max: number): Promise<unknown> {
  const declared = Number(res.headers.get('content-length') ?? NaN)
  if (declared > max) {
    await res.body?.cancel()
    throw new Error(`answer of ${declared} bytes is over ${max}`)
  }
  const chunks: Uint8Array[] = []
  let size = 0
  if (res.body)
    for await (const chunk of res.body) {
      size += chunk.byteLength
      if (size > max) throw new Error(`answer is over ${max} bytes`)
      chunks.push(chunk)
    }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

function parseHostPort(text: string): {host: string; port: number} {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535)
    throw new MeshError('CONFIG_INVALID', {
      message: `--listen: expected HOST:PORT such as 127.0.0.1:8081, got ${JSON.stringify(text)}`,
    })
  return {host: m[1]!.replace(/^\[|\]$/g, ''), port}
}

function httpBase(text: string, flag: string): string {
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {
    url = undefined
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.search !== '' || url.hash !== '')
    throw new MeshError('CONFIG_INVALID', {
      message: `${flag}: expected an http(s) URL such as https://relay.example.com, got ${JSON.stringify(text)}`,
    })
  return url.href.replace(/\/+$/, '')
}

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  const controller = httpBase(opts.controller, '--controller')
  const {host, port} = parseHostPort(opts.listen ?? '127.0.0.1:8081')
  const clock = opts.clock ?? systemClock
  const logger = pino(
    {level: opts.logLevel ?? 'info', base: {pid: process.pid, component: 'relay'}},
    opts.logDestination ?? pino.destination({fd: 1, sync: true}),
  )
  const registry = new Registry()
  const auth = new ControllerNodeAuth({controller, relayKey: opts.relayKey, now: () => clock.now()})
  /** Mesh tokens heard from the controller, newest first (two kept: a new token never cuts links). */
  const tokens: string[] = []
  const mesh = new RelayMesh({
    selfUrl: undefined, // set below, once the port is known
    acceptTokens: () => tokens,
    log: logger,
  })
  const removalListeners = new Set<(r: RelayIdentity) => void>()
  const visibilityUrl = new URL(RELAY_API.visibility, controller).toString()
  const visibility = new RelayVisibilityCache({
    now: () => clock.now(),
    log: logger,
    fetch: async (networkId) => {
      const res = await fetch(visibilityUrl, {
        method: 'POST',
        headers: {authorization: `Bearer ${opts.relayKey}`, 'content-type': 'application/json'},
        body: JSON.stringify({networkId}),
        signal: AbortSignal.timeout(10_000),
        redirect: 'error',
      })
      const body = await readJsonLimited(res, VISIBILITY_MAX_BYTES)
      if (!res.ok) throw MeshError.fromWire(body, res.status)
      return body
    },
  })
  const relay = new RelayServer({
    authenticate: auth.authenticate,
    removals: (fn) => {
      removalListeners.add(fn)
      return () => removalListeners.delete(fn)
    },
    forward: mesh.forward,
    allowed: visibility.allowed,
    metrics: new RelayMetrics(registry),
    log: logger,
    now: () => clock.now(),
    ...(opts.pingIntervalMs === undefined ? {} : {pingIntervalMs: opts.pingIntervalMs}),
  })
  mesh.attach(relay)

  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const p = (req.url ?? '/').split('?')[0]
    if (req.method === 'GET' && p === '/healthz') {
      res.writeHead(200, {'content-type': 'application/json'}).end('{"status":"ok"}')
    } else if (req.method === 'GET' && p === '/metrics') {
      void registry
        .metrics()
        .then((text) => res.writeHead(200, {'content-type': registry.contentType}).end(text))
    } else if (p === RELAY_WS_PATH || p === RELAY_MESH_WS_PATH) {
      res.writeHead(426, {upgrade: 'websocket', connection: 'Upgrade'}).end()
    } else res.writeHead(404).end()
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const p = (req.url ?? '/').split('?')[0]
    if (p === RELAY_WS_PATH) relay.handleUpgrade(req, socket, head)
    else if (p === RELAY_MESH_WS_PATH) mesh.handleUpgrade(req, socket, head)
    else socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
  })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
  } catch (err) {
    await relay.close()
    throw new MeshError('LISTEN_FAILED', {
      message: `could not listen on ${host}:${port}: ${(err as Error).message}`,
      cause: err,
    })
  }
  const addr = server.address()
  const boundPort = typeof addr === 'object' && addr ? addr.port : port
  const unreachable = host === '0.0.0.0' || host === '::' || (isIP(host) === 0 && host !== 'localhost')
  if (opts.publicUrl === undefined && unreachable) {
    await relay.close()
    server.close()
    throw new MeshError('CONFIG_INVALID', {
      message: `--listen ${host}: nodes cannot reach a relay at that address`,
      hint: 'give --public-url, the URL nodes and other relays reach this relay at',
    })
  }
  const url =
    opts.publicUrl !== undefined
      ? httpBase(opts.publicUrl, '--public-url')
      : `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`
  mesh.setSelfUrl(url)

  const heartbeatUrl = new URL(RELAY_API.heartbeat, controller).toString()
  let beatMs = 5_000
  const beat = async (): Promise<RelayHeartbeatResponse> => {
    let res: Response
    try {
      res = await fetch(heartbeatUrl, {
        method: 'POST',
        headers: {authorization: `Bearer ${opts.relayKey}`, 'content-type': 'application/json'},
        body: JSON.stringify({
          url,
          ...(opts.region === undefined ? {} : {region: opts.region}),
          connected: relay.connections,
        }),
        signal: AbortSignal.timeout(5_000),
        redirect: 'error',
      })
    } catch (err) {
      throw new MeshError('CONTROLLER_UNREACHABLE', {
        message: `cannot reach the controller at ${controller}: ${(err as Error).message}`,
        cause: err,
      })
    }
    const body: unknown = await res.json().catch(() => undefined)
    if (!res.ok) throw MeshError.fromWire(body, res.status)
    const r = RelayHeartbeatResponseSchema.parse(body)
    if (tokens[0] !== r.meshToken) {
      tokens.unshift(r.meshToken)
      tokens.length = Math.min(tokens.length, 2)
    }
    for (const g of r.gone) {
      auth.forget(g.nodeId)
      for (const fn of removalListeners) fn(g)
    }
    mesh.setPeers(r.relays, r.meshToken)
    if (r.visibility) visibility.stale(r.visibility)
    beatMs = r.heartbeatMs
    return r
  }

  let first: RelayHeartbeatResponse
  try {
    first = await beat()
  } catch (err) {
    await relay.close()
    await mesh.close()
    server.close()
    throw err
  }
  logger.info({url, controller, region: first.region}, 'relay registered with the controller')

  // Beats at the interval the controller asks for; a failed beat is logged and retried next time.
  let stopBeats = (): void => undefined
  let failing = false
  const schedule = (ms: number): void => {
    stopBeats()
    stopBeats = every(clock, ms, () => {
      beat().then(
        () => {
          if (failing) logger.info({controller}, 'heartbeat answered again')
          failing = false
          if (beatMs !== ms) schedule(beatMs)
        },
        (err: unknown) => {
          if (!failing) logger.warn({err: String(err)}, 'heartbeat failed')
          failing = true
        },
      )
    })
  }
  schedule(beatMs)

  let closing: Promise<void> | undefined
  return {
    url,
    region: first.region,
    relay,
    mesh,
    auth,
    visibility,
    logger,
    heartbeat: beat,
    close: () =>
      (closing ??= (async () => {
        stopBeats()
        await mesh.close()
        await relay.close()
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
        logger.info('stopped')
      })()),
  }
}

/** `mesh relay start`: run until SIGTERM/SIGINT, then close every socket and exit 0. */
export async function main(opts: RelayOptions): Promise<void> {
  const r = await startRelay(opts)
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      r.logger.info({signal}, 'shutting down')
      setTimeout(() => process.exit(1), 10_000).unref()
      r.close().then(
        () => resolve(),
        () => process.exit(1),
      )
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
  process.exit(0)
}
