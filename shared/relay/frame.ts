/**
 * Relay frames (WS /api/v1/relay, binary messages only). Two kinds of message:
 *
 * Data (type 1), one WireGuard packet:
 *   byte 0      type (1 = data)
 *   byte 1      L, the length of the peer node id (1..100)
 *   bytes 2..   the peer node id, L bytes of printable ASCII (0x21..0x7e)
 *   then        the payload: one still-encrypted WireGuard packet (1..maxPayload bytes)
 *
 * Batch (type 2), one or more WireGuard packets of the same peer, in order:
 *   byte 0      type (2 = batch)
 *   byte 1      L, as above
 *   bytes 2..   the peer node id, as above
 *   then        1..RELAY_MAX_BATCH_PACKETS entries, each a 2-byte big-endian length n
 *               (1..maxPayload) and n bytes of packet; the last entry ends the message exactly
 *               (no trailing bytes), and the whole message is at most RELAY_MAX_BATCH_BYTES.
 *
 * Client -> relay: the id is the destination node. Relay -> client: the id is the source node.
 * A data frame carries no length field for the payload: the WebSocket message delimits it.
 *
 * Batches exist for throughput: a WebSocket message costs a frame header, a mask, a 'message'
 * event and (unless corked) a write syscall at every hop, and per packet that is most of what the
 * relay spends. Senders batch what arrives in one turn of the event loop (daemon/relay/shim.ts),
 * so a lone packet is not delayed. Batches are negotiated: a client that can receive them sends
 * the upgrade header RELAY_BATCH_HEADER: 1, and the relay answers with the same header when it
 * can; each side sends batches only to a peer that announced them, and accepts both kinds.
 *
 * Decoding is strict (every rule above is checked; a batch with one bad entry is rejected whole)
 * and never copies a payload.
 */
/** The controller serves the relay here, on its HTTP(S) port. */
export const RELAY_WS_PATH = '/api/v1/relay'

export const RELAY_FRAME_DATA = 1
export const RELAY_FRAME_BATCH = 2
/**
 * The upgrade header (request and response) that announces batch support; its value is "1".
 * Lower case, as Node presents header names.
 */
export const RELAY_BATCH_HEADER = 'x-mesh-relay-batch'
/**
 * The largest batch message (header included): 64 KiB, about 44 packets of 1452 bytes, one
 * TCP segment train of a loopback or LAN write. Larger batches save little and make the
 * burst a receiving daemon hands to WireGuard's socket longer.
 */
export const RELAY_MAX_BATCH_BYTES = 65536
/** The most packets in one batch (each entry is at least 3 bytes; this bounds the decoder's work). */
export const RELAY_MAX_BATCH_PACKETS = 256
/** The length prefix of each batch entry. */
export const RELAY_BATCH_ENTRY_HEADER = 2
export const RELAY_MAX_ID_BYTES = 100
/**
 * The largest payload a relay accepts by default. WireGuard's largest packet on the default
 * 1420-byte MTU is 1452 bytes (1420 + 32); jumbo MTUs do not cross the relay.
 */
export const RELAY_MAX_PAYLOAD = 2048
/** The hard ceiling of any payload (a UDP datagram). */
export const RELAY_PAYLOAD_CEILING = 65535
/** Type byte + id length byte. */
export const RELAY_FIXED_HEADER = 2

/** The largest data frame with payloads up to `maxPayload`. */
export const relayMaxFrameBytes = (maxPayload: number = RELAY_MAX_PAYLOAD): number =>
  RELAY_FIXED_HEADER + RELAY_MAX_ID_BYTES + maxPayload

/** The largest WebSocket message of the relay protocol (a data frame or a batch). */
export const relayMaxMessageBytes = (maxPayload: number = RELAY_MAX_PAYLOAD): number =>
  Math.max(relayMaxFrameBytes(maxPayload), RELAY_MAX_BATCH_BYTES)

