/**
 * The home relay of one network: the relay of the netmap's list (nat.relays) this node keeps its
 * relay socket to, chosen by measured latency like Tailscale's DERP home region.
 *
 * - Measuring: every relay's GET /healthz is timed (the best of two GETs on one connection, as
 *   `mesh netcheck` does), all at once, when the list changes, every `intervalMs` (60 s), and
 *   soon after the relay socket closes (measureSoon(), at most once per `minGapMs`): a relay
 *   that died is left within seconds.
 * - Hysteresis (chooseHome): the current home is kept unless it did not answer, or another
 *   relay is clearly better: under 2/3 of its latency AND at least `marginMs` (5 ms) faster.
 *   Two relays at about the same distance therefore never make a node flap between them (each
 *   move costs the node's relayed peers a reconnect).
 * - The controller's own relay (the one without a URL) is the fallback: a node homes there only
 *   when no stand-alone relay answers. Stand-alone relays exist to take relay traffic off the
 *   control plane (like Tailscale's DERP regions marked `Avoid`), so a controller a little
 *   closer does not pull every node back onto itself.
 * - Before the first measurement the home is the first relay of the list (the controller's own),
 *   so a node is reachable at once; the first measurement then picks the best outright.
 *
 * Peers need not know a node's home: relays forward to each other (controller/relay/mesh.ts).
 */
import {Client} from 'undici'
import type {Clock, TimerHandle} from '../../shared/clock.js'
import type {RelayInfo} from '../../shared/protocol/netmap.js'

/** Measured round trips by relay URL (ms); undefined = no answer. */
export type RelayLatencies = ReadonlyMap<string, number | undefined>

export interface HysteresisOptions {
  /** A better relay must be faster by at least this much (ms). 5 by default. */
  marginMs?: number
  /** ... and under this fraction of the current one's latency. 2/3 by default. */
  ratio?: number
  /** Relays taken only when no other answered (the controller's own). */
  fallback?: ReadonlySet<string>
}

/**
 * The relay to be home, given the current one (undefined: none chosen by measurement yet) and
 * the latest measurements: the fastest that answered, unless the current one answered and is
 * not clearly worse; a fallback relay only when nothing else answered. Undefined when no relay
 * answered (the caller keeps what it has).
 */
export function chooseHome(
  current: string | undefined,
  latencies: RelayLatencies,
  opts: HysteresisOptions = {},
): string | undefined {
  const fallback = opts.fallback
  const preferred = [...latencies].filter(([url, ms]) => ms !== undefined && !fallback?.has(url))
  if (fallback && preferred.length > 0) {
    if (current !== undefined && fallback.has(current)) current = undefined
    latencies = new Map(preferred)
  }
  let best: string | undefined
  let bestMs = Infinity
  for (const [url, ms] of latencies)
    if (ms !== undefined && ms < bestMs) {
      best = url
      bestMs = ms
    }
  if (best === undefined) return undefined
  const currentMs = current === undefined ? undefined : latencies.get(current)
  if (current === undefined || currentMs === undefined) return best
  const margin = opts.marginMs ?? 5
  const ratio = opts.ratio ?? 2 / 3
  return bestMs < currentMs * ratio && currentMs - bestMs >= margin ? best : current
}

/** The best of two timed GETs of `base`/healthz (ms), or undefined when it did not answer. */
export async function probeRelay(base: string, timeoutMs = 2_000): Promise<number | undefined> {
  let origin: string
  try {
    const u = new URL(base)
    u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol
    if (!/^https?:$/.test(u.protocol)) return undefined
    origin = u.origin
  } catch {
    return undefined
  }
  const client = new Client(origin, {
    connectTimeout: timeoutMs,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    pipelining: 1,
  })
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    let best = Infinity
    for (let i = 0; i < 2; i++) {
      const started = performance.now()
      const res = await client.request({method: 'GET', path: '/healthz', signal})
      const ms = performance.now() - started
      await res.body.dump({limit: 64 * 1024})
      if (res.statusCode >= 500) return undefined
      best = Math.min(best, ms)
    }
    return Math.round(best * 100) / 100
  } catch {
    return undefined
  } finally {
    await client.close().catch(() => undefined)
  }
}

