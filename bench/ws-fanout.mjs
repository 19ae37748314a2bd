// WebSocket fan-out benchmark (not a test): the time to write one netmap delta to N open server
// sockets, with `ws.send` per socket (the baseline: what the netmap hub did before) beside one
// frame built once and written to each socket (controller/api/ws-frame.ts), in the same run,
// alternating rounds. The N clients run in a child process on loopback and count what arrives;
// a round ends when every client has its message, so each round's writes are fully drained.
// Run: `bash scripts/build.sh && source scripts/node-env.sh && node bench/ws-fanout.mjs
// [--sockets N] [--rounds R] [--json]` (imports the built code from dist/).
import {fork} from 'node:child_process'
import http from 'node:http'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {parseArgs} from 'node:util'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const {values: opts} = parseArgs({
  options: {
    sockets: {type: 'string', default: '5000'},
    rounds: {type: 'string', default: '20'},
    client: {type: 'string'},
    json: {type: 'boolean', default: false},
    help: {type: 'boolean', short: 'h', default: false},
  },
})
if (opts.help) {
  console.log('usage: node bench/ws-fanout.mjs [--sockets N] [--rounds R] [--json]')
  process.exit(0)
}
const wsUrl = pathToFileURL(path.join(root, 'node_modules', 'ws', 'index.js')).href
const {WebSocket, WebSocketServer} = (await import(wsUrl)).default
const N = Number(opts.sockets)
const ROUNDS = Number(opts.rounds)
if (!(N >= 1 && N <= 20_000) || !(ROUNDS >= 2 && ROUNDS <= 200))
  throw new Error('--sockets 1..20000, --rounds 2..200')

if (opts.client !== undefined) await client(Number(opts.client))
else await server()

/** The child: N sockets; says 'done' each time every socket has received one more message. */
async function client(port) {
  let got = 0
  let want = 0
  const opening = []
  for (let i = 0; i < N; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
    ws.on('message', () => {
      if (++got === want) process.send('done')
    })
    opening.push(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)))
    if (opening.length === 200) await Promise.all(opening.splice(0))
  }
  await Promise.all(opening)
  process.on('message', () => {
    want += N
    if (got === want) process.send('done')
  })
  process.send('ready')
}

async function server() {
  const {prebuiltTextFrame, sendPrebuilt} = await import(
    pathToFileURL(path.join(root, 'dist', 'controller', 'api', 'ws-frame.js')).href
  )
  const wss = new WebSocketServer({noServer: true, clientTracking: false})
  const sockets = []
  const httpServer = http.createServer()
  httpServer.on('upgrade', (req, sock, head) => wss.handleUpgrade(req, sock, head, (ws) => sockets.push(ws)))
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  const child = fork(fileURLToPath(import.meta.url), [
    '--client',
    String(httpServer.address().port),
    '--sockets',
    String(N),
  ])
  const nextMessage = () =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('client did not answer within 60 s')), 60_000)
      child.once('message', (m) => {
        clearTimeout(timer)
        resolve(m)
      })
    })
  await nextMessage() // ready: every client socket is open
  if (sockets.length !== N) throw new Error(`${sockets.length} of ${N} sockets accepted`)

  // A delta of one changed peer, as the hub sends it.
  const payload = Buffer.from(
    '{"type":"delta","version":123456,"changed":[{"id":"n_0123456789abcdef","name":"host-1234",' +
      '"publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","address":"100.64.12.34",' +
      '"endpoints":["198.51.100.7:51820","10.1.2.3:51820"],"online":true}]}',
  )
  const prebuilt = prebuiltTextFrame(payload)
  const modes = {
    'ws.send per socket': (ws) => ws.send(payload, {binary: false}),
    'prebuilt frame': (ws) => sendPrebuilt(ws, prebuilt),
  }
  const times = Object.fromEntries(Object.keys(modes).map((m) => [m, []]))
  for (let r = 0; r < ROUNDS; r++) {
    const name = Object.keys(modes)[r % 2]
    const send = modes[name]
    const started = performance.now()
    for (const ws of sockets) send(ws)
    times[name].push(performance.now() - started)
    child.send('count')
    await nextMessage()
  }
  child.kill()
  httpServer.close()

  const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1]
  const [base, fast] = Object.keys(modes).map((m) => median(times[m]))
  const result = {sockets: N, rounds: ROUNDS, baselineMs: base, prebuiltMs: fast, ratio: fast / base}
  if (opts.json) console.log(JSON.stringify(result))
  else {
    console.log(`one delta (${payload.length} B) to ${N} open sockets, median of ${ROUNDS / 2} rounds each:`)
    console.log(
      `  ws.send per socket (baseline)  ${base.toFixed(1)} ms  (${((base * 1000) / N).toFixed(1)} µs/socket)`,
    )
    console.log(
      `  prebuilt frame                 ${fast.toFixed(1)} ms  (${((fast * 1000) / N).toFixed(1)} µs/socket)`,
    )
    console.log(`  ratio prebuilt/baseline        ${(fast / base).toFixed(2)}`)
  }
  process.exit(0)
}
