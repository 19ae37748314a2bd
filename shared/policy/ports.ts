/**
 * Port lists of the policy language (`*`, `N`, `N-M`, comma lists) and the range arithmetic the
 * evaluator and the compiler share. Ranges are inclusive [lo, hi] within 1..65535.
 */
import type {PortRange} from './types.js'

export const ALL_PORTS: readonly PortRange[] = [[1, 65535]]

/** At most this many comma-separated items in one port list. */
export const MAX_PORT_ITEMS = 64

const NUMBER = /^[0-9]{1,5}$/

/** Parses a port list; on failure, a one-line message saying what is wrong. */
export function parsePorts(text: string): {ok: true; ports: PortRange[]} | {ok: false; message: string} {
  if (text === '*') return {ok: true, ports: [[1, 65535]]}
  if (text === '') return {ok: false, message: 'missing ports after ":" (use * for every port)'}
  const items = text.split(',')
  if (items.length > MAX_PORT_ITEMS) return {ok: false, message: `more than ${MAX_PORT_ITEMS} port items`}
  const out: PortRange[] = []
  for (const item of items) {
    const dash = item.indexOf('-')
    const loText = dash < 0 ? item : item.slice(0, dash)
    const hiText = dash < 0 ? item : item.slice(dash + 1)
    if (item === '*') return {ok: false, message: '* cannot be part of a port list'}
    if (!NUMBER.test(loText) || !NUMBER.test(hiText)) {
      return {ok: false, message: `bad port "${item}": use N, N-M or * (ports 1-65535)`}
    }
    const lo = Number(loText)
    const hi = Number(hiText)
    for (const p of [lo, hi]) {
      if (p < 1 || p > 65535) return {ok: false, message: `port ${p} is out of range 1-65535`}
    }
    if (lo > hi) return {ok: false, message: `port range ${item} goes from high to low`}
    out.push([lo, hi])
  }
  return {ok: true, ports: mergeRanges(out)}
}

/** Sorts ranges and joins those that overlap or touch: the minimal equivalent list. */
export function mergeRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: [number, number][] = []
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1]
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi)
    else out.push([lo, hi])
  }
  return out
}

export const portInRanges = (port: number, ranges: readonly PortRange[]): boolean =>
  ranges.some(([lo, hi]) => port >= lo && port <= hi)

export const isAllPorts = (ranges: readonly PortRange[]): boolean =>
  ranges.length === 1 && ranges[0]![0] === 1 && ranges[0]![1] === 65535

/** Whether every port of `inner` is in `outer` (both merged). */
export function rangesCover(outer: readonly PortRange[], inner: readonly PortRange[]): boolean {
  return inner.every(([lo, hi]) => outer.some(([olo, ohi]) => olo <= lo && hi <= ohi))
}

/** The first port of `a` that is also in `b` (both merged), or undefined when they are disjoint. */
export function firstCommonPort(a: readonly PortRange[], b: readonly PortRange[]): number | undefined {
  let best: number | undefined
  for (const [alo, ahi] of a) {
    for (const [blo, bhi] of b) {
      const lo = Math.max(alo, blo)
      if (lo <= Math.min(ahi, bhi) && (best === undefined || lo < best)) best = lo
    }
  }
  return best
}

/** The first port of `inner` not in `outer` (both merged), or undefined when outer covers inner. */
export function firstUncoveredPort(outer: readonly PortRange[], inner: readonly PortRange[]): number | undefined {
  for (const [lo, hi] of inner) {
    let p = lo
    // outer is sorted and disjoint: walk it, skipping past each range that covers p.
    for (const [olo, ohi] of outer) {
      if (olo > p) break
      if (ohi >= p) p = ohi + 1
    }
    if (p <= hi) return p
  }
  return undefined
}

/** "22", "80-81", "*" (a list joined by commas). */
export const formatPorts = (ranges: readonly PortRange[]): string =>
  isAllPorts(ranges) ? '*' : ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',')
