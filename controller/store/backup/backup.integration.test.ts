// mesh controller backup/restore on real databases: a backup taken while a controller serves
// (and writes), restored onto SQLite and onto PostgreSQL, and a controller started on each
// restored database serves the same tenants, nodes, credentials and audit log. Damaged or
// cut-short backups and non-empty targets are refused with nothing written.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {postgresSkipReason, startPostgres, type PostgresServer} from '../../../test/support/postgres.js'
import {client, publicKey} from '../../testing/client.js'
import {startTestController, type TestController} from '../../testing/test-controller.js'
import {connectWs} from '../../testing/ws-client.js'
import {backupController, restoreController} from '../../main.js'

const skipPg = postgresSkipReason()
const NAT = {mapping: 'endpoint-dependent', filtering: 'address-and-port-dependent'} as const
let dir: string
let source: TestController
let backupFile: string
let pgServer: PostgresServer | undefined
/** What the source controller held when the backup was taken. */
let expected: {
  networkId: string
  nodeIds: string[]
  credential: string
  auditIds: number[]
  relayKeyId: string
  meshToken: string
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-backup-'))
  source = await startTestController({dataDir: path.join(dir, 'source')})
  const api = client(source.url)
  const net = await api.req('POST', '/api/v1/networks', {
    token: source.adminToken,
    body: {name: 'lab', cidr: '10.60.0.0/24', joinPolicy: 'open'},
  })
  expect(net.status, net.text).toBe(201)
  const nodeIds: string[] = []
  let credential = ''
  for (const name of ['web', 'web', 'db']) {
    const r = await api.req('POST', '/api/v1/register', {
      token: source.adminToken,
      body: {network: net.body.id, publicKey: publicKey(), name},
    })
    expect(r.status, r.text).toBe(201)
    nodeIds.push(r.body.node.id)
    credential = r.body.credential
  }
  // The first node's NAT behaviour (stored with the node since 0009) comes along too.
  await source.running.state.telemetry.reportNat({id: nodeIds[0]!}, NAT)
  const rk = await api.req('POST', '/api/v1/relay-keys', {token: source.adminToken, body: {region: 'eu'}})
  expect(rk.status, rk.text).toBe(201)
  const audit = await api.req('GET', '/api/v1/audit?limit=200', {token: source.adminToken})
  expected = {
    networkId: net.body.id,
    nodeIds,
    credential,
    auditIds: (audit.body.items as {id: number}[]).map((e) => e.id),
    relayKeyId: rk.body.relayKey.id,
    meshToken: source.running.relays.registry.meshToken,
  }
  backupFile = path.join(dir, 'mesh.backup')
  // Taken while the controller runs; it keeps writing (a login) at the same time.
  const [r] = await Promise.all([
    backupController({dataDir: source.dataDir, file: backupFile}),
    api.req('POST', '/api/v1/login', {body: {username: 'admin', password: source.adminPassword}}),
  ])
  expect(r).toMatchObject({source: 'sqlite', schema: expect.stringMatching(/^\d{4}-/)})
  expect(r.rows).toBeGreaterThan(10)
  if (skipPg === undefined) pgServer = await startPostgres()
})

