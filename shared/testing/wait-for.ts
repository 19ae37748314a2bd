/**
 * Bounded polling for test state that announces itself with no event (a hub's or relay's
 * internal state, a metric): `check` until it returns a value other than undefined/false, or
 * throw after `timeoutMs` naming `what` and the last error. Where an event exists, wait on it.
 */
import {setTimeout as sleep} from 'node:timers/promises'

export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v as T
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}
