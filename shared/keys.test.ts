import {createPublicKey, diffieHellman, generateKeyPairSync} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {isLowOrderPublicKey, isUsablePublicKey, isWireGuardKey} from './keys.js'
import {PublicKeySchema} from './protocol/control-api.js'

const P = (1n << 255n) - 19n
const le = (n: bigint): Buffer => {
  const b = Buffer.alloc(32)
  for (let i = 0; i < 32; i++, n >>= 8n) b[i] = Number(n & 255n)
  return b
}
const withBit255 = (b: Buffer): Buffer => {
  const c = Buffer.from(b)
  c[31] = (c[31] as number) | 0x80
  return c
}

const LOW_ORDER_HEX = [
  '0000000000000000000000000000000000000000000000000000000000000000', // 0
  '0100000000000000000000000000000000000000000000000000000000000000', // 1
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
]
const canonical = LOW_ORDER_HEX.map((h) => Buffer.from(h, 'hex'))
// Non-canonical encodings X25519 reduces to the same u: u + p where that stays below 2^255
// (only 0 and 1), and every one of them with bit 255 set.
const nonCanonical = [
  le(P),
  le(P + 1n),
  ...canonical.map(withBit255),
  withBit255(le(P)),
  withBit255(le(P + 1n)),
]
const refused = [...canonical, ...nonCanonical]

const x25519Public = (raw: Buffer) =>
  createPublicKey({key: {kty: 'OKP', crv: 'X25519', x: raw.toString('base64url')}, format: 'jwk'})
const randomPublic = (): Buffer =>
  Buffer.from(generateKeyPairSync('x25519').publicKey.export({format: 'jwk'}).x as string, 'base64url')

/** The shared secret node:crypto (OpenSSL) computes, or null where OpenSSL refuses the point. */
const sharedWith = (raw: Buffer): Buffer | null => {
  const {privateKey} = generateKeyPairSync('x25519')
  try {
    return diffieHellman({privateKey, publicKey: x25519Public(raw)})
  } catch {
    return null
  }
}

describe('WireGuard public keys', () => {
  it('refuses every low-order X25519 key, canonical or not, that ECDH turns into an all-zero secret', () => {
    expect(refused).toHaveLength(14)
    for (const raw of refused) {
      const key = raw.toString('base64')
      expect(isWireGuardKey(key), key).toBe(true) // well-formed, so only the order check refuses it
      expect(isLowOrderPublicKey(raw), key).toBe(true)
      expect(isUsablePublicKey(key), key).toBe(false)
      expect(PublicKeySchema.safeParse(key).success, key).toBe(false)
      // Cross-check with OpenSSL: the secret is all zeros (or OpenSSL refuses to derive it).
      const secret = sharedWith(raw)
      if (secret !== null) expect(secret.equals(Buffer.alloc(32)), key).toBe(true)
    }
  })

  it('names the low-order key in the schema message', () => {
    const res = PublicKeySchema.safeParse('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')
    expect(res.success).toBe(false)
    expect(res.error?.issues.map((i) => i.message).join('; ')).toMatch(/low-order/)
  })

  it('accepts random real public keys, whose secrets are not all zeros', () => {
    for (let i = 0; i < 50; i++) {
      const raw = randomPublic()
      const key = raw.toString('base64')
      expect(isUsablePublicKey(key), key).toBe(true)
      expect(PublicKeySchema.safeParse(key).success, key).toBe(true)
      const secret = sharedWith(raw)
      expect(secret, key).not.toBeNull()
      expect(secret?.equals(Buffer.alloc(32)), key).toBe(false)
    }
  })

  it('accepts the neighbours of low-order keys (2, p - 2, p + 2)', () => {
    for (const u of [2n, P - 2n, P + 2n]) {
      expect(isLowOrderPublicKey(le(u))).toBe(false)
      expect(isUsablePublicKey(le(u).toString('base64'))).toBe(true)
    }
  })

  it('refuses malformed keys before looking at their value', () => {
    for (const key of ['', 'AAAA', 'A'.repeat(44), `${'A'.repeat(42)}B=`, `${'A'.repeat(43)}=\n`]) {
      expect(isUsablePublicKey(key), key).toBe(false)
      expect(PublicKeySchema.safeParse(key).success, key).toBe(false)
    }
  })
})
