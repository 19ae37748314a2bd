/**
 * Two controller replicas for tests: in-process test controllers (test-controller.ts) on one
 * fresh database of a throwaway PostgreSQL server (test/support/postgres.ts), each with its own
 * data dir, both with the same admin password. Test-only.
 *
 *     pg = await startPostgres()
 *     replicas = await startReplicas(pg)
 *     ;({r1, r2} = replicas)
 *     …
 *     await replicas?.close()
 *     await pg?.stop()
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type {ControllerOptions} from '../main.js'
import {startTestController, type TestController} from './test-controller.js'

export type ReplicaName = 'r1' | 'r2'

/** What a test may set per replica; the data dir, database and admin password are the harness's. */
export type ReplicaOptions = Partial<Omit<ControllerOptions, 'dataDir' | 'database' | 'adminPassword'>>

export interface TestReplicas {
  readonly r1: TestController
  readonly r2: TestController
  /** The connection string of their database (for a test that talks to it directly). */
  readonly database: string
  /** Closes both replicas and removes their data dirs. */
  close(): Promise<void>
}

/** The admin password both replicas share (the admin user lives in the shared database). */
const ADMIN_PASSWORD = 'replica test admin password'

/**
 * Starts r1, then r2, on a new database of `pg`. `options` adds each replica's own settings (a
 * clock, a --relay-url at its own port…). A replica that fails to start closes the other and
 * removes the directory before the error is thrown.
 */
export async function startReplicas(
  pg: {createDatabase(): Promise<string>},
  options: (name: ReplicaName) => ReplicaOptions | Promise<ReplicaOptions> = () => ({}),
): Promise<TestReplicas> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-replicas-'))
  const started: TestController[] = []
  const close = async () => {
    for (const r of started.splice(0)) await r.close()
    fs.rmSync(dir, {recursive: true, force: true})
  }
  let database = ''
  try {
    database = await pg.createDatabase()
    for (const name of ['r1', 'r2'] as const)
      started.push(
        await startTestController({
          ...(await options(name)),
          dataDir: path.join(dir, name),
          database,
          adminPassword: ADMIN_PASSWORD,
        }),
      )
    const [r1, r2] = started as [TestController, TestController]
    return {r1, r2, database, close}
  } catch (err) {
    await close()
    throw err
  }
}
