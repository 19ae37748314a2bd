/**
 * The controller's HTTP server: fastify serving every ROUTES entry through one generic loop
 * (authenticate per route.auth, parse params/query/body with the route's zod schemas, resolve
 * and authorize the named object, call the handler), health/metrics/OpenAPI endpoints, the
 * WebSocket endpoints (netmap, events, and the relay when given), and the one error mapping
 * that turns anything into {error:{code,...}}.
 *
 * No client input may produce a 5xx: fastify's own errors (FST_ERR_*) are mapped to their 4xx
 * codes, unknown routes to NOT_FOUND, and only a genuine bug answers INTERNAL.
 */
import {randomUUID} from 'node:crypto'
import type {IncomingMessage, ServerResponse} from 'node:http'
import type {Socket} from 'node:net'
import type {Duplex} from 'node:stream'
import Fastify, {type FastifyInstance, type FastifyReply, type FastifyRequest} from 'fastify'
import type {Logger} from 'pino'
import type {z} from 'zod'
import {MeshError, isMeshError, type ErrorCode} from '../../shared/errors.js'
import {LIMITS, ROUTES, WS_PATHS, type RouteDef, type RouteId} from '../../shared/protocol/control-api.js'
import type {ControllerMetrics} from '../metrics.js'
import type {Principal} from '../auth/auth.js'
import type {RequestMeta} from '../context.js'
import type {ControllerState} from '../state.js'
import {isStorageErrorCode, storageError, StorageFailureLog} from '../store/errors.js'
import type {StoredNode} from '../store/store.js'
import {EventHub} from './events.js'
import {makeHandlers, ROUTE_SCOPES, type HandlerContext, type Scope} from './handlers.js'
import {NetmapHub} from './netmap.js'
import {buildOpenApi} from './openapi.js'
import {rawErrorResponse} from './raw-response.js'
import type {NatServices} from '../../shared/protocol/netmap.js'
import type {RelayServer} from '../relay/server.js'
import {registerRelayRoutes, type RelayRegistry} from '../relay/registry.js'
import {RELAY_MESH_WS_PATH} from '../../shared/relay/control.js'

export interface ServerOptions {
  readonly state: ControllerState
  readonly metrics: ControllerMetrics
  readonly logger: Logger
  /** The URL put into join strings; derived from the request's Host when absent. */
  readonly publicUrl?: string | undefined
  readonly pingIntervalMs?: number | undefined
  /** Serves WS_PATHS.relay; without it that path is NOT_FOUND. Closed by close(). */
  readonly relay?: RelayServer | undefined
  /** The NAT services full netmaps name (see NatServices); read at every full map. */
  readonly nat?: NatServices | undefined
  /**
   * Load balancers whose X-Forwarded-For is believed (addresses or CIDRs, parseTrustedProxies):
   * a request from one of them is recorded (audit, login limits) with the client address it
   * forwards. Never every sender: a client reaching the controller directly could forge it.
   */
  readonly trustedProxies?: readonly string[] | undefined
  /** Serves the REST routes stand-alone relays call (controller/relay/registry.ts). */
  readonly relays?: RelayRegistry | undefined
  /** Serves RELAY_MESH_WS_PATH: other relays' mesh links to the built-in relay (controller --relay-url). */
  readonly relayMesh?: {handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void} | undefined
}

export interface ControllerServer {
  readonly app: FastifyInstance
  readonly netmap: NetmapHub
  readonly events: EventHub
  /** Closes WebSockets with 1001, then the HTTP server. */
  close(): Promise<void>
}

