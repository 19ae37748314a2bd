// Oversized request bodies get their 413 every time, over a raw TCP socket as curl and naive
// clients send them: refused on Content-Length before any `100 Continue`, and for bodies
// without a Content-Length (chunked) answered and then drained, so the reply reaches the client
// instead of a reset connection.
import {EventEmitter} from 'node:events'
import net from 'node:net'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {LINGER_MAX_BYTES, LINGER_MAX_MS} from './server.js'

let ctl: TestController
let port: number

beforeAll(async () => {
  ctl = await startTestController()
  port = Number(new URL(ctl.url).port)
})
afterAll(async () => {
  await ctl?.close()
})

const TWO_MIB = 2 * 1024 * 1024

interface RawExchange {
  /** Everything the server sent, as text. */
  text: string
  /** The socket error the client saw (ECONNRESET, EPIPE), if any. */
  error: string | undefined
  /** Whether the server sent an interim `100 Continue`. */
  gotContinue: boolean
}

/**
 * One request on its own connection. `send` writes the rest of the request (body) once the
 * headers are out; the exchange ends when the server closes, or after 10 s at most.
 */
function exchange(
  head: string,
  send: (socket: net.Socket, replies: EventEmitter) => Promise<unknown> | void,
): Promise<RawExchange> {
  return new Promise((resolve) => {
    // Half-open: a naive client finishes sending its body even after the server's FIN.
    const socket = net.connect({host: '127.0.0.1', port, allowHalfOpen: true})
    let sending: Promise<unknown> = Promise.resolve()
    const chunks: Buffer[] = []
    /** Emits 'continue' on an interim 100 and 'final' on the final status line. */
    const replies = new EventEmitter()
    const state = {gotContinue: false, gotFinal: false}
    let error: string | undefined
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), 10_000)
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      const text = Buffer.concat(chunks).toString('latin1')
      if (!state.gotContinue && text.startsWith('HTTP/1.1 100 ')) {
        state.gotContinue = true
        replies.emit('continue')
      }
      if (!state.gotFinal && /HTTP\/1\.1 [2-5]\d\d /.test(text)) {
        state.gotFinal = true
        replies.emit('final')
      }
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message
    })
    socket.on('end', () => void sending.finally(() => socket.end()))
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({text: Buffer.concat(chunks).toString('latin1'), error, gotContinue: state.gotContinue})
    })
    socket.write(head, () => {
      sending = Promise.resolve(send(socket, replies))
    })
  })
}

const requestHead = (extra: string) =>
  `POST /api/v1/networks HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${ctl.adminToken}\r\n` +
  `Content-Type: application/json\r\n${extra}\r\n`

/**
 * Writes `total` bytes of `frame`s as fast as the socket takes them (waiting for 'drain'), then
 * `trailer`; stops early when the socket fails. Resolves with the bytes written.
 */
function pump(socket: net.Socket, frame: Buffer, total: number, trailer = ''): Promise<number> {
  return new Promise((resolve) => {
    let written = 0
    const done = () => resolve(written)
    socket.once('close', done)
    const next = () => {
      while (written < total) {
        if (socket.destroyed || !socket.writable) return done()
        written += frame.length
        if (!socket.write(frame, () => undefined)) {
          socket.once('drain', next)
          return
        }
      }
      if (trailer && socket.writable) socket.write(trailer, () => undefined)
      done()
    }
    next()
  })
}

const chunkFrame = (size: number) => {
  const data = Buffer.alloc(size, 0x61)
  return Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), data, Buffer.from('\r\n')])
}

/** The final response's status and error code from raw response text. */
function finalReply(text: string): {status: number; code: string | undefined} {
  const finals = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])).filter((s) => s >= 200)
  const code = /"code":"([A-Z_]+)"/.exec(text)?.[1]
  return {status: finals[0] ?? 0, code}
}

