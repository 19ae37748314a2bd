import {describe, expect, it} from 'vitest'
import {wsUrl} from './ws-url.js'

describe('wsUrl', () => {
  it('maps http to ws and https to wss, on the path given', () => {
    expect(wsUrl('http://198.51.100.1:8080', '/api/v1/netmap').toString()).toBe(
      'ws://198.51.100.1:8080/api/v1/netmap',
    )
    expect(wsUrl('https://mesh.example/', '/api/v1/relay').toString()).toBe('wss://mesh.example/api/v1/relay')
  })

  it('refuses a controller URL that is not http(s)', () => {
    expect(() => wsUrl('ftp://mesh.example', '/api/v1/netmap')).toThrow(/must be http\(s\)/)
  })
})
