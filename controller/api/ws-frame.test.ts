// A frame built once and written straight to server sockets reads, at a real `ws` client, as
// the very message `ws.send` would have sent, in order with messages `ws` sent itself.
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import {afterEach, describe, expect, it} from 'vitest'
import {WebSocket, WebSocketServer} from 'ws'
import {canWriteRaw, prebuiltTextFrame, sendPrebuilt} from './ws-frame.js'

interface Pair {
  server: WebSocket
  client: WebSocket
  /** Resolves with the next `n` text messages the client receives. */
  next(n: number): Promise<string[]>
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function pair(): Promise<Pair> {
  const wss = new WebSocketServer({noServer: true, clientTracking: false})
  const httpServer = http.createServer()
  const accepted = new Promise<WebSocket>((resolve) =>
    httpServer.on('upgrade', (req, sock, head) => wss.handleUpgrade(req, sock, head, resolve)),
  )
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  const {port} = httpServer.address() as AddressInfo
  const client = new WebSocket(`ws://127.0.0.1:${port}/`)
  const inbox: string[] = []
  let waiter: {n: number; resolve: (m: string[]) => void} | undefined
  client.on('message', (data, isBinary) => {
    expect(isBinary).toBe(false)
    inbox.push(String(data))
    if (waiter && inbox.length >= waiter.n) waiter.resolve(inbox.splice(0, waiter.n))
  })
  await new Promise<void>((resolve, reject) => client.once('open', resolve).once('error', reject))
  const server = await accepted
  cleanups.push(async () => {
    client.terminate()
    server.terminate()
    await new Promise<void>((resolve) => httpServer.close(() => resolve()))
  })
  return {
    server,
    client,
    next: (n) =>
      new Promise((resolve) => {
        if (inbox.length >= n) resolve(inbox.splice(0, n))
        else waiter = {n, resolve}
      }),
  }
}

describe('prebuilt WebSocket frames', () => {
  it('arrive as the same text message for each of the three length encodings', async () => {
    const p = await pair()
    // 7-bit, 16-bit and 64-bit payload lengths, with multi-byte UTF-8.
    const texts = ['{"a":"é"}', `{"b":"${'x'.repeat(300)}"}`, `{"c":"${'ü'.repeat(40_000)}"}`]
    expect(canWriteRaw(p.server)).toBe(true) // fails if ws changes its internals' shape
    for (const t of texts) sendPrebuilt(p.server, prebuiltTextFrame(Buffer.from(t)))
    expect(await p.next(3)).toEqual(texts)
  })

  it('keep their order among messages ws sends itself, whole or fragmented', async () => {
    const p = await pair()
    const one = prebuiltTextFrame(Buffer.from('{"n":1}'))
    sendPrebuilt(p.server, one)
    p.server.send(Buffer.from('{"n":2}'), {binary: false})
    p.server.send(Buffer.from('{"n":'), {binary: false, fin: false})
    // Halfway through a fragmented message, a frame written beside ws would cut into it.
    expect(canWriteRaw(p.server)).toBe(false)
    p.server.send(Buffer.from('3}'), {binary: false, fin: true})
    expect(canWriteRaw(p.server)).toBe(true)
    sendPrebuilt(p.server, prebuiltTextFrame(Buffer.from('{"n":4}')))
    sendPrebuilt(p.server, one)
    expect(await p.next(5)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', '{"n":1}'])
  })

  it('are never written raw from a client socket (its frames must be masked): ws.send frames those', async () => {
    const p = await pair()
    expect(canWriteRaw(p.client)).toBe(false)
    const got = new Promise<string>((resolve) => p.server.once('message', (d) => resolve(String(d))))
    sendPrebuilt(p.client, prebuiltTextFrame(Buffer.from('{"from":"client"}')))
    expect(await got).toBe('{"from":"client"}')
  })
})
