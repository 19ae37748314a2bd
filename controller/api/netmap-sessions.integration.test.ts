// One node credential cannot hold or open netmap sessions without bound (each costs a full
// map): at most MAX_SESSIONS_PER_NODE stay open, a newer one closes the oldest with
// CLOSE.REPLACED, and a burst of new sessions is refused with 429 before any map is sent. The
// controller's clock is a FakeClock: the session bucket refills only when the test moves it.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import WebSocket from 'ws'
import {CLOSE} from '../../shared/protocol/netmap.js'
import {createNetwork, joinNode} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {MAX_SESSIONS_PER_NODE, SESSION_BURST, SESSION_RATE_PER_SEC} from './session-limit.js'
import {FakeClock} from '../../shared/testing/fake-clock.js'

let ctl: TestController
let clock: FakeClock
let netId: string
let seq = 0
const opened: WebSocket[] = []

beforeAll(async () => {
  clock = new FakeClock()
  ctl = await startTestController({clock})
  netId = (await createNetwork(ctl, {name: 'sessions', cidr: '10.77.0.0/24', joinPolicy: 'open'})).id
  // Peers, so that a full map has some weight.
  for (let i = 0; i < 20; i++) await join()
})
afterAll(async () => {
  for (const ws of opened) ws.terminate()
  await ctl?.close()
})

const join = () => joinNode(ctl, netId, `s-${++seq}`)

/** `p`, or a rejection naming `what` after `ms` (a deadline, not a wait). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
  })
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer))
}

interface Session {
  ws: WebSocket
  /** The upgrade's HTTP status when refused, else 101. */
  status: number
  /** Bytes of the refusal body, when refused. */
  refusal: string
  retryAfter: string | undefined
  /** Resolves with the first frame (undefined when the session never gets one). */
  first: Promise<{type: string} | undefined>
  /** Bytes of every frame received. */
  bytes: () => number
  closed: Promise<{code: number; reason: string}>
}

/** Opens a netmap session; resolves once it is open (first frame in) or refused. */
function session(credential: string): Promise<Session> {
  const ws = new WebSocket(`${ctl.url.replace(/^http/, 'ws')}/api/v1/netmap`, {
    headers: {authorization: `Bearer ${credential}`},
    perMessageDeflate: false,
  })
  opened.push(ws)
  let bytes = 0
  let gotFirst: (f: {type: string} | undefined) => void = () => undefined
  const first = new Promise<{type: string} | undefined>((r) => (gotFirst = r))
  const closed = new Promise<{code: number; reason: string}>((resolve) =>
    ws.on('close', (code, reason) => {
      gotFirst(undefined)
      resolve({code, reason: reason.toString()})
    }),
  )
  ws.on('message', (data: Buffer) => {
    bytes += data.length
    gotFirst(JSON.parse(data.toString()) as {type: string})
  })
  ws.on('error', () => undefined)
  return new Promise((resolve) => {
    const s: Session = {
      ws,
      status: 101,
      refusal: '',
      retryAfter: undefined,
      first,
      bytes: () => bytes,
      closed,
    }
    ws.once('unexpected-response', (_req, res) => {
      s.status = res.statusCode ?? 0
      s.retryAfter = res.headers['retry-after'] as string | undefined
      res.on('data', (d: Buffer) => (s.refusal += d.toString()))
      res.on('end', () => {
        ws.terminate()
        resolve(s)
      })
    })
    ws.once('open', () => void first.then(() => resolve(s)))
  })
}

describe('netmap sessions per node credential', () => {
  it(`keeps at most ${MAX_SESSIONS_PER_NODE} sessions open; a newer one closes the oldest with CLOSE.REPLACED`, async () => {
    const {credential} = await join()
    const extra = 3
    const sessions: Session[] = []
    for (let i = 0; i < MAX_SESSIONS_PER_NODE + extra; i++) {
      const s = await session(credential)
      expect(s.status).toBe(101)
      expect((await s.first)?.type).toBe('full')
      sessions.push(s)
    }
    // The oldest `extra` were replaced, in order, with the documented code.
    for (const [i, s] of sessions.slice(0, extra).entries())
      expect(await within(s.closed, 5000, `close of session ${i}`)).toEqual({
        code: CLOSE.REPLACED,
        reason: 'replaced by a newer session',
      })
    // The newest MAX_SESSIONS_PER_NODE are open and still get deltas.
    const kept = sessions.slice(extra)
    const delta = kept.map(
      (s) =>
        new Promise<unknown>((resolve) =>
          s.ws.on('message', (data: Buffer) => {
            const f = JSON.parse(data.toString()) as {type: string}
            if (f.type === 'delta') resolve(f)
          }),
        ),
    )
    await join()
    await within(Promise.all(delta), 5000, 'a delta on every kept session')
    for (const s of kept) expect(s.ws.readyState).toBe(WebSocket.OPEN)
    expect(CLOSE.REPLACED).toBe(4409)
  })

  it('refuses a burst of new sessions with 429 before any full map, so the bytes sent stay bounded', async () => {
    const {credential} = await join()
    const attempts = 60
    const results: Session[] = []
    // A burst: each attempt closes its socket once it has its map (the cap is not what stops it).
    for (let i = 0; i < attempts; i++) {
      const s = await session(credential)
      results.push(s)
      if (s.status === 101) s.ws.close()
    }
    const granted = results.filter((s) => s.status === 101)
    const refused = results.filter((s) => s.status !== 101)
    // The clock stood still: exactly the burst, in order, and nothing refilled.
    expect(results.map((s) => s.status)).toEqual([
      ...Array(SESSION_BURST).fill(101),
      ...Array(attempts - SESSION_BURST).fill(429),
    ])
    for (const s of refused) {
      expect(JSON.parse(s.refusal).error.code).toBe('RATE_LIMITED')
      expect(s.retryAfter).toBe(String(Math.ceil(1 / SESSION_RATE_PER_SEC)))
      expect(s.bytes()).toBe(0)
    }
    // Bytes: one full map per granted session, none for the refused ones.
    const fullBytes = Math.max(...granted.map((s) => s.bytes()))
    const total = results.reduce((n, s) => n + s.bytes(), 0)
    expect(total).toBeLessThanOrEqual(granted.length * fullBytes)
    expect(total).toBeLessThan((attempts / 2) * fullBytes)

    // One token back per 1/SESSION_RATE_PER_SEC s: one more session then, not a millisecond earlier.
    const tokenMs = 1000 / SESSION_RATE_PER_SEC
    clock.advance(tokenMs - 1)
    expect((await session(credential)).status).toBe(429)
    clock.advance(1)
    const again = await session(credential)
    expect([again.status, (await again.first)?.type]).toEqual([101, 'full'])
    again.ws.close()
    expect((await session(credential)).status).toBe(429)

    // Another node is not affected by this one's bucket.
    const other = await join()
    const s = await session(other.credential)
    expect([s.status, (await s.first)?.type]).toEqual([101, 'full'])
    s.ws.close()
  })
})
