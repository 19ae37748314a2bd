/**
 * A WebSocket test client: connects with a bearer token, queues every frame, and waits for the
 * next frame matching a predicate within a deadline. Test-only.
 */
import WebSocket from 'ws'

export interface WsClient {
  readonly ws: WebSocket
  readonly frames: unknown[]
  /** Resolves with the close code and reason once the socket closes. */
  readonly closed: Promise<{code: number; reason: string}>
  /** The next not-yet-taken frame that matches, waiting up to `timeoutMs`. */
  next<T = Record<string, unknown>>(match?: (f: T) => boolean, timeoutMs?: number): Promise<T>
  /** Frames not yet taken by next(). */
  pending(): unknown[]
  /**
   * Resolves once `check` holds, checked now and again on every frame that arrives (no polling);
   * rejects after `timeoutMs`. For conditions over all frames (`frames`), not one frame.
   */
  until(check: () => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export function connectWs(url: string, token: string | undefined): Promise<WsClient> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), {
    headers: token === undefined ? {} : {authorization: `Bearer ${token}`},
  })
  const frames: unknown[] = []
  let taken = 0
  const waiters = new Set<() => void>()
  ws.on('message', (data) => {
    frames.push(JSON.parse(String(data)))
    for (const w of waiters) w()
  })
  const closed = new Promise<{code: number; reason: string}>((resolve) =>
    ws.on('close', (code, reason) => {
      resolve({code, reason: String(reason)})
      for (const w of waiters) w()
    }),
  )
  const client: WsClient = {
    ws,
    frames,
    closed,
    pending: () => frames.slice(taken),
    next<T>(match: (f: T) => boolean = () => true, timeoutMs = 5000) {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          while (taken < frames.length) {
            const f = frames[taken++] as T
            if (match(f)) {
              cleanup()
              resolve(f)
              return
            }
          }
          if (ws.readyState === WebSocket.CLOSED) {
            cleanup()
            reject(new Error(`socket closed while waiting; frames: ${JSON.stringify(frames).slice(0, 500)}`))
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(
            new Error(
              `no matching frame within ${timeoutMs} ms; frames: ${JSON.stringify(frames).slice(0, 800)}`,
            ),
          )
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    },
    until(cond: () => boolean, timeoutMs = 5000) {
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!cond()) return
          cleanup()
          resolve()
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`condition not met within ${timeoutMs} ms (${frames.length} frames)`))
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return
      ws.close()
      await closed
    },
  }
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode} on upgrade`)))
  })
}
