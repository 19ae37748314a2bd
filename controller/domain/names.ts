/**
 * Node names are unique per network: a node that asks for a taken name gets `name-N`, the
 * smallest free N >= 2, kept within a DNS label's 63 characters.
 */
import {MeshError} from '../../shared/errors.js'

const MAX_NAME = 63
/** Suffixes tried before giving up: more than any network holds nodes. */
const MAX_SUFFIX = 20_000_000

/** `want` with suffix N, cut so that the whole stays within 63 characters. */
export const suffixed = (want: string, n: number): string => {
  const suffix = `-${n}`
  return want.slice(0, MAX_NAME - suffix.length).replace(/-+$/, '') + suffix
}

/**
 * A prefix that every candidate for `want` starts with (want itself and every suffixed form),
 * so the store can fetch all names that could clash in one query.
 */
export const candidatePrefix = (want: string): string =>
  want.slice(0, MAX_NAME - `-${MAX_SUFFIX}`.length).replace(/-+$/, '')

/** `want`, or `want-N` with the smallest N >= 2 that `taken` does not hold. */
export function freeName(want: string, taken: ReadonlySet<string>): string {
  if (!taken.has(want)) return want
  // Bounded: at most taken.size + 1 candidates can be tried before one is free.
  const limit = Math.min(MAX_SUFFIX, taken.size + 2)
  for (let n = 2; n <= limit; n++) {
    const candidate = suffixed(want, n)
    if (!taken.has(candidate)) return candidate
  }
  throw new MeshError('NODE_NAME_TAKEN')
}
