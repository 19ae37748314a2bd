/**
 * meshd's local API: HTTP over a unix socket. The socket's file mode is the access control
 * (0660, owner root, group `mesh` when that group exists; Node has no SO_PEERCRED). Requests are
 * routed by "METHOD /v1/path" through the shared LOCAL_ROUTES table; bodies are size-limited and
 * parsed with the shared schemas before a handler runs; every failure is one
 * `{error: {code, message, hint}}` body and the daemon keeps running.
 */
import {chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, unlinkSync} from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {MeshError, isMeshError} from '../../shared/errors.js'
import {
  LOCAL_MAX_BODY_BYTES,
  LOCAL_ROUTES,
  WATCH_PATH,
  type LocalParsedRequest,
  type LocalResponse,
  type LocalRouteKey,
} from '../../shared/protocol/local-api.js'
import {PROTOCOL_HEADER, PROTOCOL_VERSION} from '../../shared/protocol/version.js'
import type {StatusWatch} from './watch.js'

export type Handlers = {
  [K in LocalRouteKey]: (req: LocalParsedRequest<K>) => Promise<LocalResponse<K>> | LocalResponse<K>
}

export interface ApiLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
  debug(obj: object, msg: string): void
}

export interface ApiServer {
  readonly socketPath: string
  close(): Promise<void>
}

/** The gid of a group from /etc/group, undefined when there is no such group. */
export function groupId(name: string): number | undefined {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [group, , gid] = line.split(':')
      if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid)
    }
  } catch {
    // no /etc/group: no group
  }
  return undefined
}

/** True when something accepts connections on the socket (another meshd is running). */
function socketAlive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath)
    c.once('connect', () => {
      c.destroy()
      resolve(true)
    })
    c.once('error', () => resolve(false))
  })
}

/**
 * Makes the socket's directory and removes a stale socket left by a crash; a live one means
 * another meshd, and LISTEN_FAILED. meshd calls this before it loads state or touches an
 * interface, so a second daemon gives up before it can fight the first over them.
 */
