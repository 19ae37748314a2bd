import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {MeshError} from '../../shared/errors.js'
import {
  SecretsKey,
  createSecretsKeyFile,
  isSealed,
  mfaSecretContext,
  readSecretsKeyFile,
  sealedWith,
} from './secrets-key.js'
import {newTotpSecret} from './totp.js'

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
    return undefined
  } catch (err) {
    return err instanceof MeshError ? err.code : `not a MeshError: ${String(err)}`
  }
}

describe('sealing secrets with the secrets key', () => {
  const key = SecretsKey.generate()
  const secret = newTotpSecret()

  it('opens what it sealed, for the same user; the sealed form holds no trace of the secret', () => {
    const sealed = key.seal('u_alice', secret)
    expect(sealed).toMatch(/^v1:[0-9a-f]{16}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$/)
    expect(sealed).not.toContain(secret)
    expect(sealedWith(sealed)).toBe(key.keyId)
    expect(isSealed(sealed)).toBe(true)
    expect(key.open('u_alice', sealed)).toBe(secret)
  })

  it('uses a fresh nonce each time: the same secret seals differently', () => {
    expect(key.seal('u_alice', secret)).not.toBe(key.seal('u_alice', secret))
  })

  it('refuses a sealed secret changed anywhere (SECRET_CORRUPT), never returns a wrong one', () => {
    const sealed = key.seal('u_alice', secret)
    const [v, kid, nonce, body] = sealed.split(':') as [string, string, string, string]
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1)
    for (const tampered of [
      [v, kid, flip(nonce, 3), body].join(':'),
      [v, kid, nonce, flip(body, 0)].join(':'),
      [v, kid, nonce, flip(body, body.length - 2)].join(':'),
      [v, kid, nonce, body.slice(0, -4)].join(':'),
      `${v}:${kid}:${nonce}`,
      'v1:garbage',
    ]) {
      expect(
        codeOf(() => key.open('u_alice', tampered)),
        tampered,
      ).toBe('SECRET_CORRUPT')
    }
  })

  it("refuses a sealed secret copied into another user's row (the user id is associated data)", () => {
    const sealed = key.seal('u_alice', secret)
    expect(codeOf(() => key.open('u_mallory', sealed))).toBe('SECRET_CORRUPT')
    expect(codeOf(() => key.openFor('other.column:u_alice', sealed))).toBe('SECRET_CORRUPT')
  })

  it('names a wrong key as SECRETS_KEY_MISMATCH with both key ids, not as a bad code', () => {
    const other = SecretsKey.generate()
    const sealed = other.seal('u_alice', secret)
    let err: unknown
    try {
      key.open('u_alice', sealed)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(MeshError)
    expect((err as MeshError).code).toBe('SECRETS_KEY_MISMATCH')
    expect((err as MeshError).detail).toEqual({keyId: other.keyId, controllerKeyId: key.keyId})
  })

  it('tells plain base32 secrets (from before sealing) from sealed ones', () => {
    expect(isSealed(secret)).toBe(false)
    expect(sealedWith(secret)).toBeUndefined()
    expect(sealedWith('v2:whatever')).toBe('?')
    expect(mfaSecretContext('u_1')).toBe('user_mfa.secret:u_1')
  })

  it('derives the key id from the key: the same key, the same id; another key, another id', () => {
    const bytes = Buffer.alloc(32, 7)
    expect(SecretsKey.fromBytes(bytes).keyId).toBe(SecretsKey.fromBytes(Buffer.from(bytes)).keyId)
    expect(SecretsKey.fromBytes(Buffer.alloc(32, 8)).keyId).not.toBe(SecretsKey.fromBytes(bytes).keyId)
    expect(() => SecretsKey.fromBytes(Buffer.alloc(16))).toThrow(/32 bytes/)
  })
})

describe('the secrets key file', () => {
  let dir: string
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-secrets-'))
  })
  afterEach(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('is made 0600 and read back as the same key', () => {
    const file = path.join(dir, 'sub', 'secrets.key')
    const made = createSecretsKeyFile(file)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^[A-Za-z0-9+/]{43}=\n$/)
    expect(readSecretsKeyFile(file)?.keyId).toBe(made.keyId)
    // A second maker finds the first one's file and uses it.
    expect(createSecretsKeyFile(file).keyId).toBe(made.keyId)
  })

  it('reads a key made with openssl rand -base64 32', () => {
    const file = path.join(dir, 'k')
    const bytes = Buffer.alloc(32, 42)
    fs.writeFileSync(file, `${bytes.toString('base64')}\n`, {mode: 0o600})
    expect(readSecretsKeyFile(file)?.keyId).toBe(SecretsKey.fromBytes(bytes).keyId)
  })

  it('is undefined when absent, and refused when group or others may read it, or when it is not a key', () => {
    const file = path.join(dir, 'k')
    expect(readSecretsKeyFile(file)).toBeUndefined()
    createSecretsKeyFile(file)
    fs.chmodSync(file, 0o640)
    expect(codeOf(() => readSecretsKeyFile(file))).toBe('CONFIG_INVALID')
    fs.chmodSync(file, 0o604)
    expect(codeOf(() => readSecretsKeyFile(file))).toBe('CONFIG_INVALID')
    fs.chmodSync(file, 0o600)
    fs.writeFileSync(file, 'c2hvcnQ=\n')
    expect(codeOf(() => readSecretsKeyFile(file))).toBe('CONFIG_INVALID')
  })
})
