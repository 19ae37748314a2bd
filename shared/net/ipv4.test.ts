import {describe, expect, it} from 'vitest'
import {cidrsOverlap, formatCidr, hostRange, parseCidr, parseIPv4} from './ipv4.js'

describe('parseIPv4', () => {
  it.each(['10.0.0.1', '0.0.0.0', '255.255.255.255'])('accepts %s', (ip) => {
    expect(parseIPv4(ip)).toBeTypeOf('number')
  })
  it.each([
    '010.0.0.1',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '1.2.3.-1',
    ' 1.2.3.4',
    '1.2.3.4 ',
    'a.b.c.d',
    '',
  ])('refuses %j', (ip) => {
    expect(parseIPv4(ip)).toBeUndefined()
  })
})

describe('parseCidr', () => {
  it('refuses host bits in strict mode and accepts them otherwise', () => {
    expect(parseCidr('10.0.0.5/24')).toBeUndefined()
    expect(formatCidr(parseCidr('10.0.0.5/24', {strict: false})!)).toBe('10.0.0.0/24')
  })
  it.each(['10.0.0.0', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/08', '10.0.0.0/'])('refuses %j', (c) => {
    expect(parseCidr(c)).toBeUndefined()
  })
  it('excludes the network and broadcast addresses from the host range', () => {
    const r = hostRange(parseCidr('10.1.2.0/30')!)
    expect(r).toEqual({first: parseIPv4('10.1.2.1'), last: parseIPv4('10.1.2.2'), count: 2})
  })
  it('sees overlap in both directions and none between neighbours', () => {
    const big = parseCidr('10.0.0.0/16')!
    const small = parseCidr('10.0.5.0/24')!
    expect(cidrsOverlap(big, small)).toBe(true)
    expect(cidrsOverlap(small, big)).toBe(true)
    expect(cidrsOverlap(parseCidr('10.0.0.0/24')!, parseCidr('10.0.1.0/24')!)).toBe(false)
  })
})