/**
 * WebSocket close codes of the relay. A client reconnects after any of them except REPLACED
 * (another session with the same credential took over: reconnecting would only push it out).
 */
export const RELAY_CLOSE = {
  /** The upgrade carried no valid node credential. */
  UNAUTHENTICATED: 4401,
  /** The node was removed or its network deleted. */
  REVOKED: 4403,
  /** A newer session of the same node replaced this one. */
  REPLACED: 4409,
  SHUTTING_DOWN: 1001,
} as const

export type RelayFrameErrorCode =
  | 'FRAME_TOO_SHORT'
  | 'FRAME_BAD_TYPE'
  | 'FRAME_BAD_ID_LENGTH'
  | 'FRAME_BAD_ID'
  | 'FRAME_EMPTY_PAYLOAD'
  | 'FRAME_TOO_LARGE'
  | 'FRAME_BAD_BATCH'

/** A frame that breaks the format; `code` says which rule. Never crosses to a user. */
export class RelayFrameError extends Error {
  override readonly name = 'RelayFrameError'
  constructor(
    readonly code: RelayFrameErrorCode,
    message: string,
  ) {
    super(message)
  }
}

export interface RelayFrame {
  readonly type: typeof RELAY_FRAME_DATA
  /** Destination (client -> relay) or source (relay -> client) node id. */
  readonly peerId: string
  /** A view into the decoded buffer, not a copy. */
  readonly payload: Buffer
}

const validIdByte = (b: number): boolean => b >= 0x21 && b <= 0x7e

/** True when `id` can travel in a frame: 1..100 bytes of printable ASCII. */
export function isRelayPeerId(id: string): boolean {
  if (id.length < 1 || id.length > RELAY_MAX_ID_BYTES) return false
  for (let i = 0; i < id.length; i++) if (!validIdByte(id.charCodeAt(i))) return false
  return true
}

/**
 * The header bytes (type, L, id) of frames for one peer; reused by encodeRelayFrame (type 1,
 * the default) and encodeRelayBatch (type 2).
 */
export function relayFrameHeader(
  peerId: string,
  type: typeof RELAY_FRAME_DATA | typeof RELAY_FRAME_BATCH = RELAY_FRAME_DATA,
): Buffer {
  if (!isRelayPeerId(peerId))
    throw new RelayFrameError('FRAME_BAD_ID', 'peer id must be 1..100 bytes of printable ASCII')
  const header = Buffer.allocUnsafe(RELAY_FIXED_HEADER + peerId.length)
  header[0] = type
  header[1] = peerId.length
  header.write(peerId, RELAY_FIXED_HEADER, 'latin1')
  return header
}

/**
 * One data frame. `header` (from relayFrameHeader) saves re-encoding the id for every packet;
 * when given it must be the header of `peerId`.
 */
export function encodeRelayFrame(
  peerId: string,
  payload: Uint8Array,
  opts: {maxPayload?: number; header?: Buffer} = {},
): Buffer {
  const maxPayload = opts.maxPayload ?? RELAY_MAX_PAYLOAD
  if (payload.length < 1) throw new RelayFrameError('FRAME_EMPTY_PAYLOAD', 'payload is empty')
  if (payload.length > maxPayload)
    throw new RelayFrameError('FRAME_TOO_LARGE', `payload is over ${maxPayload} bytes`)
  const header = opts.header ?? relayFrameHeader(peerId)
  const out = Buffer.allocUnsafe(header.length + payload.length)
  header.copy(out, 0)
  out.set(payload, header.length)
  return out
}

/**
 * Decodes one WebSocket binary message. Throws RelayFrameError for anything that is not exactly
 * one well-formed data frame with a payload of 1..maxPayload bytes.
 */
