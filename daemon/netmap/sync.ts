/**
 * One netmap WebSocket to a controller for one network credential: it receives the full map and
 * then deltas, hands each frame (in order) to the daemon, reconnects with jittered exponential
 * backoff (capped at 10 s) and resumes with `?version=N`. It knows nothing about WireGuard: with
 * the controller gone the tunnels simply keep their last config.
 */
import {wsUrl} from '../../shared/net/ws-url.js'
import zlib from 'node:zlib'
import WebSocket from 'ws'
import {MAX_NETMAP_FRAME_BYTES} from '../../shared/limits.js'
import {WS_PATHS} from '../../shared/protocol/control-api.js'
import {CLOSE, NETMAP_GZIP, type ClientFrame, type ServerFrame} from '../../shared/protocol/netmap.js'
import {parseServerFrame} from './parse.js'

/** Per frame, at most this many dropped peers are logged one by one (then a count). */
const MAX_DROPS_LOGGED = 10

export interface SyncLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  debug(obj: object, msg: string): void
}

export interface NetmapSyncOptions {
  controller: string
  /** Never logged. */
  credential: string
  /** The version this node has, sent as ?version=N on (re)connect; undefined asks for a full map. */
  version: () => number | undefined
  /** Called once per frame, in order; the next frame waits for the returned promise. */
  onFrame: (frame: ServerFrame) => Promise<void>
  /** Connection state for `mesh status`: connected after the first frame of a session. */
  onState: (state: {connected: boolean; error: string | null}) => void
  /** The controller closed with REVOKED (the frame form arrives through onFrame). */
  onRevoked: (reason: string) => void
  log: SyncLogger
  baseDelayMs?: number
  maxDelayMs?: number
  /** A silent connection is dropped after two missed pings. */
  pingIntervalMs?: number
}

/** ws:// or wss:// URL of the netmap endpoint of a controller base URL. */
export function netmapUrl(controller: string, version: number | undefined): string {
  const url = wsUrl(controller, WS_PATHS.netmap)
  if (version !== undefined) url.searchParams.set('version', String(version))
  url.searchParams.set(NETMAP_GZIP.param, NETMAP_GZIP.value)
  return url.toString()
}

/**
 * A compressed full map without the node's own entry among its peers (NETMAP_GZIP: the
 * controller sends every node the same peer list). Anything else is returned as it is.
 */
export function withoutSelf(json: unknown): unknown {
  if (typeof json !== 'object' || json === null) return json
  const f = json as {type?: unknown; self?: {id?: unknown}; peers?: unknown}
  if (f.type !== 'full' || !Array.isArray(f.peers) || typeof f.self?.id !== 'string') return json
  const self = f.self.id
  return {
    ...f,
    peers: f.peers.filter((p) => !(typeof p === 'object' && p !== null && (p as {id?: unknown}).id === self)),
  }
}

