// every(): a repeating timer on a Clock, driven here by a FakeClock.
import {describe, expect, it} from 'vitest'
import {FakeClock} from './testing/fake-clock.js'
import {every} from './clock.js'

describe('every', () => {
  it('runs once per period, first after one period, until stopped', () => {
    const clock = new FakeClock()
    const start = clock.now()
    const runs: number[] = []
    const stop = every(clock, 1_000, () => runs.push(clock.now() - start))
    clock.advance(999)
    expect(runs).toEqual([])
    clock.advance(2_001)
    expect(runs).toEqual([1_000, 2_000, 3_000])
    stop()
    clock.advance(10_000)
    expect(runs).toHaveLength(3)
    expect(clock.pending()).toBe(0)
  })

  it('keeps its period after a run that throws', () => {
    const clock = new FakeClock()
    let runs = 0
    every(clock, 100, () => {
      runs++
      throw new Error('boom')
    })
    expect(() => clock.advance(100)).toThrow('boom')
    expect(() => clock.advance(100)).toThrow('boom')
    expect([runs, clock.pending()]).toEqual([2, 1])
  })

  it('treats a period under 1 ms as 1 ms instead of spinning', () => {
    const clock = new FakeClock()
    let runs = 0
    every(clock, 0, () => runs++)
    clock.advance(5)
    expect(runs).toBe(5)
  })

  it('stops from inside its own run', () => {
    const clock = new FakeClock()
    let runs = 0
    const stop = every(clock, 10, () => {
      if (++runs === 2) stop()
    })
    clock.advance(100)
    expect([runs, clock.pending()]).toEqual([2, 0])
  })
})
