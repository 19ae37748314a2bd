/**
 * A strict STUN message codec (RFC 5389, plus the RFC 5780 attributes that NAT behaviour discovery
 * needs): bytes ↔ a typed message. It is not a STUN client or server; those live in
 * daemon/nat/ and controller/stun/.
 *
 * Every packet is hostile: the decoder is bounded (MAX_MESSAGE_BYTES, MAX_ATTRIBUTES), checks each
 * known attribute's exact shape, and fails only with a StunDecodeError whose `reason` says why —
 * never with any other exception (a fuzz test holds it to that).
 */

import {crc32} from 'node:zlib'
import {ipFromBytes, ipToBytes} from '../net/ip-bytes.js'

export const MAGIC_COOKIE = 0x2112a442
export const HEADER_BYTES = 20
export const TRANSACTION_ID_BYTES = 12
/**
 * Largest message we accept or write. RFC 5389 §7.1 asks for ≤ 548 bytes when the path MTU is
 * unknown; every message we exchange (Binding with a handful of attributes) fits well below it.
 */
export const MAX_MESSAGE_BYTES = 548
/** Most attributes one message may carry; a Binding exchange needs fewer than ten. */
export const MAX_ATTRIBUTES = 24
/** SOFTWARE and the ERROR-CODE reason are limited to 763 bytes by RFC 5389 §15.6 and §15.10. */
export const MAX_TEXT_BYTES = 763
const FINGERPRINT_XOR = 0x5354554e

/** The Binding method (RFC 5389 §18.1); the only method this project speaks. */
export const METHOD_BINDING = 0x001

export const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  /** RFC 5780 §7.2. */
  CHANGE_REQUEST: 0x0003,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_MAPPED_ADDRESS: 0x0020,
  /** RFC 5780 §7.6: pads a request; ignored. */
  PADDING: 0x0026,
  /** RFC 5780 §7.5: asks for the reply on another port; we do not support it (420). */
  RESPONSE_PORT: 0x0027,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  /** RFC 5780 §7.3. */
  RESPONSE_ORIGIN: 0x802b,
  /** RFC 5780 §7.4. */
  OTHER_ADDRESS: 0x802c,
} as const

/**
 * Comprehension-required attributes (type < 0x8000) that we recognise but carry as opaque bytes:
 * a server without authentication may ignore them, so they do not earn a 420 (RFC 5389 §7.3.1).
 */
const TOLERATED_REQUIRED: ReadonlySet<number> = new Set([
  ATTR.USERNAME,
  ATTR.MESSAGE_INTEGRITY,
  ATTR.REALM,
  ATTR.NONCE,
  ATTR.PADDING,
])

export type StunClass = 'request' | 'indication' | 'success' | 'error'

export interface StunAddress {
  readonly family: 4 | 6
  /** Canonical text (dotted quad, or RFC 5952 IPv6). */
  readonly address: string
  readonly port: number
}

type AddressKind = 'mapped-address' | 'xor-mapped-address' | 'response-origin' | 'other-address'

/** A decoded attribute. Attributes we do not interpret are kept as `opaque` bytes, in order. */
export type StunAttribute =
  | {[K in AddressKind]: {readonly kind: K; readonly address: StunAddress}}[AddressKind]
  | {readonly kind: 'change-request'; readonly changeIp: boolean; readonly changePort: boolean}
  | {readonly kind: 'software'; readonly text: string}
  | {readonly kind: 'error-code'; readonly code: number; readonly reason: string}
  | {readonly kind: 'unknown-attributes'; readonly types: readonly number[]}
  | {readonly kind: 'opaque'; readonly type: number; readonly value: Buffer}

export type StunAttributeKind = StunAttribute['kind']

export interface StunMessage {
  readonly cls: StunClass
  /** 12-bit method; METHOD_BINDING for everything we exchange. */
  readonly method: number
  /** 12 bytes. */
  readonly transactionId: Buffer
  readonly attributes: readonly StunAttribute[]
  /**
   * Decoding: true when the message ended with a FINGERPRINT that matched (a bad one is an error).
   * Encoding: append a FINGERPRINT.
   */
  readonly fingerprint?: boolean
}

