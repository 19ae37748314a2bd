/**
 * Test-only: a RelayServer behind a real HTTP server on 127.0.0.1:0, and a binary WebSocket
 * client that queues relay frames and waits for them on events (no sleeps).
 */
import {once} from 'node:events'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import WebSocket from 'ws'
import {
  decodeRelayMessage,
  encodeRelayBatch,
  encodeRelayFrame,
  RELAY_BATCH_HEADER,
  RELAY_FRAME_DATA,
  RELAY_WS_PATH,
  type RelayFrame,
} from '../../../shared/relay/frame.js'
import {RelayMetrics, RelayServer, type RelayIdentity, type RelayServerOptions} from '../server.js'

export interface TestRelay {
  readonly relay: RelayServer
  readonly http: Server
  /** http://127.0.0.1:port (no path). */
  readonly base: string
  /** ws://127.0.0.1:port/api/v1/relay */
  readonly url: string
  close(): Promise<void>
}

/** credentials: credential -> identity. */
export async function startTestRelay(
  credentials: Record<string, RelayIdentity>,
  opts: Partial<RelayServerOptions> = {},
): Promise<TestRelay> {
  const relay = new RelayServer({
    authenticate: async (c) => credentials[c],
    metrics: new RelayMetrics(),
    ...opts,
  })
  const http = createServer((_req, res) => res.writeHead(404).end())
  http.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://x').pathname === RELAY_WS_PATH) relay.handleUpgrade(req, socket, head)
    else socket.destroy()
  })
  http.listen(0, '127.0.0.1')
  await once(http, 'listening')
  const {port} = http.address() as AddressInfo
  const base = `http://127.0.0.1:${port}`
  return {
    relay,
    http,
    base,
    url: `ws://127.0.0.1:${port}${RELAY_WS_PATH}`,
    async close() {
      await relay.close()
      http.closeAllConnections()
      http.close()
      await once(http, 'close')
    },
  }
}

export interface RelayTestClient {
  readonly ws: WebSocket
  /** Every packet received, one entry per packet (a batch gives several, in order). */
  readonly frames: RelayFrame[]
  /** The type of every message received (1 data, 2 batch), in order. */
  readonly messageTypes: number[]
  /** Whether the relay answered the upgrade with RELAY_BATCH_HEADER. */
  readonly batchAccepted: boolean
  readonly closed: Promise<{code: number; reason: string}>
  send(peerId: string, payload: Uint8Array | string): void
  sendBatch(peerId: string, payloads: (Uint8Array | string)[]): void
  sendRaw(data: Buffer | string, binary?: boolean): void
  /** The next frame not yet taken, waiting up to timeoutMs. */
  next(timeoutMs?: number): Promise<RelayFrame>
  /** Resolves once `n` frames (in total) have arrived. */
  count(n: number, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

/** With `batch`, the client announces batches at the upgrade (RELAY_BATCH_HEADER). */
export async function connectRelay(
  url: string,
  credential: string | undefined,
  opts: {batch?: boolean} = {},
): Promise<RelayTestClient> {
  const ws = new WebSocket(url, {
    headers: {
      ...(credential === undefined ? {} : {authorization: `Bearer ${credential}`}),
      ...(opts.batch ? {[RELAY_BATCH_HEADER]: '1'} : {}),
    },
  })
  const frames: RelayFrame[] = []
  const messageTypes: number[] = []
  let batchAccepted = false
  ws.on('upgrade', (res) => (batchAccepted = res.headers[RELAY_BATCH_HEADER] === '1'))
  let taken = 0
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const w of [...waiters]) w()
  }
  ws.on('message', (data) => {
    const m = decodeRelayMessage(data as Buffer, {maxPayload: 65535})
    messageTypes.push(m.type)
    for (const payload of m.payloads) frames.push({type: RELAY_FRAME_DATA, peerId: m.peerId, payload})
    wake()
  })
  ws.on('error', () => undefined)
  const closed = new Promise<{code: number; reason: string}>((resolve) =>
    ws.on('close', (code, reason) => {
      resolve({code, reason: String(reason)})
      wake()
    }),
  )
  const waitFor = (ready: () => boolean, what: string, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (ready()) {
          cleanup()
          resolve()
        } else if (ws.readyState === WebSocket.CLOSED) {
          cleanup()
          reject(new Error(`socket closed while waiting for ${what} (${frames.length} frames)`))
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for ${what} (${frames.length} frames)`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('close', () => resolve())
    ws.once('error', reject)
  })
  return {
    ws,
    frames,
    messageTypes,
    get batchAccepted() {
      return batchAccepted
    },
    closed,
    send: (peerId, payload) =>
      ws.send(encodeRelayFrame(peerId, typeof payload === 'string' ? Buffer.from(payload) : payload)),
    sendBatch: (peerId, payloads) =>
      ws.send(
        encodeRelayBatch(
          peerId,
          payloads.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)),
        ),
      ),
    sendRaw: (data, binary = true) => ws.send(data, {binary}),
    async next(timeoutMs = 5000) {
      await waitFor(() => taken < frames.length, 'a frame', timeoutMs)
      return frames[taken++]!
    },
    count: (n, timeoutMs = 5000) => waitFor(() => frames.length >= n, `${n} frames`, timeoutMs),
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return
      ws.close()
      await closed
    },
  }
}

/** The value of a labelled counter or gauge (0 when the label set was never touched). */
export async function metricValue(
  metric: {get(): Promise<{values: {labels: object; value: number}[]}>},
  labels: Record<string, string>,
): Promise<number> {
  const {values} = await metric.get()
  const hit = values.find((v) =>
    Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val),
  )
  return hit?.value ?? 0
}

/**
 * Creates a relay key through a controller's admin API (POST /api/v1/relay-keys), as
 * `mesh relay key create` does; `adminToken` is a superuser's token. For tests.
 */
export async function createRelayKey(
  controllerUrl: string,
  adminToken: string,
  region: string,
): Promise<{id: string; key: string}> {
  const res = await fetch(`${controllerUrl}/api/v1/relay-keys`, {
    method: 'POST',
    headers: {authorization: `Bearer ${adminToken}`, 'content-type': 'application/json'},
    body: JSON.stringify({region}),
  })
  const body = (await res.json()) as {relayKey: {id: string}; key: string}
  if (res.status !== 201) throw new Error(`relay key create: ${res.status} ${JSON.stringify(body)}`)
  return {id: body.relayKey.id, key: body.key}
}