export interface HomeRelayOptions {
  readonly clock: Clock
  /** Times one relay (base URL); probeRelay by default. */
  readonly probe?: (base: string) => Promise<number | undefined>
  /** Called when the home changes, with the relay's base URL. */
  readonly onChange?: (base: string, info: RelayInfo) => void
  /** Re-measures this often (ms; default 60,000). */
  readonly intervalMs?: number
  /** measureSoon() measures at most this often (ms; default 1,000). */
  readonly minGapMs?: number
  readonly hysteresis?: HysteresisOptions
}

export class HomeRelay {
  private relays: {base: string; info: RelayInfo}[] = []
  private home: string | undefined
  /** Whether the home was chosen by a measurement (else it is the list's first, a default). */
  private measured = false
  private latest: RelayLatencies = new Map()
  private timer: TimerHandle | undefined
  private soon: TimerHandle | undefined
  private lastMeasure = -Infinity
  private measuring: Promise<void> | undefined
  /** measure() was called while one ran. */
  private again = false
  private closed = false

  constructor(private readonly opts: HomeRelayOptions) {}

  /** The home relay's base URL (undefined when the list is empty). */
  get current(): string | undefined {
    return this.home
  }

  /** The last measurement, by base URL. */
  get latencies(): RelayLatencies {
    return this.latest
  }

  /**
   * The netmap's relays; `controller` is the base URL of a relay without one. A new list is
   * measured at once; a home no longer listed is replaced by the list's first until then.
   */
  setRelays(relays: readonly RelayInfo[], controller: string): void {
    if (this.closed) return
    const next = relays.map((info) => ({base: info.url ?? controller, info}))
    const same = next.length === this.relays.length && next.every((r, i) => r.base === this.relays[i]!.base)
    this.relays = next
    if (same) return
    if (this.home === undefined || !next.some((r) => r.base === this.home)) {
      this.measured = false
      this.set(next[0]?.base)
    }
    if (next.length > 1) void this.measure()
    else this.schedule()
  }

  /** Measures again shortly (the relay socket closed: the home may be gone). */
  measureSoon(): void {
    if (this.closed || this.soon !== undefined || this.relays.length < 2) return
    const wait = Math.max(0, this.lastMeasure + (this.opts.minGapMs ?? 1_000) - this.opts.clock.now())
    this.soon = this.opts.clock.setTimeout(() => {
      this.soon = undefined
      void this.measure()
    }, wait)
  }

  /**
   * Measures every relay now and moves home when chooseHome says so. Called while a measurement
   * runs, it measures again once that one is over (the list may have changed meanwhile).
   */
  measure(): Promise<void> {
    if (this.measuring) {
      this.again = true
      return this.measuring
    }
    this.measuring = this.run().finally(() => {
      this.measuring = undefined
      if (this.again && !this.closed) {
        this.again = false
        void this.measure()
      }
    })
    return this.measuring
  }

  private async run(): Promise<void> {
    this.lastMeasure = this.opts.clock.now()
    const probe = this.opts.probe ?? ((base: string) => probeRelay(base))
    const list = this.relays.slice(0, 16)
    const results = await Promise.all(list.map(async (r) => [r.base, await probe(r.base)] as const))
    if (this.closed) return
    this.latest = new Map(results)
    const fallback = new Set(list.filter((r) => r.info.url === undefined).map((r) => r.base))
    const pick = chooseHome(this.measured ? this.home : undefined, this.latest, {
      ...this.opts.hysteresis,
      fallback,
    })
    if (pick !== undefined) {
      this.measured = true
      this.set(pick)
    }
    this.schedule()
  }

  private set(base: string | undefined): void {
    if (base === this.home) return
    this.home = base
    const r = this.relays.find((x) => x.base === base)
    if (r) this.opts.onChange?.(r.base, r.info)
  }

  private schedule(): void {
    if (this.timer !== undefined) this.opts.clock.clearTimeout(this.timer)
    this.timer = undefined
    if (this.closed || this.relays.length < 2) return
    this.timer = this.opts.clock.setTimeout(() => void this.measure(), this.opts.intervalMs ?? 60_000)
  }

  close(): void {
    this.closed = true
    if (this.timer !== undefined) this.opts.clock.clearTimeout(this.timer)
    if (this.soon !== undefined) this.opts.clock.clearTimeout(this.soon)
    this.timer = this.soon = undefined
  }
}
