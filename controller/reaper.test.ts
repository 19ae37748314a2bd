// The ephemeral reaper: removes ephemeral nodes whose last-seen time is older than the timeout
// and that presence says are online nowhere; removes nothing when another replica holds the
// singleton lock; and takes a node removed meanwhile (NOT_FOUND) in its stride.
import {describe, expect, it} from 'vitest'
import {MeshError} from '../shared/errors.js'
import {FakeClock} from '../shared/testing/fake-clock.js'
import {InProcessLock, type SingletonLock} from './leader.js'
import {EphemeralReaper, REAPER_LOCK} from './reaper.js'
import type {StoredNode} from './store/store.js'
import {storedNode} from './testing/nodes.js'

const NOW = Date.parse('2030-01-01T00:10:00Z')
const TIMEOUT = 120_000
const ago = (ms: number) => new Date(NOW - ms).toISOString()

function setup(nodes: StoredNode[], opts: {online?: string[]; lock?: SingletonLock; gone?: string[]} = {}) {
  const removed: string[] = []
  const asked: string[][] = []
  const reaper = new EphemeralReaper({
    store: {ephemeralNodes: async () => nodes},
    presence: {
      onlineAmong: async (ids) => {
        asked.push([...ids])
        return new Set(ids.filter((id) => opts.online?.includes(id)))
      },
    },
    lock: opts.lock ?? new InProcessLock(),
    clock: new FakeClock(NOW),
    remove: async (id) => {
      if (opts.gone?.includes(id)) throw new MeshError('NOT_FOUND')
      removed.push(id)
    },
  })
  return {reaper, removed, asked}
}

describe('EphemeralReaper', () => {
  it('removes ephemeral nodes offline everywhere for longer than the timeout, and only those', async () => {
    const {reaper, removed, asked} = setup(
      [
        storedNode({id: 'stale', ephemeral: true, lastSeen: ago(TIMEOUT + 1)}),
        storedNode({id: 'exactly', ephemeral: true, lastSeen: ago(TIMEOUT)}),
        storedNode({id: 'recent', ephemeral: true, lastSeen: ago(TIMEOUT - 1)}),
        storedNode({id: 'never-seen-old', ephemeral: true, lastSeen: null, createdAt: ago(10 * TIMEOUT)}),
        storedNode({id: 'online-elsewhere', ephemeral: true, lastSeen: ago(10 * TIMEOUT)}),
      ],
      {online: ['online-elsewhere']},
    )
    expect(await reaper.sweep(TIMEOUT)).toBe(3)
    expect(removed).toEqual(['stale', 'exactly', 'never-seen-old'])
    // Presence is asked only about nodes the last-seen time does not already keep.
    expect(asked.flat()).not.toContain('recent')
  })

  it('removes nothing when another replica holds the reaper lock', async () => {
    const names: string[] = []
    const elsewhere: SingletonLock = {
      tryRun: async (name) => {
        names.push(name)
        return {ran: false}
      },
    }
    const {reaper, removed} = setup(
      [storedNode({id: 'stale', ephemeral: true, lastSeen: ago(TIMEOUT * 2)})],
      {
        lock: elsewhere,
      },
    )
    expect(await reaper.sweep(TIMEOUT)).toBe(0)
    expect([removed, names]).toEqual([[], [REAPER_LOCK]])
  })

  it('counts a node removed meanwhile by someone else as nothing to do', async () => {
    const {reaper, removed} = setup(
      [
        storedNode({id: 'gone', ephemeral: true, lastSeen: ago(TIMEOUT * 2)}),
        storedNode({id: 'stale', ephemeral: true, lastSeen: ago(TIMEOUT * 2)}),
      ],
      {gone: ['gone']},
    )
    expect(await reaper.sweep(TIMEOUT)).toBe(1)
    expect(removed).toEqual(['stale'])
  })
})

describe('InProcessLock', () => {
  it('always runs the job and hands back its value', async () => {
    expect(await new InProcessLock().tryRun('any', async () => 42)).toEqual({ran: true, value: 42})
  })
})
