/**
 * The node key-expiry sweep (issue 10): disables active nodes whose WireGuard key expired, so
 * peers drop them and their netmap sessions close with NODE_KEY_EXPIRED, and announces each
 * coming expiry once, KEY_WARNING_MS ahead, on the admin event stream (`node_key_expiring`).
 *
 * Both are node changes written through the domain rules (nodes.ts disableExpiredNode,
 * markKeyWarned) and published on the change feed, so every replica's netmap hub and admin
 * stream hear of them. Bounded work: at most SWEEP_BATCH nodes per query and SWEEP_BATCHES
 * queries of each kind per sweep (what is left waits for the next sweep); the query walks the
 * partial index on key_expires_at. It runs under the singleton lock `key-expiry`, like the
 * ephemeral reaper, and keeps nothing between sweeps: what was done is in the rows (status,
 * key_warned_at).
 */
import {MeshError} from '../shared/errors.js'
import {KEY_EXPIRY_WARNING_MS} from '../shared/protocol/control-api.js'
import type {Clock} from '../shared/clock.js'
import type {NodeChange, Store} from './store/store.js'
import type {Writes} from './domain/writes.js'
import type {SingletonLock} from './leader.js'
import {systemContext} from './context.js'

export const KEY_EXPIRY_LOCK = 'key-expiry'
/** How long before a key expires it is announced (and `mesh status` warns). */
export const KEY_WARNING_MS = KEY_EXPIRY_WARNING_MS
/** How often the controller sweeps. */
export const KEY_SWEEP_EVERY_MS = 60_000
const SWEEP_BATCH = 100
const SWEEP_BATCHES = 10

export interface KeyExpirySweeperDeps {
  readonly store: Pick<Store, 'keyExpiries'>
  readonly writes: Pick<Writes, 'disableExpiredNode' | 'markKeyWarned'>
  readonly publish: (change: NodeChange) => void
  readonly lock: SingletonLock
  readonly clock: Clock
}

export interface SweepResult {
  readonly expired: number
  readonly warned: number
}

export class KeyExpirySweeper {
  constructor(private readonly deps: KeyExpirySweeperDeps) {}

  /** One sweep; {0, 0} when another replica holds the lock this round. */
  async sweep(): Promise<SweepResult> {
    const res = await this.deps.lock.tryRun(KEY_EXPIRY_LOCK, () => this.sweepNow())
    return res.ran ? res.value : {expired: 0, warned: 0}
  }

  private async sweepNow(): Promise<SweepResult> {
    const now = this.deps.clock.now()
    const nowIso = new Date(now).toISOString()
    let expired = 0
    let warned = 0
    // 1. Expired keys: disable (each rule reads the node again under its network's lock).
    for (let i = 0; i < SWEEP_BATCHES; i++) {
      const due = await this.deps.store.keyExpiries({after: null, until: nowIso, limit: SWEEP_BATCH})
      for (const node of due) {
        const change = await this.ignoreGone(
          this.deps.writes.disableExpiredNode(node.id, systemContext(this.deps.clock)),
        )
        if (change) {
          expired++
          this.deps.publish(change)
        }
      }
      if (due.length < SWEEP_BATCH) break
    }
    // 2. Keys expiring within KEY_WARNING_MS that were not announced yet.
    const until = new Date(now + KEY_WARNING_MS).toISOString()
    for (let i = 0; i < SWEEP_BATCHES; i++) {
      const due = await this.deps.store.keyExpiries({
        after: nowIso,
        until,
        unwarned: true,
        limit: SWEEP_BATCH,
      })
      for (const node of due) {
        const change = await this.ignoreGone(this.deps.writes.markKeyWarned(node.id, nowIso))
        if (change) {
          warned++
          this.deps.publish(change)
        }
      }
      if (due.length < SWEEP_BATCH) break
    }
    return {expired, warned}
  }

  /** A node removed between the query and its write is nothing to do. */
  private async ignoreGone(p: Promise<NodeChange | undefined>): Promise<NodeChange | undefined> {
    try {
      return await p
    } catch (err) {
      if (err instanceof MeshError && err.code === 'NOT_FOUND') return undefined
      throw err
    }
  }
}
