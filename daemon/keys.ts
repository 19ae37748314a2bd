/**
 * X25519 key pairs for WireGuard, made on this node with tweetnacl and encoded as `wg genkey`
 * and `wg pubkey` do (standard base64 of 32 bytes). Private keys stay in meshd: callers write
 * them to the state dir (0600) and hand them to WireGuard, nothing else.
 */
import nacl from 'tweetnacl'

export interface KeyPair {
  /** base64, 32 bytes, clamped: never logged, never sent to a controller. */
  readonly privateKey: string
  readonly publicKey: string
}

/**
 * Clamps a scalar as RFC 7748 section 5 and `wg genkey` do. X25519 clamps again when it
 * multiplies, so this changes no public key; it only makes our files byte-identical to wg's.
 */
function clamp(key: Uint8Array): Uint8Array {
  key[0] = key[0]! & 248
  key[31] = (key[31]! & 127) | 64
  return key
}

export function generateKeyPair(): KeyPair {
  const secret = clamp(nacl.randomBytes(32))
  const publicKey = nacl.scalarMult.base(secret)
  return {
    privateKey: Buffer.from(secret).toString('base64'),
    publicKey: Buffer.from(publicKey).toString('base64'),
  }
}

/** The public key of a base64 private key, as `wg pubkey` prints it. */
export function publicKeyOf(privateKey: string): string {
  const secret = Buffer.from(privateKey, 'base64')
  if (secret.length !== 32) throw new Error('a WireGuard private key is 32 bytes of base64')
  return Buffer.from(nacl.scalarMult.base(new Uint8Array(secret))).toString('base64')
}
