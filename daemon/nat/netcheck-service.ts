/**
 * What `POST /v1/netcheck` runs: Netcheck (daemon/nat/netcheck.ts) against the STUN server the
 * network's netmap names, and an HTTP(S) check of each relay it lists, side by side.
 *
 * - The STUN host absent from the netmap is the host of the controller URL; a DNS name is resolved
 *   with the system resolver (node:dns lookup, as every other connection of meshd), an IP literal
 *   is taken as is.
 * - A relay with no `url` is the controller itself. Its reachability and latency come from
 *   `GET <origin>/healthz` twice over one connection: the first pays for TCP (and TLS), the second
 *   is one HTTP round trip; the faster is reported. Any answer below 500 counts as reachable.
 */

import {lookup as dnsLookup} from 'node:dns/promises'
import {isIP} from 'node:net'
import {performance} from 'node:perf_hooks'
import {Client} from 'undici'
import {MeshError} from '../../shared/errors.js'
import {canonicalIp} from '../../shared/net/ip-bytes.js'
import {nodeUdpBind, type UdpBind, type UdpEndpoint} from '../../shared/net/udp.js'
import type {NetcheckResult, RelayCheck} from '../../shared/protocol/local-api.js'
import type {NatServices, RelayInfo} from '../../shared/protocol/netmap.js'
import type {NetReport} from '../../shared/nat/net-report.js'
import {Netcheck, type NetcheckOptions} from './netcheck.js'

/** The joined network a netcheck runs for (Backend.netcheckTarget). */
export interface NetcheckTarget {
  readonly network: string
  /** Its controller's URL. */
  readonly controller: string
  /** The netmap's NAT services; undefined before the first netmap (or from an older controller). */
  readonly nat: NatServices | undefined
  /** The base URL of the node's home relay (daemon/relay/home.ts), when one is chosen. */
  readonly homeRelay?: string
}

export interface NetcheckServiceOptions {
  /** The network to check (by name or id; undefined: the daemon's choice); throws NETWORK_NOT_JOINED. */
  readonly target: (ref: string | undefined) => NetcheckTarget
  readonly bind?: UdpBind
  /** Host name -> IP address; node:dns lookup by default. */
  readonly lookup?: (host: string) => Promise<string>
  /** Per relay, for both GETs together, ms (default 3,000). */
  readonly relayTimeoutMs?: number
  /** Netcheck tuning (timeouts, clock), for tests. */
  readonly netcheck?: Partial<Omit<NetcheckOptions, 'server' | 'bind'>>
  readonly logf?: (msg: string) => void
}

const defaultLookup = async (host: string): Promise<string> => (await dnsLookup(host)).address

export class NetcheckService {
  constructor(private readonly opts: NetcheckServiceOptions) {}

  async run(ref: string | undefined): Promise<NetcheckResult> {
    const t = this.opts.target(ref)
    const server = await this.stunServer(t)
    const [report, relays] = await Promise.all([
      this.stun(server),
      Promise.all(
        (t.nat?.relays ?? []).slice(0, 16).map(async (r) => ({
          ...(await this.checkRelay(r, t.controller)),
          home: (r.url ?? t.controller) === t.homeRelay,
        })),
      ),
    ])
    return {...report, network: t.network, controller: t.controller, relays}
  }

  /**
   * Only the STUN part (no relay checks): what meshd runs in the background to learn its own NAT
   * behaviour for its peers (daemon/backend.ts). NETCHECK_UNAVAILABLE as `run`.
   */
  async report(ref: string | undefined): Promise<NetReport> {
    return this.stun(await this.stunServer(this.opts.target(ref)))
  }

