import {describe, expect, it} from 'vitest'
import {FakeClock} from '../testing/fake-clock.js'
import {SourceRateLimiter} from './source-rate-limit.js'

describe('SourceRateLimiter', () => {
  it('lets a burst through, then refuses until tokens refill at the sustained rate', () => {
    const clock = new FakeClock()
    const rl = new SourceRateLimiter({perSecond: 10, burst: 3, maxSources: 10, clock})
    expect([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a')]).toEqual([true, true, true, false])
    clock.advance(99)
    expect(rl.take('a')).toBe(false)
    clock.advance(1)
    expect(rl.take('a')).toBe(true)
    expect(rl.take('a')).toBe(false)
  })

  it('keeps one source from using up another source’s bucket', () => {
    const rl = new SourceRateLimiter({perSecond: 1, burst: 2, maxSources: 10, clock: new FakeClock()})
    for (let i = 0; i < 50; i++) rl.take('flooder')
    expect(rl.take('quiet')).toBe(true)
  })

  it('tracks at most maxSources, evicting the least recently seen', () => {
    const rl = new SourceRateLimiter({perSecond: 1, burst: 1, maxSources: 100, clock: new FakeClock()})
    expect(rl.take('keep')).toBe(true)
    for (let i = 0; i < 1000; i++) {
      rl.take(`spoof-${i}`)
      if (i % 10 === 0) rl.take('keep') // seen recently: never the eviction victim
    }
    expect(rl.stats().sources).toBe(100)
    expect(rl.stats().evictions).toBe(901)
    // 'keep' was never evicted, so its bucket is still empty.
    expect(rl.take('keep')).toBe(false)
  })
})
