// The state store's atomic write on a real file system: modes, and no temp file (which may hold
// a private key) left behind when the write fails.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {writeFileAtomic} from './state-store.js'

describe('writeFileAtomic', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-store-'))
  afterAll(() => fs.rmSync(dir, {recursive: true, force: true}))

  it('replaces the file with mode 0600 and leaves no temp file', () => {
    const file = path.join(dir, 'private.key')
    fs.writeFileSync(file, 'old\n')
    writeFileAtomic(file, 'new\n')
    expect(fs.readFileSync(file, 'utf8')).toBe('new\n')
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(fs.readdirSync(dir)).toEqual(['private.key'])
  })

  it('removes its temp file, secret inside, when the final rename fails', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'fail-'))
    // A non-empty directory where the file should go: rename(2) refuses to replace it.
    const target = path.join(sub, 'credential')
    fs.mkdirSync(target)
    fs.writeFileSync(path.join(target, 'x'), '')
    expect(() => writeFileAtomic(target, 'secret-credential\n')).toThrow()
    expect(fs.readdirSync(sub)).toEqual(['credential'])
  })
})
