// Unit tests of reading a secret from stdin and of the no-terminal rule.
import {Readable} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {readSecretFromStdin, requireTty} from './prompt.js'

describe('readSecretFromStdin', () => {
  it('drops exactly one trailing newline, as echo adds, and keeps the rest', async () => {
    expect(await readSecretFromStdin(Readable.from(['s3cret\n']))).toBe('s3cret')
    expect(await readSecretFromStdin(Readable.from(['s3cret\r\n']))).toBe('s3cret')
    expect(await readSecretFromStdin(Readable.from(['with space \n\n']))).toBe('with space \n')
    expect(await readSecretFromStdin(Readable.from([Buffer.from('pa'), Buffer.from('ss')]))).toBe('pass')
  })

  it('refuses empty input and input over 4 KiB', async () => {
    await expect(readSecretFromStdin(Readable.from(['\n']))).rejects.toMatchObject({code: 'INVALID_ARGUMENT'})
    await expect(readSecretFromStdin(Readable.from([]))).rejects.toMatchObject({code: 'INVALID_ARGUMENT'})
    await expect(readSecretFromStdin(Readable.from(['x'.repeat(5000)]))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    })
  })
})

describe('requireTty', () => {
  it('throws TTY_REQUIRED naming the flag to pass instead', () => {
    expect(() => requireTty(false, '--yes')).toThrow(
      expect.objectContaining({code: 'TTY_REQUIRED', hint: 'pass --yes'}),
    )
    expect(() => requireTty(true, '--yes')).not.toThrow()
  })
})
