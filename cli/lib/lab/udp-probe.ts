/**
 * A tiny UDP/TCP probe run inside lab namespaces (node dist/cli/lib/lab/udp-probe.js MODE ...),
 * to see what a NAT does. One JSON object per stdout line; datagrams are JSON, at most 1,200
 * bytes, anything else is ignored.
 *
 *   server BIND...          echo server on each ADDR:PORT: answers {id, mapped: "ip:port" it saw,
 *                           server: "addr:port"} from the same socket, or from the bound socket
 *                           named by the request's `replyFrom` (RFC 5780's CHANGE-REQUEST).
 *                           Prints {"ready": [...]} once every socket is bound.
 *   client [PORT]           binds 0.0.0.0:PORT (0 = any), prints {"ready": {"port"}}; reads
 *                           commands on stdin, one JSON per line: {"to": "ip:port", ...fields}
 *                           sends the other fields as a datagram. Prints every datagram it gets
 *                           as {"from": "ip:port", "data": ...}; answers requests carrying
 *                           "echo": true like the server does (so two clients can punch).
 *   send FROM TO TEXT       sends one datagram {text} from FROM (ADDR:PORT) to TO and exits.
 *   tcp TO                  connects to TO (ADDR:PORT), prints {"connected": true}, exits 0;
 *                           exit 1 when it cannot within 5 s.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import readline from 'node:readline'

const MAX_DATAGRAM = 1200

export function splitHostPort(s: string): {host: string; port: number} {
  const i = s.lastIndexOf(':')
  const port = Number(s.slice(i + 1))
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad ADDR:PORT ${s}`)
  return {host: s.slice(0, i), port}
}

const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n')
}

function parse(msg: Buffer): Record<string, unknown> | undefined {
  if (msg.length > MAX_DATAGRAM) return undefined
  try {
    const v: unknown = JSON.parse(msg.toString('utf8'))
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

const bind = (sock: dgram.Socket, host: string, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({address: host, port, exclusive: true}, () => {
      sock.off('error', reject)
      resolve()
    })
  })

const addrOf = (sock: dgram.Socket): string => {
  const a = sock.address()
  return `${a.address}:${a.port}`
}

function answer(
  req: Record<string, unknown>,
  rinfo: dgram.RemoteInfo,
  via: dgram.Socket,
  others: Map<string, dgram.Socket>,
): void {
  const from = typeof req.replyFrom === 'string' ? others.get(req.replyFrom) : via
  if (!from) return
  const reply = Buffer.from(
    JSON.stringify({id: req.id ?? null, mapped: `${rinfo.address}:${rinfo.port}`, server: addrOf(from)}),
  )
  from.send(reply, rinfo.port, rinfo.address)
}

async function server(binds: string[]): Promise<void> {
  const socks = new Map<string, dgram.Socket>()
  for (const b of binds) {
    const {host, port} = splitHostPort(b)
    const sock = dgram.createSocket('udp4')
    await bind(sock, host, port)
    socks.set(addrOf(sock), sock)
  }
  for (const sock of socks.values()) {
    sock.on('message', (msg, rinfo) => {
      const req = parse(msg)
      if (req) answer(req, rinfo, sock, socks)
    })
    sock.on('error', () => undefined)
  }
  out({ready: [...socks.keys()]})
}

async function client(port: number): Promise<void> {
  const sock = dgram.createSocket('udp4')
  await bind(sock, '0.0.0.0', port)
  sock.on('message', (msg, rinfo) => {
    const data = parse(msg)
    if (!data) return
    out({from: `${rinfo.address}:${rinfo.port}`, data})
    if (data.echo === true && data.mapped === undefined) answer(data, rinfo, sock, new Map())
  })
  sock.on('error', (err) => out({error: err.message}))
  const rl = readline.createInterface({input: process.stdin})
  rl.on('line', (line) => {
    let cmd: Record<string, unknown>
    try {
      cmd = JSON.parse(line) as Record<string, unknown>
      const {host, port: p} = splitHostPort(String(cmd.to))
      const {to: _to, ...rest} = cmd
      sock.send(Buffer.from(JSON.stringify(rest)), p, host)
    } catch (err) {
      out({error: err instanceof Error ? err.message : String(err)})
    }
  })
  rl.on('close', () => process.exit(0))
  out({ready: {port: sock.address().port}})
}

async function sendOnce(from: string, to: string, text: string): Promise<void> {
  const f = splitHostPort(from)
  const t = splitHostPort(to)
  const sock = dgram.createSocket('udp4')
  await bind(sock, f.host, f.port)
  await new Promise<void>((resolve, reject) =>
    sock.send(Buffer.from(JSON.stringify({text})), t.port, t.host, (err) => (err ? reject(err) : resolve())),
  )
  sock.close()
  out({sent: true})
}

function tcp(to: string): void {
  const {host, port} = splitHostPort(to)
  const s = net.connect({host, port, timeout: 5000})
  s.once('connect', () => {
    out({connected: true})
    s.destroy()
    process.exit(0)
  })
  const fail = (why: string): void => {
    out({connected: false, error: why})
    process.exit(1)
  }
  s.once('timeout', () => fail('timeout'))
  s.once('error', (err) => fail(err.message))
}

async function main(argv: string[]): Promise<void> {
  const [mode, ...rest] = argv
  if (mode === 'server' && rest.length > 0) return server(rest)
  if (mode === 'client') return client(Number(rest[0] ?? 0))
  if (mode === 'send' && rest.length === 3) return sendOnce(rest[0]!, rest[1]!, rest[2]!)
  if (mode === 'tcp' && rest.length === 1) return tcp(rest[0]!)
  process.stderr.write('usage: udp-probe server BIND... | client [PORT] | send FROM TO TEXT | tcp TO\n')
  process.exit(2)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    out({error: err instanceof Error ? err.message : String(err)})
    process.exit(1)
  })
}
