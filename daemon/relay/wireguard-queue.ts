/**
 * How full WireGuard's listen socket is: the bytes waiting in its kernel receive queue, read from
 * /proc/net/udp (Linux). Not a socket option of ours: the socket belongs to wireguard-go (or the
 * kernel), so its queue is only visible the way `ss` and netstat see it.
 *
 * Why (daemon/relay/shim.ts, WireGuardPacer): relayed packets reach WireGuard as datagrams on
 * loopback, and wireguard-go 0.0.2022x keeps the kernel's default receive buffer (212,992 bytes:
 * 92 packets of 1452 bytes, each costing 2,304 bytes of skb truesize). On a loaded machine it is
 * off the CPU for milliseconds at a time; a fixed pace then overflows that buffer. Measured in
 * the NAT lab (cone-cone, UDP blocked, iperf3 through the relay, load average 8-13 on 2 cores):
 * the receiving node's wireguard-go socket dropped 1,264 datagrams in 6 s (`ss -uam` d1264)
 * against 1,272 TCP retransmits of the iperf3 sender, while the relay and both shims dropped
 * nothing: every retransmit was that overflow, and each cost TCP a relayed round trip. With the
 * queue visible, the pacer sends only what fits and keeps the rest (bounded) until WireGuard reads.
 *
 * Cost: one pread of a /proc file kept open, ~15 µs with a handful of UDP sockets in the network
 * namespace. The pacer asks only when its budget is spent (at most once per turn of the event
 * loop, and once a millisecond while WireGuard is behind). A file over MAX_PROC_BYTES (about
 * 2,000 UDP sockets, whose listing would cost more than the drops it avoids) or an error turns
 * the probe off for good; the pacer then paces by time alone.
 */
import fs from 'node:fs'

/** What the pacer needs from a probe: the receive-queue bytes of WireGuard's socket, or undefined. */
export interface WireGuardQueue {
  /** Bytes waiting in the receive queue of the UDP socket bound to `port`; undefined when not known. */
  rxQueue(port: number): number | undefined
}

/** The kernel's accounting of one 1452-byte datagram on loopback (skb truesize), measured here. */
export const DATAGRAM_TRUESIZE = 2304

/** The kernel's default socket receive buffer, used when /proc/sys cannot be read. */
const DEFAULT_RMEM = 212_992

/** Reads beyond this are not done: the probe turns itself off instead. */
const MAX_PROC_BYTES = 256 * 1024

/**
 * The rx_queue (bytes) of the socket bound to local `port` with no remote address, in the text of
 * /proc/net/udp or /proc/net/udp6; undefined when there is none. Columns: sl, local_address
 * (HEXADDR:HEXPORT), rem_address, st, tx_queue:rx_queue (hex), ... Any local address matches
 * (WireGuard binds the wildcard; 127.0.0.1 would do too).
 */
export function parseUdpRxQueue(text: string, port: number): number | undefined {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined
  const needle = `:${port.toString(16).toUpperCase().padStart(4, '0')} `
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) {
    const end = text.indexOf('\n', at)
    const line = text.slice(text.lastIndexOf('\n', at) + 1, end < 0 ? text.length : end)
    const fields = line.trim().split(/\s+/)
    // The needle must be the end of the local address (field 1), not of the remote one.
    if (fields.length < 5 || !fields[1]!.endsWith(needle.trimEnd())) continue
    if (!/^0+:0000$/.test(fields[2]!)) continue
    const rx = /^[0-9A-Fa-f]+:([0-9A-Fa-f]+)$/.exec(fields[4]!)?.[1]
    if (rx !== undefined) return parseInt(rx, 16)
  }
  return undefined
}

/** The probe of this process's network namespace (/proc/net/udp, then udp6); undefined off Linux. */
export class ProcWireGuardQueue implements WireGuardQueue {
  private fds: number[] | undefined = []
  private readonly buf = Buffer.allocUnsafe(64 * 1024)

  private constructor(private readonly files: readonly string[]) {}

  /** A probe, or undefined where /proc/net/udp is not there (not Linux). */
  static open(
    files: readonly string[] = ['/proc/net/udp', '/proc/net/udp6'],
  ): ProcWireGuardQueue | undefined {
    if (process.platform !== 'linux') return undefined
    const probe = new ProcWireGuardQueue(files)
    try {
      probe.fds = files.map((f) => fs.openSync(f, 'r'))
    } catch {
      probe.close()
      return undefined
    }
    return probe
  }

  rxQueue(port: number): number | undefined {
    if (!this.fds) return undefined
    try {
      for (const fd of this.fds) {
        const rx = parseUdpRxQueue(this.read(fd), port)
        if (rx !== undefined) return rx
      }
      return undefined
    } catch {
      this.close()
      return undefined
    }
  }

  /** The whole file from its start (a /proc seq file is generated afresh at offset 0). */
  private read(fd: number): string {
    let text = ''
    for (let pos = 0; ;) {
      const n = fs.readSync(fd, this.buf, 0, this.buf.length, pos)
      if (n === 0) return text
      text += this.buf.toString('latin1', 0, n)
      pos += n
      if (pos > MAX_PROC_BYTES) throw new Error('too many UDP sockets to read their queues')
    }
  }

  close(): void {
    for (const fd of this.fds ?? []) fs.closeSync(fd)
    this.fds = undefined
  }
}

/**
 * The receive-queue bytes the pacer lets WireGuard's socket hold: 7/8 of the kernel's default
 * buffer (net.core.rmem_default), i.e. 80 full-size packets of the usual 92, leaving the rest to
 * what WireGuard's direct peers send it meanwhile. Not less: the pacer refills only when the
 * daemon runs, so what fits in one go is what WireGuard gets while the daemon waits for the CPU
 * (with half the buffer the relay measured slower than with no feedback at all). A WireGuard that sets a bigger
 * buffer of its own only makes this more careful than it needs to be.
 */
export function wireGuardQueueTarget(): number {
  let rmem = DEFAULT_RMEM
  try {
    const v = Number(fs.readFileSync('/proc/sys/net/core/rmem_default', 'latin1').trim())
    if (Number.isFinite(v) && v > 0) rmem = v
  } catch {
    // not Linux, or no /proc/sys: the kernel's usual default
  }
  return Math.max(16 * DATAGRAM_TRUESIZE, Math.floor((rmem * 7) / 8))
}
