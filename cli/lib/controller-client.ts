/**
 * The CLI's one way to reach a controller: a typed client over the shared ROUTES table, with a
 * method per route. Requests and replies are checked against the route's zod schemas; error
 * bodies come back as MeshError (fromWire) and connection failures as CONTROLLER_UNREACHABLE.
 */
import {Agent, request, type Dispatcher} from 'undici'
import {type z} from 'zod'
import {ERRORS, MeshError, isMeshError} from '../../shared/errors.js'
import {
  MAX_CONTROLLER_REPLY_BYTES,
  ReplyTooLargeError,
  formatByteLimit,
  readCapped,
} from '../../shared/limits.js'
import {
  ROUTES,
  type RouteBody,
  type RouteDef,
  type RouteId,
  type RouteReply,
} from '../../shared/protocol/control-api.js'
import {PROTOCOL_VERSION} from '../../shared/protocol/version.js'

type Routes = typeof ROUTES
type Part<K extends RouteId, F extends 'params' | 'query' | 'body'> = Routes[K] extends {
  [P in F]: infer S extends z.ZodType
}
  ? z.input<S>
  : never

/** What a call takes: path params and a body where the route has them, an optional query. */
export type CallInput<K extends RouteId> = ([Part<K, 'params'>] extends [never]
  ? {params?: never}
  : {params: Part<K, 'params'>}) &
  ([Part<K, 'query'>] extends [never] ? {query?: never} : {query?: Part<K, 'query'>}) &
  ([Part<K, 'body'>] extends [never] ? {body?: never} : {body: Part<K, 'body'>})

type Params<K extends RouteId> = Part<K, 'params'>
type Body<K extends RouteId> = Part<K, 'body'>
type Query<K extends RouteId> = Part<K, 'query'>

/** Routes whose reply is a page ({items, nextCursor}); listAll() follows their cursors. */
export type PagedRouteId = {
  [K in RouteId]: RouteReply<K> extends {items: unknown[]; nextCursor: string | null} ? K : never
}[RouteId]
export type PageOf<K extends PagedRouteId> = RouteReply<K>
type ItemOf<K extends PagedRouteId> = RouteReply<K>['items'][number]

export interface ControllerClientOptions {
  /** Base URL of the controller, e.g. https://mesh.example.com or http://127.0.0.1:8080. */
  url: string
  /** User token for `Authorization: Bearer`; not sent to routes with auth 'none'. */
  token?: string
  /** Whole-request deadline (connect, headers and body), ms. */
  timeoutMs?: number
  /** For tests or proxies; by default a shared Agent with bounded connect/header/body timeouts. */
  dispatcher?: Dispatcher
  /**
   * Called when the controller refuses the token: TOKEN_EXPIRED (refresh it) or UNAUTHENTICATED
   * (another process may have stored a newer one). Returns the token to retry with, once, or
   * undefined to give up with the error; without this option the error is thrown.
   */
  refreshToken?: (code: 'TOKEN_EXPIRED' | 'UNAUTHENTICATED') => Promise<string | undefined>
}

const DEFAULT_TIMEOUT_MS = 30_000
/**
 * Most pages listAll() fetches, and their size: 500 pages of 100 items is more than any admin
 * screen needs. A page of 100 nodes with every field at its maximum is about 450 KB, so every
 * page fits in MAX_CONTROLLER_REPLY_BYTES (a test checks it).
 */
const MAX_PAGES = 500
const MAX_PAGE_SIZE = 100

let sharedAgent: Agent | undefined
const defaultDispatcher = (): Agent =>
  (sharedAgent ??= new Agent({
    connect: {timeout: 10_000},
    headersTimeout: 20_000,
    bodyTimeout: 20_000,
    // Idle sockets must not hold a finished CLI process open.
    keepAliveTimeout: 1_000,
  }))

/**
 * Checks and normalises a controller URL: http or https, no credentials, query or fragment;
 * no trailing slash. A path prefix (a controller behind a reverse proxy at /mesh) is kept.
 */
export function normalizeControllerUrl(text: string): string {
  let url: URL
  try {
    url = new URL(text.trim())
  } catch {
    throw new MeshError('INVALID_ARGUMENT', {
      message: `"${text}" is not a URL`,
      hint: 'give the controller URL, such as https://mesh.example.com or http://127.0.0.1:8080',
    })
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MeshError('INVALID_ARGUMENT', {
      message: `the controller URL must use http or https, not ${url.protocol}`,
    })
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: 'the controller URL must not carry a user, password, query or fragment',
    })
  }
  return url.origin + url.pathname.replace(/\/+$/, '')
}

