import {execFileSync} from 'node:child_process'
import {describe, expect, it} from 'vitest'
import {isWireGuardKey} from '../shared/keys.js'
import {generateKeyPair, publicKeyOf} from './keys.js'

const hasWg = (() => {
  try {
    execFileSync('wg', ['--version'], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
})()

describe('keys', () => {
  it('makes keys in the wg base64 form', () => {
    const pair = generateKeyPair()
    expect(isWireGuardKey(pair.privateKey)).toBe(true)
    expect(isWireGuardKey(pair.publicKey)).toBe(true)
    expect(publicKeyOf(pair.privateKey)).toBe(pair.publicKey)
  })

  it('makes a different key pair every time', () => {
    const keys = new Set(Array.from({length: 20}, () => generateKeyPair().privateKey))
    expect(keys.size).toBe(20)
  })

  it.skipIf(!hasWg)('derives the same public key as `wg pubkey` for the same private key', () => {
    for (let i = 0; i < 5; i++) {
      const pair = generateKeyPair()
      const wgPub = execFileSync('wg', ['pubkey'], {input: `${pair.privateKey}\n`})
        .toString()
        .trim()
      expect(wgPub).toBe(pair.publicKey)
    }
  })

  it.skipIf(!hasWg)('reads private keys made by `wg genkey`', () => {
    const priv = execFileSync('wg', ['genkey']).toString().trim()
    const wgPub = execFileSync('wg', ['pubkey'], {input: `${priv}\n`})
      .toString()
      .trim()
    expect(publicKeyOf(priv)).toBe(wgPub)
  })
})
