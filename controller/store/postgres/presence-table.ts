/**
 * The `presence` table (migration 0006): one row per (node, replica) while that replica holds a
 * netmap session of the node, with an expiry the replica keeps pushing forward. SQL only; the
 * rules are controller/replicas/shared-presence.ts's. Times are RFC 3339 text, compared as text
 * (they sort as times).
 */
import type pg from 'pg'
import {checkout} from './open.js'

export class PgPresenceTable {
  constructor(private readonly pool: pg.Pool) {}

  /** This replica holds a session of the node (again): the row exists and expires at `expiresAt`. */
  async hold(nodeId: string, replica: string, at: string, expiresAt: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO presence (node_id, replica, since, expires_at) VALUES ($1,$2,$3,$4)
         ON CONFLICT (node_id, replica) DO UPDATE SET expires_at = excluded.expires_at`,
      [nodeId, replica, at, expiresAt],
    )
  }

  /**
   * Many nodes at once, in one transaction: rows of `hold` exist (again) and expire at
   * `expiresAt`, rows of `release` are gone (this replica's last session of each closed).
   */
  async apply(
    replica: string,
    nodes: {readonly hold: readonly string[]; readonly release: readonly string[]},
    at: string,
    expiresAt: string,
  ): Promise<void> {
    if (nodes.hold.length === 0 && nodes.release.length === 0) return
    const lease = await checkout(this.pool)
    const c = lease.client
    let failure: unknown
    try {
      await c.query('BEGIN')
      if (nodes.release.length > 0)
        await c.query('DELETE FROM presence WHERE replica = $1 AND node_id = ANY($2::text[])', [
          replica,
          [...nodes.release],
        ])
      if (nodes.hold.length > 0)
        await c.query(
          `INSERT INTO presence (node_id, replica, since, expires_at)
             SELECT id, $2, $3, $4 FROM unnest($1::text[]) AS id
             ON CONFLICT (node_id, replica) DO UPDATE SET expires_at = excluded.expires_at`,
          [[...nodes.hold], replica, at, expiresAt],
        )
      await c.query('COMMIT')
    } catch (err) {
      failure = err
      await c.query('ROLLBACK').catch(() => undefined)
      throw err
    } finally {
      lease.release(failure)
    }
  }

  /** This replica's last session of the node closed. */
  async release(nodeId: string, replica: string): Promise<void> {
    await this.pool.query('DELETE FROM presence WHERE node_id = $1 AND replica = $2', [nodeId, replica])
  }

  /** Pushes every row of this replica forward to `expiresAt`; returns how many it holds. */
  async heartbeat(replica: string, expiresAt: string): Promise<number> {
    return (
      await this.pool.query('UPDATE presence SET expires_at = $1 WHERE replica = $2', [expiresAt, replica])
    ).rowCount as number
  }

  /** Removes rows that expired before `now` (their replica stopped heartbeating); returns how many. */
  async sweep(now: string): Promise<number> {
    return (await this.pool.query('DELETE FROM presence WHERE expires_at < $1', [now])).rowCount as number
  }

  /** Every live (node, replica) row. */
  async live(now: string): Promise<{nodeId: string; replica: string}[]> {
    const r = await this.pool.query<{node_id: string; replica: string}>(
      'SELECT node_id, replica FROM presence WHERE expires_at >= $1',
      [now],
    )
    return r.rows.map((x) => ({nodeId: x.node_id, replica: x.replica}))
  }

  /** Which of `nodeIds` have a live row on any replica. */
  async onlineAmong(nodeIds: readonly string[], now: string): Promise<Set<string>> {
    if (nodeIds.length === 0) return new Set()
    const r = await this.pool.query<{node_id: string}>(
      'SELECT DISTINCT node_id FROM presence WHERE node_id = ANY($1::text[]) AND expires_at >= $2',
      [[...nodeIds], now],
    )
    return new Set(r.rows.map((x) => x.node_id))
  }
}
