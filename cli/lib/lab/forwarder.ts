/**
 * A unix-socket-to-TCP forwarder, run inside the controller's namespace: unix sockets are files,
 * visible from every namespace, so the lab (in the root namespace) reaches the controller's HTTP
 * API without giving the root namespace any lab address. Usage: node forwarder.js SOCKET HOST PORT
 */
import fs from 'node:fs'
import net from 'node:net'

export function forward(socketPath: string, host: string, port: number): net.Server {
  fs.rmSync(socketPath, {force: true})
  const server = net.createServer((client) => {
    const upstream = net.connect({host, port})
    client.pipe(upstream).pipe(client)
    const close = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', close)
    upstream.on('error', close)
    client.on('close', close)
    upstream.on('close', close)
  })
  // bind(2) happens inside listen(): the umask makes the socket 0600 from its first instant,
  // so no other user can connect before the chmod.
  const oldMask = process.umask(0o177)
  try {
    server.listen(socketPath, () => fs.chmodSync(socketPath, 0o600))
  } finally {
    process.umask(oldMask)
  }
  return server
}

const isMain =
  process.argv[1] !== undefined && import.meta.url === `file://${fs.realpathSync(process.argv[1])}`
if (isMain) {
  const [socketPath, host, port] = process.argv.slice(2)
  if (!socketPath || !host || !port) {
    process.stderr.write('usage: forwarder.js SOCKET HOST PORT\n')
    process.exit(64)
  }
  const server = forward(socketPath, host, Number(port))
  server.on('listening', () => process.stdout.write(`forwarding ${socketPath} -> ${host}:${port}\n`))
  const stop = (): void => {
    server.close()
    fs.rmSync(socketPath, {force: true})
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
