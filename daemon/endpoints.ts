/**
 * The local half of a node's endpoint candidates: its interface addresses with the WireGuard
 * listen port. Loopback, link-local and mesh's own interfaces are skipped (a mesh address is not
 * a way to reach the node from outside the mesh).
 */
import os from 'node:os'

export function localEndpoints(listenPort: number, skipInterfaces: ReadonlySet<string>): string[] {
  const out: string[] = []
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (skipInterfaces.has(name)) continue
    for (const a of addrs ?? []) {
      if (a.internal) continue
      if (a.family === 'IPv4') {
        if (a.address.startsWith('169.254.')) continue
        out.push(`${a.address}:${listenPort}`)
      } else if (a.family === 'IPv6') {
        if (/^fe80:/i.test(a.address) || a.address === '::1') continue
        out.push(`[${a.address}]:${listenPort}`)
      }
    }
  }
  // IPv4 first: the first candidate is the one WireGuard is pointed at.
  return out.sort((x, y) => Number(x.startsWith('[')) - Number(y.startsWith('['))).slice(0, 16)
}
