import {describe, expect, it} from 'vitest'
import {eventFor, mergePair, sideOf, writeFor, type PeerView} from './connections.js'
import type {StoredConnection} from './store/store.js'

const direct = (latencyMs?: number, endpoint = '198.51.100.7:51820'): PeerView => ({
  online: true,
  endpoint,
  path: 'direct',
  ...(latencyMs === undefined ? {} : {latencyMs}),
})
const relay = (latencyMs?: number): PeerView => ({
  online: true,
  endpoint: '127.0.0.1:40001',
  path: 'relay',
  ...(latencyMs === undefined ? {} : {latencyMs}),
})
const offline: PeerView = {online: false, endpoint: null, path: 'none'}

const stored = (over: Partial<StoredConnection> = {}): StoredConnection => ({
  nodeA: 'nd_a',
  nodeB: 'nd_b',
  path: 'direct',
  latencyMs: 20,
  endpointA: '198.51.100.7:51820',
  endpointB: '198.51.100.7:51820',
  since: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  ...over,
})

describe('the merge rule', () => {
  it.each([
    ['both_direct', direct(10), direct(12), 'direct', 10],
    ['one_side_switched_first_during_an_upgrade', direct(9), relay(30), 'direct', 9],
    ['both_relayed', relay(30), relay(28), 'relay', 28],
    ['relayed_and_the_other_side_lost_its_handshake', relay(30), offline, 'relay', 30],
    ['neither_has_a_handshake', offline, offline, 'none', null],
    ['only_one_side_reports', undefined, direct(7), 'direct', 7],
    ['direct_without_a_handshake_does_not_count', {...direct(5), online: false}, relay(40), 'relay', 40],
    ['latency_only_from_the_side_on_the_merged_path', direct(), relay(30), 'direct', null],
  ] as const)('%s', (_name, a, b, path, latencyMs) => {
    expect(mergePair(a, b)).toMatchObject({path, latencyMs})
  })

  it('keeps the stored state when neither side reports', () => {
    expect(mergePair(undefined, undefined)).toBeUndefined()
  })

  it('takes a report without a path (meshd older than the relay) as direct when online', () => {
    expect(sideOf({online: true, endpoint: '198.51.100.9:51820'})).toEqual({
      path: 'direct',
      latencyMs: null,
      endpoint: '198.51.100.9:51820',
    })
    expect(sideOf({online: false, endpoint: '198.51.100.9:51820'}).path).toBe('none')
  })

  it("keeps a side's endpoint only while that side is direct", () => {
    expect(mergePair(direct(5), relay(30))).toMatchObject({endpointA: '198.51.100.7:51820', endpointB: null})
  })
})

describe('what gets written', () => {
  it.each([
    ['none', 'direct', 'connected'],
    ['none', 'relay', 'connected'],
    ['relay', 'direct', 'upgraded_to_direct'],
    ['direct', 'relay', 'fell_back_to_relay'],
    ['direct', 'none', 'disconnected'],
    ['relay', 'none', 'disconnected'],
    ['direct', 'direct', undefined],
  ] as const)('%s -> %s is %s', (from, to, event) => {
    expect(eventFor(from, to)).toBe(event)
  })

  it('writes nothing when the path stays and the latency only jitters', () => {
    const merged = mergePair(direct(23), direct(24))!
    expect(writeFor('nd_a', 'nd_b', stored(), merged)).toBeUndefined()
  })

  it('writes the latency, without an event, when it moves by more than 20 % and 5 ms', () => {
    const w = writeFor('nd_a', 'nd_b', stored(), mergePair(direct(40), direct(41))!)
    expect(w).toMatchObject({path: 'direct', latencyMs: 40})
    expect(w?.event).toBeUndefined()
  })

  it('writes a moved direct endpoint without an event', () => {
    const w = writeFor('nd_a', 'nd_b', stored(), mergePair(direct(20, '203.0.113.5:4000'), direct(20))!)
    expect(w).toMatchObject({endpointA: '203.0.113.5:4000'})
    expect(w?.event).toBeUndefined()
  })

  it('logs a fall-back to the relay with the latency of the relay', () => {
    expect(writeFor('nd_a', 'nd_b', stored(), mergePair(relay(35), relay(33))!)).toMatchObject({
      path: 'relay',
      latencyMs: 33,
      event: {event: 'fell_back_to_relay', from: 'direct'},
    })
  })

  it('writes nothing for a pair that has no row and still no path', () => {
    expect(writeFor('nd_a', 'nd_b', null, mergePair(offline, offline)!)).toBeUndefined()
  })
})