/** fastify's own error codes → ours. Everything here is the client's doing. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_BAD_URL: 'NOT_FOUND',
  FST_ERR_ASYNC_CONSTRAINT: 'VALIDATION_FAILED',
  FST_ERR_VALIDATION: 'VALIDATION_FAILED',
}

/** Turns any thrown value into a MeshError; `bug` is true for what no client input explains. */
export function toMeshError(err: unknown): {error: MeshError; bug: boolean} {
  if (isMeshError(err)) return {error: err, bug: false}
  // A full or broken disk is the host's doing: 503 with its own code, not INTERNAL.
  const storage = storageError(err)
  if (storage) return {error: storage, bug: false}
  const e = err as {code?: unknown; statusCode?: unknown; message?: unknown}
  if (typeof e?.code === 'string' && Object.hasOwn(FASTIFY_CODES, e.code)) {
    const code = FASTIFY_CODES[e.code] as ErrorCode
    return {error: new MeshError(code), bug: false}
  }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const code: ErrorCode =
      e.statusCode === 413
        ? 'PAYLOAD_TOO_LARGE'
        : e.statusCode === 415
          ? 'UNSUPPORTED_MEDIA_TYPE'
          : e.statusCode === 404
            ? 'NOT_FOUND'
            : e.statusCode === 429
              ? 'RATE_LIMITED'
              : 'VALIDATION_FAILED'
    return {
      error: new MeshError(code, {message: typeof e.message === 'string' ? e.message : undefined}),
      bug: false,
    }
  }
  return {error: new MeshError('INTERNAL'), bug: true}
}

/** "cidr: expected string"-style messages naming each bad field (at most five). */
export function validationError(where: 'params' | 'query' | 'body', error: z.ZodError): MeshError {
  const issues = error.issues.map((i) => ({
    path: i.path.length > 0 ? i.path.map(String).join('.') : where,
    message: i.message.replace(/^Invalid input: /, ''),
  }))
  const message = issues
    .slice(0, 5)
    .map((i) => `${i.path}: ${i.message}`)
    .join('; ')
  return new MeshError('VALIDATION_FAILED', {message, detail: {in: where, issues: issues.slice(0, 20)}})
}

const bearer = (req: FastifyRequest): string | undefined => {
  const h = req.headers.authorization
  if (typeof h !== 'string') return undefined
  return /^Bearer (\S{1,300})$/i.exec(h)?.[1]
}

/**
 * The checks `ws` makes before a handshake (RFC 6455 4.2.1), done first so a bad upgrade gets
 * our error body instead of ws's plain-text one.
 */
function upgradeProblem(req: IncomingMessage): MeshError | undefined {
  if (req.method !== 'GET')
    return new MeshError('METHOD_NOT_ALLOWED', {message: 'WebSocket upgrades use GET'})
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    return new MeshError('VALIDATION_FAILED', {message: 'upgrade: expected websocket'})
  }
  if (!/^[+/0-9A-Za-z]{22}==$/.test(req.headers['sec-websocket-key'] ?? '')) {
    return new MeshError('VALIDATION_FAILED', {message: 'sec-websocket-key: missing or invalid'})
  }
  const version = req.headers['sec-websocket-version']
  if (version !== '13' && version !== '8') {
    return new MeshError('VALIDATION_FAILED', {message: 'sec-websocket-version: expected 13'})
  }
  return undefined
}

/**
 * Lingering close bounds: after an early 413 we read and discard at most this much more of the
 * client's body, for at most this long, before we close. Enough for a client that sends a few
 * MiB too many to finish and read our reply; a client that keeps sending is cut off.
 */
export const LINGER_MAX_BYTES = 16 * 1024 * 1024
export const LINGER_MAX_MS = 5_000

const lingering = new WeakSet<Socket>()

/** Retry-After on STORAGE_FULL: freeing disk space takes a person a while. */
const STORAGE_RETRY_AFTER_SEC = 30

/**
 * Lingering close (RFC 9112 section 9.6; Apache and nginx do the same). A server that answers
 * before it has read the whole body (our 413) and then closes with unread bytes in its receive
 * buffer makes the kernel send a reset: the client's send fails, and it often reports the reset
 * instead of our reply. So when node would close such a connection (socket.destroySoon, called
 * once a `Connection: close` reply is written), we only shut down our sending side (FIN) and
 * keep reading and discarding until the client closes, LINGER_MAX_BYTES were read, or
 * LINGER_MAX_MS passed, whichever comes first.
 */
function lingerOnClose(socket: Socket): void {
  if (lingering.has(socket)) return
  lingering.add(socket)
  const s = socket as Socket & {destroySoon?: () => void}
  s.destroySoon = () => {
    if (socket.destroyed) return
    if (socket.writable) socket.end()
    let read = 0
    const timer = setTimeout(() => socket.destroy(), LINGER_MAX_MS)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
    // A 'data' listener also takes the socket back from node's native parser consumer, so every
    // byte passes here; node's parser keeps discarding the rest of the request body.
    socket.on('data', (chunk: Buffer) => {
      read += chunk.length
      if (read > LINGER_MAX_BYTES) socket.destroy()
    })
    socket.resume()
  }
}

