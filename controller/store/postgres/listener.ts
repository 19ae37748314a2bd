/**
 * LISTEN on PostgreSQL channels over one dedicated connection (not a pooled one: a pooled
 * connection goes back to the pool and its LISTENs with it), reconnecting when it breaks.
 *
 * NOTIFY is fire-and-forget: what is sent while the connection is down is lost. So after every
 * (re)connect, once LISTEN is in place, `onConnected` runs: the owner re-reads what it caches
 * (the netmap hub asks the store for changes since its versions; presence reloads its rows).
 * Reconnects back off from 100 ms to 5 s, on the injected clock.
 */
import pg from 'pg'
import type {Clock, TimerHandle} from '../../../shared/clock.js'

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 5_000

export interface ListenerOptions {
  readonly url: string
  /** Channel names: lowercase letters, digits and underscores only (they are SQL identifiers). */
  readonly channels: readonly string[]
  onNotification(channel: string, payload: string): void
  /** After each (re)connect, LISTENs in place: re-read whatever may have been missed. */
  onConnected?(reconnect: boolean): void
  readonly clock: Clock
  readonly log?: {warn(obj: object, msg: string): void}
}

export class PgListener {
  private client: pg.Client | undefined
  private closed = false
  private attempts = 0
  private retry: TimerHandle | undefined
  private connectedOnce = false

  constructor(private readonly opts: ListenerOptions) {
    for (const c of opts.channels) if (!/^[a-z0-9_]{1,63}$/.test(c)) throw new Error(`bad channel name ${c}`)
  }

  /** Resolves when LISTEN is in place the first time (rejects when that connect fails). */
  async start(): Promise<void> {
    await this.connect()
  }

  get connected(): boolean {
    return this.client !== undefined
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      keepAlive: true,
      application_name: 'mesh-listener',
    })
    client.on('notification', (m) => {
      if (m.payload !== undefined) this.opts.onNotification(m.channel, m.payload)
    })
    client.on('error', (err) => this.lost(client, err))
    client.on('end', () => this.lost(client, new Error('connection ended')))
    try {
      await client.connect()
      for (const c of this.opts.channels) await client.query(`LISTEN ${c}`)
    } catch (err) {
      await client.end().catch(() => undefined)
      throw err
    }
    if (this.closed) {
      await client.end().catch(() => undefined)
      return
    }
    this.client = client
    this.attempts = 0
    const reconnect = this.connectedOnce
    this.connectedOnce = true
    this.opts.onConnected?.(reconnect)
  }

  private lost(client: pg.Client, err: Error): void {
    if (this.client !== client) return
    this.client = undefined
    client.end().catch(() => undefined)
    if (this.closed) return
    this.opts.log?.warn({err}, 'PostgreSQL notification connection lost; reconnecting')
    this.schedule()
  }

  private schedule(): void {
    if (this.closed || this.retry !== undefined) return
    const wait = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.attempts, 10))
    this.attempts++
    this.retry = this.opts.clock.setTimeout(() => {
      this.retry = undefined
      this.connect().catch((err: unknown) => {
        this.opts.log?.warn({err}, 'PostgreSQL notification connection failed; retrying')
        this.schedule()
      })
    }, wait)
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.retry !== undefined) this.opts.clock.clearTimeout(this.retry)
    const c = this.client
    this.client = undefined
    await c?.end().catch(() => undefined)
  }
}