  /** The STUN server to check against, resolved; NETCHECK_UNAVAILABLE when there is none. */
  private async stunServer(t: NetcheckTarget): Promise<UdpEndpoint> {
    if (t.nat === undefined)
      throw new MeshError('NETCHECK_UNAVAILABLE', {
        message: `netcheck cannot run: no netmap with NAT services from the controller of ${t.network} yet`,
      })
    const stun = t.nat.stun
    if (stun === undefined || stun === null)
      throw new MeshError('NETCHECK_UNAVAILABLE', {
        message: `netcheck cannot run: the controller of ${t.network} offers no STUN server`,
      })
    return this.resolve(stun.primary.host ?? controllerHost(t.controller), stun.primary.port)
  }

  private stun(server: UdpEndpoint): Promise<NetReport> {
    return new Netcheck({
      ...this.opts.netcheck,
      server,
      bind: this.opts.bind ?? nodeUdpBind,
      ...(this.opts.logf !== undefined && {logf: this.opts.logf}),
    })
      .run()
      .catch((err: unknown) => {
        throw new MeshError('NETCHECK_UNAVAILABLE', {
          message: `netcheck cannot run: cannot open a UDP socket: ${(err as Error).message}`,
          hint: 'see the meshd log',
        })
      })
  }

  private async resolve(host: string, port: number): Promise<UdpEndpoint> {
    const literal = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
    if (isIP(literal) !== 0) return {address: canonicalIp(literal) ?? literal, port}
    let address: string
    try {
      address = await (this.opts.lookup ?? defaultLookup)(literal)
    } catch (err) {
      throw new MeshError('NETCHECK_UNAVAILABLE', {
        message: `netcheck cannot run: cannot resolve the STUN server ${literal}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        hint: "check this host's DNS (the controller's name must resolve)",
      })
    }
    const ip = canonicalIp(address)
    if (ip === undefined)
      throw new MeshError('NETCHECK_UNAVAILABLE', {
        message: `netcheck cannot run: ${literal} resolved to ${address}, not an IP address`,
      })
    return {address: ip, port}
  }

  private async checkRelay(relay: RelayInfo, controller: string): Promise<RelayCheck> {
    let origin: string
    try {
      origin = httpOrigin(relay.url ?? controller)
    } catch (err) {
      return {
        region: relay.region,
        url: (relay.url ?? controller).slice(0, 2000),
        reachable: false,
        latencyMs: null,
        error: (err as Error).message,
      }
    }
    const url = `${origin}/healthz`
    const timeoutMs = this.opts.relayTimeoutMs ?? 3000
    const client = new Client(origin, {
      connectTimeout: timeoutMs,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      pipelining: 1,
    })
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      let best = Infinity
      let status = 0
      for (let i = 0; i < 2; i++) {
        const started = performance.now()
        const res = await client.request({method: 'GET', path: '/healthz', signal})
        const ms = performance.now() - started
        status = res.statusCode
        // The body is not needed; draining (bounded by the timeout) keeps the connection for the second GET.
        await res.body.dump({limit: 64 * 1024})
        best = Math.min(best, ms)
        if (status >= 500) break
      }
      const reachable = status < 500
      return {
        region: relay.region,
        url,
        reachable,
        latencyMs: reachable ? round(best) : null,
        error: reachable ? null : `HTTP ${status}`,
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      const why = signal.aborted ? `no answer within ${timeoutMs} ms` : (e.code ?? e.message)
      return {region: relay.region, url, reachable: false, latencyMs: null, error: String(why).slice(0, 200)}
    } finally {
      await client.close().catch(() => {})
    }
  }
}

/** The host of a controller URL, without IPv6 brackets. */
function controllerHost(controller: string): string {
  const h = new URL(controller).hostname
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h
}

/** The http(s) origin of a relay or controller URL (ws: and wss: map to http: and https:). */
function httpOrigin(raw: string): string {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new Error('not a URL')
  }
  const proto = {'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:'}[u.protocol]
  if (proto === undefined) throw new Error(`unsupported scheme ${u.protocol}`)
  return `${proto}//${u.host}`
}

const round = (ms: number): number => Math.round(ms * 100) / 100