describe('oversized bodies', () => {
  it('refuses a 2 MiB Content-Length with 413 before 100 Continue, every time (20 tries)', async () => {
    for (let i = 0; i < 20; i++) {
      // Like curl: wait for the interim 100 (up to 1 s), and only then send the body.
      const r = await exchange(
        requestHead(`Content-Length: ${TWO_MIB}\r\nExpect: 100-continue\r\n`),
        (socket, replies) => {
          let decided = false
          const sendBody = () => {
            if (decided || socket.destroyed) return
            decided = true
            clearTimeout(curlTimeout)
            socket.write(Buffer.alloc(TWO_MIB, 0x61), () => undefined)
          }
          // curl's own rule: send the body after 1 s without an answer.
          const curlTimeout = setTimeout(sendBody, 1000)
          replies.once('continue', sendBody)
          replies.once('final', () => {
            decided = true
            clearTimeout(curlTimeout)
          })
        },
      )
      expect(r.gotContinue, `try ${i}: sent 100 Continue`).toBe(false)
      expect(r.error, `try ${i}: ${r.text.slice(0, 80)}`).toBeUndefined()
      expect(finalReply(r.text), `try ${i}`).toEqual({status: 413, code: 'PAYLOAD_TOO_LARGE'})
      expect(r.text).toMatch(/\r\nconnection: close\r\n/i)
      expect(r.text).toContain('"hint":')
    }
  })

  it('answers a 6 MiB Content-Length body sent without Expect with 413, not a reset (10 tries)', async () => {
    const size = 6 * 1024 * 1024
    for (let i = 0; i < 10; i++) {
      const r = await exchange(requestHead(`Content-Length: ${size}\r\n`), (socket) =>
        pump(socket, Buffer.alloc(64 * 1024, 0x61), size),
      )
      expect(r.error, `try ${i}: ${r.text.slice(0, 80)}`).toBeUndefined()
      expect(finalReply(r.text), `try ${i}`).toEqual({status: 413, code: 'PAYLOAD_TOO_LARGE'})
    }
  })

  it('answers an oversized chunked body (no Content-Length) with 413 and drains it, not a reset (10 tries)', async () => {
    for (let i = 0; i < 10; i++) {
      // A naive client: streams its whole 6 MiB body, reading the reply only as it comes.
      const r = await exchange(requestHead('Transfer-Encoding: chunked\r\n'), (socket) =>
        pump(socket, chunkFrame(64 * 1024), 6 * 1024 * 1024, '0\r\n\r\n'),
      )
      expect(r.error, `try ${i}: ${r.text.slice(0, 80)}`).toBeUndefined()
      expect(finalReply(r.text), `try ${i}`).toEqual({status: 413, code: 'PAYLOAD_TOO_LARGE'})
    }
  })

  it('cuts off a client that keeps sending past the drain bound instead of reading forever', async () => {
    const started = Date.now()
    const limit = 256 * 1024 * 1024
    let written = 0
    const r = await exchange(requestHead('Transfer-Encoding: chunked\r\n'), async (socket) => {
      written = await pump(socket, chunkFrame(64 * 1024), limit)
    })
    expect(finalReply(r.text).status).toBe(413)
    // Drain bound plus what the two kernels' socket buffers hold.
    expect(written).toBeLessThan(LINGER_MAX_BYTES + 32 * 1024 * 1024)
    expect(Date.now() - started).toBeLessThan(LINGER_MAX_MS + 3_000)
  })

  it('still accepts a normal body with Expect: 100-continue', async () => {
    const body = JSON.stringify({name: 'expect-ok', cidr: '10.99.0.0/24'})
    const r = await exchange(
      requestHead(
        `Content-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n`,
      ),
      (socket, replies) => {
        replies.once('continue', () => socket.write(body))
      },
    )
    expect(r.gotContinue).toBe(true)
    expect(finalReply(r.text).status).toBe(201)
  })
})
