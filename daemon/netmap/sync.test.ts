import {describe, expect, it} from 'vitest'
import {backoffDelay, netmapUrl, withoutSelf} from './sync.js'

describe('netmapUrl', () => {
  it('turns the controller URL into the netmap WebSocket URL with the resume version, asking for gzip', () => {
    expect(netmapUrl('http://127.0.0.1:8080', 7)).toBe(
      'ws://127.0.0.1:8080/api/v1/netmap?version=7&encoding=gzip',
    )
    expect(netmapUrl('https://ctl.example.net/', undefined)).toBe(
      'wss://ctl.example.net/api/v1/netmap?encoding=gzip',
    )
  })
})

describe('withoutSelf', () => {
  it("drops the node's own entry from a compressed full map's peers and leaves anything else alone", () => {
    const full = {type: 'full', self: {id: 'me'}, peers: [{id: 'a'}, {id: 'me'}, {id: 'b'}, null, 7]}
    expect(withoutSelf(full)).toEqual({
      type: 'full',
      self: {id: 'me'},
      peers: [{id: 'a'}, {id: 'b'}, null, 7],
    })
    const delta = {type: 'delta', self: {id: 'me'}, changed: [{id: 'me'}]}
    expect(withoutSelf(delta)).toBe(delta)
    for (const odd of [null, 'x', {type: 'full', peers: 'no'}, {type: 'full', self: {id: 1}, peers: []}])
      expect(withoutSelf(odd)).toBe(odd)
  })
})

describe('backoffDelay', () => {
  it('grows exponentially with jitter and never exceeds the cap', () => {
    expect(backoffDelay(0, 250, 10_000, () => 0)).toBe(125)
    expect(backoffDelay(0, 250, 10_000, () => 1)).toBe(250)
    expect(backoffDelay(3, 250, 10_000, () => 1)).toBe(2000)
    for (let a = 0; a < 100; a++) expect(backoffDelay(a, 250, 10_000)).toBeLessThanOrEqual(10_000)
    expect(backoffDelay(60, 250, 10_000, () => 0)).toBe(5000)
  })
})