function validate(schema: z.ZodType, value: unknown, what: string): unknown {
  const parsed = schema.safeParse(value)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
  throw new MeshError('VALIDATION_FAILED', {
    message: `invalid ${what}: ${where}${issue?.message ?? 'rejected'}`,
    detail: parsed.error.issues,
  })
}

/** Human words for the usual reasons a connection fails. */
function reasonOf(err: unknown): string {
  const e = err as {code?: string; name?: string; message?: string; cause?: {code?: string}}
  const code = e.code ?? e.cause?.code
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused'
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host name does not resolve'
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'the connection was closed'
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to the host'
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timed out'
  }
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'timed out'
  return code ?? e.message ?? 'unknown error'
}

/**
 * Reads a reply body up to MAX_CONTROLLER_REPLY_BYTES; past it the stream (and with it the
 * connection) is destroyed and the reply is CONTROLLER_BAD_REPLY.
 */
async function readBody(res: Dispatcher.ResponseData, url: string): Promise<string> {
  try {
    return await readCapped(
      res.body,
      MAX_CONTROLLER_REPLY_BYTES,
      () => res.body.destroy(),
      res.headers['content-length'],
    )
  } catch (err) {
    if (!(err instanceof ReplyTooLargeError)) throw err
    throw new MeshError('CONTROLLER_BAD_REPLY', {
      message: `the controller at ${url} sent a reply larger than ${formatByteLimit(err.limit)}`,
    })
  }
}

export class ControllerClient {
  readonly url: string
  #token: string | undefined
  readonly #timeoutMs: number
  readonly #dispatcher: Dispatcher | undefined
  readonly #refresh: ControllerClientOptions['refreshToken']

  constructor(opts: ControllerClientOptions) {
    this.url = normalizeControllerUrl(opts.url)
    this.#token = opts.token
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.#dispatcher = opts.dispatcher
    this.#refresh = opts.refreshToken
  }

  /** The token requests carry now (a refresh replaces it); for streams opened beside the client. */
  get token(): string | undefined {
    return this.#token
  }

