/**
 * One reader of each WireGuard interface for the whole daemon. Reading an interface costs
 * (the kernel driver spawns `ip` and `wg`; the userspace driver makes a UAPI round trip), so
 * status calls, dashboards watching the daemon, reports and path checks share samples instead of
 * reading on their own: a sample younger than `maxAgeMs` is reused, and concurrent askers of a
 * stale one wait for the same read.
 *
 * It also turns byte counters into rates: each peer's rx/tx bytes per second over the last
 * window of at least `rateWindowMs` between two samples (0 after a counter went backwards, which
 * is a peer re-created by WireGuard's config).
 */
import {EventEmitter} from 'node:events'
import type {Clock} from '../../shared/clock.js'
import type {InterfaceState} from './driver.js'

export interface PeerRates {
  readonly rxBytesPerSecond: number
  readonly txBytesPerSecond: number
}

export interface SamplerOptions {
  read(name: string): Promise<InterfaceState | undefined>
  clock: Clock
  /** A sample this young is reused. 750 ms by default (below the 1 s path tick). */
  maxAgeMs?: number
  /** Rates are computed over at least this long. 1 s by default. */
  rateWindowMs?: number
}

interface Counters {
  readonly rx: number
  readonly tx: number
}

interface Entry {
  /** The latest sample and when it was taken (undefined state: the interface is not there). */
  at: number
  state: InterfaceState | undefined
  reading: Promise<InterfaceState | undefined> | undefined
  /** Reads are numbered as they start; a read that finishes after a later one is not kept. */
  started: number
  applied: number
  /** The counters rates are measured from, and when. */
  base: {at: number; peers: Map<string, Counters>} | undefined
  rates: Map<string, PeerRates>
}

const ZERO: PeerRates = {rxBytesPerSecond: 0, txBytesPerSecond: 0}

export class InterfaceSampler extends EventEmitter<{
  sample: [name: string, state: InterfaceState | undefined]
}> {
  private readonly entries = new Map<string, Entry>()
  private readonly maxAgeMs: number
  private readonly rateWindowMs: number

  constructor(private readonly opts: SamplerOptions) {
    super()
    this.maxAgeMs = opts.maxAgeMs ?? 750
    this.rateWindowMs = opts.rateWindowMs ?? 1000
  }

  /**
   * The interface as it is now, give or take maxAgeMs; `fresh` forces a new read (after a config
   * change, say). Read errors count as "no interface", as they always have for callers.
   */
  async get(name: string, opts: {fresh?: boolean} = {}): Promise<InterfaceState | undefined> {
    let e = this.entries.get(name)
    if (!e) {
      e = {
        at: -Infinity,
        state: undefined,
        reading: undefined,
        started: 0,
        applied: 0,
        base: undefined,
        rates: new Map(),
      }
      this.entries.set(name, e)
    }
    if (!opts.fresh && this.opts.clock.now() - e.at < this.maxAgeMs) return e.state
    // A fresh read still joins one in flight only when it was not asked for fresh.
    if (e.reading && !opts.fresh) return e.reading
    const entry = e
    const seq = ++entry.started
    const reading = this.opts
      .read(name)
      .catch(() => undefined)
      .then((state) => {
        if (entry.reading === reading) entry.reading = undefined
        if (this.entries.get(name) !== entry || seq < entry.applied) return state
        entry.applied = seq
        entry.at = this.opts.clock.now()
        entry.state = state
        this.measure(entry, state)
        this.emit('sample', name, state)
        return state
      })
    e.reading = reading
    return reading
  }

  /** A peer's rx/tx rates (0 until two samples a window apart were taken). */
  rates(name: string, publicKey: string): PeerRates {
    return this.entries.get(name)?.rates.get(publicKey) ?? ZERO
  }

  /** The next get() reads (the config just changed); rates keep their base. */
  invalidate(name: string): void {
    const e = this.entries.get(name)
    if (e) e.at = -Infinity
  }

  /** Drops what is known of an interface (it was removed). */
  forget(name: string): void {
    this.entries.delete(name)
  }

  private measure(e: Entry, state: InterfaceState | undefined): void {
    const now = e.at
    const peers = new Map((state?.peers ?? []).map((p) => [p.publicKey, {rx: p.rxBytes, tx: p.txBytes}]))
    if (!e.base) {
      e.base = {at: now, peers}
      return
    }
    const dt = now - e.base.at
    if (dt < this.rateWindowMs) return
    const rates = new Map<string, PeerRates>()
    for (const [key, c] of peers) {
      const b = e.base.peers.get(key)
      if (!b || c.rx < b.rx || c.tx < b.tx) {
        rates.set(key, ZERO)
        continue
      }
      rates.set(key, {
        rxBytesPerSecond: Math.round(((c.rx - b.rx) * 1000) / dt),
        txBytesPerSecond: Math.round(((c.tx - b.tx) * 1000) / dt),
      })
    }
    e.rates = rates
    e.base = {at: now, peers}
  }
}