afterAll(async () => {
  await source?.close()
  await pgServer?.stop()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

/** Starts a controller on the restored database and checks it holds what the source held. */
async function checkRestored(database: string): Promise<void> {
  const ctl = await startTestController({
    dataDir: path.join(dir, `check-${Math.random().toString(36).slice(2)}`),
    database,
    adminPassword: source.adminPassword,
  })
  try {
    const api = client(ctl.url)
    const nodes = await api.req('GET', `/api/v1/networks/${expected.networkId}/nodes`, {
      token: ctl.adminToken,
    })
    expect(nodes.status, nodes.text).toBe(200)
    const items = nodes.body.items as {id: string; name: string; address: string; nat?: unknown}[]
    expect(items.map((n) => n.id)).toEqual(expected.nodeIds)
    expect(items.map((n) => n.nat)).toEqual([NAT, undefined, undefined])
    expect(items.map((n) => n.name)).toEqual(['web', 'web-2', 'db'])
    // The node credential from before the backup still opens a netmap session.
    const ws = await connectWs(`${ctl.url}/api/v1/netmap`, expected.credential)
    try {
      const full = await ws.next<{type: string; self: {id: string}; peers: {id: string; nat?: unknown}[]}>(
        (f) => f.type === 'full',
        5000,
      )
      expect(full.self.id).toBe(expected.nodeIds[2])
      expect(full.peers.find((p) => p.id === expected.nodeIds[0])?.nat).toEqual(NAT)
    } finally {
      await ws.close()
    }
    // Relay keys and the relay-mesh secret came along (relays keep registering and meshing).
    const keys = await api.req('GET', '/api/v1/relay-keys', {token: ctl.adminToken})
    expect((keys.body.items as {id: string}[]).map((k) => k.id)).toEqual([expected.relayKeyId])
    expect(ctl.running.relays.registry.meshToken).toBe(expected.meshToken)
    const audit = await api.req('GET', '/api/v1/audit?limit=500', {token: ctl.adminToken})
    const ids = (audit.body.items as {id: number}[]).map((e) => e.id)
    for (const id of expected.auditIds) expect(ids).toContain(id)
    // New rows continue after the restored ones (sequences moved past them).
    const more = await api.req('POST', '/api/v1/register', {
      token: ctl.adminToken,
      body: {network: expected.networkId, publicKey: publicKey(), name: 'web'},
    })
    expect(more.status, more.text).toBe(201)
    expect(more.body.node.name).toBe('web-3')
    const after = await api.req('GET', '/api/v1/audit?limit=1', {token: ctl.adminToken})
    expect((after.body.items as {id: number}[])[0]!.id).toBeGreaterThan(Math.max(...expected.auditIds))
  } finally {
    await ctl.close()
  }
}

describe('controller backup and restore', () => {
  it('restores a backup of a running SQLite controller into a new SQLite file that serves the same data', async () => {
    const target = path.join(dir, 'restored', 'mesh.db')
    const r = await restoreController({dataDir: dir, database: `sqlite:${target}`, file: backupFile})
    expect(r).toMatchObject({source: 'sqlite', database: target})
    expect(fs.statSync(target).mode & 0o777).toBe(0o600)
    expect(fs.statSync(backupFile).mode & 0o777).toBe(0o600)
    await checkRestored(`sqlite:${target}`)
  })

  it.skipIf(skipPg !== undefined)('moves a SQLite controller onto PostgreSQL and back', async () => {
    const url = await (pgServer as PostgresServer).createDatabase()
    await restoreController({dataDir: dir, database: url, file: backupFile})
    // And back: a backup of the PostgreSQL database (before the check below adds a node).
    const again = path.join(dir, 'from-pg.backup')
    const b = await backupController({dataDir: dir, database: url, file: again})
    expect(b.source).toBe('postgres')
    await checkRestored(url)
    const target = path.join(dir, 'from-pg', 'mesh.db')
    await restoreController({dataDir: dir, database: `sqlite:${target}`, file: again})
    await checkRestored(`sqlite:${target}`)
  })

  it('refuses a target that is not empty, and writes nothing', async () => {
    const existing = source.dbPath
    const before = fs.statSync(existing).size
    await expect(
      restoreController({dataDir: dir, database: `sqlite:${existing}`, file: backupFile}),
    ).rejects.toMatchObject({code: 'RESTORE_TARGET_NOT_EMPTY'})
    expect(fs.statSync(existing).size).toBe(before)
  })

  it('refuses a cut-short, damaged or foreign file with BACKUP_INVALID and leaves no database behind', async () => {
    const raw = zlib.gunzipSync(fs.readFileSync(backupFile)).toString('utf8').split('\n')
    const variants: Record<string, string> = {
      'cut short': raw.slice(0, -3).join('\n'),
      'row count': raw.map((l) => (l.startsWith('{"end"') ? '{"end":true,"rows":1}' : l)).join('\n'),
      'unknown table': [raw[0], '{"t":"evil","r":{}}', ...raw.slice(1)].join('\n'),
      'bad column': [raw[0], '{"t":"tenants","r":{"id; DROP TABLE nodes":"x"}}', ...raw.slice(1)].join('\n'),
      'foreign header': ['{"format":"something-else"}', ...raw.slice(1)].join('\n'),
    }
    for (const [what, text] of Object.entries(variants)) {
      const file = path.join(dir, `bad-${what.replace(/ /g, '-')}.backup`)
      fs.writeFileSync(file, zlib.gzipSync(text))
      const target = path.join(dir, `bad-${what.replace(/ /g, '-')}`, 'mesh.db')
      await expect(
        restoreController({dataDir: dir, database: `sqlite:${target}`, file}),
        what,
      ).rejects.toMatchObject({code: 'BACKUP_INVALID'})
      expect(fs.existsSync(target), what).toBe(false)
    }
    const notGzip = path.join(dir, 'plain.backup')
    fs.writeFileSync(notGzip, 'hello')
    await expect(
      restoreController({
        dataDir: dir,
        database: `sqlite:${path.join(dir, 'plain', 'mesh.db')}`,
        file: notGzip,
      }),
    ).rejects.toMatchObject({code: 'BACKUP_INVALID'})
  })
})
