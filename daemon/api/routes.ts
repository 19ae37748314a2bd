/** The local API's handler table: one entry per LOCAL_ROUTES key, each a thin call into Backend. */
import type {Backend} from '../backend.js'
import {NetcheckService} from '../nat/netcheck-service.js'
import {PingService} from '../nat/ping-service.js'
import type {Handlers} from './server.js'

/** The services behind the diagnostic routes; built on `backend` unless given (tests pass their own). */
export interface RouteServices {
  netcheck?: NetcheckService
  ping?: PingService
}

export function handlers(backend: Backend, services: RouteServices = {}): Handlers {
  const netcheck = services.netcheck ?? new NetcheckService({target: (ref) => backend.netcheckTarget(ref)})
  const ping = services.ping ?? new PingService({target: (net, peer) => backend.pingTarget(net, peer)})
  return {
    'GET /v1/status': () => backend.status(),
    'POST /v1/join': (req) => backend.join(req),
    'POST /v1/up': (req) => backend.up(req.network),
    'POST /v1/down': (req) => backend.down(req.network),
    'POST /v1/leave': (req) => backend.leave(req.network),
    'GET /v1/ip': () => backend.ip(),
    'POST /v1/netcheck': (req) => netcheck.run(req.network),
    'POST /v1/ping': (req) => ping.ping(req),
    'POST /v1/rotate-key': (req) => backend.rotateKey(req.network),
  }
}
