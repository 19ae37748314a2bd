/**
 * The controller's secrets key (issue 10): 32 random bytes that seal the secrets the controller
 * must be able to read back, which a hash cannot protect: today the TOTP secrets of user_mfa.
 * Someone with a copy of the database (a backup) but not the key cannot mint MFA codes.
 *
 * Where it lives: `--secrets-key-file PATH` (MESH_SECRETS_KEY_FILE, controller.secretsKeyFile),
 * by default DATA_DIR/secrets.key. On SQLite the default file is made on the first start (mode
 * 0600); a file that group or others may read or write is refused, as is a given file that does
 * not exist. Replicas on one PostgreSQL must share one key, so there it is never made: it is
 * copied to every replica (README: Backups and the secrets key).
 *
 * Sealed form: `v1:<key id>:<nonce>:<ciphertext+tag>`. AES-256-GCM (node:crypto), a fresh 12-byte
 * nonce per seal, and as associated data the version, the key id and a context naming the column
 * and the row's owner (`user_mfa.secret:<user id>`), so a sealed value copied into another user's
 * row does not open. The key id (the first 8 bytes of a hash of the key, hex) lets a wrong key be
 * reported as SECRETS_KEY_MISMATCH rather than as a wrong code; `v1` lets the format change.
 */
import {createCipheriv, createDecipheriv, createHash, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {MeshError} from '../../shared/errors.js'
import type {Writes} from '../domain/writes.js'
import {isSealedSecret, type MfaSealer} from '../domain/sessions.js'

export const SECRETS_KEY_FILE = 'secrets.key'
const KEY_BYTES = 32
const NONCE_BYTES = 12
const TAG_BYTES = 16
const VERSION = 'v1'
const SEALED_RE = /^v1:([0-9a-f]{16}):([A-Za-z0-9_-]{16}):([A-Za-z0-9_-]+)$/

/** The context a user's TOTP secret is sealed under. */
export const mfaSecretContext = (userId: string): string => `user_mfa.secret:${userId}`

/** True when a stored value is in a sealed form (any version); base32 TOTP secrets have no `:`. */
export const isSealed = isSealedSecret

/** The key id a sealed value names, `?` when it is sealed but unreadable, undefined when plain. */
export function sealedWith(stored: string): string | undefined {
  if (!isSealed(stored)) return undefined
  return SEALED_RE.exec(stored)?.[1] ?? '?'
}

const keyIdOf = (key: Buffer): string =>
  createHash('sha256').update('mesh secrets key id\0').update(key).digest('hex').slice(0, 16)

export class SecretsKey implements MfaSealer {
  /** The first 8 bytes of a hash of the key, hex: names the key, tells nothing of it. */
  readonly keyId: string
  readonly #key: Buffer

  private constructor(key: Buffer) {
    this.#key = Buffer.from(key)
    this.keyId = keyIdOf(key)
  }

  static fromBytes(key: Buffer): SecretsKey {
    if (key.length !== KEY_BYTES) throw new Error(`a secrets key is ${KEY_BYTES} bytes, not ${key.length}`)
    return new SecretsKey(key)
  }

  static generate(): SecretsKey {
    return new SecretsKey(randomBytes(KEY_BYTES))
  }

  /** The key file's text: base64 of the key, as `openssl rand -base64 32` writes one. */
  toFileText(): string {
    return `${this.#key.toString('base64')}\n`
  }

  private aad(context: string): Buffer {
    return Buffer.from(`${VERSION}:${this.keyId}:${context}`)
  }

  /** Seals `plain` for `context` (mfaSecretContext). */
  sealFor(context: string, plain: string): string {
    const nonce = randomBytes(NONCE_BYTES)
    const c = createCipheriv('aes-256-gcm', this.#key, nonce)
    c.setAAD(this.aad(context))
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final(), c.getAuthTag()])
    return `${VERSION}:${this.keyId}:${nonce.toString('base64url')}:${body.toString('base64url')}`
  }

  /**
   * Opens what sealFor made for the same context. SECRETS_KEY_MISMATCH when it was sealed with
   * another key; SECRET_CORRUPT when it was changed, or sealed for another context (another user).
   */
  openFor(context: string, sealed: string): string {
    const m = SEALED_RE.exec(sealed)
    if (!m)
      throw new MeshError('SECRET_CORRUPT', {message: 'a stored secret is not in a format this mesh reads'})
    if (m[1] !== this.keyId) {
      throw new MeshError('SECRETS_KEY_MISMATCH', {
        message: `a stored secret was sealed with secrets key ${m[1]}, not with this controller's key ${this.keyId}`,
        detail: {keyId: m[1], controllerKeyId: this.keyId},
      })
    }
    const body = Buffer.from(m[3]!, 'base64url')
    if (body.length < TAG_BYTES) throw new MeshError('SECRET_CORRUPT')
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(m[2]!, 'base64url'))
      d.setAAD(this.aad(context))
      d.setAuthTag(body.subarray(body.length - TAG_BYTES))
      return Buffer.concat([d.update(body.subarray(0, body.length - TAG_BYTES)), d.final()]).toString('utf8')
    } catch {
      throw new MeshError('SECRET_CORRUPT')
    }
  }

  // MfaSealer: the domain rule that seals plain rows at start (domain/sessions.ts).
  seal(userId: string, plain: string): string {
    return this.sealFor(mfaSecretContext(userId), plain)
  }

  sealedWith(stored: string): string | undefined {
    return sealedWith(stored)
  }

  open(userId: string, sealed: string): string {
    return this.openFor(mfaSecretContext(userId), sealed)
  }
}

