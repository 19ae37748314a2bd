/**
 * Public-key parsing and validation only. Private keys are made and kept by meshd
 * (daemon/keys.ts) and never pass through shared code.
 */

/** A WireGuard (X25519) public key as `wg` prints it: 32 bytes, standard base64. */
export const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$/

export function isWireGuardKey(text: string): boolean {
  return WG_KEY_RE.test(text) && Buffer.from(text, 'base64').length === 32
}
