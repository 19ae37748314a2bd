/**
 * The ephemeral-node reaper: removes ephemeral nodes (auth keys with `ephemeral`) that have been
 * offline longer than a timeout, so CI runners and other short-lived nodes do not pile up.
 *
 * Replicas: two rules make it safe to start on every replica. It runs under the singleton lock
 * `ephemeral-reaper`, so one replica sweeps at a time; and a node counts as offline only when
 * presence says it holds no session on ANY replica (Presence.onlineAmong) and its last-seen time
 * is older than the timeout: a replica's own memory alone would delete nodes connected to
 * another one. Nothing here is kept between sweeps.
 */
import {MeshError} from '../shared/errors.js'
import type {Clock} from '../shared/clock.js'
import type {Store} from './store/store.js'
import type {Presence} from './presence.js'
import type {SingletonLock} from './leader.js'

/** The name the reaper's sweeps lock on. */
export const REAPER_LOCK = 'ephemeral-reaper'

export interface EphemeralReaperDeps {
  readonly store: Pick<Store, 'ephemeralNodes'>
  readonly presence: Pick<Presence, 'onlineAmong'>
  readonly lock: SingletonLock
  readonly clock: Clock
  /** Removes a node as the system (audited, fanned out); NOT_FOUND when it is gone already. */
  readonly remove: (nodeId: string) => Promise<void>
}

export class EphemeralReaper {
  constructor(private readonly deps: EphemeralReaperDeps) {}

  /**
   * Removes ephemeral nodes offline longer than `timeoutMs`; returns how many it removed (0 when
   * another replica holds the lock this round).
   */
  async sweep(timeoutMs: number): Promise<number> {
    const res = await this.deps.lock.tryRun(REAPER_LOCK, () => this.sweepNow(timeoutMs))
    return res.ran ? res.value : 0
  }

  private async sweepNow(timeoutMs: number): Promise<number> {
    const cutoff = this.deps.clock.now() - timeoutMs
    let removed = 0
    for (const node of await this.deps.store.ephemeralNodes()) {
      // Last-seen first (no presence read for nodes seen recently), then presence, asked per node
      // just before its removal: a node that connected during this sweep's earlier removals stays.
      if (Date.parse(node.lastSeen ?? node.createdAt) > cutoff) continue
      if ((await this.deps.presence.onlineAmong([node.id])).has(node.id)) continue
      try {
        await this.deps.remove(node.id)
        removed++
      } catch (err) {
        // Removed meanwhile by someone else: nothing to do.
        if (!(err instanceof MeshError && err.code === 'NOT_FOUND')) throw err
      }
    }
    return removed
  }
}
