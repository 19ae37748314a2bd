// TOTP secrets sealed at rest (issue 10), against in-process controllers on real SQLite files:
// what the database file holds after `mesh user mfa enable`, plain secrets of an older version
// sealed at start, backups restored with and without the secrets key, and rows tampered with.
// Time is a FakeClock the tests move (each accepted code uses up its 30 s step).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {client} from '../testing/client.js'
import {startTestController, type TestController} from '../testing/test-controller.js'
import {backupController, restoreController} from '../main.js'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../test/support/postgres.js'
import {
  SECRETS_KEY_FILE,
  SecretsKey,
  createSecretsKeyFile,
  readSecretsKeyFile,
  sealedWith,
} from './secrets-key.js'
import {totpCode} from './totp.js'

const PASSWORD = 'correct horse battery staple'
const skipPg = postgresSkipReason()
let pg: PostgresServer | undefined
let dir: string
let clock: FakeClock
let seq = 0

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-mfa-sealed-'))
  clock = new FakeClock(Date.now())
})
afterAll(async () => {
  await pg?.stop()
  fs.rmSync(dir, {recursive: true, force: true})
})

const start = (name: string, opts: Parameters<typeof startTestController>[0] = {}) =>
  startTestController({dataDir: path.join(dir, name), clock, ...opts})

/** Logs in; `otp` a code as given, or `{secret}`: the current code of that secret. */
async function login(ctl: TestController, username: string, otp?: string | {secret: string}) {
  // Each code its own step, and the failed-login window of 127.0.0.1 starts afresh.
  clock.advance(61_000)
  const code = typeof otp === 'object' ? totpCode(otp.secret, clock.now()) : otp
  return client(ctl.url).req('POST', '/api/v1/login', {
    body: {username, password: PASSWORD, ...(code === undefined ? {} : {otp: code})},
  })
}

/** A new user with MFA on: its id, name and (plain) secret, as its authenticator app has it. */
async function userWithMfa(ctl: TestController): Promise<{id: string; username: string; secret: string}> {
  const api = client(ctl.url)
  const username = `sealed${++seq}`
  const u = await api.req('POST', '/api/v1/users', {
    token: ctl.adminToken,
    body: {username, password: PASSWORD, role: 'member'},
  })
  expect(u.status, u.text).toBe(201)
  const l = await login(ctl, username)
  expect(l.status, l.text).toBe(200)
  const enable = await api.req('POST', '/api/v1/user/mfa', {token: l.body.token})
  expect(enable.status, enable.text).toBe(200)
  const secret = enable.body.secret as string
  const confirm = await api.req('POST', '/api/v1/user/mfa/confirm', {
    token: l.body.token,
    body: {code: totpCode(secret, clock.now())},
  })
  expect(confirm.status, confirm.text).toBe(200)
  return {id: u.body.id as string, username, secret}
}

function mfaRows(dbPath: string): {user_id: string; secret: string}[] {
  const db = new Database(dbPath, {readonly: true})
  try {
    return db.prepare('SELECT user_id, secret FROM user_mfa ORDER BY user_id').all() as {
      user_id: string
      secret: string
    }[]
  } finally {
    db.close()
  }
}

function sql(dbPath: string, text: string, ...params: unknown[]): void {
  const db = new Database(dbPath)
  try {
    db.prepare(text).run(...params)
  } finally {
    db.close()
  }
}