/** The 413 for a declared Content-Length over the limit, sent instead of `100 Continue`. */
function refuseBeforeContinue(req: IncomingMessage, res: ServerResponse): void {
  const requestId = randomUUID()
  const body = JSON.stringify(new MeshError('PAYLOAD_TOO_LARGE').toWire(requestId))
  lingerOnClose(req.socket)
  res.writeHead(413, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    // We will not read the body: the connection cannot carry another request.
    connection: 'close',
  })
  res.end(body)
}

const HOST_RE = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/

export async function buildServer(opts: ServerOptions): Promise<ControllerServer> {
  const {state, metrics, logger} = opts
  const app = Fastify({
    loggerInstance: logger,
    trustProxy: opts.trustedProxies && opts.trustedProxies.length > 0 ? [...opts.trustedProxies] : false,
    genReqId: () => randomUUID(),
    bodyLimit: LIMITS.maxBodyBytes,
    return503OnClosing: true,
    routerOptions: {maxParamLength: 200, ignoreTrailingSlash: false},
    // Malformed URLs and the like never reach a route: answer them in our error format.
    // Requests node's HTTP parser rejects (bad request line, header overflow, smuggling
    // attempts) never reach fastify: answer them in our format and close.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy()
        return
      }
      const error =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? new MeshError('VALIDATION_FAILED', {message: 'the request headers are larger than 16 KiB'})
          : new MeshError('VALIDATION_FAILED', {message: 'the request is not valid HTTP/1.1'})
      socket.end(rawErrorResponse(error))
    },
    frameworkErrors: (err, req, reply) => {
      const {error} = toMeshError(err)
      void (reply as FastifyReply)
        .header('x-request-id', req.id)
        .code(error.status)
        .send(error.toWire(req.id))
    },
  })
  const handlers = makeHandlers(state)
  const netmap = new NetmapHub(
    {
      clock: state.clock,
      auth: state.auth,
      presence: state.presence,
      telemetry: state.telemetry,
      feed: state.feed,
      connections: state.connections,
      source: state.netmap,
    },
    metrics,
    logger.child({component: 'netmap'}),
    {
      pingIntervalMs: opts.pingIntervalMs,
      nat: opts.nat,
    },
  )
  const events = new EventHub(
    {
      clock: state.clock,
      auth: state.auth,
      feed: state.feed,
      presence: state.presence,
      nodes: state,
    },
    metrics,
    logger.child({component: 'events'}),
    {
      pingIntervalMs: opts.pingIntervalMs,
    },
  )

  // ---- body parsing: JSON only, our own parser so every failure has our code.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', {parseAs: 'string'}, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') {
      done(null, undefined)
      return
    }
    try {
      done(null, JSON.parse(text))
    } catch {
      done(new MeshError('INVALID_JSON'), undefined)
    }
  })

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id)
  })
  app.addHook('onResponse', async (req, reply) => {
    const labels = {
      route: req.routeOptions.url ?? 'unmatched',
      method: req.method,
      status: String(reply.statusCode),
    }
    metrics.httpRequests.inc(labels)
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000)
  })

  const storageLog = new StorageFailureLog(logger.child({component: 'storage'}), undefined, () =>
    state.clock.now(),
  )
  app.setErrorHandler((err, req, reply) => {
    const {error, bug} = toMeshError(err)
    if (bug) req.log.error({err}, 'request failed')
    else if (isStorageErrorCode(error.code))
      storageLog.report(error, `${req.method} ${req.routeOptions.url ?? '?'}`)
    else if (error.status >= 500) req.log.warn({err}, 'request failed')
    if (error.code === 'RATE_LIMITED') void reply.header('retry-after', '60')
    if (error.code === 'STORAGE_FULL') void reply.header('retry-after', String(STORAGE_RETRY_AFTER_SEC))
    // The body was not (fully) read: the reply closes the connection, lingering so the client
    // still reads it (fastify itself sets `connection: close` on body errors).
    if (error.code === 'PAYLOAD_TOO_LARGE') {
      lingerOnClose(req.raw.socket)
      void reply.header('connection', 'close')
    }
    return reply.code(error.status).send(error.toWire(req.id))
  })
  app.setNotFoundHandler((req, reply) => {
    const error = new MeshError('NOT_FOUND', {message: `no route ${req.method} ${req.url.split('?')[0]}`})
    return reply.code(404).send(error.toWire(req.id))
  })

  // ---- operational endpoints
  app.get('/healthz', async () => ({status: 'ok'}))
  // Ready = the database answers and a write commits (SqliteStore.ping): a controller whose
  // disk is full answers 503 STORAGE_FULL here, so a load balancer takes it out until space is
  // freed, and puts it back by itself after.
  app.get('/readyz', async (req, reply) => {
    try {
      await state.ping()
      return {status: 'ok'}
    } catch (err) {
      const {error: mapped} = toMeshError(err)
      let error: MeshError
      if (isStorageErrorCode(mapped.code)) {
        error = mapped
        storageLog.report(mapped, 'readiness probe')
        if (mapped.code === 'STORAGE_FULL') void reply.header('retry-after', String(STORAGE_RETRY_AFTER_SEC))
      } else {
        req.log.warn({err}, 'readiness check failed')
        error = new MeshError('NOT_READY', {message: 'the database does not answer'})
      }
      return reply.code(503).send({status: 'unavailable', ...error.toWire(req.id)})
    }
  })
  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType)
    return metrics.registry.metrics()
  })
  const openapi = JSON.stringify(buildOpenApi(opts.publicUrl))
  app.get('/api/v1/openapi.json', async (_req, reply) => reply.type('application/json').send(openapi))

  // ---- the route table, served generically
  const publicUrlOf = (req: FastifyRequest): string => {
    if (opts.publicUrl) return opts.publicUrl
    const host = req.headers.host
    if (typeof host === 'string' && HOST_RE.test(host)) return `${req.protocol}://${host}`
    const addr = app.server.address()
    return typeof addr === 'object' && addr ? `http://${addr.address}:${addr.port}` : 'http://127.0.0.1'
  }

  const resolveScope = async (id: RouteId, p: Principal, params: Record<string, string>): Promise<Scope> => {
    const r: RouteDef = ROUTES[id]
    const perm = r.permission
    const scope: Scope = {}
    let networkId: string | undefined
    switch (ROUTE_SCOPES[id]) {
      case 'none':
        return scope
      case 'tenant':
        if (perm) state.access.requireTenant(p, perm)
        return scope
      case 'user':
        scope.user = await state.access.findUser(p, params.id ?? '')
        if (perm) state.access.requireTenant(p, perm)
        return scope
      case 'network':
        scope.network = await state.access.findNetwork(p, params.network ?? '')
        networkId = scope.network.id
        break
      case 'node':
        scope.node = await state.access.findNode(p, params.id ?? '')
        networkId = scope.node.networkId
        break
      case 'invite':
        scope.invite = await state.access.findInvite(p, params.id ?? '')
        networkId = scope.invite.networkId
        break
      case 'authkey':
        scope.authKey = await state.access.findAuthKey(p, params.id ?? '')
        networkId = scope.authKey.networkId
        break
      case 'userinvite':
        scope.userInvite = await state.access.findUserInvite(p, params.id ?? '')
        if (perm) state.access.requireTenant(p, perm)
        return scope
    }
    if (perm && networkId) await state.access.requireNetwork(p, networkId, perm)
    return scope
  }

  for (const id of Object.keys(ROUTES) as RouteId[]) {
    const r: RouteDef = ROUTES[id]
    const handler = handlers[id] as (ctx: HandlerContext<RouteId>) => Promise<unknown>
    app.route({
      method: r.method,
      url: r.path,
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        // 1. Who is calling.
        let principal: Principal | undefined
        let nodeCaller: StoredNode | undefined
        const token = bearer(req)
        if (r.auth === 'user' || r.auth === 'superuser') {
          principal = token === undefined ? undefined : await state.auth.authenticateUser(token)
          if (!principal) throw new MeshError('UNAUTHENTICATED')
          if (r.auth === 'superuser' && !principal.user.superuser) {
            throw new MeshError('FORBIDDEN', {message: 'only superusers may do this'})
          }
        } else if (r.auth === 'node') {
          nodeCaller = token === undefined ? undefined : await state.auth.authenticateNode(token)
          if (!nodeCaller) {
            throw token === undefined
              ? new MeshError('UNAUTHENTICATED', {
                  message: 'this route needs a node credential in Authorization: Bearer',
                })
              : new MeshError('NODE_CREDENTIAL_INVALID')
          }
        } else if (token !== undefined && id === 'register') {
          // Optional: open-policy registration names a network and brings a user token.
          principal = await state.auth.authenticateUser(token)
        }
        // 2. What was sent, validated by the route's schemas.
        const parse = (where: 'params' | 'query' | 'body', schema: z.ZodType | undefined, value: unknown) => {
          if (!schema) return where === 'body' ? undefined : {}
          const res = schema.safeParse(value ?? (where === 'body' ? undefined : {}))
          if (!res.success) throw validationError(where, res.error)
          return res.data
        }
        const params = parse('params', r.params, req.params) as Record<string, string>
        const query = parse('query', r.query, req.query)
        const body = parse('body', r.body, req.body)
        // 3. The object named, and whether this caller may act on it.
        const scope: Scope = principal
          ? await resolveScope(id, principal, params)
          : nodeCaller
            ? {node: nodeCaller}
            : {}
        const meta: RequestMeta = {sourceAddress: req.ip ?? null, requestId: req.id}
        const result = await handler({
          principal,
          params,
          query,
          body,
          meta,
          scope,
          publicUrl: publicUrlOf(req),
        } as HandlerContext<RouteId>)
        if (id === 'register') metrics.registrations.inc()
        return reply.code(r.status).send(result)
      },
    })
  }

  if (opts.relays) registerRelayRoutes(app as unknown as FastifyInstance, opts.relays)

  // ---- WebSockets: a plain GET (no Upgrade header) on their paths gets 426, not 404.
  const relay = opts.relay
  const wsPaths: string[] = [WS_PATHS.netmap, WS_PATHS.events]
  if (relay) wsPaths.push(WS_PATHS.relay)
  const relayMesh = opts.relayMesh
  if (relayMesh) wsPaths.push(RELAY_MESH_WS_PATH)
  for (const wsPath of wsPaths) {
    app.get(wsPath, async (req, reply) => {
      const error = new MeshError('UPGRADE_REQUIRED')
      void reply.header('upgrade', 'websocket').header('connection', 'Upgrade')
      return reply.code(error.status).send(error.toWire(req.id))
    })
  }

  // ---- Expect: 100-continue. node answers it by itself unless we listen for it: refuse a
  // declared body over the limit before the client sends it; let everything else through as a
  // normal request (a chunked body over the limit gets its 413 from the body parser).
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > LIMITS.maxBodyBytes) {
      refuseBeforeContinue(req, res)
      return
    }
    res.writeContinue()
    app.server.emit('request', req, res)
  })

  // ---- WebSockets: upgrades on the same server
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      url = new URL('http://localhost/')
    }
    socket.on('error', () => socket.destroy())
    if (!wsPaths.includes(url.pathname)) {
      socket.end(rawErrorResponse(new MeshError('NOT_FOUND', {message: 'no WebSocket endpoint here'})))
      return
    }
    const problem = upgradeProblem(req)
    if (problem) {
      socket.end(rawErrorResponse(problem, problem.status === 400 ? 'Sec-WebSocket-Version: 13, 8\r\n' : ''))
      return
    }
    // We offer no subprotocols; a malformed list must not make ws answer in its own format.
    delete req.headers['sec-websocket-protocol']
    if (url.pathname === WS_PATHS.netmap) netmap.handleUpgrade(req, socket, head, url)
    else if (url.pathname === WS_PATHS.relay && relay) relay.handleUpgrade(req, socket, head)
    else if (url.pathname === RELAY_MESH_WS_PATH && relayMesh) relayMesh.handleUpgrade(req, socket, head)
    else events.handleUpgrade(req, socket, head)
  })

  await app.ready()
  return {
    // The logger generic (pino's Logger) is irrelevant to users of the instance.
    app: app as unknown as FastifyInstance,
    netmap,
    events,
    async close() {
      await Promise.all([netmap.close(), events.close(), relay?.close()])
      await app.close()
    },
  }
}
