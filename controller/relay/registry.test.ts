// RelayRegistry on a real SQLite store (temp file) with a FakeClock: liveness by TTL, removals,
// refusals, and the relay-keys.json import.
import {createHash, randomBytes} from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {FakeClock} from '../../shared/testing/fake-clock.js'
import {systemContext} from '../context.js'
import {storeWrites} from '../domain/writes.js'
import {SqliteStore} from '../store/sqlite/sqlite-store.js'
import {importRelayKeyFile, RELAY_KEYS_FILE, RelayRegistry} from './registry.js'

const cleanup: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

async function setup(own?: {url: string; region: string}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-relay-reg-'))
  cleanup.push(() => fs.rmSync(dataDir, {recursive: true, force: true}))
  const store = await SqliteStore.open(path.join(dataDir, 'mesh.db'))
  cleanup.push(() => store.close())
  const writes = storeWrites(store)
  const clock = new FakeClock()
  const lists: string[][] = []
  const registry = new RelayRegistry({
    store,
    writes,
    clock,
    authenticateNode: async () => undefined,
    heartbeatMs: 1_000,
    own,
    onChange: (live) => lists.push(live.map((r) => `${r.kind} ${r.region} ${r.url}`)),
  })
  cleanup.push(() => registry.close())
  await registry.start()
  const key = async (region: string) => {
    const secret = `mrelay_${randomBytes(32).toString('base64url')}`
    const id = `rk_${randomBytes(6).toString('hex')}`
    await writes.createRelayKey(
      {
        id,
        name: region,
        region,
        keyHash: createHash('sha256').update(secret).digest('hex'),
        prefix: 'mrelay_',
        createdBy: null,
      },
      systemContext(clock),
      null,
    )
    return {id, key: secret}
  }
  /** Moves the clock, then waits for the beats it fired to finish their store work. */
  const advance = async (ms: number) => {
    clock.advance(ms)
    await registry.idle()
  }
  return {dataDir, store, writes, clock, registry, lists, key, advance}
}

describe('RelayRegistry', () => {
  it('lists a relay from its first beat until its TTL (three beats) passes, and tells every change', async () => {
    const {registry, lists, key, advance} = await setup()
    const {key: k} = await key('eu')
    await registry.heartbeat(k, {url: 'http://r1:8443/', connected: 0})
    expect(registry.live()).toEqual([{url: 'http://r1:8443', region: 'eu'}])
    await advance(2_500)
    await registry.heartbeat(k, {url: 'http://r1:8443', connected: 3})
    await advance(2_500)
    expect(registry.live()).toHaveLength(1)
    await advance(1_000)
    expect(registry.live()).toEqual([])
    expect(lists).toEqual([['standalone eu http://r1:8443'], []])
  })

  it('registers its own built-in relay, keeps it listed while it runs and removes it on close', async () => {
    const {store, clock, registry, advance} = await setup({url: 'http://ctl-1:8080', region: 'default'})
    expect(registry.relays().map((r) => [r.kind, r.url])).toEqual([['builtin', 'http://ctl-1:8080']])
    // Built-in relays are meshed with, not listed in netmaps (nodes use the controller URL).
    expect(registry.live()).toEqual([])
    await advance(10_000)
    expect(registry.relays()).toHaveLength(1)
    await registry.close()
    expect(await store.liveRelays(new Date(clock.now()).toISOString())).toEqual([])
  })

  it('hands each removal to every relay that beats here once, with its next beat', async () => {
    const {registry, key} = await setup()
    const {key: k} = await key('eu')
    await registry.heartbeat(k, {url: 'http://r1', connected: 0})
    await registry.heartbeat(k, {url: 'http://r2', connected: 0})
    registry.nodeGone({nodeId: 'nd_x', networkId: 'net_1'})
    expect((await registry.heartbeat(k, {url: 'http://r1', connected: 0})).gone).toEqual([
      {nodeId: 'nd_x', networkId: 'net_1'},
    ])
    expect((await registry.heartbeat(k, {url: 'http://r1', connected: 0})).gone).toEqual([])
    const r2 = await registry.heartbeat(k, {url: 'http://r2', connected: 0})
    expect(r2.gone).toHaveLength(1)
    expect(r2.relays).toEqual([{url: 'http://r1', region: 'eu'}])
  })

  it("refuses an unknown or revoked key, a region other than the key's and a malformed beat, with codes", async () => {
    const {registry, key, writes, clock} = await setup()
    const {id, key: k} = await key('eu')
    const beat = (bearer: string | undefined, body: unknown) => registry.heartbeat(bearer, body)
    await expect(beat('mrelay_unknown', {url: 'http://r1', connected: 0})).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    })
    await expect(beat(undefined, {url: 'http://r1', connected: 0})).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    })
    await expect(beat(k, {url: 'http://r1', region: 'us', connected: 0})).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    })
    await expect(beat(k, {url: 'not a url', connected: 0})).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    })
    expect(registry.live()).toEqual([])
    await beat(k, {url: 'http://r1', connected: 0})
    await writes.revokeRelayKey(id, systemContext(clock), null)
    await expect(beat(k, {url: 'http://r1', connected: 0})).rejects.toMatchObject({code: 'UNAUTHENTICATED'})
    await registry.refresh()
    expect(registry.live()).toEqual([])
  })

  it('imports a relay-keys.json once, keeping ids and hashes, and skips it the next time', async () => {
    const {dataDir, writes, clock, registry, store} = await setup()
    const secret = `mrelay_${randomBytes(32).toString('base64url')}`
    const hash = createHash('sha256').update(secret).digest('hex')
    fs.writeFileSync(
      path.join(dataDir, RELAY_KEYS_FILE),
      JSON.stringify([
        {id: 'rk_a', region: 'eu', hash, createdAt: '2026-01-01T00:00:00.000Z'},
        {id: 'rk_bad', region: 'EU west', hash, createdAt: 'x'},
      ]),
    )
    expect(await importRelayKeyFile(dataDir, writes, clock)).toEqual(['rk_a'])
    expect(await importRelayKeyFile(dataDir, writes, clock)).toEqual([])
    expect(await store.getRelayKey('rk_a')).toMatchObject({region: 'eu', keyHash: hash, createdBy: null})
    await registry.heartbeat(secret, {url: 'http://r1', connected: 0})
    expect(registry.live()).toEqual([{url: 'http://r1', region: 'eu'}])
  })

  it('uses one mesh token for every registry on one database, made by the first', async () => {
    const a = await setup()
    const b = new RelayRegistry({
      store: a.store,
      writes: a.writes,
      clock: a.clock,
      authenticateNode: async () => undefined,
    })
    await b.start()
    expect(b.meshToken).toBe(a.registry.meshToken)
    expect(a.registry.meshToken).toMatch(/^mmesh_/)
    await b.close()
  })
})
