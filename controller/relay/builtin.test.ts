// Which relays a controller's built-in relay dials: every stand-alone relay, and of two built-in
// relays the one whose URL sorts first dials the other (so each pair holds one link).
import {describe, expect, it} from 'vitest'
import type {RelayRecord} from '../store/store.js'
import {meshDialTargets} from './builtin.js'

const relay = (url: string, kind: RelayRecord['kind']): RelayRecord => ({
  url,
  kind,
  region: 'default',
  keyId: kind === 'builtin' ? null : 'rk_1',
  connected: 0,
  firstSeen: '2026-01-01T00:00:00.000Z',
  lastSeen: '2026-01-01T00:00:00.000Z',
  expiresAt: '2026-01-01T00:00:15.000Z',
})

const all = [
  relay('http://ctl-a:8080', 'builtin'),
  relay('http://ctl-b:8080', 'builtin'),
  relay('http://ctl-c:8080', 'builtin'),
  relay('https://relay-eu', 'standalone'),
]

describe('meshDialTargets', () => {
  it.each([
    ['first_replica_dials_the_later_ones', 'http://ctl-a:8080', ['http://ctl-b:8080', 'http://ctl-c:8080']],
    ['middle_replica_dials_only_the_later_one', 'http://ctl-b:8080', ['http://ctl-c:8080']],
    ['last_replica_dials_no_replica', 'http://ctl-c:8080', []],
    [
      'a_controller_without_relay_url_dials_every_replica',
      undefined,
      ['http://ctl-a:8080', 'http://ctl-b:8080', 'http://ctl-c:8080'],
    ],
  ])('%s, and every stand-alone relay', (_name, own, replicas) => {
    expect(meshDialTargets(all, own).map((t) => t.url)).toEqual([...replicas, 'https://relay-eu'])
  })

  it('never dials itself', () => {
    expect(meshDialTargets([relay('http://ctl-a:8080', 'builtin')], 'http://ctl-a:8080')).toEqual([])
  })
})