describe('TOTP secrets at rest', () => {
  it('keeps no base32 secret in the SQLite file, and logs in with a code of the sealed secret', async () => {
    const ctl = await start('plain-file')
    try {
      const keyFile = path.join(ctl.dataDir, SECRETS_KEY_FILE)
      expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600)
      const u = await userWithMfa(ctl)
      const row = mfaRows(ctl.dbPath).find((r) => r.user_id === u.id)!
      expect(row.secret).toMatch(/^v1:[0-9a-f]{16}:/)
      expect(row.secret).not.toContain(u.secret)
      // Nor anywhere in the file (WAL included): the base32 text never reached the database.
      for (const f of [ctl.dbPath, `${ctl.dbPath}-wal`].filter((p) => fs.existsSync(p)))
        expect(fs.readFileSync(f).includes(u.secret), f).toBe(false)
      expect(sealedWith(row.secret)).toBe(readSecretsKeyFile(keyFile)!.keyId)

      expect((await login(ctl, u.username)).body.error.code).toBe('MFA_REQUIRED')
      const ok = await login(ctl, u.username, {secret: u.secret})
      expect(ok.status, ok.text).toBe(200)
      expect((await login(ctl, u.username, '000000')).body.error.code).toBe('MFA_CODE_INVALID')
    } finally {
      await ctl.close()
    }
  })

  it('seals the plain secrets of an older version at start, once, and they keep working', async () => {
    const name = 'legacy'
    let ctl = await start(name)
    const u = await userWithMfa(ctl)
    const dbPath = ctl.dbPath
    await ctl.close()
    // What a controller before sealing kept: the base32 secret itself.
    sql(dbPath, 'UPDATE user_mfa SET secret = ? WHERE user_id = ?', u.secret, u.id)
    ctl = await start(name)
    try {
      const sealed = mfaRows(dbPath).find((r) => r.user_id === u.id)!.secret
      expect(sealed).toMatch(/^v1:/)
      const ok = await login(ctl, u.username, {secret: u.secret})
      expect(ok.status, ok.text).toBe(200)
    } finally {
      await ctl.close()
    }
    const before = mfaRows(dbPath)
    ctl = await start(name)
    await ctl.close()
    expect(mfaRows(dbPath), 'a second start seals nothing again').toEqual(before)
  })

  it("refuses a sealed secret copied into another user's row (SECRET_CORRUPT), not as a wrong code", async () => {
    const ctl = await start('copied')
    try {
      const alice = await userWithMfa(ctl)
      const bob = await userWithMfa(ctl)
      const aliceRow = mfaRows(ctl.dbPath).find((r) => r.user_id === alice.id)!
      sql(ctl.dbPath, 'UPDATE user_mfa SET secret = ? WHERE user_id = ?', aliceRow.secret, bob.id)
      const r = await login(ctl, bob.username, {secret: alice.secret})
      expect(r.body.error.code, r.text).toBe('SECRET_CORRUPT')
      // Recovery codes need no key: bob could still get in with one (not tested here: shown once).
    } finally {
      await ctl.close()
    }
  })

  describe('backups', () => {
    let source: TestController
    let u: {id: string; username: string; secret: string}
    let backupFile: string
    beforeAll(async () => {
      source = await start('backup-source')
      u = await userWithMfa(source)
      backupFile = path.join(dir, 'mfa.backup')
      await backupController({dataDir: source.dataDir, file: backupFile})
    })
    afterAll(async () => {
      await source?.close()
    })

    const restore = async (name: string) => {
      const dataDir = path.join(dir, name)
      await restoreController({dataDir, file: backupFile})
      return dataDir
    }

    it('restored with the key file, MFA keeps working', async () => {
      const dataDir = await restore('restored-with-key')
      fs.copyFileSync(path.join(source.dataDir, SECRETS_KEY_FILE), path.join(dataDir, SECRETS_KEY_FILE))
      const ctl = await startTestController({dataDir, clock, adminPassword: source.adminPassword})
      try {
        expect((await login(ctl, u.username)).body.error.code).toBe('MFA_REQUIRED')
        const ok = await login(ctl, u.username, {secret: u.secret})
        expect(ok.status, ok.text).toBe(200)
      } finally {
        await ctl.close()
      }
    })

    it('restored without the key file, the controller refuses to start (SECRETS_KEY_MISSING) and makes no key', async () => {
      const dataDir = await restore('restored-without-key')
      await expect(
        startTestController({dataDir, clock, adminPassword: source.adminPassword}),
      ).rejects.toMatchObject({code: 'SECRETS_KEY_MISSING'})
      expect(fs.existsSync(path.join(dataDir, SECRETS_KEY_FILE))).toBe(false)
    })

    it('restored with another key, it refuses to start (SECRETS_KEY_MISMATCH) naming both key ids', async () => {
      const dataDir = await restore('restored-other-key')
      const other = createSecretsKeyFile(path.join(dir, 'other.key'))
      const err = await startTestController({
        dataDir,
        clock,
        adminPassword: source.adminPassword,
        secretsKeyFile: path.join(dir, 'other.key'),
      }).then(
        () => undefined,
        (e: unknown) => e as {code: string; message: string},
      )
      expect(err?.code).toBe('SECRETS_KEY_MISMATCH')
      expect(err?.message).toContain(other.keyId)
    })

    it.skipIf(skipPg !== undefined)(
      'on PostgreSQL: refuses to start without a key while accounts have MFA; with the key file, MFA works',
      async () => {
        pg ??= await startPostgres()
        const database = await pg.createDatabase()
        await restoreController({dataDir: dir, database, file: backupFile})
        const dataDir = path.join(dir, 'pg-replica')
        await expect(
          startTestController({dataDir, database, clock, adminPassword: source.adminPassword}),
        ).rejects.toMatchObject({code: 'SECRETS_KEY_MISSING'})
        // Never made on PostgreSQL: each replica would have its own.
        expect(fs.existsSync(path.join(dataDir, SECRETS_KEY_FILE))).toBe(false)
        const ctl = await startTestController({
          dataDir,
          database,
          clock,
          adminPassword: source.adminPassword,
          secretsKeyFile: path.join(source.dataDir, SECRETS_KEY_FILE),
        })
        try {
          const ok = await login(ctl, u.username, {secret: u.secret})
          expect(ok.status, ok.text).toBe(200)
        } finally {
          await ctl.close()
        }
      },
    )

    it('after an admin resets the accounts whose secrets cannot be opened, the controller starts without the old key', async () => {
      const dataDir = await restore('restored-reset')
      // README: Backups and the secrets key — what an admin runs when the key is lost.
      const dbPath = path.join(dataDir, 'mesh.db')
      sql(dbPath, 'DELETE FROM mfa_recovery_codes')
      sql(dbPath, 'DELETE FROM user_mfa')
      const ctl = await startTestController({dataDir, clock, adminPassword: source.adminPassword})
      try {
        const ok = await login(ctl, u.username)
        expect(ok.status, ok.text).toBe(200)
      } finally {
        await ctl.close()
      }
    })
  })

  it('refuses a given --secrets-key-file that does not exist, rather than making a new key', async () => {
    const file = path.join(dir, 'nowhere', 'secrets.key')
    await expect(start('given-missing', {secretsKeyFile: file})).rejects.toMatchObject({
      code: 'SECRETS_KEY_MISSING',
    })
    expect(fs.existsSync(file)).toBe(false)
  })

  it('refuses a key file that group or others may read', async () => {
    const file = path.join(dir, 'loose.key')
    fs.writeFileSync(file, SecretsKey.generate().toFileText(), {mode: 0o644})
    fs.chmodSync(file, 0o644)
    await expect(start('loose', {secretsKeyFile: file})).rejects.toMatchObject({code: 'CONFIG_INVALID'})
  })

  it('keeps a plain secret out of the controller when it is given a key file of its own', async () => {
    const file = path.join(dir, 'own.key')
    const key = createSecretsKeyFile(file)
    const ctl = await start('own-key', {secretsKeyFile: file})
    try {
      const u = await userWithMfa(ctl)
      expect(sealedWith(mfaRows(ctl.dbPath).find((r) => r.user_id === u.id)!.secret)).toBe(key.keyId)
      expect(fs.existsSync(path.join(ctl.dataDir, SECRETS_KEY_FILE))).toBe(false)
    } finally {
      await ctl.close()
    }
  })
})
