import {describe, expect, it} from 'vitest'
import {backoffDelay, netmapUrl} from './sync.js'

describe('netmapUrl', () => {
  it('turns the controller URL into the netmap WebSocket URL with the resume version', () => {
    expect(netmapUrl('http://127.0.0.1:8080', 7)).toBe('ws://127.0.0.1:8080/api/v1/netmap?version=7')
    expect(netmapUrl('https://ctl.example.net/', undefined)).toBe('wss://ctl.example.net/api/v1/netmap')
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
