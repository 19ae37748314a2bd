import {describe, expect, it} from 'vitest'
import {EndpointSchema} from '../protocol/control-api.js'
import {
  ENDPOINT_MAX_LENGTH,
  formatEndpoint,
  isUsableCandidate,
  parseEndpoint,
  parseUsableEndpoint,
  usableEndpoints,
} from './endpoint.js'

describe('parseEndpoint', () => {
  it.each([
    ['203.0.113.7:51820', {host: '203.0.113.7', port: 51820, family: 4}],
    ['0.0.0.0:1', {host: '0.0.0.0', port: 1, family: 4}],
    ['255.255.255.255:65535', {host: '255.255.255.255', port: 65535, family: 4}],
    ['[2001:db8::1]:51820', {host: '2001:db8::1', port: 51820, family: 6}],
    ['[2001:DB8:0:0:0:0:0:1]:5', {host: '2001:db8::1', port: 5, family: 6}],
    ['[::]:1', {host: '::', port: 1, family: 6}],
    ['[::ffff:198.51.100.1]:9', {host: '::ffff:c633:6401', port: 9, family: 6}],
  ])('parses %s', (text, want) => {
    expect(parseEndpoint(text)).toEqual(want)
  })

  it.each([
    '999.999.999.999:1',
    '256.1.1.1:1',
    '1.2.3:4',
    '1.2.3.4.5:6',
    '01.2.3.4:5',
    '1.2.3.00:5',
    '1.2.3.4:65536',
    '1.2.3.4:99999',
    '1.2.3.4:0',
    '1.2.3.4:00',
    '1.2.3.4:051820',
    '1.2.3.4:+5',
    '1.2.3.4:-5',
    '1.2.3.4: 5',
    '1.2.3.4:',
    '1.2.3.4',
    ' 1.2.3.4:5',
    '1.2.3.4:5 ',
    '1.2.3.4:5\n',
    '[:::::]:1',
    '[1::2::3]:1',
    '[1:2:3:4:5:6:7:8:9]:1',
    '[fe80::1%eth0]:5',
    '[fe80::1%25eth0]:5',
    '[2001:db8::1]',
    '[2001:db8::1]:0',
    '[2001:db8::1]:65536',
    '2001:db8::1:51820',
    '::1:5',
    '[[::1]]:5',
    '[::01.2.3.4]:5',
    '[00001::1]:5',
    'example.com:51820',
    'localhost:51820',
    'wg.example:1',
    '1.2.3.4.nip.io:5',
    '0x7f.0.0.1:5',
    '2130706433:5',
    '',
    ':51820',
    `[${'0:'.repeat(30)}1]:5`,
  ])('refuses %j', (text) => {
    expect(parseEndpoint(text)).toBeNull()
    expect(EndpointSchema.safeParse(text).success).toBe(false)
  })

  it('refuses non-strings and anything longer than the bound', () => {
    for (const v of [undefined, null, 5, {}, ['1.2.3.4:5']]) expect(parseEndpoint(v)).toBeNull()
    const long = `1.2.3.4:5${' '.repeat(ENDPOINT_MAX_LENGTH)}`
    expect(parseEndpoint(long)).toBeNull()
  })

  it('formats what it parsed back to the canonical text', () => {
    for (const [text, canon] of [
      ['203.0.113.7:51820', '203.0.113.7:51820'],
      ['[2001:DB8::0:1]:51820', '[2001:db8::1]:51820'],
    ] as const) {
      const ep = parseEndpoint(text)
      expect(ep).not.toBeNull()
      expect(formatEndpoint(ep!)).toBe(canon)
      expect(parseEndpoint(formatEndpoint(ep!))).toEqual(ep)
    }
  })
})

describe('isUsableCandidate', () => {
  it.each([
    '0.0.0.0:1',
    '0.1.2.3:1',
    '127.0.0.1:51820',
    '127.255.0.9:51820',
    '169.254.1.1:51820',
    '224.0.0.1:51820',
    '239.255.255.250:1900',
    '255.255.255.255:51820',
    '[::]:51820',
    '[::1]:51820',
    '[fe80::1]:51820',
    '[febf::1]:51820',
    '[ff02::1]:51820',
    '[::ffff:127.0.0.1]:51820',
    '[::ffff:169.254.0.1]:51820',
  ])('refuses %s as a candidate', (text) => {
    const ep = parseEndpoint(text)
    expect(ep).not.toBeNull()
    expect(isUsableCandidate(ep!)).toBe(false)
    expect(parseUsableEndpoint(text)).toBeNull()
    expect(EndpointSchema.safeParse(text).success).toBe(false)
  })

  it.each([
    '203.0.113.7:51820',
    '198.51.100.1:1',
    '10.0.0.1:51820',
    '192.168.1.10:51820',
    '100.64.0.1:41641',
    '1.0.0.0:5',
    '223.255.255.255:5',
    '240.0.0.1:5',
    '[2001:db8::1]:51820',
    '[fec0::1]:51820',
    '[fd00::1]:51820',
    '[::ffff:203.0.113.7]:51820',
  ])('accepts %s as a candidate', (text) => {
    expect(parseUsableEndpoint(text)).not.toBeNull()
    expect(EndpointSchema.safeParse(text).success).toBe(true)
  })
})

describe('usableEndpoints', () => {
  it('keeps the usable ones in order, canonical and once, and counts the rest', () => {
    expect(
      usableEndpoints([
        '203.0.113.7:51820',
        '999.999.999.999:1',
        '[2001:DB8::1]:5',
        '[2001:db8::1]:5',
        '127.0.0.1:5',
        42,
        '198.51.100.1:1',
      ]),
    ).toEqual({endpoints: ['203.0.113.7:51820', '[2001:db8::1]:5', '198.51.100.1:1'], dropped: 3})
  })
})
