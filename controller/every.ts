/**
 * A repeating timer on a Clock (shared/clock.ts has one-shot timers only): the netmap and event
 * hubs' ping rounds and the ephemeral reaper run on it, so tests drive them with a FakeClock.
 */
import type {Clock, TimerHandle} from '../shared/clock.js'

/**
 * Runs `fn` every `ms` (at least 1) on `clock` until the returned function is called. Like
 * setInterval: the next run is scheduled before `fn` runs, so a throw does not end the series,
 * and an `fn` that returns a promise is not awaited.
 */
export function every(clock: Clock, ms: number, fn: () => void): () => void {
  const period = Math.max(1, ms)
  let stopped = false
  let handle: TimerHandle
  const tick = (): void => {
    if (stopped) return
    handle = clock.setTimeout(tick, period)
    fn()
  }
  handle = clock.setTimeout(tick, period)
  return () => {
    stopped = true
    clock.clearTimeout(handle)
  }
}