/**
 * Reads a key file: base64 of 32 bytes. Undefined when the file does not exist. Refused with
 * CONFIG_INVALID: a file group or others may read or write (`chmod 600`), or other content.
 */
export function readSecretsKeyFile(file: string): SecretsKey | undefined {
  let text: string
  let mode: number
  try {
    mode = fs.statSync(file).mode
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new MeshError('CONFIG_INVALID', {
      message: `${file}: cannot read the secrets key (${code ?? 'error'})`,
    })
  }
  if ((mode & 0o077) !== 0) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file}: the secrets key is open to group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); the controller refuses it`,
      hint: `chmod 600 ${file}`,
    })
  }
  const t = text.trim()
  const key = /^[A-Za-z0-9+/]{43}=$/.test(t) ? Buffer.from(t, 'base64') : undefined
  if (key?.length !== KEY_BYTES) {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file} does not hold a secrets key (32 bytes, base64)`,
      hint: 'restore it from where it was backed up; `openssl rand -base64 32` makes a new one, which opens nothing sealed with the old',
    })
  }
  return SecretsKey.fromBytes(key)
}

/**
 * Makes a key file (0600). Two processes at once end with the same key: the file appears whole
 * (link of a finished temp file) or not at all; the loser reads the winner's.
 */
export function createSecretsKeyFile(file: string): SecretsKey {
  const key = SecretsKey.generate()
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700})
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    fs.writeFileSync(tmp, key.toFileText(), {mode: 0o600, flag: 'wx'})
    try {
      fs.linkSync(tmp, file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      return readSecretsKeyFile(file)!
    }
  } finally {
    fs.rmSync(tmp, {force: true})
  }
  return key
}

/**
 * At start: the controller's secrets key, and every MFA secret of the database sealed with it.
 *
 * 1. Read the key file (the given one must exist; the default one may not).
 * 2. No file, SQLite, default path: make one, unless the database holds secrets sealed with a
 *    key (a database restored without its key file: a new key would open none of them).
 * 3. No key on PostgreSQL: refused when any account has MFA; otherwise the controller runs and
 *    `mesh user mfa enable` answers SECRETS_KEY_MISSING.
 * 4. With a key: plain secrets (from before this version) are sealed in place, in one
 *    transaction; any sealed with another key refuse the start (SECRETS_KEY_MISMATCH).
 */
export async function openSecretsKey(opts: {
  dataDir: string
  file?: string | undefined
  backend: 'sqlite' | 'postgres'
  writes: Pick<Writes, 'sealMfaSecrets'>
  log?: {info(obj: object, msg: string): void; warn(obj: object, msg: string): void}
}): Promise<SecretsKey | undefined> {
  const given = opts.file !== undefined
  const file = path.resolve(opts.file ?? path.join(opts.dataDir, SECRETS_KEY_FILE))
  let key = readSecretsKeyFile(file)
  if (!key && given) {
    throw new MeshError('SECRETS_KEY_MISSING', {
      message: `--secrets-key-file ${file}: no such file`,
      hint: `restore it, or make one with \`(umask 077; openssl rand -base64 32 > ${file})\` (the same file on every replica)`,
    })
  }
  if (!key) {
    const counts = await opts.writes.sealMfaSecrets(undefined)
    if (opts.backend === 'postgres') {
      if (counts.total > 0) {
        throw new MeshError('SECRETS_KEY_MISSING', {
          message: `${counts.total} account(s) have MFA and this PostgreSQL controller has no secrets key (${file})`,
          hint: 'give every replica the same key with --secrets-key-file PATH (README: Backups and the secrets key)',
        })
      }
      opts.log?.info(
        {file},
        'no secrets key: MFA cannot be enabled until every replica has --secrets-key-file',
      )
      return undefined
    }
    if (counts.sealed > 0) {
      throw new MeshError('SECRETS_KEY_MISSING', {
        message: `${file} is missing, and ${counts.sealed} account(s) have MFA secrets sealed with a secrets key`,
        hint: `put back the secrets.key that belongs with this database; without it, reset those accounts' MFA (README: Backups and the secrets key)`,
      })
    }
    key = createSecretsKeyFile(file)
    opts.log?.info({file, keyId: key.keyId}, 'created the secrets key (keep it with every backup)')
  }
  const r = await opts.writes.sealMfaSecrets(key)
  if (r.sealedNow > 0) opts.log?.info({sealed: r.sealedNow, keyId: key.keyId}, 'sealed plain MFA secrets')
  return key
}