export function decodeRelayFrame(data: Uint8Array, opts: {maxPayload?: number} = {}): RelayFrame {
  const maxPayload = Math.min(opts.maxPayload ?? RELAY_MAX_PAYLOAD, RELAY_PAYLOAD_CEILING)
  if (data.length < RELAY_FIXED_HEADER + 2)
    throw new RelayFrameError('FRAME_TOO_SHORT', `frame of ${data.length} bytes is too short`)
  if (data[0] !== RELAY_FRAME_DATA)
    throw new RelayFrameError('FRAME_BAD_TYPE', `unknown frame type ${data[0]}`)
  const idLen = data[1]!
  if (idLen < 1 || idLen > RELAY_MAX_ID_BYTES)
    throw new RelayFrameError('FRAME_BAD_ID_LENGTH', `id length ${idLen} is outside 1..${RELAY_MAX_ID_BYTES}`)
  const payloadAt = RELAY_FIXED_HEADER + idLen
  if (data.length < payloadAt) throw new RelayFrameError('FRAME_TOO_SHORT', 'frame ends inside the peer id')
  for (let i = RELAY_FIXED_HEADER; i < payloadAt; i++)
    if (!validIdByte(data[i]!)) throw new RelayFrameError('FRAME_BAD_ID', 'peer id is not printable ASCII')
  const payloadLen = data.length - payloadAt
  if (payloadLen < 1) throw new RelayFrameError('FRAME_EMPTY_PAYLOAD', 'frame has no payload')
  if (payloadLen > maxPayload)
    throw new RelayFrameError('FRAME_TOO_LARGE', `payload of ${payloadLen} bytes is over ${maxPayload}`)
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length)
  return {
    type: RELAY_FRAME_DATA,
    peerId: buf.toString('latin1', RELAY_FIXED_HEADER, payloadAt),
    payload: buf.subarray(payloadAt),
  }
}

/** The size of a batch for a peer id of `idBytes` bytes holding `packets` packets of `payloadBytes` in all. */
export const relayBatchBytes = (idBytes: number, packets: number, payloadBytes: number): number =>
  RELAY_FIXED_HEADER + idBytes + packets * RELAY_BATCH_ENTRY_HEADER + payloadBytes

/**
 * One batch of packets for (or from) one peer, in order. `header` (from relayFrameHeader(peerId,
 * RELAY_FRAME_BATCH)) saves re-encoding the id. Throws when a payload is empty or over
 * maxPayload, when there is none or over RELAY_MAX_BATCH_PACKETS, or when the batch would be over
 * RELAY_MAX_BATCH_BYTES.
 */
export function encodeRelayBatch(
  peerId: string,
  payloads: readonly Uint8Array[],
  opts: {maxPayload?: number; header?: Buffer} = {},
): Buffer {
  const maxPayload = Math.min(opts.maxPayload ?? RELAY_MAX_PAYLOAD, RELAY_PAYLOAD_CEILING)
  if (payloads.length < 1 || payloads.length > RELAY_MAX_BATCH_PACKETS)
    throw new RelayFrameError('FRAME_BAD_BATCH', `a batch holds 1..${RELAY_MAX_BATCH_PACKETS} packets`)
  const header = opts.header ?? relayFrameHeader(peerId, RELAY_FRAME_BATCH)
  let size = header.length
  for (const p of payloads) {
    if (p.length < 1) throw new RelayFrameError('FRAME_EMPTY_PAYLOAD', 'payload is empty')
    if (p.length > maxPayload)
      throw new RelayFrameError('FRAME_TOO_LARGE', `payload is over ${maxPayload} bytes`)
    size += RELAY_BATCH_ENTRY_HEADER + p.length
  }
  if (size > RELAY_MAX_BATCH_BYTES)
    throw new RelayFrameError('FRAME_TOO_LARGE', `batch of ${size} bytes is over ${RELAY_MAX_BATCH_BYTES}`)
  const out = Buffer.allocUnsafe(size)
  header.copy(out, 0)
  let at = header.length
  for (const p of payloads) {
    out.writeUInt16BE(p.length, at)
    out.set(p, at + RELAY_BATCH_ENTRY_HEADER)
    at += RELAY_BATCH_ENTRY_HEADER + p.length
  }
  return out
}

