import {describe, expect, it} from 'vitest'
import type {RelayVisibility} from '../../shared/relay/control.js'
import {RelayVisibilityCache} from './visibility.js'

/** web and db see each other; ci sees nobody (its class sees no class, not even its own). */
const POLICY: RelayVisibility = {
  mode: 'policy',
  networkId: 'net1',
  tenantId: 't1',
  classes: [['web'], ['db'], ['ci']],
  sees: [[1], [0], []],
}

/** A cache whose fetches the test answers by hand, on a clock the test moves. */
function harness() {
  let now = 0
  const calls: {networkId: string; resolve: (v: unknown) => void; reject: (e: Error) => void}[] = []
  const cache = new RelayVisibilityCache({
    now: () => now,
    retryMs: 1000,
    maxAgeMs: 60_000,
    maxNetworks: 3,
    fetch: (networkId) => new Promise((resolve, reject) => calls.push({networkId, resolve, reject})),
  })
  const answer = async (v: unknown) => {
    calls.shift()!.resolve(v)
    // Not cache.idle(): a fetch this answer starts (told stale meanwhile) waits for the test.
    await new Promise((r) => setImmediate(r))
  }
  return {cache, calls, answer, tick: (ms: number) => (now += ms)}
}

describe('a stand-alone relay’s visibility cache', () => {
  it('lets packets through until it has an answer, then drops pairs that may not see each other', async () => {
    const {cache, calls, answer} = harness()
    expect(cache.allowed('net1', 'ci', 'db')).toBe(true)
    expect(calls.map((c) => c.networkId)).toEqual(['net1'])
    // One fetch in flight per network, however many packets.
    expect(cache.allowed('net1', 'ci', 'web')).toBe(true)
    expect(calls).toHaveLength(1)
    await answer(POLICY)
    expect(cache.allowed('net1', 'ci', 'db')).toBe(false)
    expect(cache.allowed('net1', 'db', 'ci')).toBe(false)
    expect(cache.allowed('net1', 'web', 'db')).toBe(true)
    expect(cache.allowed('net1', 'db', 'web')).toBe(true)
    expect(cache.fetches).toBe(1)
  })

  it('lets everything through for an open network and for an answer it cannot use', async () => {
    const {cache, answer} = harness()
    cache.allowed('net1', 'a', 'b')
    await answer({mode: 'open', networkId: 'net1', tenantId: 't1'})
    expect(cache.allowed('net1', 'a', 'b')).toBe(true)
    cache.allowed('net2', 'a', 'b')
    await answer({mode: 'unknown', networkId: 'net2', tenantId: null})
    expect(cache.allowed('net2', 'a', 'b')).toBe(true)
    // A node named twice: not used (let through), not half-used.
    cache.allowed('net3', 'web', 'ci')
    await answer({...POLICY, networkId: 'net3', classes: [['web'], ['db'], ['ci', 'web']]})
    expect(cache.allowed('net3', 'web', 'ci')).toBe(true)
  })

  it.each([
    ['a class index out of range', {...POLICY, sees: [[1], [0], [7]]}],
    ['one row of sees missing', {...POLICY, sees: [[1], [0]]}],
    ['another network’s answer', {...POLICY, networkId: 'net9'}],
    ['not an answer at all', {error: 'nope'}],
  ])('does not take %s, and keeps letting through', async (_name, body) => {
    const {cache, answer} = harness()
    cache.allowed('net1', 'ci', 'db')
    await answer(body)
    expect(cache.allowed('net1', 'ci', 'db')).toBe(true)
  })

  it('keeps its last answer when a fetch fails, and retries a missing one with backoff', async () => {
    const {cache, calls, answer, tick} = harness()
    cache.allowed('net1', 'ci', 'db')
    calls.shift()!.reject(new Error('controller down'))
    await cache.idle()
    expect(cache.allowed('net1', 'ci', 'db')).toBe(true)
    expect(calls).toHaveLength(0) // within retryMs × 2: no new fetch
    tick(2000)
    cache.allowed('net1', 'ci', 'db')
    expect(calls).toHaveLength(1)
    await answer(POLICY)
    expect(cache.allowed('net1', 'ci', 'db')).toBe(false)
    // A heartbeat says it changed, the fetch fails: the last answer stands.
    cache.stale({tenants: ['t1'], networks: [], all: false})
    calls.shift()!.reject(new Error('controller down'))
    await cache.idle()
    expect(cache.allowed('net1', 'ci', 'db')).toBe(false)
  })

  it('asks again for a node its answer does not name (newer than it), at most once per retryMs', async () => {
    const {cache, calls, answer, tick} = harness()
    cache.allowed('net1', 'web', 'db')
    await answer(POLICY)
    expect(cache.allowed('net1', 'new', 'db')).toBe(true)
    expect(calls).toHaveLength(0) // fetched just now
    tick(1000)
    expect(cache.allowed('net1', 'new', 'db')).toBe(true)
    expect(cache.allowed('net1', 'new', 'web')).toBe(true)
    expect(calls).toHaveLength(1)
    await answer({...POLICY, classes: [['web'], ['db'], ['ci', 'new']]})
    expect(cache.allowed('net1', 'new', 'db')).toBe(false)
  })

  it('fetches again the networks a heartbeat names (by tenant or network), once more if told during a fetch', async () => {
    const {cache, calls, answer} = harness()
    cache.allowed('net1', 'a', 'b')
    await answer(POLICY)
    cache.allowed('net2', 'a', 'b')
    await answer({mode: 'open', networkId: 'net2', tenantId: 't2'})
    cache.stale({tenants: ['t2'], networks: [], all: false})
    expect(calls.map((c) => c.networkId)).toEqual(['net2'])
    cache.stale({tenants: [], networks: ['net2'], all: false})
    expect(calls).toHaveLength(1)
    await answer({mode: 'open', networkId: 'net2', tenantId: 't2'})
    expect(calls.map((c) => c.networkId)).toEqual(['net2'])
    await answer({mode: 'open', networkId: 'net2', tenantId: 't2'})
    cache.stale({tenants: [], networks: [], all: true})
    expect(calls.map((c) => c.networkId).sort()).toEqual(['net1', 'net2'])
    // Meanwhile the old answers stand.
    expect(cache.allowed('net1', 'ci', 'db')).toBe(false)
    await answer({mode: 'open', networkId: 'net1', tenantId: 't1'})
    expect(cache.allowed('net1', 'ci', 'db')).toBe(true)
  })

  it('fetches an answer again once it is maxAgeMs old, without being told', async () => {
    const {cache, calls, answer, tick} = harness()
    cache.allowed('net1', 'a', 'b')
    await answer(POLICY)
    tick(59_999)
    cache.allowed('net1', 'ci', 'db')
    expect(calls).toHaveLength(0)
    tick(1)
    expect(cache.allowed('net1', 'ci', 'db')).toBe(false)
    expect(calls).toHaveLength(1)
  })

  it('holds at most maxNetworks networks, forgetting the oldest', async () => {
    const {cache, answer} = harness()
    for (const id of ['n1', 'n2', 'n3', 'n4']) {
      cache.allowed(id, 'a', 'b')
      await answer({mode: 'open', networkId: id, tenantId: 't'})
    }
    expect(cache.size).toBe(3)
  })
})
