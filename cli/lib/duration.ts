// Parses the human durations that expiry and --since flags take (30m, 12h, 7d, 2w, 1h30m).
import {MeshError} from '../../shared/errors.js'

const UNIT_SECONDS: Record<string, number> = {s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400}
// One or more <digits><unit> groups, largest unit first is not enforced: `90m` and `1h30m` both read naturally.
const DURATION_RE = /^(?:\d{1,9}[smhdw])+$/
const PART_RE = /(\d{1,9})([smhdw])/g
/** Ten years: anything longer is a typo, and the controller refuses it anyway. */
const MAX_SECONDS = 10 * 365 * 86_400

export const isDuration = (text: string): boolean => DURATION_RE.test(text.trim())

/** Seconds in a duration such as `30m`, `12h`, `7d`, `2w` or `1h30m`; INVALID_ARGUMENT otherwise. */
export function parseDuration(text: string, what = 'duration'): number {
  const trimmed = text.trim()
  if (!DURATION_RE.test(trimmed)) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: `${what} "${text}" is not a duration`,
      hint: 'write a number and a unit: s, m, h, d or w (for example 30m, 12h, 7d, 2w)',
    })
  }
  let seconds = 0
  for (const [, n, unit] of trimmed.matchAll(PART_RE)) seconds += Number(n) * UNIT_SECONDS[unit as string]!
  if (seconds <= 0 || seconds > MAX_SECONDS) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: `${what} "${text}" must be more than zero and at most 10 years`,
    })
  }
  return seconds
}

/**
 * A point in time from `--since`: a duration back from `now`, or an RFC 3339 time. Returned as
 * RFC 3339 so the controller only ever has to read one format.
 */
export function parseSince(text: string, now: Date = new Date()): string {
  if (isDuration(text)) return new Date(now.getTime() - parseDuration(text, '--since') * 1000).toISOString()
  const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})$/
  const at = new Date(text)
  if (!rfc3339.test(text.trim()) || Number.isNaN(at.getTime())) {
    throw new MeshError('INVALID_ARGUMENT', {
      message: `--since "${text}" is neither a duration nor an RFC 3339 time`,
      hint: 'give a duration such as 1h or 7d, or a time such as 2026-11-22T10:00:00Z',
    })
  }
  return at.toISOString()
}
