// The SQLite adapter: the shared Store contract on a real temp file, plus what only SQLite has
// (pragmas, append-only audit triggers, migrations that refuse a newer database).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import {afterEach, describe, expect, it} from 'vitest'
import {storeContract, ctx} from '../contract.test-suite.js'
import {SqliteStore} from './sqlite-store.js'
import {MIGRATIONS} from './migrations.js'
import {WAL_SIZE_LIMIT, openSqlite} from './open.js'
import {storeUpgrades} from '../upgrade.test-suite.js'
import {storeWrites} from '../../domain/writes.js'

const dirs: string[] = []
const tempFile = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-store-'))
  dirs.push(dir)
  return path.join(dir, 'mesh.db')
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, {recursive: true, force: true})
})

storeUpgrades('sqlite', async () => ({
  migrations: MIGRATIONS.map((m) => m.name),
  createAt: async (upTo, seed) => {
    const file = tempFile()
    const db = await openSqlite(file, {migrations: MIGRATIONS.slice(0, upTo + 1)})
    for (const sql of seed) db.exec(sql)
    db.close()
    return {open: () => SqliteStore.open(file)}
  },
}))

storeContract('sqlite', async () => {
  const file = tempFile()
  const store = await SqliteStore.open(file)
  return {
    store,
    cleanup: async () => undefined,
    holdPresence: async (nodeId, replica, expiresAt) => {
      store.db
        .prepare(
          `INSERT INTO presence (node_id, replica, since, expires_at) VALUES (?,?,?,?)
             ON CONFLICT (node_id, replica) DO UPDATE SET expires_at = excluded.expires_at`,
        )
        .run(nodeId, replica, '2026-01-01T00:00:00.000Z', expiresAt)
    },
  }
})

