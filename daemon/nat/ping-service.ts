/**
 * What `POST /v1/ping` runs: echo requests (daemon/nat/probe.ts) to a peer's mesh address, one
 * every `intervalMs`, each with its round trip and the peer's path (and endpoint) as `mesh status`
 * reports it when the attempt ended.
 *
 * Requests leave from the network's own Prober when meshd runs one, otherwise from a Prober bound
 * for this request on the node's mesh address (any port): either way they travel inside WireGuard.
 */

import {delay, systemClock, type Clock} from '../../shared/clock.js'
import {MeshError} from '../../shared/errors.js'
import type {UdpBind} from '../../shared/net/udp.js'
import type {NetworkStatus, PeerStatus, PingAttempt} from '../../shared/protocol/local-api.js'
import {PROBE_PORT, Prober, type ProbeLogger} from './probe.js'

/** A peer to ping and the network it is in (Backend.pingTarget). */
export interface PingTarget {
  readonly network: NetworkStatus
  readonly peer: PeerStatus
}

export interface PingServiceOptions {
  /** Finds the peer (name, node id or mesh address) in the network named (or any): throws PEER_NOT_FOUND etc. */
  readonly target: (network: string | undefined, peer: string) => Promise<PingTarget>
  /** The network's running Prober, when meshd has one for it. */
  readonly prober?: (networkId: string) => Prober | undefined
  readonly bind?: UdpBind
  /** The peer's echo port (default PROBE_PORT); tests use another. */
  readonly probePort?: number
  readonly clock?: Clock
  readonly log?: ProbeLogger
}

export interface PingParams {
  readonly network?: string | undefined
  readonly peer: string
  readonly count: number
  readonly intervalMs: number
  readonly timeoutMs: number
}

export class PingService {
  constructor(private readonly opts: PingServiceOptions) {}

  async ping(req: PingParams): Promise<PingAttempt[]> {
    const first = await this.opts.target(req.network, req.peer)
    if (!first.network.up)
      throw new MeshError('PING_UNAVAILABLE', {
        message: `cannot ping: network ${first.network.name} is down`,
        hint: `bring it up with \`mesh up ${first.network.name}\``,
      })
    let prober = this.opts.prober?.(first.network.id)
    let own: Prober | undefined
    if (prober === undefined) {
      try {
        own = await Prober.start({
          address: first.network.address,
          port: 0,
          ...(this.opts.bind !== undefined && {bind: this.opts.bind}),
          ...(this.opts.clock !== undefined && {clock: this.opts.clock}),
          ...(this.opts.log !== undefined && {log: this.opts.log}),
        })
      } catch (err) {
        throw new MeshError('PING_UNAVAILABLE', {
          message: `cannot ping: no socket on ${first.network.address} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
          hint: `check the interface ${first.network.interface} (\`mesh status\`); \`mesh up ${first.network.name}\``,
        })
      }
      prober = own
    }
    const clock = this.opts.clock ?? systemClock
    const attempts: PingAttempt[] = []
    try {
      for (let seq = 1; seq <= req.count; seq++) {
        const started = clock.now()
        const rttMs = await prober.ping(first.peer.address, {
          timeoutMs: req.timeoutMs,
          port: this.opts.probePort ?? PROBE_PORT,
        })
        // The path as it is now: it may have changed during the run (relay -> direct).
        const now = await this.opts.target(first.network.id, first.peer.id).catch(() => first)
        attempts.push({
          seq,
          peer: now.peer.name,
          address: now.peer.address,
          rttMs: rttMs === null ? null : Math.round(rttMs * 1000) / 1000,
          path: now.peer.path,
          endpoint: now.peer.endpoint,
        })
        if (seq < req.count) await delay(clock, req.intervalMs - (clock.now() - started))
      }
    } finally {
      own?.close()
    }
    return attempts
  }
}
