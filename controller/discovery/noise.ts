/**
 * The responder's half of WireGuard's first handshake message, and nothing more: the controller
 * holds a discovery key pair, nodes add its public key as a WireGuard peer with a persistent
 * keepalive, and WireGuard itself sends handshake initiations from its own port. Taking the first
 * message apart tells us who sent it (the initiator's static key, proven by the timestamp's AEAD,
 * which only the holder of that key can produce) and so whose NAT mapping the source address is.
 * We never answer; no session is ever made.
 *
 * Message (148 bytes, WireGuard whitepaper section 5.4.2):
 *   type u32le = 1 | sender u32le | ephemeral[32] | static[32+16] | timestamp[12+16] | mac1[16] | mac2[16]
 * Processing, cheapest first: size and type; mac1 (keyed BLAKE2s, ≈ 7 µs here, stops random junk but
 * anyone holding our public key can compute it); the Noise IKpsk2 chain up to the initiator's static
 * key (one X25519); `accept(staticKey)` (known nodes only); the second X25519 and the timestamp.
 * mac2 (cookie reply under load) is ignored: we never send cookies, so initiators never fill it.
 * HASH and HMAC run on node:crypto's native BLAKE2s-256 (2-3× faster here than JS); node:crypto
 * has no keyed BLAKE2s, so mac1 uses @noble/hashes' blake2s.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  type KeyObject,
} from 'node:crypto'
import {blake2s} from '@noble/hashes/blake2.js'

export const INITIATION_SIZE = 148
export const INITIATION_TYPE = 1

const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'
const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com'
const LABEL_MAC1 = 'mac1----'

// Field offsets of the initiation message.
const OFF_SENDER = 4
const OFF_EPHEMERAL = 8
const OFF_STATIC = 40
const LEN_STATIC = 32 + 16
const OFF_TIMESTAMP = OFF_STATIC + LEN_STATIC // 88
const LEN_TIMESTAMP = 12 + 16
const OFF_MAC1 = OFF_TIMESTAMP + LEN_TIMESTAMP // 116
const OFF_MAC2 = OFF_MAC1 + 16 // 132

const BLOCK = 64 // BLAKE2s block size, the HMAC block size (RFC 2104)
const ZERO_NONCE = Buffer.alloc(12) // 4 zero bytes + counter 0 as u64le
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')

/** Why a datagram is not a usable initiation, in the order they are checked. */
export type DecodeFailure =
  /** not exactly 148 bytes */
  | 'size'
  /** the first four bytes are not u32le 1 (type 1, reserved zero) */
  | 'type'
  /** mac1 does not match: not meant for our key, or corrupted */
  | 'mac1'
  /** the ephemeral is a low-order point (X25519 yields all zeros) */
  | 'ephemeral'
  /** the encrypted static key does not open: tampered, or sealed for another key */
  | 'static'
  /** the initiator's static key is not one `accept` knows (no second DH was made) */
  | 'unknown-key'
  /** the timestamp does not open: the sender does not hold the claimed static key, or tampering */
  | 'timestamp'

export const DECODE_FAILURES: readonly DecodeFailure[] = [
  'size',
  'type',
  'mac1',
  'ephemeral',
  'static',
  'unknown-key',
  'timestamp',
]

export interface DecodedInitiation {
  /** The initiator's sender index (not authenticated by Noise). */
  readonly senderIndex: number
  /** The unencrypted ephemeral public key, base64 (32 bytes). */
  readonly ephemeral: string
  /** The initiator's static public key, base64, as `wg` prints it. */
  readonly initiatorStatic: string
  /** TAI64N as one 96-bit big-endian integer: compare with `>` (see tai64nToUnixMs). */
  readonly timestamp: bigint
}

export type DecodeResult<T> =
  | {readonly ok: true; readonly initiation: DecodedInitiation; readonly peer: T}
  | {readonly ok: false; readonly reason: DecodeFailure; readonly initiatorStatic?: string}

/** TAI64 label of the Unix epoch (2^62) plus the 10 s TAI-UTC offset WireGuard adds. */
const TAI64_UNIX_BASE = 0x400000000000000an

/** Unix milliseconds of a TAI64N timestamp as WireGuard writes it (2^62 + 10 + unix seconds). */
export function tai64nToUnixMs(ts: bigint): number {
  const sec = ts >> 32n
  const nsec = Number(ts & 0xffffffffn)
  return Number(sec - TAI64_UNIX_BASE) * 1000 + Math.floor(nsec / 1e6)
}

