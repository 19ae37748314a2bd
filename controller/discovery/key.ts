/**
 * The controller's endpoint-discovery key pair: an X25519 (WireGuard) key that nodes add as a
 * WireGuard peer. Kept in DATA_DIR/discovery.key (mode 0600, the private key in base64 as
 * `wg genkey` writes it), made on first start and kept across restarts so nodes keep their peer.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import {MeshError} from '../../shared/errors.js'
import {x25519KeyPairFromPrivate} from './noise.js'

export const DISCOVERY_KEY_FILE = 'discovery.key'

export interface DiscoveryKey {
  /** base64, 32 bytes: never logged, never sent anywhere. */
  readonly privateKey: string
  /** base64, as `wg pubkey` prints it: what the netmap tells nodes. */
  readonly publicKey: string
}

/** A fresh clamped X25519 private key, as `wg genkey` makes one. */
export function generateDiscoveryPrivateKey(): string {
  const k = randomBytes(32)
  k[0] = k[0]! & 248
  k[31] = (k[31]! & 127) | 64
  return k.toString('base64')
}

function parse(file: string, text: string): DiscoveryKey {
  const privateKey = text.trim()
  try {
    return {privateKey, publicKey: x25519KeyPairFromPrivate(privateKey).publicKey.toString('base64')}
  } catch {
    throw new MeshError('CONFIG_INVALID', {
      message: `${file} does not hold an X25519 private key (32 bytes of base64)`,
      hint: 'restore it from a backup, or delete it to make a new discovery key (nodes get the new public key in the netmap)',
    })
  }
}

/**
 * Reads DATA_DIR/discovery.key, or creates it (0600) when absent. Two processes starting at once
 * end with the same key: the file appears whole (link of a finished temp file) or not at all.
 */
export function loadOrCreateDiscoveryKey(dataDir: string): DiscoveryKey {
  const file = path.join(dataDir, DISCOVERY_KEY_FILE)
  try {
    const key = parse(file, fs.readFileSync(file, 'utf8'))
    if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600)
    return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  fs.mkdirSync(dataDir, {recursive: true, mode: 0o700})
  const privateKey = generateDiscoveryPrivateKey()
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    fs.writeFileSync(tmp, `${privateKey}\n`, {mode: 0o600, flag: 'wx'})
    try {
      fs.linkSync(tmp, file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      // Someone else made it first: use theirs.
      return parse(file, fs.readFileSync(file, 'utf8'))
    }
  } finally {
    fs.rmSync(tmp, {force: true})
  }
  return parse(file, `${privateKey}\n`)
}