describe('SQLite adapter', () => {
  it('opens with WAL, foreign keys, NORMAL sync and a busy timeout, file mode 0600', async () => {
    const file = tempFile()
    const store = await SqliteStore.open(file)
    try {
      expect(store.db.pragma('journal_mode', {simple: true})).toBe('wal')
      expect(store.db.pragma('foreign_keys', {simple: true})).toBe(1)
      expect(store.db.pragma('synchronous', {simple: true})).toBe(1)
      expect(store.db.pragma('busy_timeout', {simple: true})).toBe(5000)
      expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    } finally {
      await store.close()
    }
  })

  it('refuses to change or delete audit entries', async () => {
    const store = await SqliteStore.open(tempFile())
    const w = storeWrites(store)
    try {
      await w.createTenantWithOwner(
        {id: 't1', name: 'acme'},
        {id: 'u1', username: 'boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      expect(() => store.db.prepare("UPDATE audit SET actor = 'someone else'").run()).toThrow(/append-only/)
      expect(() => store.db.prepare('DELETE FROM audit').run()).toThrow(/append-only/)
      expect(store.db.prepare('SELECT count(*) AS c FROM audit').get()).toEqual({c: 1})
    } finally {
      await store.close()
    }
  })

  it('records applied migrations and applies nothing twice', async () => {
    const file = tempFile()
    await (await SqliteStore.open(file)).close()
    const store = await SqliteStore.open(file)
    try {
      const rows = store.db.prepare('SELECT name FROM migrations').all() as {name: string}[]
      expect(rows.map((r) => r.name)).toEqual(MIGRATIONS.map((m) => m.name))
    } finally {
      await store.close()
    }
  })

  it('refuses a database written by a newer mesh with DATABASE_NEWER_THAN_BINARY and leaves it untouched', async () => {
    const file = tempFile()
    await (await SqliteStore.open(file)).close()
    const db = new Database(file)
    db.prepare('INSERT INTO migrations (name, applied_at) VALUES (?, ?)').run('9999-from-the-future', 'x')
    db.close()
    await expect(SqliteStore.open(file)).rejects.toMatchObject({code: 'DATABASE_NEWER_THAN_BINARY'})
    const check = new Database(file, {readonly: true})
    expect(check.prepare('SELECT count(*) AS c FROM migrations').get()).toEqual({c: MIGRATIONS.length + 1})
    check.close()
  })

  it('upgrades a database made by an older binary by applying only the new migrations', async () => {
    const file = tempFile()
    const extra = {name: '9000-test-extra', sql: 'CREATE TABLE test_extra (x INTEGER) -- a test column'}
    await (await SqliteStore.open(file)).close()
    const store = await SqliteStore.open(file, {migrations: [...MIGRATIONS, extra]})
    try {
      const names = (
        store.db.prepare('SELECT name FROM migrations ORDER BY name').all() as {name: string}[]
      ).map((r) => r.name)
      expect(names).toEqual([...MIGRATIONS.map((m) => m.name), extra.name])
    } finally {
      await store.close()
    }
  })

  it('rebuilds the role tables in 0015 without losing a row, a counter or a cascade, with foreign keys on again after', async () => {
    const file = tempFile()
    const upTo14 = MIGRATIONS.findIndex((m) => m.name === '0015-user-invites')
    const old = await openSqlite(file, {migrations: MIGRATIONS.slice(0, upTo14)})
    const at = '2026-01-01T00:00:00.000Z'
    old.exec(`
      INSERT INTO tenants (id, name, created_at) VALUES ('t_1', 'acme', '${at}');
      INSERT INTO users (id, tenant_id, username, password_hash, role, created_at) VALUES
        ('u_1', 't_1', 'olga', 'x', 'owner', '${at}'), ('u_2', 't_1', 'gone', 'x', 'member', '${at}'),
        ('u_3', 't_1', 'mel', 'x', 'member', '${at}');
      DELETE FROM users WHERE id = 'u_2';
      INSERT INTO networks (id, tenant_id, name, cidr, join_policy, created_at) VALUES ('n_1', 't_1', 'lab', '10.1.0.0/24', 'open', '${at}');
      INSERT INTO network_members (network_id, user_id, role) VALUES ('n_1', 'u_3', 'admin');
      INSERT INTO invites (id, network_id, code_hash, role, expires_at, created_at, created_by) VALUES ('iv_1', 'n_1', 'h1', 'guest', '${at}', '${at}', 'u_1');
      INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) VALUES ('ses_1', 'u_3', '${at}', '${at}', '${at}');
      INSERT INTO tokens (id, token_hash, user_id, created_at, expires_at, session_id) VALUES ('tok_1', 'th1', 'u_3', '${at}', '${at}', 'ses_1');
      INSERT INTO user_mfa (user_id, secret, created_at) VALUES ('u_3', 'S', '${at}');
    `)
    old.close()
    const store = await SqliteStore.open(file)
    try {
      const db = store.db
      const count = (table: string) =>
        (db.prepare(`SELECT count(*) AS c FROM ${table}`).get() as {c: number}).c
      expect([
        count('users'),
        count('network_members'),
        count('invites'),
        count('sessions'),
        count('tokens'),
      ]).toEqual([2, 1, 1, 1, 1])
      expect(count('user_mfa')).toBe(1)
      expect(db.pragma('foreign_keys', {simple: true})).toBe(1)
      expect(db.pragma('foreign_key_check')).toEqual([])
      // AUTOINCREMENT: the deleted user's seq (2) is not handed out again.
      const w = storeWrites(store)
      await w.createUser(
        {id: 'u_4', tenantId: 't_1', username: 'mod', passwordHash: 'x', role: 'moderator'},
        ctx(),
      )
      expect((db.prepare("SELECT seq FROM users WHERE id = 'u_4'").get() as {seq: number}).seq).toBe(4)
      // The new CHECK takes moderator and still refuses a role that is none.
      await w.setMember('n_1', 'u_4', 'moderator', ctx())
      expect(() => db.prepare("UPDATE users SET role = 'root' WHERE id = 'u_4'").run()).toThrow(
        /CHECK constraint failed/,
      )
      // References to the rebuilt users table still cascade.
      await w.deleteUser('u_3', ctx())
      expect([count('sessions'), count('tokens'), count('user_mfa'), count('network_members')]).toEqual([
        0, 0, 0, 1,
      ])
    } finally {
      await store.close()
    }
  })

  it('rolls a failing migration back completely', async () => {
    const file = tempFile()
    const broken = {name: '9001-broken', sql: 'CREATE TABLE half_done (x INTEGER); THIS IS NOT SQL'}
    await expect(SqliteStore.open(file, {migrations: [...MIGRATIONS, broken]})).rejects.toThrow()
    const db = new Database(file, {readonly: true})
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {name: string}[]
    const applied = db.prepare('SELECT name FROM migrations').all() as {name: string}[]
    db.close()
    expect(tables.map((t) => t.name)).not.toContain('half_done')
    expect(applied.map((a) => a.name)).not.toContain('9001-broken')
  })

  it('resumes from the oldest version its trimmed change log still covers, and no older one', async () => {
    const store = await SqliteStore.open(tempFile())
    const w = storeWrites(store)
    try {
      await w.createTenantWithOwner(
        {id: 't1', name: 'acme'},
        {id: 'u1', username: 'boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      const net = {id: 'n1', tenantId: 't1', name: 'lab', cidr: '10.0.0.0/24', description: ''}
      await w.createNetwork({...net, joinPolicy: 'open', maxNodes: null}, ctx())
      const node = {id: 'nd1', name: 'a', hostname: 'a', os: 'linux', endpoints: [], credentialHash: 'c1'}
      const publicKey = Buffer.alloc(32, 7).toString('base64')
      await w.registerNode({kind: 'open', networkId: 'n1'}, {...node, publicKey}, ctx())
      // Version 1 is the registration; 10,999 endpoint changes bring it to 11,000, where the log
      // drops everything up to 1,000 (it keeps 10,000 versions).
      for (let i = 0; i < 10_999; i++) {
        await w.setNodeEndpoints('nd1', [`198.51.100.${(i % 2) + 1}:51820`], ctx().at)
      }
      expect(await store.netmapVersion('n1')).toBe(11_000)
      expect(await store.changesSince('n1', 1000)).toEqual({version: 11_000, nodeIds: ['nd1']})
      expect(await store.changesSince('n1', 999)).toBeUndefined()
    } finally {
      await store.close()
    }
  })

  it('keeps the WAL file bounded under a stream of writes (checkpoints restart it, the size limit truncates it)', async () => {
    const file = tempFile()
    const store = await SqliteStore.open(file)
    try {
      const w = storeWrites(store)
      await w.createTenantWithOwner(
        {id: 't1', name: 'acme'},
        {id: 'u1', username: 'boss', passwordHash: 'x', superuser: false},
        ctx(),
      )
      // ~48 MiB of audit entries in 6,000 commits, reads interleaved as a serving controller's are.
      const detail = {blob: 'x'.repeat(8 * 1024)}
      let largest = 0
      for (let i = 0; i < 6_000; i++) {
        await w.appendAudit(
          {
            tenantId: 't1',
            action: 'test.fill',
            targetType: 'tenant',
            targetId: 't1',
            networkId: null,
            detail,
          },
          ctx(),
        )
        if (i % 100 === 0) {
          await store.getTenant('t1')
          largest = Math.max(largest, fs.statSync(`${file}-wal`).size)
        }
      }
      expect(fs.statSync(file).size).toBeGreaterThan(40 * 1024 * 1024)
      // About one autocheckpoint's worth (1000 pages of 4 KiB) plus the last commit, never the 48 MiB written.
      expect(largest).toBeLessThan(8 * 1024 * 1024)
      expect(store.db.pragma('journal_size_limit', {simple: true})).toBe(WAL_SIZE_LIMIT)
    } finally {
      await store.close()
    }
  })
})
