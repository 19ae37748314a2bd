/**
 * Singleton jobs: work that must run on one replica at a time (the ephemeral-node reaper), not
 * on each of them. A job asks the lock to run it under a name; the lock runs it or skips it.
 *
 * Replicas: the in-process lock below always runs the job, which is right for one controller.
 * The shared one (later) takes a PostgreSQL advisory lock on the name for the job's duration
 * (pg_try_advisory_lock; a replica that does not get it skips this round), so a job that dies
 * with its replica frees the lock with the connection.
 */

export type TryRunResult<T> = {readonly ran: true; readonly value: T} | {readonly ran: false}

export interface SingletonLock {
  /**
   * Runs `fn` when this replica holds the lock `name` for its duration; resolves to
   * {ran: false} without running it when another replica holds it.
   */
  tryRun<T>(name: string, fn: () => Promise<T>): Promise<TryRunResult<T>>
}

/** One process, so always the leader: runs every job. */
export class InProcessLock implements SingletonLock {
  async tryRun<T>(_name: string, fn: () => Promise<T>): Promise<TryRunResult<T>> {
    return {ran: true, value: await fn()}
  }
}