export type StunDecodeErrorReason =
  | 'too-short'
  | 'too-long'
  | 'not-stun'
  | 'bad-magic-cookie'
  | 'bad-length'
  | 'truncated-attribute'
  | 'too-many-attributes'
  | 'bad-attribute'
  | 'duplicate-attribute'
  | 'attribute-after-fingerprint'
  | 'bad-fingerprint'

/** The one error the decoder throws. `reason` is stable; the message is for logs. */
export class StunDecodeError extends Error {
  constructor(
    readonly reason: StunDecodeErrorReason,
    message: string,
  ) {
    super(message)
    this.name = 'StunDecodeError'
  }
}

/** Thrown by the encoder when given a message it cannot write (bad address, too long). */
export class StunEncodeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'StunEncodeError'
  }
}

// ---------------------------------------------------------------------------------------------
// Message type: the 14 bits interleave the method (M0–M11) with the class bits C0 (bit 4) and C1
// (bit 8), RFC 5389 §6 figure 3.

const CLASS_BITS: Record<StunClass, number> = {
  request: 0x000,
  indication: 0x010,
  success: 0x100,
  error: 0x110,
}

export function messageType(cls: StunClass, method: number): number {
  return ((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | CLASS_BITS[cls]
}

function splitType(type: number): {cls: StunClass; method: number} {
  const method = ((type & 0x3e00) >> 2) | ((type & 0x00e0) >> 1) | (type & 0x000f)
  const c = type & 0x110
  const cls: StunClass = c === 0 ? 'request' : c === 0x010 ? 'indication' : c === 0x100 ? 'success' : 'error'
  return {cls, method}
}

// ---------------------------------------------------------------------------------------------
// Decoding

const utf8 = new TextDecoder('utf-8', {fatal: true})

function fail(reason: StunDecodeErrorReason, message: string): never {
  throw new StunDecodeError(reason, message)
}

function decodeText(value: Buffer, what: string): string {
  if (value.length > MAX_TEXT_BYTES) fail('bad-attribute', `${what} is longer than ${MAX_TEXT_BYTES} bytes`)
  try {
    return utf8.decode(value)
  } catch {
    return fail('bad-attribute', `${what} is not valid UTF-8`)
  }
}

function decodeAddress(value: Buffer, xorWith: Buffer | undefined, what: string): StunAddress {
  // RFC 5389 §15.1: 1 reserved byte (ignored), family (1 = IPv4, 2 = IPv6), port, address.
  if (value.length < 4) fail('bad-attribute', `${what} is too short`)
  const familyByte = value[1]
  const family = familyByte === 1 ? 4 : familyByte === 2 ? 6 : undefined
  if (family === undefined) fail('bad-attribute', `${what} has unknown address family ${familyByte}`)
  const addrLen = family === 4 ? 4 : 16
  if (value.length !== 4 + addrLen) fail('bad-attribute', `${what} has length ${value.length}`)
  let port = value.readUInt16BE(2)
  const bytes = Uint8Array.from(value.subarray(4))
  if (xorWith !== undefined) {
    // §15.2: the port is XORed with the cookie's top 16 bits, the address with cookie || txid.
    port ^= MAGIC_COOKIE >>> 16
    for (let i = 0; i < bytes.length; i++) bytes[i]! ^= xorWith[i]!
  }
  return {family, address: ipFromBytes(bytes), port}
}

const ADDRESS_KINDS: ReadonlyMap<number, AddressKind> = new Map([
  [ATTR.MAPPED_ADDRESS, 'mapped-address'],
  [ATTR.XOR_MAPPED_ADDRESS, 'xor-mapped-address'],
  [ATTR.RESPONSE_ORIGIN, 'response-origin'],
  [ATTR.OTHER_ADDRESS, 'other-address'],
])

function decodeAttribute(type: number, value: Buffer, xorKey: Buffer): StunAttribute {
  const addressKind = ADDRESS_KINDS.get(type)
  if (addressKind !== undefined) {
    const xor = type === ATTR.XOR_MAPPED_ADDRESS ? xorKey : undefined
    return {kind: addressKind, address: decodeAddress(value, xor, addressKind)}
  }
  switch (type) {
    case ATTR.CHANGE_REQUEST: {
      if (value.length !== 4) fail('bad-attribute', `CHANGE-REQUEST has length ${value.length}`)
      const flags = value.readUInt32BE(0)
      return {kind: 'change-request', changeIp: (flags & 0x4) !== 0, changePort: (flags & 0x2) !== 0}
    }
    case ATTR.SOFTWARE:
      return {kind: 'software', text: decodeText(value, 'SOFTWARE')}
    case ATTR.ERROR_CODE: {
      // §15.6: 21 reserved bits, class (3 bits, 3–6), number (0–99), UTF-8 reason.
      if (value.length < 4) fail('bad-attribute', 'ERROR-CODE is too short')
      const cls = value[2]! & 0x07
      const num = value[3]!
      if (cls < 3 || cls > 6 || num > 99) fail('bad-attribute', `ERROR-CODE ${cls}/${num} is out of range`)
      return {kind: 'error-code', code: cls * 100 + num, reason: decodeText(value.subarray(4), 'reason')}
    }
    case ATTR.UNKNOWN_ATTRIBUTES: {
      if (value.length % 2 !== 0) fail('bad-attribute', 'UNKNOWN-ATTRIBUTES has an odd length')
      const types: number[] = []
      for (let i = 0; i < value.length; i += 2) types.push(value.readUInt16BE(i))
      return {kind: 'unknown-attributes', types}
    }
    default:
      return {kind: 'opaque', type, value: Buffer.from(value)}
  }
}

/**
 * Decodes one STUN message. Throws StunDecodeError, and only that, for anything malformed: a
 * header that is not STUN, a length that does not match the packet, an attribute running past the
 * end, a known attribute of the wrong shape, a known attribute twice, anything after FINGERPRINT
 * or a FINGERPRINT that does not match. Padding bytes are not checked (RFC 5389 §15: ignored).
 */
export function decodeMessage(packet: Uint8Array): StunMessage {
  const buf = Buffer.isBuffer(packet)
    ? packet
    : Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength)
  if (buf.length < HEADER_BYTES) fail('too-short', `${buf.length} bytes is shorter than a STUN header`)
  if (buf.length > MAX_MESSAGE_BYTES) fail('too-long', `${buf.length} bytes is over ${MAX_MESSAGE_BYTES}`)
  const type = buf.readUInt16BE(0)
  // §6: the two most significant bits are zero (this is how STUN is told apart from other traffic).
  if ((type & 0xc000) !== 0) fail('not-stun', 'the first two bits are not zero')
  if (buf.readUInt32BE(4) !== MAGIC_COOKIE) fail('bad-magic-cookie', 'no RFC 5389 magic cookie')
  const length = buf.readUInt16BE(2)
  if (length % 4 !== 0) fail('bad-length', `length ${length} is not a multiple of 4`)
  if (length + HEADER_BYTES !== buf.length) {
    fail('bad-length', `header says ${length} bytes of attributes, packet has ${buf.length - HEADER_BYTES}`)
  }
  const {cls, method} = splitType(type)
  const transactionId = Buffer.from(buf.subarray(8, HEADER_BYTES))
  const xorKey = Buffer.from(buf.subarray(4, HEADER_BYTES)) // cookie || transaction id

  const attributes: StunAttribute[] = []
  const seen = new Set<number>()
  let fingerprint = false // set only by the last attribute
  let count = 0
  for (let offset = HEADER_BYTES; offset < buf.length;) {
    if (++count > MAX_ATTRIBUTES) fail('too-many-attributes', `more than ${MAX_ATTRIBUTES} attributes`)
    if (offset + 4 > buf.length) fail('truncated-attribute', 'attribute header runs past the end')
    const attrType = buf.readUInt16BE(offset)
    const attrLen = buf.readUInt16BE(offset + 2)
    const valueStart = offset + 4
    const padded = (attrLen + 3) & ~3
    if (valueStart + padded > buf.length)
      fail('truncated-attribute', `attribute 0x${hex(attrType)} runs past the end`)
    const value = buf.subarray(valueStart, valueStart + attrLen)
    if (attrType === ATTR.FINGERPRINT) {
      if (attrLen !== 4) fail('bad-attribute', `FINGERPRINT has length ${attrLen}`)
      if (valueStart + 4 !== buf.length) {
        fail('attribute-after-fingerprint', 'FINGERPRINT must be the last attribute')
      }
      // §15.5: CRC-32 of everything before the attribute (the header length already counts it).
      const expected = (crc32(buf.subarray(0, offset)) ^ FINGERPRINT_XOR) >>> 0
      if (value.readUInt32BE(0) !== expected) fail('bad-fingerprint', 'FINGERPRINT does not match')
      fingerprint = true
    } else {
      const attr = decodeAttribute(attrType, value, xorKey)
      if (attr.kind !== 'opaque') {
        if (seen.has(attrType)) fail('duplicate-attribute', `attribute 0x${hex(attrType)} appears twice`)
        seen.add(attrType)
      }
      attributes.push(attr)
    }
    offset = valueStart + padded
  }
  return {cls, method, transactionId, attributes, fingerprint}
}

export type DecodeResult = {ok: true; message: StunMessage} | {ok: false; error: StunDecodeError}

/** decodeMessage as a value: for hot paths that count failures instead of catching them. */
export function tryDecodeMessage(packet: Uint8Array): DecodeResult {
  try {
    return {ok: true, message: decodeMessage(packet)}
  } catch (err) {
    if (err instanceof StunDecodeError) return {ok: false, error: err}
    // Unreachable by design (the fuzz test holds the decoder to StunDecodeError); a bug if seen.
    throw err
  }
}

const hex = (n: number): string => n.toString(16).padStart(4, '0')

// ---------------------------------------------------------------------------------------------
// Encoding

function encodeAddress(a: StunAddress, xorKey: Buffer | undefined): Buffer {
  const bytes = ipToBytes(a.address)
  if (bytes === undefined || bytes.length !== (a.family === 4 ? 4 : 16)) {
    throw new StunEncodeError(`not an IPv${a.family} address: ${JSON.stringify(a.address)}`)
  }
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 0xffff) {
    throw new StunEncodeError(`not a port: ${a.port}`)
  }
  const out = Buffer.alloc(4 + bytes.length)
  out[1] = a.family === 4 ? 1 : 2
  out.writeUInt16BE(xorKey === undefined ? a.port : a.port ^ (MAGIC_COOKIE >>> 16), 2)
  for (let i = 0; i < bytes.length; i++)
    out[4 + i] = xorKey === undefined ? bytes[i]! : bytes[i]! ^ xorKey[i]!
  return out
}

