import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import nacl from 'tweetnacl'
import {afterEach, describe, expect, it} from 'vitest'
import {MeshError} from '../../shared/errors.js'
import {DISCOVERY_KEY_FILE, loadOrCreateDiscoveryKey} from './key.js'

const dirs: string[] = []
const tmp = (): string => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'discovery-key-'))
  dirs.push(d)
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, {recursive: true, force: true})
})

describe('loadOrCreateDiscoveryKey', () => {
  it('creates a 0600 key file whose public key is the X25519 base point times the private key', () => {
    const dir = path.join(tmp(), 'data')
    const key = loadOrCreateDiscoveryKey(dir)
    const file = path.join(dir, DISCOVERY_KEY_FILE)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.readFileSync(file, 'utf8')).toBe(`${key.privateKey}\n`)
    const expected = nacl.scalarMult.base(new Uint8Array(Buffer.from(key.privateKey, 'base64')))
    expect(key.publicKey).toBe(Buffer.from(expected).toString('base64'))
    expect(fs.readdirSync(dir)).toEqual([DISCOVERY_KEY_FILE]) // no temp file left behind
  })

  it('returns the same key on every later start', () => {
    const dir = tmp()
    const first = loadOrCreateDiscoveryKey(dir)
    expect(loadOrCreateDiscoveryKey(dir)).toEqual(first)
  })

  it('reads a key written by wg genkey and tightens a loose file mode to 0600', () => {
    const dir = tmp()
    const file = path.join(dir, DISCOVERY_KEY_FILE)
    fs.writeFileSync(file, 'SFsQv8yi6yhAc7kGTd01qoegDsOtWpfgRKYAn1+vWmg=\n', {mode: 0o644})
    fs.chmodSync(file, 0o644)
    expect(loadOrCreateDiscoveryKey(dir).publicKey).toBe('AqXGiQs4sw365RBlt4Yy7bBjrAHaZvWW5gSkqwcfpjE=')
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
  })

  it('refuses a damaged key file with CONFIG_INVALID and leaves it as it was', () => {
    const dir = tmp()
    const file = path.join(dir, DISCOVERY_KEY_FILE)
    fs.writeFileSync(file, 'not a key\n', {mode: 0o600})
    let err: unknown
    try {
      loadOrCreateDiscoveryKey(dir)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(MeshError)
    expect((err as MeshError).code).toBe('CONFIG_INVALID')
    expect((err as MeshError).message).toContain(file)
    expect(fs.readFileSync(file, 'utf8')).toBe('not a key\n')
  })
})
