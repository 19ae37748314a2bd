/**
 * A hostile "controller" on loopback for tests: it answers every HTTP request as told (an endless
 * body, a crafted error), or upgrades a WebSocket and announces a frame larger than any client
 * should take. It counts the bytes the kernel accepted from it, so a test can prove that the
 * client stopped reading instead of buffering whatever came. Test-only.
 */
import {createHash} from 'node:crypto'
import http from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

export type HostileReply =
  /** 200 application/json, no Content-Length, then the same chunk forever (bounded by maxBytes). */
  | {kind: 'endless'; contentLength?: number}
  /** A fixed status and body. */
  | {kind: 'fixed'; status: number; body: string; contentType?: string}

export interface HostileServer {
  readonly url: string
  /** Bytes of reply body (or WebSocket payload) the kernel accepted, over all connections. */
  readonly bytesWritten: number
  /** Resolves when every connection that wrote an endless body or frame has closed. */
  drained(): Promise<void>
  close(): Promise<void>
}

const CHUNK = Buffer.alloc(64 * 1024, ' ')
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * Writes CHUNK after CHUNK with backpressure until the peer goes away or `maxBytes` are out;
 * counts only bytes whose write completed.
 */
function flood(socket: Socket, maxBytes: number, count: (n: number) => void): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0
    let done = false
    const finish = () => {
      if (done) return
      done = true
      socket.destroy()
      resolve()
    }
    socket.on('close', finish)
    socket.on('error', finish)
    const pump = (): void => {
      while (!done && sent < maxBytes) {
        sent += CHUNK.length
        const ok = socket.write(CHUNK, (err) => {
          if (!err) count(CHUNK.length)
        })
        if (!ok) {
          socket.once('drain', pump)
          return
        }
      }
      if (sent >= maxBytes) socket.end()
    }
    pump()
  })
}

export async function startHostileServer(
  reply: HostileReply,
  opts: {maxBytes?: number; wsFrameBytes?: number} = {},
): Promise<HostileServer> {
  const maxBytes = opts.maxBytes ?? 256 * 1024 * 1024
  let bytes = 0
  const floods: Promise<void>[] = []
  const count = (n: number) => (bytes += n)

  const server = http.createServer((req, res) => {
    req.resume()
    if (reply.kind === 'fixed') {
      res.writeHead(reply.status, {'content-type': reply.contentType ?? 'application/json'}).end(reply.body)
      return
    }
    const socket = res.socket!
    const head =
      'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n' +
      (reply.contentLength === undefined
        ? 'connection: close\r\n\r\n'
        : `content-length: ${reply.contentLength}\r\nconnection: close\r\n\r\n`)
    // Raw bytes after the head: without a Content-Length the body runs until the socket closes.
    socket.write(head)
    floods.push(flood(socket, maxBytes, count))
  })

  server.on('upgrade', (req, socket: Socket) => {
    const key = String(req.headers['sec-websocket-key'] ?? '')
    const accept = createHash('sha1')
      .update(key + WS_GUID)
      .digest('base64')
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
        `sec-websocket-accept: ${accept}\r\n\r\n`,
    )
    // One unmasked text frame (FIN, opcode 1) announcing wsFrameBytes of payload, then the payload.
    const length = opts.wsFrameBytes ?? 48 * 1024 * 1024
    const header = Buffer.alloc(10)
    header[0] = 0x81
    header[1] = 127
    header.writeBigUInt64BE(BigInt(length), 2)
    socket.write(header)
    floods.push(flood(socket, Math.min(length, maxBytes), count))
  })

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    get bytesWritten() {
      return bytes
    },
    drained: async () => {
      await Promise.all(floods)
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