  // One method per ROUTES entry.
  login = (body: Body<'login'>) => this.call('login', {body})
  logout = () => this.call('logout', {})
  whoami = () => this.call('whoami', {})
  createTenant = (body: Body<'tenant.create'>) => this.call('tenant.create', {body})
  listUsers = (query?: Query<'user.list'>) => this.call('user.list', {query})
  createUser = (body: Body<'user.create'>) => this.call('user.create', {body})
  updateUser = (params: Params<'user.update'>, body: Body<'user.update'>) =>
    this.call('user.update', {params, body})
  deleteUser = (params: Params<'user.delete'>, query?: Query<'user.delete'>) =>
    this.call('user.delete', {params, query})
  listNetworks = (query?: Query<'network.list'>) => this.call('network.list', {query})
  createNetwork = (body: Body<'network.create'>) => this.call('network.create', {body})
  showNetwork = (params: Params<'network.show'>) => this.call('network.show', {params})
  updateNetwork = (params: Params<'network.update'>, body: Body<'network.update'>) =>
    this.call('network.update', {params, body})
  deleteNetwork = (params: Params<'network.delete'>) => this.call('network.delete', {params})
  listMembers = (params: Params<'member.list'>) => this.call('member.list', {params})
  setMember = (params: Params<'member.set'>, body: Body<'member.set'>) =>
    this.call('member.set', {params, body})
  removeMember = (params: Params<'member.remove'>) => this.call('member.remove', {params})
  listInvites = (params: Params<'invite.list'>, query?: Query<'invite.list'>) =>
    this.call('invite.list', {params, query})
  createInvite = (params: Params<'invite.create'>, body: Body<'invite.create'>) =>
    this.call('invite.create', {params, body})
  revokeInvite = (params: Params<'invite.revoke'>) => this.call('invite.revoke', {params})
  listAuthKeys = (params: Params<'authkey.list'>, query?: Query<'authkey.list'>) =>
    this.call('authkey.list', {params, query})
  createAuthKey = (params: Params<'authkey.create'>, body: Body<'authkey.create'>) =>
    this.call('authkey.create', {params, body})
  revokeAuthKey = (params: Params<'authkey.revoke'>) => this.call('authkey.revoke', {params})
  listRelayKeys = (query?: Query<'relaykey.list'>) => this.call('relaykey.list', {query})
  createRelayKey = (body: Body<'relaykey.create'>) => this.call('relaykey.create', {body})
  revokeRelayKey = (params: Params<'relaykey.revoke'>) => this.call('relaykey.revoke', {params})
  listNodes = (params: Params<'node.list'>, query?: Query<'node.list'>) =>
    this.call('node.list', {params, query})
  showNode = (params: Params<'node.show'>) => this.call('node.show', {params})
  listConnections = (params: Params<'connection.list'>, query?: Query<'connection.list'>) =>
    this.call('connection.list', {params, query})
  connectionLog = (params: Params<'connection.log'>, query?: Query<'connection.log'>) =>
    this.call('connection.log', {params, query})
  approveNode = (params: Params<'node.approve'>) => this.call('node.approve', {params})
  updateNode = (params: Params<'node.update'>, body: Body<'node.update'>) =>
    this.call('node.update', {params, body})
  removeNode = (params: Params<'node.remove'>) => this.call('node.remove', {params})
  expireNode = (params: Params<'node.expire'>) => this.call('node.expire', {params})
  extendNode = (params: Params<'node.extend'>, body: Body<'node.extend'>) =>
    this.call('node.extend', {params, body})
  getKeyExpiry = () => this.call('tenant.keyExpiry', {})
  setKeyExpiry = (body: Body<'tenant.setKeyExpiry'>) => this.call('tenant.setKeyExpiry', {body})
  register = (body: Body<'register'>) => this.call('register', {body})
  audit = (query?: Query<'audit'>) => this.call('audit', {query})
  verifyAudit = () => this.call('audit.verify', {})
  getPolicy = () => this.call('policy.get', {})
  setPolicy = (body: RouteBody<'policy.set'>) => this.call('policy.set', {body})
  deletePolicy = () => this.call('policy.delete', {})
  checkPolicy = (document: string) => this.call('policy.check', {body: {document}})
  refresh = (body: Body<'token.refresh'>) => this.call('token.refresh', {body})
  listSessions = (query?: Query<'session.list'>) => this.call('session.list', {query})
  revokeSession = (params: Params<'session.revoke'>) => this.call('session.revoke', {params})
  enableMfa = () => this.call('mfa.enable', {})
  confirmMfa = (body: Body<'mfa.confirm'>) => this.call('mfa.confirm', {body})
  disableMfa = (body: Body<'mfa.disable'>) => this.call('mfa.disable', {body})
  listUserInvites = (query?: Query<'userinvite.list'>) => this.call('userinvite.list', {query})
  createUserInvite = (body: Body<'userinvite.create'>) => this.call('userinvite.create', {body})
  revokeUserInvite = (params: Params<'userinvite.revoke'>) => this.call('userinvite.revoke', {params})
  signup = (body: Body<'signup'>) => this.call('signup', {body})
  oidcIssuers = () => this.call('oidc.issuers', {})
  oidcStart = (body: Body<'oidc.start'>) => this.call('oidc.start', {body})
  oidcFinish = (body: Body<'oidc.finish'>) => this.call('oidc.finish', {body})
  oidcDevice = (body: Body<'oidc.device'>) => this.call('oidc.device', {body})
  oidcDevicePoll = (body: Body<'oidc.device.poll'>) => this.call('oidc.device.poll', {body})

