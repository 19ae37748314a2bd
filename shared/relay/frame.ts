/**
 * Relay frames (WS /api/v1/relay, binary messages only): one WireGuard packet per frame.
 *
 *   byte 0      type (1 = data)
 *   byte 1      L, the length of the peer node id (1..100)
 *   bytes 2..   the peer node id, L bytes of printable ASCII (0x21..0x7e)
 *   then        the payload: one still-encrypted WireGuard packet (1..maxPayload bytes)
 *
 * Client -> relay: the id is the destination node. Relay -> client: the id is the source node.
 * A frame carries no length field for the payload: the WebSocket message delimits it. Decoding
 * is strict (every rule above is checked) and never copies the payload.
 */

/** The controller serves the relay here, on its HTTP(S) port. */
export const RELAY_WS_PATH = '/api/v1/relay'

export const RELAY_FRAME_DATA = 1
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

/** The largest WebSocket message a frame with payloads up to `maxPayload` can be. */
export const relayMaxFrameBytes = (maxPayload: number = RELAY_MAX_PAYLOAD): number =>
  RELAY_FIXED_HEADER + RELAY_MAX_ID_BYTES + maxPayload

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

/** The header bytes (type, L, id) of frames for one peer; reused by encodeRelayFrame. */
export function relayFrameHeader(peerId: string): Buffer {
  if (!isRelayPeerId(peerId))
    throw new RelayFrameError('FRAME_BAD_ID', 'peer id must be 1..100 bytes of printable ASCII')
  const header = Buffer.allocUnsafe(RELAY_FIXED_HEADER + peerId.length)
  header[0] = RELAY_FRAME_DATA
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
