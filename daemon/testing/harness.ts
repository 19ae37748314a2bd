/**
 * Test helpers for meshd: a daemon on a socket in a temp dir with the in-memory driver and
 * quiet logs, and a bounded wait. Test-only: never imported by production code.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {pino} from 'pino'
import {startDaemon, type DaemonHandle, type DaemonOptions} from '../main.js'
import {FakeDriver} from './fake-driver.js'

export interface FakeDaemon extends DaemonHandle {
  readonly fake: FakeDriver
  readonly dir: string
}

export function tempDir(prefix = 'meshd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/** A daemon with the fake driver; pass `dir` (and a driver) again to "restart" it on the same state. */
export async function startFakeDaemon(
  opts: {dir?: string; driver?: FakeDriver} & Omit<DaemonOptions, 'driver'> = {},
): Promise<FakeDaemon> {
  const dir = opts.dir ?? tempDir()
  const fake = opts.driver ?? new FakeDriver()
  const d = await startDaemon({
    socket: path.join(dir, 'meshd.sock'),
    stateDir: path.join(dir, 'state'),
    interfacePrefix: 'tmesh',
    logger: pino({level: process.env.MESH_TEST_LOG === '1' ? 'debug' : 'silent'}),
    maxReconnectDelayMs: 500,
    ...opts,
    driver: fake,
  })
  return Object.assign(d, {fake, dir})
}

/** Polls `check` until it returns a value other than undefined/false; fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v as T
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}
