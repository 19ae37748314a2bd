import {describe, expect, it} from 'vitest'
import {NAME_RE} from '../shared/protocol/control-api.js'
import {defaultNodeName} from './backend.js'

describe('defaultNodeName', () => {
  it('makes a valid node name from any hostname', () => {
    expect(defaultNodeName('Laptop.example.net')).toBe('laptop')
    expect(defaultNodeName('my_box--01')).toBe('my-box--01')
    expect(defaultNodeName('-weird-')).toBe('weird')
    expect(defaultNodeName('___')).toBe('node')
    const long = defaultNodeName('a'.repeat(80))
    expect(long.length).toBe(63)
    for (const h of ['x', 'ÄÖÜ', 'a-'.repeat(40), '1.2.3.4'])
      expect(NAME_RE.test(defaultNodeName(h))).toBe(true)
  })
})
