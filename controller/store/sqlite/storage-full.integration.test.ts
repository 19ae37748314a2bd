// What the controller does when SQLite answers SQLITE_FULL, without needing root: the database
// is capped with PRAGMA max_page_count (SQLite's own "database or disk is full"), so every
// write that needs a new page fails the way it does on a full disk. Writes answer 503
// STORAGE_FULL with a hint and Retry-After, the log says so once (no stack) instead of once per
// request, nothing is half written, and writes work again once there is room.
// (A real full disk, and /readyz, are in storage-full.root.test.ts.)
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {Writable} from 'node:stream'
import Database from 'better-sqlite3'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ERRORS, MeshError} from '../../../shared/errors.js'
import {startController, type RunningController} from '../../main.js'
import {client, publicKey, type Client} from '../../testing/client.js'
import {connectWs} from '../../testing/ws-client.js'
import {storageError, StorageFailureLog} from '../errors.js'
import type {SqliteStore} from './sqlite-store.js'

describe('storage errors', () => {
  it('maps SQLITE_FULL and no-space IOERRs to STORAGE_FULL, a read-only or failing disk to STORAGE_UNAVAILABLE, and nothing else', () => {
    const code = (c: string) => storageError(Object.assign(new Error('x'), {code: c}))?.code
    expect(code('SQLITE_FULL')).toBe('STORAGE_FULL')
    expect(code('SQLITE_IOERR_SHMSIZE')).toBe('STORAGE_FULL')
    expect(code('SQLITE_READONLY')).toBe('STORAGE_UNAVAILABLE')
    expect(code('SQLITE_READONLY_DBMOVED')).toBe('STORAGE_UNAVAILABLE')
    expect(code('SQLITE_IOERR_WRITE')).toBe('STORAGE_UNAVAILABLE')
    expect(code('SQLITE_IOERR_FSYNC')).toBe('STORAGE_UNAVAILABLE')
    expect(code('SQLITE_CONSTRAINT_UNIQUE')).toBeUndefined()
    expect(code('SQLITE_CORRUPT')).toBeUndefined()
    expect(code('ENOSPC')).toBeUndefined()
    expect(storageError(undefined)).toBeUndefined()
    expect(ERRORS.STORAGE_FULL).toMatchObject({status: 503, exit: 75})
    expect(ERRORS.STORAGE_FULL.message).toBe("the controller's storage is full")
  })

  it('logs a storage failure at most once per interval, with the count left out and no stack', () => {
    const lines: {obj: Record<string, unknown>; msg: string}[] = []
    let now = 0
    const log = new StorageFailureLog(
      {error: (obj, msg) => lines.push({obj: {...obj}, msg})},
      10_000,
      () => now,
    )
    const full = new MeshError('STORAGE_FULL', {
      cause: Object.assign(new Error('disk'), {code: 'SQLITE_FULL'}),
    })
    for (let i = 0; i < 50; i++) {
      log.report(full, 'POST /api/v1/networks')
      now += 100 // 50 failures over 5 s
    }
    expect(lines).toHaveLength(1)
    now = 10_000
    log.report(full, 'POST /api/v1/login')
    expect(lines).toHaveLength(2)
    expect(lines[1]!.obj).toEqual({
      code: 'STORAGE_FULL',
      driverCode: 'SQLITE_FULL',
      where: 'POST /api/v1/login',
      suppressed: 49,
    })
    expect(lines[1]!.msg).toContain('49 more')
    expect(JSON.stringify(lines)).not.toContain('stack')
  })
})

