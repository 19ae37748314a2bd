/**
 * Which database a controller uses, from its --database URL, and opening it as a Store:
 *  - `sqlite:PATH` (default DATA_DIR/mesh.db): the embedded, zero-setup default for one machine;
 *  - `postgres://…` or `postgresql://…` (libpq URL syntax): PostgreSQL, for several controller
 *    replicas on one database.
 * Both run the same append-only migrations (named alike) and refuse a database newer than the
 * binary. A URL's password never reaches a message or a log line: describeDatabase() redacts it.
 */
import path from 'node:path'
import {MeshError} from '../../shared/errors.js'

export type DatabaseTarget =
  {readonly kind: 'sqlite'; readonly path: string} | {readonly kind: 'postgres'; readonly url: string}

/** The URL with any password replaced by ***, for messages and logs. */
export const redactUrl = (url: string): string => url.replace(/(\/\/[^:@/]*):[^@/]*@/, '$1:***@')

export function parseDatabase(url: string | undefined, dataDir: string): DatabaseTarget {
  if (url === undefined) return {kind: 'sqlite', path: path.join(dataDir, 'mesh.db')}
  if (url.startsWith('sqlite:') && url.length > 'sqlite:'.length) {
    return {kind: 'sqlite', path: path.resolve(url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, ''))}
  }
  if (/^postgres(?:ql)?:\/\/[^/]/.test(url)) {
    let ok = false
    try {
      ok = new URL(url).hostname !== '' || url.includes('host=')
    } catch {
      ok = false
    }
    if (ok) return {kind: 'postgres', url}
  }
  throw new MeshError('DATABASE_UNSUPPORTED', {
    message: `unsupported database URL ${JSON.stringify(redactUrl(url))}`,
  })
}

export const describeDatabase = (t: DatabaseTarget): string =>
  t.kind === 'sqlite' ? t.path : redactUrl(t.url)
