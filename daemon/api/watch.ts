/**
 * GET /v1/watch: meshd's status as a stream, for dashboards (`mesh status` on a terminal). Each
 * watcher gets the whole status first, then only what changed (shared/protocol/local-api.ts,
 * WatchEvent), one JSON object per line.
 *
 * One computation serves every watcher: the status is recomputed when the backend signals a
 * change (coalesced over `coalesceMs`; every interface sample is one, so rates follow the 1 s
 * path tick) and every `refreshMs` as a safety net for what nobody signals, diffed against the
 * previous one once, and the same lines go to all. Handshake ages are the CLI's to compute. Status reads
 * come from the daemon's interface sampler, so watchers add no `wg`/`ip` processes.
 *
 * Bounds: at most `maxWatchers` streams (more get TOO_MANY_REQUESTS); a watcher that does not
 * read (its socket backlog over `maxBacklogBytes`) is cut off rather than buffered without end.
 */
import {type Clock, type TimerHandle} from '../../shared/clock.js'
import {type NetworkHeader, type Status, type WatchEvent} from '../../shared/protocol/local-api.js'

export interface WatchSource {
  status(): Promise<Status>
  /** Calls `fn` when the status may have changed; returns the unsubscribe function. */
  onChange(fn: () => void): () => void
}

/** What the hub needs of a response stream (http.ServerResponse fits). */
export interface WatchSink {
  write(chunk: string): boolean
  readonly writableLength: number
  end(): void
  destroy(): void
  once(event: 'close', fn: () => void): unknown
}

export interface WatchLog {
  warn(obj: object, msg: string): void
  debug(obj: object, msg: string): void
}

export interface StatusWatchOptions {
  source: WatchSource
  clock: Clock
  log: WatchLog
  /** Recompute at least this often while someone watches. 5 s by default. */
  refreshMs?: number
  /** Change signals within this long are one recomputation. 100 ms by default. */
  coalesceMs?: number
  maxWatchers?: number
  maxBacklogBytes?: number
}

interface Watcher {
  readonly sink: WatchSink
  /** Gets the next full status (it has seen nothing yet). */
  fresh: boolean
}

const header = ({peers: _peers, ...rest}: Status['networks'][number]): NetworkHeader => rest

/** The events that turn `prev` into `next` (one full status when the set of networks changed). */
export function diffStatus(prev: Status, next: Status): WatchEvent[] {
  const ids = (s: Status) => s.networks.map((n) => n.id).join('\n')
  const {networks: _a, ...prevTop} = prev
  const {networks: _b, ...nextTop} = next
  if (ids(prev) !== ids(next) || JSON.stringify(prevTop) !== JSON.stringify(nextTop))
    return [{type: 'status', status: next}]
  const events: WatchEvent[] = []
  next.networks.forEach((n, i) => {
    const p = prev.networks[i]!
    const h = header(n)
    if (JSON.stringify(header(p)) !== JSON.stringify(h)) events.push({type: 'network', network: h})
    const before = new Map(p.peers.map((x) => [x.id, JSON.stringify(x)]))
    const changed = n.peers.filter((x) => before.get(x.id) !== JSON.stringify(x))
    const now = new Set(n.peers.map((x) => x.id))
    const removed = p.peers.filter((x) => !now.has(x.id)).map((x) => x.id)
    if (changed.length > 0 || removed.length > 0)
      events.push({type: 'peers', networkId: n.id, changed, removed})
  })
  return events
}

export class StatusWatch {
  private readonly watchers = new Set<Watcher>()
  private last: Status | undefined
  private unsubscribe: (() => void) | undefined
  private refreshTimer: TimerHandle | undefined
  private coalesceTimer: TimerHandle | undefined
  private computing = false
  private again = false
  private closed = false
  private readonly refreshMs: number
  private readonly coalesceMs: number
  private readonly maxWatchers: number
  private readonly maxBacklogBytes: number

  constructor(private readonly opts: StatusWatchOptions) {
    this.refreshMs = opts.refreshMs ?? 5000
    this.coalesceMs = opts.coalesceMs ?? 100
    this.maxWatchers = opts.maxWatchers ?? 32
    this.maxBacklogBytes = opts.maxBacklogBytes ?? 4 * 1024 * 1024
  }

  get size(): number {
    return this.watchers.size
  }

  /** Starts streaming to `sink`; false (nothing written) when the watcher limit is reached. */
  attach(sink: WatchSink): boolean {
    if (this.closed || this.watchers.size >= this.maxWatchers) return false
    const w: Watcher = {sink, fresh: true}
    this.watchers.add(w)
    sink.once('close', () => this.detach(w))
    if (!this.unsubscribe) {
      this.unsubscribe = this.opts.source.onChange(() => this.signal())
      this.scheduleRefresh()
    }
    // The newcomer's first status comes with the next computation, which starts at once.
    void this.compute()
    return true
  }

  private detach(w: Watcher): void {
    this.watchers.delete(w)
    if (this.watchers.size === 0) this.idle()
  }

  /** Nobody watches: no subscription, no timers, no status kept. */
  private idle(): void {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    if (this.refreshTimer) this.opts.clock.clearTimeout(this.refreshTimer)
    if (this.coalesceTimer) this.opts.clock.clearTimeout(this.coalesceTimer)
    this.refreshTimer = this.coalesceTimer = undefined
    this.last = undefined
  }

  private signal(): void {
    if (this.coalesceTimer || this.closed) return
    this.coalesceTimer = this.opts.clock.setTimeout(() => {
      this.coalesceTimer = undefined
      void this.compute()
    }, this.coalesceMs)
  }

  private scheduleRefresh(): void {
    this.refreshTimer = this.opts.clock.setTimeout(() => {
      this.refreshTimer = undefined
      if (this.watchers.size === 0 || this.closed) return
      void this.compute().finally(() => {
        if (this.watchers.size > 0 && !this.refreshTimer && !this.closed) this.scheduleRefresh()
      })
    }, this.refreshMs)
  }

  /** Recomputes the status and sends what changed (one computation at a time). */
  async compute(): Promise<void> {
    if (this.computing) {
      this.again = true
      return
    }
    this.computing = true
    try {
      do {
        this.again = false
        if (this.watchers.size === 0 || this.closed) return
        let next: Status
        try {
          next = await this.opts.source.status()
        } catch (err) {
          this.opts.log.warn({err: String(err)}, 'status for watchers failed')
          return
        }
        const events = this.last ? diffStatus(this.last, next) : []
        this.last = next
        const lines = events.map(line)
        let full: string | undefined
        for (const w of [...this.watchers]) {
          if (w.fresh) {
            w.fresh = false
            this.send(w, (full ??= line({type: 'status', status: next})))
          } else for (const l of lines) this.send(w, l)
        }
      } while (this.again)
    } finally {
      this.computing = false
    }
  }

  private send(w: Watcher, text: string): void {
    if (!this.watchers.has(w)) return
    if (w.sink.writableLength > this.maxBacklogBytes) {
      this.opts.log.warn({backlog: w.sink.writableLength}, 'status watcher does not read; cut off')
      this.detach(w)
      w.sink.destroy()
      return
    }
    w.sink.write(text)
  }

  /** Ends every stream. */
  close(): void {
    this.closed = true
    const all = [...this.watchers]
    this.watchers.clear()
    this.idle()
    for (const w of all) w.sink.end()
  }
}

/** One event as a line (the CLI refuses lines over WATCH_MAX_LINE_BYTES). */
const line = (ev: WatchEvent): string => JSON.stringify(ev) + '\n'
