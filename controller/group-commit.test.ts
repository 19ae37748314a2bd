import {describe, expect, it} from 'vitest'
import {GroupCommit} from './group-commit.js'

/** A write that records its batches and finishes when the test says so. */
function gatedWrite() {
  const batches: [string, number][][] = []
  const gates: {open: () => void; fail: (err: Error) => void}[] = []
  const write = (items: ReadonlyMap<string, number>) => {
    batches.push([...items])
    return new Promise<void>((resolve, reject) => gates.push({open: resolve, fail: reject}))
  }
  return {batches, gates, write}
}

const flush = () => new Promise((r) => setImmediate(r))

describe('GroupCommit', () => {
  it('writes a lone item at once, and groups what comes meanwhile into the next write, the last value per key', async () => {
    const {batches, gates, write} = gatedWrite()
    const gc = new GroupCommit(write)
    const first = gc.add('a', 1)
    expect(batches).toEqual([[['a', 1]]])
    const later = [gc.add('b', 1), gc.add('c', 1), gc.add('b', 2)]
    expect(batches).toHaveLength(1)
    gates[0]!.open()
    await first
    await flush()
    expect(batches[1]).toEqual([
      ['c', 1],
      ['b', 2],
    ])
    gates[1]!.open()
    await Promise.all(later)
    expect(batches).toHaveLength(2)
  })

  it('rejects the waiters of a failed write and goes on with the next', async () => {
    const {batches, gates, write} = gatedWrite()
    const gc = new GroupCommit(write)
    const failed = gc.add('a', 1)
    const next = gc.add('b', 1)
    gates[0]!.fail(new Error('disk full'))
    await expect(failed).rejects.toThrow('disk full')
    await flush()
    expect(batches[1]).toEqual([['b', 1]])
    gates[1]!.open()
    await expect(next).resolves.toBeUndefined()
  })

  it('splits a burst into writes of at most maxBatch items and answers everyone once all is written', async () => {
    const {batches, gates, write} = gatedWrite()
    const gc = new GroupCommit(write, 2)
    const blocker = gc.add('k0', 0)
    const burst = Array.from({length: 5}, (_, i) => gc.add(`k${i + 1}`, i + 1))
    gates[0]!.open()
    await blocker
    let answered = 0
    for (const p of burst) void p.then(() => answered++)
    for (let i = 1; i <= 3; i++) {
      await flush()
      expect(batches[i]!.length).toBeLessThanOrEqual(2)
      if (i < 3) expect(answered).toBe(0)
      gates[i]!.open()
    }
    await Promise.all(burst)
    expect(
      batches
        .slice(1)
        .flat()
        .map(([k]) => k),
    ).toEqual(['k1', 'k2', 'k3', 'k4', 'k5'])
  })
})