/** Full jitter between half and all of the exponential delay: reconnects do not stampede. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20))
  return Math.round(exp / 2 + (random() * exp) / 2)
}

export class NetmapSync {
  private ws: WebSocket | undefined
  private stopped = true
  private attempt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private pingTimer: NodeJS.Timeout | undefined
  private queue: Promise<void> = Promise.resolve()
  private connectedNow = false

  constructor(private readonly opts: NetmapSyncOptions) {}

  get connected(): boolean {
    return this.connectedNow
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.connect()
  }

  /** Closes the socket and stops reconnecting; waits for the frame being applied. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.retryTimer)
    clearInterval(this.pingTimer)
    const ws = this.ws
    this.ws = undefined
    if (ws) {
      ws.removeAllListeners()
      ws.on('error', () => {})
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'node stopping')
      else ws.terminate()
    }
    this.setState(false, null)
    await this.queue
  }

  /** Sends a report when connected; returns whether it went out. */
  send(frame: ClientFrame): boolean {
    const ws = this.ws
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.connectedNow) return false
    ws.send(JSON.stringify(frame))
    return true
  }

  /** Drops the connection and reconnects at once (for tests and after a network change). */
  reconnectNow(): void {
    this.ws?.terminate()
  }

  private setState(connected: boolean, error: string | null): void {
    this.connectedNow = connected
    this.opts.onState({connected, error})
  }

  /**
   * One netmap frame from its JSON text; null when it is not one. `compressed`: it came gzipped,
   * and its full map may list this node itself among the peers (NETMAP_GZIP), dropped here.
   */
  private parse(data: Buffer, compressed = false): ServerFrame | null {
    let json: unknown
    try {
      json = JSON.parse(data.toString())
    } catch {
      this.opts.log.warn({}, 'ignoring a netmap frame that is not JSON')
      return null
    }
    if (compressed) json = withoutSelf(json)
    // Peers one by one: a bad entry is dropped (and logged), the others still apply.
    let logged = 0
    const parsed = parseServerFrame(json, (drop) => {
      if (logged++ < MAX_DROPS_LOGGED)
        this.opts.log.warn(
          drop,
          drop.what === 'peer' ? 'dropping an invalid netmap peer' : 'dropping bad peer endpoints',
        )
    })
    if (logged > MAX_DROPS_LOGGED)
      this.opts.log.warn({more: logged - MAX_DROPS_LOGGED}, 'more netmap peers or endpoints dropped')
    if (parsed.frame === null) {
      this.opts.log.warn({issues: parsed.issues}, 'ignoring an invalid netmap frame')
      return null
    }
    return parsed.frame
  }

  /** Applies a frame of session `ws` (in order: called from the queue). */
  private async apply(ws: WebSocket, frame: ServerFrame): Promise<void> {
    if (this.ws !== ws) return
    try {
      await this.opts.onFrame(frame)
      if (frame.type !== 'revoked' && !this.connectedNow) {
        this.attempt = 0
        this.setState(true, null)
      }
    } catch (err) {
      this.opts.log.warn({err: String(err)}, 'applying a netmap frame failed')
    }
  }

  private connect(): void {
    if (this.stopped) return
    const url = netmapUrl(this.opts.controller, this.opts.version())
    const ws = new WebSocket(url, {
      headers: {authorization: `Bearer ${this.opts.credential}`},
      handshakeTimeout: 10_000,
      // Refused from the frame header, before the payload is buffered (ws closes with 1009).
      maxPayload: MAX_NETMAP_FRAME_BYTES,
    })
    this.ws = ws
    let alive = true
    let lastError: string | null = null
    ws.on('unexpected-response', (_req, res) => {
      lastError = `the controller refused the netmap connection (HTTP ${res.statusCode})`
      res.resume()
      ws.terminate()
    })
    ws.on('open', () => {
      this.opts.log.debug({url: url.replace(/\?.*$/, '')}, 'netmap connected')
      clearInterval(this.pingTimer)
      this.pingTimer = setInterval(() => {
        if (!alive) {
          ws.terminate()
          return
        }
        alive = false
        ws.ping()
      }, this.opts.pingIntervalMs ?? 15_000)
      this.pingTimer.unref()
    })
    ws.on('pong', () => (alive = true))
    ws.on('message', (data, isBinary) => {
      alive = true
      const buf = data as Buffer
      if (!isBinary) {
        const frame = this.parse(buf)
        if (frame) this.queue = this.queue.then(() => this.apply(ws, frame))
        return
      }
      // A compressed full map: inflated off the event loop, applied in order with the frames
      // after it (they wait in the queue), and bounded like a text frame (a gzip bomb stops there).
      const text = new Promise<Buffer | undefined>((resolve) =>
        zlib.gunzip(buf, {maxOutputLength: MAX_NETMAP_FRAME_BYTES}, (err, out) => {
          if (err)
            this.opts.log.warn({err: err.message}, 'ignoring a compressed netmap frame that does not inflate')
          resolve(err ? undefined : out)
        }),
      )
      this.queue = this.queue.then(async () => {
        const out = await text
        const frame = out && this.parse(out, true)
        if (frame) await this.apply(ws, frame)
      })
    })
    ws.on('error', (err) => {
      lastError = lastError ?? `cannot reach the controller: ${err.message}`
      // An error ends the session at once. After a frame over maxPayload, ws would otherwise
      // keep reading (and dropping) whatever the controller sends until its 30 s close timeout.
      ws.terminate()
    })
    ws.on('close', (code, reasonBuf) => {
      clearInterval(this.pingTimer)
      if (this.ws !== ws) return
      this.ws = undefined
      const reason = reasonBuf.toString()
      if (code === CLOSE.REVOKED) {
        this.opts.onRevoked(reason || 'revoked by the controller')
        return
      }
      if (code === CLOSE.UNAUTHENTICATED) lastError = 'the controller refused this node credential'
      // Kept (not forgotten like a revocation): an admin may extend the key, and the next
      // attempt gets in then.
      if (code === CLOSE.KEY_EXPIRED)
        lastError = "NODE_KEY_EXPIRED: this node's key expired; an admin can renew it with `mesh node extend`"
      this.setState(false, lastError ?? (code === 1000 ? null : `netmap connection closed (${code})`))
      if (this.stopped) return
      const delay = backoffDelay(this.attempt++, this.opts.baseDelayMs ?? 250, this.opts.maxDelayMs ?? 10_000)
      this.opts.log.debug({code, delay}, 'netmap reconnecting')
      this.retryTimer = setTimeout(() => this.connect(), delay)
      this.retryTimer.unref()
    })
  }
}