  /**
   * Calls one route: fills the path from params, adds the query string and JSON body (each
   * checked against the route's schema first), and parses the reply with the route's response
   * schema. On TOKEN_EXPIRED with a refreshToken option: refreshes once and sends it again.
   * (Routes with auth 'none' send no token and are never retried.)
   */
  async call<K extends RouteId>(id: K, input: CallInput<K>): Promise<RouteReply<K>> {
    try {
      return await this.callOnce(id, input)
    } catch (err) {
      // A refused token: a fresh one from the refreshToken option, once, and the request again.
      const code = isMeshError(err) ? err.code : undefined
      if ((code !== 'TOKEN_EXPIRED' && code !== 'UNAUTHENTICATED') || !this.#refresh || !this.#token)
        throw err
      const next = await this.#refresh(code)
      if (next === undefined) throw err
      this.#token = next
      return this.callOnce(id, input)
    }
  }

  private async callOnce<K extends RouteId>(id: K, input: CallInput<K>): Promise<RouteReply<K>> {
    const route: RouteDef = ROUTES[id]
    const {params, query, body} = input as {params?: unknown; query?: unknown; body?: unknown}

    const values = (route.params ? validate(route.params, params, 'argument') : {}) as Record<string, unknown>
    const path = route.path.replace(/:([A-Za-z]+)/g, (_, name: string) =>
      encodeURIComponent(String(values[name])),
    )
    const base = new URL(this.url)
    const url = new URL(base.pathname.replace(/\/$/, '') + path, base.origin)
    if (route.query) {
      const q = validate(route.query, query ?? {}, 'query') as Record<string, unknown>
      for (const [k, v] of Object.entries(q)) if (v !== undefined) url.searchParams.set(k, String(v))
    }
    const payload = route.body ? JSON.stringify(validate(route.body, body, 'request')) : undefined

    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': `mesh-cli/${PROTOCOL_VERSION}`,
    }
    if (payload !== undefined) headers['content-type'] = 'application/json'
    if (route.auth !== 'none' && this.#token) headers.authorization = `Bearer ${this.#token}`

    let status: number
    let location: string | undefined
    let text: string
    try {
      const res = await request(url, {
        method: route.method,
        headers,
        body: payload,
        dispatcher: this.#dispatcher ?? defaultDispatcher(),
        signal: AbortSignal.timeout(this.#timeoutMs),
      })
      status = res.statusCode
      location = typeof res.headers.location === 'string' ? res.headers.location : undefined
      text = await readBody(res, this.url)
    } catch (err) {
      if (isMeshError(err)) throw err
      // Everything request() throws happens before a whole reply arrived: DNS, connect, TLS,
      // reset, timeouts. For the user they all mean "the controller is not reachable".
      const reason = reasonOf(err)
      throw new MeshError('CONTROLLER_UNREACHABLE', {
        message: `cannot reach the controller at ${this.url}`,
        hint: `${reason}; check the URL and that \`mesh controller start\` is running there`,
        detail: {reason},
        cause: err,
      })
    }

    let json: unknown
    try {
      json = text === '' ? undefined : JSON.parse(text)
    } catch {
      json = undefined
    }
    if (status >= 300 && status <= 399) {
      // Redirects are not followed: the token must not travel to a place nobody chose. The
      // usual cause is http:// where the controller wants https://.
      throw new MeshError('INVALID_ARGUMENT', {
        message: `the controller at ${this.url} redirects (HTTP ${status}) to ${location ?? 'another place'}`,
        hint: 'log in again with the URL it redirects to: `mesh login --controller URL`',
      })
    }
    if (status < 200 || status > 299) throw MeshError.fromWire(json, status)
    const reply = route.response.safeParse(json)
    if (!reply.success) {
      // Not JSON, or JSON outside the contract: a server that is not a mesh controller (a
      // captive portal, a web server), a hostile one, or a much older or newer controller.
      throw new MeshError('CONTROLLER_BAD_REPLY', {
        message: `the controller at ${this.url} sent a ${id} reply this CLI does not understand${json === undefined ? ' (not JSON)' : ''}`,
        hint: `${ERRORS.CONTROLLER_BAD_REPLY.hint}; if it is a mesh controller, use the same mesh version for the CLI and the controller`,
        detail: reply.error.issues.slice(0, 5),
      })
    }
    return reply.data as RouteReply<K>
  }

  /**
   * Fetches a list route page by page, following nextCursor, until `limit` items (when given)
   * or the last page. Bounded: at most MAX_PAGES pages; nextCursor is non-null when more remain.
   */
  async listAll<K extends PagedRouteId>(
    id: K,
    input: CallInput<K>,
    opts: {limit?: number; pageSize?: number} = {},
  ): Promise<PageOf<K>> {
    const pageSize = Math.min(MAX_PAGE_SIZE, Math.max(1, opts.pageSize ?? MAX_PAGE_SIZE))
    const items: ItemOf<K>[] = []
    const base = input as {params?: unknown; query?: Record<string, unknown>}
    let cursor: string | undefined
    for (let pageNo = 0; pageNo < MAX_PAGES; pageNo++) {
      const want = opts.limit === undefined ? pageSize : Math.min(pageSize, opts.limit - items.length)
      const query = {...base.query, limit: want, ...(cursor === undefined ? {} : {cursor})}
      const page = (await this.call(id, {...base, query} as CallInput<K>)) as {
        items: ItemOf<K>[]
        nextCursor: string | null
      }
      items.push(...page.items)
      const full = opts.limit !== undefined && items.length >= opts.limit
      if (page.nextCursor === null || full || page.items.length === 0) {
        return {items: items.slice(0, opts.limit), nextCursor: full ? page.nextCursor : null} as PageOf<K>
      }
      cursor = page.nextCursor
    }
    return {items, nextCursor: cursor ?? null} as PageOf<K>
  }
}