describe('a controller whose database cannot grow', () => {
  let dir: string
  let ctl: RunningController
  let api: Client
  let token: string
  const logLines: string[] = []
  const password = 'storage full test password'

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-full-'))
    ctl = await startController({
      dataDir: dir,
      listen: '127.0.0.1:0',
      adminPassword: password,
      logLevel: 'info',
      logDestination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
          cb()
        },
      }),
    })
    api = client(ctl.url)
    const r = await api.req('POST', '/api/v1/login', {body: {username: 'admin', password}})
    expect(r.status, r.text).toBe(200)
    token = r.body.token
  })
  afterAll(async () => {
    await ctl?.close()
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  const db = () => (ctl.store as SqliteStore).db

  it('answers writes with 503 STORAGE_FULL and Retry-After, logs it once without a stack, and recovers when there is room', async () => {
    let octet = 0
    const createNetwork = () =>
      api.req('POST', '/api/v1/networks', {
        token,
        body: {name: `full-${++octet}`, cidr: `10.${octet}.0.0/24`, description: 'x'.repeat(500)},
      })
    const before = await createNetwork()
    expect(before.status, before.text).toBe(201)

    // Cap the file at its current size: the next writes that need a page fail with SQLITE_FULL.
    const pages = Number(db().pragma('page_count', {simple: true}))
    db().pragma(`max_page_count = ${pages}`)
    logLines.length = 0
    const refused: {status: number; code: string; retryAfter: string | null}[] = []
    for (let i = 0; i < 40 && refused.length < 5; i++) {
      const r = await createNetwork()
      if (r.status === 201) continue // still fitted in a free page
      refused.push({status: r.status, code: r.body.error.code, retryAfter: r.headers.get('retry-after')})
      expect(r.body.error.message).toBe("the controller's storage is full")
      expect(r.body.error.hint).toBe('free disk space on the controller host; writes resume by themselves')
      expect(r.body.error.detail).toBeUndefined()
    }
    expect(refused).toHaveLength(5)
    for (const r of refused) expect(r).toEqual({status: 503, code: 'STORAGE_FULL', retryAfter: '30'})
    // Login writes a token: once the tokens' page is full, it fails the same way.
    let login = await api.req('POST', '/api/v1/login', {body: {username: 'admin', password}})
    for (let i = 0; i < 200 && login.status === 200; i++)
      login = await api.req('POST', '/api/v1/login', {body: {username: 'admin', password}})
    expect([login.status, login.body.error?.code]).toEqual([503, 'STORAGE_FULL'])

    // Six or more failures, one log line: no stack, no per-request "request failed".
    const storageLines = logLines.filter((l) => l.includes('"component":"storage"'))
    expect(storageLines).toHaveLength(1)
    expect(storageLines[0]).toContain('"code":"STORAGE_FULL"')
    expect(storageLines[0]).toContain('"driverCode":"SQLITE_FULL"')
    expect(logLines.join('\n')).not.toContain('"stack"')
    expect(logLines.filter((l) => l.includes('request failed'))).toEqual([])

    // Room again: writes work at once, nothing half written.
    db().pragma('max_page_count = 1073741823')
    const after = await createNetwork()
    expect(after.status, after.text).toBe(201)
    const again = await api.req('POST', '/api/v1/login', {body: {username: 'admin', password}})
    expect(again.status).toBe(200)
    const listed = await api.req('GET', '/api/v1/networks?limit=200', {token})
    const names = (listed.body.items as {name: string}[]).map((n) => n.name)
    expect(names).toContain(after.body.name)
    // Every network that got its 201 is there; every refused one is not.
    const created = octet - refused.length
    expect(names.filter((n) => n.startsWith('full-'))).toHaveLength(created)
    const check = new Database(ctl.dbPath, {readonly: true})
    try {
      expect(check.pragma('integrity_check', {simple: true})).toBe('ok')
    } finally {
      check.close()
    }
  })

  it('answers 503 STORAGE_UNAVAILABLE on a read-only database and still serves netmap sessions from memory', async () => {
    const net = await api.req('POST', '/api/v1/networks', {
      token,
      body: {name: 'readonly-net', cidr: '10.250.0.0/24', joinPolicy: 'open'},
    })
    expect(net.status, net.text).toBe(201)
    const reg = await api.req('POST', '/api/v1/register', {
      token,
      body: {network: net.body.id, publicKey: publicKey(), name: 'ro-node'},
    })
    expect(reg.status, reg.text).toBe(201)

    db().pragma('query_only = ON') // every write now fails with SQLITE_READONLY
    try {
      const write = await api.req('POST', '/api/v1/networks', {
        token,
        body: {name: 'readonly-refused', cidr: '10.251.0.0/24'},
      })
      expect([write.status, write.body.error.code]).toEqual([503, 'STORAGE_UNAVAILABLE'])
      // The node's session writes its last-seen time, which fails: it still gets its map.
      const ws = await connectWs(`${ctl.url}/api/v1/netmap`, reg.body.credential)
      try {
        const full = await ws.next<{type: string; self: {id: string}}>((f) => f.type === 'full', 5000)
        expect(full.self.id).toBe(reg.body.node.id)
      } finally {
        await ws.close()
      }
    } finally {
      db().pragma('query_only = OFF')
    }
    const after = await api.req('POST', '/api/v1/networks', {
      token,
      body: {name: 'readonly-after', cidr: '10.252.0.0/24'},
    })
    expect(after.status, after.text).toBe(201)
  })
})
