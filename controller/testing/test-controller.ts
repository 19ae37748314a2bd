/**
 * An in-process controller for tests: a temp (or given) data dir with a real SQLite file,
 * listening on 127.0.0.1:0, logged in as the superuser `admin`. Other programs' tests use it;
 * keep the returned shape stable.
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {Writable} from 'node:stream'
import {startController, type ControllerOptions, type RunningController} from '../main.js'

export interface TestController {
  url: string
  dataDir: string
  dbPath: string
  adminPassword: string
  adminToken: string
  /** The controller itself, for tests that look inside (the netmap hub, the store). */
  running: RunningController
  close(): Promise<void>
}

/** Where the test controller keeps the admin password it chose, for restarts on the same dir. */
const PASSWORD_FILE = 'test-admin-password'

export async function startTestController(
  opts: {dataDir?: string} & Partial<Omit<ControllerOptions, 'dataDir'>> = {},
): Promise<TestController> {
  const ownDir = opts.dataDir === undefined
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-ctl-'))
  const pwFile = path.join(dataDir, PASSWORD_FILE)
  const adminPassword = fs.existsSync(pwFile)
    ? fs.readFileSync(pwFile, 'utf8').trim()
    : (opts.adminPassword ?? `test-${randomBytes(12).toString('base64url')}`)
  // Logs are dropped unless MESH_TEST_LOG=1 (then they go to stderr).
  const logDestination =
    opts.logDestination ??
    (process.env.MESH_TEST_LOG === '1'
      ? process.stderr
      : new Writable({
          write(_chunk, _enc, cb) {
            cb()
          },
        }))
  const ctl = await startController({
    listen: '127.0.0.1:0',
    logLevel: process.env.MESH_TEST_LOG === '1' ? 'debug' : 'warn',
    ...opts,
    dataDir,
    adminPassword,
    logDestination,
  })
  try {
    fs.writeFileSync(pwFile, `${adminPassword}\n`, {mode: 0o600})
    const res = await fetch(`${ctl.url}/api/v1/login`, {
      method: 'POST',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify({username: 'admin', password: adminPassword}),
    })
    if (res.status !== 200)
      throw new Error(`test controller: admin login failed with ${res.status}: ${await res.text()}`)
    const {token} = (await res.json()) as {token: string}
    return {
      url: ctl.url,
      dataDir,
      dbPath: ctl.dbPath,
      adminPassword,
      adminToken: token,
      running: ctl,
      close: async () => {
        await ctl.close()
        if (ownDir) fs.rmSync(dataDir, {recursive: true, force: true})
      },
    }
  } catch (err) {
    await ctl.close()
    throw err
  }
}
