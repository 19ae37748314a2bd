import {describe, expect, it} from 'vitest'
import {delay} from '../clock.js'
import {FakeClock} from './fake-clock.js'

describe('FakeClock', () => {
  it('runs due timers in due order, ties in the order they were set, each at its own time', () => {
    const clock = new FakeClock(1000)
    const seen: string[] = []
    clock.setTimeout(() => seen.push(`b@${clock.now()}`), 20)
    clock.setTimeout(() => seen.push(`a@${clock.now()}`), 10)
    clock.setTimeout(() => seen.push(`c@${clock.now()}`), 20)
    clock.setTimeout(() => seen.push('late'), 31)
    clock.advance(30)
    expect(seen).toEqual(['a@1010', 'b@1020', 'c@1020'])
    expect(clock.now()).toBe(1030)
    expect(clock.pending()).toBe(1)
  })

  it('runs timers that timers set when they fall due within the same advance', () => {
    const clock = new FakeClock(0)
    const seen: number[] = []
    clock.setTimeout(() => {
      seen.push(clock.now())
      clock.setTimeout(() => seen.push(clock.now()), 5)
    }, 5)
    clock.advance(10)
    expect(seen).toEqual([5, 10])
  })

  it('never runs a cleared timer', () => {
    const clock = new FakeClock(0)
    let ran = false
    const t = clock.setTimeout(() => (ran = true), 1)
    clock.clearTimeout(t)
    clock.advance(5)
    expect(ran).toBe(false)
    expect(clock.pending()).toBe(0)
  })

  it('stops a timer that re-arms itself at zero delay instead of hanging', () => {
    const clock = new FakeClock(0)
    const again = (): void => void clock.setTimeout(again, 0)
    clock.setTimeout(again, 0)
    expect(() => clock.advance(1)).toThrow(/runaway/)
  })

  it('advanceAsync lets async code set its next timer before time moves past it', async () => {
    const clock = new FakeClock(0)
    const seen: number[] = []
    const run = async () => {
      for (let i = 0; i < 3; i++) {
        await delay(clock, 100)
        seen.push(clock.now())
      }
    }
    const done = run()
    await clock.advanceAsync(1000)
    await done
    expect(seen).toEqual([100, 200, 300])
  })
})
