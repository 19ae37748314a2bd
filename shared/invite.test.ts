import {describe, expect, it} from 'vitest'
import {decodeJoinString, encodeJoinString} from './invite.js'

describe('join strings', () => {
  it('carry the controller URL and the code in one string', () => {
    const s = encodeJoinString('http://127.0.0.1:8080', 'inv_abcdefghijklmnopqrstuvwxyz')
    expect(s).toMatch(/^meshinv1_[A-Za-z0-9_-]+$/)
    expect(decodeJoinString(s)).toEqual({
      controller: 'http://127.0.0.1:8080',
      code: 'inv_abcdefghijklmnopqrstuvwxyz',
    })
  })
  it.each([
    '',
    'meshinv1_',
    'meshinv1_!!!',
    'inv_abc',
    `meshinv1_${Buffer.from('{"c":"ftp://x","k":"inv_abcdefghijklmnop"}').toString('base64url')}`,
  ])('refuses %j', (s) => {
    expect(decodeJoinString(s)).toBeUndefined()
  })
})
