/**
 * Keyset pagination shared by the adapters: a page is `limit` rows after the cursor, fetched as
 * limit + 1 to learn whether more follow. Cursors are opaque to clients: base64url of the last
 * row's seq; anything else is refused as VALIDATION_FAILED rather than read as a position.
 */
import {MeshError} from '../../shared/errors.js'
import type {Page} from './store.js'

export const encodeCursor = (seq: number): string => Buffer.from(`s${seq}`).toString('base64url')

/** The seq after which the page starts; 0 (the top) for no cursor. */
export function decodeCursor(cursor: string | undefined): number {
  if (!cursor) return 0
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const m = /^s(\d{1,15})$/.exec(text)
  if (!m) throw new MeshError('VALIDATION_FAILED', {message: 'cursor: not a cursor from this server'})
  return Number(m[1])
}

/** The page of `rows` (fetched with LIMIT limit + 1), each row mapped, with the next cursor. */
export function page<R extends {seq?: unknown}, T>(rows: R[], limit: number, map: (r: R) => T): Page<T> {
  const more = rows.length > limit
  const slice = more ? rows.slice(0, limit) : rows
  const last = slice.at(-1)
  return {items: slice.map(map), nextCursor: more && last ? encodeCursor(Number(last.seq)) : null}
}