function encodeText(text: string, what: string): Buffer {
  const b = Buffer.from(text, 'utf8')
  if (b.length > MAX_TEXT_BYTES) throw new StunEncodeError(`${what} is longer than ${MAX_TEXT_BYTES} bytes`)
  return b
}

function encodeAttribute(attr: StunAttribute, xorKey: Buffer): [type: number, value: Buffer] {
  switch (attr.kind) {
    case 'mapped-address':
      return [ATTR.MAPPED_ADDRESS, encodeAddress(attr.address, undefined)]
    case 'xor-mapped-address':
      return [ATTR.XOR_MAPPED_ADDRESS, encodeAddress(attr.address, xorKey)]
    case 'response-origin':
      return [ATTR.RESPONSE_ORIGIN, encodeAddress(attr.address, undefined)]
    case 'other-address':
      return [ATTR.OTHER_ADDRESS, encodeAddress(attr.address, undefined)]
    case 'change-request': {
      const v = Buffer.alloc(4)
      v.writeUInt32BE((attr.changeIp ? 0x4 : 0) | (attr.changePort ? 0x2 : 0))
      return [ATTR.CHANGE_REQUEST, v]
    }
    case 'software':
      return [ATTR.SOFTWARE, encodeText(attr.text, 'SOFTWARE')]
    case 'error-code': {
      if (!Number.isInteger(attr.code) || attr.code < 300 || attr.code > 699) {
        throw new StunEncodeError(`ERROR-CODE ${attr.code} is out of range 300–699`)
      }
      const reason = encodeText(attr.reason, 'reason')
      const v = Buffer.alloc(4 + reason.length)
      v[2] = Math.floor(attr.code / 100)
      v[3] = attr.code % 100
      reason.copy(v, 4)
      return [ATTR.ERROR_CODE, v]
    }
    case 'unknown-attributes': {
      const v = Buffer.alloc(2 * attr.types.length)
      attr.types.forEach((t, i) => v.writeUInt16BE(t & 0xffff, 2 * i))
      return [ATTR.UNKNOWN_ATTRIBUTES, v]
    }
    case 'opaque':
      return [attr.type & 0xffff, attr.value]
  }
}