/** The TAI64N bytes WireGuard would write at `unixMs` (for tests and tools). */
export function tai64nFromUnixMs(unixMs: number): Buffer {
  const out = Buffer.alloc(12)
  out.writeBigUInt64BE(TAI64_UNIX_BASE + BigInt(Math.floor(unixMs / 1000)))
  out.writeUInt32BE((unixMs % 1000) * 1e6, 8)
  return out
}

// ---------------------------------------------------------------------------------------------
// Noise primitives over BLAKE2s

/** BLAKE2s-256 (Noise HASH), native. */
const hash = (...parts: Uint8Array[]): Uint8Array => {
  const h = createHash('blake2s256')
  for (const p of parts) h.update(p)
  return h.digest()
}

/**
 * HMAC-BLAKE2s per RFC 2104 (block 64 bytes), as WireGuard uses it: H(K^opad || H(K^ipad || m)),
 * over the native BLAKE2s-256 (keys here are at most 32 bytes, so never hashed first).
 */
function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const ipad = Buffer.allocUnsafe(BLOCK)
  const opad = Buffer.allocUnsafe(BLOCK)
  for (let i = 0; i < BLOCK; i++) {
    const k = i < key.length ? key[i]! : 0
    ipad[i] = k ^ 0x36
    opad[i] = k ^ 0x5c
  }
  const inner = createHash('blake2s256').update(ipad)
  for (const p of parts) inner.update(p)
  return createHash('blake2s256').update(opad).update(inner.digest()).digest()
}

const ONE = Uint8Array.of(1)
const TWO = Uint8Array.of(2)

/** HKDF with one output (Noise KDF1). */
function kdf1(chainKey: Uint8Array, input: Uint8Array): Uint8Array {
  return hmac(hmac(chainKey, input), ONE)
}

/** HKDF with two outputs (Noise KDF2). */
function kdf2(chainKey: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const prk = hmac(chainKey, input)
  const t1 = hmac(prk, ONE)
  return [t1, hmac(prk, t1, TWO)]
}

/** ChaCha20-Poly1305 open with counter 0; undefined when the tag does not verify. */
function aeadOpen(key: Uint8Array, sealed: Buffer, ad: Uint8Array): Buffer | undefined {
  const plainLen = sealed.length - 16
  try {
    const d = createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, {authTagLength: 16})
    d.setAAD(ad, {plaintextLength: plainLen})
    d.setAuthTag(sealed.subarray(plainLen))
    const out = d.update(sealed.subarray(0, plainLen))
    d.final()
    return out
  } catch {
    return undefined
  }
}

const x25519Public = (raw: Uint8Array): KeyObject =>
  createPublicKey({
    key: {kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url')},
    format: 'jwk',
  })

/** X25519; undefined for a low-order peer key (OpenSSL refuses the all-zero result). */
function dh(privateKey: KeyObject, peer: KeyObject): Buffer | undefined {
  try {
    return diffieHellman({privateKey, publicKey: peer})
  } catch {
    return undefined
  }
}

const INITIAL_CHAIN_KEY = hash(Buffer.from(CONSTRUCTION))
const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, Buffer.from(IDENTIFIER))