/** A decoded message of either kind. */
export interface RelayMessage {
  readonly type: typeof RELAY_FRAME_DATA | typeof RELAY_FRAME_BATCH
  /** Destination (client -> relay) or source (relay -> client) node id. */
  readonly peerId: string
  /** The packets, in order (one for a data frame): views into the decoded buffer, not copies. */
  readonly payloads: Buffer[]
  /**
   * Where the packets start in the message: the payload of a data frame, the first entry of a
   * batch. Everything from here to the end can be forwarded under another header of the same type.
   */
  readonly bodyAt: number
}

/**
 * Decodes one WebSocket binary message: a data frame (as decodeRelayFrame) or a batch. Throws
 * RelayFrameError for anything else; a batch is rejected whole when any entry breaks a rule.
 */
export function decodeRelayMessage(data: Uint8Array, opts: {maxPayload?: number} = {}): RelayMessage {
  if (data[0] !== RELAY_FRAME_BATCH) {
    const f = decodeRelayFrame(data, opts)
    return {
      type: RELAY_FRAME_DATA,
      peerId: f.peerId,
      payloads: [f.payload],
      bodyAt: data.length - f.payload.length,
    }
  }
  const maxPayload = Math.min(opts.maxPayload ?? RELAY_MAX_PAYLOAD, RELAY_PAYLOAD_CEILING)
  if (data.length > RELAY_MAX_BATCH_BYTES)
    throw new RelayFrameError(
      'FRAME_TOO_LARGE',
      `batch of ${data.length} bytes is over ${RELAY_MAX_BATCH_BYTES}`,
    )
  if (data.length < RELAY_FIXED_HEADER + 1 + RELAY_BATCH_ENTRY_HEADER + 1)
    throw new RelayFrameError('FRAME_TOO_SHORT', `batch of ${data.length} bytes is too short`)
  const idLen = data[1]!
  if (idLen < 1 || idLen > RELAY_MAX_ID_BYTES)
    throw new RelayFrameError('FRAME_BAD_ID_LENGTH', `id length ${idLen} is outside 1..${RELAY_MAX_ID_BYTES}`)
  const bodyAt = RELAY_FIXED_HEADER + idLen
  if (data.length < bodyAt) throw new RelayFrameError('FRAME_TOO_SHORT', 'batch ends inside the peer id')
  for (let i = RELAY_FIXED_HEADER; i < bodyAt; i++)
    if (!validIdByte(data[i]!)) throw new RelayFrameError('FRAME_BAD_ID', 'peer id is not printable ASCII')
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length)
  const payloads: Buffer[] = []
  let at = bodyAt
  while (at < buf.length) {
    if (payloads.length === RELAY_MAX_BATCH_PACKETS)
      throw new RelayFrameError('FRAME_BAD_BATCH', `batch holds over ${RELAY_MAX_BATCH_PACKETS} packets`)
    if (at + RELAY_BATCH_ENTRY_HEADER > buf.length)
      throw new RelayFrameError('FRAME_BAD_BATCH', 'batch ends inside an entry length')
    const n = buf.readUInt16BE(at)
    if (n < 1) throw new RelayFrameError('FRAME_EMPTY_PAYLOAD', 'batch entry has no payload')
    if (n > maxPayload)
      throw new RelayFrameError('FRAME_TOO_LARGE', `payload of ${n} bytes is over ${maxPayload}`)
    const start = at + RELAY_BATCH_ENTRY_HEADER
    if (start + n > buf.length) throw new RelayFrameError('FRAME_BAD_BATCH', 'batch ends inside a payload')
    payloads.push(buf.subarray(start, start + n))
    at = start + n
  }
  if (payloads.length === 0) throw new RelayFrameError('FRAME_EMPTY_PAYLOAD', 'batch has no packet')
  return {
    type: RELAY_FRAME_BATCH,
    peerId: buf.toString('latin1', RELAY_FIXED_HEADER, bodyAt),
    payloads,
    bodyAt,
  }
}
