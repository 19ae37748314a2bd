/**
 * When a latency change matters: the one rule meshd's report (daemon/netmap/peer-report.ts) and
 * the controller's connection store (controller/connections.ts) share, so round-trip jitter turns
 * neither every report into a change nor every change into a database write.
 */

/** A change matters when it is more than `ratio` of the old value AND more than `minMs`. */
export const LATENCY_CHANGE = {ratio: 0.2, minMs: 5} as const

/**
 * True when `next` differs from `prev` (the value last sent or stored) by more than 20 % and more
 * than 5 ms, or when one of them is unknown (null/undefined) and the other is not. Compare with
 * the last value passed on, not the last one measured: a slow drift then still gets through once
 * it adds up.
 */
export function latencyChanged(prev: number | null | undefined, next: number | null | undefined): boolean {
  const p = prev ?? null
  const n = next ?? null
  if (p === null || n === null) return p !== n
  const diff = Math.abs(n - p)
  return diff > LATENCY_CHANGE.minMs && diff > LATENCY_CHANGE.ratio * p
}