/** A base64 X25519 private key (32 bytes) as a node:crypto key, and its public key. */
export function x25519KeyPairFromPrivate(privateKey: string): {key: KeyObject; publicKey: Buffer} {
  const raw = Buffer.from(privateKey, 'base64')
  if (raw.length !== 32 || raw.toString('base64') !== privateKey)
    throw new Error('an X25519 private key is 32 bytes of standard base64')
  // DER import once (slow, ≈ 75 µs) to learn the public key; the per-message keys use JWK.
  const der = createPrivateKey({key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8'})
  const x = createPublicKey(der).export({format: 'jwk'}).x!
  const key = createPrivateKey({
    key: {kty: 'OKP', crv: 'X25519', d: raw.toString('base64url'), x},
    format: 'jwk',
  })
  return {key, publicKey: Buffer.from(x, 'base64url')}
}

/** Counts of the expensive steps, so tests (and metrics) can see what work a datagram caused. */
export interface DecoderWork {
  mac1Checks: number
  dh: number
}

/**
 * Decodes initiations sent to one responder key. Precomputes everything that depends only on our
 * key (the mac1 key, the handshake hash after our static key, our private KeyObject).
 */
export class InitiationDecoder {
  readonly publicKey: string
  readonly work: DecoderWork = {mac1Checks: 0, dh: 0}
  readonly #privateKey: KeyObject
  readonly #mac1Key: Uint8Array
  readonly #hash0: Uint8Array
  /** DH(our static, their static) per accepted key, as wireguard-go precomputes it per peer. */
  readonly #staticStatic = new Map<string, Buffer>()
  readonly #staticCacheSize: number

  /**
   * `staticCacheSize`: how many initiator keys keep their static-static DH (LRU; 0 disables).
   * A node's later initiations then cost one DH instead of two.
   */
  constructor(privateKey: string, opts: {staticCacheSize?: number} = {}) {
    this.#staticCacheSize = opts.staticCacheSize ?? 16_384
    const {key, publicKey} = x25519KeyPairFromPrivate(privateKey)
    this.#privateKey = key
    this.publicKey = publicKey.toString('base64')
    this.#mac1Key = hash(Buffer.from(LABEL_MAC1), publicKey)
    this.#hash0 = hash(INITIAL_HASH, publicKey)
  }

  /** Size, type and mac1 only: the checks that cost no public-key crypto. */
  precheck(msg: Buffer): DecodeFailure | undefined {
    if (msg.length !== INITIATION_SIZE) return 'size'
    if (msg.readUInt32LE(0) !== INITIATION_TYPE) return 'type'
    this.work.mac1Checks++
    const mac = blake2s(msg.subarray(0, OFF_MAC1), {key: this.#mac1Key, dkLen: 16})
    if (!timingSafeEqual16(mac, msg, OFF_MAC1)) return 'mac1'
    return undefined
  }

  /**
   * Full decode. `accept` sees the initiator's static key (base64) after the first DH and returns
   * whatever identifies a known node, or undefined to stop before the second DH.
   * Pass `prechecked` when `precheck` already passed for this exact buffer.
   */
  decode<T>(
    msg: Buffer,
    accept: (initiatorStatic: string) => T | undefined,
    prechecked = false,
  ): DecodeResult<T> {
    if (!prechecked) {
      const bad = this.precheck(msg)
      if (bad) return {ok: false, reason: bad}
    }
    const ephemeral = msg.subarray(OFF_EPHEMERAL, OFF_EPHEMERAL + 32)
    const encStatic = msg.subarray(OFF_STATIC, OFF_STATIC + LEN_STATIC)
    const encTimestamp = msg.subarray(OFF_TIMESTAMP, OFF_TIMESTAMP + LEN_TIMESTAMP)

    // e: h = HASH(h || e); ck = KDF1(ck, e)
    let h = hash(this.#hash0, ephemeral)
    let ck = kdf1(INITIAL_CHAIN_KEY, ephemeral)
    // es: (ck, k) = KDF2(ck, DH(S_r, e)); static = AEAD-open(k, 0, enc_static, h)
    this.work.dh++
    const es = dh(this.#privateKey, x25519Public(ephemeral))
    if (!es) return {ok: false, reason: 'ephemeral'}
    let key: Uint8Array
    ;[ck, key] = kdf2(ck, es)
    const initiatorStaticRaw = aeadOpen(key, encStatic, h)
    if (!initiatorStaticRaw) return {ok: false, reason: 'static'}
    h = hash(h, encStatic)
    const initiatorStatic = initiatorStaticRaw.toString('base64')

    const peer = accept(initiatorStatic)
    if (peer === undefined) return {ok: false, reason: 'unknown-key', initiatorStatic}

    // ss: (ck, k) = KDF2(ck, DH(S_r, S_i)); timestamp = AEAD-open(k, 0, enc_timestamp, h)
    const ss = this.#staticStaticOf(initiatorStatic, initiatorStaticRaw)
    if (!ss) return {ok: false, reason: 'timestamp', initiatorStatic}
    ;[ck, key] = kdf2(ck, ss)
    const ts = aeadOpen(key, encTimestamp, h)
    if (!ts) return {ok: false, reason: 'timestamp', initiatorStatic}

    return {
      ok: true,
      peer,
      initiation: {
        senderIndex: msg.readUInt32LE(OFF_SENDER),
        ephemeral: Buffer.from(ephemeral).toString('base64'),
        initiatorStatic,
        timestamp: (ts.readBigUInt64BE(0) << 32n) | BigInt(ts.readUInt32BE(8)),
      },
    }
  }

  #staticStaticOf(initiatorStatic: string, raw: Buffer): Buffer | undefined {
    const cached = this.#staticStatic.get(initiatorStatic)
    if (cached) {
      this.#staticStatic.delete(initiatorStatic) // re-inserted last: Map order is the LRU order
      this.#staticStatic.set(initiatorStatic, cached)
      return cached
    }
    this.work.dh++
    const ss = dh(this.#privateKey, x25519Public(raw))
    if (!ss || this.#staticCacheSize <= 0) return ss
    if (this.#staticStatic.size >= this.#staticCacheSize) {
      const oldest = this.#staticStatic.keys().next().value
      if (oldest !== undefined) this.#staticStatic.delete(oldest)
    }
    this.#staticStatic.set(initiatorStatic, ss)
    return ss
  }
}

/** Constant-time compare of a 16-byte MAC against msg[off, off+16). */
function timingSafeEqual16(mac: Uint8Array, msg: Buffer, off: number): boolean {
  let diff = 0
  for (let i = 0; i < 16; i++) diff |= mac[i]! ^ msg[off + i]!
  return diff === 0
}

// ---------------------------------------------------------------------------------------------
// Initiator side, for tests and the benchmark only: builds a message exactly as WireGuard does,
// so tests can tamper with one field and re-seal the rest.

export interface InitiationInput {
  /** The responder's (our) public key, base64. */
  responderPublic: string
  /** The initiator's static private key, base64. */
  initiatorPrivate: string
  /** The initiator's ephemeral private key, base64. */
  ephemeralPrivate: string
  senderIndex: number
  /** 12 bytes of TAI64N. */
  timestamp: Uint8Array
  /** A forgery: seal this static public key (base64) instead of the initiator's own. */
  claimedStatic?: string
}

/** Builds a type-1 initiation (mac2 zero) as WireGuard's CreateMessageInitiation does. */
export function buildInitiation(input: InitiationInput): Buffer {
  const rPub = Buffer.from(input.responderPublic, 'base64')
  const rKey = x25519Public(rPub)
  const sI = x25519KeyPairFromPrivate(input.initiatorPrivate)
  const eI = x25519KeyPairFromPrivate(input.ephemeralPrivate)
  const msg = Buffer.alloc(INITIATION_SIZE)
  msg.writeUInt32LE(INITIATION_TYPE, 0)
  msg.writeUInt32LE(input.senderIndex >>> 0, OFF_SENDER)
  eI.publicKey.copy(msg, OFF_EPHEMERAL)

  let h = hash(INITIAL_HASH, rPub)
  h = hash(h, eI.publicKey)
  let ck = kdf1(INITIAL_CHAIN_KEY, eI.publicKey)
  let key: Uint8Array
  ;[ck, key] = kdf2(ck, diffieHellman({privateKey: eI.key, publicKey: rKey}))
  const claimed =
    input.claimedStatic === undefined ? sI.publicKey : Buffer.from(input.claimedStatic, 'base64')
  const encStatic = aeadSeal(key, claimed, h)
  encStatic.copy(msg, OFF_STATIC)
  h = hash(h, encStatic)
  ;[ck, key] = kdf2(ck, diffieHellman({privateKey: sI.key, publicKey: rKey}))
  aeadSeal(key, input.timestamp, h).copy(msg, OFF_TIMESTAMP)
  resealMac1(msg, input.responderPublic)
  return msg
}

/** Recomputes mac1 over the (possibly altered) message for `responderPublic`. mac2 is left as is. */
export function resealMac1(msg: Buffer, responderPublic: string): void {
  const mac1Key = hash(Buffer.from(LABEL_MAC1), Buffer.from(responderPublic, 'base64'))
  Buffer.from(blake2s(msg.subarray(0, OFF_MAC1), {key: mac1Key, dkLen: 16})).copy(msg, OFF_MAC1)
}

function aeadSeal(key: Uint8Array, plain: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, {authTagLength: 16})
  c.setAAD(ad, {plaintextLength: plain.length})
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])
}

export const MESSAGE_LAYOUT = {
  type: [0, 4],
  sender: [OFF_SENDER, 4],
  ephemeral: [OFF_EPHEMERAL, 32],
  static: [OFF_STATIC, LEN_STATIC],
  timestamp: [OFF_TIMESTAMP, LEN_TIMESTAMP],
  mac1: [OFF_MAC1, 16],
  mac2: [OFF_MAC2, 16],
} as const
