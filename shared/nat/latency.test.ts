import {describe, expect, it} from 'vitest'
import {latencyChanged} from './latency.js'

describe('latencyChanged', () => {
  it.each([
    ['jitter_of_a_few_ms_on_a_lan', 1, 4, false],
    ['ten_percent_on_a_long_path', 200, 220, false],
    ['more_than_20_percent_but_under_5_ms', 10, 14.9, false],
    ['more_than_5_ms_but_under_20_percent', 100, 115, false],
    ['both_thresholds_passed_upwards', 20, 30, true],
    ['both_thresholds_passed_downwards', 100, 60, true],
    ['first_measurement', undefined, 12, true],
    ['measurement_lost', 12, null, true],
    ['still_unknown', null, undefined, false],
  ] as const)('%s', (_name, prev, next, changed) => {
    expect(latencyChanged(prev, next)).toBe(changed)
  })

  it('lets a slow drift through once it adds up against the value last passed on', () => {
    let sent = 20
    let passed = 0
    for (let ms = 20; ms <= 40; ms += 1) {
      if (latencyChanged(sent, ms)) {
        sent = ms
        passed++
      }
    }
    // 20 -> 26 (more than 5 ms and 20 %), 26 -> 32, 32 -> 39
    expect(passed).toBe(3)
    expect(sent).toBe(39)
  })
})