export async function claimSocketPath(socketPath: string): Promise<void> {
  mkdirSync(path.dirname(socketPath), {recursive: true, mode: 0o755})
  try {
    const st = lstatSync(socketPath)
    if (!st.isSocket())
      throw new MeshError('LISTEN_FAILED', {message: `${socketPath} exists and is not a socket`})
    if (await socketAlive(socketPath))
      throw new MeshError('LISTEN_FAILED', {
        message: `another meshd is already listening on ${socketPath}`,
        hint: 'stop it first, or pass --socket PATH',
      })
    unlinkSync(socketPath)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

class HttpError extends Error {
  constructor(readonly meshError: MeshError) {
    super(meshError.message)
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > LOCAL_MAX_BODY_BYTES) {
      reject(new HttpError(new MeshError('PAYLOAD_TOO_LARGE')))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > LOCAL_MAX_BODY_BYTES) {
        reject(new HttpError(new MeshError('PAYLOAD_TOO_LARGE')))
        req.removeAllListeners('data')
        req.resume()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function zodMessage(issues: readonly {path: readonly PropertyKey[]; message: string}[]): string {
  return issues
    .slice(0, 3)
    .map((i) => (i.path.length > 0 ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ')
}

export async function serveApi(opts: {
  socketPath: string
  handlers: Handlers
  log: ApiLogger
  /** Group allowed to use the socket; default `mesh`. Ignored when it does not exist. */
  group?: string
  /** Serves GET /v1/watch; without it that path is NOT_FOUND. */
  watch?: StatusWatch
}): Promise<ApiServer> {
  const {socketPath, handlers, log} = opts

  /** The protocol header must match, on every route. */
  function checkProtocol(req: http.IncomingMessage): void {
    const header = req.headers[PROTOCOL_HEADER]
    if (header !== String(PROTOCOL_VERSION))
      throw new HttpError(
        new MeshError('PROTOCOL_MISMATCH', {
          message:
            header === undefined
              ? `the request has no ${PROTOCOL_HEADER} header (meshd speaks protocol ${PROTOCOL_VERSION})`
              : `the CLI speaks protocol ${String(header)}, meshd speaks ${PROTOCOL_VERSION}`,
        }),
      )
  }

  /** GET /v1/watch: a stream of status events, or an error body like any route. */
  function startWatch(req: http.IncomingMessage, res: http.ServerResponse, watch: StatusWatch): void {
    let problem: MeshError | undefined
    try {
      checkProtocol(req)
      if (req.method !== 'GET') problem = new MeshError('METHOD_NOT_ALLOWED', {hint: 'GET /v1/watch'})
    } catch (err) {
      problem = (err as HttpError).meshError
    }
    req.resume()
    if (!problem) {
      res.writeHead(200, {
        'content-type': 'application/x-ndjson',
        'cache-control': 'no-store',
        [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
      })
      // Headers go out now: the CLI knows the stream is open before the first event.
      res.flushHeaders()
      if (watch.attach(res)) return
      res.destroy()
      return
    }
    const text = JSON.stringify(problem.toWire())
    res.writeHead(problem.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
    })
    res.end(text)
  }

  async function handle(req: http.IncomingMessage): Promise<{status: number; body: unknown}> {
    const url = new URL(req.url ?? '/', 'http://meshd')
    const key = `${req.method} ${url.pathname}` as LocalRouteKey
    const route = Object.hasOwn(LOCAL_ROUTES, key) ? LOCAL_ROUTES[key] : undefined
    checkProtocol(req)
    if (!route) {
      const pathKnown = Object.values(LOCAL_ROUTES).some((r) => r.path === url.pathname)
      throw new HttpError(
        pathKnown
          ? new MeshError('METHOD_NOT_ALLOWED', {hint: 'see shared/protocol/local-api.ts for the routes'})
          : new MeshError('NOT_FOUND', {message: `no route ${req.method} ${url.pathname}`}),
      )
    }
    let input: unknown = undefined
    if ('request' in route) {
      const raw = await readBody(req)
      const type = String(req.headers['content-type'] ?? 'application/json')
      if (raw.length > 0 && !/^application\/json\b/i.test(type))
        throw new HttpError(new MeshError('UNSUPPORTED_MEDIA_TYPE'))
      let json: unknown = {}
      if (raw.length > 0) {
        try {
          json = JSON.parse(raw.toString('utf8'))
        } catch {
          throw new HttpError(new MeshError('INVALID_JSON'))
        }
      }
      const parsed = route.request.safeParse(json)
      if (!parsed.success)
        throw new HttpError(
          new MeshError('VALIDATION_FAILED', {
            message: `the request is invalid: ${zodMessage(parsed.error.issues)}`,
            detail: parsed.error.issues
              .slice(0, 10)
              .map((i) => ({path: i.path.map(String), message: i.message})),
          }),
        )
      input = parsed.data
    } else {
      req.resume()
    }
    const handler = handlers[key] as (input: unknown) => Promise<unknown> | unknown
    const result = await handler(input)
    // The reply is checked against the contract too: a mismatch is a daemon bug, not the CLI's.
    return {status: 200, body: route.response.parse(result)}
  }

  const server = http.createServer({requestTimeout: 120_000}, (req, res) => {
    const started = Date.now()
    if (opts.watch && new URL(req.url ?? '/', 'http://meshd').pathname === WATCH_PATH) {
      startWatch(req, res, opts.watch)
      return
    }
    handle(req)
      .then(
        (r) => r,
        (err: unknown) => {
          const meshErr =
            err instanceof HttpError
              ? err.meshError
              : isMeshError(err)
                ? err
                : new MeshError('INTERNAL', {
                    message: `internal error: ${(err as Error)?.message ?? String(err)}`,
                  })
          if (!(err instanceof HttpError) && !isMeshError(err))
            log.error(
              {err: (err as Error)?.stack ?? String(err), route: `${req.method} ${req.url}`},
              'handler failed',
            )
          return {status: meshErr.status, body: meshErr.toWire()}
        },
      )
      .then(({status, body}) => {
        const text = JSON.stringify(body)
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
          [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
          ...(status === 413 && {connection: 'close'}),
        })
        res.end(text)
        log.debug({route: `${req.method} ${req.url}`, status, ms: Date.now() - started}, 'api request')
      })
  })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n')
    else socket.destroy()
  })

  // 1. The socket path is claimed (again: startDaemon claims it before touching any state);
  // 2. listen with a umask that keeps the socket 0660 from the first instant; 3. chmod/chown
  // to be explicit.
  await claimSocketPath(socketPath)
  const oldMask = process.umask(0o117)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    throw new MeshError('LISTEN_FAILED', {
      message: `cannot listen on ${socketPath}: ${(err as Error).message}`,
    })
  } finally {
    process.umask(oldMask)
  }
  chmodSync(socketPath, 0o660)
  const gid = groupId(opts.group ?? 'mesh')
  if (gid !== undefined && process.getuid?.() === 0) chownSync(socketPath, 0, gid)
  log.info({socket: socketPath, group: gid === undefined ? null : (opts.group ?? 'mesh')}, 'listening')

  return {
    socketPath,
    close: async () => {
      opts.watch?.close()
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      try {
        unlinkSync(socketPath)
      } catch {
        // already gone
      }
    },
  }
}