/**
 * Encodes a message: attributes in the order given, each padded with zeros to 4 bytes, then a
 * FINGERPRINT when `message.fingerprint` is true. Throws StunEncodeError for an attribute it
 * cannot write or a result over MAX_MESSAGE_BYTES.
 */
export function encodeMessage(message: StunMessage): Buffer {
  if (message.transactionId.length !== TRANSACTION_ID_BYTES) {
    throw new StunEncodeError(`transaction id must be ${TRANSACTION_ID_BYTES} bytes`)
  }
  if (message.attributes.length > MAX_ATTRIBUTES) throw new StunEncodeError('too many attributes')
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt16BE(messageType(message.cls, message.method & 0xfff), 0)
  header.writeUInt32BE(MAGIC_COOKIE, 4)
  message.transactionId.copy(header, 8)
  const xorKey = header.subarray(4, HEADER_BYTES)
  const parts: Buffer[] = [header]
  let length = 0
  for (const attr of message.attributes) {
    const [type, value] = encodeAttribute(attr, xorKey)
    if (value.length > 0xffff) throw new StunEncodeError('attribute too long')
    const head = Buffer.alloc(4)
    head.writeUInt16BE(type, 0)
    head.writeUInt16BE(value.length, 2)
    const pad = Buffer.alloc(((value.length + 3) & ~3) - value.length)
    parts.push(head, value, pad)
    length += 4 + value.length + pad.length
  }
  const fpBytes = message.fingerprint ? 8 : 0
  if (HEADER_BYTES + length + fpBytes > MAX_MESSAGE_BYTES) {
    throw new StunEncodeError(`message would be over ${MAX_MESSAGE_BYTES} bytes`)
  }
  header.writeUInt16BE(length + fpBytes, 2)
  const body = Buffer.concat(parts)
  if (!message.fingerprint) return body
  const fp = Buffer.alloc(8)
  fp.writeUInt16BE(ATTR.FINGERPRINT, 0)
  fp.writeUInt16BE(4, 2)
  fp.writeUInt32BE((crc32(body) ^ FINGERPRINT_XOR) >>> 0, 4)
  return Buffer.concat([body, fp])
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** The first attribute of a kind, typed; undefined when absent. */
export function findAttribute<K extends StunAttributeKind>(
  message: StunMessage,
  kind: K,
): Extract<StunAttribute, {kind: K}> | undefined {
  return message.attributes.find((a): a is Extract<StunAttribute, {kind: K}> => a.kind === kind)
}

/**
 * Comprehension-required attribute types (< 0x8000) that we neither interpret nor tolerate: a
 * server answers a request carrying any with 420 and UNKNOWN-ATTRIBUTES (RFC 5389 §7.3.1).
 */
export function unknownRequiredAttributes(message: StunMessage): number[] {
  const out: number[] = []
  for (const a of message.attributes) {
    if (a.kind === 'opaque' && a.type < 0x8000 && !TOLERATED_REQUIRED.has(a.type) && !out.includes(a.type)) {
      out.push(a.type)
    }
  }
  return out
}

/** A Binding request with a fresh transaction id, optionally asking for a CHANGE-REQUEST. */
export function bindingRequest(
  transactionId: Buffer,
  change?: {changeIp: boolean; changePort: boolean},
): StunMessage {
  const attributes: StunAttribute[] = change ? [{kind: 'change-request', ...change}] : []
  return {cls: 'request', method: METHOD_BINDING, transactionId, attributes, fingerprint: true}
}
