/**
 * The UDP socket as the STUN server and netcheck see it: bind, send, receive, close. The real one
 * wraps node:dgram; daemon/nat/testing/natlab.ts provides one on a simulated network with NATs.
 */

import dgram from 'node:dgram'
import {canonicalIp} from './ip-bytes.js'

export interface UdpEndpoint {
  /** Canonical IP text (see canonicalIp). */
  readonly address: string
  readonly port: number
}

export interface UdpSocket {
  /** Where the socket is bound (the port resolved when 0 was asked for). */
  readonly local: UdpEndpoint
  /** Best effort, like UDP itself: a failure is reported to `onError` (when given), never thrown. */
  send(data: Uint8Array, to: UdpEndpoint, onError?: (err: Error) => void): void
  /** Sets the one receive handler (a later call replaces it). */
  onMessage(handler: (data: Buffer, from: UdpEndpoint) => void): void
  close(): void
}

/** Binds a socket on `address:port` (port 0: any free port); rejects when the bind fails. */
export type UdpBind = (local: UdpEndpoint) => Promise<UdpSocket>

/** UdpBind on node:dgram. The address family follows `address`; no SO_REUSEADDR. */
export const nodeUdpBind: UdpBind = (local) =>
  new Promise<UdpSocket>((resolve, reject) => {
    const type = local.address.includes(':') ? 'udp6' : 'udp4'
    const sock = dgram.createSocket({type, ipv6Only: type === 'udp6'})
    let handler: (data: Buffer, from: UdpEndpoint) => void = () => {}
    const onBindError = (err: Error): void => {
      sock.close()
      reject(err)
    }
    sock.once('error', onBindError)
    sock.bind({address: local.address, port: local.port, exclusive: true}, () => {
      sock.off('error', onBindError)
      // After the bind, errors (e.g. ICMP-triggered ones) must never crash the process.
      sock.on('error', () => {})
      const addr = sock.address()
      sock.on('message', (msg, rinfo) => {
        // rinfo.address may carry a zone (fe80::1%eth0); the zone is not part of the endpoint.
        const ip = canonicalIp(rinfo.address.split('%')[0]!)
        if (ip !== undefined) handler(msg, {address: ip, port: rinfo.port})
      })
      let closed = false
      resolve({
        local: {address: canonicalIp(addr.address) ?? addr.address, port: addr.port},
        send(data, to, onError) {
          if (closed) return
          try {
            sock.send(data, to.port, to.address, (err) => {
              if (err && onError) onError(err)
            })
          } catch (err) {
            // Synchronous throws (a bad address or port) are send failures like any other.
            onError?.(err instanceof Error ? err : new Error(String(err)))
          }
        },
        onMessage(h) {
          handler = h
        },
        close() {
          if (closed) return
          closed = true
          sock.close()
        },
      })
    })
  })
