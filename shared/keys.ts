/**
 * Public-key parsing and validation only. Private keys are made and kept by meshd
 * (daemon/keys.ts) and never pass through shared code.
 */

/** A WireGuard (X25519) public key as `wg` prints it: 32 bytes, standard base64. */
export const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/

export function isWireGuardKey(text: string): boolean {
  return WG_KEY_RE.test(text) && Buffer.from(text, 'base64').length === 32
}

const P = (1n << 255n) - 19n

/**
 * The u-coordinates (mod p) of the points of small order on Curve25519 (and its twist) that a
 * u-coordinate can name: X25519 with any of them gives an all-zero shared secret, so a peer with
 * such a "public key" has no key at all (wireguard-go logs "ECDH returned all zeros" and never
 * completes a handshake). Same list as libsodium's and the Go x/crypto blocklist.
 */
const LOW_ORDER_U: ReadonlySet<bigint> = new Set([
  0n,
  1n,
  P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
])

/**
 * True when the 32 bytes decode (RFC 7748: little-endian, bit 255 cleared, reduced mod p) to a
 * low-order u-coordinate. Reducing first also catches the non-canonical encodings (u + p, and
 * any of them with bit 255 set), which X25519 treats the same.
 */
export function isLowOrderPublicKey(raw: Uint8Array): boolean {
  if (raw.length !== 32) return false
  let u = 0n
  for (let i = 31; i >= 0; i--) u = (u << 8n) | BigInt(raw[i] as number)
  u &= (1n << 255n) - 1n
  return LOW_ORDER_U.has(u % P)
}

/**
 * A WireGuard public key that can be a peer: well-formed and not a low-order point. Registration
 * (controller) and peer parsing (meshd) both go through this, via PublicKeySchema.
 */
export function isUsablePublicKey(text: string): boolean {
  return isWireGuardKey(text) && !isLowOrderPublicKey(Buffer.from(text, 'base64'))
}
