/**
 * How much meshd and the CLI read from a server they do not control. A join string comes from
 * whoever sent it, so the controller it names may be hostile: every reply is read up to a cap,
 * the transfer is stopped there (never buffered to the end), and the caller reports
 * CONTROLLER_BAD_REPLY.
 */

/**
 * Largest REST reply read from a controller. The largest real reply is a page of the node list:
 * a node with every field at its schema maximum is about 4.5 KB as JSON, and the CLI asks for
 * pages of at most 100 items (about 450 KB); a register reply is one node.
 */
export const MAX_CONTROLLER_REPLY_BYTES = 1024 * 1024

/**
 * Largest netmap WebSocket frame meshd accepts (ws `maxPayload`, checked against the frame
 * header before any payload is buffered). The largest frame is the full map. As JSON, a typical
 * peer (3 endpoints, short hostname, one tag) is about 280 bytes: 10,000 peers make 2.7 MiB. A
 * peer with every field at its schema maximum (16 IPv6 endpoints, 253-character hostname and
 * 64-character OS of 3-byte characters, 32 tags of 66 characters) is 4,190 bytes: 10,000 of them
 * make 40.0 MiB (daemon/netmap/sync-limits.integration.test.ts computes it). 48 MiB fits that
 * worst case of a 10,000-node network with room to spare, and is still a bound a hostile
 * controller hits at the frame header (it was 64 MiB).
 */
export const MAX_NETMAP_FRAME_BYTES = 48 * 1024 * 1024

/**
 * Largest reply the CLI reads from meshd's socket. The largest is `status` (or a join reply):
 * a peer's status is at most about 400 bytes, so one 10,000-node network is about 4 MiB; 32 MiB
 * leaves room for several such networks on one machine.
 */
export const MAX_DAEMON_REPLY_BYTES = 32 * 1024 * 1024

/** "1 MiB", "40 MiB", "512 KiB", "100 bytes": a limit as people read it. */
export function formatByteLimit(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`
  return `${bytes} bytes`
}

/** The reply was larger than the cap; the reading side has already stopped the transfer. */
export class ReplyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`the reply is larger than ${formatByteLimit(limit)}`)
    this.name = 'ReplyTooLargeError'
  }
}

/**
 * Reads a reply body as UTF-8 text, at most `max` bytes. A declared Content-Length over the cap
 * fails before a byte is read; a body that grows past it fails at the chunk that crosses it.
 * Either way `stop()` is called first: it must end the transfer (destroy the stream, abort the
 * request), so the server cannot keep a socket busy or memory growing.
 */
export async function readCapped(
  body: AsyncIterable<Uint8Array>,
  max: number,
  stop: () => void,
  declaredLength?: string | string[] | null,
): Promise<string> {
  const declared = typeof declaredLength === 'string' ? Number(declaredLength) : NaN
  if (Number.isFinite(declared) && declared > max) {
    stop()
    throw new ReplyTooLargeError(max)
  }
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > max) {
      stop()
      throw new ReplyTooLargeError(max)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
