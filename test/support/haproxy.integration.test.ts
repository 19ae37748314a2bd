// The haproxy harness (test/support/haproxy.ts) in front of two real in-process HTTP +
// WebSocket servers: it balances, forwards the client address, keeps WebSockets open past the
// HTTP timeouts, and when one server dies abruptly (as a SIGKILLed replica does) closes that
// server's WebSockets and sends every new request and WebSocket to the survivor.
import http from 'node:http'
import type net from 'node:net'
import {afterEach, describe, expect, it} from 'vitest'
import {WebSocket, WebSocketServer} from 'ws'
import {haproxySkipReason, startHaproxy, type StartHaproxyOptions} from './haproxy.js'

const skip = haproxySkipReason()

/**
 * A stand-in replica: GET /readyz → 200, GET /who → `{name, xff}`, and a WebSocket that greets
 * with its name and answers every message with `name:message`. kill() is the abrupt death:
 * stop listening and destroy every socket (health checks, proxied requests, WebSockets), which
 * the peer sees as a reset, like the kernel closing a SIGKILLed process's sockets.
 */
interface FakeReplica {
  readonly name: string
  readonly port: number
  /** /readyz answers 503 from now on (a replica whose database went away), 200 again with true. */
  setReady(ready: boolean): void
  kill(): void
  close(): Promise<void>
}

