/**
 * A stand-alone relay's copy of who may see whom under each tenant's ACL policy (issue 10), for
 * RelayServerOptions.allowed: the relay drops packets between two nodes of a network that may
 * not see each other, as the controller's built-in relay does. Not the policy itself: per network,
 * the active nodes' visibility classes and which classes see which (RELAY_API.visibility),
 * fetched from the controller on first use and again when a heartbeat says it changed.
 *
 * What happens before the relay knows (the choice): the packet goes through. A network not
 * fetched yet, a fetch that failed or is still running, an answer `unknown` (network too large
 * to describe, or an older controller without the route), and a node the answer does not name
 * (registered after it) are all let through, as every relay did before policies existed. Fail
 * closed would cut pairs that may talk for as long as the controller is slow or unreachable,
 * and a relay is the path of last resort for exactly those pairs; letting through costs little,
 * because the relay is not the enforcement point: the receiving node's WireGuard has no peer
 * entry for a sender it may not see and drops what it sends, and its nftables enforce ports.
 * The relay's check keeps ciphertext of forbidden pairs off the wire, not a secret.
 *
 * Staleness: an answer is used until a heartbeat names its tenant or network (at most one beat,
 * 5 s by default, after a change; the built-in relay is immediate) or it is `maxAgeMs` old;
 * meanwhile the old answer stands and the new one is fetched once. Bounds: at most
 * `maxNetworks` networks (the least recently added go first), one fetch in flight per network,
 * a network fetched again at most once per `retryMs` when its answer does not name a node, a
 * failed fetch retried after `retryMs` × 2^failures (at most `maxAgeMs`), and every answer
 * validated (RelayVisibilitySchema, and read up to a size bound; a node named twice: not used).
 */
import {RelayVisibilitySchema, type RelayVisibility} from '../../shared/relay/control.js'

export interface RelayVisibilityOptions {
  /** Asks the controller; the answer is validated here. */
  readonly fetch: (networkId: string) => Promise<unknown>
  readonly now: () => number
  /** A missing answer, or one that does not name a node, is fetched again at most this often (ms). */
  readonly retryMs?: number
  /** An answer this old is fetched again even without a heartbeat saying so (ms). */
  readonly maxAgeMs?: number
  readonly maxNetworks?: number
  readonly log?: {warn(obj: object, msg: string): void}
}

/** One network's answer, made fit for a per-packet lookup. */
type View =
  | {readonly open: true}
  | {
      readonly open: false
      readonly classOf: ReadonlyMap<string, number>
      readonly sees: readonly ReadonlySet<number>[]
    }

interface Entry {
  tenantId: string | null
  view: View | undefined
  fetchedAt: number
  /** When the last fetch started. */
  triedAt: number
  inflight: Promise<void> | undefined
  /** Told stale while a fetch ran: fetch once more when it ends. */
  again: boolean
  /** Fetches failed in a row: the next waits retryMs × 2^failures (at most maxAgeMs). */
  failures: number
}

const OPEN: View = {open: true}
/** An answer `unknown` (or unusable): let through, like open, until the next change or maxAgeMs. */
const LET_THROUGH: View = OPEN

export class RelayVisibilityCache {
  private readonly nets = new Map<string, Entry>()
  private readonly retryMs: number
  private readonly maxAgeMs: number
  private readonly maxNetworks: number
  /** Fetches made (tests, metrics). */
  fetches = 0

  constructor(private readonly opts: RelayVisibilityOptions) {
    this.retryMs = opts.retryMs ?? 2_000
    this.maxAgeMs = opts.maxAgeMs ?? 60_000
    this.maxNetworks = opts.maxNetworks ?? 10_000
  }

  /** For RelayServerOptions.allowed: false only when a current answer says the two may not see each other. */
  readonly allowed = (networkId: string, src: string, dst: string): boolean => {
    let e = this.nets.get(networkId)
    if (!e) e = this.add(networkId)
    const now = this.opts.now()
    const view = e.view
    if (!view) {
      if (now - e.triedAt >= Math.min(this.retryMs * 2 ** e.failures, this.maxAgeMs))
        this.refresh(networkId, e)
      return true
    }
    if (now - e.fetchedAt >= this.maxAgeMs) this.refresh(networkId, e)
    if (view.open) return true
    const a = view.classOf.get(src)
    const b = view.classOf.get(dst)
    if (a === undefined || b === undefined) {
      // A node newer than the answer: let through, and ask again (bounded by retryMs).
      if (now - e.triedAt >= this.retryMs) this.refresh(networkId, e)
      return true
    }
    return view.sees[a]!.has(b)
  }

  /** A heartbeat's `visibility`: answers of those tenants and networks are fetched again. */
  stale(changed: {
    readonly tenants: readonly string[]
    readonly networks: readonly string[]
    readonly all: boolean
  }): void {
    const tenants = new Set(changed.tenants)
    const networks = new Set(changed.networks)
    for (const [id, e] of this.nets)
      if (changed.all || networks.has(id) || (e.tenantId !== null && tenants.has(e.tenantId)))
        this.refresh(id, e)
  }

  /** Resolves when no fetch is in flight (tests). */
  async idle(): Promise<void> {
    for (let i = 0; i < 10; i++) {
      const running = [...this.nets.values()].map((e) => e.inflight).filter((p) => p !== undefined)
      if (running.length === 0) return
      await Promise.all(running)
    }
  }

  get size(): number {
    return this.nets.size
  }

  private add(networkId: string): Entry {
    while (this.nets.size >= this.maxNetworks) {
      const oldest = this.nets.keys().next().value
      if (oldest === undefined) break
      this.nets.delete(oldest)
    }
    const e: Entry = {
      tenantId: null,
      view: undefined,
      fetchedAt: 0,
      triedAt: -Infinity,
      inflight: undefined,
      again: false,
      failures: 0,
    }
    this.nets.set(networkId, e)
    this.refresh(networkId, e)
    return e
  }

  private refresh(networkId: string, e: Entry): void {
    if (e.inflight) {
      e.again = true
      return
    }
    e.again = false
    e.triedAt = this.opts.now()
    this.fetches++
    e.inflight = this.opts
      .fetch(networkId)
      .then((body) => {
        const parsed = RelayVisibilitySchema.safeParse(body)
        if (!parsed.success || parsed.data.networkId !== networkId)
          throw new Error('the controller sent an answer that does not validate')
        let view = viewOf(parsed.data)
        if (view === undefined) {
          this.opts.log?.warn({networkId}, 'relay visibility: an answer names a node twice; not used')
          view = LET_THROUGH
        }
        e.tenantId = parsed.data.tenantId
        e.view = view
        e.fetchedAt = this.opts.now()
        e.failures = 0
      })
      .catch((err: unknown) => {
        // The last answer (if any) stands; without one, packets go through (module comment).
        e.failures = Math.min(e.failures + 1, 16)
        this.opts.log?.warn({networkId, err: String(err)}, 'relay visibility: fetch failed')
      })
      .finally(() => {
        e.inflight = undefined
        if (e.again && this.nets.get(networkId) === e) this.refresh(networkId, e)
      })
  }
}

function viewOf(v: RelayVisibility): View | undefined {
  if (v.mode === 'open') return OPEN
  if (v.mode === 'unknown') return LET_THROUGH
  const classOf = new Map<string, number>()
  for (const [i, ids] of v.classes.entries())
    for (const id of ids) {
      if (classOf.has(id)) return undefined
      classOf.set(id, i)
    }
  return {open: false, classOf, sees: v.sees.map((row) => new Set(row))}
}
