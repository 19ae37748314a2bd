import {describe, expect, it} from 'vitest'
import type {PingAttempt} from '../../../shared/protocol/local-api.js'
import {pingLine} from './ping.js'

const a = (over: Partial<PingAttempt>): PingAttempt => ({
  seq: 1,
  peer: 'beta',
  address: '10.20.0.3',
  rttMs: 1.234,
  path: 'direct',
  endpoint: '198.51.100.5:51820',
  ...over,
})

describe('pingLine', () => {
  it('names the direct endpoint a reply came by', () => {
    expect(pingLine(a({}), 2000)).toBe('pong from beta (10.20.0.3) via 198.51.100.5:51820 in 1.23 ms')
  })
  it('says "via relay" for a relayed peer, not its local relay socket', () => {
    expect(pingLine(a({path: 'relay', endpoint: '127.0.0.1:40001', rttMs: 23.4}), 2000)).toBe(
      'pong from beta (10.20.0.3) via relay in 23.4 ms',
    )
  })
  it('falls back to the path state when there is no endpoint, and reports a timeout', () => {
    expect(pingLine(a({path: 'idle', endpoint: null}), 2000)).toContain('via idle in')
    expect(pingLine(a({path: 'probing'}), 2000)).toContain('via 198.51.100.5:51820 (probing) in')
    expect(pingLine(a({rttMs: null}), 2000)).toBe('no reply from beta (10.20.0.3) within 2000 ms')
  })
})
