/**
 * Compressed full maps (NETMAP_GZIP in shared/protocol/netmap.ts).
 *
 * A full map is mostly the network's peer list, the same for every node: 2 MB at 10,000 nodes,
 * so a cold start of N nodes sends N × that. Compressing it per socket (WebSocket per-message
 * deflate) would cost N deflates of 2 MB; instead the peer list is gzipped once per change of the
 * peer set, and every node gets the same bytes between two small per-node gzip members (its head
 * and the tail), which are stored, not deflated: a gzip reader concatenates members.
 *
 * Measured on this machine (10,000 peers, 2.3 MB): gzip level 1 takes 28 ms and gives 2.85×
 * fewer bytes; levels 3–6 buy 1–4 % more for as much time. While the peer set keeps changing
 * (a join storm), the list is gzipped at most once per GZIP_EVERY_MS, and big lists off the event
 * loop; a full map whose compressed list is not ready goes as text, as to a node that never asked.
 */
import zlib from 'node:zlib'

/** Lists up to this size are gzipped inline (a few ms); bigger ones on the libuv thread pool. */
export const GZIP_INLINE_MAX = 512 * 1024
/** A network's peer list is gzipped at most this often while it keeps changing. */
export const GZIP_EVERY_MS = 1_000

/** The most a stored deflate block holds (RFC 1951 3.2.4). */
const STORED_MAX = 0xffff

/**
 * A gzip member (RFC 1952) holding `data` uncompressed in stored deflate blocks: for the per-node
 * head and tail of a full map, where a deflate stream would cost more than it saves.
 */
export function storedGzipMember(data: Buffer): Buffer {
  const blocks = Math.max(1, Math.ceil(data.length / STORED_MAX))
  const out = Buffer.allocUnsafe(10 + blocks * 5 + data.length + 8)
  // ID1 ID2, CM=deflate, no flags, no mtime, XFL 0, OS unknown.
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255], 0)
  let at = 10
  for (let b = 0; b < blocks; b++) {
    const chunk = data.subarray(b * STORED_MAX, (b + 1) * STORED_MAX)
    out[at] = b === blocks - 1 ? 1 : 0 // BFINAL on the last block, BTYPE 00 (stored)
    out.writeUInt16LE(chunk.length, at + 1)
    out.writeUInt16LE(~chunk.length & 0xffff, at + 3)
    chunk.copy(out, at + 5)
    at += 5 + chunk.length
  }
  out.writeUInt32LE(zlib.crc32(data), at)
  out.writeUInt32LE(data.length >>> 0, at + 4)
  return out
}

/** The gzipped bytes of one network's peer list, made again when the list object changes. */
export class PeerListGzip {
  private source: object | null = null
  private bytes: Buffer | null = null
  private pending: object | null = null
  private startedAt = -Infinity

  constructor(private readonly now: () => number) {}

  /**
   * The gzip member of `list.bytes`, or undefined when it is not ready: being made off the event
   * loop, or the list changed again within GZIP_EVERY_MS of the last one made (the caller then
   * sends text).
   */
  /**
   * The gzip member of `list.bytes`, made now on the event loop when it is not ready. For a
   * policy change, where the alternative is a text delta about as big as the list to every node
   * of a class; the caller bounds how much it makes this way.
   */
  getNow(list: {readonly bytes: Buffer}): Buffer {
    if (this.source === list && this.bytes) return this.bytes
    this.startedAt = this.now()
    this.source = list
    this.bytes = zlib.gzipSync(list.bytes, {level: 1})
    return this.bytes
  }

  get(list: {readonly bytes: Buffer}): Buffer | undefined {
    if (this.source === list) return this.bytes ?? undefined
    if (this.pending === list) return undefined
    const now = this.now()
    if (now - this.startedAt < GZIP_EVERY_MS) return undefined
    this.startedAt = now
    if (list.bytes.length <= GZIP_INLINE_MAX) {
      this.source = list
      this.bytes = zlib.gzipSync(list.bytes, {level: 1})
      return this.bytes
    }
    this.pending = list
    zlib.gzip(list.bytes, {level: 1}, (err, out) => {
      if (this.pending === list) this.pending = null
      if (err) return
      this.source = list
      this.bytes = out
    })
    return undefined
  }
}
