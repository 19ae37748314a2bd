/**
 * The one source of time and timers for state machines (a Clock is passed in, never reached for
 * through Date.now or the global setTimeout), so their tests run on a FakeClock without sleeping.
 * shared/testing/fake-clock.ts is the test double.
 */

declare const timerBrand: unique symbol
/** Opaque handle of a scheduled timer; only the Clock that made it can clear it. */
export type TimerHandle = {readonly [timerBrand]: true}

export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock, like Date.now()). */
  now(): number
  /** Runs `fn` once, after `ms` milliseconds (0 when negative). */
  setTimeout(fn: () => void, ms: number): TimerHandle
  /** Cancels a timer; a no-op when it already ran or was cleared. */
  clearTimeout(handle: TimerHandle): void
}

/** The real clock: Date.now and the global timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  // Unref'd: a pending timer of a state machine never keeps the process alive by itself.
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, ms)).unref() as unknown as TimerHandle,
  clearTimeout: (handle) => clearTimeout(handle as unknown as ReturnType<typeof setTimeout>),
}

/** Resolves after `ms` on `clock` (with a FakeClock: when the test advances past it). */
export function delay(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms))
}

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
