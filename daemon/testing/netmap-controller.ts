/**
 * A stand-in controller for daemon tests: real HTTP on 127.0.0.1 with `GET /healthz` (counted)
 * and a WebSocket on any path that sends one full netmap to each node that connects. Test-only.
 */
import http from 'node:http'
import {WebSocketServer} from 'ws'
import type {NetmapFull} from '../../shared/protocol/netmap.js'

export interface NetmapController {
  readonly url: string
  /** GETs of /healthz so far. */
  healthzHits(): number
  close(): Promise<void>
}

export async function startNetmapController(frame: () => NetmapFull): Promise<NetmapController> {
  let hits = 0
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') {
      hits++
      res.writeHead(200, {'content-type': 'application/json'}).end('{"status":"ok"}')
      return
    }
    res.writeHead(404).end()
  })
  const wss = new WebSocketServer({server})
  wss.on('connection', (ws) => ws.send(JSON.stringify(frame())))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  return {
    url: `http://127.0.0.1:${port}`,
    healthzHits: () => hits,
    close: async () => {
      for (const c of wss.clients) c.terminate()
      await new Promise((r) => wss.close(r))
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
}
