/**
 * A Clock for tests: time stands still until the test moves it. advance(ms) runs every timer that
 * falls due on the way, in due order (ties in the order they were set), each with now() equal to
 * its due time; advanceAsync(ms) does the same but lets promise continuations run after each timer,
 * so async code can set its next timer before time moves past it. Test-only.
 */

import type {Clock, TimerHandle} from '../clock.js'

interface Timer {
  readonly id: number
  readonly due: number
  readonly fn: () => void
}

/** Guards against a timer that re-arms itself at zero delay forever. */
const MAX_TIMERS_PER_ADVANCE = 100_000

export class FakeClock implements Clock {
  private time: number
  private nextId = 1
  // Kept sorted by (due, id): the next timer to run is always first.
  private timers: Timer[] = []

  /** Starts at `start` ms since the epoch (default: 2026-01-01T00:00:00Z). */
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.time = start
  }

  now(): number {
    return this.time
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: Timer = {id: this.nextId++, due: this.time + Math.max(0, ms), fn}
    let i = this.timers.length
    while (i > 0 && this.timers[i - 1]!.due > timer.due) i--
    this.timers.splice(i, 0, timer)
    return {id: timer.id} as unknown as TimerHandle
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as unknown as {id: number}).id
    this.timers = this.timers.filter((t) => t.id !== id)
  }

  /** Number of timers not yet run. */
  pending(): number {
    return this.timers.length
  }

  /** Moves time forward by `ms`, running due timers synchronously, in order. */
  advance(ms: number): void {
    const target = this.time + Math.max(0, ms)
    for (let n = 0; ; n++) {
      if (n >= MAX_TIMERS_PER_ADVANCE) throw new Error('FakeClock: timers keep re-arming; runaway loop?')
      const next = this.timers[0]
      if (next === undefined || next.due > target) break
      this.timers.shift()
      this.time = next.due
      next.fn()
    }
    this.time = target
  }

  /**
   * Like advance(ms), but yields to pending promise continuations (a macrotask turn, not a sleep)
   * before the first timer and after each one.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.time + Math.max(0, ms)
    await yieldToPromises()
    for (let n = 0; ; n++) {
      if (n >= MAX_TIMERS_PER_ADVANCE) throw new Error('FakeClock: timers keep re-arming; runaway loop?')
      const next = this.timers[0]
      if (next === undefined || next.due > target) break
      this.timers.shift()
      this.time = next.due
      next.fn()
      await yieldToPromises()
    }
    this.time = target
  }
}

/** Lets every queued promise continuation run (setImmediate fires after the microtask queue drains). */
export function yieldToPromises(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
