import {describe, expect, it} from 'vitest'
import {FakeClock, yieldToPromises} from '../../shared/testing/fake-clock.js'
import {chooseHome, HomeRelay} from './home.js'

const lat = (o: Record<string, number | undefined>) => new Map(Object.entries(o))

describe('chooseHome', () => {
  it('picks the fastest relay that answered when none is home yet', () => {
    expect(chooseHome(undefined, lat({a: 30, b: 12, c: undefined}))).toBe('b')
  })

  it('keeps the home unless another is under 2/3 of its latency and 5 ms faster', () => {
    expect(chooseHome('a', lat({a: 30, b: 25}))).toBe('a')
    expect(chooseHome('a', lat({a: 30, b: 19}))).toBe('b')
    // Under 2/3 but not 5 ms faster: loopback-scale differences never move a node.
    expect(chooseHome('a', lat({a: 0.9, b: 0.3}))).toBe('a')
  })

  it("takes the controller's own relay only when no stand-alone relay answered", () => {
    const fallback = new Set(['ctl'])
    expect(chooseHome(undefined, lat({ctl: 1, eu: 30}), {fallback})).toBe('eu')
    expect(chooseHome('ctl', lat({ctl: 1, eu: 30}), {fallback})).toBe('eu')
    expect(chooseHome('eu', lat({ctl: 1, eu: undefined, us: 90}), {fallback})).toBe('us')
    expect(chooseHome('eu', lat({ctl: 1, eu: undefined}), {fallback})).toBe('ctl')
  })

  it('leaves a home that did not answer; keeps it when no relay answered', () => {
    expect(chooseHome('a', lat({a: undefined, b: 80}))).toBe('b')
    expect(chooseHome('a', lat({a: undefined, b: undefined}))).toBeUndefined()
  })
})

describe('HomeRelay', () => {
  it('starts on the first relay, moves to the fastest once measured, and re-measures on its interval', async () => {
    const clock = new FakeClock()
    const ms: Record<string, number | undefined> = {'http://ctl': 1, 'http://eu': 10}
    const moves: string[] = []
    const home = new HomeRelay({
      clock,
      probe: async (base) => ms[base],
      intervalMs: 60_000,
      onChange: (base) => moves.push(base),
    })
    home.setRelays([{region: 'default'}, {url: 'http://eu', region: 'eu'}], 'http://ctl')
    expect(home.current).toBe('http://ctl')
    await home.measure()
    expect(home.current).toBe('http://eu')
    // Slightly worse now, not clearly: it stays.
    ms['http://eu'] = 35
    await clock.advanceAsync(60_000)
    await yieldToPromises()
    expect(home.current).toBe('http://eu')
    expect(home.latencies.get('http://eu')).toBe(35)
    expect(moves).toEqual(['http://ctl', 'http://eu'])
    home.close()
    expect(clock.pending()).toBe(0)
  })

  it('leaves a home that stops answering soon after measureSoon()', async () => {
    const clock = new FakeClock()
    const ms: Record<string, number | undefined> = {'http://a': 5, 'http://b': 50}
    const home = new HomeRelay({clock, probe: async (base) => ms[base], minGapMs: 1_000})
    home.setRelays(
      [
        {url: 'http://a', region: 'a'},
        {url: 'http://b', region: 'b'},
      ],
      'http://ctl',
    )
    await home.measure()
    expect(home.current).toBe('http://a')
    ms['http://a'] = undefined
    home.measureSoon()
    await clock.advanceAsync(1_000)
    await yieldToPromises()
    expect(home.current).toBe('http://b')
    home.close()
  })

  it('measures a list that changed while a measurement ran, once that one is over', async () => {
    const clock = new FakeClock()
    let release: () => void = () => undefined
    const slow = new Promise<void>((resolve) => (release = resolve))
    const probed: string[] = []
    const home = new HomeRelay({
      clock,
      probe: async (base) => {
        probed.push(base)
        if (base === 'http://east') await slow
        return base === 'http://west' ? 3 : base === 'http://ctl' ? 1 : undefined
      },
    })
    home.setRelays([{region: 'default'}, {url: 'http://east', region: 'east'}], 'http://ctl')
    home.setRelays(
      [{region: 'default'}, {url: 'http://east', region: 'east'}, {url: 'http://west', region: 'west'}],
      'http://ctl',
    )
    release()
    for (let i = 0; i < 10 && home.current !== 'http://west'; i++) await yieldToPromises()
    expect(home.current).toBe('http://west')
    expect(probed.filter((p) => p === 'http://west')).toHaveLength(1)
    home.close()
  })

  it('falls back to the first relay when its home leaves the list', async () => {
    const clock = new FakeClock()
    const home = new HomeRelay({clock, probe: async () => undefined})
    home.setRelays([{region: 'default'}, {url: 'http://eu', region: 'eu'}], 'http://ctl')
    await home.measure()
    home.setRelays([{url: 'http://eu', region: 'eu'}], 'http://ctl')
    expect(home.current).toBe('http://eu')
    home.setRelays([{region: 'default'}], 'http://ctl')
    expect(home.current).toBe('http://ctl')
    home.close()
  })
})
