// PgSingletonLock on a real PostgreSQL: of two replicas asking at once, one runs the job and the
// other skips it; after the job the lock is free again; a replica that dies holding it frees it.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../../test/support/postgres.js'
import {PgSingletonLock, jobLockKey} from './lock.js'
import {MIGRATION_LOCK} from './migrations.js'
import {openPostgres} from './open.js'

const skip = postgresSkipReason()
let server: PostgresServer | undefined

beforeAll(async () => {
  if (skip === undefined) server = await startPostgres()
})
afterAll(async () => {
  await server?.stop()
})

describe.skipIf(skip !== undefined)(`PgSingletonLock${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('runs a job on one of two replicas at a time, and on either once it is free', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const [a, b] = [await openPostgres(url), await openPostgres(url)]
    try {
      const [la, lb] = [new PgSingletonLock(a), new PgSingletonLock(b)]
      let release!: () => void
      const held = new Promise<void>((r) => (release = r))
      let started!: () => void
      const running = new Promise<void>((r) => (started = r))
      const first = la.tryRun('reaper', async () => {
        started()
        await held
        return 'a'
      })
      await running
      expect(await lb.tryRun('reaper', async () => 'b')).toEqual({ran: false})
      // Another job's name is another lock.
      expect(await lb.tryRun('other', async () => 'b')).toEqual({ran: true, value: 'b'})
      release()
      expect(await first).toEqual({ran: true, value: 'a'})
      expect(await lb.tryRun('reaper', async () => 'b')).toEqual({ran: true, value: 'b'})
    } finally {
      await Promise.all([a.end(), b.end()])
    }
  })

  it('frees the lock when the replica holding it loses its connection', async () => {
    const url = await (server as PostgresServer).createDatabase()
    const a = await openPostgres(url, {applicationName: 'replica-a'})
    const b = await openPostgres(url)
    let release: (() => void) | undefined
    try {
      let started!: () => void
      const running = new Promise<void>((r) => (started = r))
      const held = new Promise<void>((r) => (release = r))
      const stuck = new PgSingletonLock(a).tryRun('reaper', async () => {
        started()
        await held // the job is still running when its replica's connection goes
        return 'a'
      })
      await running
      // With a timeout, pg_terminate_backend waits until the backend has exited (its locks gone).
      await b.query(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'replica-a'",
      )
      expect(await new PgSingletonLock(b).tryRun('reaper', async () => 'b')).toEqual({ran: true, value: 'b'})
      release?.()
      // The job itself finished; its unlock found the connection gone, which is not an error.
      expect(await stuck).toEqual({ran: true, value: 'a'})
    } finally {
      release?.()
      await Promise.all([a.end().catch(() => undefined), b.end()])
    }
  })

  it('never takes the migration lock key', () => {
    for (const name of ['reaper', 'presence-sweep', '', 'x'.repeat(1000)]) {
      expect(jobLockKey(name)).not.toEqual([...MIGRATION_LOCK])
      expect(jobLockKey(name)[1]).toBeGreaterThanOrEqual(2)
      expect(jobLockKey(name)[1]).toBeLessThanOrEqual(0x7fffffff)
    }
  })
})