async function startReplica(name: string, port = 0): Promise<FakeReplica> {
  const sockets = new Set<net.Socket>()
  let ready = true
  const server = http.createServer((req, res) => {
    if (req.url === '/readyz') {
      res.statusCode = ready ? 200 : 503
      return res.end(ready ? '{"status":"ok"}' : '{"status":"unavailable"}')
    }
    if (req.url === '/who') {
      res.setHeader('content-type', 'application/json')
      return res.end(JSON.stringify({name, xff: req.headers['x-forwarded-for'] ?? null}))
    }
    res.statusCode = 404
    res.end()
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  const wss = new WebSocketServer({server})
  wss.on('connection', (ws) => {
    ws.send(`hello ${name}`)
    ws.on('message', (m) => ws.send(`${name}:${String(m)}`))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  const bound = (server.address() as net.AddressInfo).port
  return {
    name,
    port: bound,
    setReady(r) {
      ready = r
    },
    kill() {
      server.close()
      for (const s of sockets) s.destroy()
    },
    async close() {
      for (const c of wss.clients) c.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** What a client sees of a WebSocket through the load balancer. */
interface Client {
  readonly ws: WebSocket
  /** The replica that greeted it. */
  readonly on: string
  readonly messages: string[]
  /** Resolves with the close code once it is closed (by either side). */
  readonly closed: Promise<number>
  /** Sends `text` and resolves with the next message, within 2 s. */
  ask(text: string): Promise<string>
}

function openClient(url: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`)
    const messages: string[] = []
    const waiting: ((m: string) => void)[] = []
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)))
    ws.on('error', () => undefined) // a reset arrives as 'error' then 'close'; 'close' is what we await
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error('no WebSocket greeting through haproxy within 2 s'))
    }, 2000)
    ws.on('message', (data) => {
      const m = String(data)
      messages.push(m)
      if (messages.length === 1) {
        clearTimeout(timer)
        resolve({
          ws,
          on: m.replace(/^hello /, ''),
          messages,
          closed,
          ask: (text) =>
            new Promise((res, rej) => {
              const t = setTimeout(() => rej(new Error(`no answer to ${text} within 2 s`)), 2000)
              waiting.push((answer) => {
                clearTimeout(t)
                res(answer)
              })
              ws.send(text)
            }),
        })
      } else waiting.shift()?.(m)
    })
    ws.once('close', () => {
      clearTimeout(timer)
      reject(new Error('WebSocket closed before its greeting'))
    })
  })
}

async function who(
  url: string,
  headers: Record<string, string> = {},
): Promise<{name: string; xff: string | null}> {
  const res = await fetch(`${url}/who`, {headers})
  expect(res.status).toBe(200)
  return (await res.json()) as {name: string; xff: string | null}
}

/** Resolves with ms taken once `p` settles, rejecting if that is longer than `boundMs`. */
async function within<T>(boundMs: number, what: string, p: Promise<T>): Promise<{value: T; ms: number}> {
  const t = performance.now()
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${boundMs} ms`)), boundMs)
  })
  try {
    const value = await Promise.race([p, bound])
    return {value, ms: performance.now() - t}
  } finally {
    clearTimeout(timer)
  }
}

describe.skipIf(skip !== undefined)(`haproxy harness${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const cleanup: (() => Promise<unknown> | void)[] = []
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c()
  })

  async function setup(opts: Partial<StartHaproxyOptions> = {}) {
    const a = await startReplica('a')
    cleanup.push(() => a.close())
    const b = await startReplica('b')
    cleanup.push(() => b.close())
    const lb = await startHaproxy({
      backends: [
        {name: 'a', host: '127.0.0.1', port: a.port},
        {name: 'b', host: '127.0.0.1', port: b.port},
      ],
      ...opts,
    })
    cleanup.push(() => lb.stop())
    return {a, b, lb}
  }

  it('starts with both backends checked and up, and sends requests to them in turn', async () => {
    const {lb} = await setup()
    expect((await lb.servers()).map((s) => [s.name, s.status, s.checkStatus])).toEqual([
      ['a', 'UP', 'L7OK'],
      ['b', 'UP', 'L7OK'],
    ])
    const names: string[] = []
    for (let i = 0; i < 6; i++) names.push((await who(lb.url)).name)
    expect(names.slice(1).every((n, i) => n !== names[i])).toBe(true)
    expect(new Set(names)).toEqual(new Set(['a', 'b']))
  })

  it('tells the backend the client address in X-Forwarded-For, dropping one the client forged', async () => {
    const {lb} = await setup()
    expect((await who(lb.url)).xff).toBe('127.0.0.1')
    expect((await who(lb.url, {'x-forwarded-for': '203.0.113.7'})).xff).toBe('127.0.0.1')
  })

  it('keeps a WebSocket passing messages both ways past the HTTP timeouts, until it is idle for timeout tunnel', async () => {
    const httpMs = 200
    const tunnel = 1200
    const {lb} = await setup({timeouts: {client: httpMs, server: httpMs, httpKeepAlive: httpMs, tunnel}})
    const c = await openClient(lb.url)
    expect(await c.ask('one')).toBe(`${c.on}:one`)
    // The thing under test is elapsed idle time itself: 3× the client/server timeouts, which
    // would have closed a plain HTTP exchange, and well under timeout tunnel.
    const idle = await within(2000, 'idle wait', new Promise((r) => setTimeout(r, 3 * httpMs)))
    expect(idle.ms).toBeGreaterThanOrEqual(3 * httpMs - 5)
    expect(c.ws.readyState).toBe(WebSocket.OPEN)
    expect(await c.ask('two')).toBe(`${c.on}:two`)
    // Then left idle: haproxy closes it once timeout tunnel passes, not before.
    const {ms} = await within(tunnel + 2000, 'close after timeout tunnel', c.closed)
    expect(ms).toBeGreaterThanOrEqual(tunnel - 100)
  })

  it('after a backend dies abruptly, closes its WebSockets and sends every new request and WebSocket to the survivor within 2 s', async () => {
    const {a, lb} = await setup()
    // Idle leastconn alternates, so two WebSockets land one on each backend.
    const c1 = await openClient(lb.url)
    const c2 = await openClient(lb.url)
    expect(new Set([c1.on, c2.on])).toEqual(new Set(['a', 'b']))
    const [onA, onB] = c1.on === 'a' ? [c1, c2] : [c2, c1]

    const t0 = performance.now()
    a.kill()
    // Right away, before any health check saw it: a connect to `a` is refused and retried on b.
    const names: string[] = []
    for (let i = 0; i < 6; i++) names.push((await who(lb.url)).name)
    const requestsMs = performance.now() - t0
    const fresh: Client[] = []
    for (let i = 0; i < 4; i++) fresh.push(await openClient(lb.url))
    for (const c of fresh) cleanup.push(() => c.ws.terminate())
    const wsMs = performance.now() - t0
    expect(names).toEqual(Array(6).fill('b'))
    expect(fresh.map((c) => c.on)).toEqual(Array(4).fill('b'))
    // ...and they did try `a` first: the refused connects were redispatched, not lucky.
    const redispatched = (await lb.servers()).find((s) => s.name === 'a')?.redispatches ?? 0
    expect(redispatched).toBeGreaterThan(0)

    await within(2000, "the dead backend's WebSocket closing", onA.closed)
    const closedMs = performance.now() - t0
    await lb.waitForServer('a', 'DOWN', 2000)
    const downMs = performance.now() - t0
    expect(await onB.ask('still')).toBe('b:still')
    expect(performance.now() - t0).toBeLessThan(2000)
    console.log(
      `haproxy failover: started in ${lb.timings.startMs.toFixed(0)} ms + ${lb.timings.firstChecksMs.toFixed(0)} ms to first checks; ` +
        `after the kill: 6 requests done by ${requestsMs.toFixed(0)} ms, 4 WebSockets by ${wsMs.toFixed(0)} ms, ` +
        `old WebSocket closed by ${closedMs.toFixed(0)} ms, marked DOWN seen by ${downMs.toFixed(0)} ms; ` +
        `${redispatched} connects redispatched from a to b`,
    )
    onB.ws.terminate()
  })

  it('closes the WebSockets of a backend that stays up but fails its readiness check', async () => {
    const {a, lb} = await setup()
    const c1 = await openClient(lb.url)
    const c2 = await openClient(lb.url)
    const onA = c1.on === 'a' ? c1 : c2
    cleanup.push(() => (onA === c1 ? c2 : c1).ws.terminate())
    a.setReady(false)
    // Not a reset this time: only haproxy's verdict (on-marked-down shutdown-sessions) ends it.
    await within(2000, "the unready backend's WebSocket closing", onA.closed)
    expect((await lb.servers()).find((s) => s.name === 'a')?.checkStatus).toBe('L7STS')
    expect((await openClient(lb.url)).on).toBe('b')
  })

  it('puts a backend restarted on a new port back in rotation after setBackend', async () => {
    const {a, lb} = await setup()
    a.kill()
    await lb.waitForServer('a', 'DOWN', 2000)
    const a2 = await startReplica('a')
    cleanup.push(() => a2.close())
    await lb.setBackend('a', {host: '127.0.0.1', port: a2.port})
    const upMs = await lb.waitForServer('a', 'UP', 2000)
    const names = new Set<string>()
    for (let i = 0; i < 4; i++) names.add((await who(lb.url)).name)
    expect(names).toEqual(new Set(['a', 'b']))
    expect(upMs).toBeLessThan(2000)
  })

  it("drain keeps a backend's WebSockets but sends new connections elsewhere; maint closes them; ready takes it back", async () => {
    const {lb} = await setup()
    const c1 = await openClient(lb.url)
    const c2 = await openClient(lb.url)
    const [onA, onB] = c1.on === 'a' ? [c1, c2] : [c2, c1]
    cleanup.push(() => onB.ws.terminate())
    await lb.setBackendState('a', 'drain')
    const names: string[] = []
    for (let i = 0; i < 4; i++) names.push((await who(lb.url)).name)
    expect(names).toEqual(Array(4).fill('b'))
    expect(await onA.ask('draining')).toBe('a:draining')
    await lb.setBackendState('a', 'maint')
    await within(2000, 'the WebSocket of a backend put in maint closing', onA.closed)
    await lb.setBackendState('a', 'ready')
    await lb.waitForServer('a', 'UP', 2000)
    // leastconn: b still holds a WebSocket and a none, so a gets the new requests.
    expect((await who(lb.url)).name).toBe('a')
  })
})
