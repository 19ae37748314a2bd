import {isIPv6} from 'node:net'
import {describe, expect, it} from 'vitest'
import {canonicalIp, ipFromBytes, ipToBytes, ipv6FromBytes, ipv6ToBytes} from './ip-bytes.js'

describe('ipv6ToBytes', () => {
  it.each([
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['2001:db8::', '20010db8000000000000000000000000'],
    ['2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['1::8', '00010000000000000000000000000008'],
  ])('parses %s', (text, bytes) => {
    expect(Buffer.from(ipv6ToBytes(text)!).toString('hex')).toBe(bytes)
  })

  it.each([
    '',
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4::5:6:7:8',
    '12345::',
    'g::',
    '::1.2.3',
    '::1.2.3.4:5',
    'fe80::1%eth0',
    ' ::1',
    '1.2.3.4',
  ])('refuses %j', (text) => {
    expect(ipv6ToBytes(text)).toBeUndefined()
  })
})

describe('ipv6FromBytes', () => {
  it.each([
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
    ['1:0:2:0:3:0:4:0', '1:0:2:0:3:0:4:0'],
    ['0:0:1:0:0:0:1:0', '0:0:1::1:0'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:7f00:1', '::ffff:127.0.0.1'],
    ['0::0', '::'],
  ])('writes %s as %s (RFC 5952)', (text, canonical) => {
    expect(canonicalIp(text)).toBe(canonical)
  })

  it('agrees with the WHATWG URL serialiser on random addresses', () => {
    let seed = 42
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff
    for (let i = 0; i < 2000; i++) {
      // Zero runs are what compression is about: make them likely.
      const b = Uint8Array.from({length: 16}, (_, k) =>
        rand() < 128 && k % 2 === 0 ? 0 : rand() < 100 ? 0 : rand(),
      )
      if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) continue
      const ours = ipv6FromBytes(b)
      expect(isIPv6(ours)).toBe(true)
      expect(ours).toBe(new URL(`http://[${ours}]/`).hostname.slice(1, -1))
      expect(ipv6ToBytes(ours)).toEqual(b)
    }
  })
})

it('ipToBytes and ipFromBytes handle both families', () => {
  expect(ipFromBytes(ipToBytes('198.51.100.7')!)).toBe('198.51.100.7')
  expect(ipFromBytes(ipToBytes('2001:db8::7')!)).toBe('2001:db8::7')
  expect(ipToBytes('01.2.3.4')).toBeUndefined()
})
