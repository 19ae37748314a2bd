/**
 * Group commit for small, frequent writes (presence rows, last-seen times): while one batch is
 * being written, new items wait and go together in the next one, so a lone write goes at once
 * and a burst (10,000 nodes reconnecting after a restart) becomes a few hundred statements
 * instead of one per node, which a connection pool of ten would queue past its timeout.
 *
 * Items are keyed: a later item for the same key replaces the earlier one still waiting (the last
 * presence of a node is what counts). Each add() resolves when the batch holding its item is
 * written, or rejects with that batch's error. Memory is bounded by the number of keys.
 */
export class GroupCommit<K, V> {
  private waiting = new Map<K, V>()
  private waiters: {resolve: () => void; reject: (err: unknown) => void}[] = []
  private running = false

  /** `maxBatch`: the most items one write takes; the rest go in the next one. */
  constructor(
    private readonly write: (items: ReadonlyMap<K, V>) => Promise<void>,
    private readonly maxBatch = 1_000,
  ) {}

  add(key: K, value: V): Promise<void> {
    this.waiting.delete(key)
    this.waiting.set(key, value)
    const done = new Promise<void>((resolve, reject) => this.waiters.push({resolve, reject}))
    if (!this.running) void this.drain()
    return done
  }

  private async drain(): Promise<void> {
    this.running = true
    try {
      // Bounded: each round takes at least one item, and items only come from add().
      for (let round = 0; this.waiting.size > 0 && round < 1_000_000; round++) {
        let items: Map<K, V>
        let waiters: typeof this.waiters
        if (this.waiting.size <= this.maxBatch) {
          items = this.waiting
          waiters = this.waiters
          this.waiting = new Map()
          this.waiters = []
        } else {
          // The oldest maxBatch items now; everyone waiting is answered once all is written.
          items = new Map()
          for (const [k, v] of this.waiting) {
            if (items.size >= this.maxBatch) break
            items.set(k, v)
            this.waiting.delete(k)
          }
          waiters = []
        }
        try {
          await this.write(items)
          for (const w of waiters) w.resolve()
        } catch (err) {
          for (const w of waiters) w.reject(err)
          // Those waiting for the rest hear of the failure too: their batch may hold their item.
          if (waiters.length === 0) {
            for (const w of this.waiters.splice(0)) w.reject(err)
          }
        }
      }
    } finally {
      this.running = false
    }
  }
}
