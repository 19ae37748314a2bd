/**
 * Singleton jobs across controller replicas on PostgreSQL (controller/leader.ts's SingletonLock):
 * a session advisory lock per job name, tried, never waited for. The lock lives on one pooled
 * connection for the job's duration and is unlocked after it; if the replica dies, the server
 * drops the connection and the lock with it, so the next replica's round runs the job.
 */
import crypto from 'node:crypto'
import type pg from 'pg'
import {MIGRATION_LOCK} from './migrations.js'
import {checkout} from './open.js'

export type TryRunResult<T> = {readonly ran: true; readonly value: T} | {readonly ran: false}

/** The advisory key of a job: mesh's first key (as the migration lock's), and 31 bits of the name's hash. */
export const jobLockKey = (name: string): [number, number] => [
  MIGRATION_LOCK[0],
  // Never 1 (the migration lock's second key): the hash is moved to 2.. upwards.
  (crypto.createHash('sha256').update(name).digest().readUInt32BE(0) % 0x7ffffffd) + 2,
]

export class PgSingletonLock {
  constructor(private readonly pool: pg.Pool) {}

  async tryRun<T>(name: string, fn: () => Promise<T>): Promise<TryRunResult<T>> {
    const key = jobLockKey(name)
    const lease = await checkout(this.pool)
    let broken: unknown
    try {
      const got = await lease.client.query<{ok: boolean}>('SELECT pg_try_advisory_lock($1, $2) AS ok', key)
      if (!got.rows[0]?.ok) return {ran: false}
      try {
        return {ran: true, value: await fn()}
      } finally {
        await lease.client.query('SELECT pg_advisory_unlock($1, $2)', key).catch((err: unknown) => {
          broken = err // closed on release: the server frees the lock with the connection
        })
      }
    } finally {
      lease.release(broken)
    }
  }
}
