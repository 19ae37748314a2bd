/**
 * The CLI's client of the controller's admin event stream (WS /api/v1/events, user token): the
 * snapshot of the nodes the user may see first, then node and connection events as they happen.
 * Every frame is bounded and parsed with the shared schemas; one that does not parse ends the
 * stream with CONTROLLER_BAD_REPLY rather than being guessed at.
 */
import {wsUrl} from '../../shared/net/ws-url.js'
import WebSocket from 'ws'
import {MeshError} from '../../shared/errors.js'
import {WS_PATHS} from '../../shared/protocol/control-api.js'
import {AdminEventSchema, AdminSnapshotSchema, CLOSE, type AdminEvent} from '../../shared/protocol/netmap.js'
import type {Node} from '../../shared/protocol/control-api.js'
import type {ControllerClient} from './controller-client.js'

/** Largest frame accepted (the snapshot of a large tenant's nodes is the biggest). */
const MAX_EVENT_FRAME_BYTES = 16 * 1024 * 1024

export interface AdminEventHandlers {
  onSnapshot(nodes: Node[]): void
  onEvent(ev: AdminEvent): void
}

/**
 * Opens the stream. `ended` resolves when it closes normally or on close(), and rejects with a
 * MeshError when it could not open, the token was refused, or a frame was not understood.
 */
export function watchAdminEvents(
  opts: {controller: string; token: string},
  handlers: AdminEventHandlers,
): {ended: Promise<void>; close(): void} {
  const ws = new WebSocket(wsUrl(opts.controller, WS_PATHS.events), {
    headers: {authorization: `Bearer ${opts.token}`},
    maxPayload: MAX_EVENT_FRAME_BYTES,
    perMessageDeflate: false,
    handshakeTimeout: 10_000,
    followRedirects: false,
  })
  let closing = false
  let failure: MeshError | undefined
  let snapshot = false
  const fail = (err: MeshError) => {
    failure ??= err
    ws.terminate()
  }
  ws.on('message', (data, isBinary) => {
    let json: unknown
    try {
      json = isBinary ? undefined : JSON.parse(data.toString())
    } catch {
      json = undefined
    }
    if (!snapshot) {
      const s = AdminSnapshotSchema.safeParse(json)
      if (!s.success)
        return fail(
          new MeshError('CONTROLLER_BAD_REPLY', {message: 'the event stream did not start with a snapshot'}),
        )
      snapshot = true
      handlers.onSnapshot(s.data.nodes)
      return
    }
    const ev = AdminEventSchema.safeParse(json)
    if (!ev.success)
      return fail(
        new MeshError('CONTROLLER_BAD_REPLY', {
          message: 'the controller sent an event this CLI does not understand',
        }),
      )
    handlers.onEvent(ev.data)
  })
  const ended = new Promise<void>((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      failure ??=
        res.statusCode === 401 || res.statusCode === 403
          ? new MeshError('UNAUTHENTICATED', {
              message: 'the controller refused the token for its event stream',
            })
          : new MeshError('CONTROLLER_UNREACHABLE', {
              message: `the controller's event stream answered HTTP ${res.statusCode}`,
            })
      res.resume()
      ws.terminate()
    })
    ws.on('error', (err) => {
      failure ??= new MeshError('CONTROLLER_UNREACHABLE', {
        message: `cannot follow the controller's events at ${opts.controller}: ${err.message}`,
      })
    })
    ws.on('close', (code, reason) => {
      if (closing) return resolve()
      if (failure) return reject(failure)
      if (code === CLOSE.UNAUTHENTICATED || code === CLOSE.REVOKED)
        return reject(
          new MeshError('UNAUTHENTICATED', {
            message: `the event stream closed: ${reason.toString() || code}`,
          }),
        )
      resolve()
    })
  })
  return {
    ended,
    close: () => {
      closing = true
      ws.terminate()
    },
  }
}

/**
 * Opens the stream with a token that is current at each (re)connect: one authenticated request
 * first, through `api`, which refreshes an expired access token by itself (TOKEN_EXPIRED: the
 * stored refresh token is exchanged), then the stream with the token `api` holds afterwards.
 * A TUI that reconnects after the 15-minute access token expired thus comes back instead of
 * being refused with the token it started with.
 */
export function followAdminEvents(
  api: Pick<ControllerClient, 'whoami' | 'token' | 'url'>,
  handlers: AdminEventHandlers,
): {ended: Promise<void>; close(): void} {
  let inner: {ended: Promise<void>; close(): void} | undefined
  let closed = false
  const ended = (async () => {
    await api.whoami()
    const token = api.token
    if (closed) return
    if (token === undefined) throw new MeshError('NOT_LOGGED_IN')
    inner = watchAdminEvents({controller: api.url, token}, handlers)
    await inner.ended
  })()
  return {
    ended,
    close: () => {
      closed = true
      inner?.close()
    },
  }
}
