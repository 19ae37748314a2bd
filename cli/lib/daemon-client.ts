/**
 * The CLI's one way to reach meshd: a typed client over HTTP on the daemon's unix socket
 * (undici with connect.socketPath), one method per LOCAL_ROUTES entry. Replies are parsed with
 * the shared schemas; error bodies come back as MeshError via fromWire; a socket that is missing
 * or refuses is DAEMON_UNREACHABLE, one we may not open is SOCKET_PERMISSION_DENIED.
 */
import {StringDecoder} from 'node:string_decoder'
import {Client} from 'undici'
import {MeshError} from '../../shared/errors.js'
import {MAX_DAEMON_REPLY_BYTES, ReplyTooLargeError, formatByteLimit, readCapped} from '../../shared/limits.js'
import {defaultSocketPath} from '../../shared/paths.js'
import {
  LOCAL_ROUTES,
  type DownRequest,
  type JoinRequest,
  type LeaveRequest,
  type RotateKeyRequest,
  type LocalRequest,
  type LocalResponse,
  type LocalRouteKey,
  type NetcheckRequest,
  type PingRequest,
  type UpRequest,
  WATCH_MAX_LINE_BYTES,
  WATCH_PATH,
  WatchEventSchema,
  type WatchEvent,
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
  rotateKey = (req: RotateKeyRequest = {}) => this.call('POST /v1/rotate-key', req)
  ip = () => this.call('GET /v1/ip', undefined)
  netcheck = (req: NetcheckRequest = {}) => this.call('POST /v1/netcheck', req)
  ping = (req: PingRequest) => this.call('POST /v1/ping', req)

  /**
   * Streams meshd's status (GET /v1/watch): `onEvent` gets the whole status first, then each
   * change, until close() or the stream ends. `ended` settles when it ends: resolved on close()
   * or when meshd closes it, rejected with DAEMON_UNREACHABLE/PROTOCOL_MISMATCH on a failure.
   * Every line is bounded (WATCH_MAX_LINE_BYTES) and parsed with the shared schema.
   */
  watch(onEvent: (ev: WatchEvent) => void): {ended: Promise<void>; close(): void} {
    const client = new Client('http://meshd', {
      socketPath: this.socketPath,
      headersTimeout: this.timeoutMs,
      // Events come when things change; a quiet network is not a dead stream.
      bodyTimeout: 0,
    })
    let closing = false
    const ended = (async () => {
      let res
      try {
        res = await client.request({
          method: 'GET',
          path: WATCH_PATH,
          headers: {[PROTOCOL_HEADER]: String(PROTOCOL_VERSION)},
        })
      } catch (err) {
        if (closing) return
        throw connectError(err, this.socketPath, this.timeoutMs)
      }
      if (res.statusCode !== 200) {
        const text = await readCapped(res.body, MAX_DAEMON_REPLY_BYTES, () => res.body.destroy()).catch(
          () => '',
        )
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        throw MeshError.fromWire(json, res.statusCode)
      }
      let buf = ''
      // A character split across two chunks is joined, not mangled.
      const decoder = new StringDecoder('utf8')
      try {
        for await (const chunk of res.body) {
          buf += decoder.write(chunk as Buffer)
          let nl
          while ((nl = buf.indexOf('\n')) >= 0) {
            const text = buf.slice(0, nl)
            buf = buf.slice(nl + 1)
            let json: unknown
            try {
              json = JSON.parse(text)
            } catch {
              json = undefined
            }
            const ev = WatchEventSchema.safeParse(json)
            if (!ev.success)
              throw new MeshError('PROTOCOL_MISMATCH', {
                message: `meshd at ${this.socketPath} sent a status event this CLI does not understand`,
              })
            onEvent(ev.data)
          }
          if (buf.length > WATCH_MAX_LINE_BYTES)
            throw new MeshError('PROTOCOL_MISMATCH', {
              message: `meshd at ${this.socketPath} sent a status line longer than ${formatByteLimit(WATCH_MAX_LINE_BYTES)}`,
            })
        }
      } catch (err) {
        if (closing) return
        throw err instanceof MeshError ? err : connectError(err, this.socketPath, this.timeoutMs)
      }
    })().finally(() => client.destroy().catch(() => {}))
    return {
      ended,
      close: () => {
        closing = true
        void client.destroy().catch(() => {})
      },
    }
  }

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
