/** The local API's handler table: one entry per LOCAL_ROUTES key, each a thin call into Backend. */
import type {Backend} from '../backend.js'
import type {Handlers} from './server.js'

export function handlers(backend: Backend): Handlers {
  return {
    'GET /v1/status': () => backend.status(),
    'POST /v1/join': (req) => backend.join(req),
    'POST /v1/up': (req) => backend.up(req.network),
    'POST /v1/down': (req) => backend.down(req.network),
    'POST /v1/leave': (req) => backend.leave(req.network),
    'GET /v1/ip': () => backend.ip(),
  }
}
