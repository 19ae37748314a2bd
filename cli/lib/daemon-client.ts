/**
 * The CLI's one way to reach meshd: a typed client over HTTP on the daemon's unix socket
 * (undici with connect.socketPath), one method per LOCAL_ROUTES entry. Replies are parsed with
 * the shared schemas; error bodies come back as MeshError via fromWire; a socket that is missing
 * or refuses is DAEMON_UNREACHABLE, one we may not open is SOCKET_PERMISSION_DENIED.
 */
import {Client} from 'undici'
import {MeshError} from '../../shared/errors.js'
import {MAX_DAEMON_REPLY_BYTES, ReplyTooLargeError, formatByteLimit, readCapped} from '../../shared/limits.js'
import {defaultSocketPath} from '../../shared/paths.js'
import {
  LOCAL_ROUTES,
  type DownRequest,
  type JoinRequest,
  type LeaveRequest,
  type LocalRequest,
  type LocalResponse,
  type LocalRouteKey,
  type NetcheckRequest,
  type PingRequest,
  type UpRequest,
} from '../../shared/protocol/local-api.js'
import {PROTOCOL_HEADER, PROTOCOL_VERSION} from '../../shared/protocol/version.js'

export interface DaemonClientOptions {
  /** Default: MESH_SOCKET, else /run/mesh/meshd.sock. */
  socketPath?: string
  /** Per request; join registers with a controller and waits for the first netmap. */
  timeoutMs?: number
}

export class DaemonClient {
  readonly socketPath: string
  private readonly timeoutMs: number

  constructor(opts: DaemonClientOptions = {}) {
    this.socketPath = opts.socketPath ?? defaultSocketPath()
    this.timeoutMs = opts.timeoutMs ?? 60_000
  }

  status = () => this.call('GET /v1/status', undefined)
  join = (req: JoinRequest) => this.call('POST /v1/join', req)
  up = (req: UpRequest = {}) => this.call('POST /v1/up', req)
  down = (req: DownRequest = {}) => this.call('POST /v1/down', req)
  leave = (req: LeaveRequest) => this.call('POST /v1/leave', req)
  ip = () => this.call('GET /v1/ip', undefined)
  netcheck = (req: NetcheckRequest = {}) => this.call('POST /v1/netcheck', req)
  ping = (req: PingRequest) => this.call('POST /v1/ping', req)

  async call<K extends LocalRouteKey>(key: K, body: LocalRequest<K>): Promise<LocalResponse<K>> {
    const route = LOCAL_ROUTES[key]
    const client = new Client('http://meshd', {
      socketPath: this.socketPath,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    })
    try {
      let res
      try {
        res = await client.request({
          method: route.method,
          path: route.path,
          headers: {
            [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
            ...(body !== undefined && {'content-type': 'application/json'}),
          },
          ...(body !== undefined && {body: JSON.stringify(body)}),
        })
      } catch (err) {
        throw connectError(err, this.socketPath, this.timeoutMs)
      }
      let text: string
      try {
        text = await readCapped(
          res.body,
          MAX_DAEMON_REPLY_BYTES,
          () => res.body.destroy(),
          res.headers['content-length'],
        )
      } catch (err) {
        if (!(err instanceof ReplyTooLargeError)) throw connectError(err, this.socketPath, this.timeoutMs)
        throw new MeshError('INTERNAL', {
          message: `meshd at ${this.socketPath} sent a reply larger than ${formatByteLimit(err.limit)}`,
          hint: 'see the meshd log (journalctl -u meshd, or the terminal running `mesh daemon run`) and report it',
        })
      }
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        json = undefined
      }
      if (res.statusCode !== 200) throw MeshError.fromWire(json, res.statusCode)
      const parsed = route.response.safeParse(json)
      if (!parsed.success)
        throw new MeshError('PROTOCOL_MISMATCH', {
          message: `meshd at ${this.socketPath} sent a reply this CLI does not understand`,
        })
      return parsed.data as LocalResponse<K>
    } finally {
      await client.close().catch(() => {})
    }
  }
}

/** Maps a failure to open the socket to the error a person can act on. */
export function connectError(err: unknown, socketPath: string, timeoutMs: number): Error {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK')
    return new MeshError('DAEMON_UNREACHABLE', {message: `cannot reach meshd at ${socketPath}`})
  if (code === 'EACCES' || code === 'EPERM')
    return new MeshError('SOCKET_PERMISSION_DENIED', {
      message: `not allowed to talk to meshd at ${socketPath}`,
    })
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT')
    return new MeshError('DAEMON_UNREACHABLE', {
      message: `meshd at ${socketPath} did not answer within ${Math.round(timeoutMs / 1000)} s`,
      hint: 'see the meshd log (journalctl -u meshd, or the terminal running `mesh daemon run`)',
    })
  return err instanceof Error ? err : new Error(String(err))
}
